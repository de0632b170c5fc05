"""The built-in metrics, one declaration each: how a cell's inputs reach each pure metric function.

sdeval.metrics.registry names each as `sdeval.metrics.builtin:NAME` and imports this module on first use."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from sdeval.features import inception_spatial as spatial
from sdeval.metrics import corpus, fd_clip, fd_dinov2
from sdeval.metrics.adherence import adherence
from sdeval.metrics.benchmarks import (
    Answer,
    accuracy_by,
    dpg_image_score,
    geneval_overall,
    label_accuracy,
    mean_over_prompts,
    missing_tags,
)
from sdeval.metrics.clip_score import DEFAULT_AGGREGATION, clip_score, clip_scores
from sdeval.metrics.cmmd import SCALE, SIGMA, cmmd
from sdeval.metrics.density_coverage import CoverageSide, DensitySide, density_coverage
from sdeval.metrics.density_coverage import K as DC_NEIGHBOURHOOD
from sdeval.metrics.diversity import image_distances, prompt_diversity
from sdeval.metrics.fid import FrechetState, ReferenceRoot, fid_from_features, reference_root, small_set_warning
from sdeval.metrics.fid_inf import FidInfSide, entry, fid_inf
from sdeval.metrics.inception_score import inception_score
from sdeval.metrics.kid import kid
from sdeval.metrics.precision_recall import precision_recall
from sdeval.metrics.registry import (
    Bootstrap,
    CellData,
    Direction,
    Jackknife,
    JudgedData,
    MetricOutput,
    MetricSkip,
    MetricSpec,
    Need,
    Parts,
    PromptData,
    ResultKey,
    ScoreParams,
)
from sdeval.metrics.rprecision import DEFAULT_MAX_R, clip_r_precision
from sdeval.metrics.seed_robustness import robustness
from sdeval.metrics.sfid import sfid
from sdeval.metrics.vendi import VendiSide, per_prompt, vendi_score
from sdeval.preference import scorer_info
from sdeval.suites.nounphrases import SPACY_MODEL, T2I_BLIP_VQA

IS_SPLITS = 10
PR_NEIGHBOURHOOD = 3
#: The paper's estimator (see metrics/cmmd.py).
CMMD_ESTIMATOR = "biased"


# -- jackknife sides (metrics/corpus.py: each metric recomputed leaving a block of prompts out) ---------------


def _fid_side(x: np.ndarray, reference: np.ndarray, blocks: np.ndarray, k: int, seed: int) -> Any:
    return corpus.FidSide(x, reference, blocks, k, seed)


def _kid_side(x: np.ndarray, reference: np.ndarray, blocks: np.ndarray, k: int, seed: int) -> Any:
    return corpus.kid_side(x, reference, blocks, k, seed)


def _cmmd_side(x: np.ndarray, reference: np.ndarray, blocks: np.ndarray, k: int, seed: int) -> Any:
    return corpus.cmmd_side(x, reference, blocks, k, seed)


def _recall_side(x: np.ndarray, reference: np.ndarray, blocks: np.ndarray, k: int, seed: int) -> Any:
    return corpus.RecallSide(x, reference, blocks, k, seed, PR_NEIGHBOURHOOD)


def _is_side(x: np.ndarray, reference: np.ndarray | None, blocks: np.ndarray, k: int, seed: int) -> Any:
    return corpus.InceptionScoreSide(x, blocks, k, seed, IS_SPLITS)


def _precision_hits(inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Each image's precision hit: with the reference fixed, it depends on that image alone (a per-image value)."""
    return corpus.precision_hits(inputs["pool"], inputs["reference_pool"], PR_NEIGHBOURHOOD)


_POOL = ("pool", "reference_pool")
_CMMD = ("cmmd_image", "reference_cmmd_image")


def _require(value: Any, what: str) -> Any:
    if value is None:
        raise MetricSkip(f"needs {what}")
    return value


# -- Inception ----------------------------------------------------------------------------------------------


def _fid(cell: CellData) -> MetricOutput:
    ref = _require(cell.reference, "a reference")
    pool = _require(cell.pool, "Inception features")
    ref_state = ref.fid_state if ref.fid_state is not None else FrechetState.from_features(ref.pool)
    # The d x d route roots the reference, once per run (or never: a reference file stores its decomposition).
    rows = ref.pool
    root = None if rows is None else lambda: reference_root(rows)
    value = fid_from_features(pool, ref_state, reference_features=rows, root=root)
    warnings = []
    small = min(len(pool), ref_state.n)
    if small < ref_state.dim:  # said only of a FID that was computed
        warnings.append(
            f"FID: {small} images is fewer than the {ref_state.dim} feature dimensions; the covariance is "
            "rank-deficient and FID is biased upward. Use at least 2048 images per set (10k+ to compare)."
        )
    # A statistics file whose image count nobody declared (reference/stats.py) says 0: unknown, not its nominal count.
    n_reference = ref_state.n if ref.n else 0
    return MetricOutput({"fid": {"value": value, "n": len(pool), "n_reference": n_reference}}, warnings=warnings)


