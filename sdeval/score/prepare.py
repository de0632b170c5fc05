"""The first stage of a scoring run: everything the cells are scored from, gathered once.

Which metrics were asked for and what they need; the models those needs call for (and no others); the reference;
every image's features in one decode pass; each image's prompt, cell and item key; each distinct prompt's text
embedding; judgements against specs and init-image comparisons where metrics need them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sdeval.cells import Grouping, group_folder, group_generation_run, is_generation_run
from sdeval.devices import resolve_device
from sdeval.errors import SdevalError
from sdeval.features.clip import FEATURE_NAME as CLIP_FEATURE
from sdeval.features.dinov2 import FEATURE_NAME as DINOV2_FEATURE
from sdeval.features.extract import FolderFeatures
from sdeval.features.inception import POOL
from sdeval.features.options import extract
from sdeval.geneval import is_geneval_layout, read_layout
from sdeval.judging import Judged, faithfulness_columns, judge_images, load_spec_source
from sdeval.metrics import registry
from sdeval.metrics.registry import MetricSpec, Need, ReferenceData
from sdeval.prompts import load_manifest
from sdeval.prompts.lookup import ImagePrompts, find_image_prompts
from sdeval.provenance import now
from sdeval.reference.build import load_any_reference
from sdeval.reference.files import Reference
from sdeval.score.models import PromptTexts, RunModels
from sdeval.score.options import ScoreOptions
from sdeval.score.preference import PreferenceScores


@dataclass
class Prepared:
    """What a run's cells are scored from."""

    options: ScoreOptions
    specs: list[MetricSpec]
    needs: set[Need]
    device: torch.device
    models: RunModels
    reference: Reference | None
    reference_data: ReferenceData | None
    generated: FolderFeatures
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


def _needs_of(specs: list[MetricSpec], options: ScoreOptions) -> set[Need]:
    needs: set[Need] = set().union(*(spec.needs for spec in specs))
    missing_reference = [spec.name for spec in specs if spec.needs_reference]
    if missing_reference and options.reference is None:
        raise SdevalError(f"--reference is required for {', '.join(missing_reference)}")
    return needs


def prepare(options: ScoreOptions) -> Prepared:
    """Everything the cells are scored from: each image read and decoded once, however many cells it is in."""
    started_at, started = now(), time.time()
    specs = registry.check_names(options.requested)
    needs = _needs_of(specs, options)
    device = torch.device(resolve_device(options.features.device))
    warns: list[str] = []
    run = is_generation_run(options.images) and options.group_by is None
    wants_prompts = Need.PROMPTS in needs or Need.CLIP_TEXT in needs
    manifest_path = options.prompts
    if manifest_path is None and run and (Path(options.images) / "manifest.jsonl").is_file():
        manifest_path = str(Path(options.images) / "manifest.jsonl")
    looks_up_prompts = (
        wants_prompts
        or Need.PREFERENCE in needs
        or options.prompts is not None
        or options.group_by not in (None, "folder")
    )
    wants_manifest = looks_up_prompts or Need.JUDGEMENTS in needs
    manifest = load_manifest(manifest_path, options.images) if manifest_path and wants_manifest else None
    preference = tuple(spec.name for spec in specs if Need.PREFERENCE in spec.needs)
    models = RunModels.build(needs, options, device, preference)
    warns.extend(models.warnings)

    reference = None
    if options.reference and any(spec.needs_reference for spec in specs):
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
    texts = PromptTexts.build(models, prompts, options.features.cache_dir) if Need.CLIP_TEXT in needs else None
    if prompts is not None and texts is not None and texts.warning:
        prompts.warnings.append(texts.warning)

    judged = judge_protocol = None
    prompt_ids = [info.prompt_id for info in grouping.infos]
    if Need.JUDGEMENTS in needs:
        from sdeval.judges.registry import build_judge  # transformers and the detectors load only here

        judge = build_judge(options.judge, detector_model=options.detector_model, device=str(device),
                            clip=models.clip.prompt if models.clip is not None else None,
                            clip_model=options.clip_model, clip_pretrained=options.clip_pretrained,
                            vqa_model=options.vqa_model, vqa_template=options.vqa_template,
                            vqa_threshold=options.vqa_threshold, questions=options.questions)  # fmt: skip
        spec_source = None if layout is not None else load_spec_source(options.suite, grouping.source)
        preset = None if layout is None else [(g.spec, g.spec.tag) if g is not None else None for g in layout]
        judged = judge_images(generated.root, generated.paths, records, prompt_ids, spec_source, preset, judge,
                              options.features.progress)  # fmt: skip
        specs_from = spec_source.identity if spec_source is not None else "geneval layout"
        judge_protocol = {**judge.protocol(), "specs": specs_from}

    faithful = None
    if Need.INIT_IMAGES in needs:
        embedder = models.clip.prompt if models.clip is not None else None
        faithful = faithfulness_columns(generated.root, generated.paths, prompt_ids, options.suite, grouping.source,
                                        embedder)  # fmt: skip

    scores = None
    if models.preference:
        from sdeval.score.preference import score_preferences

        scores = score_preferences(models.preference, generated, prompts, options.features.cache_dir,
                                   options.features.batch_size, options.features.progress)  # fmt: skip

    return Prepared(
        options=options,
        specs=specs,
        needs=needs,
        device=device,
        models=models,
        reference=reference,
        reference_data=_reference_data(reference, models),
        generated=generated,
        prompts=prompts,
        grouping=grouping,
        texts=texts,
        judged=judged,
        judge_protocol=judge_protocol,
        faithful=faithful,
        preference=scores,
        warnings=warns,
        started_at=started_at,
        started=started,
    )


def _layout_prompts(layout: list[Any], paths: list[str], warnings: list[str]) -> ImagePrompts:
    """The prompts of a GenEval output layout, from each prompt folder's metadata.jsonl."""
    missing = [
        {"path": path, "reason": "not in GenEval's layout (NNNNN/samples/NNNN.png with NNNNN/metadata.jsonl)"}
        for path, image in zip(paths, layout, strict=True)
        if image is None
    ]
    return ImagePrompts([g.record if g is not None else None for g in layout], missing, warnings, None)


def _reference_data(reference: Reference | None, models: RunModels) -> ReferenceData | None:
    if reference is None:
        return None
    data = ReferenceData(n=reference.n, fid_state=reference.fid_state)
    if models.inception is not None:  # require_features checked that the cache keys match
        data.pool = reference.features.get(models.inception.cache_key, {}).get(POOL)
    if models.clip is not None and models.clip.cmmd is not None:
        data.cmmd_image = reference.features.get(models.clip.cmmd.cache_key, {}).get(CLIP_FEATURE)
    if models.dinov2 is not None:
        data.dinov2 = reference.features.get(models.dinov2.cache_key, {}).get(DINOV2_FEATURE)
    return data
