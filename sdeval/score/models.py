"""The models a scoring run needs, and nothing else, and each distinct prompt's text embedding."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from sdeval import preference as scorers
from sdeval.features import inputs as feature_inputs
from sdeval.features.clip import ClipEmbedder
from sdeval.features.clip_input import CLIP_NAME as CLIP
from sdeval.features.clip_input import choose_clip_models
from sdeval.features.inception import InceptionExtractor
from sdeval.features.inception_input import NAME as INCEPTION
from sdeval.features.inputs import Chosen
from sdeval.features.text_embeddings import embed_prompts
from sdeval.metrics.registry import MetricSpec, Need, inputs_of
from sdeval.options.score import ScoreOptions
from sdeval.prompts.lookup import ImagePrompts
from sdeval.reference.build import ReferenceNeed
from sdeval.score.preference import is_embedding


@dataclass
class RunModels:
    """The extractor of each feature input the metrics read (Inception only for metrics that read it: its pool
    features or logits, or sFID's spatial rows, which its pass hosts; CLIP only for those that read embeddings, one
    model when the prompt metrics and CMMD choose the same one), and the metrics' preference scorers."""

    warnings: list[str]
    #: Each feature input's extractor by input name (sdeval.features.inputs; a hosted input's is its host's, inputs
    #: that chose one model share it), in registration order, and those a reference must feed.
    inputs: dict[str, Any] = field(default_factory=dict)
    reference_inputs: tuple[str, ...] = ()
    #: What the option values chose for each input with a loader (the values a reference's rebuild hint names).
    chosen: dict[str, Chosen] = field(default_factory=dict)
    preference: dict[str, Any] = field(default_factory=dict)  # metric name -> sdeval.preference scorer

    @property
    def inception(self) -> InceptionExtractor | None:
        """The Inception extractor, where a metric reads it (or sFID's rows ride its pass)."""
        return self.inputs.get(INCEPTION)

    @property
    def prompt_model(self) -> ClipEmbedder | None:
        """The --clip-* model, where a metric reads it: it embeds the prompts and serves the judges and faithfulness."""
        return self.inputs.get(CLIP)

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
        """The extractors of the feature `inputs` and of those serving `needs` (those in `reference_inputs` also
        feed the reference), and the preference scorers of the metrics named in `preference`."""
        wanted = (*inputs, *feature_inputs.serving({need.value for need in needs}))
        given = options.input_values()
        chosen = feature_inputs.choices(wanted, given)
        warnings = list(dict.fromkeys(w for found in chosen.values() for w in found.warnings))
        models = cls(warnings, chosen=chosen)
        models.inputs = feature_inputs.build_all(wanted, given, device, options.features, chosen)
        models.reference_inputs = tuple(name for name in reference_inputs if name in models.inputs)
        for name in preference:
            models.preference[name] = _load_scorer(name, options, device, models.prompt_model)
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
        """The run's feature models by role, each feature input under its name (score/part.py), in registration
        order: the order a part's and a state file's arrays have always had (Inception, the CLIP models, the
        others)."""
        return {role: model for role, model in self.inputs.items() if model is not None}

    def reference_needs(self, source: str) -> list[ReferenceNeed]:
        """Each feature input a reference must feed, with its extractor and the hint shown when a reference file
        lacks its rows, in registration order."""
        command = f"sdeval reference build REFERENCE_IMAGES -o {source}"
        out = []
        for name in self.reference_inputs:
            declared = feature_inputs.get(name)
            if declared.always_stored:
                out.append(ReferenceNeed(name, self.inputs[name], "build it with `sdeval reference build`"))
                continue
            found = self.chosen.get(name)
            values = found.values if found is not None else {}  # a hosted input has no options of its own
            given = "".join(f" {o.flag} {values[o.key]}" for o in declared.options if values.get(o.key) is not None)
            hint = f"rebuild it with `{command} {declared.flag}{given}`, or pass the reference folder"
            out.append(ReferenceNeed(name, self.inputs[name], hint))
        return out


def _load_scorer(name: str, options: ScoreOptions, device: torch.device, clip: ClipEmbedder | None) -> Any:
    """A preference scorer by its metric name, from the run's options (the model, --allow-pickle)."""
    extra: dict[str, Any] = {}
    if name == "aesthetic":
        # The head reads CLIP ViT-L/14 image embeddings: the --clip-* model's when one was given (its size is
        # checked against the head), so CLIP runs once for the CLIP metrics and the aesthetic score.
        if clip is not None:
            extra["embedder"] = clip
        elif options.clip_model is not None or options.clip_pretrained is not None:
            # The same defaults as the CLIP metrics' (features/clip_input.py): a name alone means OpenAI's weights.
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
        embedder = models.prompt_model
        if prompts is None or embedder is None:
            return None
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
