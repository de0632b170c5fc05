"""Euclidean distances for the k-NN metrics (precision/recall): the float64 formula, and a float32 screen whose close
calls are re-decided with that formula, so that radii and hits equal the float64 formula's bit for bit at float32
GEMM speed.

**The float64 formula** (`pairwise_distances`): D = (|a|² + |b|²) - 2 a.b, with the squared norms from
`squared_norms` and the dot products from one float64 GEMM of a block of rows (zero-padded to a multiple of 8 rows)
against every column, then sqrt(max(D, 0)). It is what precision/recall has always computed. "Exact" below means
equal to it, bit for bit: not the true distance (the expansion is itself a rounding of it), the float64 path's.

**The screen.** One float32 GEMM gives, per pair, hi = fl32((1 + c)(sa + sb) - 2 a.b): the rows carry
[-2a, (1 + c) sa, 1] and the columns [b, 1, (1 + c) sb] (sa, sb: the float64 squared norms rounded to float32), so
the norms cost no pass of their own. With u = 2^-24, n = d + 2 terms, γ_n = n u / (1 - n u) and S = sa + sb:
- the float32 sum of n terms, in any order, with or without FMA: |hi - Σ terms| <= γ_n Σ |terms|
  (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., eq. 3.4-3.5), and
  Σ |terms| <= 2 Σ|a_k b_k| (1 + u)² + (1 + c)(1 + 1.001 u) S <= ((1 + u)² + (1 + c)(1 + 1.001 u)) S, since
  2 Σ|a_k b_k| <= 2 |a| |b| <= |a|² + |b|² (Cauchy-Schwarz) and |a|² <= sa (1 + 2^-40) (float64 sums);
- rounding the inputs to float32 (float64 features): |a32.b32 - a.b| <= (2u + u²) Σ|a_k b_k|; rounding the
  scaled norms: <= 1.001 u (1 + c) S;
- the float64 formula's own error against sa + sb - 2a.b is below 4 γ_n(float64) S (2^-29 of γ_n).
So |hi - (D + c S)| <= κ S with κ <= (1 + c) 1.001 (u + γ_n) + 2.0001 u + 1.0001 γ_n; with c = 4.01 u + 3.01 γ_n
(c <= 0.01, d < 16 000) κ <= c, hence **hi - 2c S <= D <= hi**. For d = 2048, c = 3.7e-4: the band is 7.4e-4 S.
Features below float32's normal range (|a_k b_k| < 2^-126) add at most n 2^-149 of underflow; `_TINY` (2^-90)
covers it. Features must be finite in float32 (|x| < 3.4e38).

**Decisions.** A hit (sqrt(max(D, 0)) <= r) is certain when hi + tiny <= r²(1 - 2^-40), a miss when
hi - 2cS - tiny > r²(1 + 2^-40) (the 2^-40 covers the rounding of r² and of the square root, which is monotone);
every other pair is recomputed exactly. A k-th smallest D of a row is found among the columns whose hi is within
2c S + 2 tiny of the k-th smallest hi (no other column can be nearer), all recomputed exactly.

**Exact recomputation.** A float64 GEMM entry depends on the BLAS kernel that computed it: MKL (AVX-512) computes
the columns of a product in tiles of 12 and the last, partial tile with another kernel whose rounding differs, and
a row count that is not a multiple of 8 likewise (hence the float64 formula's padding). Entries of full tiles do not
depend on the product's shape (measured: 8 to 2048 rows, 16 to 50 001 columns, d from 12 to 2048, 1 and 2 threads).
So an entry is recomputed in a product whose columns sit in full tiles (gathered columns, zero-padded to a multiple
of `COLUMN_WINDOW`), and an entry of the last `n mod COLUMN_WINDOW` columns in the product of those last columns
alone, which ends in the same partial tile. This holds for any BLAS whose tile widths divide `COLUMN_WINDOW`; each
call checks it first (`reproduces_float64`: 8 rows, every column class, against the float64 formula) and falls back
to the float64 formula where it does not hold.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    # torch is imported where it runs: `sdeval report --help` reaches this module and must not pay torch's import.
    import torch

ROW_ALIGN = 8
#: Exact recomputation places columns in products of a multiple of this many columns: a multiple of the GEMM
#: column tiles (4, 6, 8, 12, 16, 24 and 48 divide it; others fail `reproduces_float64` and fall back).
COLUMN_WINDOW = 48
_U32 = 2.0**-24
_SLACK = 2.0**-40  # relative room around r² for its rounding and the square root's
_TINY = 2.0**-90  # absolute room for float32 underflow (n 2^-149 at most)
_GROUP = 16  # rows per exact recomputation: about 4 candidate columns each, so one 48-column window
_EXTRA = 8  # the screen's top-k keeps this many columns beyond the width asked for
_WHOLE = 4  # a group whose candidate columns exceed 1/_WHOLE of the columns reads whole rows
_DENSE = 8  # a block whose maybe-pairs exceed 1/_DENSE of it is recomputed whole
_PIECE = COLUMN_WINDOW * 84  # columns per piece of a whole-row recomputation (4032)


def squared_norms(x: torch.Tensor) -> torch.Tensor:
    """(x * x).sum(1) in float64, in blocks of 256 rows (x * x whole would be a copy of x), written into one output:
    results kept alive between large freed temporaries fragment malloc's heap (+0.3 GB resident measured at
    n = 20k). A float32 x is converted a block at a time (the same values as a float64 copy of it)."""
    import torch  # at call time (see the imports above)

    out = torch.empty(len(x), dtype=torch.float64)
    for start in range(0, len(x), 256):
        block = x[start : start + 256].double()
        torch.sum(block * block, dim=1, out=out[start : start + 256])
    return out


def squared_distances(
    a: torch.Tensor, b: torch.Tensor, b_sq: torch.Tensor | None = None, a_sq: torch.Tensor | None = None
) -> torch.Tensor:
    """The float64 formula before its square root: |a|² + |b|² - 2 a.b, [len(a), len(b)] (direct differences would
    need n*m*d memory). `a_sq`, `b_sq`: the rows' squared norms, if already computed."""
    import torch  # at call time (see the imports above)

    rows = len(a)
    a_sq = (squared_norms(a) if a_sq is None else a_sq)[:, None]
    if b_sq is None:
        b_sq = squared_norms(b)
    # MKL computes the last rows of a product whose row count is not a multiple of 4 with another kernel, whose
    # rounding differs: zero rows up to a multiple of 8 make every distance the same whatever the chunking.
    pad = -rows % ROW_ALIGN
    ab = (torch.cat([a, a.new_zeros(pad, a.shape[1])]) if pad else a) @ b.T
    d2 = a_sq + b_sq
    d2.sub_(ab[:rows], alpha=2.0)  # = (|a|² + |b|²) - (2a).b, bit for bit; no third n x m buffer
    return d2


