"""The extended space's operators (issue #12): each computes what its formula says, extracts exactly
from the supernet, and exports to ONNX."""
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from searchspace import DEPLOYMENT, Arch, SearchSpace, StageChoice, arch_cost
from supernet import MixerNet, fvcore_flops, num_params
from supernet.mixers import InhomogeneousDWConvMixer, LinearAngularAttentionMixer
from supernet.network import MaxPoolEntry
from tests.helpers import TINY, assert_random_paths_extract_exactly, briefly_trained_supernet


def arch(mixer, kernels=(3, 5, 7, 5), depths=(1, 2, 2, 1), pools=(1, 2, 2, 2), pool_op="merge"):
    return Arch(tuple(StageChoice(mixer, k, d, p, pool_op if p == 2 else "merge")
                      for k, d, p in zip(kernels, depths, pools)))


# --- linear-angular attention -------------------------------------------------------------------

def direct_linear_angular(mixer: LinearAngularAttentionMixer, x: torch.Tensor, kernel: int) -> torch.Tensor:
    """The same kernel evaluated the O(N^2) way: sim(q, k) = 1/2 + q.k / pi on L2-normalised q, k,
    out_i = sum_j sim_ij v_j / sum_j sim_ij, plus the depth-wise conv on V, then the projection."""
    B, H, W, C = x.shape
    heads, d = mixer.num_heads, C // mixer.num_heads
    q, k, v = mixer.qkv(mixer.norm(x)).reshape(B, H * W, 3, heads, d).permute(2, 0, 3, 1, 4)
    sim = 0.5 + F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1) / math.pi   # (B, h, N, N)
    attended = (sim @ v) / sim.sum(dim=-1, keepdim=True)
    out = attended.transpose(1, 2).reshape(B, H, W, C)
    conv = nn.Conv2d(C, C, kernel, padding=kernel // 2, groups=C, bias=False)
    conv.weight.data = mixer.conv_weight(kernel).detach().clone()
    residual = conv(v.transpose(2, 3).reshape(B, C, H, W)).permute(0, 2, 3, 1)
    return mixer.proj(out + residual)


@pytest.mark.parametrize("heads, kernel", [(1, 3), (2, 5), (4, 7)])
def test_linear_angular_equals_its_quadratic_form(heads, kernel):
    torch.manual_seed(0)
    mixer = LinearAngularAttentionMixer(32, heads, max_kernel=7).double()
    x = torch.randn(2, 6, 5, 32, dtype=torch.float64)
    torch.testing.assert_close(mixer(x, kernel, shift=False), direct_linear_angular(mixer, x, kernel))


def test_linear_angular_is_global_and_ignores_the_shift():
    torch.manual_seed(0)
    mixer = LinearAngularAttentionMixer(16, 1, max_kernel=3).eval()
    x = torch.randn(1, 12, 12, 16)
    far = x.clone()
    far[0, 11, 11] = torch.randn(16)  # a token far outside token (0, 0)'s 3x3 conv neighbourhood
    with torch.no_grad():
        assert not torch.allclose(mixer(x, 3, False)[0, 0, 0], mixer(far, 3, False)[0, 0, 0])
        torch.testing.assert_close(mixer(x, 3, True), mixer(x, 3, False))


# --- inhomogeneous dynamic depth-wise conv --------------------------------------------------------

class AuthorsInhomogeneousBranch(nn.Module):
    """The authors' I-D-DWNet mixer branch (Atten4Vis/DemystifyLocalViT at commit ce3ada05, models/dwnet.py
    DWBlock with inhomogeneous=True and models/idynamic.py IDynamicDWConv(dim, window, heads)), rebuilt
    with its own layers; its CUDA-only op is written here as the loop its kernel runs."""

    def __init__(self, dim: int, kernel: int, heads: int) -> None:
        super().__init__()
        self.kernel, self.groups = kernel, dim // heads
        self.conv0, self.bn0 = nn.Conv2d(dim, dim, 1, bias=False), nn.BatchNorm2d(dim)
        self.gen1 = nn.Sequential(nn.Conv2d(dim, dim // 4, 1), nn.BatchNorm2d(dim // 4), nn.ReLU())
        self.gen2 = nn.Conv2d(dim // 4, kernel ** 2 * self.groups, 1)
        self.bn, self.conv2, self.bn2 = nn.BatchNorm2d(dim), nn.Conv2d(dim, dim, 1, bias=False), nn.BatchNorm2d(dim)

    def idynamic(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        k = self.kernel
        weight = self.gen2(self.gen1(x)).view(B, self.groups, k, k, H, W)
        padded = F.pad(x, (k // 2,) * 4)
        out = torch.zeros_like(x)
        group_of = torch.arange(C) // (C // self.groups)   # g = c / (channels / groups), as the CUDA kernel
        for kh in range(k):
            for kw in range(k):
                out += padded[:, :, kh:kh + H, kw:kw + W] * weight[:, group_of, kh, kw]
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # NCHW
        x = F.relu(self.bn0(self.conv0(x)))
        x = F.relu(self.bn(self.idynamic(x)))
        return self.bn2(self.conv2(x))


def load_authors_weights(ours: InhomogeneousDWConvMixer, theirs: AuthorsInhomogeneousBranch) -> None:
    pairs = [(ours.proj_in, theirs.conv0), (ours.generator_reduce, theirs.gen1[0]),
             (ours.generator_expand, theirs.gen2), (ours.proj_out, theirs.conv2)]
    with torch.no_grad():
        for linear, conv in pairs:
            linear.weight.copy_(conv.weight.flatten(1))
            if conv.bias is not None:
                linear.bias.copy_(conv.bias)
        for bn_ours, bn_theirs in [(ours.norm_in, theirs.bn0), (ours.generator_norm, theirs.gen1[1]),
                                   (ours.norm_dw, theirs.bn), (ours.norm_out, theirs.bn2)]:
            bn_ours.load_state_dict(bn_theirs.state_dict())


@pytest.mark.parametrize("dim, heads, kernel", [(32, 1, 3), (64, 2, 7), (48, 3, 5)])
def test_inhomogeneous_dwconv_is_the_authors_branch(dim, heads, kernel):
    torch.manual_seed(0)
    theirs = AuthorsInhomogeneousBranch(dim, kernel, heads)
    for bn in [m for m in theirs.modules() if isinstance(m, nn.BatchNorm2d)]:   # non-trivial statistics
        bn.running_mean.uniform_(-0.5, 0.5), bn.running_var.uniform_(0.5, 2.0), bn.weight.data.uniform_(0.5, 1.5)
    ours = InhomogeneousDWConvMixer(dim, heads, max_kernel=kernel)
    assert num_params(ours) == num_params(theirs)
    load_authors_weights(ours, theirs)
    ours.eval(), theirs.eval()
    x = torch.randn(2, 7, 6, dim)
    with torch.no_grad():
        torch.testing.assert_close(ours(x, kernel, False), theirs(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1),
                                   rtol=1e-4, atol=1e-5)


def test_inhomogeneous_kernels_differ_by_position_and_are_shared_in_a_group():
    torch.manual_seed(0)
    mixer = InhomogeneousDWConvMixer(32, 2, max_kernel=5).eval()   # 16 groups of 2 channels
    weight = mixer.generate_kernel(torch.randn(1, 6, 6, 32), 5)    # (B, H, W, G, k, k)
    assert weight.shape == (1, 6, 6, 16, 5, 5)
    assert not torch.allclose(weight[0, 0, 0], weight[0, 0, 1])


def test_inhomogeneous_matmul_form_is_the_same_computation():
    """fvcore traces the matmul form (it counts matmuls, not a multiply and a sum): both forms agree,
    and tracing picks the matmul form."""
    torch.manual_seed(0)
    mixer = InhomogeneousDWConvMixer(48, 3, max_kernel=7).eval()
    x = torch.randn(2, 5, 7, 48, dtype=torch.float64)
    weight = torch.randn(2, 5, 7, 16, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(mixer.apply_kernel(x, weight, as_matmul=True), mixer.apply_kernel(x, weight))
    traced = torch.jit.trace(lambda t: mixer.apply_kernel(t, weight, as_matmul=torch.jit.is_tracing()), (x,))
    assert "aten::matmul" in str(traced.graph)


def test_i_ddwnet_t_matches_the_authors_model():
    """I-D-DWNet-T (DWNet-T's macro architecture, window 7, heads 3/6/12/24): the network total is
    DWNet-T's (exact, tests/searchspace/test_cost.py) with each block's branch swapped for the authors'."""
    idd = arch_cost(Arch(tuple(StageChoice("inhomogeneous_dwconv", 7, d, p)
                               for d, p in ((2, 1), (2, 2), (6, 2), (2, 2)))), DEPLOYMENT)
    assert (idd.params, idd.flops) == (26_244_280, 4_390_616_064)   # published: 26M; the authors' flops(): 4.4G
    net = MixerNet.from_arch(Arch(tuple(StageChoice("inhomogeneous_dwconv", 7, d, p)
                                        for d, p in ((2, 1), (2, 2), (6, 2), (2, 2)))), DEPLOYMENT)
    assert (num_params(net), fvcore_flops(net, 224, 3)) == (idd.params, idd.flops)
    dw = arch_cost(Arch(tuple(StageChoice("dwconv", 7, d, p) for d, p in ((2, 1), (2, 2), (6, 2), (2, 2)))), DEPLOYMENT)
    static_branch = {dim: 2 * dim * dim + 3 * 2 * dim + dim * 49 + dim for dim in (96, 192, 384, 768)}
    authors_branch = {dim: num_params(AuthorsInhomogeneousBranch(dim, 7, dim // 32)) for dim in (96, 192, 384, 768)}
    delta = sum(depth * (authors_branch[dim] - static_branch[dim]) for dim, depth in zip((96, 192, 384, 768), (2, 2, 6, 2)))
    assert idd.params == dw.params + delta


def test_linear_angular_and_maxpool_costs_at_the_deployment_setting():
    a = Arch(tuple(StageChoice("linear_angular", 7, d, p, "maxpool" if p == 2 else "merge")
                   for d, p in ((2, 1), (2, 2), (6, 2), (2, 2))))
    net = MixerNet.from_arch(a, DEPLOYMENT)
    cost = arch_cost(a, DEPLOYMENT)
    assert (num_params(net), fvcore_flops(net, 224, 3)) == (cost.params, cost.flops)


# --- HVT max pooling entry ------------------------------------------------------------------------

@pytest.mark.parametrize("side", [8, 7])
def test_maxpool_entry_pools_3x3_stride_2_then_changes_the_width(side):
    torch.manual_seed(0)
    entry = MaxPoolEntry(16, 32)
    x = torch.randn(2, side, side, 16)
    out = entry(x)
    assert out.shape == (2, math.ceil(side / 2), math.ceil(side / 2), 32)   # as patch merging's map
    pooled = nn.MaxPool2d(3, 2, padding=1)(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    torch.testing.assert_close(out, entry.reproject(pooled))
    # the top-left output is the max over the 2x2 corner (padding never wins)
    torch.testing.assert_close(pooled[:, 0, 0], x[:, :2, :2].amax(dim=(1, 2)))


# --- in the supernet ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def extended_supernet():
    return briefly_trained_supernet(SearchSpace.builtin("extended"))


@pytest.mark.parametrize("mixer, kernel", itertools.product(("linear_angular", "inhomogeneous_dwconv"), (3, 5, 7)))
@pytest.mark.parametrize("pool_op", ["merge", "maxpool"])
def test_extraction_equals_the_active_path(extended_supernet, mixer, kernel, pool_op):
    a = arch(mixer, kernels=(kernel,) * 4, pool_op=pool_op)
    extended_supernet.set_active(a)
    sub = extended_supernet.extract(a).eval()
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(sub(x), extended_supernet(x), rtol=0, atol=1e-5)
    assert list(sub.stages[1].transitions) == [a.stages[1].entry]
    assert sum(p.numel() for p in sub.parameters()) == arch_cost(a, TINY).params


def test_extraction_on_mixed_random_extended_archs(extended_supernet):
    assert_random_paths_extract_exactly(extended_supernet, seed=7, count=8)


def test_standalone_networks_train_every_parameter():
    for mixer in ("linear_angular", "inhomogeneous_dwconv"):
        net = MixerNet.from_arch(arch(mixer, pool_op="maxpool"), TINY)
        net(torch.randn(2, 1, 32, 32)).sum().backward()
        assert all(p.grad is not None for p in net.parameters())


@pytest.mark.slow
def test_onnx_export_runs_in_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    import io
    import warnings

    torch.manual_seed(0)
    a = Arch((StageChoice("linear_angular", 5, 1, 1), StageChoice("inhomogeneous_dwconv", 3, 2, 2, "maxpool"),
              StageChoice("linear_angular", 3, 1, 2, "maxpool"), StageChoice("inhomogeneous_dwconv", 5, 1, 2)))
    net = MixerNet.from_arch(a, TINY).eval()
    x = torch.randn(1, 1, 32, 32)
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(net, (x,), input_names=["image"], output_names=["logits"], opset_version=18,
                                    dynamo=True)
        program.save(buffer)
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"image": x.numpy()})[0]
    with torch.no_grad():
        assert np.abs(got - net(x).numpy()).max() <= 1e-4
