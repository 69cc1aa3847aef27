"""Token mixers, each elastic in its kernel (or window) size.

A mixer owns the weights of its largest kernel and one function that cuts out the active part:
``bias_table(window)``, ``conv_weight(kernel)``, ``generator_rows(kernel)``. ``forward`` and
``inherit`` (sub-network extraction) both call that function, so a standalone network, which is
the same class built for a single kernel, computes exactly what the supernet's active path does.

Tensors between blocks are NHWC, as in timm's Swin. Every mixer maps (B, H, W, C) to the residual
branch's output of the same shape; the block adds it through DropPath.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.models.swin_transformer import get_relative_position_index, window_partition, window_reverse
from torch import nn

from searchspace import MIXER_SPECS


class BatchNormNHWC(nn.BatchNorm1d):
    """BatchNorm over the channels of an NHWC tensor (statistics over batch and positions).

    Viewing (B, H, W, C) as (B*H*W, C) normalises exactly as BatchNorm2d on NCHW, with no permute.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        return super().forward(x.reshape(-1, shape[-1])).reshape(shape)


class ElasticMixer(nn.Module):
    """Base: ``inherit`` copies a larger mixer's weights, cut by ``elastic_state``, into this one."""

    ffn_norm: type[nn.Module] = nn.LayerNorm

    def elastic_state(self, kernel: int) -> dict[str, torch.Tensor]:
        """The entries of the state dict that depend on the kernel, cut for ``kernel``."""
        return {}

    @torch.no_grad()
    def inherit(self, source: "ElasticMixer", kernel: int) -> None:
        state = source.state_dict()
        state.update(source.elastic_state(kernel))
        self.load_state_dict(state)


def centre_crop(weight: torch.Tensor, kernel: int) -> torch.Tensor:
    """The centre kernel x kernel of a (..., K, K) weight: a smaller kernel of an elastic conv."""
    max_kernel = weight.shape[-1]
    if kernel == max_kernel:  # the parameter itself: DDP wants its gradient layout unchanged
        return weight
    o = (max_kernel - kernel) // 2
    return weight[..., o:o + kernel, o:o + kernel]


def centre_rows(units: int, max_kernel: int, kernel: int, device: torch.device) -> torch.Tensor:
    """Rows of a generator that emits ``units`` kernels of K x K (unit-major) that form each unit's
    centre k x k: a generated kernel shrinks as a static one does."""
    o = (max_kernel - kernel) // 2
    offsets = torch.arange(o, o + kernel, device=device)
    pos = (offsets[:, None] * max_kernel + offsets[None, :]).reshape(-1)
    return (torch.arange(units, device=device)[:, None] * max_kernel * max_kernel + pos[None, :]).reshape(-1)


# --- window attention ---------------------------------------------------------------------------

# The two caches below hold constants shared by every forward. They are built outside inference
# mode (an inference tensor cannot take part in a later autograd graph), and bypassed while
# torch.export/compile traces (see WindowAttentionMixer.forward).

@functools.lru_cache(maxsize=64)
@torch.inference_mode(False)
def _relative_position_index(window: tuple[int, int], device: torch.device) -> torch.Tensor:
    return get_relative_position_index(window[0], window[1], device=device).view(-1)


@functools.lru_cache(maxsize=64)
@torch.inference_mode(False)
def _shift_mask(padded: tuple[int, int], window: tuple[int, int], shift: tuple[int, int],
                device: torch.device) -> torch.Tensor:
    """Swin's SW-MSA mask: tokens from different regions of the rolled map must not attend."""
    img = torch.zeros((1, padded[0], padded[1], 1), device=device)
    region = 0
    for hs in ((0, -window[0]), (-window[0], -shift[0]), (-shift[0], None)):
        for ws in ((0, -window[1]), (-window[1], -shift[1]), (-shift[1], None)):
            img[:, hs[0]:hs[1], ws[0]:ws[1], :] = region
            region += 1
    windows = window_partition(img, window).view(-1, window[0] * window[1])
    mask = windows.unsqueeze(1) - windows.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0)


