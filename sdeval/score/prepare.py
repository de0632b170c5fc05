"""The first stage of a scoring run: everything the cells are scored from, gathered once.

`prepare_part` does the expensive, per-image work for a share of the images (all of them by default): the models
the requested metrics need (and no others), every image's features in one decode pass, its prompt, its judgement
against its spec, its preference scores, its init-image comparison. `finish` turns the whole set's part (one, or
several merged: ranks of torch.distributed, array jobs) into what the cells are scored from: cells and item keys,
each distinct prompt's text embedding, the reference's features.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sdeval.core.devices import resolve_device
from sdeval.core.errors import NoImagesError, SdevalError
from sdeval.core.images import find_images
from sdeval.core.provenance import now
from sdeval.features.options import extract
from sdeval.judges.registry import build_judge
from sdeval.metrics import registry
from sdeval.metrics.fid import FrechetState
from sdeval.metrics.precision_recall import has_reference_radii
from sdeval.metrics.registry import MetricSpec, Need, ReferenceData
from sdeval.options.score import ScoreOptions, options_json
from sdeval.prompts import load_manifest
from sdeval.prompts.lookup import ImagePrompts, find_image_prompts
from sdeval.reference.build import ReferenceShare, load_any_reference, reference_share
from sdeval.reference.files import holds_radii, load_reference
from sdeval.reference.stats import is_stats_file, refuse_other_metrics
from sdeval.score.geneval import is_geneval_layout, read_layout
from sdeval.score.grouping import (
    Grouping,
    generation_rows,
    group_folder,
    group_generation_rows,
    is_generation_run,
    run_source,
)
from sdeval.score.judging import Judged, faithfulness_columns, judge_images, load_spec_source, vqa_questions
from sdeval.score.models import PromptTexts, RunModels
from sdeval.score.part import (
    ImagePart,
    ModelKeys,
    ReferencePart,
    judgement_from_json,
    judgement_json,
    reference_arrays,
    role_features,
)
from sdeval.score.preference import PreferenceScores, score_preferences

#: ScoreOptions fields that do not move results (where work runs, how fast, what is shown).
_RUNTIME = ("images", "ci", "ci_replicates")
_RUNTIME_FEATURES = ("batch_size", "workers", "device", "cache_dir", "progress")
#: The reference's arrays metrics read as ReferenceData fields (`reference.pool`); the others as `.features[NAME]`.
_REFERENCE_FIELDS = ("pool", "cmmd_image")


@dataclass
class Prepared:
    """What a run's cells are scored from: per image in sorted path order, and for the run."""

    options: ScoreOptions
    specs: list[MetricSpec]
    needs: set[Need]
    device: str
    models: ModelKeys
    reference_identity: dict[str, Any] | None
    reference_data: ReferenceData | None
    reference_arrays: dict[str, np.ndarray]  # state names, for the feature state
    root: str
    paths: list[str]
    hashes: list[str]
    skipped: list[dict[str, str]]
    n_computed: int
    features: dict[str, np.ndarray]  # state name -> [n, d]
    prompts: ImagePrompts | None
    grouping: Grouping
    texts: PromptTexts | None
    judged: Judged | None  # every image's judgement (cells take their slice)
    judge_protocol: dict[str, Any] | None
    faithful: tuple[dict[str, list[Any]], dict[int, str]] | None  # per-image columns, reason per image without
    preference: PreferenceScores | None
    warnings: list[str]
    started_at: str
    started: float

    @property
    def n(self) -> int:
        return len(self.paths)


def _needs_of(specs: list[MetricSpec], options: ScoreOptions) -> set[Need]:
    needs: set[Need] = set().union(*(spec.needs for spec in specs))
    missing_reference = [spec.name for spec in specs if spec.needs_reference]
    if missing_reference and options.reference is None:
        raise SdevalError(f"--reference is required for {', '.join(missing_reference)}")
    return needs


