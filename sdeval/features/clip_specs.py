"""Which open_clip model and weights a CLIP embedding comes from, and the defaults of CLIP score and CMMD, without
loading open_clip or torch (features/clip.py loads them; `sdeval models` names the defaults in its help)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClipModelSpec:
    """An open_clip model name and its weights: a pretrained tag, a local file path, or None (random)."""

    name: str
    pretrained: str | None


#: CLIP score: OpenAI ViT-L/14, the model torchmetrics' CLIPScore uses by default.
CLIP_SCORE_MODEL = ClipModelSpec("ViT-L-14", "openai")
#: CMMD: OpenAI ViT-L/14 at 336 px, the model of Jayasumana et al. 2024.
CMMD_MODEL = ClipModelSpec("ViT-L-14-336", "openai")