def kid_subset_size(params: ScoreParams, n: int, n_reference: int | None) -> int | None:
    """--kid-subset-size, else min(1000, n, n_reference) (None without a reference)."""
    if params.kid_subset_size is not None:
        return params.kid_subset_size
    return None if n_reference is None else min(1000, n, n_reference)


def _kid(cell: CellData) -> MetricOutput:
    ref = _require(cell.reference, "a reference")
    pool, ref_pool = _require(cell.pool, "Inception features"), _require(ref.pool, "reference Inception features")
    size = kid_subset_size(cell.params, len(pool), len(ref_pool))
    assert size is not None  # None only without a reference
    mean, std = kid(pool, ref_pool, cell.params.kid_subsets, size, cell.params.seed)
    entry: dict[str, Any] = {"value": mean, "std": std, "subset_size": size, "subsets": cell.params.kid_subsets}
    warnings = []
    if size == len(pool) == len(ref_pool) or cell.params.kid_subsets == 1:
        # Every subset is the same draw: the std over subsets is rounding noise, not a spread.
        entry["std"] = None
        why = "one subset was drawn" if cell.params.kid_subsets == 1 else f"the subset size {size} is both sets' size"
        warnings.append(f"KID: no spread is reported because {why}, so every subset is the same")
    return MetricOutput({"kid": entry}, warnings=warnings)


def _is(cell: CellData) -> MetricOutput:
    logits = _require(cell.logits, "Inception logits")
    if len(logits) < 2 * IS_SPLITS:
        # With one image per split each split's score is exactly 1 whatever the images: not a measurement.
        raise MetricSkip(
            f"Inception Score needs at least 2 images per split ({2 * IS_SPLITS} for {IS_SPLITS} splits), "
            f"got {len(logits)}"
        )
    mean, std = inception_score(logits, IS_SPLITS, cell.params.seed)
    return MetricOutput({"is": {"value": mean, "std": std}})


def _pr(cell: CellData) -> MetricOutput:
    ref = _require(cell.reference, "a reference")
    pool, ref_pool = _require(cell.pool, "Inception features"), _require(ref.pool, "reference Inception features")
    precision, recall = precision_recall(pool, ref_pool, PR_NEIGHBOURHOOD)
    return MetricOutput({"precision": {"value": precision}, "recall": {"value": recall}})


def _kid_protocol(params: ScoreParams, cell: CellData) -> dict[str, Any]:
    n_ref = len(cell.reference.pool) if cell.reference is not None and cell.reference.pool is not None else None
    return {"kid": {"subsets": params.kid_subsets, "subset_size": kid_subset_size(params, cell.n, n_ref)}}


FID = MetricSpec(
    name="fid",
    description="Fréchet distance of Inception pool3 features to the reference (torch-fidelity's, exactly).",
    results=(ResultKey("fid", "FID", Direction.LOWER, (0.0, None), Jackknife(_POOL, _fid_side)),),
    needs=frozenset({Need.INCEPTION_POOL, Need.REFERENCE}),
    compute=_fid,
    default=True,
    binds=("reference_declared",),  # a statistics reference's declared protocol (sdeval.reference.stats)
)  # fmt: skip
KID = MetricSpec(
    name="kid",
    description="Kernel Inception Distance: unbiased MMD² with the cubic kernel over random subsets.",
    results=(ResultKey("kid", "KID", Direction.LOWER, interval=Jackknife(_POOL, _kid_side)),),
    needs=frozenset({Need.INCEPTION_POOL, Need.REFERENCE}),
    compute=_kid,
    default=True,
    protocol=_kid_protocol,
    binds=("seed",),  # its random subsets are drawn from the scoring seed
)  # fmt: skip
IS = MetricSpec(
    name="is",
    description="Inception Score over 10 splits (needs no reference).",
    results=(ResultKey("is", "Inception Score", Direction.HIGHER, (1.0, None), Jackknife(("logits", None), _is_side)),),
    needs=frozenset({Need.INCEPTION_LOGITS}),
    compute=_is,
    default=True,
    protocol=lambda params, cell: {"is": {"splits": IS_SPLITS}},
    binds=("seed",),  # its splits are drawn from the scoring seed
)  # fmt: skip
PR = MetricSpec(
    name="pr",
    description="Improved precision and recall (Kynkäänniemi et al. 2019), k = 3, on pool3 features.",
    results=(
        ResultKey("precision", "Precision (k=3)", Direction.HIGHER, (0.0, 1.0),
                  Bootstrap(from_state=_precision_hits, state_inputs=_POOL)),
        ResultKey("recall", "Recall (k=3)", Direction.HIGHER, (0.0, 1.0), Jackknife(_POOL, _recall_side)),
    ),
    needs=frozenset({Need.INCEPTION_POOL, Need.REFERENCE}),
    compute=_pr,
    default=True,
    protocol=lambda params, cell: {"pr": {"k": PR_NEIGHBOURHOOD}},
)  # fmt: skip


# -- CLIP ---------------------------------------------------------------------------------------------------


