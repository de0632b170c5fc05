"""FD_DINOv2 (Stein et al. 2023): the Fréchet distance on DINOv2 ViT-L/14 features instead of Inception's.

The maths is FID's, from `metrics/fid.py` (float64 sufficient statistics, the symmetric trace route, the n x n route
for small sets); only the features differ (`features/dinov2.py`, 1024-d). A reference is kept as a FrechetState of
its DINOv2 features, so shards merge by addition as FID's do.
"""

from __future__ import annotations

import numpy as np

from sdeval.metrics.fid import FrechetState, fd_of_rows, fid_from_features
from sdeval.metrics.fid import small_set_warning as frechet_small_set_warning


def fd_dinov2(
    features: np.ndarray,
    reference: FrechetState | np.ndarray,
    reference_features: np.ndarray | None = None,
) -> float:
    """Fréchet distance of `features` [n, d] to the reference: its FrechetState, or its feature rows.

    `reference_features`, with a state, are the rows it was accumulated from (optional; lets a reference of fewer
    images than dimensions take the cheaper n x n route, as `fid_from_features` documents).
    """
    if isinstance(reference, FrechetState):
        return fid_from_features(features, reference, reference_features=reference_features)
    return fd_of_rows(features, reference)


def small_set_warning(n: int, dim: int) -> str | None:
    """The warning a result carries when a set has fewer images than feature dimensions (biased upward)."""
    return frechet_small_set_warning("FD_DINOv2", n, dim)
