"""The built-in metrics on each image judged against its prompt's spec (--judge): prompt adherence and seed robustness;
and image-to-image faithfulness to each output's init image.
"""

from __future__ import annotations

import numpy as np

from sdeval.metrics.adherence import adherence
from sdeval.metrics.builtin.cells import column_of, judged_rows, require, unjudged
from sdeval.metrics.clip_score import clip_scores
from sdeval.metrics.registry import (
    Bootstrap,
    CellData,
    Direction,
    MetricOutput,
    MetricSkip,
    MetricSpec,
    Need,
    Parts,
    ResultKey,
)
from sdeval.metrics.seed_robustness import robustness


def _adherence(cell: CellData) -> MetricOutput:
    judged, rows = judged_rows(cell)
    if not rows:
        return unjudged("adherence", judged)
    keys = [judged.prompt_key(i, cell.paths[i]) for i in rows]
    result = adherence(
        [judged.categories[i] or "uncategorised" for i in rows], [judged.judgements[i].passed for i in rows], keys
    )
    spec_of = {key: judged.specs[i] for key, i in zip(keys, rows, strict=True)}
    prompts = [{**row, "spec": spec_of.get(row["prompt_id"])} for row in result.prompts]
    entry = {**result.to_entry(), "prompts": prompts, "images_skipped": judged.missing}
    per_image = {
        "category": [judged.categories[i] if judged.judgements[i] is not None else None for i in range(cell.n)],
        "adherence_passed": [j.passed if j is not None else None for j in judged.judgements],
        "adherence_failed": [[f.fact + ": " + f.reason for f in j.failed] if j is not None else None
                             for j in judged.judgements],
    }  # fmt: skip
    if any(j is not None and j.score is not None for j in judged.judgements):  # a grading judge (VQA: TIFA, DSG)
        per_image["adherence_score"] = [j.score if j is not None else None for j in judged.judgements]
        scores = [judged.judgements[i].score for i in rows]
        entry["score"] = float(np.mean(scores)) if None not in scores else None
    return MetricOutput({"adherence": entry}, per_image=per_image)


ADHERENCE = MetricSpec(
    name="adherence",
    description="Prompt adherence (GenEval's rules): share of images whose every spec fact holds, per category; "
    "overall = mean over categories.",
    results=(ResultKey("adherence", "Adherence", Direction.HIGHER, (0.0, 1.0),
                       Bootstrap("adherence_passed", by="category"),
                       parts=Parts(field="categories", value="accuracy", column="category")),),
    needs=frozenset({Need.PROMPTS, Need.JUDGEMENTS}),
    compute=_adherence,
    per_image=("category", "adherence_passed", "adherence_failed", "adherence_score"),
)  # fmt: skip


def _per_image_clip_scores(cell: CellData) -> list[float | None] | None:
    """Each image's CLIP score against its own prompt, where the run has the embeddings (None: it does not)."""
    if cell.clip_image is None or cell.prompts is None or cell.prompts.texts is None:
        return None
    rows = cell.prompts.with_prompt
    if len(rows) == 0:
        return None
    scores = clip_scores(cell.clip_image[rows], cell.prompts.texts[cell.prompts.index[rows]])
    return column_of(cell.n, rows, scores.tolist())


def _robustness(cell: CellData) -> MetricOutput:
    judged, rows = judged_rows(cell)
    if not rows:
        return unjudged("robustness", judged)
    clip = _per_image_clip_scores(cell)
    result = robustness(
        [judged.prompt_key(i, cell.paths[i]) for i in rows],
        [judged.categories[i] for i in rows],
        [judged.judgements[i].passed for i in rows],
        [clip[i] for i in rows] if clip is not None else None,
    )
    summary = result.to_json()
    # The headline: the chance that one seed passes, averaged over prompts (pass@1 = mean pass rate).
    entry = {"value": result.overall.pass_rate, **summary}
    passed = [j.passed if j is not None else None for j in judged.judgements]  # what its interval resamples
    return MetricOutput({"robustness": entry}, per_image={"adherence_passed": passed})


ROBUSTNESS = MetricSpec(
    name="robustness",
    description="Seed robustness: per prompt the pass rate, unbiased pass@k (k = 1, 4, 10 where n >= k), CLIP "
    "score spread across seeds and expected seeds to the first pass; per category and overall.",
    # pass@1 is the mean over prompts of each prompt's pass rate over its seeds: each prompt counts once.
    results=(ResultKey("robustness", "Seed robustness (pass@1)", Direction.HIGHER, (0.0, 1.0),
                       Bootstrap("adherence_passed", weight="prompt")),),
    needs=frozenset({Need.PROMPTS, Need.JUDGEMENTS}),
    compute=_robustness,
    per_image=("adherence_passed",),
)  # fmt: skip


def _faithfulness(cell: CellData) -> MetricOutput:
    columns = require(cell.faithfulness, "init images (an image-to-image run, or --suite rows with init_image)")
    edge = [v for v in columns["init_edge_ssim"] if v is not None]
    if not edge:
        raise MetricSkip("no scored image has an init image (image-to-image suite rows joined by prompt id)")
    cosine = [v for v in columns["init_clip_cosine"] if v is not None]
    skipped = cell.faithfulness_missing
    entries = {
        "faithfulness_edge": {"value": float(np.mean(edge)), "n": len(edge), "images_skipped": skipped},
        "faithfulness_clip": {
            "value": float(np.mean(cosine)) if cosine else None,
            "n": len(cosine),
            "images_skipped": skipped,
        },
    }
    if not cosine:
        entries["faithfulness_clip"]["skipped"] = "no CLIP model was loaded"
    return MetricOutput(entries, per_image=dict(columns))


FAITHFULNESS = MetricSpec(
    name="faithfulness",
    description="Image-to-image faithfulness to the init image: SSIM of edge maps and CLIP image-image cosine.",
    results=(
        ResultKey("faithfulness_edge", "Faithfulness (edge SSIM)", Direction.HIGHER, (-1.0, 1.0),
                  Bootstrap("init_edge_ssim")),
        ResultKey("faithfulness_clip", "Faithfulness (CLIP cosine)", Direction.HIGHER, (-1.0, 1.0),
                  Bootstrap("init_clip_cosine")),
    ),
    needs=frozenset({Need.INIT_IMAGES, Need.CLIP_IMAGE}),
    compute=_faithfulness,
    per_image=("init_edge_ssim", "init_clip_cosine"),
)  # fmt: skip
