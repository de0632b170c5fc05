"""The text-image side of `sdeval score`: CLIP models, each image's prompt, and the metrics that use them.

CLIP image embeddings come out of the same `extract_folder` pass as the Inception features (every image
is decoded once; see score.py). This module decides which CLIP models a run needs, finds the prompt of
each scored image, embeds each distinct prompt once (cached by its text), and computes CLIP score,
CLIP R-precision, CMMD and diversity from the embeddings.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sdeval.errors import SdevalError
from sdeval.features.cache import FeatureCache
from sdeval.features.clip import (
    CLIP_SCORE_MODEL,
    CMMD_MODEL,
    FEATURE_NAME,
    TEXT_FEATURE_NAME,
    ClipEmbedder,
    ClipModelSpec,
)
from sdeval.features.extract import FolderFeatures
from sdeval.metrics.clip_score import ClipScoreResult, clip_score
from sdeval.metrics.cmmd import SCALE, SIGMA, cmmd
from sdeval.metrics.diversity import DiversityResult, prompt_diversity
from sdeval.metrics.embeddings import NotEnoughDataError
from sdeval.metrics.rprecision import DEFAULT_MAX_R, RPrecisionResult, clip_r_precision
from sdeval.prompts import ManifestResult, PromptRecord, find_prompts, load_manifest
from sdeval.reference import Reference

#: Metrics that need each image's prompt (and the --clip-* model).
PROMPT_METRICS = ("clip", "rprecision", "diversity")
#: Every metric this module computes.
TEXT_METRICS = ("clip", "rprecision", "cmmd", "diversity")
#: The paper's estimator (see metrics/cmmd.py).
CMMD_ESTIMATOR = "biased"


# -- which CLIP models -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipChoice:
    """The CLIP models of a run: `prompt` for CLIP score, R-precision and diversity, `cmmd` for CMMD.

    None where no requested metric needs that model. When both are the same spec, one model is loaded
    and its image embeddings are computed once.
    """

    prompt: ClipModelSpec | None
    cmmd: ClipModelSpec | None
    warnings: tuple[str, ...] = ()


def choose_clip_models(
    metrics: tuple[str, ...],
    clip_model: str | None = None,
    clip_pretrained: str | None = None,
    cmmd_model: str | None = None,
    cmmd_pretrained: str | None = None,
) -> ClipChoice:
    """Fill in the defaults of the --clip-* and --cmmd-* options.

    - CLIP score, R-precision, diversity: `--clip-model` (default ViT-L-14) with `--clip-pretrained`
      (default `openai`).
    - CMMD: `--cmmd-model`/`--cmmd-pretrained` when either is given (the other one from the paper's
      ViT-L-14-336 + openai); else, when a --clip-* option was given, that same model: one model is
      loaded and run once, and a warning says the number is not comparable with published CMMD; else
      the paper's model.
    """
    clip_given = clip_model is not None or clip_pretrained is not None
    clip_spec = ClipModelSpec(clip_model or CLIP_SCORE_MODEL.name, clip_pretrained or CLIP_SCORE_MODEL.pretrained)
    prompt = clip_spec if any(m in PROMPT_METRICS for m in metrics) else None
    if "cmmd" not in metrics:
        return ClipChoice(prompt, None)
    if cmmd_model is not None or cmmd_pretrained is not None:
        return ClipChoice(
            prompt, ClipModelSpec(cmmd_model or CMMD_MODEL.name, cmmd_pretrained or CMMD_MODEL.pretrained)
        )
    if clip_given:
        warning = (
            f"CMMD uses the --clip-* model ({clip_spec.name}, {clip_spec.pretrained}), not the paper's "
            f"{CMMD_MODEL.name} + {CMMD_MODEL.pretrained}: compare it only with CMMD made the same way "
            "(pass --cmmd-model/--cmmd-pretrained to choose)"
        )
        return ClipChoice(prompt, clip_spec, (warning,))
    return ClipChoice(prompt, CMMD_MODEL)


@dataclass
class ClipModels:
    """The loaded embedders of a ClipChoice (the same object twice when both specs are equal)."""

    prompt: ClipEmbedder | None
    cmmd: ClipEmbedder | None
    warnings: tuple[str, ...] = ()

    @property
    def extractors(self) -> list[ClipEmbedder]:
        """Distinct embedders, for the one extract_folder pass."""
        unique = {id(e): e for e in (self.prompt, self.cmmd) if e is not None}
        return list(unique.values())


def load_clip_models(choice: ClipChoice, device: torch.device, batch_size: int) -> ClipModels:
    """Build each distinct model of `choice` once."""
    loaded: dict[ClipModelSpec, ClipEmbedder] = {}
    for spec in (choice.prompt, choice.cmmd):
        if spec is not None and spec not in loaded:
            loaded[spec] = ClipEmbedder.load(spec.name, spec.pretrained, device=device, batch_size=batch_size)
    return ClipModels(
        loaded[choice.prompt] if choice.prompt else None,
        loaded[choice.cmmd] if choice.cmmd else None,
        choice.warnings,
    )


def cmmd_rebuild_hint(spec: ClipModelSpec, source: str) -> str:
    """How to make a reference file that holds the CLIP embeddings CMMD needs."""
    return (
        f"rebuild it with `sdeval reference build REFERENCE_IMAGES -o {source} --cmmd "
        f"--cmmd-model {spec.name} --cmmd-pretrained {spec.pretrained}`, or pass the reference folder"
    )


# -- prompts -----------------------------------------------------------------------------------------------


def read_manifest(path: str | None, images_root: str) -> ManifestResult | None:
    """The --prompts manifest, read before any model runs so an unusable file fails fast (SdevalError)."""
    return load_manifest(path, images_root) if path else None


@dataclass
class ImagePrompts:
    """The prompt record of each scored image, aligned with FolderFeatures.paths (None: no prompt found)."""

    records: list[PromptRecord | None]
    missing: list[dict[str, str]]  # {"path", "reason"} for each image without a prompt
    warnings: list[str]
    manifest: str | None

    @property
    def with_prompt(self) -> list[int]:
        return [i for i, record in enumerate(self.records) if record is not None]

    def summary(self) -> dict[str, Any]:
        """The results document's `prompts` section."""
        counts = Counter(record.source for record in self.records if record is not None)
        return {
            "manifest": self.manifest,
            "n_with_prompt": len(self.with_prompt),
            "n_distinct": len({record.prompt for record in self.records if record is not None}),
            "source_counts": dict(sorted(counts.items())),
            "missing": self.missing,
            "warnings": self.warnings,
        }


