"""What a log to a tracker is asked for (LogOptions), from the command line, the Python API or a bench config's
`log:` section (read here, each error naming its key). Light: no tracker, report or statistics import."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdeval.core.errors import ConfigError, SdevalError
from sdeval.core.suggest import check_keys, did_you_mean

#: The trackers, each in its own module (imported only when chosen), and the library it needs, which is also the
#: name of the extra that installs it (`pip install 'sdeval[mlflow]'`).
TRACKERS: dict[str, tuple[str, str]] = {
    "mlflow": ("sdeval.trackers.mlflow", "mlflow"),
    "wandb": ("sdeval.trackers.wandb", "wandb"),
    "tensorboard": ("sdeval.trackers.tensorboard", "tensorboard"),
}
#: The ways a step can be read from a cell (the --step-from choices).
STEP_SOURCES = ("checkpoint",)


@dataclass(frozen=True)
class LogOptions:
    """What `sdeval log`, `Evaluator.log_to` and a bench config's `log:` ask for."""

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


#: Options that only some trackers read: giving one to another tracker is an error, not silently nothing.
ONLY_FOR: dict[str, tuple[str, ...]] = {
    "tracking_uri": ("mlflow",),
    "logdir": ("tensorboard",),
    "experiment": ("mlflow", "wandb"),
}


def check(options: LogOptions) -> None:
    """Refuse options that do not fit the chosen tracker, before any work (named as the command's flags)."""
    for field, owners in ONLY_FOR.items():
        if getattr(options, field) is not None and options.to not in owners:
            flag = f"--{field.replace('_', '-')}"
            raise SdevalError(f"{flag} is for {' and '.join(f'--to {o}' for o in owners)}, not --to {options.to}")
    if options.report is not None and not Path(options.report, "index.html").is_file():
        raise SdevalError(f"--report: {options.report} is not a report folder (no index.html; see `sdeval report`)")


#: A bench config's `log:` entry: its keys, and which hold text.
SECTION_KEYS = ("to", "step_from", "run_name", "experiment", "tracking_uri", "logdir", "grid")
_TEXT_KEYS = ("run_name", "experiment", "tracking_uri", "logdir")


def parse_log_section(raw: Any, base_dir: Path) -> tuple[LogOptions, ...]:
    """A bench config's `log:` (one mapping, or a list of them: one run per tracker), checked before anything runs;
    `logdir` and a `sqlite:///` store relative to the config's folder."""
    if raw is None:
        return ()
    entries = [raw] if isinstance(raw, Mapping) else raw
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"log: expected a mapping (to: mlflow, ...) or a list of them, got {raw!r}")
    return tuple(_entry(entry, f"log[{i}]" if len(entries) > 1 else "log", base_dir) for i, entry in enumerate(entries))


def _entry(entry: Any, where: str, base_dir: Path) -> LogOptions:
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: expected a mapping (to: mlflow, ...), got {entry!r}")
    check_keys(entry, SECTION_KEYS, f"{where}.")
    to = entry.get("to")
    if to not in TRACKERS:
        shown = "required key is missing" if to is None else f"{to!r} is not a tracker{did_you_mean(str(to), TRACKERS)}"
        raise ConfigError(f"{where}.to: {shown} ({', '.join(TRACKERS)})")
    for key in _TEXT_KEYS:
        if key in entry and (not isinstance(entry[key], str) or not entry[key]):
            raise ConfigError(f"{where}.{key}: expected text, got {entry[key]!r}")
    for key, owners in ONLY_FOR.items():
        if key in entry and to not in owners:
            raise ConfigError(f"{where}.{key}: for {' and '.join(f'to: {o}' for o in owners)}, not to: {to}")
    step_from = entry.get("step_from")
    if step_from is not None and step_from not in STEP_SOURCES:
        raise ConfigError(f"{where}.step_from: expected one of {', '.join(STEP_SOURCES)}, got {step_from!r}")
    grid = entry.get("grid", True)
    if not isinstance(grid, bool):
        raise ConfigError(f"{where}.grid: expected true or false, got {grid!r}")
    logdir = entry.get("logdir")
    uri = entry.get("tracking_uri")
    if uri is not None and uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = f"sqlite:///{base_dir / uri[len('sqlite:///') :]}"  # a relative database file: beside the config
    return LogOptions(
        to=to,
        step_from=step_from,
        run_name=entry.get("run_name"),
        experiment=entry.get("experiment"),
        tracking_uri=uri,
        logdir=str(base_dir / logdir) if logdir is not None else None,
        grid=grid,
        quiet=True,
    )
