"""The Vendi score (Friedman & Dieng 2023) as built-in metrics, one per feature space: CLIP image embeddings (`vendi`)
and Inception pool3 features (`vendi_inception`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from sdeval.metrics.builtin.cells import require
from sdeval.metrics.registry import (
    Bootstrap,
    CellData,
    Direction,
    Jackknife,
    MetricOutput,
    MetricSkip,
    MetricSpec,
    Need,
    ResultKey,
    ScoreParams,
)
from sdeval.metrics.vendi import VendiSide, per_prompt, vendi_score


def _vendi_side(x: np.ndarray, reference: np.ndarray | None, blocks: np.ndarray, k: int, seed: int) -> Any:
    return VendiSide(x, blocks, k)


def _vendi_of(images: np.ndarray, cell: CellData, prefix: str) -> MetricOutput:
    """`PREFIX` per prompt over its seeds, `PREFIX_all` over all images, each image's prompt score in
    `PREFIX_prompt`: the Vendi score of the rows `images` (CLIP embeddings or Inception features)."""
    if len(images) < 2:
        raise MetricSkip(f"the Vendi score needs at least 2 images, got {len(images)}")
    entries: dict[str, dict[str, Any]] = {f"{prefix}_all": {"value": vendi_score(images), "n": len(images)}}
    prompts = cell.prompts
    rows = prompts.with_prompt if prompts is not None else np.array([], dtype=np.int64)
    scores = per_prompt(images[rows], prompts.index[rows]) if prompts is not None and len(rows) else []
    score_of = {s.prompt: s.score for s in scores if s.score is not None}  # prompts with 2+ images
    column: list[Any] = [None] * cell.n
    if prompts is None or not score_of:
        why = "no prompt has 2 or more images (seeds)" if scores else "no scored image has a prompt"
        entries[prefix] = {"value": None, "skipped": why}
    else:
        for i in rows:
            column[int(i)] = score_of.get(int(prompts.index[i]))
        entries[prefix] = {
            "value": float(np.mean(list(score_of.values()))),
            "n_prompts": len(score_of),
            "n_prompts_skipped": len(scores) - len(score_of),
            "n": int(sum(s.n_images for s in scores if s.score is not None)),
            "per_prompt": [{"prompt": prompts.distinct[s.prompt], "n_images": s.n_images, "vendi": s.score}
                           for s in scores],
            "images_skipped": prompts.missing,
        }  # fmt: skip
    return MetricOutput(entries, per_image={f"{prefix}_prompt": column})


def _vendi(cell: CellData, name: str, rows: str, what: str) -> MetricOutput:
    return _vendi_of(require(getattr(cell, rows), what), cell, name)


def _vendi_protocol(name: str, kernel: str) -> Callable[[ScoreParams, CellData], dict[str, Any]]:
    block = {"kernel": kernel, "q": 1, "group_by": "prompt", "mean": "over prompts with 2+ images"}
    return lambda params, cell: {name: dict(block)}


def _vendi_spec(name: str, label: str, features: str, need: Need, rows: str, what: str) -> MetricSpec:
    """The Vendi score on one feature space (CellData field `rows`, state array of the same name): per prompt over
    its seeds (key NAME, each image carrying its prompt's score, so the mean over prompts by text reproduces the
    value) and over all images (NAME_all)."""
    return MetricSpec(
        name=name,
        description=f"Vendi score (Friedman & Dieng 2023), cosine kernel on {features}: per prompt over its "
        "seeds (mean over prompts with 2+ images), and over all images.",
        results=(
            ResultKey(name, f"{label} (per prompt)", Direction.HIGHER, (1.0, None),
                      Bootstrap(f"{name}_prompt", weight="prompt", cluster="prompt"),
                      detail="({n_prompts} prompts with 2+ images)"),
            ResultKey(f"{name}_all", f"{label} (all images)", Direction.HIGHER, (1.0, None),
                      Jackknife((rows, None), _vendi_side), detail="({n} images)"),
        ),
        needs=frozenset({need, Need.PROMPTS}),
        compute=partial(_vendi, name=name, rows=rows, what=what),
        per_image=(f"{name}_prompt",),
        protocol=_vendi_protocol(name, f"cosine of {features}"),
    )  # fmt: skip


VENDI = _vendi_spec("vendi", "Vendi", "CLIP image embeddings", Need.CLIP_IMAGE, "clip_image", "CLIP image embeddings")
#: The same score on Inception pool3 features (the features of the Vendi paper's image experiments and of the
#: `vendi-score` package's `image_utils.embedding_vendi_score`): keys of their own, so that both feature spaces can
#: be in one results file, compared and gated side by side, and neither's numbers move with the other's model.
VENDI_INCEPTION = _vendi_spec(
    "vendi_inception", "Vendi, Inception", "Inception pool3 features", Need.INCEPTION_POOL, "pool", "Inception features"
)
