"""Statistics for results files: intervals for every metric of a cell, paired and unpaired comparisons of two
cells, FID against sample size (FID∞), and Holm's adjustment. Methods and their checks: docs/statistics.md.

The estimators (bootstrap, jackknife) and each metric's leave-out side are metric knowledge and live with the
metrics (metrics/estimators.py, metrics/corpus.py); this package draws them over a results file's cells."""

from __future__ import annotations

from sdeval.metrics.corpus import FidCurve, FidProjection, ReferenceRoot, fid_against_n
from sdeval.metrics.estimators import Comparison, Interval, holm
from sdeval.stats.cells import (
    CellState,
    annotate_intervals,
    cell_intervals,
    compare_cells,
    load_cell_states,
    states_from_arrays,
)

__all__ = [
    "CellState",
    "Comparison",
    "FidCurve",
    "FidProjection",
    "Interval",
    "ReferenceRoot",
    "annotate_intervals",
    "cell_intervals",
    "compare_cells",
    "fid_against_n",
    "holm",
    "load_cell_states",
    "states_from_arrays",
]
