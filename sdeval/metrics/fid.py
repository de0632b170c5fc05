"""Fréchet distance (FID) from mergeable float64 sufficient statistics.

The state is (n, sum, sum of outer products), so shards merge by addition in any order. The trace of
sqrt(S1 S2) goes by the symmetric route: with S1 = U diag(w) U^T, the matrix B = U diag(sqrt(w)) gives
B^T S2 B, which is symmetric positive semi-definite and has the eigenvalues of S1 S2. Its eigvalsh is real;
negatives (round-off) are clipped. Columns of B with zero eigenvalue are dropped first, which makes the
rank-deficient case (n < d) both cheaper and better conditioned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sdeval.errors import SdevalError


@dataclass
class FrechetState:
    """Sufficient statistics of a set of feature vectors, accumulated in float64."""

    n: int
    sum: np.ndarray  # [d]
    sum_outer: np.ndarray  # [d, d]

    @classmethod
    def empty(cls, dim: int) -> FrechetState:
        return cls(0, np.zeros(dim, np.float64), np.zeros((dim, dim), np.float64))

    @classmethod
    def from_features(cls, features: np.ndarray, chunk: int = 4096) -> FrechetState:
        state = cls.empty(features.shape[1])
        for start in range(0, len(features), chunk):
            state.update(features[start : start + chunk])
        return state

    @property
    def dim(self) -> int:
        return self.sum.shape[0]

    def update(self, features: np.ndarray) -> None:
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise SdevalError(f"expected features of shape [n, {self.dim}], got {list(x.shape)}")
        self.n += x.shape[0]
        self.sum += x.sum(axis=0)
        self.sum_outer += x.T @ x

    def merge(self, other: FrechetState) -> FrechetState:
        if other.dim != self.dim:
            raise SdevalError(f"cannot merge Fréchet states of dimension {self.dim} and {other.dim}")
        return FrechetState(self.n + other.n, self.sum + other.sum, self.sum_outer + other.sum_outer)

    def mean(self) -> np.ndarray:
        return self.sum / self.n

    def covariance(self) -> np.ndarray:
        """Unbiased sample covariance (divides by n - 1, as numpy.cov and the peer tools do)."""
        if self.n < 2:
            raise SdevalError(f"a covariance needs at least 2 images, got {self.n}")
        mu = self.mean()
        cov = (self.sum_outer - self.n * np.outer(mu, mu)) / (self.n - 1)
        return (cov + cov.T) / 2  # exact symmetry for eigh


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr(sqrt(sigma1 @ sigma2)) for symmetric PSD matrices, in float64, never complex or negative."""
    w, u = np.linalg.eigh(np.asarray(sigma1, dtype=np.float64))
    keep = w > max(w.max(initial=0.0), 0.0) * w.shape[0] * np.finfo(np.float64).eps
    b = u[:, keep] * np.sqrt(w[keep])
    m = b.T @ np.asarray(sigma2, dtype=np.float64) @ b
    eig = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(eig, 0.0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """|mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr(sqrt(sigma1 sigma2)), clipped at 0."""
    diff = np.asarray(mu1, np.float64) - np.asarray(mu2, np.float64)
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2)
    return float(max(value, 0.0))


def fid_from_states(a: FrechetState, b: FrechetState) -> float:
    """FID between two feature sets given their states."""
    return frechet_distance(a.mean(), a.covariance(), b.mean(), b.covariance())
