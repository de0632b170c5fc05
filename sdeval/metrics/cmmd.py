"""CMMD (Jayasumana et al. 2024, "Rethinking FID"): Gaussian-RBF MMD between CLIP image embeddings."""

from __future__ import annotations

from typing import Literal

import numpy as np

from sdeval.metrics.embeddings import NotEnoughDataError, as_matrix, rows_per_block

#: Bandwidth of the Gaussian RBF kernel, as in the paper and its reference code.
SIGMA = 10.0
#: The paper multiplies MMD^2 by 1000 to make the numbers readable.
SCALE = 1000.0
DEFAULT_CHUNK = 2048
# Cap on one block of the kernel matrix (rows x len(b)), ~128 MB in float64, whatever the set sizes.
_MAX_BLOCK_ELEMENTS = 1 << 24

Estimator = Literal["biased", "unbiased"]


def cmmd(
    x: np.ndarray,
    y: np.ndarray,
    *,
    sigma: float = SIGMA,
    scale: float = SCALE,
    estimator: Estimator = "biased",
    chunk_size: int = DEFAULT_CHUNK,
) -> float:
    """CMMD between two sets of CLIP image embeddings (rows), computed in float64.

    `scale * (mean k(x, x') + mean k(y, y') - 2 mean k(x, y))` with `k(a, b) = exp(-|a-b|^2 / (2 sigma^2))`.

    `estimator="biased"` (default) averages over all pairs, diagonals included: the
    minimum-variance estimator of Gretton et al. 2012 (Eq. 5) that the paper's reference code
    (google-research `cmmd/distance.py`, `mmd`) computes, so numbers compare with published CMMD.
    `estimator="unbiased"` drops the diagonals of the x-x and y-y terms (divides by m(m-1)); it can
    be negative, and for two identical sets it equals -2(m^2 - S)/(m^2 (m-1)) * scale, S being the sum
    of the kernel matrix, rather than 0. Embeddings are used as given; the reference feeds
    L2-normalized CLIP embeddings, which is what ClipEmbedder produces.
    """
    x = as_matrix(x, "x")
    y = as_matrix(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"embedding sizes differ: x has {x.shape[1]}, y has {y.shape[1]}")
    if sigma <= 0:
        raise ValueError("sigma must be positive")
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    if estimator not in ("biased", "unbiased"):
        raise ValueError(f"estimator must be 'biased' or 'unbiased', got {estimator!r}")
    m, n = len(x), len(y)
    minimum = 2 if estimator == "unbiased" else 1
    if m < minimum or n < minimum:
        raise NotEnoughDataError(f"CMMD ({estimator}) needs at least {minimum} embeddings per set, got {m} and {n}")
    gamma = rbf_gamma(sigma)
    unbiased = estimator == "unbiased"
    sum_xx = kernel_sum(x, x, gamma, chunk_size, skip_diagonal=unbiased)
    sum_yy = kernel_sum(y, y, gamma, chunk_size, skip_diagonal=unbiased)
    return scale * mmd2_from_sums(sum_xx, sum_yy, kernel_sum(x, y, gamma, chunk_size), m, n, estimator)


def mmd2_from_sums(sum_xx: float, sum_yy: float, sum_xy: float, m: int, n: int, estimator: Estimator) -> float:
    """MMD^2 (unscaled) of m and n rows from kernel sums; for `estimator="unbiased"`, `sum_xx` and `sum_yy` are
    without their diagonals. The jackknife's leave-outs (metrics/corpus.py) are this of block sums."""
    if estimator == "biased":
        k_xx, k_yy = sum_xx / (m * m), sum_yy / (n * n)
    else:
        k_xx, k_yy = sum_xx / (m * (m - 1)), sum_yy / (n * (n - 1))
    return float(k_xx + k_yy - 2.0 * (sum_xy / (m * n)))


def rbf_gamma(sigma: float = SIGMA) -> float:
    """gamma = 1 / (2 sigma^2) of k(a, b) = exp(-gamma |a - b|^2)."""
    return 1.0 / (2.0 * sigma**2)


def rbf_kernel(a: np.ndarray, b: np.ndarray, gamma: float, b_sq: np.ndarray | None = None) -> np.ndarray:
    """exp(-gamma |a_i - b_j|^2) [len(a), len(b)] of float64 rows. Squared distances use the expansion
    |a|^2 + |b|^2 - 2 a.b, as the reference does, clipped at 0 against rounding; `b_sq`: b's squared norms, if
    already computed."""
    b_norms = b_sq if b_sq is not None else np.einsum("ij,ij->i", b, b)
    sq = np.einsum("ij,ij->i", a, a)[:, None] + b_norms[None, :] - 2.0 * (a @ b.T)
    return np.exp(-gamma * np.maximum(sq, 0.0))


def kernel_sum(
    a: np.ndarray, b: np.ndarray, gamma: float, chunk_size: int = DEFAULT_CHUNK, skip_diagonal: bool = False
) -> float:
    """Sum of `rbf_kernel` over all (i, j), at most `chunk_size` rows of `a` at a time.

    `skip_diagonal` leaves out i == j (for a == b).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    b_sq = np.einsum("ij,ij->i", b, b)
    step = rows_per_block(len(b), chunk_size, _MAX_BLOCK_ELEMENTS)
    total = 0.0
    for start in range(0, len(a), step):
        block = a[start : start + step]
        kernel = rbf_kernel(block, b, gamma, b_sq)
        if skip_diagonal:
            rows = np.arange(len(block))
            kernel[rows, start + rows] = 0.0
        total += float(kernel.sum())
    return total
