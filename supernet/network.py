"""The mixer network: stem -> 4 stages of elastic blocks -> LayerNorm -> average pool -> linear.

One class, ``MixerNet``, serves both roles. Built over the full search space it is the
weight-sharing supernet (``set_active`` picks the path, ``extract`` cuts out a sub-network);
built over the one-arch space of ``SearchSpace.singleton(arch)`` (``MixerNet.from_arch``) it is
that arch's standalone network, with exactly the published blocks and parameter count.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, PatchEmbed, trunc_normal_
from timm.models.swin_transformer import PatchMerging
from torch import nn

from searchspace import Arch, NetSettings, SearchSpace, StageChoice, extreme_archs
from searchspace.arch import entry_name
from searchspace.space import StageSpace

from .mixers import MIXERS


class MixerBlock(nn.Module):
    """x = x + DropPath(mixer(x)); x = x + DropPath(MLP(norm(x))).

    The supernet's block holds one branch per mixer; the MLP is shared by all of them, each
    mixer keeps its own FFN norm (LayerNorm for attention, BatchNorm for the convs, as published).
    """

    def __init__(self, dim: int, mixers: Sequence[str], max_kernel: int, num_heads: int, mlp_hidden: int,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        self.mixers = nn.ModuleDict({m: MIXERS[m](dim, num_heads, max_kernel) for m in mixers})
        self.ffn_norms = nn.ModuleDict({m: MIXERS[m].ffn_norm(dim) for m in mixers})
        self.mlp = Mlp(dim, mlp_hidden, act_layer=nn.GELU)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, mixer: str, kernel: int, shift: bool) -> torch.Tensor:
        x = x + self.drop_path(self.mixers[mixer](x, kernel, shift))
        return x + self.drop_path(self.mlp(self.ffn_norms[mixer](x)))

    @torch.no_grad()
    def inherit(self, source: "MixerBlock", mixer: str, kernel: int) -> None:
        self.mixers[mixer].inherit(source.mixers[mixer], kernel)
        self.ffn_norms[mixer].load_state_dict(source.ffn_norms[mixer].state_dict())
        self.mlp.load_state_dict(source.mlp.state_dict())


class Reproject(nn.Module):
    """Pool 1 at a stage entry: keep the resolution, change the width (LayerNorm + Linear)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.reduction = nn.Linear(in_dim, out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduction(self.norm(x))


class MaxPoolEntry(nn.Module):
    """HVT's pooling at a stage entry: max pool 3x3, stride 2, padding 1 over the token map (the map
    halves, rounding up, as patch merging's does), then the width change of pool 1."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.reproject = nn.Identity() if in_dim == out_dim else Reproject(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(x.permute(0, 3, 1, 2), kernel_size=3, stride=2, padding=1).permute(0, 2, 3, 1)
        return self.reproject(x)


def make_transition(pool: int, pool_op: str, in_dim: int, out_dim: int) -> nn.Module:
    if pool == 2 and pool_op == "maxpool":
        return MaxPoolEntry(in_dim, out_dim)
    if pool == 2:
        return PatchMerging(in_dim, out_dim)  # timm's: 2x2 concat, LayerNorm(4C), Linear(4C -> out)
    return nn.Identity() if in_dim == out_dim else Reproject(in_dim, out_dim)


class MixerStage(nn.Module):
    """A stage: its entry (one module per pooling ratio and pool op), then the first ``depth`` blocks."""

    def __init__(self, in_dim: int, dim: int, space: StageSpace, num_heads: int, mlp_hidden: int,
                 drop_paths: Sequence[float]) -> None:
        super().__init__()
        self.transitions = nn.ModuleDict({entry_name(p, op): make_transition(p, op, in_dim, dim)
                                          for p, op in space.entries()})
        self.blocks = nn.ModuleList(
            MixerBlock(dim, space.mixers, max(space.kernels), num_heads, mlp_hidden, drop_paths[j])
            for j in range(max(space.depths)))

    def forward(self, x: torch.Tensor, choice: StageChoice) -> torch.Tensor:
        x = self.transitions[choice.entry](x)
        for j in range(choice.depth):
            # Swin shifts the windows in every second block; conv mixers ignore the flag.
            x = self.blocks[j](x, choice.mixer, choice.kernel, shift=j % 2 == 1)
        return x

    @torch.no_grad()
    def inherit(self, source: "MixerStage", choice: StageChoice) -> None:
        key = choice.entry
        self.transitions[key].load_state_dict(source.transitions[key].state_dict())
        for j in range(choice.depth):
            self.blocks[j].inherit(source.blocks[j], choice.mixer, choice.kernel)


class MixerNet(nn.Module):
    """The network of a search space at the given settings.

    Over a multi-arch space this is the supernet: the active arch (validated data, set by
    ``set_active``; the dearest arch until then) decides the path. Forward never changes it.
    """

    def __init__(self, space: SearchSpace, settings: NetSettings) -> None:
        super().__init__()
        self.space = space
        self.settings = settings
        dims = settings.stage_dims(space.num_stages)
        self.num_features = dims[-1]
        self.patch_embed = PatchEmbed(settings.img_size, settings.patch_size, settings.in_chans, settings.embed_dim,
                                      norm_layer=nn.LayerNorm, output_fmt="NHWC", strict_img_size=False)
        max_depths = [max(s.depths) for s in space.stages]
        rates = torch.linspace(0, settings.drop_path_rate, sum(max_depths)).tolist()
        stages, in_dim, first = [], settings.embed_dim, 0
        for stage_space, dim, depth in zip(space.stages, dims, max_depths):
            stages.append(MixerStage(in_dim, dim, stage_space, settings.num_heads(dim), settings.mlp_hidden(dim),
                                     rates[first:first + depth]))
            in_dim, first = dim, first + depth
        self.stages = nn.ModuleList(stages)
        self.norm = nn.LayerNorm(self.num_features)
        self.head = nn.Linear(self.num_features, settings.num_classes)
        self.apply(_init_weights)
        self._active = next(iter(space)) if space.size() == 1 else extreme_archs(space, settings)[1]

    @classmethod
    def from_arch(cls, arch: Arch, settings: NetSettings) -> "MixerNet":
        """The standalone network of one arch."""
        return cls(SearchSpace.singleton(arch), settings)

    def no_weight_decay(self) -> set[str]:
        # As Swin: no weight decay on relative position bias tables (timm's optimizer factory asks).
        return {n for n, _ in self.named_parameters() if n.endswith("relative_position_bias_table")}

    @property
    def active_arch(self) -> Arch:
        return self._active

    def set_active(self, arch: Arch) -> None:
        """Select the path that ``forward`` runs. Raises SpaceError for a choice outside the space."""
        self._active = self.space.validate(arch)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for stage, choice in zip(self.stages, self._active.stages):
            x = stage(x, choice)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.mean(dim=(1, 2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @torch.no_grad()
    def extract(self, arch: Arch) -> "MixerNet":
        """The standalone network of ``arch`` with the weights (and BatchNorm statistics) inherited
        from this supernet. Statistics are shared by all paths here, so recalibrate before use."""
        self.space.validate(arch)
        net = MixerNet.from_arch(arch, self.settings).to(next(self.parameters()).device)
        net.patch_embed.load_state_dict(self.patch_embed.state_dict())
        for mine, theirs, choice in zip(net.stages, self.stages, arch.stages):
            mine.inherit(theirs, choice)
        net.norm.load_state_dict(self.norm.state_dict())
        net.head.load_state_dict(self.head.state_dict())
        return net.train(self.training)


def _init_weights(module: nn.Module) -> None:
    # Swin's init for linear layers; convs and norms keep PyTorch's defaults.
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