def options_record(options: ScoreOptions) -> dict[str, Any]:
    """The options that move results, as JSON: every part of one run must have the same."""
    record = options_json(options)
    for key in _RUNTIME:
        record.pop(key)
    for key in _RUNTIME_FEATURES:
        record["features"].pop(key)
    record["metrics"] = list(options.requested)
    return record


def prepare_part(
    options: ScoreOptions,
    shard: tuple[int, int] | None = None,
    *,
    files: list[str] | None = None,
    n_total: int | None = None,
    local_rank: int = 0,
) -> ImagePart:
    """The per-image work for share `shard` (I, N) of the sorted images (all of them when None), or for `files`
    alone (paths relative to IMAGES; `n_total` is then how many images all shares hold). `local_rank` picks this
    process's GPU in a multi-process launch."""
    specs = registry.check_names(options.requested)
    needs = _needs_of(specs, options)
    world = shard[1] if shard is not None else 1
    device = torch.device(resolve_device(options.features.device, local_rank, world))
    run = is_generation_run(options.images) and options.group_by is None
    source = run_source(options.images) if run else None
    wants_prompts = Need.PROMPTS in needs or Need.CLIP_TEXT in needs
    manifest_path = options.prompts
    if manifest_path is None and run and (Path(options.images) / "manifest.jsonl").is_file():
        manifest_path = str(Path(options.images) / "manifest.jsonl")
    looks_up_prompts = wants_prompts or options.prompts is not None or options.group_by not in (None, "folder")
    looks_up_prompts = looks_up_prompts or Need.PREFERENCE in needs  # the aesthetic score is reported per prompt
    wants_manifest = looks_up_prompts or Need.JUDGEMENTS in needs
    manifest = load_manifest(manifest_path, options.images) if manifest_path and wants_manifest else None
    # A suite's specs are read (and checked) before any model loads: a bad suite must not cost a decode pass.
    spec_source = None
    if Need.JUDGEMENTS in needs and not (not run and is_geneval_layout(options.images)):
        spec_source = load_spec_source(options.suite, source or {})
    models = RunModels.for_metrics(specs, needs, options, device)
    warns = list(models.warnings)

    reference: Any = None
    if options.reference and is_stats_file(options.reference):  # Fréchet statistics serve FID alone
        refuse_other_metrics(options.reference, [spec.name for spec in specs if spec.needs_reference])
    if options.reference and any(spec.needs_reference for spec in specs):
        reference_needs = models.reference_needs(options.reference)
        if shard is not None and shard[1] > 1 and Path(options.reference).is_dir():
            # A reference folder is split as the images are: this share's part of it, the merge makes the whole.
            inputs = {need.name: need.extractor for need in reference_needs}
            reference = reference_share(options.reference, inputs, options.features, shard)
        else:
            reference = load_any_reference(
                options.reference, reference_needs, options.features, options.reference_protocol
            )
    elif options.reference:
        warns.append("--reference is not used by the requested metrics")

    # `files` is the share itself (an array job's own images); else the share is a slice of the sorted listing.
    generated = extract(options.images, models.extractors, options.features, "images", None if files else shard, files)
    layout = None
    if not run and is_geneval_layout(options.images):
        layout, layout_warnings = read_layout(options.images, generated.paths)
        prompts = _layout_prompts(layout, generated.paths, layout_warnings)
    elif looks_up_prompts or Need.JUDGEMENTS in needs:
        prompts = find_image_prompts(generated.root, generated.paths, manifest, _elsewhere(options.images, generated))
    else:
        prompts = None
    records = prompts.records if prompts is not None else None
    rows = generation_rows(options.images, generated.paths) if run else None
    # This share's own grouping: each image's prompt id and item do not depend on the other images.
    if run:
        grouping = group_generation_rows(options.images, generated.paths, rows or [], source or {})
    else:
        grouping = group_folder(options.images, generated.paths, records, options.group_by)
    prompt_ids = [info.prompt_id for info in grouping.infos]

    texts = texts_block(models, prompts, options.features.cache_dir) if Need.CLIP_TEXT in needs else None

    judged = None
    if Need.JUDGEMENTS in needs:
        preset = None if layout is None else [(g.spec, g.spec.tag) if g is not None else None for g in layout]
        judged = _judge(options, models, device, generated, records, prompt_ids, spec_source, preset)

    faithful = None
    if Need.INIT_IMAGES in needs:
        columns, missing = faithfulness_columns(generated.root, generated.paths, prompt_ids, options.suite,
                                                grouping.source, models.prompt_model)  # fmt: skip
        faithful = {"columns": columns, "missing": missing}

    scores = None
    if models.preference:
        found_scores = score_preferences(models.preference, generated, prompts, options.features.cache_dir,
                                         options.features.batch_size, options.features.progress)  # fmt: skip
        scores = {"scores": found_scores.scores, "missing": found_scores.missing}

    return make_part(
        options, models, reference, generated, grouping.source,
        shard=shard, n_total=n_total, prompts=prompts, run_rows=rows, texts=texts, judged=judged,
        faithful=faithful, preference=scores, warnings=warns,
    )  # fmt: skip