def find_image_prompts(features: FolderFeatures, manifest: ManifestResult | None) -> ImagePrompts:
    """Look up the prompt of every scored image: manifest, then metadata in the image, then a caption."""
    root = Path(features.root)
    paths = [root / rel for rel in features.paths]
    search = find_prompts(paths, root, manifest)
    relative = {str(path): rel for path, rel in zip(paths, features.paths, strict=True)}
    return ImagePrompts(
        records=[search.records.get(path) for path in paths],
        missing=[{"path": relative[str(s.path)], "reason": s.reason} for s in search.skipped],
        warnings=list(search.warnings),
        manifest=str(manifest.path) if manifest is not None else None,
    )


def embed_prompts(embedder: ClipEmbedder, prompts: list[str], cache_dir: str | None) -> tuple[np.ndarray, int]:
    """Text embeddings of distinct `prompts` (rows in order) and how many were computed, not cached.

    Cached by (sha256 of the prompt's UTF-8 text, the embedder's text cache key), like image features.
    """
    keys = [hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).hexdigest() for prompt in prompts]
    cache = FeatureCache(cache_dir) if cache_dir else None
    try:
        found = cache.get_many(keys, embedder.text_cache_key) if cache else {}
        todo = [i for i, key in enumerate(keys) if key not in found]
        rows: dict[str, np.ndarray] = {key: arrays[TEXT_FEATURE_NAME] for key, arrays in found.items()}
        if todo:
            computed = embedder.embed_texts([prompts[i] for i in todo])
            new = [(keys[i], {TEXT_FEATURE_NAME: row}) for i, row in zip(todo, computed, strict=True)]
            rows.update((key, arrays[TEXT_FEATURE_NAME]) for key, arrays in new)
            if cache is not None:
                cache.put_many(new, embedder.text_cache_key)
    finally:
        if cache is not None:
            cache.close()
    if not prompts:
        return np.zeros((0, embedder.embed_dim), dtype=np.float32), 0
    return np.stack([rows[key] for key in keys]), len(todo)


