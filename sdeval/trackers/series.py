"""What a results document becomes in an experiment tracker, whichever tracker: named series of (step, value).

Each cell's every result key, and each part of a key that declares parts (`adherence.colors`), is one series; its
interval, where the results carry one (`score --ci`), is two more: `NAME/low` and `NAME/high`. A series is named
`CELL/KEY` when the document has several cells (`KEY` alone for one). With `step_from="checkpoint"` the cells of
one setting become one series over training steps instead: the step is the number in the cell's checkpoint label
(`checkpoint-1500` -> 1500) and the series is named after what else tells the cells apart (the setting).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sdeval.core.errors import SdevalError
from sdeval.metrics.keys import value_of, with_parts
from sdeval.results.protocol import flatten
from sdeval.trackers.options import STEP_SOURCES

_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")


@dataclass
class Plan:
    """Everything one tracker run receives: its name, its parameters (flat, text) and its values by step."""

    run_name: str
    params: dict[str, str]
    steps: dict[int, dict[str, float]] = field(default_factory=dict)  # step -> {series: value}

    def ordered(self) -> list[tuple[int, dict[str, float]]]:
        """The steps in increasing order, as every tracker wants them (W&B drops a step lower than the last)."""
        return sorted(self.steps.items())

    def series(self) -> list[str]:
        return sorted({name for values in self.steps.values() for name in values})


def checkpoint_label(cell: dict[str, Any]) -> str | None:
    """The checkpoint a cell was generated with: its `checkpoint.name`, or its group value when the images were
    grouped by a `checkpoint` column (None: the cell names none)."""
    named = (cell.get("checkpoint") or {}).get("name")
    if named:
        return str(named)
    group = cell.get("group") or {}
    return str(group["value"]) if group.get("by") == "checkpoint" and group.get("value") is not None else None


def step_of(cell: dict[str, Any]) -> int:
    """The training step of a cell: the one a checkpoint series recorded (sdeval.generate.series), else the last
    number of its checkpoint label (`checkpoint-1500`, `run3/step_2000`)."""
    recorded = (cell.get("checkpoint") or {}).get("step")
    if isinstance(recorded, int) and not isinstance(recorded, bool):
        return recorded
    label = checkpoint_label(cell)
    if label is None:
        raise SdevalError(
            f"--step-from checkpoint: cell {cell['id']!r} names no checkpoint (score a generation run, or group the "
            "images with --group-by checkpoint)"
        )
    found = _LAST_NUMBER.search(label)
    if found is None:
        raise SdevalError(
            f"--step-from checkpoint: checkpoint {label!r} of cell {cell['id']!r} holds no number to read a step from "
            "(name checkpoints after their step, e.g. checkpoint-1500)"
        )
    return int(found.group(1))


def _rest_label(cell: dict[str, Any]) -> str:
    """What tells a cell apart from the other cells of its step: its training run (a checkpoint series of several
    runs), then its setting, else its group, else nothing."""
    run = (cell.get("checkpoint") or {}).get("run")
    setting = (cell.get("setting") or {}).get("id")
    if setting:
        return f"{run}/{setting}" if run else str(setting)
    group = cell.get("group") or {}
    rest = "" if group.get("by") in (None, "checkpoint") else str(group.get("value"))
    return "/".join(part for part in (run, rest) if part)


def _values(cell: dict[str, Any], intervals: dict[str, tuple[float, float]] | None) -> dict[str, float]:
    """{KEY or KEY.PART: value, NAME/low, NAME/high} of one cell; a metric without a value (skipped) is left out.
    Bounds come from `intervals` when given (sdeval.trackers.intervals), else from the entries' own."""
    out: dict[str, float] = {}
    for name in with_parts([cell]):
        value, _ = value_of(cell, name)
        if value is None:
            continue
        out[name] = value
        if intervals is not None:
            bounds = intervals.get(name)
        else:
            interval = (cell["metrics"].get(name) or {}).get("interval") or {}
            has = interval.get("low") is not None and interval.get("high") is not None
            bounds = (float(interval["low"]), float(interval["high"])) if has else None
        if bounds is not None:
            out[f"{name}/low"], out[f"{name}/high"] = bounds
    return out


def _params(document: dict[str, Any]) -> dict[str, str]:
    """The run's parameters: sdeval's version and every protocol field that all cells share (a field on which
    they differ is left to the results file, which is logged whole)."""
    flats = [flatten(cell.get("protocol") or {}) for cell in document["cells"]]
    shared = {k: v for k, v in flats[0].items() if all(k in f and f[k] == v for f in flats[1:])} if flats else {}
    params = {"sdeval_version": str(document["sdeval_version"]), "n_cells": str(len(document["cells"]))}
    params.update({f"protocol.{k}": _text(v) for k, v in sorted(shared.items())})
    return params


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def plan(
    document: dict[str, Any],
    run_name: str,
    step_from: str | None = None,
    step: int | None = None,
    intervals: dict[str, dict[str, tuple[float, float]]] | None = None,
) -> Plan:
    """The series of a (loaded and checked) results document: at `step` (default 0), or at each cell's step read
    as `step_from` says (a training loop gives its own step; a run of checkpoints reads theirs). `intervals`: each
    cell's bounds by name (None: those the document holds)."""
    if step_from is not None and step_from not in STEP_SOURCES:
        raise SdevalError(f"--step-from: {step_from!r} is not one of {', '.join(STEP_SOURCES)}")
    if step_from is not None and step is not None:
        raise SdevalError("a step and --step-from: give one")
    cells = document["cells"]
    out = Plan(run_name=run_name, params=_params(document))
    if step_from is None:
        prefixes = {cell["id"]: (f"{cell['id']}/" if len(cells) > 1 else "") for cell in cells}
        steps = dict.fromkeys(prefixes, step or 0)
    else:
        steps = {cell["id"]: step_of(cell) for cell in cells}
        rests = {cell["id"]: _rest_label(cell) for cell in cells}
        several = len(set(rests.values())) > 1
        prefixes = {cid: (f"{rest}/" if several and rest else "") for cid, rest in rests.items()}
        seen: dict[tuple[str, int], str] = {}
        for cell in cells:
            where = (rests[cell["id"]], steps[cell["id"]])
            if where in seen:
                raise SdevalError(
                    f"--step-from checkpoint: cells {seen[where]!r} and {cell['id']!r} both read as step {where[1]}"
                    + (f" of setting {where[0]!r}" if where[0] else "")
                    + " (one value per step and series)"
                )
            seen[where] = cell["id"]
    by_step: dict[int, dict[str, float]] = defaultdict(dict)
    for cell in cells:
        found = intervals.get(cell["id"], {}) if intervals is not None else None
        for name, value in _values(cell, found).items():
            by_step[steps[cell["id"]]][prefixes[cell["id"]] + name] = value
    out.steps = dict(by_step)
    return out
