"""The detector judge: an open-vocabulary detector (transformers) finds the spec's objects, open_clip names each
object's colour, GenEval's rules (`judges/rules.py`) turn them into verdicts.

GenEval itself uses a closed-vocabulary Mask2Former (mmdetection) trained on COCO; here the detector is OWLv2 or
Grounding DINO, queried with the spec's class names, so GenEval's score thresholds do not carry over: each family
has its own defaults below, uncalibrated until measured against human labels with real weights.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np

from sdeval.core.errors import SdevalError, first_line
from sdeval.core.hub import load_pretrained
from sdeval.judges.base import COLORS, Detection, Judgement
from sdeval.judges.rules import Box, Thresholds, judge_detections, kept_detections
from sdeval.suites.spec import Spec

#: The detector `sdeval score --judge detector` uses when --detector-model is not given.
DEFAULT_DETECTOR = "google/owlv2-base-patch16-ensemble"
#: Detector families by the `model_type` of their transformers config.
FAMILIES = {"owlv2": "owlv2", "grounding-dino": "grounding-dino"}
#: Per family: UNCALIBRATED defaults (not measured against labelled images with real weights). OWLv2's score is
#: the value the transformers documentation's example keeps (0.1); Grounding DINO's is the box threshold of its
#: reference demo (0.35). The counting bars are higher, as GenEval's (0.9 against 0.3), since one false positive
#: breaks a count; their values are guesses. Both suppress duplicates at IoU 0.5: unlike GenEval's Mask2Former,
#: these detectors return several boxes for one object.
DEFAULT_THRESHOLDS = {
    "owlv2": Thresholds(score=0.1, counting_score=0.3, nms_iou=0.5),
    "grounding-dino": Thresholds(score=0.35, counting_score=0.5, nms_iou=0.5),
}
#: OWLv2 text queries, one per class (the OWL-ViT papers' plain prompt).
OWL_QUERY = "a photo of a {cls}"
#: Grounding DINO: one caption naming every class, "a cat. a dog." (the form of its documentation).
GROUNDING_QUERY = "a {cls}."
#: GenEval's colour prompts (evaluate_images.py `color_classification`), averaged per colour as clip_benchmark does.
COLOR_TEMPLATES = ("a photo of a {color} {cls}", "a photo of a {color}-colored {cls}", "a photo of a {color} object")
#: The colour model GenEval uses.
DEFAULT_COLOR_MODEL = ("ViT-L-14", "openai")

#: What a detector is to the judge: (HxWx3 uint8 image, class names, score threshold) -> detections in pixels.
Detector = Callable[[np.ndarray, Sequence[str], float], list[Detection]]


class TransformersDetector:
    """An open-vocabulary detector from transformers (OWLv2, Grounding DINO), called with class names."""

    def __init__(
        self, model: Any, processor: Any, *, model_type: str, source: str, weights_sha256: str, device: str = "cpu"
    ) -> None:
        if model_type not in FAMILIES:
            raise SdevalError(f"detector model type {model_type!r} is not supported (supported: {', '.join(FAMILIES)})")
        self.model = model.to(device).eval()
        self.processor = processor
        self.kind = FAMILIES[model_type]
        self.model_type = model_type
        self.source = source
        self.weights_sha256 = weights_sha256
        self.device = device

    @classmethod
    def load(cls, model: str, kind: str | None = None, device: str = "cpu") -> TransformersDetector:
        """A detector from a local folder (save_pretrained layout) or a hub id; `kind` (owlv2, grounding-dino), when
        given, must match the model's config, else it is read from it."""
        if kind is not None and kind not in FAMILIES.values():
            raise SdevalError(f"detector kind must be one of {', '.join(FAMILIES.values())}, got {kind!r}")
        _quiet_transformers()
        load = partial(_load_parts, model)
        loaded, source = load_pretrained(model, load, option="--detector-model", what="detector")
        network, processor, model_type = loaded
        if kind is not None and FAMILIES.get(model_type) != kind:
            raise SdevalError(f"--detector-model {model}: a {model_type} model, but kind {kind!r} was asked for")
        from sdeval.features.clip import state_dict_sha256  # torch and open_clip: when a detector loads

        return cls(
            network,
            processor,
            model_type=model_type,
            source=source,
            weights_sha256=state_dict_sha256(network),
            device=device,
        )

    def __call__(self, image: np.ndarray, classes: Sequence[str], threshold: float) -> list[Detection]:
        if not classes:
            return []
        if self.kind == "owlv2":
            return self._owl(image, classes, threshold)
        return self._grounding(image, classes, threshold)

    def _owl(self, image: np.ndarray, classes: Sequence[str], threshold: float) -> list[Detection]:
        import torch  # torch: when a detector runs (`sdeval models` reads this module)
        from PIL import Image  # PIL: when an image is judged

        height, width = image.shape[:2]
        queries = [OWL_QUERY.format(cls=c) for c in classes]
        inputs = self.processor(text=[queries], images=Image.fromarray(image), return_tensors="pt", truncation=True)
        with torch.inference_mode():
            outputs = self.model(**inputs.to(self.device))
        # OWLv2 pads the image to a square (bottom and right) before resizing, so its normalized boxes are relative
        # to that square: scale by the longer side, not by (height, width).
        side = max(height, width)
        post = getattr(self.processor, "post_process_grounded_object_detection", None)
        if post is None:  # older transformers
            post = self.processor.post_process_object_detection
        result = post(outputs=outputs, threshold=threshold, target_sizes=[(side, side)])[0]
        return [
            Detection(classes[int(label)], float(score), _box(box))
            for score, label, box in zip(result["scores"], result["labels"], result["boxes"], strict=True)
        ]

    def _grounding(self, image: np.ndarray, classes: Sequence[str], threshold: float) -> list[Detection]:
        import torch  # torch: when a detector runs (`sdeval models` reads this module)
        from PIL import Image  # PIL: when an image is judged

        height, width = image.shape[:2]
        text, spans = _grounding_caption(classes)
        inputs = self.processor(images=Image.fromarray(image), text=text, return_tensors="pt")
        offsets = self.processor.tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
        # Each class is read off the tokens that spell it, so "a" and "." cannot claim a box.
        tokens = [[t for t, (s, e) in enumerate(offsets) if e > s and s >= lo and e <= hi] for lo, hi in spans]
        with torch.inference_mode():
            outputs = self.model(**inputs.to(self.device))
        post = self.processor.post_process_grounded_object_detection
        # The keyword was `box_threshold` before transformers 4.51.
        key = "threshold" if "threshold" in inspect.signature(post).parameters else "box_threshold"
        result = post(outputs, inputs["input_ids"], **{key: threshold}, target_sizes=[(height, width)])[0]
        # The processor keeps queries whose best token beats the threshold, in query order: the same operations on
        # the same device find them again, and their per-token probabilities give each box the class whose tokens
        # score highest.
        probs = torch.sigmoid(outputs.logits)[0]
        kept = (torch.max(probs, dim=-1)[0] > threshold).nonzero().flatten().tolist()
        probs = probs.float().cpu()
        if len(kept) != len(result["boxes"]):
            raise RuntimeError("Grounding DINO post-processing kept another set of boxes than expected")
        found = []
        for query, box in zip(kept, result["boxes"], strict=True):
            scores = [float(probs[query, idx].max()) if idx else 0.0 for idx in tokens]
            best = int(np.argmax(scores))
            found.append(Detection(classes[best], scores[best], _box(box)))
        return found

    def protocol(self) -> dict[str, Any]:
        import transformers  # transformers: its version, loaded with the model already

        image_processor = getattr(self.processor, "image_processor", None)
        size = getattr(image_processor, "size", None)
        return {
            "model": self.source,
            "model_type": self.model_type,
            "weights_sha256": self.weights_sha256,
            "queries": OWL_QUERY if self.kind == "owlv2" else f"one caption of '{GROUNDING_QUERY}' per class",
            "class_of_box": "best query" if self.kind == "owlv2" else "class whose tokens score highest",
            "image_size": dict(size) if size is not None else None,
            "dtype": "float32",
            "transformers_version": transformers.__version__,
        }


