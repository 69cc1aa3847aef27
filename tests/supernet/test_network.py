"""The standalone networks: blocks as published, shapes, and a dynamic conv that is dynamic."""
import pytest
import torch
from torch import nn

from searchspace import Arch, StageChoice
from supernet import BatchNormNHWC, DWConvMixer, DynamicDWConvMixer, MixerNet, WindowAttentionMixer
from tests.helpers import TINY, swin_t_arch


def test_dwnet_block_is_as_published():
    """No norm before the mixer; 1x1 -> BN -> ReLU -> dw kxk (bias) -> BN -> ReLU -> 1x1 -> BN; BN before the MLP."""
    net = MixerNet.from_arch(swin_t_arch("dwconv"), TINY)
    block = net.stages[2].blocks[0]
    mixer = block.mixers["dwconv"]
    assert isinstance(mixer, DWConvMixer) and not hasattr(mixer, "norm")
    assert mixer.proj_in.bias is None and mixer.proj_out.bias is None
    assert mixer.dw_weight.shape == (64, 1, 7, 7) and mixer.dw_bias.shape == (64,)
    assert all(isinstance(m, BatchNormNHWC) for m in (mixer.norm_in, mixer.norm_dw, mixer.norm_out))
    assert isinstance(block.ffn_norms["dwconv"], BatchNormNHWC)
    assert block.mlp.fc1.out_features == 4 * 64


def test_dynamic_dwnet_generator_is_as_published():
    net = MixerNet.from_arch(swin_t_arch("dynamic_dwconv", 5), TINY)
    mixer = net.stages[3].blocks[0].mixers["dynamic_dwconv"]
    assert isinstance(mixer, DynamicDWConvMixer) and not hasattr(mixer, "dw_weight")
    assert mixer.generator_reduce.in_features == 128 and mixer.generator_reduce.out_features == 32
    assert mixer.generator_reduce.bias is None
    assert mixer.generator_expand.out_features == 128 * 5 * 5 and mixer.generator_expand.bias is not None
    assert torch.count_nonzero(mixer.dw_bias) == 0  # zero-initialised static bias


def test_dynamic_dwconv_is_really_dynamic():
    """Two different inputs get two different kernels (the authors' code silently builds a static conv)."""
    torch.manual_seed(0)
    mixer = DynamicDWConvMixer(dim=32, num_heads=1, max_kernel=7).eval()
    x = torch.randn(2, 32, 8, 8)
    kernels = mixer.generate_kernel(x, 7)
    assert kernels.shape == (2, 32, 7, 7)
    assert not torch.allclose(kernels[0], kernels[1])
    # and the conv uses them: sample 0 alone gives the same output as in the batch, per sample
    out = mixer.depthwise(x, 7)
    alone = mixer.depthwise(x[:1], 7)
    torch.testing.assert_close(out[:1], alone, rtol=1e-5, atol=1e-5)
    # a static conv with sample 0's kernel reproduces sample 0 and not sample 1
    static = torch.nn.functional.conv2d(x, kernels[0].unsqueeze(1), mixer.dw_bias, padding=3, groups=32)
    torch.testing.assert_close(static[0], out[0], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(static[1], out[1], atol=1e-4)


def test_window_attention_bias_table_and_clamping():
    mixer = WindowAttentionMixer(dim=32, num_heads=1, max_kernel=7)
    assert mixer.relative_position_bias_table.shape == (13 * 13, 1)
    centre = mixer.bias_table((3, 3)).view(5, 5)
    full = mixer.relative_position_bias_table.view(13, 13)
    torch.testing.assert_close(centre, full[4:9, 4:9])
    # a map no larger than the window: one window, no shift -> shifting changes nothing
    x = torch.randn(2, 4, 4, 32)
    torch.testing.assert_close(mixer(x, 7, shift=True), mixer(x, 7, shift=False))
    # a larger map with a shift differs from the unshifted one
    y = torch.randn(2, 8, 8, 32)
    assert not torch.allclose(mixer(y, 3, shift=True), mixer(y, 3, shift=False))


@pytest.mark.parametrize("mixer", ["window_attention", "dwconv", "dynamic_dwconv"])
@pytest.mark.parametrize("pools", [(1, 2, 2, 2), (1, 1, 1, 2)])
def test_forward_shapes(mixer, pools):
    arch = Arch(tuple(StageChoice(mixer, k, d, p) for k, d, p in zip((3, 5, 7, 5), (1, 2, 2, 1), pools)))
    net = MixerNet.from_arch(arch, TINY)
    x = torch.randn(2, 1, 32, 32)
    assert net(x).shape == (2, 10)
    feats = net.forward_features(x)
    side = 16 // 2 ** (sum(p == 2 for p in pools))
    assert feats.shape == (2, side, side, 128)
    net(x).sum().backward()
    assert all(p.grad is not None for p in net.parameters()), "every parameter of a standalone net is used"


def test_stage_entries():
    arch = Arch(tuple(StageChoice("dwconv", 3, 1, p) for p in (1, 1, 2, 1)))
    net = MixerNet.from_arch(arch, TINY)
    assert isinstance(net.stages[0].transitions["pool1"], nn.Identity)
    assert net.stages[1].transitions["pool1"].reduction.weight.shape == (32, 16)
    assert net.stages[2].transitions["pool2"].reduction.weight.shape == (64, 4 * 32)