class WindowAttentionMixer(ElasticMixer):
    """Swin's (shifted) window attention with relative position bias, as W-MSA(LN(x)).

    The window side is the kernel choice. The projections are shared by every window size, and
    the bias table is the one of the largest window: a window w uses its (2w-1)^2 centre, which
    holds exactly the offsets -(w-1)..(w-1). Where the map is not larger than the window, the
    window is the whole map and there is no shift (Swin's rule); a map not divisible by the window
    is zero-padded after the norm (timm's rule).
    """

    ffn_norm = nn.LayerNorm

    def __init__(self, dim: int, num_heads: int, max_kernel: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.max_kernel = max_kernel
        self.scale = (dim // num_heads) ** -0.5
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        side = 2 * max_kernel - 1
        self.relative_position_bias_table = nn.Parameter(torch.zeros(side * side, num_heads))
        trunc_normal_(self.relative_position_bias_table, std=0.02)

    def bias_table(self, window: tuple[int, int]) -> torch.Tensor:
        """The ((2wh-1)*(2ww-1), heads) centre of the largest window's table."""
        side = 2 * self.max_kernel - 1
        table = self.relative_position_bias_table.view(side, side, self.num_heads)
        oh, ow = self.max_kernel - window[0], self.max_kernel - window[1]
        return table[oh:oh + 2 * window[0] - 1, ow:ow + 2 * window[1] - 1].reshape(-1, self.num_heads)

    def elastic_state(self, kernel: int) -> dict[str, torch.Tensor]:
        return {"relative_position_bias_table": self.bias_table((kernel, kernel))}

    def forward(self, x: torch.Tensor, kernel: int, shift: bool) -> torch.Tensor:
        B, H, W, C = x.shape
        window = (min(kernel, H), min(kernel, W))
        shifts = (window[0] // 2 if shift and H > kernel else 0, window[1] // 2 if shift and W > kernel else 0)
        x = self.norm(x)
        if any(shifts):
            x = torch.roll(x, shifts=(-shifts[0], -shifts[1]), dims=(1, 2))
        pad_h, pad_w = (-H) % window[0], (-W) % window[1]
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        Hp, Wp = H + pad_h, W + pad_w

        n = window[0] * window[1]
        windows = window_partition(x, window).view(-1, n, C)
        qkv = self.qkv(windows).reshape(-1, n, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        # While torch.export/compile traces, tensors are fakes: never let them into the caches.
        tracing = torch.compiler.is_compiling()
        index = (_relative_position_index.__wrapped__ if tracing else _relative_position_index)(window, x.device)
        bias = self.bias_table(window)[index].view(n, n, self.num_heads).permute(2, 0, 1)
        attn = attn + bias.unsqueeze(0)
        if any(shifts):
            mask = (_shift_mask.__wrapped__ if tracing else _shift_mask)((Hp, Wp), window, shifts, x.device)
            mask = mask.to(attn.dtype)
            attn = attn.view(-1, mask.shape[0], self.num_heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, n, n)
        out = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(-1, n, C)
        out = self.proj(out)

        x = window_reverse(out.view(-1, window[0], window[1], C), window, Hp, Wp)[:, :H, :W, :]
        if any(shifts):
            x = torch.roll(x, shifts=shifts, dims=(1, 2))
        return x.contiguous()


# --- depth-wise convolutions --------------------------------------------------------------------

def per_sample_depthwise(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Depth-wise conv with a kernel per sample and channel: x (B, C, H, W), weight (B, C, k, k), bias (C,), run as
    one grouped conv with the batch folded into the channels, (1, B*C, H, W) and groups = B*C."""
    B, C, H, W = x.shape
    k = weight.shape[-1]
    out = F.conv2d(x.reshape(1, B * C, H, W), weight.reshape(B * C, 1, k, k), bias.repeat(B), padding=k // 2,
                   groups=B * C)
    return out.view(B, C, H, W)


class _ConvMixer(ElasticMixer):
    """DWNet's mixer branch: 1x1 -> BN -> ReLU -> depth-wise kxk -> BN -> ReLU -> 1x1 -> BN.

    No norm in front (as published); the FFN that follows is pre-normed with BatchNorm. The 1x1
    convs are Linear layers on NHWC tensors (the same maps and FLOPs, no permutes).
    """

    ffn_norm = BatchNormNHWC

    def __init__(self, dim: int, num_heads: int, max_kernel: int) -> None:
        super().__init__()
        if max_kernel % 2 == 0:
            raise ValueError(f"depth-wise conv kernels must be odd, got {max_kernel}")
        self.max_kernel = max_kernel
        self.proj_in = nn.Linear(dim, dim, bias=False)
        self.norm_in = BatchNormNHWC(dim)
        self.norm_dw = BatchNormNHWC(dim)
        self.proj_out = nn.Linear(dim, dim, bias=False)
        self.norm_out = BatchNormNHWC(dim)
        # Zero-init the branch's last BN scale (as in ResNets): the branch starts as identity, like
        # attention's small-init projection, so the residual stream keeps one scale whichever
        # mixers a supernet path mixes. With gamma = 1 a mixed-mixer supernet did not train.
        nn.init.zeros_(self.norm_out.weight)

    def depthwise(self, x: torch.Tensor, kernel: int) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W) depth-wise conv with the given kernel size."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, kernel: int, shift: bool) -> torch.Tensor:
        x = F.relu(self.norm_in(self.proj_in(x)))
        x = self.depthwise(x.permute(0, 3, 1, 2), kernel).permute(0, 2, 3, 1)
        x = F.relu(self.norm_dw(x))
        return self.norm_out(self.proj_out(x))


class DWConvMixer(_ConvMixer):
    """Static depth-wise conv (DWNet). A kernel k is the centre k x k of the largest kernel."""

    def __init__(self, dim: int, num_heads: int, max_kernel: int) -> None:
        super().__init__(dim, num_heads, max_kernel)
        conv = nn.Conv2d(dim, dim, max_kernel, padding=max_kernel // 2, groups=dim)  # for its default init
        self.dw_weight = nn.Parameter(conv.weight.detach().clone())
        self.dw_bias = nn.Parameter(conv.bias.detach().clone())

    def conv_weight(self, kernel: int) -> torch.Tensor:
        return centre_crop(self.dw_weight, kernel)

    def elastic_state(self, kernel: int) -> dict[str, torch.Tensor]:
        return {"dw_weight": self.conv_weight(kernel)}

    def depthwise(self, x: torch.Tensor, kernel: int) -> torch.Tensor:
        return F.conv2d(x, self.conv_weight(kernel), self.dw_bias, padding=kernel // 2, groups=x.shape[1])


class _GeneratedKernelMixer(_ConvMixer):
    """A conv mixer whose kernels a generator emits: ``generator_expand`` outputs ``kernel_units`` kernels
    of K x K (unit-major). A kernel k < K uses the rows of each unit's centre k x k, so one generator
    serves every kernel size, in ``forward`` and in extraction alike."""

    kernel_units: int
    generator_expand: nn.Linear

    def generator_rows(self, kernel: int) -> torch.Tensor:
        return centre_rows(self.kernel_units, self.max_kernel, kernel, self.generator_expand.weight.device)

    def expand(self, h: torch.Tensor, kernel: int) -> torch.Tensor:
        """The generator's last layer, cut for ``kernel``: (..., reduced) -> (..., units * k * k)."""
        if kernel == self.max_kernel:
            return self.generator_expand(h)
        rows = self.generator_rows(kernel)
        return F.linear(h, self.generator_expand.weight[rows], self.generator_expand.bias[rows])

    def elastic_state(self, kernel: int) -> dict[str, torch.Tensor]:
        if kernel == self.max_kernel:
            return {}
        rows = self.generator_rows(kernel)
        return {"generator_expand.weight": self.generator_expand.weight[rows],
                "generator_expand.bias": self.generator_expand.bias[rows]}


class DynamicDWConvMixer(_GeneratedKernelMixer):
    """Homogeneous dynamic depth-wise conv (dynamic DWNet): one k x k kernel per sample and
    channel, generated from the globally pooled input, shared across positions.

    Generator: mean over positions -> Linear C -> C/4 (no bias) -> BN -> ReLU -> Linear C/4 -> C*K*K.
    A kernel k < K uses the generator rows of each channel's centre k x k, so the generator is
    shared by every kernel size. The conv bias is static and zero-initialised. The conv runs as one
    grouped conv with the batch folded into the channels (groups = B*C).
    """

    def __init__(self, dim: int, num_heads: int, max_kernel: int) -> None:
        super().__init__(dim, num_heads, max_kernel)
        reduced = max(1, dim // 4)
        self.generator_reduce = nn.Linear(dim, reduced, bias=False)
        self.generator_norm = nn.BatchNorm1d(reduced)
        self.kernel_units = dim
        self.generator_expand = nn.Linear(reduced, dim * max_kernel * max_kernel)
        self.dw_bias = nn.Parameter(torch.zeros(dim))

    def generate_kernel(self, x: torch.Tensor, kernel: int) -> torch.Tensor:
        """Per-sample kernels (B, C, k, k) for the NCHW input ``x``."""
        B, C = x.shape[:2]
        h = F.relu(self.generator_norm(self.generator_reduce(x.mean(dim=(2, 3)))))
        return self.expand(h, kernel).view(B, C, kernel, kernel)

    def depthwise(self, x: torch.Tensor, kernel: int) -> torch.Tensor:
        return per_sample_depthwise(x, self.generate_kernel(x, kernel), self.dw_bias)


class InhomogeneousDWConvMixer(_GeneratedKernelMixer):
    """Inhomogeneous dynamic depth-wise conv (I-D-DWNet): a k x k kernel at every position, shared by
    a group of channels, generated from the input at that position.

    Generator, per position (the authors' 1x1 convs, as Linear layers): Linear C -> C/4 (bias) -> BN
    -> ReLU -> Linear C/4 -> G*K*K, with G = C // heads groups of ``heads`` consecutive channels (the
    authors pass the head count as the channels per group). No conv bias. A kernel k < K uses the
    generator rows of each group's centre k x k, as the homogeneous variant does.

    The authors run it as a custom CUDA kernel; here it stays NHWC: the k x k windows are a strided
    view of the padded map, multiplied by the kernels and summed (any device, ONNX-exportable).
    """

    def __init__(self, dim: int, num_heads: int, max_kernel: int) -> None:
        super().__init__(dim, num_heads, max_kernel)
        reduced = max(1, dim // 4)
        self.kernel_units = dim // num_heads   # the groups
        self.generator_reduce = nn.Linear(dim, reduced)
        self.generator_norm = BatchNormNHWC(reduced)
        self.generator_expand = nn.Linear(reduced, self.kernel_units * max_kernel * max_kernel)

    @property
    def groups(self) -> int:
        return self.kernel_units

    def generate_kernel(self, x: torch.Tensor, kernel: int) -> torch.Tensor:
        """Per-position kernels (B, H, W, G, k, k) for the NHWC input ``x``."""
        B, H, W, _ = x.shape
        h = F.relu(self.generator_norm(self.generator_reduce(x)))
        return self.expand(h, kernel).view(B, H, W, self.groups, kernel, kernel)

    def apply_kernel(self, x: torch.Tensor, weight: torch.Tensor, *, as_matmul: bool = False) -> torch.Tensor:
        """out[b, h, w, c] = sum_ij x[b, h + i - k//2, w + j - k//2, c] * weight[b, h, w, group(c), i, j],
        zero-padded. ``as_matmul`` computes the same as one batched matmul: slower, but it is what fvcore
        counts (k*k multiply-adds per output, as for a DW conv), while it ignores a multiply and a sum."""
        B, H, W, C = x.shape
        k = weight.shape[-1]
        padded = F.pad(x, (0, 0, k // 2, k // 2, k // 2, k // 2))
        windows = padded.unfold(1, k, 1).unfold(2, k, 1).reshape(B, H, W, self.groups, C // self.groups, k, k)
        if as_matmul:
            flat = windows.reshape(B, H, W, self.groups, C // self.groups, k * k)
            return (flat @ weight.reshape(B, H, W, self.groups, k * k, 1)).reshape(B, H, W, C)
        return (windows * weight.unsqueeze(4)).sum(dim=(-2, -1)).reshape(B, H, W, C)

    def forward(self, x: torch.Tensor, kernel: int, shift: bool) -> torch.Tensor:
        # NHWC throughout (the generator is per position): no permutes, unlike the other conv mixers.
        x = F.relu(self.norm_in(self.proj_in(x)))
        x = self.apply_kernel(x, self.generate_kernel(x, kernel), as_matmul=torch.jit.is_tracing())
        x = F.relu(self.norm_dw(x))
        return self.norm_out(self.proj_out(x))


# --- linear-angular attention -------------------------------------------------------------------

class LinearAngularAttentionMixer(ElasticMixer):
    """Castling-ViT's linear-angular attention, global and linear in the number of tokens N.

    Per head, with L2-normalised q and k, the angular kernel's linear term sim(q, k) = 1/2 + q.k / pi
    gives out_i = (1/2 sum_j v_j + q_i (K^T V) / pi) / (N/2 + q_i (sum_j k_j) / pi): K^T V is computed
    once (d x d), never the N x N map. The denominator is at least N (1/2 - 1/pi) > 0. The high-order
    residual of the kernel is a depth-wise k x k conv on V (no bias; the kernel choice, elastic as in
    ``DWConvMixer``). Pre-normed with LayerNorm, as window attention is; Castling-ViT's auxiliary
    softmax branch (training only) is not included: measured, it did not help (docs/BENCHMARKS.md).
    """

    ffn_norm = nn.LayerNorm

    def __init__(self, dim: int, num_heads: int, max_kernel: int) -> None:
        super().__init__()
        if max_kernel % 2 == 0:
            raise ValueError(f"depth-wise conv kernels must be odd, got {max_kernel}")
        self.num_heads = num_heads
        self.max_kernel = max_kernel
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        conv = nn.Conv2d(dim, dim, max_kernel, padding=max_kernel // 2, groups=dim, bias=False)
        self.dw_weight = nn.Parameter(conv.weight.detach().clone())
        self.proj = nn.Linear(dim, dim)

    def conv_weight(self, kernel: int) -> torch.Tensor:
        return centre_crop(self.dw_weight, kernel)

    def elastic_state(self, kernel: int) -> dict[str, torch.Tensor]:
        return {"dw_weight": self.conv_weight(kernel)}

    def forward(self, x: torch.Tensor, kernel: int, shift: bool) -> torch.Tensor:
        B, H, W, C = x.shape
        N, heads = H * W, self.num_heads
        qkv = self.qkv(self.norm(x)).reshape(B, N, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)                                        # (B, heads, N, d)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        kv = k.transpose(-2, -1) @ v                                   # (B, heads, d, d)
        numerator = 0.5 * v.sum(dim=2, keepdim=True) + (q @ kv) / math.pi
        denominator = 0.5 * N + (q @ k.sum(dim=2).unsqueeze(-1)) / math.pi
        out = (numerator / denominator).transpose(1, 2).reshape(B, H, W, C)
        v_map = v.transpose(2, 3).reshape(B, C, H, W)
        residual = F.conv2d(v_map, self.conv_weight(kernel), padding=kernel // 2, groups=C)
        return self.proj(out + residual.permute(0, 2, 3, 1))


# Each registered mixer's module (searchspace.MIXER_SPECS has the rest of it: short key, cost rule, conv, shift).
MIXERS: dict[str, type[ElasticMixer]] = {
    "window_attention": WindowAttentionMixer,
    "dwconv": DWConvMixer,
    "dynamic_dwconv": DynamicDWConvMixer,
    "linear_angular": LinearAngularAttentionMixer,
    "inhomogeneous_dwconv": InhomogeneousDWConvMixer,
}
if list(MIXERS) != list(MIXER_SPECS):  # a module without its spec, or a spec without its module
    raise ImportError(f"supernet.mixers implements {list(MIXERS)}, the mixer registry (searchspace/mixers.py) "
                      f"holds {list(MIXER_SPECS)}: every mixer needs both, in the same order")
