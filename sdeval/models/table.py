"""Which models each metric, judge and preference scorer needs, and which options choose them: said once.

A metric needs the models of its inputs (`Need`s: Inception for pool features and logits, the --clip-* CLIP model
for image and prompt embeddings, ...; each feature input with a model file, sdeval.features.inputs, is a slot of its
own name); a preference metric its own scorer's; adherence and robustness the models of the --judge they run.
`sdeval models` and the pre-generation check of `sdeval bench` read these tables; the metric registry can take them
over as a field of each registration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from sdeval.features import inputs as feature_inputs
from sdeval.features.clip_input import CLIP, CMMD
from sdeval.features.clip_specs import CLIP_SCORE_MODEL, CMMD_MODEL
from sdeval.features.inception_weights import STANDARD_WEIGHTS_NAMES
from sdeval.judges.detector import DEFAULT_DETECTOR
from sdeval.judges.vqa import DEFAULT_VQA_MODEL
from sdeval.metrics import registry
from sdeval.metrics.registry import MetricSpec, Need
from sdeval.preference import info as scorers


@dataclass(frozen=True)
class ModelSlot:
    """One model a run may need: the options that choose it (ScoreOptions fields, the last one takes a local path)
    and what it is when none is given (read when shown: a feature input's may come from a plugin)."""

    key: str
    label: str
    options: tuple[str, ...]
    describe_default: Callable[[], str]

    @property
    def option(self) -> str:
        """The option that takes a local file or folder instead of a download."""
        return self.options[-1]

    @property
    def default(self) -> str:
        return self.describe_default()


# Each default is said in a light module beside the one that loads it (no torch, open_clip or transformers), so the
# `models` command's help names them all in a fraction of a second.


def _inception() -> str:
    return f"torch-fidelity's standard weights ({STANDARD_WEIGHTS_NAMES[0]})"


def _clip() -> str:
    return f"{CLIP_SCORE_MODEL.name} + {CLIP_SCORE_MODEL.pretrained}"


def _cmmd() -> str:
    return f"{CMMD_MODEL.name} + {CMMD_MODEL.pretrained} (the --clip-* model when only that one is given)"


def _imagereward() -> str:
    return f"{scorers.IMAGEREWARD.default_model}, with {scorers.IMAGEREWARD_TOKENIZER_REPO}'s vocabulary"


def _hps() -> str:
    return f"{scorers.HPS.default_model} from {scorers.HPS_REPO}"


def _pickscore() -> str:
    return f"{scorers.PICKSCORE.default_model}, with {scorers.PICKSCORE_PROCESSOR}'s processor"


def _aesthetic() -> str:
    return scorers.AESTHETIC.default_model


def _detector() -> str:
    return DEFAULT_DETECTOR


def _vqa() -> str:
    return DEFAULT_VQA_MODEL


_MODELS = (
    ModelSlot("inception", "Inception-v3 weights", ("inception_weights",), _inception),
    # The CLIP models' slots are their feature inputs' (features/clip_input.py): a model chosen by two options.
    ModelSlot(CLIP.name, CLIP.label, tuple(option.key for option in CLIP.options), _clip),
    ModelSlot(CMMD.name, CMMD.label, tuple(option.key for option in CMMD.options), _cmmd),
)
_SCORERS_AND_JUDGES = (
    ModelSlot("imagereward", "ImageReward", ("imagereward_model",), _imagereward),
    ModelSlot("hps", "HPS checkpoint", ("hps_model",), _hps),
    ModelSlot("pickscore", "PickScore model", ("pickscore_model",), _pickscore),
    ModelSlot("aesthetic", "LAION aesthetic head", ("aesthetic_model",), _aesthetic),
    ModelSlot("detector", "detector", ("detector_model",), _detector),
    ModelSlot("vqa", "VQA model", ("vqa_model",), _vqa),
)


def _input_slot(declared: feature_inputs.FeatureInput, option: str) -> ModelSlot:
    return ModelSlot(declared.name, declared.label, (option,), declared.option(option).describe_default)


class _Slots(Mapping[str, ModelSlot]):
    """The table, slot key -> slot: the models' slots, then one per feature input with a model file (read when used:
    a test or plugin may have registered one), then the scorers' and judges'."""

    def _table(self) -> dict[str, ModelSlot]:
        inputs = [_input_slot(d, d.model_option) for d in feature_inputs.inputs() if d.model_option is not None]
        return {slot.key: slot for slot in (*_MODELS, *inputs, *_SCORERS_AND_JUDGES)}

    def __getitem__(self, key: str) -> ModelSlot:
        return self._table()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())


SLOTS: Mapping[str, ModelSlot] = _Slots()


def flag(option: str) -> str:
    """An option as the command line names it: `--inception-weights`."""
    return "--" + option.replace("_", "-")


def config_key(option: str) -> str:
    """An option as a bench config names it: `score.inception_weights`."""
    return f"score.{option}"


#: The models behind each input a metric can need (the others need none).
NEED_MODELS: dict[Need, tuple[str, ...]] = {
    Need.INCEPTION_POOL: ("inception",),
    Need.INCEPTION_LOGITS: ("inception",),
    Need.CLIP_IMAGE: ("clip",),
    Need.CLIP_TEXT: ("clip",),
    Need.CMMD_IMAGE: ("cmmd",),
}
#: Need.PREFERENCE: each preference metric's own scorer (the aesthetic head reads the CLIP model's embeddings).
SCORER_MODELS: dict[str, tuple[str, ...]] = {
    "imagereward": ("imagereward",),
    "hps": ("hps",),
    "pickscore": ("pickscore",),
    "aesthetic": ("aesthetic", "clip"),
}
#: Need.JUDGEMENTS: the models of each --judge (the detector names colours with the CLIP model). A judge or scorer
#: from a plugin is not listed: it loads (and names) its own models, so none is checked for it before the run.
JUDGE_MODELS: dict[str, tuple[str, ...]] = {
    "detector": ("detector", "clip"),
    "clip": ("clip",),
    "shapes": (),
    "vqa": ("vqa",),
}


def metric_slots(spec: MetricSpec) -> list[str]:
    """The slot keys metric `spec` needs besides its judge's, in table order."""
    keys = [key for need in sorted(spec.needs, key=list(Need).index) for key in NEED_MODELS.get(need, ())]
    keys += [name for name in spec.inputs if name in SLOTS]  # its feature inputs with a model file
    if Need.PREFERENCE in spec.needs:
        keys += SCORER_MODELS.get(spec.name, ())  # a plugin's scorer finds its own models
    return list(dict.fromkeys(keys))


def run_slots(metrics: Iterable[str], judges: Iterable[str]) -> dict[str, list[str]]:
    """Slot key -> who needs it (metrics, and `METRIC (judge NAME)` for a judge's models), in table order, for a run
    of `metrics` judged by `judges`."""
    judges = tuple(judges)
    used: dict[str, list[str]] = {}
    for spec in registry.check_names(tuple(metrics)):
        needs = [(key, spec.name) for key in metric_slots(spec)]
        if Need.JUDGEMENTS in spec.needs:
            needs += [(key, f"{spec.name} (judge {judge})") for judge in judges for key in JUDGE_MODELS.get(judge, ())]
        for key, user in needs:
            if user not in used.setdefault(key, []):
                used[key].append(user)
    return {key: used[key] for key in SLOTS if key in used}
