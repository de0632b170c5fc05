"""What each built-in preference scorer is, without loading it: name, label, direction, range, whether it reads
the prompt, default model, and the other files it loads (tokenizer, processor, checkpoint repository).

The scorer classes take these from here, and the metric registrations (metrics/builtin/preference.py) and the help
read them here, so `sdeval score --help` names the scorers and `sdeval models --help` their files without importing
torch.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar, Protocol

#: The score direction every preference scorer has: a higher score means humans (or the head) prefer the image.
HIGHER = "higher"


@dataclass(frozen=True)
class ScorerInfo:
    """A scorer's metadata: the values of its ScorerAttributes (below), which say what each field means."""

    name: str
    label: str
    direction: str
    range: tuple[float | None, float | None]
    prompt_relative: bool
    default_model: str

    @classmethod
    def of(cls, scorer: Any) -> ScorerInfo:
        """The metadata of a scorer class (a plugin's, which has no entry here)."""
        return cls(scorer.name, scorer.label, scorer.direction, tuple(scorer.range), scorer.prompt_relative,
                   scorer.default_model)  # fmt: skip


class ScorerAttributes(Protocol):
    """The class attributes of every preference scorer (sdeval.preference.base.PreferenceScorer), ScorerInfo's
    fields."""

    #: The metric key (`imagereward`, `hps`, `pickscore`, `aesthetic`).
    name: ClassVar[str]
    #: How a table names it.
    label: ClassVar[str]
    #: "higher": a higher score is better.
    direction: ClassVar[str]
    #: (min, max) where the score is bounded, else None for that end.
    range: ClassVar[tuple[float | None, float | None]]
    #: Whether the score depends on the image's prompt (False: prompts are ignored).
    prompt_relative: ClassVar[bool]
    #: What `load` uses when no model is given (a hub id, version or URL).
    default_model: ClassVar[str]


class DescribedScorer(ScorerAttributes):
    """Base of a built-in scorer class: `class HpsScorer(DescribedScorer, info=HPS)` sets its ScorerAttributes from
    its ScorerInfo, so each is said once, here."""

    def __init_subclass__(cls, info: ScorerInfo, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for field in fields(info):
            setattr(cls, field.name, getattr(info, field.name))


IMAGEREWARD = ScorerInfo("imagereward", "ImageReward", HIGHER, (None, None), True, "THUDM/ImageReward")
HPS = ScorerInfo("hps", "HPS v2", HIGHER, (-1.0, 1.0), True, "v2.1")
PICKSCORE = ScorerInfo("pickscore", "PickScore", HIGHER, (None, None), True, "yuvalkirstain/PickScore_v1")
AESTHETIC = ScorerInfo(
    "aesthetic",
    "LAION aesthetic v2",
    HIGHER,
    (None, None),
    False,
    "https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/main/sac%2Blogos%2Bava1-l14-linearMSE.pth",
)

# The other files the built-ins load beside their default model (`sdeval models` names them without loading them).
#: ImageReward's tokenizer: its BLIP text encoder reads BERT's vocabulary.
IMAGEREWARD_TOKENIZER_REPO = "bert-base-uncased"
#: The hub repository of HPS's checkpoints, one per version (hps.HPS_FILES).
HPS_REPO = "xswu/HPSv2"
#: PickScore's processor: the tokenizer and image transform PickScore was trained with.
PICKSCORE_PROCESSOR = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"

#: The built-ins by name, in registration order, with the class each is (imported on first use).
BUILTIN: dict[str, tuple[ScorerInfo, str]] = {
    IMAGEREWARD.name: (IMAGEREWARD, "sdeval.preference.imagereward:ImageRewardScorer"),
    HPS.name: (HPS, "sdeval.preference.hps:HpsScorer"),
    PICKSCORE.name: (PICKSCORE, "sdeval.preference.pickscore:PickScoreScorer"),
    AESTHETIC.name: (AESTHETIC, "sdeval.preference.aesthetic:AestheticScorer"),
}
