"""The `shapes` judge: the calibration world's exact detector (`sdeval.calibration.detect`) + GenEval's rules.

On images of the `shapes` checkpoint (128 px and up) it finds every shape with its class, colour and box, so its
verdicts are the truth: an image fails exactly when the checkpoint injected a mistake. The detector gives every
shape a score of 1, so GenEval's thresholds keep them all.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sdeval.calibration.detect import detect_shapes
from sdeval.calibration.world import CLASSES, PALETTE, WORLD_VERSION
from sdeval.judges.base import Judgement
from sdeval.judges.rules import Thresholds, judge_detections
from sdeval.suites.spec import Spec

#: Bump when detection changes in a way that can move a verdict.
VERSION = 1


class ShapesJudge:
    """Judges images against specs with the calibration world's detector; no models, CPU only."""

    name = "shapes"

    def __init__(self, thresholds: Thresholds | None = None) -> None:
        self.thresholds = thresholds or Thresholds()

    def judge(self, image: np.ndarray, spec: Spec) -> Judgement:
        """`image`: HxWx3 uint8 RGB (a PIL image is accepted too)."""
        pixels = np.asarray(image)
        if pixels.ndim == 3 and pixels.shape[2] == 4:
            pixels = pixels[..., :3]
        height, width = pixels.shape[:2]
        return judge_detections(detect_shapes(pixels), spec, (width, height), self.thresholds)

    def protocol(self) -> dict[str, Any]:
        return {
            "judge": self.name,
            "detector": "sdeval.calibration",
            "version": VERSION,
            "world_version": WORLD_VERSION,
            "classes": list(CLASSES),
            "palette": {name: list(rgb) for name, rgb in PALETTE.items()},
            "thresholds": self.thresholds.to_json(),
        }


def build(options: dict[str, Any], device: str) -> ShapesJudge:
    """`--judge shapes` (sdeval.judges.registry): the world's exact detector takes no options and no device."""
    return ShapesJudge()
