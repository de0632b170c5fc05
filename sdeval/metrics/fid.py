"""Fréchet distance (FID) from mergeable float64 sufficient statistics.

The state is (n, sum, sum of outer products), so shards merge by addition in any order. The trace of
sqrt(S1 S2) goes by the symmetric route: with S1 = U diag(w) U^T, the matrix B = U diag(sqrt(w)) gives
B^T S2 B, which is symmetric positive semi-definite and has the eigenvalues of S1 S2. Its eigvalsh is real;
negatives (round-off) are clipped. Columns of B with zero eigenvalue are dropped first, which makes the
rank-deficient case (n < d) both cheaper and better conditioned.

Low-rank route (fid_from_features): a set of n < d images (a grid cell of 40 at d = 2048) has a covariance of
rank n - 1, and the non-zero spectrum of S1 S2 equals that of X1 S2 X1^T / (n - 1), X1 the centred n x d
features. The trace then comes from an (n - 1) x (n - 1) eigvalsh instead of a d x d eigh (at d = 2048,
n = 40 on 2 cores: about 0.01 s against 0.7 s idle, several seconds under load); it equals the d x d route to
rounding. The all-ones direction that centring zeroes is projected out exactly, and eigenvalues under a
relative eps cut are dropped, so no square root of round-off (1e-8 relative) enters the sum.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sdeval.core.errors import SdevalError
from sdeval.metrics.embeddings import NotEnoughDataError, fingerprint


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


def _round_off(eig: np.ndarray) -> float:
    """The relative cut max(eig) * len * eps: eigenvalues at or below it are round-off of a zero, whose square root
    would add ~1e-8 relative error to a trace."""
    return max(eig.max(initial=0.0), 0.0) * len(eig) * np.finfo(np.float64).eps


def psd_root(sigma: np.ndarray) -> np.ndarray:
    """B = U sqrt(w) with sigma = U diag(w) U^T = B B^T, the columns of round-off eigenvalues dropped ([d, d'])."""
    return root_from_eigh(*np.linalg.eigh(np.asarray(sigma, dtype=np.float64)))


def root_from_eigh(w: np.ndarray, u: np.ndarray) -> np.ndarray:
    """`psd_root` from an eigen-decomposition already made (eigh's eigenvalues w and eigenvectors u): the same
    bits as psd_root of that matrix, so a stored decomposition gives the FID a fresh one gives."""
    keep = w > _round_off(w)
    return u[:, keep] * np.sqrt(w[keep])


def trace_sqrt_psd(m: np.ndarray) -> float:
    """tr(sqrt(m)) of a symmetric PSD matrix (symmetrised first), the eigenvalues of round-off cut."""
    eig = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(eig[eig > _round_off(eig)]).sum())


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr(sqrt(sigma1 @ sigma2)) for symmetric PSD matrices, in float64, never complex or negative."""
    b = psd_root(sigma1)
    # When sigma2 has lower rank than sigma1, m's zero eigenvalues come back as round-off: trace_sqrt_psd cuts them
    # as psd_root cut sigma1's.
    return trace_sqrt_psd(b.T @ np.asarray(sigma2, dtype=np.float64) @ b)


def frechet_from_traces(diff: np.ndarray, trace1: float, trace2: float, trace_sqrt: float) -> float:
    """|diff|^2 + trace1 + trace2 - 2 trace_sqrt, clipped at 0: the Fréchet distance from its parts (one formula
    for every route, the jackknife's included)."""
    return float(max(diff @ diff + trace1 + trace2 - 2.0 * trace_sqrt, 0.0))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """|mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr(sqrt(sigma1 sigma2)), clipped at 0."""
    diff = np.asarray(mu1, np.float64) - np.asarray(mu2, np.float64)
    return frechet_from_traces(diff, np.trace(sigma1), np.trace(sigma2), trace_sqrt_product(sigma1, sigma2))


def fid_from_states(a: FrechetState, b: FrechetState) -> float:
    """FID between two feature sets given their states."""
    return frechet_distance(a.mean(), a.covariance(), b.mean(), b.covariance())


@dataclass(frozen=True)
class ReferenceRoot:
    """The reference side of FID, decomposed once: mean, trace, and a factor B with Σ_ref = B B^T: U sqrt(w) from an
    eigh, or a small reference's centred rows (`from_features`)."""

    mean: np.ndarray
    trace: float
    b: np.ndarray  # [d, d'] (eigh: columns of zero eigenvalue dropped; rows: d' = n - 1)

    @classmethod
    def from_features(cls, features: np.ndarray) -> ReferenceRoot:
        """The root of a reference's rows. Of fewer images than dimensions, B = X'^T / sqrt(n - 1) from the centred
        rows (`centred_rows`): B B^T is the covariance, which is all the routes read (each takes the spectrum of
        B^T Σ B, the non-zero one of Σ Σ_ref), with n - 1 columns and no d x d eigh (seconds at d = 2048)."""
        x = np.asarray(features)
        state = FrechetState.from_features(x)
        if state.n >= state.dim:
            return cls.from_state(state)
        b = centred_rows(x).T / np.sqrt(state.n - 1)  # x's shape: checked by FrechetState.from_features
        return cls(state.mean(), float(np.trace(state.covariance())), b)

    @classmethod
    def from_state(cls, state: FrechetState) -> ReferenceRoot:
        sigma = state.covariance()
        return cls(state.mean(), float(np.trace(sigma)), psd_root(sigma))

    @classmethod
    def from_eigh(cls, state: FrechetState, w: np.ndarray, u: np.ndarray) -> ReferenceRoot:
        """`from_state` with the eigen-decomposition of the state's covariance given (a reference file's): the same
        bits when (w, u) is eigh of that covariance, without its d x d eigh."""
        return cls(state.mean(), float(np.trace(state.covariance())), root_from_eigh(w, u))


_ROOTS: dict[tuple, ReferenceRoot] = {}


def reference_root(reference: np.ndarray) -> ReferenceRoot:
    """The reference's eigen-decomposition, kept for the next call on the same reference (cells share one): the one
    a reference file stores (`keep_reference_root`), else computed from the rows."""
    ref = np.asarray(reference)
    key = fingerprint(ref)
    if key not in _ROOTS:
        _ROOTS.clear()  # one reference at a time: a d = 2048 root is 32 MB
        _ROOTS[key] = ReferenceRoot.from_features(ref)
    return _ROOTS[key]


def keep_reference_root(reference: np.ndarray, root: ReferenceRoot) -> None:
    """Make `root` the one `reference_root` gives for these rows: a reference file's stored decomposition, checked
    by the loader to be of the Fréchet state of these very rows."""
    _ROOTS.clear()
    _ROOTS[fingerprint(np.asarray(reference))] = root


def _rows(features: np.ndarray, dim: int, what: str) -> np.ndarray:
    """`features` as an [n, dim] array, or a clear error (numpy's own would name neither set nor shape).

    Not converted to float64 here: a 50k-image pool would take 800 MB; callers convert what they use."""
    x = np.asarray(features)
    if x.ndim != 2 or x.shape[1] != dim:
        raise SdevalError(f"expected {what} of shape [n, {dim}], got {list(x.shape)}")
    return x


def trace_sqrt_product_low_rank(features1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr(sqrt(sigma1 sigma2)) with sigma1 the covariance of `features1` (n1 < d rows), from an n1 - 1 square problem.

    With X1 the centred features, sigma1 = X1^T X1 / (n1 - 1), and sigma1 sigma2 has the non-zero spectrum
    of X1 sigma2 X1^T / (n1 - 1) (AB and BA share theirs): a small symmetric PSD matrix, so a small grid's
    cells need no d x d eigen-decomposition (0.7 s to seconds each at d = 2048 on 2 cores).
    """
    sigma2 = np.asarray(sigma2, dtype=np.float64)
    if sigma2.ndim != 2 or sigma2.shape[0] != sigma2.shape[1]:
        raise SdevalError(f"expected a square covariance, got shape {list(sigma2.shape)}")
    x = centred_rows(_rows(features1, sigma2.shape[0], "features"))
    # Zero eigenvalues left (sigma2 of rank below n - 1) come back as round-off of either sign: trace_sqrt_psd drops
    # them rather than add the square root of noise.
    return trace_sqrt_psd((x @ sigma2) @ x.T / len(x))


def centred_rows(features: np.ndarray) -> np.ndarray:
    """X' [n - 1, d] in float64 with X'^T X' = X^T X, X the n rows centred: the covariance is X'^T X' / (n - 1).

    Centring leaves X of rank n - 1 at most, along the all-ones vector: its zero eigenvalue would come back from an
    eigvalsh as +-eps |M| and add sqrt(eps |M|) (1e-8 relative) to a trace. A Householder reflector taking 1/sqrt(n)
    to e1 has its other n - 1 rows orthonormal and orthogonal to 1: keeping those rows projects that direction out
    exactly (X^T X is unchanged)."""
    x = np.asarray(features, dtype=np.float64)
    n = len(x)
    if n < 2:
        raise SdevalError(f"a covariance needs at least 2 images, got {n}")
    x = x - x.mean(axis=0)
    v = np.full(n, 1.0 / np.sqrt(n))
    v[0] -= 1.0
    return (x - np.outer(v, v @ x) * (2.0 / (v @ v)))[1:]


def fid_from_features(
    features: np.ndarray,
    reference: FrechetState,
    reference_features: np.ndarray | None = None,
    root: Callable[[], ReferenceRoot] | None = None,
) -> float:
    """FID of `features` against a reference state; takes the n x n route when either set has fewer images
    than dimensions (equal to the d x d route to rounding; tested), else the d x d route.

    `reference_features`, where given, must be the rows `reference` was accumulated from; it lets a reference of
    fewer images than dimensions take the n x n route too (then checked: same shape, same column sums to float32
    rounding). Of two small sets the smaller one's problem is solved.

    `root`, where given, gives the reference's root (called only on the d x d route): that route then takes the
    square root on the reference's side, B^T Σ_gen B with Σ_ref = B B^T, so a reference decomposed once (or stored
    decomposed in its file) leaves each cell one eigvalsh instead of an eigh and an eigvalsh.
    """
    x = _rows(features, reference.dim, "features")
    state = FrechetState.from_features(x)
    if state.n < 2 or reference.n < 2:
        raise NotEnoughDataError(f"FID needs at least 2 images per set, got {state.n} and {reference.n}")
    small_reference = None  # the reference's rows where it has fewer images than dimensions, else None
    if reference_features is not None and reference.n < reference.dim:
        # Checked only where used: a large reference's rows are never read here.
        small_reference = np.asarray(_rows(reference_features, reference.dim, "reference features"), np.float64)
        # A mismatched pair would mix one set's trace term with another's mean and covariance, silently.
        # The tolerance admits rows stored in float32 while the state was summed from float64.
        scale = np.abs(small_reference).sum(axis=0)
        if len(small_reference) != reference.n or not np.all(
            np.abs(small_reference.sum(axis=0) - reference.sum) <= 1e-5 * scale + 1e-12
        ):
            raise SdevalError(
                f"reference_features ({len(small_reference)} rows) are not the {reference.n} images the "
                "reference state was accumulated from"
            )
    mu1, mu2 = state.mean(), reference.mean()
    sigma1, sigma2 = state.covariance(), reference.covariance()
    if state.n < state.dim and not (small_reference is not None and reference.n < state.n):
        trace = trace_sqrt_product_low_rank(x, sigma2)
    elif small_reference is not None:
        trace = trace_sqrt_product_low_rank(small_reference, sigma1)
    elif root is not None:
        b = root().b
        trace = trace_sqrt_psd(b.T @ sigma1 @ b)
    else:
        return frechet_distance(mu1, sigma1, mu2, sigma2)
    return frechet_from_traces(mu1 - mu2, np.trace(sigma1), np.trace(sigma2), trace)


def fd_of_rows(features: np.ndarray, reference_rows: np.ndarray) -> float:
    """Fréchet distance of feature rows [n, d] to a reference's rows [m, d]: FID's maths on another embedding
    (FD_DINOv2, FD_CLIP, sFID), the reference's rows letting a reference of fewer images than dimensions take the
    n x n route."""
    rows = np.asarray(reference_rows)
    if rows.ndim != 2:
        raise SdevalError(f"expected reference features of shape [n, d], got {list(rows.shape)}")
    return fid_from_features(features, FrechetState.from_features(rows), reference_features=rows)


def small_set_warning(
    metric: str, n: int, dim: int, dimensions: str = "feature dimensions", subject: str = "the distance"
) -> str | None:
    """The warning a Fréchet distance's result carries when a set has fewer images than dimensions (the covariance
    is rank-deficient, the distance biased upward); None otherwise."""
    if n >= dim:
        return None
    return (
        f"{metric}: {n} images is fewer than the {dim} {dimensions}; the covariance is rank-deficient and {subject} "
        "is biased upward. Use at least as many images as dimensions (10k+ to compare)."
    )
