"""The built-in human-preference metrics (sdeval.preference): one score per image from each scorer, prompt-relative
where the model is; ImageReward, HPS, PickScore, the LAION aesthetic score.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from sdeval.metrics.builtin.cells import require
from sdeval.metrics.registry import (
    Bootstrap,
    CellData,
    Direction,
    MetricOutput,
    MetricSkip,
    MetricSpec,
    Need,
    PromptData,
    ResultKey,
)
from sdeval.preference import scorer_info


def _preference_metric(name: str) -> Callable[[CellData], MetricOutput]:
    def compute(cell: CellData) -> MetricOutput:
        scores = require(cell.preference.get(name), f"{name} scores")
        rows = np.flatnonzero(~np.isnan(scores))
        skipped = cell.preference_missing.get(name, [])
        if len(rows) == 0:
            raise MetricSkip(f"no scored image could be given a {name} score (see the reasons in `images_skipped`)"
                             if skipped else f"no image to score with {name}")  # fmt: skip
        values = scores[rows]
        entry: dict[str, Any] = {"value": float(values.mean()), "n": len(rows), "sd": float(values.std()),
                                 "images_skipped": skipped}  # fmt: skip
        if cell.prompts is not None:  # scores of different prompts are not comparable: each prompt's own mean
            entry["per_prompt"] = _per_prompt_means(cell.prompts, rows, values)
        column = [None if np.isnan(v) else float(v) for v in scores]
        return MetricOutput({name: entry}, per_image={name: column})

    return compute


def _per_prompt_means(prompts: PromptData, rows: np.ndarray, values: np.ndarray) -> list[dict[str, Any]]:
    index = prompts.index[rows]
    out = []
    for j in np.unique(index[index >= 0]):
        mine = values[index == j]
        out.append({"prompt": prompts.distinct[int(j)], "n_images": len(mine), "mean": float(mine.mean())})
    return out


def preference_metric(name: str) -> MetricSpec:
    """The metric of preference scorer `name` (sdeval.preference.SCORERS): its mean score over images."""
    scorer = scorer_info(name)  # a built-in's metadata, without importing its module (torch)
    needs = {Need.PREFERENCE} | ({Need.PROMPTS} if scorer.prompt_relative else set())
    relative = " against its prompt, compared between cells prompt by prompt" if scorer.prompt_relative else ""
    return MetricSpec(
        name=name,
        description=f"{scorer.label}: a human-preference score per image{relative} (mean over images).",
        results=(ResultKey(name, scorer.label, Direction(scorer.direction), scorer.range,
                           Bootstrap(name, pair_by="prompt" if scorer.prompt_relative else "item"),
                           detail="({n} images)"),),
        needs=frozenset(needs),
        compute=_preference_metric(name),
        per_image=(name,),
    )  # fmt: skip


IMAGEREWARD = preference_metric("imagereward")
HPS = preference_metric("hps")
PICKSCORE = preference_metric("pickscore")
AESTHETIC = preference_metric("aesthetic")
