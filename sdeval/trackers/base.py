"""What every tracker takes: where the run goes, the files to attach, and its library, loaded on first use with a
one-line error naming the extra that installs it."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from sdeval.core.errors import SdevalError, first_line
from sdeval.trackers.options import TRACKERS
from sdeval.trackers.series import Plan


@dataclass(frozen=True)
class Destination:
    """Where a tracker run goes. `experiment` is MLflow's experiment or W&B's project; `tracking_uri` MLflow's
    store (None: MLFLOW_TRACKING_URI, else MLflow's default); `logdir` TensorBoard's folder of runs."""

    run_name: str
    experiment: str = "sdeval"
    tracking_uri: str | None = None
    logdir: str | None = None


@dataclass(frozen=True)
class Attachments:
    """Files a run carries beside its series: the results file, the HTML report folder, the same-prompt grid."""

    results: Path
    report: Path | None = None
    grid: Path | None = None


#: A tracker: logs a plan with its attachments to a destination; returns where the run can be found, in words.
LogFunction = Callable[[Plan, Attachments, Destination], str]


def tracker(name: str) -> LogFunction:
    """The `log` function of tracker `name` (one of TRACKERS), once its library is found importable: a missing
    library fails here, before any work."""
    if name not in TRACKERS:
        raise SdevalError(f"--to: {name!r} is not a tracker ({', '.join(TRACKERS)})")
    module, library = TRACKERS[name]
    require(library, name)
    return importlib.import_module(module).log


def require(module: str, extra: str) -> ModuleType:
    """Import a tracker's library; when it is missing, one line that says which extra installs it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name is not None and err.name.split(".")[0] != module.split(".")[0]:
            raise SdevalError(f"--to {extra}: {module} cannot be imported: {first_line(err)}") from None
        raise SdevalError(f"--to {extra}: {module} is not installed: pip install 'sdeval[{extra}]'") from None
    except ImportError as err:  # installed but broken (a missing shared library, a version clash)
        raise SdevalError(f"--to {extra}: {module} cannot be imported: {first_line(err)}") from None


_UNSAFE = re.compile(r"[^/\w.\- ]")


def safe_name(name: str) -> str:
    """A series name every tracker accepts: letters, digits, `_ - . / space` (MLflow's rule, which is the
    strictest), one slash between parts."""
    parts = [part for part in _UNSAFE.sub("_", name).split("/") if part not in ("", ".", "..")]
    return "/".join(parts) or "_"