class ClipColorClassifier:
    """Zero-shot colour of each box by open_clip, as GenEval: the box crop against GenEval's colour prompts."""

    def __init__(self, embedder: Any, colors: Sequence[str] = COLORS) -> None:
        self.embedder = embedder
        self.colors = tuple(colors)
        self._classifiers: dict[str, np.ndarray] = {}

    def __call__(self, image: np.ndarray, boxes: Sequence[Box], cls: str) -> list[str]:
        if not boxes:
            return []
        crops = [_crop(image, box) for box in boxes]
        features = self.embedder.embed_images(crops)
        logits = features @ self._classifier(cls).T
        return [self.colors[int(i)] for i in logits.argmax(axis=1)]

    def _classifier(self, cls: str) -> np.ndarray:
        # clip_benchmark's zero_shot_classifier: per colour, the mean of the normalized template embeddings,
        # normalized again.
        if cls not in self._classifiers:
            rows = []
            for color in self.colors:
                emb = self.embedder.embed_texts([t.format(color=color, cls=cls) for t in COLOR_TEMPLATES])
                mean = emb.mean(axis=0)
                rows.append(mean / np.linalg.norm(mean))
            self._classifiers[cls] = np.stack(rows).astype(np.float32)
        return self._classifiers[cls]

    def protocol(self) -> dict[str, Any]:
        clip = self.embedder.protocol()
        return {
            "model": clip.get("model"),
            "pretrained": clip.get("pretrained"),
            "weights_sha256": clip.get("weights_sha256"),
            "quick_gelu": clip.get("quick_gelu"),
            "colors": list(self.colors),
            "templates": list(COLOR_TEMPLATES),
            "crop": "box crop of the whole image (no mask: these detectors give none), then the model's transform",
        }


