"""The models a scoring run needs, and nothing else, and each distinct prompt's text embedding."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from sdeval import preference as scorers
from sdeval.features import inputs as feature_inputs
from sdeval.features.clip import ClipModelSpec
from sdeval.features.clip_models import ClipModels, choose_clip_models, cmmd_rebuild_hint, load_clip_models
from sdeval.features.inception import InceptionExtractor
from sdeval.features.inception_input import NAME as INCEPTION
from sdeval.features.text_embeddings import embed_prompts
from sdeval.metrics.registry import MetricSpec, Need, inputs_of
from sdeval.options.score import ScoreOptions
from sdeval.prompts.lookup import ImagePrompts
from sdeval.score.preference import is_embedding


@dataclass
class RunModels:
    """The extractor of each feature input the metrics read (Inception only for metrics that read it: its pool
    features or logits, or sFID's spatial rows, which its pass hosts), CLIP only for those that read embeddings (one
    CLIP model when the prompt metrics and CMMD use the same one), and the metrics' preference scorers."""

    clip: ClipModels | None
    cmmd_spec: ClipModelSpec | None
    warnings: list[str]
    #: Each feature input's extractor by input name (sdeval.features.inputs; a hosted input's is its host's), and
    #: those a reference must feed.
    inputs: dict[str, Any] = field(default_factory=dict)
    reference_inputs: tuple[str, ...] = ()
    preference: dict[str, Any] = field(default_factory=dict)  # metric name -> sdeval.preference scorer

    @property
    def inception(self) -> InceptionExtractor | None:
        """The Inception extractor, where a metric reads it (or sFID's rows ride its pass)."""
        return self.inputs.get(INCEPTION)

    @classmethod
    def build(
        cls,
        needs: set[Need],
        options: ScoreOptions,
        device: torch.device,
        preference: tuple[str, ...] = (),
        inputs: tuple[str, ...] = (),
        reference_inputs: tuple[str, ...] = (),
    ) -> RunModels:
        """The models `needs` call for, the extractors of the feature `inputs` (and of those serving `needs`; those
        in `reference_inputs` also feed the reference), and the preference scorers of the metrics named in
        `preference`."""
        wants_prompt_model = bool({Need.CLIP_IMAGE, Need.CLIP_TEXT} & needs)
        wants_cmmd_model = Need.CMMD_IMAGE in needs
        clip = choice = None
        if wants_prompt_model or wants_cmmd_model:
            choice = choose_clip_models(
                wants_prompt_model, wants_cmmd_model,
                options.clip_model, options.clip_pretrained, options.cmmd_model, options.cmmd_pretrained,
            )  # fmt: skip
            clip = load_clip_models(choice, device, options.features.batch_size)
        models = cls(clip, choice.cmmd if choice else None, list(choice.warnings) if choice else [])
        wanted = (*inputs, *feature_inputs.serving({need.value for need in needs}))
        models.inputs = feature_inputs.build_all(wanted, options.input_values(), device, options.features)
        models.reference_inputs = tuple(name for name in reference_inputs if name in models.inputs)
        for name in preference:
            models.preference[name] = _load_scorer(name, options, device, clip)
        return models

    @classmethod
    def for_metrics(
        cls, specs: list[MetricSpec], needs: set[Need], options: ScoreOptions, device: torch.device
    ) -> RunModels:
        """The models of the metrics `specs` (whose needs are `needs`): their inputs' extractors, their scorers."""
        preference = tuple(spec.name for spec in specs if Need.PREFERENCE in spec.needs)
        stored = tuple(name for name in inputs_of(specs, reference=True) if feature_inputs.get(name).reference)
        return cls.build(needs, options, device, preference, inputs_of(specs), stored)

    @property
    def extractors(self) -> list:
        """Every model the decode pass feeds (one cache key runs once: a hosted input's extractor is its host's, the
        aesthetic head reads CLIP's features)."""
        out: list[Any] = list(self.roles().values())
        return out + [scorer for scorer in self.preference.values() if is_embedding(scorer)]

    def roles(self) -> dict[str, Any]:
        """The run's feature models by role: each feature input under its name, the CLIP models as `clip` (the
        prompt metrics') and `cmmd` (see score/part.py ROLES). In the order a part's and a state file's arrays have
        always had: the inputs every reference stores (Inception), the CLIP models, the other inputs."""
        first = {name: e for name, e in self.inputs.items() if feature_inputs.get(name).always_stored}
        clip = {"clip": self.clip.prompt, "cmmd": self.clip.cmmd} if self.clip is not None else {}
        found = {**first, **clip, **self.inputs}
        return {role: model for role, model in found.items() if model is not None}

    def reference_needs(self, source: str) -> list[tuple[Any, str]]:
        """(extractor, hint if a reference file lacks its features) for each model a reference must feed: the inputs
        every reference stores, the CMMD model, the other inputs."""
        declared = {name: feature_inputs.get(name) for name in self.reference_inputs}
        out = [(self.inputs[name], "build it with `sdeval reference build`")
               for name, d in declared.items() if d.always_stored]  # fmt: skip
        if self.clip is not None and self.clip.cmmd is not None and self.cmmd_spec is not None:
            out.append((self.clip.cmmd, cmmd_rebuild_hint(self.cmmd_spec, source)))
        command = f"sdeval reference build REFERENCE_IMAGES -o {source}"
        return out + [(self.inputs[name], f"rebuild it with `{command} {d.flag}`")
                      for name, d in declared.items() if not d.always_stored]  # fmt: skip


