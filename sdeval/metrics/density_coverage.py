"""Density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for Generative Models").

Each real feature gets the ball of precision/recall (radius: the distance to its k-th nearest other real feature,
`precision_recall.reference_radii`, k = 5 as in the paper unless `--dc-k`). Density is the number of real balls
holding a generated feature, summed over generated features and divided by k M (M generated features): 1 on average
when both sets come from one distribution, above 1 where generated features crowd around real ones. Coverage is the
fraction of real balls that hold at least one generated feature.

Both come from one pass over the generated-to-real distances by the float64 formula of precision/recall
(`distances.pairwise_distances`), against precision/recall's radii (whose float32 screen decides them as that formula
does, bit for bit): in row blocks of about 64 MiB, so no n x m matrix is ever held. A ball holds a point at distance
<= radius, as in precision/recall; the `prdc` package counts distance < radius, which differs only on exact ties.

With the reference fixed, each generated feature's count of balls holding it depends on that feature alone, and the
real balls each block of generated rows covers are kept, so every leave-a-block-out value of both is algebra on the
one pass (`blocks`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sdeval.metrics.distances import pairwise_distances, squared_norms
from sdeval.metrics.embeddings import NotEnoughDataError, fingerprint, rows_per_block
from sdeval.metrics.precision_recall import reference_radii

#: The paper's neighbourhood size, said here only: the default of --dc-k (metrics/registry.py ScoreParams.dc_k).
K = 5
_ROWS, _ELEMENTS = 2048, 1 << 23  # at most this many rows, and about this many distances, per block


@dataclass(frozen=True)
class DensityCoverage:
    """One pass's sums, per block of generated rows (a single block without `blocks`)."""

    k: int
    counts: np.ndarray  # [n] real balls holding each generated row
    covered_by: np.ndarray  # [K, n_real] how many rows of each block each real ball holds
    rows_per_block: np.ndarray  # [K]

    @property
    def density(self) -> float:
        return float(self.counts.sum() / (self.k * len(self.counts)))

    @property
    def coverage(self) -> float:
        return float((self.covered_by.sum(axis=0) > 0).mean())

    def density_leave_outs(self, blocks: np.ndarray) -> np.ndarray:
        per_block = np.bincount(blocks, weights=self.counts, minlength=len(self.rows_per_block))
        return (self.counts.sum() - per_block) / (self.k * (len(self.counts) - self.rows_per_block))

    def coverage_leave_outs(self) -> np.ndarray:
        total = self.covered_by.sum(axis=0)
        return np.array([float((total - held > 0).mean()) for held in self.covered_by])


def passes(
    generated: np.ndarray,
    real: np.ndarray,
    k: int = K,
    blocks: np.ndarray | None = None,
    n_blocks: int = 1,
) -> DensityCoverage:
    """The counts of one generated-to-real pass (each generated row's block of `n_blocks` from `blocks`, else one
    block)."""
    import torch  # at call time: the metric declarations import this module, and torch takes a second to import

    if min(len(generated), len(real)) <= k:
        raise NotEnoughDataError(
            f"density/coverage with k={k} needs more than {k} images per set, got {len(generated)} and {len(real)}"
        )
    key = (fingerprint(np.asarray(generated)), fingerprint(np.asarray(real)), k,
           None if blocks is None else fingerprint(np.asarray(blocks, np.int64)), n_blocks)  # fmt: skip
    if key in _LAST:
        return _LAST[key]
    n, n_real = len(generated), len(real)
    block_of = np.zeros(n, np.int64) if blocks is None else np.asarray(blocks, np.int64)
    counts = torch.zeros(n, dtype=torch.int64)
    covered_by = torch.zeros(n_blocks, n_real, dtype=torch.int64)
    block_index = torch.from_numpy(block_of)
    gen = torch.from_numpy(np.asarray(generated, np.float64))
    ref = torch.from_numpy(np.asarray(real, np.float64))
    radii = reference_radii(real, k)
    ref_sq = squared_norms(ref)
    step = rows_per_block(n_real, _ROWS, _ELEMENTS)
    for start in range(0, n, step):
        rows = slice(start, min(start + step, n))
        inside = pairwise_distances(gen[rows], ref, ref_sq) <= radii
        counts[rows] = inside.sum(dim=1)
        covered_by.index_add_(0, block_index[rows], inside.long())
    found = DensityCoverage(k, counts.numpy().astype(np.float64), covered_by.numpy(),
                            np.bincount(block_of, minlength=n_blocks))  # fmt: skip
    _LAST.clear()  # the last pass only: the density and coverage sides of one cell share it
    _LAST[key] = found
    return found


_LAST: dict[tuple, DensityCoverage] = {}


def density_coverage(generated: np.ndarray, real: np.ndarray, k: int = K) -> tuple[float, float]:
    """(density, coverage) of generated features against real features, k nearest neighbours (the paper's 5)."""
    found = passes(generated, real, k)
    return found.density, found.coverage


class DensitySide:
    """Density of rows against a fixed reference, and with each block of rows left out (one pass for both metrics)."""

    def __init__(self, x: np.ndarray, reference: np.ndarray, blocks: np.ndarray, k: int, neighbourhood: int = K):
        self.found = passes(x, reference, neighbourhood, np.asarray(blocks, np.int64), k)
        self.leave_outs = self.found.density_leave_outs(np.asarray(blocks, np.int64))

    def value(self) -> float:
        return self.found.density


class CoverageSide:
    """Coverage of the reference by the rows, and with each block of rows left out (one pass for both metrics)."""

    def __init__(self, x: np.ndarray, reference: np.ndarray, blocks: np.ndarray, k: int, neighbourhood: int = K):
        self.found = passes(x, reference, neighbourhood, np.asarray(blocks, np.int64), k)
        self.leave_outs = self.found.coverage_leave_outs()

    def value(self) -> float:
        return self.found.coverage