def _prompted(cell: CellData) -> tuple[PromptData, np.ndarray]:
    """The cell's prompt data and the rows of its images that have a prompt (MetricSkip when none has)."""
    prompts = _require(cell.prompts, "prompts")
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


def _column(n: int, rows: np.ndarray, values: Any) -> list[Any]:
    column: list[Any] = [None] * n
    for i, value in zip(rows, values, strict=True):
        column[int(i)] = value
    return column


def _clip(cell: CellData) -> MetricOutput:
    prompts, rows = _prompted(cell)
    images = _require(cell.clip_image, "CLIP image embeddings")[rows]
    texts = _require(prompts.texts, "CLIP text embeddings")[prompts.index[rows]]
    result = clip_score(images, texts, aggregation=cell.params.clip_aggregation)
    entry = {
        "value": result.mean,
        "n": result.n,
        "torchmetrics_value": result.torchmetrics_value,
        "n_prompts_truncated": _n_truncated(prompts, prompts.index[rows]),
        "images_skipped": prompts.missing,
    }
    per_image = {
        "clip_score": _column(cell.n, rows, [row.score for row in result.rows]),
        "clip_cosine": _column(cell.n, rows, [row.cosine for row in result.rows]),
    }
    return MetricOutput({"clip": entry}, per_image=per_image)


def _rprecision(cell: CellData) -> MetricOutput:
    prompts, rows = _prompted(cell)
    images = _require(cell.clip_image, "CLIP image embeddings")[rows]
    texts = _require(prompts.texts, "CLIP text embeddings")
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
        {"rprecision": entry}, per_image={"rprecision_hit": _column(cell.n, rows, result.hits.tolist())}
    )


def _diversity(cell: CellData) -> MetricOutput:
    prompts, rows = _prompted(cell)
    images = _require(cell.clip_image, "CLIP image embeddings")[rows]
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
    column = _column(cell.n, rows, [None if np.isnan(d) else float(d) for d in distances])
    return MetricOutput({"diversity": entry}, per_image={"diversity_distance": column}, per_prompt=per_prompt)


def _cmmd(cell: CellData) -> MetricOutput:
    ref = _require(cell.reference, "a reference")
    mine = _require(cell.cmmd_image, "CLIP image embeddings")
    theirs = _require(ref.cmmd_image, "the reference's CLIP image embeddings")
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


# -- prompt adherence -----------------------------------------------------------------------------------------


def _judged_rows(cell: CellData) -> tuple[JudgedData, list[int]]:
    judged = _require(cell.judged, "judgements (--judge, and a suite whose prompts have specs)")
    return judged, [i for i, judgement in enumerate(judged.judgements) if judgement is not None]


def _unjudged(key: str, judged: JudgedData) -> MetricOutput:
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


def _adherence(cell: CellData) -> MetricOutput:
    judged, rows = _judged_rows(cell)
    if not rows:
        return _unjudged("adherence", judged)
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
    return _column(cell.n, rows, scores.tolist())


def _robustness(cell: CellData) -> MetricOutput:
    judged, rows = _judged_rows(cell)
    if not rows:
        return _unjudged("robustness", judged)
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
    columns = _require(cell.faithfulness, "init images (an image-to-image run, or --suite rows with init_image)")
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


# -- DINOv2 ---------------------------------------------------------------------------------------------------


def _fd_dinov2(cell: CellData) -> MetricOutput:
    ref = _require(cell.reference, "a reference")
    features = _require(cell.features.get("dinov2"), "DINOv2 features")
    ref_features = _require(ref.features.get("dinov2"),
                            "the reference's DINOv2 features (`sdeval reference build --dinov2`)")  # fmt: skip
    value = fd_dinov2.fd_dinov2(features, ref_features)
    warning = fd_dinov2.small_set_warning(min(len(features), len(ref_features)), features.shape[1])
    entry = {"value": value, "n": len(features), "n_reference": len(ref_features)}
    return MetricOutput({"fd_dinov2": entry}, warnings=[warning] if warning else [])


FD_DINOV2 = MetricSpec(
    name="fd_dinov2",
    description="FD_DINOv2 (Stein et al. 2023): Fréchet distance of DINOv2 ViT-L/14 CLS features to the reference.",
    results=(ResultKey("fd_dinov2", "FD_DINOv2", Direction.LOWER, (0.0, None),
                       Jackknife(("dinov2", "reference_dinov2"), _fid_side)),),
    needs=frozenset({Need.REFERENCE}),
    compute=_fd_dinov2,
    inputs=("dinov2",),  # sdeval.features.dinov2_input:INPUT
)  # fmt: skip


# -- human-preference scorers (sdeval.preference): one score per image, prompt-relative where the model is --------


def _preference_metric(name: str) -> Callable[[CellData], MetricOutput]:
    def compute(cell: CellData) -> MetricOutput:
        scores = _require(cell.preference.get(name), f"{name} scores")
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


# -- metrics the peers have: FD_CLIP, FID∞, Vendi -----------------------------------------------------------------


