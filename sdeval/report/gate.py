"""The gate section: a verdict file of `sdeval gate --json`, read and checked, as the page shows it."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from sdeval.core.errors import SdevalError
from sdeval.core.textfiles import json_problem, read_user_text
from sdeval.gate.verdicts import GATE_FORMAT, GATE_FORMAT_VERSION, WORDS, overall_status
from sdeval.report.formatting import as_number, fmt, fmt_signed


def gate_verdict(counts: Counter[str]) -> str:
    """The verdict of a gate run from its counts, by the gate's own rule (sdeval.gate.verdicts)."""
    return WORDS[overall_status(counts)]


def read_gate(path: str | os.PathLike[str], runs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The verdict file of `sdeval gate --json`: its overall verdict, counts, one readable row per (rule, cell)
    and its warnings. With several `runs` (load_cells' documents) each row's cells are labelled by their run, as
    the rest of the page labels them. Anything else is an SdevalError naming the file."""
    where = f"--gate {path}"
    try:
        text = read_user_text(path, "gate verdict")
    except SdevalError as err:
        raise SdevalError(f"--gate {err}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        raise SdevalError(f"{where}: not a gate verdict (not valid JSON: {json_problem(err)})") from None
    if not isinstance(document, dict) or document.get("format") != GATE_FORMAT:
        has_format = isinstance(document, dict) and "format" in document
        found = f"format {document['format']!r}" if has_format else "no `format` field"
        raise SdevalError(f"{where}: not a gate verdict of `sdeval gate --json` ({found}; expected {GATE_FORMAT!r})")
    version = document.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version > GATE_FORMAT_VERSION:
        raise SdevalError(f"{where}: gate verdict format_version {version!r}: this sdeval reads {GATE_FORMAT_VERSION}")
    verdicts = document.get("verdicts")
    if not isinstance(verdicts, list) or not all(isinstance(v, dict) and v.get("status") in WORDS for v in verdicts):
        raise SdevalError(f"{where}: not a gate verdict (`verdicts` must be a list of verdicts with a status)")
    counts = Counter(v["status"] for v in verdicts)
    levels = {
        v["interval"].get("level")
        for v in verdicts
        if isinstance(v.get("interval"), dict) and isinstance(v["interval"].get("level"), int | float)
    }
    warnings = document.get("warnings")
    runs = runs or []
    candidate, baseline = (_gated_run(document.get(k), Path(path), runs) for k in ("results", "baseline"))
    note = _gate_runs_note(document, candidate, runs)
    if len(runs) > 1:
        rows = [_gate_row(v, candidate or _only_run(v.get("cell"), runs), baseline) for v in verdicts]
    else:
        rows = [_gate_row(v) for v in verdicts]
    return {
        "name": Path(path).name,
        "verdict": gate_verdict(counts),
        "counts": {status: counts[status] for status in WORDS},
        "rows": rows,
        # A column with no value in any row (every check an error: no value, no evidence) is not shown.
        "columns": [c for c in ("value", "evidence", "reason") if any(row[c] != "–" for row in rows)],
        "levels": sorted(levels),
        "runs_note": note,
        "warnings": [str(w) for w in warnings] if isinstance(warnings, list) else [],
    }


def _gated_run(record: Any, gate_path: Path, runs: list[dict[str, Any]]) -> str | None:
    """The label of the run that a gate file's `results` or `baseline` record names: by its path (as given to the
    gate, from the current folder or from the gate file's), else by the sha256 of the file where one run alone
    has it (copies of one file in several runs are told apart by path only)."""
    if not isinstance(record, dict):
        return None
    given = record.get("path")
    if isinstance(given, str) and given:
        places = {os.path.realpath(given), os.path.realpath(gate_path.parent / given)}
        found = [run["label"] for run in runs if os.path.realpath(run["path"]) in places]
        if len(found) == 1:
            return found[0]
    digest = record.get("sha256")
    found = [run["label"] for run in runs if digest and run.get("sha256") == digest]
    return found[0] if len(found) == 1 else None


def _only_run(cell: Any, runs: list[dict[str, Any]]) -> str | None:
    """The run that alone has a cell of this id (a gate file that does not name its results file)."""
    found = [run["label"] for run in runs if any(c["id"] == cell for c in run["document"]["cells"])]
    return found[0] if len(found) == 1 else None


def _gate_runs_note(document: dict[str, Any], candidate: str | None, runs: list[dict[str, Any]]) -> str | None:
    """What the page says when the gated results file is none of the report's runs, or is not named."""
    if candidate is not None or not runs:
        return None
    record = document.get("results")
    if isinstance(record, dict) and isinstance(record.get("path"), str):
        return f"The gate checked {record['path']}, which is not one of the results files of this report."
    if len(runs) > 1:
        return (
            "The gate file does not name the results file it checked (an older sdeval wrote it): its cells are "
            "labelled by run only where one run alone has a cell of that id."
        )
    return None


def _text(value: Any) -> str:
    """A string field of a verdict as shown: "–" when it is missing."""
    return value if isinstance(value, str) and value else "–"


def _gate_row(verdict: dict[str, Any], run: str | None = None, baseline_run: str | None = None) -> dict[str, str]:
    """One verdict as table text: numbers to 4 significant digits, a missing value as "–", never raw JSON. `run`
    and `baseline_run` label its cell and baseline cell as the page labels cells of several runs."""
    rule = verdict.get("rule")
    name = (rule.get("name") or rule.get("metric")) if isinstance(rule, dict) else rule
    cell, baseline = _text(verdict.get("cell")), verdict.get("baseline_cell")
    if run is not None:
        cell = f"{run}: {cell}"
    if isinstance(baseline, str) and baseline and baseline_run is not None:
        baseline = f"{baseline_run}: {baseline}"
    if isinstance(baseline, str) and baseline and baseline != cell:
        cell = f"{cell} (baseline {baseline})"
    evidence = "–"
    difference, estimate = as_number(verdict.get("difference")), as_number(verdict.get("estimate"))
    if difference is not None:
        evidence = fmt_signed(difference)  # a regression's difference keeps its sign, as the gate writes it
    elif estimate is not None:
        evidence = fmt(estimate)
    interval = verdict.get("interval")
    if isinstance(interval, dict):
        low, high = as_number(interval.get("low")), as_number(interval.get("high"))
        if low is not None and high is not None:
            span = f"[{fmt(low)}, {fmt(high)}]"
            evidence = span if evidence == "–" else f"{evidence} {span}"
    return {
        "status": verdict["status"],
        "verdict": WORDS[verdict["status"]],
        "cell": cell,
        "rule": _text(name),
        "value": fmt(as_number(verdict.get("value"))),
        "evidence": evidence,
        "reason": _text(verdict.get("reason")),
    }
