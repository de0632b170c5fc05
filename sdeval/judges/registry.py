"""`build_judge(name, **options)`: the one place that turns a judge name (detector, clip, shapes, vqa, or an
`sdeval.judges` entry point's) into a judge."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sdeval.core.devices import resolve_device
from sdeval.core.errors import SdevalError
from sdeval.core.registry import Registry
from sdeval.core.suggest import did_you_mean
from sdeval.judges.base import Judge

#: Options build_judge understands; each judge reads those it needs and ignores the rest (None means "default").
OPTIONS = (
    "detector_model",  # detector: hub id or local folder (default: detector.DEFAULT_DETECTOR)
    "detector_kind",  # detector: owlv2 | grounding-dino, checked against the model (default: read from it)
    "thresholds",  # detector: rules.Thresholds (default: the detector family's)
    "clip",  # clip: the ClipEmbedder to use; detector: its colour model (default: loaded from clip_model)
    "clip_model",  # open_clip name when `clip` is not given (default ViT-L-14)
    "clip_pretrained",  # pretrained tag or local weights file when `clip` is not given (default openai)
    "vqa_model",  # vqa: hub id or local folder (default: vqa.DEFAULT_VQA_MODEL)
    "vqa_template",  # vqa: prompt of an image-text-to-text model, with {question} (default: its chat template)
    "vqa_threshold",  # vqa: a yes/no question is answered yes when P(yes) >= this (default 0.5)
    "vqa_dtype",  # vqa: float32, bfloat16 or float16 (default float32)
    "questions",  # vqa: a TIFA or DSG question file (path) or a loaded questions.QuestionSet (default: the spec's)
    "device",  # cpu, cuda[:N], mps or auto
)


#: How a judge is built: from build_judge's options (OPTIONS; a builder reads those it needs) and the device.
JudgeBuilder = Callable[[dict[str, Any], str], Judge]


def _check(name: str, builder: JudgeBuilder) -> None:
    if not callable(builder):
        raise SdevalError(f"judge {name!r}: {builder!r} is no judge builder (options, device) -> Judge")


#: Each judge's builder (its module's `build`, imported on first use; it imports its models' libraries only when
#: called), by the name `--judge` takes, then the `sdeval.judges` entry points of installed packages.
BUILDERS: Registry[JudgeBuilder] = Registry("judge", group="sdeval.judges", check=_check)
BUILDERS.register("detector", "sdeval.judges.detector:build")
BUILDERS.register("clip", "sdeval.judges.clip_contrast:build")
BUILDERS.register("shapes", "sdeval.calibration.judge:build")  # the calibration world's exact detector: no models
BUILDERS.register("vqa", "sdeval.judges.vqa:build")
#: The judges `--judge` offers: those known when the command line is built.
JUDGES = tuple(BUILDERS.names())


def build_judge(name: str, **options: Any) -> Judge:
    """A ready judge. Models load here (transformers and open_clip are imported only when needed)."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(f"build_judge: unknown option(s) {', '.join(unknown)} (known: {', '.join(OPTIONS)})")
    if name not in BUILDERS:
        known = BUILDERS.names()
        raise SdevalError(f"--judge must be one of {', '.join(known)}, got {name!r}{did_you_mean(name, known)}")
    return BUILDERS.get(name)(options, _device(options.get("device")))


def _device(requested: str | None) -> str:
    return "cpu" if requested is None else resolve_device(requested)
