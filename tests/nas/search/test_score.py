"""What the search maximises: each score read from one real inherited-weights evaluation."""
import random

import pytest
import torch

from nas.data.datasets import build_data
from nas.errors import UserError
from nas.search.score import NEG_LOSS, SCORES, TOP1, rejected_scores, score_named, trial_scores
from nas.settings import SEARCH_SCORES
from nas.train.evaluate import evaluate_arch
from searchspace import NetSettings
from supernet import MixerNet
from tests.helpers import tiny_job


def test_the_settings_offer_every_score():
    assert tuple(SCORES) == SEARCH_SCORES


@pytest.fixture(scope="module")
def evaluation():
    """One arch of the tiny space's supernet (its weights as initialised: the scores only read what an evaluation
    gives), evaluated as a trial does: 2 fine-tuning steps, then the validation split; and without the steps."""
    job = tiny_job(1)
    torch.manual_seed(0)
    net = MixerNet(job.space, NetSettings(img_size=32, in_chans=1, num_classes=10, embed_dim=16, patch_size=2))
    arch = job.space.sample(random.Random(0))
    data = build_data(job.data)
    kwargs = dict(recalib_batches=1, seed=0, device=torch.device("cpu"), recipe=job.train)
    return (evaluate_arch(net, arch, data, finetune_steps=2, **kwargs),
            evaluate_arch(net, arch, data, finetune_steps=0, **kwargs))


def test_each_score_reads_the_same_evaluation(evaluation):
    tuned, as_is = evaluation
    assert 0.0 <= tuned["top1"] <= 1.0 and tuned["loss"] > 0 and tuned["train_loss"] > 0
    scores = trial_scores(tuned)
    assert scores == {"top1": tuned["top1"], "neg_loss": pytest.approx(-(tuned["loss"] + tuned["train_loss"]))}
    # Without fine-tuning there is no training loss: only top-1 can score it.
    assert trial_scores(as_is) == {"top1": as_is["top1"]} and NEG_LOSS.read(as_is) is None


def test_a_rejected_suggestion_is_told_below_any_arch_that_learns(evaluation):
    tuned, _ = evaluation
    told = rejected_scores()
    assert told == {"top1": TOP1.rejected, "neg_loss": NEG_LOSS.rejected}
    assert told["top1"] <= tuned["top1"] and told["neg_loss"] < NEG_LOSS.read(tuned)


def test_a_file_naming_an_unknown_score_is_refused_in_one_line():
    assert score_named("loss", "pareto.json") is NEG_LOSS
    with pytest.raises(UserError, match=r"^pareto.json: unknown score 'accuracy' \(known: loss, top1\)$"):
        score_named("accuracy", "pareto.json")


def test_the_hypervolume_reference_of_each_score():
    assert TOP1.reference_for([0.4, 0.6]) == 0.0  # fixed: hypervolume in 1 - top1, as before the scores
    assert NEG_LOSS.reference_for([-3.0, -2.0]) == pytest.approx(-3.3)  # 10% beyond the worst, from the best (0)
