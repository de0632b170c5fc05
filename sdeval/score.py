"""`sdeval score` and `sdeval reference build`: folder -> features -> metrics -> results dict."""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sdeval import __version__
from sdeval.errors import SdevalError
from sdeval.features.cache import FeatureCache
from sdeval.features.clip import ClipEmbedder, ClipModelSpec
from sdeval.features.extract import FolderFeatures, extract_folder
from sdeval.features.inception import POOL, InceptionExtractor
from sdeval.metrics.fid import FrechetState
from sdeval.reference import Reference, images_hash, load_reference, require_features, save_reference
from sdeval.score_inception import (
    INCEPTION_METRICS,
    INCEPTION_TWO_SET,
    inception_metric,
    inception_protocol,
    result_keys,
)
from sdeval.score_text import (
    PROMPT_METRICS,
    TEXT_METRICS,
    ClipModels,
    TextMetrics,
    choose_clip_models,
    cmmd_rebuild_hint,
    find_image_prompts,
    load_clip_models,
    read_manifest,
)

KNOWN_METRICS = INCEPTION_METRICS + TEXT_METRICS
TWO_SET_METRICS = (*INCEPTION_TWO_SET, "cmmd")
DEFAULT_METRICS = ("fid", "kid", "is", "pr")
DECODE_RULE = "8-bit RGB, first frame, no EXIF rotation, alpha dropped, 16-bit scaled by 1/257"


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
    metrics: tuple[str, ...] = DEFAULT_METRICS
    kid_subset_size: int | None = None  # None: min(1000, n)
    kid_subsets: int = 100
    seed: int = 2020  # torch-fidelity's default, so default KID subsets and IS splits match it
    features: FeatureOptions = FeatureOptions()
    prompts: str | None = None  # manifest (JSONL/CSV); prompts also come from image metadata and captions
    clip_model: str | None = None  # None: ViT-L-14 (see score_text.choose_clip_models)
    clip_pretrained: str | None = None  # tag or local file; None: openai
    cmmd_model: str | None = None  # None: the --clip-* model if one was given, else ViT-L-14-336
    cmmd_pretrained: str | None = None
    rprecision_r: int | None = None  # None: min(100, distinct prompts)
    per_image: bool = False


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SdevalError("--device cuda was asked for, but no CUDA device is available")
    if name != "cpu" and not name.startswith("cuda"):
        raise SdevalError(f"--device must be auto, cpu or cuda[:N], got {name!r}")
    return torch.device(name)


def build_inception(options: FeatureOptions) -> InceptionExtractor:
    return InceptionExtractor(options.inception_weights, options.preprocess, resolve_device(options.device))


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
        image_hashes=list(feats.hashes),  # per-image identity lets `reference merge` find overlapping parts
        image_paths=list(feats.paths),
    )


def build_reference_file(
    images: str, out: str, options: FeatureOptions, cmmd: ClipModelSpec | None = None
) -> Reference:
    """`sdeval reference build`: Inception features and Fréchet state of a folder (plus, with `cmmd`, the
    CLIP image embeddings CMMD needs), extracted in one pass and written to `out`."""
    extractors: list = [build_inception(options)]
    if cmmd is not None:
        device = resolve_device(options.device)
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


def _check_metrics(options: ScoreOptions) -> None:
    unknown = [m for m in options.metrics if m not in KNOWN_METRICS]
    if unknown:
        raise SdevalError(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(KNOWN_METRICS)}")
    needs_reference = [m for m in options.metrics if m in TWO_SET_METRICS]
    if needs_reference and options.reference is None:
        raise SdevalError(f"--reference is required for {', '.join(needs_reference)}")


@dataclass
class _Models:
    """The models a run needs, and nothing else: Inception only for fid/kid/is/pr, CLIP only for the
    text-image metrics (one CLIP model when CLIP score and CMMD use the same one)."""

    inception: InceptionExtractor | None
    clip: ClipModels | None
    cmmd_spec: ClipModelSpec | None

    @classmethod
    def build(cls, options: ScoreOptions, device: torch.device, warns: list[str]) -> _Models:
        asked = options.metrics
        inception = build_inception(options.features) if any(m in INCEPTION_METRICS for m in asked) else None
        if not any(m in TEXT_METRICS for m in asked):
            return cls(inception, None, None)
        choice = choose_clip_models(
            asked, options.clip_model, options.clip_pretrained, options.cmmd_model, options.cmmd_pretrained
        )
        warns.extend(choice.warnings)
        return cls(inception, load_clip_models(choice, device, options.features.batch_size), choice.cmmd)

    @property
    def extractors(self) -> list:
        return ([self.inception] if self.inception else []) + (self.clip.extractors if self.clip else [])

    def reference_needs(self, asked: tuple[str, ...], source: str) -> list[tuple[Any, str]]:
        """(extractor, hint if a reference file lacks its features) for each model a reference must feed."""
        needs: list[tuple[Any, str]] = []
        if self.inception is not None and any(m in INCEPTION_TWO_SET for m in asked):
            needs.append((self.inception, "build it with `sdeval reference build`"))
        if self.clip is not None and self.clip.cmmd is not None and self.cmmd_spec is not None:
            needs.append((self.clip.cmmd, cmmd_rebuild_hint(self.cmmd_spec, source)))
        return needs


