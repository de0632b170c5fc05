"""Improved precision and recall (Kynkäänniemi et al. 2019) with k-nearest-neighbour balls.

Each real feature gets a ball whose radius is the distance to its k-th nearest other real feature;
precision is the fraction of generated features inside at least one real ball, recall the fraction of
real features inside at least one generated ball (distances <= radius, as in torch-fidelity). Float64.

Memory: no n x m distance matrix is ever held. Distances are computed in blocks of whole rows, at most
`_CHUNK` rows and about `_CHUNK_ELEMENTS` distances each (64 MiB), so the peak is the two float64 copies of the
features plus a few such blocks, whatever n. Each distance comes out the same whatever the chunking (bit for bit
with MKL, see `_pairwise_distances`), so the results do not depend on the chunk size (tests/test_pr_memory.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from sdeval.metrics.embeddings import NotEnoughDataError, fingerprint, rows_per_block

if TYPE_CHECKING:
    # torch is imported where it runs: the metric declarations and the statistics import this module, and
    # `sdeval report --help` (which reaches it through them) must not pay torch's second of import time.
    import torch

_CHUNK = 2048  # most rows in one block of distances
_CHUNK_ELEMENTS = 1 << 23  # most distances in one block (whole rows: at least one row)
_ROW_ALIGN = 8
#: The recall leave-outs keep the _NEAR * (k + 1) nearest generated rows of each generated row: enough to find its
#: (k + 1)-th nearest outside any one block unless that block holds most of them (then the whole row is read again).
_NEAR = 4


def _row_chunks(rows: int, cols: int) -> list[slice]:
    """Row slices of about `_CHUNK_ELEMENTS` distances each against `cols` columns (at most `_CHUNK` rows; one
    empty slice when there are no rows)."""
    step = rows_per_block(cols, _CHUNK, _CHUNK_ELEMENTS)
    if step > _ROW_ALIGN:
        step -= step % _ROW_ALIGN
    return [slice(start, min(start + step, rows)) for start in range(0, max(rows, 1), step)]


def _pairwise_distances(
    a: torch.Tensor, b: torch.Tensor, b_sq: torch.Tensor | None = None, a_sq: torch.Tensor | None = None
) -> torch.Tensor:
    """Euclidean distances [len(a), len(b)] by |a|² + |b|² - 2 a.b (direct differences would need n*m*d memory;
    the expansion is exact enough in float64). `a_sq`, `b_sq`: the rows' squared norms, if already computed."""
    import torch  # at call time (see the imports above)

    rows = len(a)
    a_sq = (_squared_norms(a) if a_sq is None else a_sq)[:, None]
    if b_sq is None:
        b_sq = _squared_norms(b)
    # MKL computes the last rows of a product whose row count is not a multiple of 4 with another kernel, whose
    # rounding differs: zero rows up to a multiple of 8 make every distance the same whatever the chunking.
    pad = -rows % _ROW_ALIGN
    ab = (torch.cat([a, a.new_zeros(pad, a.shape[1])]) if pad else a) @ b.T
    d2 = a_sq + b_sq
    d2.sub_(ab[:rows], alpha=2.0)  # = (|a|² + |b|²) - (2a).b, bit for bit; no third n x m buffer
    del ab
    return d2.clamp_min_(0).sqrt_()


def _squared_norms(x: torch.Tensor) -> torch.Tensor:
    """(x * x).sum(1) in blocks of 256 rows (x * x whole would be a copy of x), written into one output: results
    kept alive between large freed temporaries fragment malloc's heap (+0.3 GB resident measured at n = 20k)."""
    import torch  # at call time (see the imports above)

    out = torch.empty(len(x), dtype=x.dtype)
    for start in range(0, len(x), 256):
        rows = slice(start, start + 256)
        torch.sum(x[rows] * x[rows], dim=1, out=out[rows])
    return out


