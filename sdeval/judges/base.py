"""The judge interface: (image, spec) -> per-fact verdicts with reasons; an image passes when all facts hold.

Judges differ in how they see (an open-vocabulary detector, CLIP contrast, the calibration world's exact
detector); the rules that turn what they see into verdicts are GenEval's and live in `judges/rules.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from sdeval.suites.spec import COLORS as COLORS  # GenEval's colours: declared once, with the spec's vocabulary
from sdeval.suites.spec import Spec


@dataclass(frozen=True)
class Detection:
    """One object a detector found: class, score, box (x0, y0, x1, y1) in pixels, colour if known."""

    cls: str
    score: float
    box: tuple[float, float, float, float]
    color: str | None = None


@dataclass(frozen=True)
class FactVerdict:
    """One fact of a spec, judged. `kind`: present, count, color, position, absent."""

    kind: str
    fact: str  # the fact in words, e.g. "2 red car", "dog left of cat", "fewer than 3 clock"
    passed: bool
    reason: str  # what was seen, e.g. "found 1 car (needs 2)"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "fact": self.fact, "passed": self.passed, "reason": self.reason}


@dataclass(frozen=True)
class Judgement:
    """A judge's verdict on one image."""

    passed: bool
    facts: tuple[FactVerdict, ...]
    detections: tuple[Detection, ...] = field(default=())
    score: float | None = None  # share of the facts or questions that hold, where the judge grades (VQA)

    @property
    def failed(self) -> list[FactVerdict]:
        return [f for f in self.facts if not f.passed]

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "facts": [f.to_json() for f in self.facts],
            "detections": [
                {"class": d.cls, "score": d.score, "box": list(d.box), "color": d.color} for d in self.detections
            ],
        }


class Judge(Protocol):
    """Judges images against specs. `protocol()` names everything that moves its verdicts (models, sha256,
    thresholds); it goes into every result."""

    name: str

    def judge(self, image: np.ndarray, spec: Spec) -> Judgement:
        """`image`: HxWx3 uint8 RGB."""
        ...

    def protocol(self) -> dict[str, Any]: ...
