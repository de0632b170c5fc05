"""FID∞ (Chong & Forsyth 2020) as a metric of its own, and its jackknife side.

The value is `fid_against_n`'s intercept (metrics/corpus.py), the same number from the same seeded draws: FID at
`default_ns(n)` sizes (evenly spaced in 1/n from n / 5 to n), `REPEATS` draws without replacement of the generated
rows at each (one of all the rows), the reference fixed, and the least-squares line FID = FID∞ + slope / n over every
draw. Beside it: the slope, the fit's residual standard deviation (how far the draws scatter around the line; a large
one says the 1/n model does not hold over these sizes) and the fit's own t interval.

The jackknife side keeps every draw and takes the left-out block's rows out of it: a leave-out is the same fit over
the draws less that block's rows, at their reduced sizes. Drawing afresh from the remaining rows would add the draws'
own noise to every leave-out, which the jackknife multiplies by K - 1 (as the Inception Score side keeps its splits).
Each draw is projected once; its K leave-outs are then one eigvalsh each (FidProjection.leave_block_out).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sdeval.metrics.corpus import FidProjection, ReferenceRoot, default_ns, reference_root
from sdeval.metrics.estimators import Interval, t_quantile

#: Draws at each size but the full one (fid_against_n's default).
REPEATS = 5
FIT = "least squares of FID against 1/n over subsample draws (reference fixed)"


@dataclass(frozen=True)
class FidInfFit:
    """The line FID = value + slope / n through (n, FID) of every draw."""

    value: float
    slope: float
    residual_sd: float  # sqrt(residual sum of squares / (draws - 2))
    interval: Interval  # the intercept's t interval from the fit: the draws' scatter, not run-to-run spread


def fit(sizes: np.ndarray, values: np.ndarray, level: float = 0.95) -> FidInfFit:
    """The least-squares line of `values` against 1 / `sizes`, as fid_against_n fits it."""
    inv = 1.0 / np.asarray(sizes, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    design = np.column_stack([np.ones(len(inv)), inv])
    coef, *_ = np.linalg.lstsq(design, values, rcond=None)
    df = len(values) - 2
    residual = values - design @ coef
    sigma2 = float(residual @ residual) / max(df, 1)
    se = float(np.sqrt(sigma2 * np.linalg.inv(design.T @ design)[0, 0]))
    half = t_quantile(level, df) * se
    interval = Interval(float(coef[0] - half), float(coef[0] + half), level, FIT)
    return FidInfFit(float(coef[0]), float(coef[1]), float(np.sqrt(sigma2)), interval)


def draws(n_total: int, seed: int, repeats: int = REPEATS) -> list[np.ndarray]:
    """The generated rows of each draw (sorted), in fid_against_n's order and from its seeded generator."""
    sizes = default_ns(n_total)
    if len(sizes) < 2:
        raise ValueError(f"FID∞ needs at least 2 distinct sizes from n / 5 to n: {n_total} images is too few")
    rng = np.random.default_rng(seed)
    out = []
    for n in sizes:
        out += [np.sort(rng.choice(n_total, n, replace=False)) for _ in range(1 if n == n_total else repeats)]
    return out


def fid_inf(features: np.ndarray, root: ReferenceRoot, seed: int, level: float = 0.95) -> tuple[FidInfFit, list]:
    """The fit over every draw of `features` against the reference `root`, and the points (n, mean, sd) per size."""
    projection = FidProjection(features, root)
    rows = draws(len(projection.x), seed)
    sizes = np.array([len(r) for r in rows])
    values = np.array([projection.fid(r) for r in rows])
    points = []
    for n in np.unique(sizes):
        at = values[sizes == n]
        points.append({"n": int(n), "mean": float(at.mean()), "sd": float(at.std(ddof=1)) if len(at) > 1 else 0.0})
    return fit(sizes, values, level), points


class FidInfSide:
    """FID∞ of rows against a fixed reference, and with each block of rows left out of every draw (module docstring).

    `seed` draws the subsets: with the run's scoring seed, `value()` is the cell's number (to rounding)."""

    def __init__(self, x: np.ndarray, reference: np.ndarray, blocks: np.ndarray, k: int, seed: int) -> None:
        x = np.asarray(x)
        blocks = np.asarray(blocks, dtype=np.int64)
        root = reference_root(reference)
        rows = draws(len(x), seed)
        self.sizes = np.array([len(r) for r in rows])
        self.values = np.empty(len(rows))
        left = np.empty((k, len(rows)))
        kept = np.empty((k, len(rows)))
        for i, r in enumerate(rows):
            projection = FidProjection(x[r], root)
            self.values[i] = projection.fid()
            kept[:, i] = len(r) - np.bincount(blocks[r], minlength=k)
            if kept[:, i].min() >= 2:
                left[:, i] = projection.leave_block_out(blocks[r], k)
            else:  # a small draw that a block empties (a few dozen images): that leave-out's fit goes without it
                left[:, i] = [projection.fid(np.flatnonzero(blocks[r] != j)) if kept[j, i] >= 2 else np.nan
                              for j in range(k)]  # fmt: skip
        usable = ~np.isnan(left)
        self.leave_outs = np.array([fit(kept[j, usable[j]], left[j, usable[j]]).value for j in range(k)])

    def value(self) -> float:
        return fit(self.sizes, self.values).value


def entry(fitted: FidInfFit, points: list[dict[str, Any]], n: int, n_reference: int) -> dict[str, Any]:
    """The metric's results entry."""
    return {
        "value": fitted.value,
        "slope": fitted.slope,
        "residual_sd": fitted.residual_sd,
        "fit_interval": fitted.interval.to_json(),
        "points": points,
        "n": n,
        "n_reference": n_reference,
    }
