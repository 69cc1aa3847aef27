"""Files written by earlier versions, brought to today's format in one place.

Every reader of a run file passes what it read through :func:`migrate` before it builds a typed record, so the
records themselves know only today's format, and a new format change is one more line here.
"""
from __future__ import annotations

import copy
import math

KINDS = ("data", "train", "supernet job", "retrain job", "search config", "search info", "pareto", "suggestion",
         "search state", "ranking summary")

_DATA_FIELDS = ("dataset", "root", "img_size", "augment", "train_subset")


def migrate(kind: str, record: dict) -> dict:
    """``record``, a dict read from a file of ``kind`` (one of ``KINDS``), in today's format: a new dict, the input
    is left as it was. A record already in today's format comes back equal."""
    d = copy.deepcopy(record)
    if kind == "data":
        # Data settings held a ``seed`` once (the split followed it then); the splits are fixed now.
        return {k: v for k, v in d.items() if k in _DATA_FIELDS}
    if kind == "train":
        # ``amp`` was a bool (True: float16) before bf16 existed; "off" and None mean off.
        d["amp"] = {None: False, "off": False, True: "fp16"}.get(d.get("amp", False), d.get("amp", False))
        return d
    if kind in ("supernet job", "retrain job"):
        d["data"] = migrate("data", d["data"])
        d["train"] = migrate("train", d["train"])
        return d
    if kind == "search config":  # a search folder's config.json
        d["search"] = {"finetune_steps": 0, **d["search"]}  # searches before the fine-tuning steps scored without
        d["search"].setdefault("score", "top1")  # searches before --score maximised top-1
        d["search"].pop("max_failures", None)  # the failure policy is the cluster's, given to each run
        d["data"] = migrate("data", d["data"])
        if "supernet_job" in d:
            d["supernet_job"] = migrate("supernet job", d["supernet_job"])
        return d
    if kind == "search info":  # the "search" entry of a best.json, or a search's config.json, as a retrain reads it
        if not d.get("model"):  # only config.json's supernet job named the network options once
            d["model"] = (d.get("supernet_job") or {}).get("model") or {}
        if d.get("data"):
            d["data"] = migrate("data", d["data"])
        return d
    if kind == "pareto":  # searches before the fine-tuning steps wrote no top1_weights: their weights were inherited
        d.setdefault("top1_weights", "inherited as they are")
        d.setdefault("score", "top1")  # searches before --score maximised top-1
        return d
    if kind == "suggestion":  # a line of suggestions.jsonl: NaN stood where no table predicted the latency
        latency = d.get("latency_ms")
        if isinstance(latency, float) and math.isnan(latency):
            d["latency_ms"] = None
        return d
    if kind == "search state":  # BudgetGuard's saved state without an order resumes unordered
        d.setdefault("lag", None)
        d.setdefault("order", [])
        d.setdefault("finished", {})
        d.setdefault("told", 0)
        d.setdefault("log", None)  # states that did not hold the suggestion log keep the file as it is
        return d
    if kind == "ranking summary":  # a ranking.json: checks before the fine-tuning steps scored without them
        d["config"] = {"finetune_steps": 0, **(d.get("config") or {})}
        d.setdefault("score", "top1")  # checks before --score ordered by top-1
        d["config"].setdefault("score", d["score"])
        return d
    raise ValueError(f"no file format {kind!r} to migrate (known: {', '.join(KINDS)})")