def _fd_clip(cell: CellData) -> MetricOutput:
    ref = _require(cell.reference, "a reference")
    mine = _require(cell.cmmd_image, "CLIP image embeddings")
    theirs = _require(ref.cmmd_image, "the reference's CLIP image embeddings (`sdeval reference build --cmmd`)")
    value = fd_clip.fd_clip(mine, theirs)
    warning = fd_clip.small_set_warning(min(len(mine), len(theirs)), mine.shape[1])
    entry = {"value": value, "n": len(mine), "n_reference": len(theirs)}
    return MetricOutput({"fd_clip": entry}, warnings=[warning] if warning else [])


FD_CLIP = MetricSpec(
    name="fd_clip",
    description="FD_CLIP: Fréchet distance of CLIP image embeddings (CMMD's, --cmmd-*) to the reference.",
    results=(ResultKey("fd_clip", "FD_CLIP", Direction.LOWER, (0.0, None), Jackknife(_CMMD, _fid_side),
                       detail="({n} images)"),),
    needs=frozenset({Need.CMMD_IMAGE, Need.REFERENCE}),
    compute=_fd_clip,
    protocol=lambda params, cell: {"fd_clip": {"features": "L2-normalised CLIP image embeddings of the cmmd model"}},
)  # fmt: skip


def _fid_inf_side(x: np.ndarray, reference: np.ndarray, blocks: np.ndarray, k: int, seed: int) -> Any:
    return FidInfSide(x, reference, blocks, k, seed)


def _fid_inf(cell: CellData) -> MetricOutput:
    ref = _require(cell.reference, "a reference")
    pool = _require(cell.pool, "Inception features")
    if ref.pool is not None:
        root, n_ref = reference_root(ref.pool), len(ref.pool)
    else:
        state = _require(ref.fid_state, "the reference's Inception features")
        root, n_ref = ReferenceRoot.from_state(state), state.n
    if len(pool) < 10:
        raise MetricSkip(f"FID∞ needs at least 10 images (2 per draw at n / 5), got {len(pool)}")
    fitted, points = fid_inf(pool, root, cell.params.seed)
    return MetricOutput({"fid_inf": entry(fitted, points, len(pool), n_ref)})


FID_INF = MetricSpec(
    name="fid_inf",
    description="FID∞ (Chong & Forsyth 2020): FID extrapolated to infinitely many images from a line in 1/n.",
    # An extrapolated intercept may fall below 0 when FID is small: such values are not refused on load.
    results=(ResultKey("fid_inf", "FID∞", Direction.LOWER, (0.0, None), Jackknife(_POOL, _fid_inf_side),
                       strict_range=False, detail="(fit residual sd {residual_sd:.3g})"),),
    needs=frozenset({Need.INCEPTION_POOL, Need.REFERENCE}),
    compute=_fid_inf,
    protocol=lambda params, cell: {"fid_inf": {"sizes": "8 evenly spaced in 1/n from n/5 to n", "repeats": 5,
                                               "fit": "least squares of FID against 1/n over every draw"}},
    binds=("seed",),  # its subsample draws come from the scoring seed
)  # fmt: skip


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
    return _vendi_of(_require(getattr(cell, rows), what), cell, name)


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


# -- the public benchmarks' own scores, by name (sdeval.metrics.benchmarks: the formulas) ----------------------------

#: Each benchmark's published protocol: its name in the literature, where the formula is, the judge it used.
_PUBLISHED = {
    "geneval": ("GenEval overall (Ghosh et al., NeurIPS 2023)",
                "djghosh13/geneval evaluation/summary_scores.py: mean over the six tags of the share of correct images",
                "Mask2Former (mmdetection, Swin-S) boxes and masks, CLIP ViT-L/14 colour on the masked object, "
                "thresholds 0.3 / 0.9 (counting)"),
    "dsg": ("DSG score (Davidsonian Scene Graph; Cho et al., ICLR 2024)",
            "j-min/DSG dsg/vqa_utils.py calc_vqa_score: per image the mean over its questions, 0 where a parent was "
            "answered no; mean over images",
            "PaLI 17B (also mPLUG-large, InstructBLIP) generating an answer, counted when it is 'yes'"),
    "tifa": ("TIFA score (Hu et al., ICCV 2023)",
             "Yushi-Hu/tifa tifascore/tifa_score.py: per image the share of its questions answered as expected; "
             "mean over images",
             "mPLUG-large generating a free-form answer, mapped to the nearest choice with SBERT"),
    "dpg": ("DPG-Bench score (Hu et al., 2024, ELLA)",
            "TencentQQGYLab/ELLA dpg_bench/compute_dpg_bench.py: each of the 4 images (the crops of its 2x2 grid) "
            "the mean over questions after the dependency rule, per prompt the mean over its images, mean over "
            "prompts, x100",
            "mPLUG-large (damo/mplug_visual-question-answering_coco_large_en) generating an answer, counted when it "
            "is 'yes'"),
}  # fmt: skip