class DetectorJudge:
    """Detector + colour classifier + GenEval's rules. `detector` is any Detector (a TransformersDetector, or in
    tests a function returning known boxes); `color` names colours of boxes and is needed by colour facts only."""

    name = "detector"

    def __init__(
        self,
        detector: Detector,
        color: Callable[[np.ndarray, Sequence[Box], str], list[str]] | None,
        thresholds: Thresholds | None = None,
    ) -> None:
        self.detector = detector
        self.color = color
        self.thresholds = thresholds or Thresholds()

    @classmethod
    def load(
        cls,
        model: str = DEFAULT_DETECTOR,
        *,
        kind: str | None = None,
        thresholds: Thresholds | None = None,
        color_model: str = DEFAULT_COLOR_MODEL[0],
        color_pretrained: str | None = DEFAULT_COLOR_MODEL[1],
        color_embedder: Any = None,
        device: str = "cpu",
    ) -> DetectorJudge:
        """Load the detector (hub id or local folder) and the colour model (an open_clip name with a pretrained tag
        or local weights file, or an already loaded ClipEmbedder); thresholds default to the family's."""
        detector = TransformersDetector.load(model, kind=kind, device=device)
        if color_embedder is None:
            from sdeval.features.clip import ClipEmbedder  # torch and open_clip: when the colour model loads

            color_embedder = ClipEmbedder.load(color_model, color_pretrained, device=device)
        return cls(detector, ClipColorClassifier(color_embedder), thresholds or DEFAULT_THRESHOLDS[detector.kind])

    def judge(self, image: np.ndarray, spec: Spec) -> Judgement:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise ValueError(f"expected an HxWx3 uint8 RGB array, got {got}")
        height, width = image.shape[:2]
        size = (width, height)
        detections = self.detector(image, spec.classes, self.thresholds.score_for(spec))
        kept = kept_detections(detections, spec, self.thresholds, size)
        # Colours only for the objects the rules read: the `count` best of each class a colour fact names.
        wanted: dict[str, int] = {}
        for include in spec.include:
            if include.color is not None:
                wanted[include.cls] = max(wanted.get(include.cls, 0), include.count)
        for cls, n in wanted.items():
            objs = kept.get(cls, [])[:n]
            if not objs:
                continue
            if self.color is None:
                raise SdevalError("this detector judge has no colour model, and the spec has a colour fact")
            colors = self.color(image, [d.box for d in objs], cls)
            kept[cls][: len(objs)] = [replace(d, color=c) for d, c in zip(objs, colors, strict=True)]
        return judge_detections([d for objs in kept.values() for d in objs], spec, size, self.thresholds)

    def protocol(self) -> dict[str, Any]:
        detector_protocol = getattr(self.detector, "protocol", None)
        color_protocol = getattr(self.color, "protocol", None)
        return {
            "judge": self.name,
            "rules": "GenEval evaluate_images.py (threshold by tag, per-class cap, suppression, centre relations)",
            "detector": detector_protocol() if callable(detector_protocol) else {"model": _name_of(self.detector)},
            "thresholds": self.thresholds.to_json(),
            "color": color_protocol() if callable(color_protocol) else {"model": _name_of(self.color)},
        }


