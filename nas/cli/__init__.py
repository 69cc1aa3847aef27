"""The command line behind launch.py: one module per subcommand, each with ``add_arguments`` and ``run``."""
from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import replace
from typing import Sequence

from nas.errors import USER_ERRORS

from .flags import HelpFormatter

# subcommand -> module under nas.cli; each module has HELP, add_arguments(parser), run(args) -> int
COMMANDS = {
    "space": "space",
    "cost": "cost",
    "supernet": "supernet",
    "search": "search",
    "retrain": "retrain",
    "check-ranking": "check_ranking",
    "export": "export",
    "latency-table": "latency_table",
    "check-latency": "check_latency",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit 2, like every other bad input
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="launch.py", description="Neural architecture search over vision-backbone token mixers.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"nas.cli.{module_name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP, formatter_class=HelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def open_storage(value: str | None):
    """``--storage`` checked: a URI opens and takes a file, a folder given can be written."""
    from nas.runs.storage import Storage

    from .common import check_writable_dir

    storage = Storage.parse(value)
    if storage.given and not storage.uri:
        check_writable_dir(storage.root, "--storage")
    return storage


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if hasattr(args, "address"):
            from nas.cluster.session import cluster_address, prepare_cluster_connection
            from nas.settings import Cluster

            from .flags import settings_from_args

            cluster = settings_from_args(Cluster(), args)  # the failure policy's range, before any work
            address = cluster_address(args.address)  # RAY_ADDRESS counts as --address
            if address:  # before any work: a wrong address must not cost a supernet
                prepare_cluster_connection(address)
            args = argparse.Namespace(**{k: v for k, v in vars(args).items() if k != "address"},
                                      cluster=replace(cluster, address=address))
        if hasattr(args, "storage"):  # before any work too: a storage that cannot be written must not cost a run
            args = argparse.Namespace(**{**vars(args), "storage": open_storage(args.storage)})
        return int(args._run(args) or 0)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command with --resume to continue", file=sys.stderr)
        return 130
