"""Kernel Inception Distance: torch-fidelity's estimator (Bińkowski et al. 2018).

Unbiased MMD^2 with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over random subsets.
Subsets are drawn exactly as torch-fidelity draws them (numpy RandomState(seed); for each subset, first
set then second set, without replacement), so the same seed gives the same subsets. Kernel values are
computed in float64. When both sets are small enough, the full kernel matrices are computed once and
each subset indexes into them, instead of recomputing three m x m x d products per subset.

Memory: at most three kernel matrices of _GRAM_LIMIT² (864 MB) on the small-set route; above it, the three
subset_size² kernels and the subsets' rows in float64, whatever n (the sets are never copied whole to float64).
"""

from __future__ import annotations

import numpy as np

from sdeval.core.errors import SdevalError
from sdeval.metrics.embeddings import NotEnoughDataError

_GRAM_LIMIT = 6000  # above this many images per set, compute kernels per subset to bound memory


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(x.y / d + 1)^3, in place on the product: one matrix of memory, the same values as the plain expression."""
    k = x @ y.T
    k /= x.shape[1]
    k += 1.0
    k **= 3
    return k


def mmd2_unbiased_from_sums(sum_xx: float, sum_yy: float, sum_xy: float, m: int, n: int) -> float:
    """Unbiased MMD^2 of m and n rows from kernel sums: `sum_xx` and `sum_yy` without their diagonals, `sum_xy` whole.

    The jackknife's leave-outs (metrics/corpus.py) are this of block sums, so the two cannot drift apart."""
    if m == n:  # torch-fidelity's grouping (KID's subsets are of equal size): its numbers, to the bit
        return float((sum_xx + sum_yy) / (m * (m - 1)) - 2.0 * sum_xy / (m * m))
    return float(sum_xx / (m * (m - 1)) + sum_yy / (n * (n - 1)) - 2.0 * sum_xy / (m * n))


def mmd2_unbiased(k_xx: np.ndarray, k_xy: np.ndarray, k_yy: np.ndarray) -> float:
    """Unbiased MMD^2 from kernel matrices (diagonals of k_xx and k_yy excluded)."""
    sum_xx = k_xx.sum() - np.trace(k_xx)
    sum_yy = k_yy.sum() - np.trace(k_yy)
    return mmd2_unbiased_from_sums(sum_xx, sum_yy, k_xy.sum(), k_xx.shape[0], k_yy.shape[0])


def kid(
    features1: np.ndarray, features2: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 2020
) -> tuple[float, float]:
    """Mean and standard deviation of MMD^2 over `subsets` random subsets of `subset_size` from each set."""
    features1, features2 = np.asarray(features1), np.asarray(features2)
    n1, n2 = len(features1), len(features2)
    if subset_size < 2:
        raise SdevalError(f"KID subset size must be at least 2, got {subset_size}")
    if subset_size > min(n1, n2):
        raise NotEnoughDataError(f"KID subset size {subset_size} is larger than the sets ({n1} and {n2} images)")
    rng = np.random.RandomState(seed)
    use_gram = max(n1, n2) <= _GRAM_LIMIT
    if use_gram:
        x = np.asarray(features1, np.float64)
        y = np.asarray(features2, np.float64)
        k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    values = np.empty(subsets)
    for s in range(subsets):
        i = rng.choice(n1, subset_size, replace=False)
        j = rng.choice(n2, subset_size, replace=False)
        if use_gram:
            values[s] = mmd2_unbiased(k_xx[np.ix_(i, i)], k_xy[np.ix_(i, j)], k_yy[np.ix_(j, j)])
        else:
            # Only the subsets in float64: a whole 50k x 2048 set would be 800 MB.
            xs, ys = np.asarray(features1[i], np.float64), np.asarray(features2[j], np.float64)
            values[s] = mmd2_unbiased(polynomial_kernel(xs, xs), polynomial_kernel(xs, ys), polynomial_kernel(ys, ys))
    return float(values.mean()), float(values.std())