def _load_parts(model: str, location: str, local_files_only: bool) -> tuple[Any, Any, str]:
    """(model, processor, model_type); OSError when files are missing (for the offline check), else SdevalError."""
    # transformers: when the detector loads, not with `sdeval models --help`
    from transformers import AutoConfig, AutoModelForZeroShotObjectDetection, AutoProcessor

    try:
        config = AutoConfig.from_pretrained(location, local_files_only=local_files_only)
    except ValueError as err:
        raise SdevalError(f"--detector-model {model}: {first_line(err)}") from err
    model_type = getattr(config, "model_type", "")
    if model_type not in FAMILIES:
        raise SdevalError(
            f"--detector-model {model}: a {model_type!r} model; supported detectors: {', '.join(FAMILIES)}"
        )
    try:
        network = AutoModelForZeroShotObjectDetection.from_pretrained(location, local_files_only=local_files_only)
        processor = AutoProcessor.from_pretrained(location, local_files_only=local_files_only)
    except ValueError as err:
        raise SdevalError(f"--detector-model {model}: {first_line(err)}") from err
    return network, processor, model_type


def _grounding_caption(classes: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """The caption "a cat. a dog." and, per class, the character span of its name in it."""
    parts, spans, at = [], [], 0
    for cls in classes:
        phrase = GROUNDING_QUERY.format(cls=cls.lower())
        start = at + phrase.index(cls.lower())
        spans.append((start, start + len(cls)))
        parts.append(phrase)
        at += len(phrase) + 1
    return " ".join(parts), spans


def _box(box: Any) -> Box:
    x0, y0, x1, y1 = (float(v) for v in box)
    return (x0, y0, x1, y1)


def _crop(image: np.ndarray, box: Box) -> np.ndarray:
    """The box's pixels, rounded as PIL's crop rounds (GenEval crops with PIL), at least one pixel."""
    height, width = image.shape[:2]
    x0, y0, x1, y1 = (round(v) for v in box)
    x0, y0 = min(max(x0, 0), width - 1), min(max(y0, 0), height - 1)
    x1, y1 = min(max(x1, x0 + 1), width), min(max(y1, y0 + 1), height)
    return np.ascontiguousarray(image[y0:y1, x0:x1])


def _name_of(thing: Any) -> str | None:
    if thing is None:
        return None
    return getattr(thing, "__qualname__", None) or type(thing).__qualname__


def _quiet_transformers() -> None:
    """Loading bars would interleave with sdeval's own progress on stderr."""
    import transformers  # transformers: when a model loads

    transformers.utils.logging.disable_progress_bar()


def build(options: dict[str, Any], device: str) -> DetectorJudge:
    """`--judge detector` (sdeval.judges.registry): build_judge's options -> a loaded detector judge."""
    return DetectorJudge.load(
        options.get("detector_model") or DEFAULT_DETECTOR,
        kind=options.get("detector_kind"),
        thresholds=options.get("thresholds"),
        color_model=options.get("clip_model") or DEFAULT_COLOR_MODEL[0],
        color_pretrained=options.get("clip_pretrained") or DEFAULT_COLOR_MODEL[1],
        color_embedder=options.get("clip"),
        device=device,
    )
