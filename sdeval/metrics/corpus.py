"""Corpus metrics (FID, KID, CMMD, IS, precision, recall) from feature rows, with the block jackknife, and FID
against sample size (FID∞).

FID jackknife cost: the reference covariance is factored once (Σ_ref = B B^T: B = U sqrt(w) from an eigh, or a
small reference's centred rows, metrics/fid.py ReferenceRoot); every generated row is projected once (Y = X B),
and each leave-one-block-out FID then needs one symmetric eigvalsh of B^T Σ_gen B (built from the full Gram of Y
minus the block's), or of the m x m Gram of the centred Y rows when the subset has fewer rows than B has columns.
No d x d eigh per replicate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sdeval.metrics.cmmd import SCALE, mmd2_from_sums, rbf_gamma, rbf_kernel
from sdeval.metrics.estimators import Interval, t_quantile
from sdeval.metrics.fid import ReferenceRoot, frechet_from_traces, reference_root, trace_sqrt_psd
from sdeval.metrics.inception_score import split_of_rows
from sdeval.metrics.kid import mmd2_unbiased_from_sums, polynomial_kernel
from sdeval.metrics.precision_recall import precision_hits as pr_precision_hits
from sdeval.metrics.precision_recall import recall_leave_outs

#: Reference rows used for the generated-to-reference kernel terms of the KID/CMMD jackknife: the reference is
#: fixed (the interval is conditional on it), so a seeded subsample only adds a little noise to the spread.
KERNEL_REFERENCE_ROWS = 5000
_CHUNK = 2048


class FidProjection:
    """Generated rows projected on a reference's root, for FIDs of many row subsets at one eigvalsh each."""

    def __init__(self, features: np.ndarray, root: ReferenceRoot) -> None:
        self.root = root
        self.x = np.asarray(features, dtype=np.float64)
        self.y = self.x @ root.b
        self.sq = np.einsum("ij,ij->i", self.x, self.x)
        self._gram: np.ndarray | None = None

    def _fid(self, m: int, x_sum: np.ndarray, sq_sum: float, trace_part: float) -> float:
        mu = x_sum / m
        trace_gen = float((sq_sum - m * mu @ mu) / (m - 1))
        return frechet_from_traces(mu - self.root.mean, trace_gen, self.root.trace, trace_part)

    def fid(self, rows: np.ndarray | None = None) -> float:
        """FID of the given rows (all by default) against the reference; the route follows the subset's size."""
        y = self.y if rows is None else self.y[rows]
        x_sum = (self.x if rows is None else self.x[rows]).sum(axis=0)
        sq_sum = float((self.sq if rows is None else self.sq[rows]).sum())
        m = len(y)
        if m < 2:
            raise ValueError(f"FID needs at least 2 images, got {m}")
        yc = y - y.mean(axis=0)
        small = yc @ yc.T if m <= y.shape[1] else yc.T @ yc  # same non-zero spectrum; solve the smaller
        return self._fid(m, x_sum, sq_sum, trace_sqrt_psd(small / (m - 1)))

    def leave_block_out(self, blocks: np.ndarray, n_blocks: int) -> np.ndarray:
        """FID with each block's rows left out in turn, [n_blocks]."""
        n, dp = self.y.shape
        if n - np.bincount(blocks, minlength=n_blocks).max() > dp:
            # Large subsets: B^T Σ B from the full Gram of Y less the block's, one d' x d' eigvalsh each.
            gram = self._full_gram()
            x_total, sq_total, y_total = self.x.sum(axis=0), float(self.sq.sum()), self.y.sum(axis=0)
            out = np.empty(n_blocks)
            for k in range(n_blocks):
                rows = blocks == k
                yk = self.y[rows]
                m = n - len(yk)
                y_sum = y_total - yk.sum(axis=0)
                nu = y_sum / m
                mat = (gram - yk.T @ yk - m * np.outer(nu, nu)) / (m - 1)
                x_sum = x_total - self.x[rows].sum(axis=0)
                out[k] = self._fid(m, x_sum, sq_total - float(self.sq[rows].sum()), trace_sqrt_psd(mat))
            return out
        return np.array([self.fid(np.flatnonzero(blocks != k)) for k in range(n_blocks)])

    def _full_gram(self) -> np.ndarray:
        gram = self._gram
        if gram is None:
            gram = self._gram = self.y.T @ self.y
        return gram


