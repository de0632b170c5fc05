"""`sdeval score` and `sdeval reference build`: images -> features (one decode pass) -> cells -> metrics -> results.

Which metrics exist and what each needs comes from the metric registry; this module builds the models those
needs call for, extracts every feature in one pass over the images (and one over a reference folder), finds
each image's prompt and cell, and computes each requested metric per cell.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sdeval import __version__
from sdeval.cells import Grouping, group_folder, group_generation_run, is_generation_run
from sdeval.devices import resolve_device
from sdeval.errors import SdevalError
from sdeval.features.cache import FeatureCache
from sdeval.features.clip import FEATURE_NAME as CLIP_FEATURE
from sdeval.features.clip import ClipEmbedder, ClipModelSpec
from sdeval.features.clip_models import ClipModels, choose_clip_models, cmmd_rebuild_hint, load_clip_models
from sdeval.features.extract import FolderFeatures, extract_folder
from sdeval.features.inception import LOGITS, POOL, InceptionExtractor
from sdeval.features.text_embeddings import embed_prompts
from sdeval.geneval import is_geneval_layout, read_layout
from sdeval.judging import faithfulness_columns, judge_images, load_spec_source
from sdeval.metrics import registry
from sdeval.metrics.builtin import kid_subset_size
from sdeval.metrics.fid import FrechetState
from sdeval.metrics.registry import CellData, MetricSpec, Need, PromptData, ReferenceData, ScoreParams
from sdeval.prompts import load_manifest
from sdeval.prompts.lookup import ImagePrompts, find_image_prompts
from sdeval.provenance import now, provenance
from sdeval.reference import Reference, images_hash, load_reference, require_features, save_reference

FORMAT = "sdeval.results"
FORMAT_VERSION = 1
DECODE_RULE = "8-bit RGB, first frame, no EXIF rotation, alpha dropped, 16-bit scaled by 1/257"
#: Errors a metric function may raise for a degenerate input; each becomes a listed skip with its reason.
_METRIC_FAILURES = (SdevalError, ValueError, ArithmeticError, np.linalg.LinAlgError)


@dataclass(frozen=True)
class FeatureOptions:
    """How images become features: everything here is part of the protocol or of the speed."""

    preprocess: str = "legacy"
    inception_weights: str | None = None
    batch_size: int = 32
    workers: int = 1
    device: str = "auto"
    cache_dir: str | None = None  # None: no cache
    progress: bool = True


@dataclass(frozen=True)
class ScoreOptions:
    images: str
    reference: str | None = None
    metrics: tuple[str, ...] | None = None  # None: the registry's defaults
    kid_subset_size: int | None = None  # None: min(1000, n, n_reference)
    kid_subsets: int = 100
    seed: int = 2020  # torch-fidelity's default, so default KID subsets and IS splits match it
    features: FeatureOptions = FeatureOptions()
    prompts: str | None = None  # manifest (JSONL/CSV); prompts also come from image metadata and captions
    clip_model: str | None = None  # None: ViT-L-14 (see features/clip_models.py)
    clip_pretrained: str | None = None  # tag or local file; None: openai
    cmmd_model: str | None = None  # None: the --clip-* model if one was given, else ViT-L-14-336
    cmmd_pretrained: str | None = None
    rprecision_r: int | None = None  # None: min(100, distinct prompts of the cell)
    group_by: str | None = None  # plain folders: `folder` or a prompt/metadata column
    suite: str | None = None  # specs for adherence (a built-in suite name or a file); a run's own by default
    judge: str = "detector"  # adherence judge: detector, clip or shapes
    detector_model: str | None = None  # hub id or local folder (judge `detector`)
    per_image: bool = True  # kept for compatibility: per-image rows are always written

    @property
    def requested(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.metrics)) if self.metrics else registry.default_names()

    @property
    def params(self) -> ScoreParams:
        return ScoreParams(self.seed, self.kid_subsets, self.kid_subset_size, self.rprecision_r)


@dataclass
class ScoreRun:
    """A results document and the feature state of its per-image rows (see sdeval/state.py).

    The state copies every feature row, so it is gathered only when asked for (a results file, --ci), not for
    a run that prints a table.
    """

    document: dict[str, Any]
    make_state: Callable[[], dict[str, np.ndarray]] = dict

    @cached_property
    def state(self) -> dict[str, np.ndarray]:
        return self.make_state()

    @property
    def cell_ids(self) -> list[str]:
        return [cell["id"] for cell in self.document["cells"]]


def build_inception(options: FeatureOptions) -> InceptionExtractor:
    return InceptionExtractor(
        options.inception_weights, options.preprocess, torch.device(resolve_device(options.device))
    )


def extract(folder: str, extractors: list, options: FeatureOptions, label: str) -> FolderFeatures:
    """Features of a folder for all `extractors` in one pass: each image is decoded once."""
    cache = FeatureCache(options.cache_dir) if options.cache_dir else None
    try:
        return extract_folder(
            folder,
            extractors,
            batch_size=options.batch_size,
            workers=options.workers,
            cache=cache,
            progress=options.progress,
            label=label,
        )
    finally:
        if cache is not None:
            cache.close()


def reference_from_folder(folder: str, extractors: list, options: FeatureOptions) -> Reference:
    """A reference made now from a folder, holding the features of each of `extractors`."""
    feats = extract(folder, extractors, options, "reference")
    features: dict[str, dict[str, np.ndarray]] = {}
    fid_state = None
    for extractor in extractors:
        arrays = feats.features[extractor.cache_key]
        if isinstance(extractor, InceptionExtractor):
            arrays = {POOL: arrays[POOL]}  # the logits serve IS only, which needs no reference
            fid_state = FrechetState.from_features(arrays[POOL])
        features[extractor.cache_key] = arrays
    return Reference(
        protocols={e.cache_key: e.protocol() for e in extractors},
        features=features,
        fid_state=fid_state,
        n=feats.n,
        images_hash=images_hash(feats.paths, feats.hashes),
        source=str(Path(folder)),
        image_hashes=list(feats.hashes),
        image_paths=list(feats.paths),
    )


def build_reference_file(
    images: str, out: str, options: FeatureOptions, cmmd: ClipModelSpec | None = None
) -> Reference:
    """`sdeval reference build`: Inception features and Fréchet state of a folder (plus, with `cmmd`, the
    CLIP image embeddings CMMD needs), extracted in one pass and written to `out`."""
    extractors: list = [build_inception(options)]
    if cmmd is not None:
        device = torch.device(resolve_device(options.device))
        extractors.append(ClipEmbedder.load(cmmd.name, cmmd.pretrained, device=device, batch_size=options.batch_size))
    reference = reference_from_folder(images, extractors, options)
    save_reference(out, reference)
    return reference


def load_any_reference(source: str, needs: list[tuple[Any, str]], options: FeatureOptions) -> Reference:
    """A reference from a folder (features extracted now) or a file (each extractor's protocol checked).

    `needs` pairs each extractor whose features the metrics need with the hint shown when a reference
    file holds none of that kind.
    """
    if Path(source).is_dir():
        return reference_from_folder(source, [extractor for extractor, _ in needs], options)
    reference = load_reference(source)
    for extractor, hint in needs:
        require_features(reference, extractor.protocol(), extractor.cache_key, hint)
    return reference


# -- models -------------------------------------------------------------------------------------------------


@dataclass
class _Models:
    """The models a run needs, and nothing else: Inception only for metrics that read it, CLIP only for those
    that read embeddings (one CLIP model when the prompt metrics and CMMD use the same one)."""

    inception: InceptionExtractor | None
    clip: ClipModels | None
    cmmd_spec: ClipModelSpec | None
    warnings: list[str]

    @classmethod
    def build(cls, needs: set[Need], options: ScoreOptions, device: torch.device) -> _Models:
        inception = None
        if {Need.INCEPTION_POOL, Need.INCEPTION_LOGITS} & needs:
            inception = build_inception(options.features)
        wants_prompt_model = bool({Need.CLIP_IMAGE, Need.CLIP_TEXT} & needs)
        wants_cmmd_model = Need.CMMD_IMAGE in needs
        if not (wants_prompt_model or wants_cmmd_model):
            return cls(inception, None, None, [])
        choice = choose_clip_models(
            wants_prompt_model, wants_cmmd_model,
            options.clip_model, options.clip_pretrained, options.cmmd_model, options.cmmd_pretrained,
        )  # fmt: skip
        clip = load_clip_models(choice, device, options.features.batch_size)
        return cls(inception, clip, choice.cmmd, list(choice.warnings))

    @property
    def extractors(self) -> list:
        return ([self.inception] if self.inception else []) + (self.clip.extractors if self.clip else [])

    def reference_needs(self, needs: set[Need], source: str) -> list[tuple[Any, str]]:
        """(extractor, hint if a reference file lacks its features) for each model a reference must feed."""
        out: list[tuple[Any, str]] = []
        if self.inception is not None and Need.INCEPTION_POOL in needs:
            out.append((self.inception, "build it with `sdeval reference build`"))
        if self.clip is not None and self.clip.cmmd is not None and self.cmmd_spec is not None:
            out.append((self.clip.cmmd, cmmd_rebuild_hint(self.cmmd_spec, source)))
        return out


# -- scoring ------------------------------------------------------------------------------------------------


def _needs_of(specs: list[MetricSpec], options: ScoreOptions) -> set[Need]:
    needs: set[Need] = set().union(*(spec.needs for spec in specs))
    missing_reference = [spec.name for spec in specs if spec.needs_reference]
    if missing_reference and options.reference is None:
        raise SdevalError(f"--reference is required for {', '.join(missing_reference)}")
    return needs


def score(options: ScoreOptions) -> dict[str, Any]:
    """Score a folder or a generation run; returns the results document (docs/formats.md, "Results")."""
    return score_run(options).document


def score_run(options: ScoreOptions) -> ScoreRun:
    """The results document and the feature state of its rows.

    Only the models the requested metrics need are built, and all of them run in one extract_folder pass
    over IMAGES (and one over a reference folder), so each image is read and decoded once, however many
    cells it is scored in.
    """
    started_at, started = now(), time.time()
    metric_specs = registry.check_names(options.requested)
    needs = _needs_of(metric_specs, options)
    device = torch.device(resolve_device(options.features.device))
    warns: list[str] = []
    run = is_generation_run(options.images) and options.group_by is None
    wants_prompts = Need.PROMPTS in needs or Need.CLIP_TEXT in needs
    manifest_path = options.prompts
    if manifest_path is None and run and (Path(options.images) / "manifest.jsonl").is_file():
        manifest_path = str(Path(options.images) / "manifest.jsonl")
    looks_up_prompts = wants_prompts or options.prompts is not None or options.group_by not in (None, "folder")
    wants_manifest = looks_up_prompts or Need.JUDGEMENTS in needs
    manifest = load_manifest(manifest_path, options.images) if manifest_path and wants_manifest else None
    models = _Models.build(needs, options, device)
    warns.extend(models.warnings)

    reference = None
    if options.reference and any(spec.needs_reference for spec in metric_specs):
        reference = load_any_reference(
            options.reference, models.reference_needs(needs, options.reference), options.features
        )
    elif options.reference:
        warns.append("--reference is not used by the requested metrics")

    generated = extract(options.images, models.extractors, options.features, "images")
    layout = None
    if not run and is_geneval_layout(options.images):
        layout, layout_warnings = read_layout(options.images, generated.paths)
        prompts = _layout_prompts(layout, generated.paths, layout_warnings)
    elif looks_up_prompts or Need.JUDGEMENTS in needs:
        prompts = find_image_prompts(generated.root, generated.paths, manifest)
    else:
        prompts = None
    records = prompts.records if prompts is not None else None
    if run:
        grouping = group_generation_run(options.images, generated.paths)
    else:
        grouping = group_folder(options.images, generated.paths, records, options.group_by)
    warns.extend(grouping.warnings)
    texts = _TextTable.build(models, prompts, options.features.cache_dir) if Need.CLIP_TEXT in needs else None
    if prompts is not None and texts is not None and texts.warning:
        prompts.warnings.append(texts.warning)

    judged = judge_protocol = None
    if Need.JUDGEMENTS in needs:
        from sdeval.judges.registry import build_judge  # transformers and the detectors load only here

        judge = build_judge(options.judge, detector_model=options.detector_model, device=str(device),
                            clip=models.clip.prompt if models.clip is not None else None,
                            clip_model=options.clip_model, clip_pretrained=options.clip_pretrained)  # fmt: skip
        spec_source = None if layout is not None else load_spec_source(options.suite, grouping.source)
        preset = None if layout is None else [(g.spec, g.spec.tag) if g is not None else None for g in layout]
        prompt_ids = [info.prompt_id for info in grouping.infos]
        judged = judge_images(generated.root, generated.paths, records, prompt_ids, spec_source, preset, judge,
                              options.features.progress)  # fmt: skip
        specs_from = spec_source.identity if spec_source is not None else "geneval layout"
        judge_protocol = {**judge.protocol(), "specs": specs_from}

    faithful = None
    if Need.INIT_IMAGES in needs:
        embedder = models.clip.prompt if models.clip is not None else None
        faithful = faithfulness_columns(generated.root, generated.paths, [info.prompt_id for info in grouping.infos],
                                        options.suite, grouping.source, embedder)  # fmt: skip

    ref_data = _reference_data(reference, models)
    cells, state_rows = [], []
    for c, cell in enumerate(grouping.cells):
        members = grouping.members(c)
        data = _cell_data(members, generated, models, prompts, texts, ref_data, options.params)
        if faithful is not None:
            columns, missing = faithful
            data.faithfulness = {name: [values[i] for i in members] for name, values in columns.items()}
            data.faithfulness_missing = [
                {"path": generated.paths[i], "reason": missing[i]} for i in members if i in missing
            ]
        if judged is not None:
            data.judged = judged.for_cell(members, generated.paths, judge_protocol or {})
        entry = _score_cell(metric_specs, data, cell.to_json(), members, generated, grouping, prompts, texts)
        entry["protocol"] = _protocol(options, metric_specs, models, texts, reference, grouping, len(members), ref_data)
        if judge_protocol is not None:
            entry["protocol"]["judge"] = judge_protocol
            if entry["protocol"]["suite"] is None and isinstance(judge_protocol["specs"], dict):
                entry["protocol"]["suite"] = judge_protocol["specs"]  # --suite on a plain folder
        cells.append(entry)
        state_rows.extend(members)

    document: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "sdeval_version": __version__,
        "created_at": now(),
        "source": grouping.source,
        "metrics_requested": [spec.name for spec in metric_specs],
        "images": {
            "root": generated.root,
            "n_scored": generated.n,
            "n_computed": generated.n_computed,
            "images_sha256": images_hash(generated.paths, generated.hashes),
            "skipped": [s.to_json() for s in generated.skipped],
        },
        "reference": reference.identity() if reference else None,
        "prompts": None,
        "cells": cells,
        "warnings": warns,
        "state": None,
        "provenance": {
            **provenance(str(device), generated.root, started_at),
            "seconds": round(time.time() - started, 3),
        },
    }
    if prompts is not None:
        document["prompts"] = {**prompts.summary(), "n_text_computed": texts.n_computed if texts else 0}
    return ScoreRun(document, lambda: _state_arrays(state_rows, generated, models, grouping, reference))


def _layout_prompts(layout: list[Any], paths: list[str], warnings: list[str]) -> ImagePrompts:
    """The prompts of a GenEval output layout, from each prompt folder's metadata.jsonl."""
    missing = [
        {"path": path, "reason": "not in GenEval's layout (NNNNN/samples/NNNN.png with NNNNN/metadata.jsonl)"}
        for path, image in zip(paths, layout, strict=True)
        if image is None
    ]
    return ImagePrompts([g.record if g is not None else None for g in layout], missing, warnings, None)


@dataclass
class _TextTable:
    """Each distinct prompt of the run embedded once (by the --clip-* model), for every cell."""

    position: dict[str, int]
    distinct: list[str]
    embeddings: np.ndarray
    truncated: list[bool] | None
    n_computed: int
    warning: str | None

    @classmethod
    def build(cls, models: _Models, prompts: ImagePrompts | None, cache_dir: str | None) -> _TextTable | None:
        if prompts is None or models.clip is None or models.clip.prompt is None:
            return None
        embedder = models.clip.prompt
        distinct = list(dict.fromkeys(record.prompt for record in prompts.records if record is not None))
        embeddings, computed = embed_prompts(embedder, distinct, cache_dir)
        truncated = embedder.truncated(distinct) if distinct else None
        warning = None
        if truncated and any(truncated):
            context = getattr(embedder.tokenizer, "context_length", "?")
            warning = (
                f"{sum(truncated)} of {len(distinct)} distinct prompts are longer than the CLIP text context "
                f"({context} tokens) and were truncated: prompt metrics see only their beginning "
                "(`prompt_truncated` in the per-image rows)"
            )
        position = {text: j for j, text in enumerate(distinct)}
        return cls(position, distinct, embeddings, truncated, computed, warning)


def _reference_data(reference: Reference | None, models: _Models) -> ReferenceData | None:
    if reference is None:
        return None
    data = ReferenceData(n=reference.n, fid_state=reference.fid_state)
    if models.inception is not None:  # require_features checked that the cache keys match
        data.pool = reference.features.get(models.inception.cache_key, {}).get(POOL)
    if models.clip is not None and models.clip.cmmd is not None:
        data.cmmd_image = reference.features.get(models.clip.cmmd.cache_key, {}).get(CLIP_FEATURE)
    return data


def _cell_data(
    members: list[int],
    generated: FolderFeatures,
    models: _Models,
    prompts: ImagePrompts | None,
    texts: _TextTable | None,
    reference: ReferenceData | None,
    params: ScoreParams,
) -> CellData:
    rows = np.asarray(members, dtype=np.int64)
    data = CellData(paths=[generated.paths[i] for i in members], params=params, reference=reference)
    if models.inception is not None:
        arrays = generated.features[models.inception.cache_key]
        data.pool, data.logits = arrays[POOL][rows], arrays[LOGITS][rows]
    if models.clip is not None and models.clip.prompt is not None:
        data.clip_image = generated.features[models.clip.prompt.cache_key][CLIP_FEATURE][rows]
    if models.clip is not None and models.clip.cmmd is not None:
        data.cmmd_image = generated.features[models.clip.cmmd.cache_key][CLIP_FEATURE][rows]
    if prompts is not None:
        records = [prompts.records[i] for i in members]
        if texts is not None:
            distinct, position = texts.distinct, texts.position
        else:  # prompts without a text model (diversity): group by the prompt text
            distinct = list(dict.fromkeys(r.prompt for r in records if r is not None))
            position = {text: j for j, text in enumerate(distinct)}
        member_paths = set(data.paths)
        data.prompts = PromptData(
            index=np.array([position[r.prompt] if r is not None else -1 for r in records], dtype=np.int64),
            texts=texts.embeddings if texts is not None else None,
            distinct=distinct,
            truncated=texts.truncated if texts is not None else None,
            missing=[m for m in prompts.missing if m["path"] in member_paths],
        )
    return data


def _score_cell(
    specs: list[MetricSpec],
    data: CellData,
    cell: dict[str, Any],
    members: list[int],
    generated: FolderFeatures,
    grouping: Grouping,
    prompts: ImagePrompts | None,
    texts: _TextTable | None,
) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    columns: dict[str, list[Any]] = {}
    warnings: list[str] = []
    per_prompt = None
    for spec in specs:
        try:
            output = spec.compute(data)
        except _METRIC_FAILURES as err:  # too few images, no prompts, a degenerate input: listed, not fatal
            for result in spec.results:
                metrics[result.key] = {"value": None, "skipped": str(err) or type(err).__name__}
            continue
        metrics.update(output.entries)
        columns.update(output.per_image)
        warnings.extend(output.warnings)
        if output.per_prompt is not None:
            per_prompt = output.per_prompt
    rows = [_per_image_row(i, j, generated, grouping, prompts, texts, columns) for j, i in enumerate(members)]
    entry = {**cell, "n_images": len(members), "images_sha256": images_hash(data.paths, [r["sha256"] for r in rows])}
    entry.update(metrics=metrics, per_image=rows, warnings=warnings)
    if per_prompt is not None:
        entry["per_prompt"] = per_prompt
    return entry


def _per_image_row(
    i: int,
    j: int,
    generated: FolderFeatures,
    grouping: Grouping,
    prompts: ImagePrompts | None,
    texts: _TextTable | None,
    columns: dict[str, list[Any]],
) -> dict[str, Any]:
    info = grouping.infos[i]
    record = prompts.records[i] if prompts is not None else None
    row: dict[str, Any] = {
        "item": grouping.items[i],
        "path": generated.paths[i],
        "sha256": generated.hashes[i],
        "prompt": record.prompt if record else (info.row or {}).get("prompt"),
        "prompt_id": info.prompt_id if info.prompt_id is not None else (record.id if record else None),
        "seed": info.seed if info.seed is not None else (record.seed if record else None),
        "seed_index": info.seed_index,
        "prompt_source": record.source if record else None,
    }
    if record is not None and texts is not None and texts.truncated is not None:
        row["prompt_truncated"] = texts.truncated[texts.position[record.prompt]]
    for name, values in columns.items():
        row[name] = values[j]
    return row


def _protocol(
    options: ScoreOptions,
    specs: list[MetricSpec],
    models: _Models,
    texts: _TextTable | None,
    reference: Reference | None,
    grouping: Grouping,
    n: int,
    ref_data: ReferenceData | None,
) -> dict[str, Any]:
    protocol: dict[str, Any] = {
        "metrics": [spec.name for spec in specs],
        "inception": models.inception.protocol() if models.inception is not None else None,
        "reference": reference.identity() if reference is not None else None,
        "suite": (grouping.source.get("run") or {}).get("suite"),
        "seed": options.seed,
        "decode": DECODE_RULE,
    }
    for spec in specs:
        if spec.protocol is not None:
            protocol.update(spec.protocol(options.params))
    if "kid" in protocol:
        n_ref = len(ref_data.pool) if ref_data is not None and ref_data.pool is not None else None
        protocol["kid"]["subset_size"] = kid_subset_size(options.params, n, n_ref)
    if models.clip is not None and models.clip.prompt is not None:
        protocol["clip"] = models.clip.prompt.protocol()
        protocol["prompts"] = {
            "manifest": options.prompts,
            "sources": "manifest, then sdeval/A1111/ComfyUI metadata in the image, then NAME.txt caption",
            "text_truncation": "tokenizer context length (77 tokens for CLIP)",
        }
    if models.clip is not None and models.clip.cmmd is not None and "cmmd" in protocol:
        protocol["cmmd"]["clip"] = models.clip.cmmd.protocol()
    return protocol


def _state_arrays(
    rows: list[int], generated: FolderFeatures, models: _Models, grouping: Grouping, reference: Reference | None
) -> dict[str, np.ndarray]:
    """One row per per-image row, cell after cell (see sdeval/state.py)."""
    index = np.asarray(rows, dtype=np.int64)
    arrays: dict[str, np.ndarray] = {
        "cell": np.asarray([grouping.assignment[i] for i in rows], dtype=np.int32),
        "item": np.asarray([grouping.items[i] for i in rows], dtype=str),
        "sha256": np.asarray([generated.hashes[i] for i in rows], dtype=str),
    }
    if models.inception is not None:
        features = generated.features[models.inception.cache_key]
        arrays["pool"], arrays["logits"] = features[POOL][index], features[LOGITS][index]
        if reference is not None and models.inception.cache_key in reference.features:
            arrays["reference_pool"] = reference.features[models.inception.cache_key][POOL]
    if models.clip is not None and models.clip.prompt is not None:
        arrays["clip_image"] = generated.features[models.clip.prompt.cache_key][CLIP_FEATURE][index]
    if models.clip is not None and models.clip.cmmd is not None:
        arrays["cmmd_image"] = generated.features[models.clip.cmmd.cache_key][CLIP_FEATURE][index]
        if reference is not None and models.clip.cmmd.cache_key in reference.features:
            arrays["reference_cmmd_image"] = reference.features[models.clip.cmmd.cache_key][CLIP_FEATURE]
    return arrays
