"""Log one results file to a tracker: its series (sdeval.trackers.series), the results file itself, the HTML report
(made for the run unless one is given) and the same-prompt grid."""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from sdeval.report.model import ReportOptions
from sdeval.report.render import build_report
from sdeval.results.document import write_results
from sdeval.trackers import series
from sdeval.trackers.base import Attachments, Destination, tracker
from sdeval.trackers.grid import write_grid
from sdeval.trackers.intervals import document_intervals, read_results
from sdeval.trackers.options import LogOptions, check


def default_run_name(results: Path) -> str:
    """The results file's name without its suffix; for the usual `results.json`, the folder it is in."""
    absolute = Path(os.path.abspath(results))
    return absolute.parent.name if absolute.stem == "results" and absolute.parent.name else absolute.stem


def log_results(results: str | os.PathLike[str], options: LogOptions) -> str:
    """Log a results file as one tracker run; returns where the run is, in words."""
    check(options)
    path = Path(results)
    side = read_results(path)
    document = side.document
    found, missing = document_intervals(side)  # the gate's and the report's intervals, per-category ones too
    if missing and not options.quiet:
        print(f"log: {len(missing)} values have no interval bounds, e.g. {missing[0]}", file=sys.stderr)
    name = options.run_name or default_run_name(path)
    plan = series.plan(document, name, options.step_from, options.step, intervals=found)
    log = tracker(options.to)  # a missing library fails here, before the report is made
    with tempfile.TemporaryDirectory(prefix="sdeval-log-") as tmp:
        report = Path(options.report) if options.report is not None else None
        if report is None and options.make_report:
            report = Path(tmp) / "report"
            build_report([path], report, ReportOptions(quiet=True))
        grid = None
        if options.grid:
            drawn = write_grid(path, Path(tmp) / "grid.png")
            if drawn["n_prompts"]:
                grid = Path(tmp) / "grid.png"
            if drawn["missing"] and not options.quiet:
                print(f"log: grid: {drawn['missing']} images not found (drawn grey)", file=sys.stderr)
        return log(plan, Attachments(results=path, report=report, grid=grid), _destination(plan, options))


def log_document(document: dict[str, Any], options: LogOptions) -> str:
    """Log a results document held in memory (the Evaluator's): written, checked, to a temp results file first, so
    the run carries it as any other. Its name says the step, so a training loop's files do not replace each other."""
    check(options)
    with tempfile.TemporaryDirectory(prefix="sdeval-log-") as tmp:
        name = "results.json" if options.step is None else f"results-step{options.step}.json"
        path = Path(tmp) / name
        if document.get("state") is None:  # the Evaluator keeps its features in memory, never as a state file
            document = {**document, "state": {"path": None, "reason": "scored in memory: no feature state was kept"}}
        write_results(path, document)
        run_name = options.run_name or "evaluator"
        return log_results(path, dataclasses.replace(options, run_name=run_name))


def _destination(plan: series.Plan, options: LogOptions) -> Destination:
    return Destination(
        run_name=plan.run_name,
        experiment=options.experiment or "sdeval",
        tracking_uri=options.tracking_uri,
        logdir=options.logdir,
    )
