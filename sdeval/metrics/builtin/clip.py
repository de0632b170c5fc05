"""The built-in metrics on CLIP embeddings: CLIP score, R-precision and diversity (the --clip-* model, with each image's
prompt), CMMD and FD_CLIP (the --cmmd-* model, against the reference).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sdeval.metrics import corpus, fd_clip
from sdeval.metrics.builtin.cells import column_of, fid_side, require
from sdeval.metrics.clip_score import DEFAULT_AGGREGATION, clip_score
from sdeval.metrics.cmmd import SCALE, SIGMA, cmmd
from sdeval.metrics.diversity import image_distances, prompt_diversity
from sdeval.metrics.registry import (
    Bootstrap,
    CellData,
    Direction,
    Jackknife,
    MetricOutput,
    MetricSkip,
    MetricSpec,
    Need,
    PromptData,
    ResultKey,
    ScoreParams,
)
from sdeval.metrics.rprecision import DEFAULT_MAX_R, clip_r_precision

#: The paper's estimator (see metrics/cmmd.py).
CMMD_ESTIMATOR = "biased"


# -- jackknife sides (metrics/corpus.py: each metric recomputed leaving a block of prompts out) ---------------------


def _cmmd_side(x: np.ndarray, reference: np.ndarray, blocks: np.ndarray, k: int, seed: int) -> Any:
    return corpus.cmmd_side(x, reference, blocks, k, seed)


_CMMD = ("cmmd_image", "reference_cmmd_image")


# -- CLIP score, R-precision, CMMD, diversity -----------------------------------------------------------------------


def _prompted(cell: CellData) -> tuple[PromptData, np.ndarray]:
    """The cell's prompt data and the rows of its images that have a prompt (MetricSkip when none has)."""
    prompts = require(cell.prompts, "prompts")
    rows = prompts.with_prompt
    if len(rows) == 0:
        raise MetricSkip(
            "no scored image has a prompt (pass --prompts MANIFEST, or keep prompts in the images' metadata or in "
            "NAME.txt captions; see `prompts.missing`)"
        )
    return prompts, rows


def _n_truncated(prompts: PromptData, used: np.ndarray) -> int | None:
    if prompts.truncated is None:
        return None
    return int(sum(prompts.truncated[j] for j in np.unique(used)))


def _clip(cell: CellData) -> MetricOutput:
    prompts, rows = _prompted(cell)
    images = require(cell.clip_image, "CLIP image embeddings")[rows]
    texts = require(prompts.texts, "CLIP text embeddings")[prompts.index[rows]]
    result = clip_score(images, texts, aggregation=cell.params.clip_aggregation)
    entry = {
        "value": result.mean,
        "n": result.n,
        "torchmetrics_value": result.torchmetrics_value,
        "n_prompts_truncated": _n_truncated(prompts, prompts.index[rows]),
        "images_skipped": prompts.missing,
    }
    per_image = {
        "clip_score": column_of(cell.n, rows, [row.score for row in result.rows]),
        "clip_cosine": column_of(cell.n, rows, [row.cosine for row in result.rows]),
    }
    return MetricOutput({"clip": entry}, per_image=per_image)


def _rprecision(cell: CellData) -> MetricOutput:
    prompts, rows = _prompted(cell)
    images = require(cell.clip_image, "CLIP image embeddings")[rows]
    texts = require(prompts.texts, "CLIP text embeddings")
    # The candidates are the distinct prompts of this cell, so cells of different size rank the same way.
    used, local = np.unique(prompts.index[rows], return_inverse=True)
    p = len(used)
    if p < 2:
        raise MetricSkip(f"CLIP R-precision needs at least 2 distinct prompts, got {p}")
    r = cell.params.rprecision_r if cell.params.rprecision_r is not None else min(DEFAULT_MAX_R, p)
    if not 2 <= r <= p:
        raise MetricSkip(f"--rprecision-r {r} is more than the {p} distinct prompts")
    result = clip_r_precision(images, texts[used], local.astype(np.int64), r=r, seed=cell.params.seed)
    entry = {
        "value": result.value,
        "r": r,
        "chance": result.chance,
        "n": result.n,
        "n_prompts": p,
        "n_prompts_truncated": _n_truncated(prompts, used),
        "images_skipped": prompts.missing,
    }
    return MetricOutput(
        {"rprecision": entry}, per_image={"rprecision_hit": column_of(cell.n, rows, result.hits.tolist())}
    )


def _diversity(cell: CellData) -> MetricOutput:
    prompts, rows = _prompted(cell)
    images = require(cell.clip_image, "CLIP image embeddings")[rows]
    result = prompt_diversity(images, [int(j) for j in prompts.index[rows]])
    distances = image_distances(images, [int(j) for j in prompts.index[rows]])
    entry = {
        "value": result.overall,
        "n_prompts": result.n_prompts,
        "n_prompts_skipped": len(result.skipped),
        "n": len(rows),
        "images_skipped": prompts.missing,
    }
    per_prompt = [
        {"prompt": prompts.distinct[item.prompt], "n_images": item.n_images, "diversity": item.mean_distance}
        for item in result.per_prompt
    ] + [
        {"prompt": prompts.distinct[item.prompt], "n_images": 1, "diversity": None, "skipped": item.reason}
        for item in result.skipped
    ]
    column = column_of(cell.n, rows, [None if np.isnan(d) else float(d) for d in distances])
    return MetricOutput({"diversity": entry}, per_image={"diversity_distance": column}, per_prompt=per_prompt)