def texts_block(models: RunModels, prompts: ImagePrompts | None, cache_dir: str | None) -> dict[str, Any] | None:
    """A part's `texts`: the share's distinct prompts embedded by the --clip-* model (each once, cached)."""
    found = PromptTexts.build(models, prompts, cache_dir)
    if found is None:
        return None
    assert models.prompt_model is not None  # PromptTexts.build needs it
    context = getattr(models.prompt_model.tokenizer, "context_length", 77)
    return {"distinct": found.distinct, "embeddings": found.embeddings, "truncated": found.truncated,
            "n_computed": found.n_computed, "context": context}  # fmt: skip


def _judge(
    options: ScoreOptions,
    models: RunModels,
    device: torch.device,
    generated: Any,
    records: list[Any] | None,
    prompt_ids: list[str | None],
    spec_source: Any,
    preset: list[Any] | None,
) -> dict[str, Any]:
    """Each image of the share judged against its spec (or its TIFA/DSG questions), in JSON form."""
    questions = vqa_questions(options.judge, options.questions, spec_source)  # before the judge's model loads
    judge = build_judge(options.judge, detector_model=options.detector_model, device=str(device),
                        clip=models.prompt_model,
                        clip_model=options.clip_model, clip_pretrained=options.clip_pretrained,
                        vqa_model=options.vqa_model, vqa_template=options.vqa_template,
                        vqa_threshold=options.vqa_threshold, questions=questions)  # fmt: skip
    found = judge_images(generated.root, generated.paths, records, prompt_ids, spec_source, preset, judge,
                         options.features.progress)  # fmt: skip
    return {
        "judgements": [judgement_json(j) for j in found.judgements],
        "categories": found.categories,
        "prompt_ids": found.prompt_ids,
        "specs": found.specs,
        "missing": {str(i): reason for i, reason in found.missing.items()},
        "protocol": {
            **judge.protocol(),
            "specs": spec_source.identity if spec_source is not None else "geneval layout",
        },
    }


def make_part(
    options: ScoreOptions,
    models: RunModels,
    reference: Any,
    generated: Any,
    source: dict[str, Any],
    *,
    shard: tuple[int, int] | None = None,
    n_total: int | None = None,
    prompts: ImagePrompts | None = None,
    run_rows: list[dict[str, Any] | None] | None = None,
    texts: dict[str, Any] | None = None,
    judged: dict[str, Any] | None = None,
    faithful: dict[str, Any] | None = None,
    preference: dict[str, Any] | None = None,
    warnings: list[str] | None = None,
) -> ImagePart:
    """A share's part from what the per-image work made (`generated`: a FolderFeatures of the share's images)."""
    return ImagePart(
        root=generated.root,
        shard=shard or (0, 1),
        n_listed=generated.n_listed if n_total is None else n_total,
        options=options_record(options),
        source=source,
        models=_model_keys(models),
        reference=_reference_part(reference, models),
        paths=generated.paths,
        hashes=generated.hashes,
        skipped=[s.to_json() for s in generated.skipped],
        n_computed=generated.n_computed,
        features=_state_features(generated, models),
        prompts=None if prompts is None else _prompts_block(prompts),
        run_rows=run_rows,
        texts=texts,
        judged=judged,
        faithful=faithful,
        preference=preference,
        warnings=list(warnings or []),
    )


