"""FD_CLIP: the Fréchet distance on CLIP image embeddings instead of Inception's pool3 features (Kynkäänniemi et al.
2023, "The Role of ImageNet Classes in Fréchet Inception Distance", and clean-fid's `clip_vit_b_32` mode).

The embeddings are the ones CMMD reads (the `--cmmd-*` model, L2-normalised, stored in references as
`reference_cmmd_image`): no second CLIP pass. The maths is FID's (`metrics/fid.py`: float64 sufficient statistics,
the symmetric trace route, the n x n route for small sets).
"""

from __future__ import annotations

import numpy as np

from sdeval.metrics.fid import fd_of_rows
from sdeval.metrics.fid import small_set_warning as frechet_small_set_warning


def fd_clip(features: np.ndarray, reference_features: np.ndarray) -> float:
    """Fréchet distance of CLIP image embeddings `features` [n, d] to the reference's [m, d]."""
    return fd_of_rows(features, reference_features)


def small_set_warning(n: int, dim: int) -> str | None:
    """The warning a result carries when a set has fewer images than embedding dimensions (biased upward)."""
    return frechet_small_set_warning("FD_CLIP", n, dim, "embedding dimensions")
