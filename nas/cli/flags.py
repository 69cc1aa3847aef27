"""Command-line options made from the typed settings' fields, and the records built back from the parsed options.

Each setting's flag, type, range, default and help are declared once, on its field in ``nas.settings``
(:func:`nas.settings.setting`); a command names the fields it takes and the record whose values are its defaults
(the supernet's recipe trains longer than the stand-alone one, for example). So one setting cannot have two defaults,
and ``--help`` shows each default as the record holds it (:class:`HelpFormatter`).
"""
from __future__ import annotations

import argparse
from dataclasses import fields, replace

def _option(record_type, name: str):
    f = record_type.__dataclass_fields__[name]
    if "flag" not in f.metadata:
        raise TypeError(f"{record_type.__name__}.{name} is not a setting with a flag")
    return f


def dest_of(record_type, name: str) -> str:
    """The parsed options' attribute that holds field ``name`` of ``record_type``."""
    return _option(record_type, name).metadata.get("dest", name)


def add_setting_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup, defaults, names: tuple[str, ...], *,
                      flags: dict[str, str] | None = None) -> None:
    """One option per field in ``names`` of the record ``defaults`` (an instance: its values are the defaults), with
    the flag, type, choices and help its field declares; ``flags`` renames an option in this command (the search's
    ``--supernet-seed``)."""
    for name in names:
        f = _option(type(defaults), name)
        meta, default = f.metadata, getattr(defaults, name)
        kind = meta.get("type") or type(default)
        flag = (flags or {}).get(name, meta["flag"])
        options = {"dest": meta.get("dest", name), "default": default, "help": meta["help"]}
        if isinstance(default, bool):  # a switch, off unless given
            assert default is False, f"{flag}: a switch must default to off"
            parser.add_argument(flag, action="store_true", **options)
            continue
        if "choices" in meta:
            options["choices"] = meta["choices"]
        else:
            options["type"] = kind
            options["metavar"] = meta.get("metavar", flag.lstrip("-").replace("-", "_").upper())
        parser.add_argument(flag, **options)


def settings_from_args(defaults, args: argparse.Namespace, names: tuple[str, ...] | None = None, **values):
    """``defaults`` (a record) with each field in ``names`` (default: every field a parsed option of ``args`` sets)
    taken from ``args``, then ``values``; the record's own checks (ranges, choices) run on the result."""
    given = {}
    for f in fields(defaults):
        if "flag" not in f.metadata or (names is not None and f.name not in names):
            continue
        dest = dest_of(type(defaults), f.name)
        if hasattr(args, dest):
            given[f.name] = getattr(args, dest)
    return replace(defaults, **{**given, **values})


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default where the help does not already say it (a switch is off)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.option_strings and action.default is not argparse.SUPPRESS and action.nargs != 0
                and "(default" not in text and "default:" not in text and not action.required):
            shown = "none" if action.default is None else action.default
            text = f"{text} (default: {shown})" if text else f"default: {shown}"
        return text


__all__ = ["dest_of", "add_setting_flags", "settings_from_args", "HelpFormatter"]