def knn_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row to its k-th nearest other row."""
    import torch  # at call time (see the imports above)

    sq = _squared_norms(features)
    radii = torch.empty(len(features), dtype=features.dtype)
    for rows in _row_chunks(len(features), len(features)):
        radii[rows] = _kth_smallest(_pairwise_distances(features[rows], features, sq, sq[rows]), k + 1)
    return radii


_REFERENCE_RADII: dict[tuple, torch.Tensor] = {}


def reference_radii(reference: torch.Tensor, k: int) -> torch.Tensor:
    """`knn_radii` of a reference set, kept for the next call on the same set and k: every cell of a run and the
    precision interval measure against one reference, and its radii are the costliest pass (n_ref² d)."""
    key = (fingerprint(reference.numpy()), k)
    if key not in _REFERENCE_RADII:
        _REFERENCE_RADII.clear()  # one reference at a time (a run has one)
        _REFERENCE_RADII[key] = knn_radii(reference, k)
    return _REFERENCE_RADII[key]


def _kth_smallest(values: torch.Tensor, k: int) -> torch.Tensor:
    """Per row, the k-th smallest value (k + 1 for the k-th neighbour: each point is its own nearest at 0).
    topk, not kthvalue: the same value, but kthvalue copies the block twice (values and int64 indices) and is
    several times slower on wide rows."""
    return values.topk(k, dim=1, largest=False).values[:, k - 1]


def inside_balls(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """Per point, whether it lies within radii[i] of some centres[i] (bool [len(points)])."""
    import torch  # at call time (see the imports above)

    sq = _squared_norms(centres)
    inside = torch.empty(len(points), dtype=torch.bool)
    for rows in _row_chunks(len(points), len(centres)):
        inside[rows] = (_pairwise_distances(points[rows], centres, sq) <= radii).any(dim=1)
    return inside


def _not_enough(k: int, n_generated: int, n_real: int) -> NotEnoughDataError:
    return NotEnoughDataError(
        f"precision/recall with k={k} needs more than {k} images per set, got {n_generated} and {n_real}"
    )


def precision_recall(generated: np.ndarray, real: np.ndarray, k: int = 3) -> tuple[float, float]:
    """(precision, recall) of generated features against real features."""
    import torch  # at call time (see the imports above)

    if min(len(generated), len(real)) <= k:
        raise _not_enough(k, len(generated), len(real))
    gen = torch.from_numpy(np.asarray(generated, np.float64))
    ref = torch.from_numpy(np.asarray(real, np.float64))
    ref_radii, gen_radii = reference_radii(ref, k), knn_radii(gen, k)
    gen_sq, ref_sq = _squared_norms(gen), _squared_norms(ref)
    # One pass over the generated-to-real distances serves both directions.
    gen_inside = torch.empty(len(gen), dtype=torch.bool)
    ref_inside = torch.zeros(len(ref), dtype=torch.bool)
    for rows in _row_chunks(len(gen), len(ref)):
        distances = _pairwise_distances(gen[rows], ref, ref_sq, gen_sq[rows])
        gen_inside[rows] = (distances <= ref_radii).any(dim=1)
        ref_inside |= (distances <= gen_radii[rows, None]).any(dim=0)
    precision = float(gen_inside.double().mean())
    recall = float(ref_inside.double().mean())
    return precision, recall


def recall_leave_outs(
    generated: np.ndarray, real: np.ndarray, blocks: np.ndarray, n_blocks: int, k: int = 3
) -> tuple[float, np.ndarray]:
    """Recall of all generated rows, and with each block of them left out in turn ([n_blocks]); the same values
    as `precision_recall(generated[blocks != j], real, k)[1]`, from one pass over the generated-to-generated and
    one over the generated-to-real distances instead of n_blocks recomputations.

    Leaving rows out only grows the other rows' radii, and a row's radius changes only when the left-out block
    holds one of its k + 1 nearest rows; so each real row records which blocks' balls hold it at the full radii,
    plus, per block j, whether a ball grown by leaving j out holds it (at most k + 1 grown radii per row).
    """
    import torch  # at call time (see the imports above)

    blocks = np.asarray(blocks, dtype=np.int64)
    counts = np.bincount(blocks, minlength=n_blocks)
    smallest = len(generated) - int(counts.max(initial=0))
    if min(smallest, len(real)) <= k:
        raise _not_enough(k, smallest, len(real))
    gen = torch.from_numpy(np.asarray(generated, np.float64))
    ref = torch.from_numpy(np.asarray(real, np.float64))
    block_of = torch.from_numpy(blocks)
    gen_sq, ref_sq = _squared_norms(gen), _squared_norms(ref)
    n = len(gen)
    width = min(n, _NEAR * (k + 1))
    held = torch.zeros(n_blocks, len(ref), dtype=torch.bool)  # held[b, r]: a ball of block b at full radius holds r
    # grown[j, r]: a ball grown by leaving j out holds r; the extra last row collects the rows with no such ball.
    grown = torch.zeros(n_blocks + 1, len(ref), dtype=torch.bool)
    for rows in _row_chunks(n, max(n, len(ref))):
        own = block_of[rows]
        distances = _pairwise_distances(gen[rows], gen, gen_sq, gen_sq[rows])
        near, near_index = distances.topk(width, dim=1, largest=False)  # ascending
        radius = near[:, k]  # = _kth_smallest(distances, k + 1)
        grown_radius, grown_block = _grown_radii(distances, near, block_of[near_index], own, block_of, k)
        del distances
        distances = _pairwise_distances(gen[rows], ref, ref_sq, gen_sq[rows])
        # OR each row's verdicts into its block's row (accumulating booleans is an OR); bool masks are an eighth of
        # the distance block, so memory stays at one block.
        held.index_put_((own,), distances <= radius[:, None], accumulate=True)
        for t in range(k + 1):
            inside = distances <= grown_radius[:, t, None]  # NaN (no t-th grown radius) is never inside
            grown.index_put_((grown_block[:, t].where(grown_block[:, t] >= 0, n_blocks),), inside, accumulate=True)
    holders = held.sum(dim=0)
    recall = float((holders > 0).double().mean())
    leave_outs = [float(((holders - held[j].long() > 0) | grown[j]).double().mean()) for j in range(n_blocks)]
    return recall, np.array(leave_outs)


def _grown_radii(
    distances: torch.Tensor,
    near: torch.Tensor,
    near_block: torch.Tensor,
    own: torch.Tensor,
    block_of: torch.Tensor,
    k: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of the chunk and per other block among its k + 1 nearest rows (first occurrence of each), the
    row's radius with that block left out ([rows, k + 1], NaN where none) and that block (-1 where none)."""
    import torch  # at call time (see the imports above)

    rows = len(near)
    grown_radius = torch.full((rows, k + 1), float("nan"), dtype=torch.float64)
    grown_block = torch.full((rows, k + 1), -1, dtype=torch.int64)
    top = near_block[:, : k + 1]
    for t in range(k + 1):
        block = top[:, t]
        first = (block != own) & ~(top[:, :t] == block[:, None]).any(dim=1)
        which = first.nonzero().squeeze(1)
        if len(which) == 0:
            continue
        outside = near_block[which] != block[which, None]
        radius = _kth_smallest(near[which].masked_fill(~outside, float("inf")), k + 1)
        short = outside.sum(dim=1) <= k  # the block holds most of the nearest: read the whole row
        if short.any():
            again = which[short]
            whole = distances[again].masked_fill(block_of[None, :] == block[again, None], float("inf"))
            radius[short] = _kth_smallest(whole, k + 1)
        grown_radius[which, t] = radius
        grown_block[which, t] = block[which]
    return grown_radius, grown_block
