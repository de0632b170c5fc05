"""What a reference file keeps beside its features that is computed from them, so scoring never computes it again:
the k-nearest-neighbour radii of the rows precision/recall and density/coverage read, and the eigen-decomposition
of each Fréchet state's covariance (FID's reference side).

Neither merges: a merged reference computes them once over the whole. Each is stored with what made it (the rows'
sha256, k and the distance rule; the state's sha256) and checked when it loads: a radius array of the wrong length
or k, or one that no longer fits its rows, is refused, never used. Loaded, they go where the metrics look for
them (`offer`): precision_recall's radii and fid's root caches, keyed by the rows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from sdeval.core.errors import SdevalError
from sdeval.metrics.fid import FrechetState, ReferenceRoot, keep_reference_root
from sdeval.metrics.precision_recall import keep_reference_radii, knn_radii_for

#: The radii's k values a build stores unless told: precision/recall's 3 and density/coverage's 5.
DEFAULT_RADII_K = (3, 5)
#: How a stored radius was measured (recorded with it; a file saying otherwise is not used).
DISTANCE_RULE = "euclidean, float64 formula (sdeval.metrics.distances); radius: distance to the k-th nearest other row"
_SPOT_ROWS = 8  # rows whose radii a load recomputes: catches a wrong k or changed rows for n * d each
_SPOT_RTOL = 1e-9  # another BLAS may round the float64 formula's last bits otherwise
_SPOT_COLUMNS = 4  # eigenvectors a load checks (sigma u = w u): d² each
_SPOT_BLOCK = 4096  # rows converted to float64 at a time by the spot check


@dataclass(frozen=True)
class StoredRadii:
    """The k-NN radii of one feature array of a reference: `features` (extractor cache key, feature name)."""

    features: tuple[str, str]
    k: int
    radii: np.ndarray  # [n] float64
    rows_sha256: str
    distance: str = DISTANCE_RULE


@dataclass(frozen=True)
class StoredEigh:
    """eigh of a named Fréchet state's covariance: eigenvalues [d] and eigenvectors [d, d], float64."""

    values: np.ndarray
    vectors: np.ndarray
    state_sha256: str


def rows_sha256(rows: np.ndarray) -> str:
    """sha256 of feature rows as a reference file stores them (float32, C order): 0.05 s for 10k x 2048."""
    array = np.ascontiguousarray(np.asarray(rows, dtype=np.float32))
    digest = hashlib.sha256(f"{array.shape}".encode())
    digest.update(array.data)
    return digest.hexdigest()


def state_sha256(state: FrechetState) -> str:
    digest = hashlib.sha256(np.int64(state.n).tobytes())
    for part in (state.sum, state.sum_outer):
        digest.update(np.ascontiguousarray(part, dtype=np.float64).tobytes())
    return digest.hexdigest()


def compute_radii(rows: np.ndarray, features: tuple[str, str], ks: tuple[int, ...]) -> list[StoredRadii]:
    """The radii of each k (one pass over the distances, the exact path), for a build or a merge."""
    usable = tuple(sorted({k for k in ks if k < len(rows)}))  # a set of k or fewer rows has no k-th neighbour
    if not usable:
        return []
    digest = rows_sha256(rows)
    found = knn_radii_for(np.asarray(rows, dtype=np.float32), usable)
    return [StoredRadii(features, k, found[k].numpy(), digest) for k in usable]


def compute_eigh(state: FrechetState) -> StoredEigh | None:
    """eigh of the state's covariance, for a state of at least as many images as dimensions (None below: a d x d
    eigh costs seconds, and such a reference is a test or a sketch, rank-deficient, its FID flagged as biased)."""
    if state.n < max(state.dim, 2):
        return None
    values, vectors = np.linalg.eigh(state.covariance())
    return StoredEigh(values, vectors, state_sha256(state))


