"""Network settings: input size, width, classes. Budgets and costs are quoted at DEPLOYMENT."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class NetSettings:
    img_size: int = 224
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: int = 96       # C: stage i has width C * 2**(i-1)
    patch_size: int = 4       # the stem's patchify conv kernel and stride
    mlp_ratio: float = 4.0
    head_dim: int = 32        # window attention uses dim // head_dim heads (at least 1)
    drop_path_rate: float = 0.0

    def __post_init__(self) -> None:
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")

    def stage_dims(self, num_stages: int) -> tuple[int, ...]:
        return tuple(self.embed_dim * 2 ** i for i in range(num_stages))

    def num_heads(self, dim: int) -> int:
        return max(1, dim // self.head_dim)

    def mlp_hidden(self, dim: int) -> int:
        return int(dim * self.mlp_ratio)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "NetSettings":
        return cls(**data)

    def replace(self, **changes) -> "NetSettings":
        return replace(self, **changes)


# 224 x 224 x 3, 1000 classes, C = 96: the setting of Swin-T / DWNet-T, where budgets are quoted.
DEPLOYMENT = NetSettings()
# Small enough to train on 2 CPU cores in minutes: 32 px (MNIST digits padded from 28), patch 2.
SMALL = NetSettings(img_size=32, in_chans=1, num_classes=10, embed_dim=16, patch_size=2)