def _judge_used(judge: dict[str, Any]) -> str:
    """The judge a cell's verdicts came from, in one line (its full record is the protocol's `judge` block)."""
    name = judge.get("judge") or judge.get("name") or "?"
    model = judge.get("model")
    model = model.get("model") if isinstance(model, dict) else model or judge.get("detector", {}).get("model")
    questions = judge.get("questions")
    asked = ""
    if isinstance(questions, dict):
        asked = f", questions {questions.get('set') or questions.get('format')} ({questions.get('path')})"
    return f"{name}" + (f": {model}" if model else "") + asked


def _benchmark_protocol(name: str, differs: Callable[[dict[str, Any]], list[str]]) -> Callable[..., dict[str, Any]]:
    def protocol(params: ScoreParams, cell: CellData) -> dict[str, Any]:
        judge = cell.judged.protocol if cell.judged is not None else {}
        benchmark, formula, published = _PUBLISHED[name]
        found = differs(judge)
        return {name: {"benchmark": benchmark, "formula": formula, "published_judge": published,
                       "judge": _judge_used(judge), "as_published": not found, "differs": found}}  # fmt: skip

    return protocol


def _vqa_differs(judge: dict[str, Any]) -> list[str]:
    if judge.get("judge") != "vqa":
        return [f"judged by the {judge.get('judge')} judge, not a VQA model"]
    return [
        f"VQA model {_judge_used(judge).split(': ', 1)[-1]}: a yes/no question holds when P(yes) >= "
        f"{judge.get('threshold')}, not when a generated answer is 'yes'",
    ]


def _geneval_differs(judge: dict[str, Any]) -> list[str]:
    kind = judge.get("judge")
    if kind == "detector":
        return ["an open-vocabulary detector's boxes (OWLv2 or Grounding DINO) instead of Mask2Former's masks: colour "
                "from the box crop, thresholds not GenEval's (uncalibrated; docs/adherence.md)"]  # fmt: skip
    return [f"judged by the {kind} judge, not GenEval's Mask2Former detector and colour classifier"]


def _dpg_differs(judge: dict[str, Any]) -> list[str]:
    return [*_vqa_differs(judge),
            "each image scored as it is, which is what cutting the 2x2 grid gives back (a folder of grid files is "
            "not cut)",
            "every question of dpg_bench.csv, where ELLA's reader skips its first row",
            "category scores over every image, where ELLA's code counts only the last crop of each grid"]  # fmt: skip


def _set_rows(cell: CellData, metric: str, fmt: str | None) -> tuple[JudgedData, list[int], list[dict[str, str]]]:
    """The images judged on the question set's questions (their spec was not asked), and the others with why; a
    MetricSkip when the cell was not judged by a VQA judge, or on questions of another format."""
    judged, rows = _judged_rows(cell)
    questions = judged.protocol.get("questions") if judged.protocol.get("judge") == "vqa" else None
    if not isinstance(questions, dict):
        raise MetricSkip(f"{metric} needs --judge vqa with the benchmark's questions (a suite's question set or "
                         "--questions FILE)")  # fmt: skip
    if fmt is not None and questions.get("format") != fmt:
        raise MetricSkip(f"{metric} needs {fmt.upper()}'s questions, and the judge asked {questions.get('format')} "
                         f"questions ({questions.get('path')}); pass --questions with a {fmt} set or file")  # fmt: skip
    asked = [i for i in rows if judged.specs[i] is None]
    skipped = [*judged.missing, *({"path": cell.paths[i], "reason": "its prompt has no question in the set; its spec "
               "was asked instead"} for i in rows if judged.specs[i] is not None)]  # fmt: skip
    if not asked:
        raise MetricSkip(f"{metric}: no scored image has a prompt with questions in {questions.get('path')}")
    return judged, asked, skipped


def _geneval(cell: CellData) -> MetricOutput:
    judged, rows = _judged_rows(cell)
    if not rows:
        return _unjudged("geneval", judged)
    categories = [judged.categories[i] or "uncategorised" for i in rows]
    absent, foreign = missing_tags(categories)
    if absent or foreign:
        why = f"no image of {', '.join(absent)}" if absent else f"other categories: {', '.join(foreign)}"
        raise MetricSkip(f"GenEval overall is the mean over its six tags, and this cell has {why}")
    value, per_tag = geneval_overall(categories, [judged.judgements[i].passed for i in rows])
    entry = {"value": value, "n": len(rows), "categories": per_tag, "images_skipped": judged.missing}
    per_image = {
        "category": [judged.categories[i] if judged.judgements[i] is not None else None for i in range(cell.n)],
        "adherence_passed": [j.passed if j is not None else None for j in judged.judgements],
    }
    return MetricOutput({"geneval": entry}, per_image=per_image)