def _load_scorer(name: str, options: ScoreOptions, device: torch.device, clip: ClipModels | None) -> Any:
    """A preference scorer by its metric name, from the run's options (the model, --allow-pickle)."""
    extra: dict[str, Any] = {}
    if name == "aesthetic":
        # The head reads CLIP ViT-L/14 image embeddings: the --clip-* model's when one was given (its size is
        # checked against the head), so CLIP runs once for the CLIP metrics and the aesthetic score.
        if clip is not None and clip.prompt is not None:
            extra["embedder"] = clip.prompt
        elif options.clip_model is not None or options.clip_pretrained is not None:
            # The same defaults as the CLIP metrics' (features/clip_models.py): a name alone means OpenAI's weights.
            spec = choose_clip_models(True, False, options.clip_model, options.clip_pretrained).prompt
            assert spec is not None  # asked for (wants_prompt_model), so chosen
            extra.update(clip_model=spec.name, clip_pretrained=spec.pretrained)
    model = getattr(options, f"{name}_model", None)
    return scorers.load_scorer(name, model, device=device, allow_pickle=options.allow_pickle,
                               batch_size=options.features.batch_size, **extra)  # fmt: skip


@dataclass
class PromptTexts:
    """Each distinct prompt of the run embedded once (by the --clip-* model), for every cell."""

    position: dict[str, int]
    distinct: list[str]
    embeddings: np.ndarray
    truncated: list[bool] | None
    n_computed: int
    warning: str | None

    @classmethod
    def build(cls, models: RunModels, prompts: ImagePrompts | None, cache_dir: str | None) -> PromptTexts | None:
        """Embed the distinct prompts of `prompts` (in the order they first come) with the --clip-* model."""
        if prompts is None or models.clip is None or models.clip.prompt is None:
            return None
        embedder = models.clip.prompt
        distinct = list(dict.fromkeys(record.prompt for record in prompts.records if record is not None))
        embeddings, computed = embed_prompts(embedder, distinct, cache_dir)
        truncated = embedder.truncated(distinct) if distinct else None
        context = getattr(embedder.tokenizer, "context_length", "?")
        return cls.describe(distinct, embeddings, truncated, computed, context)

    @classmethod
    def describe(
        cls,
        distinct: list[str],
        embeddings: np.ndarray,
        truncated: list[bool] | None,
        n_computed: int,
        context: Any = 77,
    ) -> PromptTexts:
        """The table of embedded prompts, and the warning when some were cut to the text context."""
        warning = None
        if truncated and any(truncated):
            warning = (
                f"{sum(truncated)} of {len(distinct)} distinct prompts are longer than the CLIP text context "
                f"({context} tokens) and were truncated: prompt metrics see only their beginning "
                "(`prompt_truncated` in the per-image rows)"
            )
        position = {text: j for j, text in enumerate(distinct)}
        return cls(position, distinct, embeddings, truncated, n_computed, warning)
