"""benchmarks/experiments/finetune_variants.py: the fine-tuning variants the ranking experiments measured (not the product's)."""

import pytest
import torch
from torch.utils.data import TensorDataset

from benchmarks.experiments.finetune_variants import finetune_variant
from nas.data.datasets import build_data
from nas.train.finetune import finetune
from searchspace import SearchSpace
from supernet import MixerNet
from tests.helpers import ARCH, RECIPE, TINY, TINY_DATA, TINY_SPACE, conv_bn, params_seen_by_each_forward


def test_a_warmup_starts_the_learning_rate_at_zero():
    data = build_data(TINY_DATA)
    torch.manual_seed(0)
    supernet = MixerNet(SearchSpace.from_dict(TINY_SPACE), TINY)
    moved = {}
    for warmup in (0, 2):
        net = supernet.extract(ARCH)
        seen = params_seen_by_each_forward(net)
        finetune_variant(net, data.train, RECIPE, steps=4, seed=0, warmup_steps=warmup)
        moved[warmup] = [not all(torch.equal(a, b) for a, b in zip(seen[0], seen[k])) for k in (1, 2)]
    assert moved[0] == [True, True]   # the search's way: the first update is at the peak learning rate
    assert moved[2] == [False, True]  # 0, then half the peak: AdamW (and its weight decay) leaves step 1's weights


def test_without_variants_it_is_the_products_fine_tuning():
    data = build_data(TINY_DATA)
    torch.manual_seed(0)
    supernet = MixerNet(SearchSpace.from_dict(TINY_SPACE), TINY)
    product, variant = supernet.extract(ARCH), supernet.extract(ARCH)
    assert finetune(product, data.train, RECIPE, steps=3, seed=1) == finetune_variant(variant, data.train, RECIPE,
                                                                                      steps=3, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(product.parameters(), variant.parameters()))


def test_average_last_ends_with_the_mean_of_the_last_weights():
    data = build_data(TINY_DATA)
    torch.manual_seed(0)
    supernet = MixerNet(SearchSpace.from_dict(TINY_SPACE), TINY)
    plain = supernet.extract(ARCH)
    seen = params_seen_by_each_forward(plain)
    loss = finetune(plain, data.train, RECIPE, steps=4, seed=0)
    averaged = supernet.extract(ARCH)
    assert finetune_variant(averaged, data.train, RECIPE, steps=4, seed=0, average_last=2) == loss  # the same run
    # the weights after step 3 (seen by the 4th forward) and after step 4 (the plain run's end), averaged
    for after_3, after_4, got in zip(seen[3], plain.parameters(), averaged.parameters()):
        torch.testing.assert_close(got, (after_3 + after_4) / 2)
    assert not all(torch.equal(a, b) for a, b in zip(plain.parameters(), averaged.parameters()))


@pytest.mark.parametrize("warmup, average", [(4, 0), (-1, 0), (0, 5), (0, -1)])
def test_a_warmup_or_average_outside_its_steps_is_refused(warmup, average):
    with pytest.raises(ValueError, match="must lie within them"):
        finetune_variant(conv_bn(), TensorDataset(torch.randn(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)), RECIPE, steps=4,
                 warmup_steps=warmup, average_last=average)