def _question_score(metric: str, fmt: str) -> Callable[[CellData], MetricOutput]:
    """DSG's or TIFA's score: the VQA judge's per-image score (DSG's rule; TIFA's questions have no parents), mean
    over images; with per category (the suite rows') and, for TIFA, per element type."""

    def compute(cell: CellData) -> MetricOutput:
        judged, rows, skipped = _set_rows(cell, metric, fmt)
        scores = [float(judged.judgements[i].score) for i in rows]
        by_category: dict[str, list[float]] = {}
        for i, score in zip(rows, scores, strict=True):
            by_category.setdefault(judged.categories[i] or "uncategorised", []).append(score)
        entry: dict[str, Any] = {
            "value": float(np.mean(scores)), "n": len(rows),
            "n_prompts": len({judged.prompt_key(i, cell.paths[i]) for i in rows}),
            "categories": {k: {"score": float(np.mean(v)), "n": len(v)} for k, v in sorted(by_category.items())},
            "images_skipped": skipped,
        }  # fmt: skip
        if metric == "tifa":
            facts = [f for i in rows for f in judged.judgements[i].facts]
            entry["accuracy_by_type"] = accuracy_by([f.kind for f in facts], [f.passed for f in facts])
        column: list[Any] = [None] * cell.n
        for i, score in zip(rows, scores, strict=True):
            column[i] = score
        return MetricOutput({metric: entry}, per_image={f"{metric}_score": column})

    return compute


def _dpg(cell: CellData) -> MetricOutput:
    judged, rows, skipped = _set_rows(cell, "dpg", "dsg")
    answers = {i: [Answer(a.question.qid, a.question.parents, a.question.label, a.correct)
                   for a in getattr(judged.judgements[i], "answers", ())] for i in rows}  # fmt: skip
    scores = {i: 100.0 * dpg_image_score(answers[i]) for i in rows}
    value, n_prompts = mean_over_prompts([scores[i] for i in rows], [judged.prompt_key(i, cell.paths[i]) for i in rows])
    every = [a for i in rows for a in answers[i]]
    entry = {"value": value, "n": len(rows), "n_prompts": n_prompts, "l1": label_accuracy(every, 1),
             "l2": label_accuracy(every, 2), "images_skipped": skipped}  # fmt: skip
    column: list[Any] = [scores.get(i) for i in range(cell.n)]
    return MetricOutput({"dpg": entry}, per_image={"dpg_score": column})


GENEVAL = MetricSpec(
    name="geneval",
    description="GenEval overall (Ghosh et al. 2023): the mean over its six tags of the share of images whose every "
    "fact holds, by the judge given (the protocol says how it differs from GenEval's Mask2Former).",
    results=(ResultKey("geneval", "GenEval overall", Direction.HIGHER, (0.0, 1.0),
                       Bootstrap("adherence_passed", by="category"),
                       parts=Parts(field="categories", value="accuracy", column="category")),),
    needs=frozenset({Need.PROMPTS, Need.JUDGEMENTS}),
    compute=_geneval,
    per_image=("category", "adherence_passed"),
    protocol=_benchmark_protocol("geneval", _geneval_differs),
)  # fmt: skip
DSG = MetricSpec(
    name="dsg",
    description="DSG score (Cho et al. 2024): per image the mean over DSG questions, 0 where a parent was answered "
    "no; mean over images (--judge vqa with DSG questions).",
    results=(ResultKey("dsg", "DSG score", Direction.HIGHER, (0.0, 1.0), Bootstrap("dsg_score"),
                       detail="({n} images)"),),
    needs=frozenset({Need.PROMPTS, Need.JUDGEMENTS}),
    compute=_question_score("dsg", "dsg"),
    per_image=("dsg_score",),
    protocol=_benchmark_protocol("dsg", _vqa_differs),
)  # fmt: skip
TIFA = MetricSpec(
    name="tifa",
    description="TIFA score (Hu et al. 2023): per image the share of TIFA's questions answered as expected; mean "
    "over images (--judge vqa with TIFA questions).",
    results=(ResultKey("tifa", "TIFA score", Direction.HIGHER, (0.0, 1.0), Bootstrap("tifa_score"),
                       detail="({n} images)"),),
    needs=frozenset({Need.PROMPTS, Need.JUDGEMENTS}),
    compute=_question_score("tifa", "tifa"),
    per_image=("tifa_score",),
    protocol=_benchmark_protocol(
        "tifa", lambda judge: [*_vqa_differs(judge), "a multiple-choice answer is the choice the model finds most "
                               "likely, not a free-form answer matched by SBERT"]),
)  # fmt: skip
DPG = MetricSpec(
    name="dpg",
    description="DPG-Bench score (ELLA, Hu et al. 2024): per image the mean over its questions after ELLA's "
    "dependency rule, per prompt the mean over its images (4: the 2x2 grid's crops), mean over prompts, x100.",
    results=(ResultKey("dpg", "DPG-Bench score", Direction.HIGHER, (0.0, 100.0),
                       Bootstrap("dpg_score", weight="prompt"), detail="({n_prompts} prompts)"),),
    needs=frozenset({Need.PROMPTS, Need.JUDGEMENTS}),
    compute=_dpg,
    per_image=("dpg_score",),
    protocol=_benchmark_protocol("dpg", _dpg_differs),
)  # fmt: skip