def pairwise_distances(
    a: torch.Tensor, b: torch.Tensor, b_sq: torch.Tensor | None = None, a_sq: torch.Tensor | None = None
) -> torch.Tensor:
    """Euclidean distances [len(a), len(b)] by the float64 formula (see the module docstring)."""
    return squared_distances(a, b, b_sq, a_sq).clamp_min_(0).sqrt_()


def screen_margin(d: int) -> float:
    """c of the module docstring: hi - 2c S <= D <= hi for inner dimension d."""
    terms = d + 2
    if terms * _U32 >= 1e-3:
        raise ValueError(f"the float32 screen is bounded for d < 16 000, got d = {d}")
    gamma = terms * _U32 / (1 - terms * _U32)
    return 4.01 * _U32 + 3.01 * gamma


def screen_supported(d: int) -> bool:
    return (d + 2) * _U32 < 1e-3


class ScreenedSet:
    """A feature set for the screen: float32 rows with the norms folded in (the columns' layout), the float64 squared
    norms of the float64 formula, and the caller's array, from which exact float64 rows are read."""

    def __init__(self, features: np.ndarray, sq: torch.Tensor | None = None) -> None:
        import torch  # at call time (see the imports above)

        array = np.asarray(features)
        if array.dtype not in (np.float32, np.float64):
            array = array.astype(np.float64)  # the float64 formula's input
        self.source = array
        self.n, self.d = array.shape
        self.c = screen_margin(self.d)
        self.sq = squared_norms(torch.from_numpy(array)) if sq is None else sq
        self.max_sq = float(self.sq.max()) if self.n else 0.0
        self.width = -(-(self.d + 2) // 16) * 16  # two norm columns, then zeros to a multiple of 16
        cols = torch.zeros(self.n, self.width, dtype=torch.float32)
        cols[:, : self.d] = torch.from_numpy(array)
        cols[:, self.d] = 1.0
        cols[:, self.d + 1] = (1.0 + self.c) * self.sq
        self.cols32 = cols
        # The last window: the columns from here on are recomputed in one product ending as the whole product ends
        # (in the same partial tile), at least COLUMN_WINDOW wide (narrower products take other code paths).
        tail = self.n % COLUMN_WINDOW
        self.n_full = max(0, self.n - tail - COLUMN_WINDOW) if tail else self.n

    def __len__(self) -> int:
        return self.n

    def rows32(self, rows: slice | torch.Tensor) -> torch.Tensor:
        """The row side of the screen: [-2x, (1 + c) sa, 1, 0...] (the factor 2 is exact), for a slice of rows or
        an index of them."""
        import torch  # at call time (see the imports above)

        source = self.cols32[rows]
        block = torch.zeros(len(source), self.width, dtype=torch.float32)
        torch.mul(source[:, : self.d], -2.0, out=block[:, : self.d])
        block[:, self.d] = source[:, self.d + 1]
        block[:, self.d + 1] = 1.0
        return block

    def rows64(self, index: np.ndarray, multiple: int = 1) -> torch.Tensor:
        """Rows of the float64 formula's input (the caller's values in float64), zero rows after them up to a
        multiple of `multiple`."""
        import torch  # at call time (see the imports above)

        out = np.zeros((-(-len(index) // multiple) * multiple, self.d))
        out[: len(index)] = self.source[index]
        return torch.from_numpy(out)


def screen(a: ScreenedSet, rows: slice | torch.Tensor, b: ScreenedSet, cols: slice | None = None) -> torch.Tensor:
    """hi [rows, cols] (float32; every column of b by default): an upper bound of the float64 formula's D, at most
    2c S + tiny above it. The bound does not depend on which set is the row side: hi of (i, j) bounds D of (j, i)."""
    return a.rows32(rows) @ (b.cols32 if cols is None else b.cols32[cols]).T


def _whole_products(rows: torch.Tensor, b: ScreenedSet) -> torch.Tensor:
    """rows . b^T for every column of b, each entry as the float64 formula's GEMM computes it: full-tile pieces of
    `_PIECE` columns, then the last window alone (it ends in the same partial tile as the whole product)."""
    import torch  # at call time (see the imports above)

    out = torch.empty(len(rows), b.n, dtype=torch.float64)
    for start in range(0, b.n_full, _PIECE):
        stop = min(start + _PIECE, b.n_full)
        out[:, start:stop] = rows @ b.rows64(np.arange(start, stop)).T
    if b.n_full < b.n:
        out[:, b.n_full :] = rows @ b.rows64(np.arange(b.n_full, b.n)).T
    return out


def _products(rows: torch.Tensor, b: ScreenedSet, cols: np.ndarray) -> torch.Tensor:
    """rows . b[cols]^T (cols sorted, unique) as the float64 formula's GEMM computes each entry."""
    import torch  # at call time (see the imports above)

    if len(cols) * _WHOLE > b.n:  # most columns: whole rows cost less than gathering
        return _whole_products(rows, b)[:, torch.from_numpy(cols)]
    out = torch.empty(len(rows), len(cols), dtype=torch.float64)
    full = cols < b.n_full
    if full.any():
        gathered = b.rows64(cols[full], COLUMN_WINDOW)
        out[:, torch.from_numpy(full)] = (rows @ gathered.T)[:, : int(full.sum())]
    if not full.all():
        last = rows @ b.rows64(np.arange(b.n_full, b.n)).T
        out[:, torch.from_numpy(~full)] = last[:, torch.from_numpy(cols[~full] - b.n_full)]
    return out


def exact_squared(a: ScreenedSet, rows: np.ndarray, b: ScreenedSet, cols: np.ndarray) -> torch.Tensor:
    """The float64 formula's D (before the square root) for the pairs (rows[p], cols[p]), bit for bit: grouped by
    `_GROUP` rows, each group one GEMM against the union of its columns."""
    import torch  # at call time (see the imports above)

    out = torch.empty(len(rows), dtype=torch.float64)
    if not len(rows):
        return out
    order = np.argsort(rows, kind="stable")
    unique_rows, starts = np.unique(rows[order], return_index=True)
    bounds = np.append(starts, len(rows))
    # One thread: these products are small, and waking a second thread for each costs more than it computes
    # (erratic on a busy machine: 0.1 to 6 ms for one 16 x 96 product). Their entries are the same either way.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _exact_groups(a, rows, b, cols, order, unique_rows, bounds, out)
    finally:
        torch.set_num_threads(threads)
    return out


def _exact_groups(
    a: ScreenedSet,
    rows: np.ndarray,
    b: ScreenedSet,
    cols: np.ndarray,
    order: np.ndarray,
    unique_rows: np.ndarray,
    bounds: np.ndarray,
    out: torch.Tensor,
) -> None:
    import torch  # at call time (see the imports above)

    for g in range(0, len(unique_rows), _GROUP):
        group = unique_rows[g : g + _GROUP]
        pick = order[bounds[g] : bounds[min(g + _GROUP, len(unique_rows))]]
        local = torch.from_numpy(np.searchsorted(group, rows[pick]))
        columns, where = np.unique(cols[pick], return_inverse=True)
        products = _products(a.rows64(group, ROW_ALIGN), b, columns)
        d2 = a.sq[torch.from_numpy(group)][local] + b.sq[torch.from_numpy(columns)][torch.from_numpy(where)]
        d2.sub_(products[local, torch.from_numpy(where)], alpha=2.0)  # the float64 formula's operations
        out[torch.from_numpy(pick)] = d2


def exact_rows(a: ScreenedSet, rows: np.ndarray, b: ScreenedSet, cols: slice | None = None) -> torch.Tensor:
    """The float64 formula's D for whole rows [len(rows), b.n], column pieces at a time; or for the columns `cols`
    of those rows alone."""
    index = torch_index(rows)
    if cols is None or (cols.start, cols.stop) == (0, b.n):
        products = _whole_products(a.rows64(rows, ROW_ALIGN), b)[: len(rows)]
        d2 = a.sq[index][:, None] + b.sq
    else:
        products = _products(a.rows64(rows, ROW_ALIGN), b, np.arange(cols.start, cols.stop))[: len(rows)]
        d2 = a.sq[index][:, None] + b.sq[cols]
    d2.sub_(products, alpha=2.0)
    return d2


def torch_index(index: np.ndarray) -> torch.Tensor:
    import torch  # at call time (see the imports above)

    return torch.from_numpy(np.ascontiguousarray(index, dtype=np.int64))


def _up32(values: torch.Tensor) -> torch.Tensor:
    """float64 thresholds as float32 values no smaller (round to nearest, then a 2^-20 nudge away from zero)."""
    import torch  # at call time (see the imports above)

    nudged = torch.where(values > 0, values * (1 + 2.0**-20), values * (1 - 2.0**-20))
    return nudged.float()


def candidate_count(n: int, width: int) -> int:
    """How many of a row's smallest screen values `settle_nearest` takes for the `width` nearest of n columns."""
    return min(n, min(width, n) + _EXTRA)


def keep_smallest(values: torch.Tensor, columns: torch.Tensor, rows: slice, hi: torch.Tensor, offset: int) -> None:
    """Fold a block of screen values (columns from `offset` on) into the running smallest `values` of `rows` (with
    their `columns`): the smallest of all blocks are among the smallest of each."""
    import torch  # at call time (see the imports above)

    keep = values.shape[1]
    block_values, block_columns = hi.topk(min(keep, hi.shape[1]), dim=1, largest=False)
    merged = torch.cat([values[rows], block_values], dim=1)
    best, where = merged.topk(keep, dim=1, largest=False)
    values[rows] = best
    columns[rows] = torch.cat([columns[rows], block_columns + offset], dim=1).gather(1, where)


def settle_nearest(
    a: ScreenedSet,
    rows: slice,
    b: ScreenedSet,
    values: torch.Tensor,
    columns: torch.Tensor,
    width: int,
    whole_rows: Callable[[torch.Tensor], torch.Tensor],
):
    """The `width` smallest float64-formula D of each row of the block, exact and ascending, with their columns:
    (values [r, width] float64, columns [r, width] int64; ties may list other columns than a top-k of the float64
    row would, the values are the same). From each row's smallest screen values (ascending, at least `width` +
    `_EXTRA` of them unless the row is shorter; `candidate_count`) and their columns: the candidates within the band
    of the width-th are recomputed exactly. A row whose band reaches past its candidates is screened whole again
    (`whole_rows(mask)`: those rows' screen values against every column; any screen's, since each bounds D with the
    same band)."""
    import torch  # at call time (see the imports above)

    count, keep = values.shape
    n = b.n
    width = min(width, n)
    sa = a.sq[rows]
    limit = values[:, width - 1].double() + 2 * a.c * (sa + b.max_sq) * (1 + _SLACK) + 3 * _TINY
    limit32 = _up32(limit)
    inside = values <= limit32[:, None]
    short = (values[:, -1] <= limit32) & (keep < n)  # the band reaches past the candidates: scan the whole row
    if short.any():
        inside[short] = False
    i, p = inside.nonzero(as_tuple=True)
    j = columns[i, p]
    if short.any():
        extra_i, extra_j = (whole_rows(short) <= limit32[short, None]).nonzero(as_tuple=True)
        i = torch.cat([i, short.nonzero().squeeze(1)[extra_i]])
        j = torch.cat([j, extra_j])
        order = torch.argsort(i, stable=True)
        i, j = i[order], j[order]
    start = range(*rows.indices(a.n)).start
    d2 = exact_squared(a, (i + start).numpy(), b, j.numpy())
    per_row = torch.bincount(i, minlength=count)
    offsets = torch.cumsum(per_row, 0) - per_row
    slot = torch.arange(len(i)) - offsets[i]
    table = torch.full((count, int(per_row.max())), float("inf"), dtype=torch.float64)
    table[i, slot] = d2
    table_cols = torch.zeros(count, table.shape[1], dtype=torch.int64)
    table_cols[i, slot] = j
    best, where = table.topk(width, dim=1, largest=False)
    return best, table_cols.gather(1, where)


def hit_pairs(
    a: ScreenedSet,
    rows: slice,
    b: ScreenedSet,
    hi: torch.Tensor,
    radii: torch.Tensor,
    *,
    per_row: bool,
    cols: slice | None = None,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The pairs (row of the block, column of b) with exact `sqrt(max(D, 0)) <= radius`, one list per radius:
    `radii` [r, T] per row (NaN: no radius, never a hit) or [b.n] per column (T = 1). `hi` is the screen of the rows
    against b's columns `cols` (all by default). Pairs the screen cannot settle are recomputed with the float64
    formula; a block where too many pairs are near a radius is recomputed whole (the float64 path's cost). Sparse:
    hits are a few per row, and no [r, b.n] mask is written or read again."""
    import torch  # at call time (see the imports above)

    cols = slice(0, b.n) if cols is None else cols
    offset = cols.start
    b_sq = b.sq[cols]
    sa = a.sq[rows]
    start = range(*rows.indices(a.n)).start
    inf = float("inf")
    if per_row:
        top = torch.nan_to_num(radii, nan=-inf).amax(dim=1)
        band = 2 * a.c * (sa + b.max_sq) * (1 + _SLACK) + 3 * _TINY
        reach = torch.where(top >= 0, top * top * (1 + _SLACK) + band, torch.full_like(top, -inf))
        maybe = hi <= _up32(reach)[:, None]
    else:
        radii = radii[cols]
        band = 2 * a.c * (float(sa.max()) + b_sq) * (1 + _SLACK) + 3 * _TINY
        maybe = hi <= _up32(radii * radii * (1 + _SLACK) + band)[None, :]
    thresholds = radii.shape[1] if per_row else 1
    if int(torch.count_nonzero(maybe)) * _DENSE > maybe.numel():
        index = np.arange(start, start + len(hi))
        distances = exact_rows(a, index, b, cols).clamp_min_(0).sqrt_()
        masks = [distances <= radii[:, t, None] for t in range(thresholds)] if per_row else [distances <= radii]
        found = [mask.nonzero() for mask in masks]
        return [(index[:, 0], index[:, 1] + offset) for index in found]
    i, j = maybe.nonzero(as_tuple=True)
    del maybe
    hi_pairs = hi[i, j].double()
    low = hi_pairs - 2 * a.c * (sa[i] + b_sq[j]) * (1 + _SLACK) - _TINY
    pair_radii = [radii[i, t] for t in range(thresholds)] if per_row else [radii[j]]
    certain, unsure = [], torch.zeros(len(i), dtype=torch.bool)
    for radius in pair_radii:
        squared = radius * radius
        sure = hi_pairs + _TINY <= squared * (1 - _SLACK)
        unsure |= ~sure & (low <= squared * (1 + _SLACK))  # NaN: neither, a miss
        certain.append(sure)
    distances = exact_squared(a, (i[unsure] + start).numpy(), b, (j[unsure] + offset).numpy()).clamp_min_(0).sqrt_()
    pairs = []
    for sure, radius in zip(certain, pair_radii, strict=True):
        hit = sure.clone()
        hit[unsure] = distances <= radius[unsure]
        pairs.append((i[hit], j[hit] + offset))
    return pairs


_CHECKED: dict[tuple, bool] = {}


def reproduces_float64(a: ScreenedSet, b: ScreenedSet) -> bool:
    """Whether exact recomputation gives the float64 formula's entries on this machine for b's column count: 8 rows
    against a sample of full-tile columns, the middle ones and every column of the last window, checked once per
    (d, n, threads)."""
    import torch  # at call time (see the imports above)

    key = (a.d, b.n, torch.get_num_threads())
    if key not in _CHECKED:
        rows = np.arange(min(ROW_ALIGN, a.n))
        whole = squared_distances(a.rows64(rows), b.rows64(np.arange(b.n)), b.sq, a.sq[torch_index(rows)])
        rng = np.random.default_rng(0)
        sample = rng.choice(b.n_full, min(128, b.n_full), replace=False) if b.n_full else np.empty(0, np.int64)
        middle = np.arange(max(0, b.n_full // 2 - 24), min(b.n_full, b.n_full // 2 + 24))  # where threads split
        cols = np.unique(np.concatenate([sample, middle, np.arange(b.n_full, b.n)]))
        pair_rows, pair_cols = np.repeat(rows, len(cols)), np.tile(cols, len(rows))
        got = exact_squared(a, pair_rows, b, pair_cols)
        _CHECKED[key] = bool(torch.equal(got, whole[torch_index(pair_rows), torch_index(pair_cols)]))
    return _CHECKED[key]