def finish(
    options: ScoreOptions, part: ImagePart, started_at: str | None = None, started: float | None = None
) -> Prepared:
    """What the cells are scored from, out of the whole set's part (`part.shard == (0, 1)`)."""
    if not part.paths:
        first = part.skipped[0] if part.skipped else None
        raise NoImagesError(
            f"{part.root}: none of the {part.n_listed} image files could be decoded"
            + (f" (first: {first['path']}: {first['reason']})" if first else "")
        )
    specs = registry.check_names(options.requested)
    prompts = None
    if part.prompts is not None:
        prompts = ImagePrompts(part.prompts["records"], part.prompts["missing"], part.prompts["warnings"],
                               part.prompts["manifest"])  # fmt: skip
    if part.run_rows is not None:
        grouping = group_generation_rows(part.root, part.paths, part.run_rows, part.source)
    else:
        records = prompts.records if prompts is not None else None
        grouping = group_folder(part.root, part.paths, records, options.group_by)
    texts = _prompt_texts(part, prompts)
    if prompts is not None and texts is not None and texts.warning:
        prompts.warnings.append(texts.warning)
    judged = None
    if part.judged is not None:
        judged = Judged(
            judgements=[judgement_from_json(j) for j in part.judged["judgements"]],
            categories=part.judged["categories"],
            prompt_ids=part.judged["prompt_ids"],
            specs=part.judged["specs"],
            missing={int(i): reason for i, reason in part.judged["missing"].items()},
        )
    faithful = None if part.faithful is None else (part.faithful["columns"], part.faithful["missing"])
    preference = None
    if part.preference is not None:
        preference = PreferenceScores(part.preference["scores"], part.preference["missing"])
    return Prepared(
        options=options,
        specs=specs,
        needs=_needs_of(specs, options),
        device=str(torch.device(resolve_device(options.features.device))),
        models=part.models,
        reference_identity=part.reference.identity if part.reference is not None else None,
        reference_data=_reference_data(_offer_stored(part.reference)),
        reference_arrays={f"reference_{k}": v for k, v in (part.reference.arrays if part.reference else {}).items()},
        root=part.root,
        paths=part.paths,
        hashes=part.hashes,
        skipped=part.skipped,
        n_computed=part.n_computed,
        features=part.features,
        prompts=prompts,
        grouping=grouping,
        texts=texts,
        judged=judged,
        judge_protocol=part.judged["protocol"] if part.judged is not None else None,
        faithful=faithful,
        preference=preference,
        warnings=[*part.warnings, *grouping.warnings],
        started_at=started_at or now(),
        started=started if started is not None else time.time(),
    )


# -- helpers ------------------------------------------------------------------------------------------------------


def _layout_prompts(layout: list[Any], paths: list[str], warnings: list[str]) -> ImagePrompts:
    """The prompts of a GenEval output layout, from each prompt folder's metadata.jsonl."""
    missing = [
        {"path": path, "reason": "not in GenEval's layout (NNNNN/samples/NNNN.png with NNNNN/metadata.jsonl)"}
        for path, image in zip(paths, layout, strict=True)
        if image is None
    ]
    return ImagePrompts([g.record if g is not None else None for g in layout], missing, warnings, None)


def _elsewhere(root: str, generated: Any) -> list[str]:
    """The images of the folder that other shares score (none when this share is the whole)."""
    if generated.n_listed == generated.n + len(generated.skipped):
        return []
    mine = set(generated.paths) | {s.path for s in generated.skipped}
    listed = (p.relative_to(root).as_posix() for p in find_images(root))
    return [rel for rel in listed if rel not in mine]


