"""Checks, normalization and blocking shared by the embedding metrics (CLIP score, R-precision, CMMD, diversity,
precision/recall)."""

from __future__ import annotations

from typing import Any

import numpy as np

from sdeval.metrics.skip import MetricSkip


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


def rows_per_block(cols: int, max_rows: int, max_elements: int) -> int:
    """How many rows of a [rows, cols] block fit in `max_elements` (at least 1, at most `max_rows`)."""
    return max(1, min(max_rows, max_elements // max(cols, 1)))


def fingerprint(features: np.ndarray) -> tuple:
    """A key telling one feature set from another for per-reference caches: shape, float64 sum and the first and
    last rows (cheap next to any pass over distances)."""
    array = np.asarray(features)
    return (array.shape, array.dtype.str, float(array.sum(dtype=np.float64)), array[:2].tobytes(), array[-2:].tobytes())
