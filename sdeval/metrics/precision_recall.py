"""Improved precision and recall (Kynkäänniemi et al. 2019) with k-nearest-neighbour balls.

Each real feature gets a ball whose radius is the distance to its k-th nearest other real feature;
precision is the fraction of generated features inside at least one real ball, recall the fraction of
real features inside at least one generated ball (distances <= radius, as in torch-fidelity).

Distances: the float64 formula of `sdeval.metrics.distances` decides every radius and hit. By default
(`gemm="float32"`) the distances are screened by a float32 GEMM and only the pairs the screen's rigorous error
bound cannot settle are recomputed with the float64 formula, so radii and hits are the same, bit for bit, as with
`gemm="float64"` (every distance by the float64 formula), at about float32 GEMM speed (benchmarks/RESULTS.md).

Memory: no n x m distance matrix is ever held. The float64 formula goes by blocks of whole rows, at most `_CHUNK`
rows and about `_CHUNK_ELEMENTS` distances each (64 MiB in float64); the screen by tiles of at most
`_CHUNK_ELEMENTS`: square blocks for a set against itself (its k-NN radii), each serving both its rows and its
columns (half the products), and row chunks against column tiles as wide for one set against the other. So the peak
is the features' copies (float64 for `gemm="float64"`, float32 for the screen) plus a few such blocks, whatever n.
Each distance comes out the same whatever the chunking (bit for bit with MKL, see `distances.squared_distances`),
so the results do not depend on the chunk size (tests/test_pr_memory.py).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import numpy as np

from sdeval.metrics.distances import (
    ScreenedSet,
    candidate_count,
    exact_rows,
    hit_pairs,
    keep_smallest,
    reproduces_float64,
    screen,
    screen_supported,
    settle_nearest,
)
from sdeval.metrics.distances import pairwise_distances as _pairwise_distances
from sdeval.metrics.distances import squared_norms as _squared_norms
from sdeval.metrics.embeddings import NotEnoughDataError, fingerprint, rows_per_block

if TYPE_CHECKING:
    # torch is imported where it runs: the metric declarations and the statistics import this module, and
    # `sdeval report --help` (which reaches it through them) must not pay torch's second of import time.
    import torch

Gemm = Literal["float32", "float64"]

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


def _tiles(rows: int, cols: int) -> list[tuple[slice, slice]]:
    """Blocks of the screen of one set against another: row chunks against column tiles as wide as the square
    blocks of `_self_nearest`. Thin row blocks against every column cost the GEMM one pass over all the columns per
    block (packing them), which at 50k rows is most of its time; about square tiles keep it at full speed."""
    width = min(cols, _square_side())
    return [(chunk, tile) for chunk in _row_chunks(rows, width) for tile in _spans(cols, width)]


def _spans(n: int, width: int) -> list[slice]:
    """0..n in consecutive slices of `width` (the last may be shorter; none when n is 0)."""
    return [slice(start, min(start + width, n)) for start in range(0, n, max(width, 1))]


def _square_side() -> int:
    """The side of the screen's square blocks: within `_CHUNK_ELEMENTS`, a multiple of `_ROW_ALIGN`."""
    return max(_ROW_ALIGN, math.isqrt(_CHUNK_ELEMENTS) // _ROW_ALIGN * _ROW_ALIGN)


def _screened(*sets: np.ndarray) -> list[ScreenedSet] | None:
    """The sets prepared for the float32 screen, or None where the screen cannot give the float64 formula's
    results here (d too large for its bound, or this BLAS recomputes entries differently: warned)."""
    if not screen_supported(np.shape(sets[0])[1]):
        return None
    prepared = [ScreenedSet(np.asarray(s)) for s in sets]
    if not all(reproduces_float64(prepared[0], other) for other in prepared):
        warnings.warn(
            "this BLAS does not recompute float64 distances exactly: precision/recall in float64", stacklevel=3
        )
        return None
    return prepared


def _float64(features: np.ndarray | torch.Tensor) -> torch.Tensor:
    import torch  # at call time (see the imports above)

    if isinstance(features, torch.Tensor):
        return features.double()
    return torch.from_numpy(np.asarray(features, np.float64))


def _array(features: np.ndarray | torch.Tensor | ScreenedSet) -> np.ndarray:
    return features.source if isinstance(features, ScreenedSet) else np.asarray(features)


def knn_radii(features: np.ndarray | torch.Tensor | ScreenedSet, k: int, gemm: Gemm = "float32") -> torch.Tensor:
    """Distance from each row to its k-th nearest other row (float64, the float64 formula's, whichever `gemm`)."""
    import torch  # at call time (see the imports above)

    if isinstance(features, ScreenedSet):
        return _screened_radii(features, k)
    screened = _screened(np.asarray(features)) if gemm == "float32" else None
    if screened is None:
        x = _float64(features)
        sq = _squared_norms(x)
        radii = torch.empty(len(x), dtype=torch.float64)
        for rows in _row_chunks(len(x), len(x)):
            radii[rows] = _kth_smallest(_pairwise_distances(x[rows], x, sq, sq[rows]), k + 1)
        return radii
    return _screened_radii(screened[0], k)


def _screened_radii(x: ScreenedSet, k: int) -> torch.Tensor:
    return _screened_radii_for(x, (k,))[k]


def _screened_radii_for(x: ScreenedSet, ks: tuple[int, ...]) -> dict[int, torch.Tensor]:
    values, _ = _self_nearest(x, max(ks) + 1)  # exact and ascending: each k's is there
    return {k: values[:, k].clamp_min(0).sqrt() for k in ks}  # sqrt is monotone: the k-th of the distances


def _self_nearest(x: ScreenedSet, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The `width` nearest of every row of x among x's own rows (itself included; `distances.settle_nearest`),
    each pair screened once: the screen of the square block (I, J) serves rows I and, transposed, rows J (the bound
    does not depend on which side is the row), so only the blocks on and above the diagonal are multiplied: half the
    float32 GEMM of whole rows. Blocks stay within `_CHUNK_ELEMENTS`; the exact recomputation goes by row chunks."""
    import torch  # at call time (see the imports above)

    n = x.n
    keep = candidate_count(n, width)
    values = torch.full((n, keep), float("inf"), dtype=torch.float32)
    columns = torch.zeros((n, keep), dtype=torch.int64)
    squares = _spans(n, _square_side())
    for i, rows in enumerate(squares):
        for cols in squares[i:]:
            hi = screen(x, rows, x, cols)
            keep_smallest(values, columns, rows, hi, cols.start)
            if cols.start != rows.start:
                keep_smallest(values, columns, cols, hi.T, rows.start)
    best = torch.empty(n, min(width, n), dtype=torch.float64)
    best_columns = torch.empty(n, min(width, n), dtype=torch.int64)
    for rows in _row_chunks(n, n):
        index = torch.arange(n)[rows]
        best[rows], best_columns[rows] = settle_nearest(
            x, rows, x, values[rows], columns[rows], width, lambda short, index=index: screen(x, index[short], x)
        )
    return best, best_columns


def knn_radii_for(features: np.ndarray, ks: tuple[int, ...]) -> dict[int, torch.Tensor]:
    """`knn_radii` for several k from one pass over the distances (a reference build stores k = 3 and 5): the same
    bits as one `knn_radii` call per k, since each k-th smallest distance is the float64 formula's either way."""
    import torch  # at call time (see the imports above)

    screened = _screened(np.asarray(features))
    if screened is not None:
        return _screened_radii_for(screened[0], ks)
    x = _float64(features)
    sq = _squared_norms(x)
    radii = {k: torch.empty(len(x), dtype=torch.float64) for k in ks}
    for rows in _row_chunks(len(x), len(x)):
        nearest_values = _pairwise_distances(x[rows], x, sq, sq[rows]).topk(max(ks) + 1, dim=1, largest=False).values
        for k in ks:
            radii[k][rows] = nearest_values[:, k]
    return radii


_REFERENCE_RADII: dict[tuple, torch.Tensor] = {}
_GEMMS: tuple[Gemm, ...] = ("float32", "float64")


def _forget_other_references(key: tuple) -> None:
    """One reference at a time (a run has one), with every k asked of it (precision/recall's and density's)."""
    for other in [other for other in _REFERENCE_RADII if other[0] != key]:
        del _REFERENCE_RADII[other]


def reference_radii(reference: np.ndarray | torch.Tensor | ScreenedSet, k: int, gemm: Gemm = "float32") -> torch.Tensor:
    """`knn_radii` of a reference set, kept for the next call on the same set and k: every cell of a run and the
    precision interval measure against one reference, and its radii are the costliest pass (n_ref² d). A reference
    file's stored radii are put here when it loads (`keep_reference_radii`)."""
    features = fingerprint(_array(reference))
    key = (features, k, gemm)
    if key not in _REFERENCE_RADII:
        _forget_other_references(features)
        # The float32 screen is the default: called with two arguments so that a wrapped knn_radii sees the same.
        _REFERENCE_RADII[key] = knn_radii(reference, k) if gemm == "float32" else knn_radii(reference, k, gemm)
    return _REFERENCE_RADII[key]


def has_reference_radii(reference: np.ndarray) -> bool:
    """Whether radii of these rows are at hand (computed, or kept from a reference file) for some k."""
    features = fingerprint(np.asarray(reference))
    return any(key[0] == features for key in _REFERENCE_RADII)


def keep_reference_radii(reference: np.ndarray, k: int, radii: np.ndarray) -> None:
    """Make `radii` what `reference_radii` gives for these rows and k, whichever gemm (both give the float64
    formula's radii): a reference file's, which its loader has checked against these rows."""
    import torch  # at call time (see the imports above)

    values = np.asarray(radii, dtype=np.float64)
    if values.shape != (len(reference),):
        raise ValueError(f"{len(values)} radii for {len(reference)} reference rows")
    features = fingerprint(np.asarray(reference))
    _forget_other_references(features)
    for gemm in _GEMMS:
        _REFERENCE_RADII[features, k, gemm] = torch.from_numpy(values.copy())


def _kth_smallest(values: torch.Tensor, k: int) -> torch.Tensor:
    """Per row, the k-th smallest value (k + 1 for the k-th neighbour: each point is its own nearest at 0).
    topk, not kthvalue: the same value, but kthvalue copies the block twice (values and int64 indices) and is
    several times slower on wide rows."""
    return values.topk(k, dim=1, largest=False).values[:, k - 1]


#: Precision's per-image hits from the last pass that computed them (the metric's or the recall interval's), for
#: the precision interval: the same blocks, not a third generated-to-reference pass.
_HITS: dict[tuple, np.ndarray] = {}


def _hits_key(generated: np.ndarray, real: np.ndarray, k: int) -> tuple:
    return (fingerprint(np.asarray(generated)), fingerprint(np.asarray(real)), k)


def _keep_hits(generated: np.ndarray, real: np.ndarray, k: int, hits: torch.Tensor) -> None:
    _HITS.clear()  # one cell at a time
    _HITS[_hits_key(generated, real, k)] = hits.numpy().copy()


def precision_hits(generated: np.ndarray, real: np.ndarray, k: int = 3, gemm: Gemm = "float32") -> np.ndarray:
    """Per generated row, whether it lies in some real k-NN ball (precision is their mean); reused from the pass
    that last computed them for these sets, else one generated-to-real pass."""
    kept = _HITS.get(_hits_key(generated, real, k))
    if kept is not None:
        return kept.copy()
    return inside_balls(generated, real, reference_radii(real, k, gemm), gemm).numpy()


def inside_balls(
    points: np.ndarray | torch.Tensor, centres: np.ndarray | torch.Tensor, radii: torch.Tensor, gemm: Gemm = "float32"
) -> torch.Tensor:
    """Per point, whether it lies within radii[i] of some centres[i] (bool [len(points)])."""
    import torch  # at call time (see the imports above)

    screened = _screened(np.asarray(points), np.asarray(centres)) if gemm == "float32" else None
    inside = torch.zeros(len(points), dtype=torch.bool)  # the screen ORs each tile's hits into it
    if screened is None:
        pts, ctr = _float64(points), _float64(centres)
        sq = _squared_norms(ctr)
        for rows in _row_chunks(len(pts), len(ctr)):
            inside[rows] = (_pairwise_distances(pts[rows], ctr, sq) <= radii).any(dim=1)
        return inside
    a, b = screened
    for rows, cols in _tiles(a.n, b.n):
        hi = screen(a, rows, b, cols)
        inside[rows] |= _rows_hit(hit_pairs(a, rows, b, hi, radii, per_row=False, cols=cols)[0], rows)
    return inside


def _rows_hit(pairs: tuple[torch.Tensor, torch.Tensor], rows: slice) -> torch.Tensor:
    """Per row of the block, whether some pair holds it."""
    import torch  # at call time (see the imports above)

    hit = torch.zeros(rows.stop - rows.start, dtype=torch.bool)
    hit[pairs[0]] = True
    return hit


def _not_enough(k: int, n_generated: int, n_real: int) -> NotEnoughDataError:
    return NotEnoughDataError(
        f"precision/recall with k={k} needs more than {k} images per set, got {n_generated} and {n_real}"
    )


def precision_recall(
    generated: np.ndarray, real: np.ndarray, k: int = 3, gemm: Gemm = "float32"
) -> tuple[float, float]:
    """(precision, recall) of generated features against real features; `gemm` picks how distances are computed
    (the same results either way, see the module docstring)."""
    import torch  # at call time (see the imports above)

    if min(len(generated), len(real)) <= k:
        raise _not_enough(k, len(generated), len(real))
    screened = _screened(np.asarray(generated), np.asarray(real)) if gemm == "float32" else None
    if screened is None:
        gen = torch.from_numpy(np.asarray(generated, np.float64))
        ref = torch.from_numpy(np.asarray(real, np.float64))
        ref_radii, gen_radii = reference_radii(real, k, "float64"), knn_radii(gen, k, "float64")
        gen_sq, ref_sq = _squared_norms(gen), _squared_norms(ref)
        # One pass over the generated-to-real distances serves both directions.
        gen_inside = torch.empty(len(gen), dtype=torch.bool)
        ref_inside = torch.zeros(len(ref), dtype=torch.bool)
        for rows in _row_chunks(len(gen), len(ref)):
            distances = _pairwise_distances(gen[rows], ref, ref_sq, gen_sq[rows])
            gen_inside[rows] = (distances <= ref_radii).any(dim=1)
            ref_inside |= (distances <= gen_radii[rows, None]).any(dim=0)
    else:
        a, b = screened
        ref_radii, gen_radii = reference_radii(b, k, gemm), knn_radii(a, k)
        gen_inside = torch.zeros(a.n, dtype=torch.bool)
        ref_inside = torch.zeros(b.n, dtype=torch.bool)
        for rows, cols in _tiles(a.n, b.n):
            hi = screen(a, rows, b, cols)
            gen_inside[rows] |= _rows_hit(hit_pairs(a, rows, b, hi, ref_radii, per_row=False, cols=cols)[0], rows)
            ref_inside[hit_pairs(a, rows, b, hi, gen_radii[rows, None], per_row=True, cols=cols)[0][1]] = True
    _keep_hits(generated, real, k, gen_inside)
    precision = float(gen_inside.double().mean())
    recall = float(ref_inside.double().mean())
    return precision, recall


def recall_leave_outs(
    generated: np.ndarray, real: np.ndarray, blocks: np.ndarray, n_blocks: int, k: int = 3, gemm: Gemm = "float32"
) -> tuple[float, np.ndarray]:
    """Recall of all generated rows, and with each block of them left out in turn ([n_blocks]); the same values
    as `precision_recall(generated[blocks != j], real, k)[1]`, from one pass over the generated-to-generated and
    one over the generated-to-real distances instead of n_blocks recomputations.

    Leaving rows out only grows the other rows' radii, and a row's radius changes only when the left-out block
    holds one of its k + 1 nearest rows; so each real row records which blocks' balls hold it at the full radii,
    plus, per block j, whether a ball grown by leaving j out holds it (at most k + 1 grown radii per row).
    The generated-to-real pass also gives precision's per-image hits, kept for the precision interval.
    """
    import torch  # at call time (see the imports above)

    blocks = np.asarray(blocks, dtype=np.int64)
    counts = np.bincount(blocks, minlength=n_blocks)
    smallest = len(generated) - int(counts.max(initial=0))
    if min(smallest, len(real)) <= k:
        raise _not_enough(k, smallest, len(real))
    block_of = torch.from_numpy(blocks)
    n = len(generated)
    width = min(n, _NEAR * (k + 1))
    held = torch.zeros(n_blocks, len(real), dtype=torch.bool)  # held[b, r]: a ball of block b at full radius holds r
    # grown[j, r]: a ball grown by leaving j out holds r; the extra last row collects the rows with no such ball.
    grown = torch.zeros(n_blocks + 1, len(real), dtype=torch.bool)
    screened = _screened(np.asarray(generated), np.asarray(real)) if gemm == "float32" else None
    if screened is None:
        gen = torch.from_numpy(np.asarray(generated, np.float64))
        ref = torch.from_numpy(np.asarray(real, np.float64))
        gen_sq, ref_sq = _squared_norms(gen), _squared_norms(ref)
    else:
        a, b = screened
        self_near = _self_nearest(a, width)  # each row's `width` nearest generated rows, exact, for every chunk
        thresholds = torch.empty(n, k + 2, dtype=torch.float64)  # per row: its radius, then its k + 1 grown ones
        grown_rows = torch.empty(n, k + 1, dtype=torch.int64)  # the block each grown radius leaves out
    # Precision's hits come with the same blocks when the reference's radii are at hand (no extra reference pass).
    ref_radii = _REFERENCE_RADII.get((fingerprint(np.asarray(real)), k, gemm if screened is not None else "float64"))
    gen_inside = torch.zeros(n, dtype=torch.bool)
    for rows in _row_chunks(n, max(n, len(real))):
        own = block_of[rows]
        whole: Callable[[torch.Tensor], torch.Tensor]  # some rows' distances to every generated row
        if screened is None:
            distances = _pairwise_distances(gen[rows], gen, gen_sq, gen_sq[rows])
            near, near_index = distances.topk(width, dim=1, largest=False)  # ascending
            whole = distances.__getitem__
        else:
            near, near_index = self_near[0][rows].clamp_min(0).sqrt(), self_near[1][rows]
            whole = _exact_whole_rows(a, rows.start)
        radius = near[:, k]  # = _kth_smallest(distances, k + 1)
        grown_radius, grown_block = _grown_radii(whole, near, block_of[near_index], own, block_of, k)
        del whole  # it holds the generated-to-generated block
        if screened is None:
            del distances
            distances = _pairwise_distances(gen[rows], ref, ref_sq, gen_sq[rows])
            if ref_radii is not None:
                gen_inside[rows] = (distances <= ref_radii).any(dim=1)
            inside = [distances <= radius[:, None]] + [distances <= grown_radius[:, t, None] for t in range(k + 1)]
            del distances
            # OR each row's verdicts into its block's row (accumulating booleans is an OR); bool masks are an eighth
            # of the distance block, so memory stays at one block.
            held.index_put_((own,), inside[0], accumulate=True)
            for t in range(k + 1):  # NaN (no t-th grown radius) is never inside
                grown.index_put_(
                    (grown_block[:, t].where(grown_block[:, t] >= 0, n_blocks),), inside[t + 1], accumulate=True
                )
            del inside
        else:  # the generated-to-real pass comes after, by tiles (`_tiles`), with these thresholds
            thresholds[rows] = torch.cat([radius[:, None], grown_radius], dim=1)
            grown_rows[rows] = grown_block.where(grown_block >= 0, n_blocks)  # no t-th grown radius: never inside
    if screened is not None:
        for rows, cols in _tiles(n, len(real)):
            hi = screen(a, rows, b, cols)
            if ref_radii is not None:
                hits = hit_pairs(a, rows, b, hi, ref_radii, per_row=False, cols=cols)[0]
                gen_inside[rows] |= _rows_hit(hits, rows)
            pairs = hit_pairs(a, rows, b, hi, thresholds[rows], per_row=True, cols=cols)
            del hi
            held[block_of[rows][pairs[0][0]], pairs[0][1]] = True  # the same ORs, from the hit pairs
            for t in range(k + 1):
                i, j = pairs[t + 1]
                grown[grown_rows[rows][i, t], j] = True
    if ref_radii is not None:
        _keep_hits(generated, real, k, gen_inside)
    holders = held.sum(dim=0)
    recall = float((holders > 0).double().mean())
    leave_outs = [float(((holders - held[j].long() > 0) | grown[j]).double().mean()) for j in range(n_blocks)]
    return recall, np.array(leave_outs)


def _exact_whole_rows(x: ScreenedSet, start: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Rows of a chunk starting at `start`: their float64-formula distances to every row of x."""
    return lambda again: exact_rows(x, again.numpy() + start, x).clamp_min_(0).sqrt_()


def _grown_radii(
    whole: Callable[[torch.Tensor], torch.Tensor],
    near: torch.Tensor,
    near_block: torch.Tensor,
    own: torch.Tensor,
    block_of: torch.Tensor,
    k: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of the chunk and per other block among its k + 1 nearest rows (first occurrence of each), the
    row's radius with that block left out ([rows, k + 1], NaN where none) and that block (-1 where none).
    `whole(rows)`: those rows' distances to every generated row (read when a block holds most of the nearest)."""
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
            distances = whole(again).masked_fill(block_of[None, :] == block[again, None], float("inf"))
            radius[short] = _kth_smallest(distances, k + 1)
        grown_radius[which, t] = radius
        grown_block[which, t] = block[which]
    return grown_radius, grown_block
