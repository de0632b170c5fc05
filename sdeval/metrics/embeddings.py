"""Checks and normalization shared by the embedding metrics (CLIP score, R-precision, CMMD, diversity)."""

from __future__ import annotations

from typing import Any

import numpy as np

from sdeval.metrics.registry import MetricSkip


class NotEnoughDataError(MetricSkip):
    """A metric cannot be computed on this input (too few images or prompts); the message says what."""


def as_matrix(values: Any, name: str) -> np.ndarray:
    """`values` as a finite float64 [N, D] array; ValueError for a wrong shape (a caller's bug), MetricSkip for
    non-finite values (a model's degenerate output: the metric is listed as skipped with this reason)."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D [N, D] array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise MetricSkip(f"{name} contains NaN or infinite values")
    return array


def l2_normalize(values: Any, name: str) -> np.ndarray:
    """Rows scaled to unit length in float64. A zero row has no direction: the metric cannot be computed."""
    array = as_matrix(values, name)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise MetricSkip(f"{name} has {int(np.sum(norms == 0))} all-zero row(s); cosine is undefined")
    return array / norms
