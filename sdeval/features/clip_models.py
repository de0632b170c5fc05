"""Which CLIP models a scoring run needs: `--clip-*` for the prompt metrics, `--cmmd-*` for CMMD, loaded once each."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sdeval.features.clip import CLIP_SCORE_MODEL, CMMD_MODEL, ClipEmbedder, ClipModelSpec


def choose_clip_models(
    wants_prompt_model: bool,
    wants_cmmd_model: bool,
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
    prompt = clip_spec if wants_prompt_model else None
    if not wants_cmmd_model:
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


@dataclass(frozen=True)
class ClipChoice:
    """The CLIP models of a run: `prompt` for CLIP score, R-precision and diversity, `cmmd` for CMMD.

    None where no requested metric needs that model. When both are the same spec, one model is loaded
    and its image embeddings are computed once.
    """

    prompt: ClipModelSpec | None
    cmmd: ClipModelSpec | None
    warnings: tuple[str, ...] = ()


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
