"""Log one results file to a tracker: its series (sdeval.trackers.series), the results file itself, the HTML report
(made for the run unless one is given) and the same-prompt grid."""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdeval.core.errors import SdevalError
from sdeval.report.model import ReportOptions
from sdeval.report.render import build_report
from sdeval.results.document import load_results, write_results
from sdeval.trackers import series
from sdeval.trackers.base import Attachments, Destination, tracker
from sdeval.trackers.grid import write_grid


@dataclass(frozen=True)
class LogOptions:
    """What `sdeval log` (and a bench config's `log:`) asks for."""

    to: str  # mlflow | wandb | tensorboard
    step_from: str | None = None  # None: every cell at `step`; "checkpoint": the step in each checkpoint label
    step: int | None = None  # the step of every cell (a training loop's); None: 0
    run_name: str | None = None  # None: the results file's name (its folder's for results.json)
    experiment: str | None = None  # MLflow experiment or W&B project (None: "sdeval")
    tracking_uri: str | None = None  # MLflow only
    logdir: str | None = None  # TensorBoard only (None: runs/)
    report: str | os.PathLike[str] | None = None  # an existing report folder to attach instead of making one
    make_report: bool = True  # False: attach no report
    grid: bool = True  # False: no same-prompt grid
    quiet: bool = False


#: Options that only one tracker reads: giving one to another tracker is an error, not silently nothing.
_ONLY_FOR = {"tracking_uri": ("--tracking-uri", "mlflow"), "logdir": ("--logdir", "tensorboard")}


def check(options: LogOptions) -> None:
    """Refuse options that do not fit the chosen tracker, before any work."""
    for field, (flag, owner) in _ONLY_FOR.items():
        if getattr(options, field) is not None and options.to != owner:
            raise SdevalError(f"{flag} is for --to {owner}, not --to {options.to}")
    if options.experiment is not None and options.to == "tensorboard":
        raise SdevalError(
            "--experiment is for --to mlflow and --to wandb (TensorBoard: choose the folder with --logdir)"
        )
    if options.report is not None and not Path(options.report, "index.html").is_file():
        raise SdevalError(f"--report: {options.report} is not a report folder (no index.html; see `sdeval report`)")


def default_run_name(results: Path) -> str:
    """The results file's name without its suffix; for the usual `results.json`, the folder it is in."""
    absolute = Path(os.path.abspath(results))
    return absolute.parent.name if absolute.stem == "results" and absolute.parent.name else absolute.stem


def log_results(results: str | os.PathLike[str], options: LogOptions) -> str:
    """Log a results file as one tracker run; returns where the run is, in words."""
    check(options)
    path = Path(results)
    document = load_results(path)
    plan = series.plan(document, options.run_name or default_run_name(path), options.step_from, options.step)
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
