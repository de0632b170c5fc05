"""What the report's modules share: the options it was asked for, the cells it shows, their columns and marks."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ReportOptions:
    """What `sdeval report` was asked for."""

    title: str = "sdeval report"
    gate: str | os.PathLike[str] | None = None
    # None: as the results record (score --ci), else the defaults: one interval per cell whoever shows it.
    level: float | None = None
    replicates: int | None = None
    seed: int | None = None
    quiet: bool = False
    labels: tuple[str, ...] = ()  # one run label per results file, in order; empty: derived from the paths
    pick: Any = None  # sdeval.gate.pick.PickRule: which checkpoint to ship, shown with its reason


@dataclass
class Cell:
    """One cell of one results file, as the report shows it."""

    label: str  # unique across the report: the cell id, prefixed by its run's label when there are several runs
    run: str  # the label of the results file it came from (unique across the report)
    source: str  # that results file
    data: dict[str, Any]
    state: Any  # sdeval.stats.CellState, or None: no feature state
    checkpoint: str
    setting: str
    values: dict[str, Any]
    images_root: Path | None
    group: int = 0  # its protocol group over every metric shown (cells in one group are comparable on all)
    groups: dict[str, int] = field(default_factory=dict)  # its protocol group per result key shown


@dataclass
class Column:
    """A column of the summary table: one result key, named and directed as the metric registry declares it."""

    key: str
    label: str
    direction: str | None  # "higher", "lower", or None when the registry does not know the key


@dataclass
class Mark:
    """A table entry: the value, its interval, and how it compares with the best of its column."""

    value: float | None
    text: str
    low: float | None = None
    high: float | None = None
    interval_note: str | None = None  # why there is no interval, or how to read the one there is
    status: str = ""  # best, tie (not significantly different from the best), worse, ncmp, or ""
    p_adjusted: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
