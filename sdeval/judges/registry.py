"""`build_judge(name, **options)`: the one place that turns a judge name (detector, clip, shapes) into a judge."""

from __future__ import annotations

from typing import Any

from sdeval.errors import SdevalError
from sdeval.judges.base import Judge

#: The judges, by the name `--judge` takes.
JUDGES = ("detector", "clip", "shapes")
#: Options build_judge understands; each judge reads those it needs and ignores the rest (None means "default").
OPTIONS = (
    "detector_model",  # detector: hub id or local folder (default: detector.DEFAULT_DETECTOR)
    "detector_kind",  # detector: owlv2 | grounding-dino, checked against the model (default: read from it)
    "thresholds",  # detector: rules.Thresholds (default: the detector family's)
    "clip",  # clip: the ClipEmbedder to use; detector: its colour model (default: loaded from clip_model)
    "clip_model",  # open_clip name when `clip` is not given (default ViT-L-14)
    "clip_pretrained",  # pretrained tag or local weights file when `clip` is not given (default openai)
    "device",  # cpu, cuda[:N], mps or auto
)


def build_judge(name: str, **options: Any) -> Judge:
    """A ready judge. Models load here (transformers and open_clip are imported only when needed)."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(f"build_judge: unknown option(s) {', '.join(unknown)} (known: {', '.join(OPTIONS)})")
    if name not in JUDGES:
        raise SdevalError(f"--judge must be one of {', '.join(JUDGES)}, got {name!r}")
    device = _device(options.get("device"))
    if name == "shapes":
        from sdeval.judges.shapes import ShapesJudge  # the calibration world's exact detector: no models

        return ShapesJudge()
    embedder = options.get("clip")
    if name == "clip":
        if embedder is None:
            embedder = _load_clip(options, device)
        from sdeval.judges.clip_contrast import ClipContrastJudge

        return ClipContrastJudge(embedder)
    from sdeval.judges.detector import DEFAULT_COLOR_MODEL, DEFAULT_DETECTOR, DetectorJudge

    return DetectorJudge.load(
        options.get("detector_model") or DEFAULT_DETECTOR,
        kind=options.get("detector_kind"),
        thresholds=options.get("thresholds"),
        color_model=options.get("clip_model") or DEFAULT_COLOR_MODEL[0],
        color_pretrained=options.get("clip_pretrained") or DEFAULT_COLOR_MODEL[1],
        color_embedder=embedder,
        device=device,
    )


def _device(requested: str | None) -> str:
    if requested is None:
        return "cpu"
    from sdeval.devices import resolve_device

    return resolve_device(requested)


def _load_clip(options: dict[str, Any], device: str) -> Any:
    from sdeval.features.clip import CLIP_SCORE_MODEL, ClipEmbedder

    return ClipEmbedder.load(
        options.get("clip_model") or CLIP_SCORE_MODEL.name,
        options.get("clip_pretrained") or CLIP_SCORE_MODEL.pretrained,
        device=device,
    )
