"""The two CLIP models, declared as feature inputs (sdeval.features.inputs) apart from the embedder (features/clip.py),
so that reading the declarations (the commands' `--help`, `sdeval models`, config checks) loads neither torch nor
open_clip: the embedder's module is imported when a run builds it.

- `clip` (`--clip-model`, `--clip-pretrained`): CLIP score, R-precision and diversity read its image embeddings, and
  the prompts' text embeddings by the same model; the judges, faithfulness and the aesthetic head use it too. No
  reference stores it. Protocol block `clip`, with a `prompts` block beside it.
- `cmmd` (`--cmmd-model`, `--cmmd-pretrained`, `sdeval reference build --cmmd`): CMMD's image embeddings, which
  references store. Its default follows the `--clip-*` model when only that one is given (with a warning: such a
  CMMD compares only with CMMD made the same way), else the paper's model. Recorded inside CMMD's own block,
  `protocol["cmmd"]["clip"]`.

When both choose the same model (`Chosen.model`, a ClipModelSpec), one model is loaded and its image embeddings
computed once. Their options are ScoreOptions fields (`InputOption.score_field`): the judges and scorers read them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sdeval.features.clip_specs import CLIP_SCORE_MODEL, CMMD_MODEL, ClipModelSpec
from sdeval.features.inputs import Chosen, FeatureInput, InputOption, Output

#: The feature the embedder returns: L2-normalised float32 [N, D] image embeddings (features/clip.py FEATURE_NAME).
FEATURE = "clip_image"
CLIP_NAME = "clip"
CMMD_NAME = "cmmd"
#: How each image's prompt is found, recorded beside the CLIP model (score/prompts.py says the order).
PROMPT_SOURCES = "manifest, then sdeval/A1111/ComfyUI metadata in the image, then NAME.txt caption"


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
    """The CLIP models of a run: `prompt` for CLIP score, R-precision and diversity, `cmmd` for CMMD (None where
    not asked for), and the warnings about the choice."""

    prompt: ClipModelSpec | None
    cmmd: ClipModelSpec | None
    warnings: tuple[str, ...] = ()


def choose_clip(given: Mapping[str, Any]) -> Chosen:
    """The prompt metrics' model from the option values `given`."""
    spec = choose_clip_models(True, False, given.get("clip_model"), given.get("clip_pretrained")).prompt
    assert spec is not None  # asked for
    return Chosen({"clip_model": spec.name, "clip_pretrained": spec.pretrained}, model=spec)


def choose_cmmd(given: Mapping[str, Any]) -> Chosen:
    """CMMD's model from the option values `given`: its own options', else the --clip-* model's, else the paper's."""
    choice = choose_clip_models(False, True, given.get("clip_model"), given.get("clip_pretrained"),
                                given.get("cmmd_model"), given.get("cmmd_pretrained"))  # fmt: skip
    assert choice.cmmd is not None  # asked for
    return Chosen({"cmmd_model": choice.cmmd.name, "cmmd_pretrained": choice.cmmd.pretrained}, choice.warnings,
                  choice.cmmd)  # fmt: skip


def prompts_block(options: Any) -> dict[str, Any]:
    """Where the prompts the CLIP text model embeds came from (ScoreOptions `options`)."""
    return {
        "prompts": {
            "manifest": options.prompts,
            "sources": PROMPT_SOURCES,
            "text_truncation": "tokenizer context length (77 tokens for CLIP)",
        }
    }


#: `--clip-model`, `--clip-pretrained`; state array `clip_image`; protocol block `clip` (and `prompts`).
CLIP = FeatureInput(
    name=CLIP_NAME,
    label="CLIP model",
    feature=FEATURE,
    load="sdeval.features.clip:build_clip",  # torch and open_clip load when a run builds the embedder
    options=(
        InputOption(
            "clip_model",
            "open_clip model for clip, rprecision, diversity",
            default_label=CLIP_SCORE_MODEL.name,
            metavar="NAME",
            score_field=True,
        ),
        InputOption(
            "clip_pretrained",
            "its weights: an open_clip tag or a local file (works offline)",
            default_label=str(CLIP_SCORE_MODEL.pretrained),
            metavar="TAG|PATH",
            path=True,
            score_field=True,
        ),
    ),
    reference=False,  # no metric compares its embeddings with a reference's
    outputs=(Output(FEATURE, "clip_image", reference=False, need="clip_image"),),
    feature_options=("batch_size",),
    choose=choose_clip,
    also_serves=("clip_text",),  # the prompts' text embeddings, by the same model
    protocol_blocks=prompts_block,
)

#: `--cmmd-model`, `--cmmd-pretrained`, `reference build --cmmd`; state arrays `cmmd_image` and
#: `reference_cmmd_image`; recorded in CMMD's block as `protocol["cmmd"]["clip"]`.
CMMD = FeatureInput(
    name=CMMD_NAME,
    label="CMMD's CLIP model",
    feature=FEATURE,
    load="sdeval.features.clip:build_cmmd",
    options=(
        InputOption(
            "cmmd_model",
            "open_clip model for cmmd",
            default_label=f"the --clip-* model if one was given, else the paper's {CMMD_MODEL.name}",
            metavar="NAME",
            reference_help="open_clip model for those embeddings",
            reference_default=CMMD_MODEL.name,
            score_field=True,
        ),
        InputOption(
            "cmmd_pretrained",
            "its weights, tag or local file",
            default_label=str(CMMD_MODEL.pretrained),
            metavar="TAG|PATH",
            path=True,
            score_field=True,
        ),
    ),
    outputs=(Output(FEATURE, "cmmd_image", need="cmmd_image"),),
    feature_options=("batch_size",),
    choose=choose_cmmd,
    protocol_at=("cmmd", "clip"),
    stores="the CLIP image embeddings CMMD needs",
)