def _prompts_block(prompts: ImagePrompts) -> dict[str, Any]:
    return {"records": prompts.records, "missing": prompts.missing, "warnings": prompts.warnings,
            "manifest": prompts.manifest}  # fmt: skip


def _model_keys(models: RunModels) -> ModelKeys:
    roles = {role: (model.cache_key, model.protocol()) for role, model in models.roles().items()}
    return ModelKeys(roles, {name: scorer.protocol() for name, scorer in models.preference.items()})


def _state_features(generated: Any, models: RunModels) -> dict[str, np.ndarray]:
    """Each role's features under its state array name (empty shares hold none)."""
    out = {}
    for role, model in models.roles().items():
        arrays = generated.features.get(model.cache_key) or {}
        for feature, name in role_features(role).items():
            if feature in arrays:
                out[name] = arrays[feature]
    return out


def _offer_stored(reference: ReferencePart | None) -> ReferencePart | None:
    """`reference`, after offering its file's stored radii and decompositions again where parts made in other
    processes are merged (`sdeval merge`, a launch's rank 0), so they are not recomputed: read when the file still
    stands where the parts name it and its meta says it holds radii (its loader checks them against its rows); a
    process that loaded it has them, and a file without radii is not read again."""
    if reference is None or reference.is_share:
        return reference
    source, pool = Path(str(reference.identity.get("source", ""))), reference.arrays.get("pool")
    if pool is not None and not has_reference_radii(pool) and source.suffix == ".npz" and holds_radii(source):
        with contextlib.suppress(SdevalError):  # changed since the parts were made: computed as without it
            load_reference(source)
    return reference


def _reference_part(reference: Any, models: RunModels) -> ReferencePart | None:
    """The part's reference: a Reference whole, or a ReferenceShare with what the merge needs of it."""
    if reference is None:
        return None
    share = reference if isinstance(reference, ReferenceShare) else None
    reference = share.reference if share is not None else reference
    arrays = {}
    stored_names = reference_arrays()
    for role, model in models.roles().items():
        stored = reference.features.get(model.cache_key) or {}
        for feature, name in role_features(role).items():
            if name in stored_names and feature in stored:
                arrays[name] = stored[feature]
    part = ReferencePart(reference.identity(), reference.n, arrays, reference.fid_state)
    if share is not None:
        part.share, part.paths, part.hashes = share.shard, reference.image_paths, reference.image_hashes
        part.skipped, part.n_listed = share.skipped, share.n_listed
    return part


def _reference_data(reference: ReferencePart | None) -> ReferenceData | None:
    if reference is None:
        return None
    data = ReferenceData(n=reference.n, fid_state=reference.fid_state)
    data.pool, data.cmmd_image = reference.arrays.get("pool"), reference.arrays.get("cmmd_image")
    data.features = {name: rows for name, rows in reference.arrays.items() if name not in _REFERENCE_FIELDS}
    if data.fid_state is None and data.pool is not None:
        data.fid_state = FrechetState.from_features(data.pool)
    return data


def _prompt_texts(part: ImagePart, prompts: ImagePrompts | None) -> PromptTexts | None:
    """Each distinct prompt's text embedding, in the order the prompts first come in the images (as one process
    would embed them)."""
    if part.texts is None or prompts is None:
        return None
    table = {p: j for j, p in enumerate(part.texts["distinct"])}
    distinct = list(dict.fromkeys(r.prompt for r in prompts.records if r is not None))
    rows = [table[p] for p in distinct]
    width = part.texts["embeddings"].shape[-1] if part.texts["embeddings"].ndim == 2 else 0
    embeddings = part.texts["embeddings"][rows] if rows else np.zeros((0, width), np.float32)
    truncated = None if part.texts["truncated"] is None else [part.texts["truncated"][j] for j in rows]
    return PromptTexts.describe(
        distinct, embeddings, truncated, part.texts["n_computed"], part.texts.get("context", 77)
    )