def _cmmd(cell: CellData) -> MetricOutput:
    ref = require(cell.reference, "a reference")
    mine = require(cell.cmmd_image, "CLIP image embeddings")
    theirs = require(ref.cmmd_image, "the reference's CLIP image embeddings")
    value = cmmd(mine, theirs, estimator=CMMD_ESTIMATOR)
    return MetricOutput({"cmmd": {"value": value, "n": len(mine), "n_reference": len(theirs)}})


def _rprecision_protocol(params: ScoreParams, cell: CellData) -> dict[str, Any]:
    r = params.rprecision_r if params.rprecision_r is not None else f"min({DEFAULT_MAX_R}, distinct prompts)"
    return {"rprecision": {"r": r, "seed": params.seed, "ties": "miss", "candidates": "distinct prompts of the cell"}}


def _clip_protocol(params: ScoreParams, cell: CellData) -> dict[str, Any]:
    """The aggregation, recorded where it is not the default (so every earlier results file stays as it was)."""
    if params.clip_aggregation == DEFAULT_AGGREGATION:
        return {}
    return {"clip_score": {"aggregation": params.clip_aggregation, "formula": "mean of 100 * cos, no clamp"}}


CLIP = MetricSpec(
    name="clip",
    description="CLIP score: mean of 100·max(cos(image, its prompt), 0) (torchmetrics' scale; --clip-aggregation mean: "
    "of 100·cos, MLPerf's).",
    # The `mean` aggregation does not clamp: an untrained model's negative cosines may take it below 0.
    results=(ResultKey("clip", "CLIP score", Direction.HIGHER, (0.0, 100.0), Bootstrap("clip_score"),
                       detail="({n} images)", strict_range=False),),
    needs=frozenset({Need.CLIP_IMAGE, Need.CLIP_TEXT, Need.PROMPTS}),
    compute=_clip,
    per_image=("clip_score", "clip_cosine"),
    protocol=_clip_protocol,
    binds=("clip_score",),
)  # fmt: skip
RPRECISION = MetricSpec(
    name="rprecision",
    description="CLIP R-precision: fraction of images whose own prompt ranks first among R distinct prompts.",
    results=(ResultKey("rprecision", "CLIP R-precision", Direction.HIGHER, (0.0, 1.0), Bootstrap("rprecision_hit"),
                       detail="(R={r}, chance {chance:.3g}, {n} images)"),),
    needs=frozenset({Need.CLIP_IMAGE, Need.CLIP_TEXT, Need.PROMPTS}),
    compute=_rprecision,
    per_image=("rprecision_hit",),
    protocol=_rprecision_protocol,
    binds=("seed",),  # the candidate prompts are drawn from the scoring seed
)  # fmt: skip
CMMD = MetricSpec(
    name="cmmd",
    description="CMMD (Jayasumana et al. 2024): RBF MMD² (σ = 10, ×1000) of CLIP image embeddings.",
    results=(ResultKey("cmmd", "CMMD", Direction.LOWER, (0.0, None), Jackknife(_CMMD, _cmmd_side), strict_range=False,
                       detail="({n} images)"),),
    needs=frozenset({Need.CMMD_IMAGE, Need.REFERENCE}),
    compute=_cmmd,
    protocol=lambda params, cell: {"cmmd": {"sigma": SIGMA, "scale": SCALE, "estimator": CMMD_ESTIMATOR}},
)  # fmt: skip
DIVERSITY = MetricSpec(
    name="diversity",
    description="Per prompt with 2+ images (seeds): mean pairwise cosine distance of CLIP image embeddings.",
    # The mean over prompts of each prompt's mean distance: each prompt (by its text, as the metric groups them)
    # counts once, which reproduces the value.
    results=(ResultKey("diversity", "Diversity", Direction.HIGHER, (0.0, 2.0),
                       Bootstrap("diversity_distance", weight="prompt", cluster="prompt"),
                       detail="({n_prompts} prompts with 2+ images)"),),
    needs=frozenset({Need.CLIP_IMAGE, Need.PROMPTS}),
    compute=_diversity,
    per_image=("diversity_distance",),
    protocol=lambda params, cell: {
        "diversity": {"distance": "1 - cosine", "group_by": "prompt", "mean": "over prompts"}
    },
)  # fmt: skip


# -- FD_CLIP: the Fréchet distance of CMMD's embeddings -------------------------------------------------------------


def _fd_clip(cell: CellData) -> MetricOutput:
    ref = require(cell.reference, "a reference")
    mine = require(cell.cmmd_image, "CLIP image embeddings")
    theirs = require(ref.cmmd_image, "the reference's CLIP image embeddings (`sdeval reference build --cmmd`)")
    value = fd_clip.fd_clip(mine, theirs)
    warning = fd_clip.small_set_warning(min(len(mine), len(theirs)), mine.shape[1])
    entry = {"value": value, "n": len(mine), "n_reference": len(theirs)}
    return MetricOutput({"fd_clip": entry}, warnings=[warning] if warning else [])


FD_CLIP = MetricSpec(
    name="fd_clip",
    description="FD_CLIP: Fréchet distance of CLIP image embeddings (CMMD's, --cmmd-*) to the reference.",
    results=(ResultKey("fd_clip", "FD_CLIP", Direction.LOWER, (0.0, None), Jackknife(_CMMD, fid_side),
                       detail="({n} images)"),),
    needs=frozenset({Need.CMMD_IMAGE, Need.REFERENCE}),
    compute=_fd_clip,
    protocol=lambda params, cell: {"fd_clip": {"features": "L2-normalised CLIP image embeddings of the cmmd model"}},
)  # fmt: skip
