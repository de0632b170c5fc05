"""The interval of every value a tracker run logs: the one the gate and the report show for it, so one (cell,
metric) has one interval whoever shows it. That is the results' own (`score --ci`), else drawn by sdeval.stats with
the settings the results record (score --ci's defaults when none), from the feature state beside the file where the
method needs it; a part (`adherence.colors`) over the part's images, as the gate draws it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdeval.core.errors import SdevalError
from sdeval.gate.evaluate import Side, load_side, value_interval
from sdeval.metrics.keys import value_of, with_parts
from sdeval.stats.settings import IntervalSettings

#: {cell id: {KEY or KEY.PART: (low, high)}}
Intervals = dict[str, dict[str, tuple[float, float]]]


def read_results(results: Path) -> Side:
    """A results file, checked, with the feature state beside it where there is one (as the gate reads it)."""
    return load_side(results)


def document_intervals(side: Side) -> tuple[Intervals, list[str]]:
    """(each value's interval, why some values have none)."""
    settings = IntervalSettings.of(side.document)
    out: Intervals = {}
    missing: list[str] = []
    for cell in side.document["cells"]:
        found = out.setdefault(cell["id"], {})
        for name in with_parts([cell]):
            if value_of(cell, name)[0] is None:
                continue
            try:
                drawn: Any = value_interval(cell, side.states.get(cell["id"]), name, settings, side.state_problem)
            except SdevalError as err:  # inputs the method cannot use (too few prompts for its blocks, ...)
                drawn = f"{name}: no interval for cell {cell['id']}: {err}"
            if isinstance(drawn, str):
                missing.append(drawn)
            else:
                found[name] = (float(drawn.low), float(drawn.high))
    return out, missing
