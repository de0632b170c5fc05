"""Interval and comparison records, prompt grouping, and the two resampling schemes (cluster bootstrap,
delete-a-group jackknife) that every metric's interval is built from: the metrics' own leave-out sides
(metrics/corpus.py, metrics/fid_inf.py) and the statistics of results files (sdeval.stats) both stand on them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# scipy is imported where it runs: `sdeval report --help` reaches this module, and scipy takes half a second
# to import.
import numpy as np

BOOTSTRAP = "bootstrap over prompts"
JACKKNIFE = "jackknife over prompt blocks"
#: Blocks of prompts for the delete-a-group jackknife: enough for a stable variance (t with K - 1 degrees of
#: freedom), few enough that K FIDs stay cheap.
DEFAULT_BLOCKS = 25


@dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval at `level`, and how it was computed."""

    low: float
    high: float
    level: float
    method: str
    note: str | None = None  # why to read it with care: cut to the metric's range, fewer prompts than checked

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"low": self.low, "high": self.high, "level": self.level, "method": self.method}
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class Comparison:
    """b - a for one result key, with its interval and a two-sided p-value for no difference."""

    key: str
    a: float | None
    b: float | None
    difference: float
    interval: Interval
    p_value: float
    paired: bool
    n_shared: int
    method: str

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "a": self.a,
            "b": self.b,
            "difference": self.difference,
            "interval": self.interval.to_json(),
            "p_value": self.p_value,
            "paired": self.paired,
            "n_shared": self.n_shared,
            "method": self.method,
        }


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (step-down, monotone, capped at 1), in the input order."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()


def prompt_of(item: str) -> str:
    """The prompt part of an `item` key: `PID#SEED_INDEX` and `PID@SEED` give PID; a `path:` item is its own."""
    if item.startswith("path:"):
        return item
    for mark in ("#", "@"):
        head, sep, _ = item.rpartition(mark)
        if sep and head:
            return head
    return item


def group_index(items: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """(group of each item, the distinct prompts in first-seen order): seeds of a prompt share a group."""
    prompts: dict[str, int] = {}
    index = np.array([prompts.setdefault(prompt_of(item), len(prompts)) for item in items], dtype=np.int64)
    return index, list(prompts)


def blocks_of(groups: np.ndarray, n_groups: int, n_blocks: int, seed: int) -> np.ndarray:
    """Block of each row: prompts shuffled (seeded) and dealt round-robin into min(n_blocks, n_groups) blocks."""
    k = max(2, min(n_blocks, n_groups))
    order = np.random.default_rng(seed).permutation(n_groups)
    block_of_group = np.empty(n_groups, dtype=np.int64)
    block_of_group[order] = np.arange(n_groups) % k
    return block_of_group[groups]


def t_quantile(level: float, df: int) -> float:
    from scipy import stats as _scipy_stats  # at call time (see the imports above)

    return float(_scipy_stats.t.ppf(0.5 + level / 2, max(df, 1)))


def jackknife_se(leave_outs: np.ndarray) -> float:
    """Delete-a-group jackknife standard error from the K leave-one-block-out values (equal-ish blocks)."""
    theta = np.asarray(leave_outs, dtype=np.float64)
    k = len(theta)
    return float(np.sqrt((k - 1) / k * np.sum((theta - theta.mean()) ** 2)))


def jackknife_interval(value: float, leave_outs: np.ndarray, level: float, method: str = JACKKNIFE) -> Interval:
    """value ± t(K - 1)·se: for E[statistic at this n], the bias at n being the estimator's own, not removed."""
    se = jackknife_se(leave_outs)
    half = t_quantile(level, len(leave_outs) - 1) * se
    return Interval(float(value - half), float(value + half), level, f"{method} (K={len(leave_outs)})")


def jackknife_p(difference: float, leave_outs: np.ndarray) -> float:
    from scipy import stats as _scipy_stats  # at call time (see the imports above)

    se = jackknife_se(leave_outs)
    if se == 0.0:
        return 1.0 if difference == 0.0 else 0.0
    return float(2.0 * _scipy_stats.t.sf(abs(difference) / se, len(leave_outs) - 1))


def bootstrap_counts(n_groups: int, replicates: int, seed: int) -> np.ndarray:
    """[replicates, n_groups] multiplicities of a bootstrap over groups (prompts), seeded."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_groups, size=(replicates, n_groups))
    counts = np.zeros((replicates, n_groups), dtype=np.float64)
    np.add.at(counts, (np.arange(replicates)[:, None], draws), 1.0)
    return counts


def percentile_interval(replicates: np.ndarray, level: float, method: str = BOOTSTRAP) -> Interval:
    values = np.asarray(replicates, dtype=np.float64)
    values = values[np.isfinite(values)]
    low, high = np.quantile(values, [0.5 - level / 2, 0.5 + level / 2])
    return Interval(float(low), float(high), level, f"{method} (percentile, {len(values)} replicates)")


def bootstrap_p(difference: float, replicates: np.ndarray) -> float:
    """Two-sided p from the bootstrap standard error (normal): continuous, so Holm over many cells stays usable
    (a percentile p-value cannot go below 2 / replicates)."""
    from scipy import stats as _scipy_stats  # at call time (see the imports above)

    values = np.asarray(replicates, dtype=np.float64)
    se = float(np.std(values[np.isfinite(values)], ddof=1))
    if se == 0.0:
        return 1.0 if difference == 0.0 else 0.0
    return float(2.0 * _scipy_stats.norm.sf(abs(difference) / se))


def group_sums(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    return np.bincount(groups, weights=np.asarray(values, dtype=np.float64), minlength=n_groups)


def weighted_ratio(counts: np.ndarray, numerators: np.ndarray, denominators: np.ndarray) -> np.ndarray:
    """Per replicate, sum(count·numerator) / sum(count·denominator) (NaN where nothing was drawn)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (counts @ numerators) / (counts @ denominators)


Statistic = Callable[[np.ndarray], float]
