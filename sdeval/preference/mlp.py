"""The linear MLP head that ImageReward and the LAION aesthetic predictor v2 share (same layers, same key names)."""

from __future__ import annotations

import torch
from torch import nn


class RewardMLP(nn.Module):
    """Linear(d,1024), Dropout(0.2), Linear(1024,128), Dropout(0.2), Linear(128,64), Dropout(0.1), Linear(64,16),
    Linear(16,1): no activations, as both originals (their ReLUs are commented out).

    Keys are `layers.{0,2,4,6,7}.{weight,bias}`, as in `sac+logos+ava1-l14-linearMSE.pth` and under `mlp.` in
    ImageReward.pt. In eval mode the dropouts are identities, so the head is one affine map of its input.
    """

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.in_features = in_features
        self.layers = nn.Sequential(
            nn.Linear(in_features, 1024),
            nn.Dropout(0.2),
            nn.Linear(1024, 128),
            nn.Dropout(0.2),
            nn.Linear(128, 64),
            nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, in_features] -> [N] raw scores."""
        return self.layers(x).squeeze(-1)


def head_input_size(state: dict[str, object], prefix: str = "", default: int = 768) -> int:
    """The input size a checkpoint's head was trained on (columns of its first layer), else `default`."""
    first = state.get(f"{prefix}layers.0.weight")
    if isinstance(first, torch.Tensor) and first.ndim == 2:
        return int(first.shape[1])
    return default
