"""FD_CLIP: the Fréchet distance on CLIP image embeddings instead of Inception's pool3 features (Kynkäänniemi et al.
2023, "The Role of ImageNet Classes in Fréchet Inception Distance", and clean-fid's `clip_vit_b_32` mode).

The embeddings are the ones CMMD reads (the `--cmmd-*` model, L2-normalised, stored in references as
`reference_cmmd_image`): no second CLIP pass. The maths is FID's (`metrics/fid.py`: float64 sufficient statistics,
the symmetric trace route, the n x n route for small sets).
"""

from __future__ import annotations

import numpy as np

from sdeval.metrics.fid import FrechetState, fid_from_features


def fd_clip(features: np.ndarray, reference_features: np.ndarray) -> float:
    """Fréchet distance of CLIP image embeddings `features` [n, d] to the reference's [m, d]."""
    ref = np.asarray(reference_features)
    return fid_from_features(features, FrechetState.from_features(ref), reference_features=ref)


def small_set_warning(n: int, dim: int) -> str | None:
    """The warning a result carries when a set has fewer images than embedding dimensions (biased upward)."""
    if n >= dim:
        return None
    return (
        f"FD_CLIP: {n} images is fewer than the {dim} embedding dimensions; the covariance is rank-deficient and the "
        "distance is biased upward. Use at least as many images as dimensions (10k+ to compare)."
    )