# -- metrics -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PromptTable:
    rows: list[int]  # scored images that have a prompt
    images: np.ndarray  # their CLIP image embeddings [len(rows), D]
    texts: np.ndarray  # one embedding per distinct prompt [P, D]
    index: np.ndarray  # row of texts for each of `rows`
    distinct: list[str]  # the distinct prompts, in first-seen order
    truncated: list[bool] | None  # per distinct prompt: cut to the tokenizer's context (None: unknown)


class TextMetrics:
    """Computes the text-image metrics of one scored folder and remembers their per-image detail."""

    def __init__(
        self,
        features: FolderFeatures,
        models: ClipModels,
        prompts: ImagePrompts | None,
        reference: Reference | None,
        *,
        seed: int,
        rprecision_r: int | None,
        cache_dir: str | None,
    ) -> None:
        self.features = features
        self.models = models
        self.prompts = prompts
        self.reference = reference
        self.seed = seed
        self.rprecision_r = rprecision_r
        self.cache_dir = cache_dir
        self.n_text_computed = 0
        self._table: _PromptTable | None = None
        self._clip: ClipScoreResult | None = None
        self._rprecision: RPrecisionResult | None = None
        self._diversity: DiversityResult | None = None

    def compute(self, name: str) -> dict[str, Any]:
        """{result key: entry} for one metric; raises SdevalError when it cannot be computed."""
        if name == "cmmd":
            return {"cmmd": self._cmmd()}
        if name == "clip":
            return {"clip": self._clip_score()}
        if name == "rprecision":
            return {"rprecision": self._r_precision()}
        if name == "diversity":
            return {"diversity": self._diversity_entry()}
        raise SdevalError(f"unknown metric {name!r}")

    # Each prompt metric is computed on the images that have a prompt; the others are listed.

    def _images_skipped(self) -> list[dict[str, str]]:
        return self.prompts.missing if self.prompts is not None else []

    def _prompted(self) -> _PromptTable:
        """The images that have a prompt, their embeddings, and each distinct prompt embedded once."""
        if self._table is None:
            assert self.prompts is not None and self.models.prompt is not None
            rows = self.prompts.with_prompt
            if not rows:
                raise NotEnoughDataError(
                    "no scored image has a prompt (pass --prompts MANIFEST, or keep prompts in the images' "
                    "metadata or in NAME.txt captions; see `prompts.missing`)"
                )
            texts = [record.prompt for record in self.prompts.records if record is not None]
            distinct = list(dict.fromkeys(texts))
            position = {text: j for j, text in enumerate(distinct)}
            table, self.n_text_computed = embed_prompts(self.models.prompt, distinct, self.cache_dir)
            truncated = self.models.prompt.truncated(distinct)
            if truncated and any(truncated):
                context = getattr(self.models.prompt.tokenizer, "context_length", "?")
                self.prompts.warnings.append(
                    f"{sum(truncated)} of {len(distinct)} distinct prompts are longer than the CLIP text context "
                    f"({context} tokens) and were truncated: prompt metrics see only their beginning "
                    "(`prompt_truncated` in --per-image rows)"
                )
            self._table = _PromptTable(
                rows=rows,
                images=self.features.features[self.models.prompt.cache_key][FEATURE_NAME][rows],
                texts=table,
                index=np.array([position[text] for text in texts], dtype=np.int64),
                distinct=distinct,
                truncated=truncated,
            )
        return self._table

    def _n_truncated(self, table: _PromptTable) -> int | None:
        """How many distinct prompts the tokenizer truncated (None when it cannot tell)."""
        return sum(table.truncated) if table.truncated is not None else None

    def _clip_score(self) -> dict[str, Any]:
        t = self._prompted()
        self._clip = clip_score(t.images, t.texts[t.index], [self.features.paths[i] for i in t.rows])
        return {
            "value": self._clip.mean,
            "n": self._clip.n,
            "torchmetrics_value": self._clip.torchmetrics_value,
            "n_prompts_truncated": self._n_truncated(t),
            "images_skipped": self._images_skipped(),
        }

    def _r_precision(self) -> dict[str, Any]:
        t = self._prompted()
        p = len(t.distinct)
        if p < 2:
            raise NotEnoughDataError(f"CLIP R-precision needs at least 2 distinct prompts, got {p}")
        r = self.rprecision_r if self.rprecision_r is not None else min(DEFAULT_MAX_R, p)
        if not 2 <= r <= p:
            raise NotEnoughDataError(f"--rprecision-r {r} is more than the {p} distinct prompts")
        self._rprecision = clip_r_precision(t.images, t.texts, t.index, r=r, seed=self.seed)
        return {
            "value": self._rprecision.value,
            "r": r,
            "chance": self._rprecision.chance,
            "n": self._rprecision.n,
            "n_prompts": p,
            "n_prompts_truncated": self._n_truncated(t),
            "images_skipped": self._images_skipped(),
        }

    def _diversity_entry(self) -> dict[str, Any]:
        t = self._prompted()
        self._diversity = prompt_diversity(t.images, [int(j) for j in t.index])
        return {
            "value": self._diversity.overall,
            "n_prompts": self._diversity.n_prompts,
            "n_prompts_skipped": len(self._diversity.skipped),
            "n": len(t.rows),
            "images_skipped": self._images_skipped(),
        }

    def _cmmd(self) -> dict[str, Any]:
        assert self.models.cmmd is not None and self.reference is not None
        key = self.models.cmmd.cache_key
        mine = self.features.features[key][FEATURE_NAME]
        theirs = self.reference.features[key][FEATURE_NAME]
        return {"value": cmmd(mine, theirs, estimator=CMMD_ESTIMATOR), "n": len(mine), "n_reference": len(theirs)}

    # -- detail and protocol -------------------------------------------------------------------------------

    def per_image(self) -> list[dict[str, Any]]:
        """Prompt fields and per-image values, one dict per scored image (in FolderFeatures order)."""
        out: list[dict[str, Any]] = []
        records = self.prompts.records if self.prompts is not None else [None] * self.features.n
        for record in records:
            row: dict[str, Any] = {}
            if self.prompts is not None:
                row.update(
                    prompt=record.prompt if record else None,
                    prompt_id=record.id if record else None,
                    seed=record.seed if record else None,
                    prompt_source=record.source if record else None,
                )
            out.append(row)
        if self._table is not None:
            truncated = self._table.truncated
            for j, i in enumerate(self._table.rows):
                if truncated is not None:
                    out[i]["prompt_truncated"] = truncated[int(self._table.index[j])]
                if self._clip is not None:
                    out[i]["clip_score"] = self._clip.rows[j].score
                    out[i]["clip_cosine"] = self._clip.rows[j].cosine
                if self._rprecision is not None:
                    out[i]["rprecision_hit"] = bool(self._rprecision.hits[j])
        return out

    def per_prompt(self) -> list[dict[str, Any]] | None:
        """Diversity of each prompt (None when diversity was not computed)."""
        if self._diversity is None or self._table is None:
            return None
        distinct = self._table.distinct
        rows = [
            {"prompt": distinct[item.prompt], "n_images": item.n_images, "diversity": item.mean_distance}
            for item in self._diversity.per_prompt
        ]
        rows += [
            {"prompt": distinct[item.prompt], "n_images": 1, "diversity": None, "skipped": item.reason}
            for item in self._diversity.skipped
        ]
        return rows

    def protocol(self, metrics: tuple[str, ...]) -> dict[str, Any]:
        """The protocol entries of the text-image metrics that were asked for."""
        protocol: dict[str, Any] = {}
        if self.models.prompt is not None:
            protocol["clip"] = self.models.prompt.protocol()
            protocol["prompts"] = {
                "manifest": self.prompts.manifest if self.prompts else None,
                "sources": "manifest, then sdeval/A1111/ComfyUI metadata in the image, then NAME.txt caption",
                "text_truncation": "tokenizer context length (77 tokens for CLIP)",
            }
        if "rprecision" in metrics:
            protocol["rprecision"] = {
                "r": self.rprecision_r if self.rprecision_r is not None else f"min({DEFAULT_MAX_R}, distinct prompts)",
                "seed": self.seed,
                "ties": "miss",
            }
        if "diversity" in metrics:
            protocol["diversity"] = {"distance": "1 - cosine", "group_by": "prompt text", "mean": "over prompts"}
        if self.models.cmmd is not None:
            protocol["cmmd"] = {
                "clip": self.models.cmmd.protocol(),
                "sigma": SIGMA,
                "scale": SCALE,
                "estimator": CMMD_ESTIMATOR,
            }
        return protocol