def _rbf(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return rbf_kernel(x, y, rbf_gamma())


#: The metrics' own kernels (metrics/kid.py, metrics/cmmd.py): one formula each, whoever computes it.
KERNELS = {"kid": polynomial_kernel, "cmmd": _rbf}


def _mmd2(kind: str, sum_xx: float, sum_yy: float, sum_xy: float, m: int, n: int) -> float:
    """The metric's own estimator from kernel sums: KID's unbiased MMD² (diagonals out of sum_xx and sum_yy), or
    CMMD's biased one (diagonals in), scaled as CMMD is."""
    if kind == "kid":
        return mmd2_unbiased_from_sums(sum_xx, sum_yy, sum_xy, m, n)
    return SCALE * mmd2_from_sums(sum_xx, sum_yy, sum_xy, m, n, "biased")


class KernelBlocks:
    """Block sums of a kernel over generated rows (K x K, and against the reference), computed once in row
    chunks; any leave-blocks-out MMD² is then algebra on them (no n x n matrix is ever held)."""

    def __init__(self, kind: str, x: np.ndarray, blocks: np.ndarray, n_blocks: int, reference: np.ndarray) -> None:
        kernel = KERNELS[kind]
        self.kind = kind
        x = np.asarray(x, dtype=np.float64)
        ref = np.asarray(reference, dtype=np.float64)
        self.n_ref = len(ref)
        onehot = np.zeros((len(x), n_blocks))
        onehot[np.arange(len(x)), blocks] = 1.0
        self.counts = onehot.sum(axis=0)
        self.xx = np.zeros((n_blocks, n_blocks))
        self.xx_diag = np.zeros(n_blocks)
        self.xy = np.zeros(n_blocks)
        for start in range(0, len(x), _CHUNK):
            chunk, chunk_blocks = x[start : start + _CHUNK], blocks[start : start + _CHUNK]
            sums = np.zeros((len(chunk), n_blocks))
            for col in range(0, len(x), _CHUNK):  # square tiles: memory stays _CHUNK x _CHUNK whatever n
                k = kernel(chunk, x[col : col + _CHUNK])
                sums += k @ onehot[col : col + _CHUNK]
                if col == start:  # the tile on the diagonal holds each row's kernel with itself
                    np.add.at(self.xx_diag, chunk_blocks, np.diagonal(k).copy())
            np.add.at(self.xx, chunk_blocks, sums)
            ref_sums = np.zeros(len(chunk))
            for ref_start in range(0, len(ref), _CHUNK):
                ref_sums += kernel(chunk, ref[ref_start : ref_start + _CHUNK]).sum(axis=1)
            np.add.at(self.xy, chunk_blocks, ref_sums)

    def value(self, keep: np.ndarray, ref_sum: float = 0.0) -> float:
        """The metric over the kept blocks (boolean [K]); `ref_sum` is the reference-reference kernel sum
        (`kernel_reference_sum`; 0 leaves that constant term out)."""
        m = int(self.counts[keep].sum())  # a count of rows (the counts are sums of one-hot floats)
        sxx = float(self.xx[np.ix_(keep, keep)].sum())
        sxy = float(self.xy[keep].sum())
        if self.kind == "kid":  # unbiased: the diagonal out
            sxx -= float(self.xx_diag[keep].sum())
        return _mmd2(self.kind, sxx, ref_sum, sxy, m, self.n_ref)

    def leave_block_out(self) -> np.ndarray:
        k = len(self.counts)
        out = np.empty(k)
        for j in range(k):
            keep = np.ones(k, dtype=bool)
            keep[j] = False
            out[j] = self.value(keep)
        return out


def kernel_reference_sum(kind: str, reference: np.ndarray) -> float:
    """The reference-reference kernel sum of KID (diagonal out) or CMMD (diagonal in)."""
    ref = np.asarray(reference, dtype=np.float64)
    r = len(ref)
    kernel = KERNELS[kind]
    total = 0.0
    trace = 0.0
    for start in range(0, r, _CHUNK):
        k = kernel(ref[start : start + _CHUNK], ref)
        total += float(k.sum())
        rows = np.arange(len(k))
        trace += float(k[rows, start + rows].sum())
    return total - trace if kind == "kid" else total


def kernel_reference(reference: np.ndarray, seed: int) -> np.ndarray:
    ref = np.asarray(reference)
    if len(ref) <= KERNEL_REFERENCE_ROWS:
        return ref
    rows = np.sort(np.random.default_rng(seed).choice(len(ref), KERNEL_REFERENCE_ROWS, replace=False))
    return ref[rows]


def precision_hits(generated: np.ndarray, reference: np.ndarray, k: int = 3) -> np.ndarray:
    """Per generated row, whether it lies in some reference k-NN ball: precision is their mean, and with the
    reference fixed each image's hit depends on that image alone (a per-image statistic). Taken from the pass of
    the metric or of the recall interval that computed them for these rows, when there was one."""
    return pr_precision_hits(generated, reference, k)


@dataclass(frozen=True)
class FidCurve:
    """FID at several n (mean and sd over draws without replacement), and the fit FID = FID∞ + slope / n."""

    points: list[tuple[int, float, float]]
    fid_inf: float
    fid_inf_interval: Interval
    slope: float

    def to_json(self) -> dict[str, Any]:
        return {
            "points": [{"n": n, "mean": mean, "sd": sd} for n, mean, sd in self.points],
            "fid_inf": self.fid_inf,
            "fid_inf_interval": self.fid_inf_interval.to_json(),
            "slope": self.slope,
        }


def default_ns(n: int, count: int = 8) -> list[int]:
    """`count` sizes evenly spaced in 1/n from n / 5 to n (Chong & Forsyth's range is 5k..50k of 50k)."""
    low = max(2, n // 5)
    inverse = np.linspace(1.0 / low, 1.0 / n, count)
    return sorted({round(float(1.0 / v)) for v in inverse})


def fid_against_n(
    features: np.ndarray,
    reference_features: np.ndarray,
    ns: Sequence[int] | None = None,
    *,
    repeats: int = 5,
    seed: int = 0,
    level: float = 0.95,
    root: ReferenceRoot | None = None,
) -> FidCurve:
    """FID at each n of `ns` (draws without replacement of the generated rows; the reference is fixed), a least
    squares line against 1/n over every draw, and its intercept FID∞ with a t interval (Chong & Forsyth 2020)."""
    x = np.asarray(features)
    n_total = len(x)
    sizes = sorted(set(ns)) if ns is not None else default_ns(n_total)
    if any(not 2 <= n <= n_total for n in sizes) or len(sizes) < 2:
        raise ValueError(f"ns must hold at least 2 distinct sizes within 2..{n_total}, got {sizes}")
    projection = FidProjection(x, root if root is not None else ReferenceRoot.from_features(reference_features))
    rng = np.random.default_rng(seed)
    inv, values, points = [], [], []
    for n in sizes:
        draws = 1 if n == n_total else repeats  # every draw of all rows is the same set
        fids = [projection.fid(np.sort(rng.choice(n_total, n, replace=False))) for _ in range(draws)]
        points.append((n, float(np.mean(fids)), float(np.std(fids, ddof=1)) if draws > 1 else 0.0))
        inv += [1.0 / n] * draws
        values += fids
    design = np.column_stack([np.ones(len(inv)), inv])
    coef, *_ = np.linalg.lstsq(design, np.asarray(values), rcond=None)
    df = len(values) - 2
    residual = np.asarray(values) - design @ coef
    sigma2 = float(residual @ residual) / max(df, 1)
    se = float(np.sqrt(sigma2 * np.linalg.inv(design.T @ design)[0, 0]))
    half = t_quantile(level, df) * se
    method = "least squares of FID against 1/n over subsample draws (reference fixed)"
    return FidCurve(points, float(coef[0]), Interval(coef[0] - half, coef[0] + half, level, method), float(coef[1]))


# -- jackknife sides: one per corpus statistic, each built from (rows, reference, blocks, K, seed) -------------


class FidSide:
    """FID of rows against a fixed reference, and with each block of rows left out."""

    def __init__(self, x: np.ndarray, reference: np.ndarray, blocks: np.ndarray, k: int, seed: int) -> None:
        self.projection = FidProjection(x, reference_root(reference))
        self.leave_outs = self.projection.leave_block_out(blocks, k)

    def value(self) -> float:
        return self.projection.fid()


class KernelSide:
    """KID (unbiased, cubic kernel) or CMMD (biased, RBF) of rows against a fixed reference, and block leave-outs,
    with the metrics' own kernels and estimators (metrics/kid.py, metrics/cmmd.py).

    Where it differs from the cell's number, necessarily: the reference is `ref_rows` (a seeded subsample above
    KERNEL_REFERENCE_ROWS); KID is the estimator on all the rows at once, not torch-fidelity's mean over random
    subsets (the subsets' draw would add its own noise to every leave-out); and `leave_outs` leave out the
    reference-reference term, a constant that cancels in the spread and in paired differences (adding
    `reference_sum()` to the estimator gives the metric of the remaining rows; tests/test_jackknife_sides.py)."""

    def __init__(self, kind: str, x: np.ndarray, reference: np.ndarray, blocks: np.ndarray, k: int, seed: int):
        self.kind, self.k = kind, k
        self.ref_rows = kernel_reference(reference, seed)
        self.kernel = KernelBlocks(kind, x, blocks, k, self.ref_rows)
        self.leave_outs = self.kernel.leave_block_out()

    def reference_sum(self) -> float:
        """The reference-reference kernel sum (diagonal out for KID), an n_ref² pass: computed only when asked."""
        return kernel_reference_sum(self.kind, self.ref_rows)

    def value(self, keep: np.ndarray | None = None) -> float:
        """The statistic on the rows of the kept blocks (boolean [K]; all by default), reference term included."""
        return self.kernel.value(np.ones(self.k, dtype=bool) if keep is None else keep, self.reference_sum())


def kid_side(x: np.ndarray, reference: np.ndarray, blocks: np.ndarray, k: int, seed: int) -> KernelSide:
    return KernelSide("kid", x, reference, blocks, k, seed)


def cmmd_side(x: np.ndarray, reference: np.ndarray, blocks: np.ndarray, k: int, seed: int) -> KernelSide:
    return KernelSide("cmmd", x, reference, blocks, k, seed)


class InceptionScoreSide:
    """Inception Score of logit rows, and with each block of rows left out. Every row keeps the split the estimator
    deals it to (with the run's seed, the estimator's own splits): re-dealing the rest for each leave-out would add
    the shuffle's noise to every leave-out value, which the jackknife multiplies by K - 1 (measured: 99 % coverage
    for a nominal 95 %, docs/statistics.md). Per split and block, the sums of p(y|x) and of Σ p log p are kept, so
    a leave-out value is algebra on them: IS_split = exp(mean Σ p log p - Σ q log q), q the split's mean of p."""

    def __init__(self, logits: np.ndarray, blocks: np.ndarray, k: int, seed: int, splits: int) -> None:
        from scipy.special import log_softmax

        n, classes = logits.shape
        self.k = k
        cell = split_of_rows(n, splits, seed) * k + np.asarray(blocks, dtype=np.int64)
        p_sums = np.zeros((splits * k, classes))
        self.entropy = np.zeros(splits * k)  # Σ over rows of Σ_y p log p (a negative entropy)
        for start in range(0, n, _CHUNK):  # float64 probabilities a chunk at a time
            log_p = log_softmax(np.asarray(logits[start : start + _CHUNK], np.float64), axis=1)
            p, where = np.exp(log_p), cell[start : start + _CHUNK]
            row_entropy = np.einsum("ij,ij->i", p, log_p)
            for c in np.unique(where):
                mine = where == c
                p_sums[c] += p[mine].sum(axis=0)
                self.entropy[c] += row_entropy[mine].sum()
        self.p_sums = p_sums.reshape(splits, k, classes)
        self.entropy = self.entropy.reshape(splits, k)
        self.counts = np.bincount(cell, minlength=splits * k).reshape(splits, k).astype(np.float64)
        self.leave_outs = np.array([self._score(np.arange(k) != block) for block in range(k)])

    def _score(self, kept: np.ndarray) -> float:
        """The mean over splits of each split's score on the rows of the `kept` blocks (splits left empty drop out)."""
        counts = self.counts[:, kept].sum(axis=1)
        has = counts > 0
        q = self.p_sums[:, kept].sum(axis=1)[has] / counts[has, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            q_log_q = np.where(q > 0, q * np.log(q), 0.0).sum(axis=1)
        return float(np.mean(np.exp(self.entropy[:, kept].sum(axis=1)[has] / counts[has] - q_log_q)))

    def value(self) -> float:
        """The score of all the rows (inception_score's, to rounding, when `seed` is the run's)."""
        return self._score(np.ones(self.k, dtype=bool))


class RecallSide:
    """Improved recall of rows against a fixed reference, and with each block out (its radii change): both from one
    pass over the distances, in row chunks (no n x n matrix)."""

    def __init__(self, x: np.ndarray, reference: np.ndarray, blocks: np.ndarray, k: int, seed: int, neighbourhood: int):
        self.neighbourhood = neighbourhood
        self.recall, self.leave_outs = recall_leave_outs(x, reference, blocks, k, neighbourhood)

    def value(self) -> float:
        """Recall of all the rows (equal to precision_recall(x, reference, neighbourhood)[1])."""
        return self.recall
