"""TensorBoard: event files in LOGDIR/RUN_NAME. Series are scalars at their steps, the grid an image; TensorBoard
has no artifacts, so the results file and the report folder are copied beside the event files (`files/`), and the
parameters and the report's Markdown summary are text entries."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from sdeval.core.errors import SdevalError
from sdeval.trackers.base import Attachments, Destination, require, safe_name
from sdeval.trackers.series import Plan

DEFAULT_LOGDIR = "runs"


def _params_table(params: dict[str, str]) -> str:
    """The parameters as a Markdown table (TensorBoard's text tab renders Markdown)."""
    escaped = {key: value.replace("|", "\\|") for key, value in params.items()}  # a `|` would end the cell
    rows = [f"| {key} | {value} |" for key, value in escaped.items()]
    return "\n".join(["| parameter | value |", "| --- | --- |", *rows])


def log(plan: Plan, attachments: Attachments, destination: Destination) -> str:
    """Write `plan` as event files in a run folder; returns the folder in words."""
    require("tensorboard", "tensorboard")
    from torch.utils.tensorboard import SummaryWriter  # torch's event writer: once tensorboard is found installed

    folder = Path(destination.logdir or DEFAULT_LOGDIR) / safe_name(plan.run_name)
    if folder.exists() and not folder.is_dir():
        raise SdevalError(f"--logdir: {folder} is a file, not a run folder")
    writer = SummaryWriter(log_dir=str(folder))
    try:
        steps = plan.ordered()
        writer.add_text("sdeval/params", _params_table(plan.params), 0)
        for step, values in steps:
            for series, value in values.items():
                writer.add_scalar(safe_name(series), value, step)
        last = steps[-1][0] if steps else 0
        if attachments.grid is not None:
            with Image.open(attachments.grid) as grid:
                writer.add_image("images/grid", np.asarray(grid.convert("RGB")), last, dataformats="HWC")
        files = folder / "files"
        files.mkdir(parents=True, exist_ok=True)
        shutil.copy2(attachments.results, files / attachments.results.name)
        if attachments.report is not None:
            shutil.copytree(attachments.report, files / "report", dirs_exist_ok=True)
            summary = attachments.report / "summary.md"
            if summary.is_file():
                writer.add_text("sdeval/report", summary.read_text(encoding="utf-8"), last)
    finally:
        writer.close()
    return f"tensorboard run {folder} (tensorboard --logdir {folder.parent})"