def score(options: ScoreOptions) -> dict[str, Any]:
    """Score a folder; returns the results document (see README, "Results JSON").

    Only the models the requested metrics need are built, and all of them run in one extract_folder
    pass over IMAGES (and one over a reference folder), so each image is read and decoded once.
    """
    started = time.time()
    _check_metrics(options)
    asked = options.metrics
    device = resolve_device(options.features.device)
    warns: list[str] = []
    wants_prompts = any(m in PROMPT_METRICS for m in asked)
    manifest = read_manifest(options.prompts, options.images) if wants_prompts else None  # fails fast
    if options.prompts and not wants_prompts:
        warns.append(f"--prompts is read only by {', '.join(PROMPT_METRICS)}; none of them was asked for")
    models = _Models.build(options, device, warns)

    reference = None
    if options.reference and any(m in TWO_SET_METRICS for m in asked):
        needs = models.reference_needs(asked, options.reference)
        reference = load_any_reference(options.reference, needs, options.features)
    elif options.reference:
        warns.append("--reference is not used by the requested metrics")

    generated = extract(options.images, models.extractors, options.features, "images")
    text = None
    if models.clip is not None:
        prompts = find_image_prompts(generated, manifest) if wants_prompts else None
        text = TextMetrics(
            generated, models.clip, prompts, reference,
            seed=options.seed, rprecision_r=options.rprecision_r, cache_dir=options.features.cache_dir,
        )  # fmt: skip

    metrics: dict[str, Any] = {}
    for name in asked:
        try:
            if name in TEXT_METRICS:
                metrics.update(text.compute(name))  # type: ignore[union-attr]
            else:
                key = models.inception.cache_key  # type: ignore[union-attr]
                ref = reference.features[key] if reference else None
                fid_state = reference.fid_state if reference else None
                metrics.update(inception_metric(name, generated.features[key], ref, fid_state, options, warns))
        except SdevalError as err:  # too few images and the like: listed, not fatal
            for key in result_keys(name):
                metrics[key] = {"value": None, "skipped": str(err)}

    results: dict[str, Any] = {
        "sdeval_version": __version__,
        "images": {
            "root": generated.root,
            "n_scored": generated.n,
            "n_computed": generated.n_computed,
            "images_sha256": images_hash(generated.paths, generated.hashes),
            "skipped": [s.to_json() for s in generated.skipped],
        },
        "reference": reference.identity() if reference else None,
        "prompts": None,
        "metrics": metrics,
        "warnings": warns,
        "protocol": _protocol(options, models.inception, text, generated, reference),
        "environment": environment(device, time.time() - started, clip_used=models.clip is not None),
    }
    if text is not None and text.prompts is not None:
        results["prompts"] = {**text.prompts.summary(), "n_text_computed": text.n_text_computed}
    if options.per_image:
        results["per_image"] = _per_image_rows(generated, text)
        per_prompt = text.per_prompt() if text is not None else None
        if per_prompt is not None:
            results["per_prompt"] = per_prompt
    return results


def _protocol(options, inception, text, generated, reference) -> dict[str, Any]:
    protocol: dict[str, Any] = {"inception": inception.protocol() if inception is not None else None}
    protocol["metrics"] = list(options.metrics)
    if inception is not None:
        gen = generated.features[inception.cache_key]
        protocol.update(inception_protocol(options, len(gen[POOL]), reference.n if reference else None))
    if text is not None:
        protocol.update(text.protocol(options.metrics))
    protocol["seed"] = options.seed
    protocol["decode"] = DECODE_RULE
    return protocol


def _per_image_rows(generated: FolderFeatures, text: TextMetrics | None) -> list[dict[str, Any]]:
    details = text.per_image() if text is not None else [{} for _ in generated.paths]
    return [
        {"path": path, "sha256": sha, **detail}
        for path, sha, detail in zip(generated.paths, generated.hashes, details, strict=True)
    ]


def environment(device: torch.device, seconds: float, clip_used: bool = False) -> dict[str, Any]:
    import torch_fidelity

    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_fidelity": torch_fidelity.__version__,
        "numpy": np.__version__,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "seconds": round(seconds, 3),
    }
    if clip_used:
        import open_clip

        env["open_clip"] = open_clip.__version__
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env