def check_radii(stored: list[StoredRadii], rows: np.ndarray, where: str) -> None:
    """Refuse radii (of one feature array, at any k) that are not those of `rows` at their k: wrong length, k, rule,
    rows changed (sha256), or a spot check of a few rows' k-th neighbour distance that does not match. The rows'
    sha256 and the spot rows' distances are computed once for every k."""
    import torch  # at call time: loading a reference must not pay torch's import unless it holds radii

    from sdeval.metrics.distances import pairwise_distances, squared_norms

    n = len(rows)
    digest = rows_sha256(rows) if stored else ""
    for radii in stored:
        what = _what(radii, where)
        if radii.radii.shape != (n,):
            raise SdevalError(f"{what} hold {len(radii.radii)} values for {n} rows; rebuild the reference")
        if not 1 <= radii.k < n:
            raise SdevalError(f"{what}: k must be 1 to {n - 1} for {n} rows; rebuild the reference")
        if radii.distance != DISTANCE_RULE:
            raise SdevalError(
                f"{what} were measured as {radii.distance!r}, not {DISTANCE_RULE!r}; rebuild the reference"
            )
        if radii.rows_sha256 != digest:
            raise SdevalError(f"{what} were computed from other rows than the file holds now (sha256); rebuild it")
    if not stored:
        return
    spot = np.unique(np.linspace(0, n - 1, min(n, _SPOT_ROWS)).astype(np.intp))
    a = torch.from_numpy(np.asarray(rows[spot], np.float64))
    a_sq = squared_norms(a)
    blocks = []  # the spot rows' distances to every row, a float64 block of rows at a time (no float64 copy of all)
    for start in range(0, n, _SPOT_BLOCK):
        b = torch.from_numpy(np.asarray(rows[start : start + _SPOT_BLOCK], np.float64))
        blocks.append(pairwise_distances(a, b, (b * b).sum(dim=1), a_sq))
    nearest = torch.cat(blocks, dim=1).topk(max(r.k for r in stored) + 1, dim=1, largest=False).values.numpy()
    for radii in stored:
        expected, found = nearest[:, radii.k], radii.radii[spot]
        wrong = np.flatnonzero(~np.isclose(found, expected, rtol=_SPOT_RTOL, atol=0.0))
        if len(wrong):
            row = int(spot[wrong[0]])
            raise SdevalError(
                f"{_what(radii, where)} do not fit the rows: row {row}'s distance to its k={radii.k}-th nearest other "
                f"row is {expected[wrong[0]]:.9g}, the file says {found[wrong[0]]:.9g}; rebuild the reference"
            )


def _what(radii: StoredRadii, where: str) -> str:
    key, feature = radii.features
    return f"{where}: the stored k-NN radii of {feature} ({key}) at k={radii.k}"


def check_eigh(stored: StoredEigh, state: FrechetState, name: str, where: str) -> None:
    """Refuse a decomposition that is not of this state's covariance: shape, the state's sha256, and a few columns'
    residual |sigma u - w u| against the covariance's scale."""
    what = f"{where}: the stored eigen-decomposition of Fréchet state {name!r}"
    d = state.dim
    if stored.values.shape != (d,) or stored.vectors.shape != (d, d):
        raise SdevalError(f"{what} has shapes {list(stored.values.shape)} and {list(stored.vectors.shape)} for d={d}")
    if stored.state_sha256 != state_sha256(state):
        raise SdevalError(f"{what} was made from another state than the file holds now (sha256); rebuild it")
    sigma = state.covariance()
    columns = np.unique(np.linspace(0, d - 1, min(d, _SPOT_COLUMNS)).astype(np.intp))
    u = stored.vectors[:, columns]
    residual = np.abs(sigma @ u - u * stored.values[columns]).max(initial=0.0)
    if not residual <= 1e-8 * max(float(np.abs(stored.values).max(initial=0.0)), 1e-300):
        raise SdevalError(f"{what} does not decompose its covariance (residual {residual:.3g}); rebuild the reference")


def offer(
    radii: list[StoredRadii],
    rows_of: dict[tuple[str, str], np.ndarray],
    eigh: dict[str, StoredEigh],
    states: dict[str, FrechetState],
    state_rows: dict[str, tuple[str, str]],
) -> None:
    """Put checked stored radii and decompositions where precision/recall, density/coverage and FID look for them
    (their per-reference caches, keyed by the rows they are of)."""
    for stored in radii:
        keep_reference_radii(rows_of[stored.features], stored.k, stored.radii)
    for name, decomposition in eigh.items():
        features = state_rows.get(name)
        if features is not None and features in rows_of:
            root = ReferenceRoot.from_eigh(states[name], decomposition.values, decomposition.vectors)
            keep_reference_root(rows_of[features], root)
