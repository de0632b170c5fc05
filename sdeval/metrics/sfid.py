"""sFID (Nash et al. 2021, "Generating images with sparse representations"): FID's Fréchet distance on Inception's
spatial features instead of its pool3 vector, so that it moves with the spatial arrangement of mid-level features
that pooling averages away.

The features are guided-diffusion's: the first 7 channels of TF Inception's `mixed_6/conv` (17 x 17), 2023 values
per image (features/inception_spatial.py). The maths is FID's, from `metrics/fid.py` (float64 sufficient statistics,
the symmetric trace route, the n x n route for sets smaller than 2023).
"""

from __future__ import annotations

import numpy as np

from sdeval.metrics.fid import fd_of_rows


def sfid(features: np.ndarray, reference: np.ndarray) -> float:
    """Fréchet distance of spatial features `features` [n, 2023] to the reference's rows [m, 2023]."""
    return fd_of_rows(features, reference)
