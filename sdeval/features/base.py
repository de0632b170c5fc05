"""The interface every feature extractor implements, so one decode pass can feed them all."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch


class FeatureExtractor(Protocol):
    """An image model that turns decoded images into named feature arrays.

    The scoring pipeline decodes each image once (8-bit RGB, HxWx3 uint8), calls `preprocess` in the
    decode workers, batches the resulting tensors (all of one shape), and calls `extract` in the main
    process. Outputs are cached per (image content hash, `cache_key`).
    """

    #: Identity of the extractor's outputs: name, weights sha256, preprocessing. Part of every cache key.
    cache_key: str

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        """Turn one decoded HxWx3 uint8 image into the model's input tensor (runs in worker processes)."""
        ...

    def extract(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the model on a batch of preprocessed tensors; returns float32 [N, D] arrays by feature name."""
        ...

    def protocol(self) -> dict[str, Any]:
        """Everything about this extractor that moves a number: name, weights sha256, preprocessing, size."""
        ...
