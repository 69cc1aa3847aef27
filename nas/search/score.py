"""What the search maximises for each arch: its score, read from one inherited-weights evaluation
(``nas.train.evaluate.evaluate_arch``: the validation top-1 and loss after the fine-tuning steps, and the steps' mean
training loss).

- ``loss`` (the default): minus (validation loss + the steps' mean training loss), column ``neg_loss``. It ordered
  stand-alone training better than top-1 on the digits (Kendall tau 0.717 against 0.683, 64 archs, three supernets)
  and on CIFAR-10 photos (0.767 against 0.711, 3-seed truth), and its pick did as well alone, docs/BENCHMARKS.md;
- ``top1``: the validation top-1 of the same evaluation (the only one without fine-tuning steps).

Every trial reports both (``neg_loss`` needs fine-tuning steps), so trials.csv holds both whichever one the search
maximised; the score chooses the sampler's objective, the Pareto front and the pick.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nas.errors import UserError


def _top1(evaluation: dict) -> float:
    return evaluation["top1"]


def _neg_loss_sum(evaluation: dict) -> float | None:
    if evaluation.get("train_loss") is None:
        return None
    return -(evaluation["loss"] + evaluation["train_loss"])


@dataclass(frozen=True)
class Score:
    name: str                  # the --score value
    key: str                   # its column in a trial's result, trials.csv and pareto.json
    title: str                 # what it is, in words
    label: str                 # the plot's axis
    best: float                # the best value it can take
    reference: float | None    # the hypervolume's reference (None: 10% beyond the worst row's value)
    rejected: float            # what a suggestion that never runs (over a budget) is told
    percent: bool              # shown as a percentage
    read: Callable[[dict], float | None]  # from an evaluate_arch result; None where it lacks what the score needs

    def reference_for(self, values: list[float]) -> float:
        """The hypervolume's reference for rows of these values."""
        if self.reference is not None:
            return self.reference
        worst = min(values, default=self.best - 1.0)
        return worst - 0.1 * abs(self.best - worst)


TOP1 = Score("top1", "top1", "top-1", "top-1 (%), validation", best=1.0, reference=0.0, rejected=0.0, percent=True,
             read=_top1)
# A loss sum of 100 nats an image: far below any arch that learns at all.
NEG_LOSS = Score("loss", "neg_loss", "minus (validation loss + the steps' training loss)",
                 "-(validation loss + steps' training loss)", best=0.0, reference=None, rejected=-100.0, percent=False,
                 read=_neg_loss_sum)
SCORES = {s.name: s for s in (NEG_LOSS, TOP1)}  # the default first, as settings.SEARCH_SCORES


def score_named(name: str, source: str) -> Score:
    """The score a file names (``source``: the file, for the error)."""
    if name not in SCORES:
        raise UserError(f"{source}: unknown score {name!r} (known: {', '.join(SCORES)})")
    return SCORES[name]


def rejected_scores() -> dict[str, float]:
    """What a suggestion that never runs (over a budget) is told, for every score."""
    return {s.key: s.rejected for s in SCORES.values()}


def trial_scores(evaluation: dict) -> dict[str, float]:
    """Every score that one evaluation holds what it needs for."""
    return {s.key: v for s in SCORES.values() if (v := s.read(evaluation)) is not None}


__all__ = ["Score", "TOP1", "NEG_LOSS", "SCORES", "score_named", "rejected_scores", "trial_scores"]