# -- T2I-CompBench's BLIP-VQA attribute binding (color, shape, texture), by name ------------------------------------

_PUBLISHED["t2i_compbench"] = (
    "T2I-CompBench attribute binding, BLIP-VQA (Huang et al., NeurIPS 2023): color, shape, texture",
    "Karine-Huang/T2I-CompBench BLIPvqa_eval/BLIP_vqa.py: per image the product over its noun phrases (at most 8) "
    "of P(yes) to '{phrase}?'; per category the mean over its images (10 per prompt)",
    "BLIP VQA ViT-B (model_base_vqa_capfilt_large.pth) in BLIP's own code, 480x480 images, the question after "
    "[ENC]; P(yes) = p(yes) / (p(yes) + p(no)) of the answer decoder's first token (vqa_prob)",
)
#: T2I-CompBench's BLIP reads images at this size (BLIPvqa_eval/configs/vqa.yaml image_size).
_T2I_IMAGE_SIZE = 480


def _t2i_differs(judge: dict[str, Any]) -> list[str]:
    if judge.get("judge") != "vqa":
        return [f"judged by the {judge.get('judge')} judge, not a VQA model"]
    given = judge.get("model")
    model: dict[str, Any] = given if isinstance(given, dict) else {}
    name = model.get("model") or "?"
    found = [f"noun phrases by spaCy's {' '.join(SPACY_MODEL)}, where T2I-CompBench pins en_core_web_sm 3.5.0 "
             "(3.6.0 and 3.8.0 split 52 of its 900 prompts differently)"]  # fmt: skip
    if model.get("model_type") != "blip":
        return [*found, f"VQA model {name}, not BLIP VQA (T2I-CompBench's is BLIP's model_base_vqa_capfilt_large.pth"
                        ", in transformers Salesforce/blip-vqa-base)"]  # fmt: skip
    if not str(name).endswith("Salesforce/blip-vqa-base"):
        found.append(f"VQA model {name}: T2I-CompBench's is BLIP's model_base_vqa_capfilt_large.pth (in transformers "
                     "Salesforce/blip-vqa-base)")  # fmt: skip
    size = model.get("image_size") or {}
    if (size.get("height"), size.get("width")) != (_T2I_IMAGE_SIZE, _T2I_IMAGE_SIZE):
        found.append(f"images resized to {size.get('height')}x{size.get('width')} by the transformers processor "
                     f"(blip-vqa-base was converted at 384, its position embeddings interpolated from 480), where "
                     f"T2I-CompBench's BLIP reads {_T2I_IMAGE_SIZE}x{_T2I_IMAGE_SIZE}")  # fmt: skip
    found.append("the question begins with [CLS] as transformers' processor writes it, where BLIP's code puts [ENC]")
    found.append("P(yes) of the whole answer through [SEP] (as BLIP's rank_answer scores an answer), where "
                 "T2I-CompBench's vqa_prob normalises the first answer token's p(yes) against p(no)")  # fmt: skip
    return found


def _t2i_compbench(cell: CellData) -> MetricOutput:
    judged, rows, skipped = _set_rows(cell, "t2i_compbench", "t2i-compbench")
    by_category: dict[str, list[int]] = {}
    for i in rows:
        category = judged.categories[i]
        if category in T2I_BLIP_VQA:
            by_category.setdefault(category, []).append(i)
        else:
            skipped.append({"path": cell.paths[i], "reason": f"category {category!r} is not one of T2I-CompBench's "
                            "BLIP-VQA categories (color, shape, texture)"})  # fmt: skip
    if not by_category:
        raise MetricSkip("t2i_compbench: no scored image is of T2I-CompBench's color, shape or texture prompts")
    entries: dict[str, Any] = {}
    columns: dict[str, list[Any]] = {}
    for category, members in by_category.items():
        # T2I-CompBench's rule: the product of P(yes) over the image's questions, then the mean over images.
        scores = {i: float(np.prod([a.p_yes for a in getattr(judged.judgements[i], "answers", ())])) for i in members}
        entries[f"t2i_compbench_{category}"] = {
            "value": float(np.mean(list(scores.values()))), "n": len(members),
            "n_prompts": len({judged.prompt_key(i, cell.paths[i]) for i in members}), "images_skipped": skipped,
        }  # fmt: skip
        columns[f"t2i_compbench_{category}_score"] = [scores.get(i) for i in range(cell.n)]
    return MetricOutput(entries, per_image=columns)


T2I_COMPBENCH = MetricSpec(
    name="t2i_compbench",
    description="T2I-CompBench's BLIP-VQA attribute binding (Huang et al. 2023), color, shape and texture: per image "
    "the product over its noun phrases of P(yes) to '{phrase}?', per category the mean over images (--judge vqa "
    "with the t2i-compbench suite's blip_vqa questions).",
    results=tuple(
        ResultKey(f"t2i_compbench_{c}", f"T2I-CompBench {c} (BLIP-VQA)", Direction.HIGHER, (0.0, 1.0),
                  Bootstrap(f"t2i_compbench_{c}_score"), detail="({n} images)")
        for c in T2I_BLIP_VQA
    ),
    needs=frozenset({Need.PROMPTS, Need.JUDGEMENTS}),
    compute=_t2i_compbench,
    per_image=tuple(f"t2i_compbench_{c}_score" for c in T2I_BLIP_VQA),
    protocol=_benchmark_protocol("t2i_compbench", _t2i_differs),
)  # fmt: skip


