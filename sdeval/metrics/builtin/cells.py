"""What several families of built-in metrics share: a cell's input or a MetricSkip saying what is missing, a per-image
column, the judged images (or every image listed with why none was), and the Fréchet distance's jackknife side
(FID, sFID, FD_DINOv2, FD_CLIP).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sdeval.metrics import corpus
from sdeval.metrics.registry import CellData, JudgedData, MetricOutput, MetricSkip


def fid_side(x: np.ndarray, reference: np.ndarray, blocks: np.ndarray, k: int, seed: int) -> Any:
    """The jackknife side of a Fréchet distance of rows to reference rows (metrics/corpus.py)."""
    return corpus.FidSide(x, reference, blocks, k, seed)


def require(value: Any, what: str) -> Any:
    """`value`, or a MetricSkip saying the metric needs `what`."""
    if value is None:
        raise MetricSkip(f"needs {what}")
    return value


def column_of(n: int, rows: np.ndarray, values: Any) -> list[Any]:
    """A per-image column of n: `values` at `rows`, None elsewhere."""
    column: list[Any] = [None] * n
    for i, value in zip(rows, values, strict=True):
        column[int(i)] = value
    return column


def judged_rows(cell: CellData) -> tuple[JudgedData, list[int]]:
    """The cell's judgements and the rows of its judged images (a MetricSkip when it was not judged)."""
    judged = require(cell.judged, "judgements (--judge, and a suite whose prompts have specs)")
    return judged, [i for i, judgement in enumerate(judged.judgements) if judgement is not None]


def unjudged(key: str, judged: JudgedData) -> MetricOutput:
    """No image could be judged: value null with the reason, and every image listed with its own (a MetricSkip
    would drop the list). A reason every image shares (no suite at all) is the fix itself, so it is said here."""
    reasons = {m["reason"] for m in judged.missing}
    why = (
        ": " + reasons.pop().removeprefix("no spec: ")
        if len(reasons) == 1
        else " (each image's reason is listed under `images_skipped`)"
    )
    skipped = f"no scored image has a prompt with a spec{why}"
    return MetricOutput({key: {"value": None, "skipped": skipped, "images_skipped": judged.missing}})
