"""Randomly initialised Inception weights, for demos and tests only: numbers made with them mean nothing.

torch-fidelity's default initialisation makes the 2048-d features vanish (every FID reads 0), so
convolutions get Kaiming-normal weights, which keeps activations alive through the 94 layers.
"""

from __future__ import annotations

import io
import os

import torch
from torch import nn
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

from sdeval.core.atomic import write_bytes


class _Skeleton(FeatureExtractorInceptionV3):
    """The network's modules without weights (torch-fidelity's constructor always loads a state dict)."""

    def load_state_dict(self, state_dict, *args, **kwargs):
        if not state_dict:
            return None
        return super().load_state_dict(state_dict, *args, **kwargs)


def random_inception_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A torch-fidelity-format Inception state dict with seeded random weights."""
    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)
    network = _Skeleton("inception-v3-compat", ["2048"], feature_extractor_weights_path=empty)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=generator)
            elif isinstance(module, nn.Linear):
                # Large logits give a non-trivial Inception Score to test against.
                module.weight.normal_(0.0, 30.0 * module.in_features**-0.5, generator=generator)
                module.bias.normal_(0.0, 0.1, generator=generator)
    return {k: v.detach().clone().contiguous() for k, v in network.state_dict().items()}


def save_random_inception_weights(path: str | os.PathLike[str], seed: int = 0) -> None:
    """Write random weights in torch-fidelity's format (a torch state dict file)."""
    buffer = io.BytesIO()
    torch.save(random_inception_state_dict(seed), buffer)
    write_bytes(path, buffer.getvalue())