# -- density and coverage (Naeem et al. 2020), on precision/recall's k-NN balls -------------------------------


def _density_side(x: np.ndarray, reference: np.ndarray, blocks: np.ndarray, k: int, seed: int,
                  neighbourhood: int = DC_NEIGHBOURHOOD) -> Any:  # fmt: skip
    return DensitySide(x, reference, blocks, k, neighbourhood)


def _coverage_side(x: np.ndarray, reference: np.ndarray, blocks: np.ndarray, k: int, seed: int,
                   neighbourhood: int = DC_NEIGHBOURHOOD) -> Any:  # fmt: skip
    return CoverageSide(x, reference, blocks, k, neighbourhood)


def _dc(cell: CellData) -> MetricOutput:
    ref = _require(cell.reference, "a reference")
    pool, ref_pool = _require(cell.pool, "Inception features"), _require(ref.pool, "reference Inception features")
    k = cell.params.dc_k
    density, coverage = density_coverage(pool, ref_pool, k)
    # The labels name the paper's k; an entry says its own where --dc-k chose another (its `detail`).
    other = {} if k == DC_NEIGHBOURHOOD else {"k": k}
    return MetricOutput({"density": {"value": density, **other}, "coverage": {"value": coverage, **other}})


#: The side reads the k the cell was scored with from its protocol block (`dc.k`), not the paper's default.
_DC_READS = (("k", "neighbourhood"),)

DC = MetricSpec(
    name="dc",
    description=f"Density and coverage (Naeem et al. 2020), k = {DC_NEIGHBOURHOOD} (--dc-k), on pool3 features: "
    "precision/recall's real k-NN balls counted (density) and covered (coverage).",
    results=(
        # Density is 1 on average for two sets from one distribution and may exceed it: no upper bound.
        ResultKey("density", f"Density (k={DC_NEIGHBOURHOOD})", Direction.HIGHER, (0.0, None),
                  Jackknife(_POOL, _density_side, reads=_DC_READS), detail="(at k={k})"),
        ResultKey("coverage", f"Coverage (k={DC_NEIGHBOURHOOD})", Direction.HIGHER, (0.0, 1.0),
                  Jackknife(_POOL, _coverage_side, reads=_DC_READS), detail="(at k={k})"),
    ),
    needs=frozenset({Need.INCEPTION_POOL, Need.REFERENCE}),
    compute=_dc,
    protocol=lambda params, cell: {"dc": {"k": params.dc_k, "ball": "distance <= radius"}},
)  # fmt: skip


# -- sFID (Nash et al. 2021): FID on Inception's spatial features (mixed_6/conv) --------------------------------

_SPATIAL = (spatial.NAME, f"reference_{spatial.NAME}")


def _sfid(cell: CellData) -> MetricOutput:
    ref = _require(cell.reference, "a reference")
    rows = _require(cell.features.get(spatial.NAME), "Inception spatial features")
    ref_rows = _require(ref.features.get(spatial.NAME), "the reference's Inception spatial features (`sdeval "
                        "reference build --inception-spatial`, or a reference folder)")  # fmt: skip
    warning = small_set_warning("sFID", min(len(rows), len(ref_rows)), spatial.DIM, subject="sFID")
    entry = {"value": sfid(rows, ref_rows), "n": len(rows), "n_reference": len(ref_rows)}
    return MetricOutput({"sfid": entry}, warnings=[warning] if warning else [])


def _sfid_protocol(params: ScoreParams, cell: CellData) -> dict[str, Any]:
    return {"sfid": {"layer": f"{spatial.LAYER} (torch-fidelity {spatial.MODULE}: conv, batch norm, ReLU)",
                     "channels": f"first {spatial.CHANNELS}", "size": f"{spatial.SIZE}x{spatial.SIZE}",
                     "dim": spatial.DIM, "order": spatial.ORDER}}  # fmt: skip


SFID = MetricSpec(
    name="sfid",
    description="sFID (Nash et al. 2021): Fréchet distance of Inception's spatial features (mixed_6/conv, first 7 "
    "channels, 2023-d, as guided-diffusion) to the reference, from the FID pass.",
    results=(ResultKey("sfid", "sFID", Direction.LOWER, (0.0, None), Jackknife(_SPATIAL, _fid_side),
                       detail="({n} images)"),),
    # The Inception network's pass (its model slot, the reference's Inception protocol), and its spatial rows.
    needs=frozenset({Need.INCEPTION_POOL, Need.REFERENCE}),
    compute=_sfid,
    inputs=(spatial.NAME,),  # sdeval.features.inception_spatial:INPUT, served by the Inception extractor
    protocol=_sfid_protocol,
)  # fmt: skip
