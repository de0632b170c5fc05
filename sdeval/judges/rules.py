"""GenEval's rules: what a detector found (class, score, box, colour) and a spec -> per-fact verdicts.

Exactly GenEval's `evaluation/evaluate_images.py` (djghosh13/geneval), checked against its source:
- `evaluate_image`: per class, objects sorted by score, kept when score > threshold (strictly; `threshold` 0.3,
  `counting_threshold` 0.9 for every object of a spec tagged `counting`), at most `max_objects` (16), then a greedy
  suppression of boxes overlapping a kept one by IoU >= `max_overlap` (1.0 = none, GenEval's default).
- `evaluate`: an include looks at the `count` best objects of its class; it holds when there are `count` of them,
  and, with a colour, when all of them have that colour; with a position, when every one of them stands in the
  relation to every object the target include matched (`relative_position`). An exclude holds when fewer than
  `count` objects of its class are kept.
- `relative_position`: from box centres, with each axis' offset shrunk by `position_threshold` (0.1) times the two
  boxes' summed sizes on that axis; a relation holds when its axis carries more than half of the (unshrunk) offset.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from sdeval.judges.base import Detection, FactVerdict, Judgement
from sdeval.suites.spec import Include, Spec

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Thresholds:
    """What turns detector outputs into kept objects; defaults are GenEval's (tuned for its Mask2Former)."""

    score: float = 0.3  # GenEval `threshold`
    counting_score: float = 0.9  # GenEval `counting_threshold`: every object of a `counting` spec
    max_objects: int = 16  # GenEval `max_objects`, per class, before suppression
    nms_iou: float = 1.0  # GenEval `max_overlap`: suppress a box overlapping a better one by IoU >= this; 1.0 = off
    position_margin: float = 0.1  # GenEval `position_threshold`, a fraction of the two boxes' sizes

    def __post_init__(self) -> None:
        for name in ("score", "counting_score"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"thresholds.{name} must be in [0, 1], got {value!r}")
        if self.max_objects < 1:
            raise ValueError(f"thresholds.max_objects must be at least 1, got {self.max_objects!r}")
        if not 0.0 < self.nms_iou <= 1.0:
            raise ValueError(f"thresholds.nms_iou must be in (0, 1], got {self.nms_iou!r}")
        if self.position_margin < 0.0:
            raise ValueError(f"thresholds.position_margin must be >= 0, got {self.position_margin!r}")

    def score_for(self, spec: Spec) -> float:
        """The score an object must beat for this spec: GenEval picks by the spec's tag, not by the fact."""
        return self.counting_score if spec.tag == "counting" else self.score

    def to_json(self) -> dict[str, float | int]:
        return asdict(self)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """GenEval's `compute_iou`: pixel-inclusive areas (width = x1 - x0 + 1), 0 when the union is empty."""

    def area(box: Sequence[float]) -> float:
        return max(box[2] - box[0] + 1, 0) * max(box[3] - box[1] + 1, 0)

    inter = area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    union = area(a) + area(b) - inter
    return inter / union if union else 0.0


def relative_position(a: Sequence[float], b: Sequence[float], margin: float = 0.1) -> set[str]:
    """The relations box `a` stands in to box `b` (image coordinates, y down), as GenEval's `relative_position`.

    The centre offset on each axis is shrunk towards 0 by `margin` times the two boxes' summed size on that axis;
    nothing is left (all under 1e-3 px) means no relation. A relation holds when its axis keeps more than half of
    the unshrunk offset's length, so a diagonal placement can hold two relations, and a near-overlap none.
    """
    boxes = np.asarray([a[:4], b[:4]], dtype=np.float64).reshape(2, 2, 2)
    center_a, center_b = boxes.mean(axis=-2)
    dim_a, dim_b = np.abs(np.diff(boxes, axis=-2))[..., 0, :]
    offset = center_a - center_b
    revised = np.maximum(np.abs(offset) - margin * (dim_a + dim_b), 0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return set()
    dx, dy = revised / np.linalg.norm(offset)
    relations = set()
    if dx < -0.5:
        relations.add("left of")
    if dx > 0.5:
        relations.add("right of")
    if dy < -0.5:
        relations.add("above")
    if dy > 0.5:
        relations.add("below")
    return relations


def clip_box(box: Sequence[float], image_size: tuple[int, int]) -> Box:
    """A box limited to the image (`image_size` is width, height); a no-op for boxes inside it."""
    width, height = image_size
    x0, y0, x1, y1 = (float(v) for v in box[:4])
    return (min(max(x0, 0.0), width), min(max(y0, 0.0), height), min(max(x1, 0.0), width), min(max(y1, 0.0), height))


def kept_detections(
    detections: Iterable[Detection],
    spec: Spec,
    thresholds: Thresholds,
    image_size: tuple[int, int] | None = None,
) -> dict[str, list[Detection]]:
    """Per class the spec names, the objects GenEval keeps, best first (see the module docstring).

    Boxes are first limited to the image when `image_size` (width, height) is given: detectors that pad the image
    (OWLv2) can reach past its edge, which would move the centres positions are judged by. Classes the spec does
    not name are dropped. Idempotent: keeping the kept objects again keeps them all.
    """
    wanted = set(spec.classes)
    threshold = thresholds.score_for(spec)
    by_class: dict[str, list[Detection]] = {}
    for det in detections:
        if det.cls not in wanted:
            continue
        if image_size is not None:
            clipped = clip_box(det.box, image_size)
            if clipped != tuple(det.box):
                det = Detection(det.cls, det.score, clipped, det.color)
        by_class.setdefault(det.cls, []).append(det)
    kept: dict[str, list[Detection]] = {}
    for cls, objs in by_class.items():
        # Stable sort: equal scores keep the detector's order.
        order = sorted((d for d in objs if d.score > threshold), key=lambda d: -d.score)[: thresholds.max_objects]
        chosen: list[Detection] = []
        while order:
            best = order.pop(0)
            chosen.append(best)
            if thresholds.nms_iou < 1.0:
                order = [d for d in order if box_iou(best.box, d.box) < thresholds.nms_iou]
        if chosen:
            kept[cls] = chosen
    return kept


def fact_text(kind: str, spec: Spec, index: int) -> str:
    """A fact in words, the same for every judge: '2 clock', '1 red car', 'dog left of cat', 'fewer than 3 clock'.

    `index` points into spec.include (kinds present, count, color, position) or spec.exclude (kind absent).
    """
    if kind == "absent":
        exclude = spec.exclude[index]
        return f"fewer than {exclude.count} {exclude.cls}"
    include = spec.include[index]
    if kind in ("present", "count"):
        return f"{include.count} {include.cls}"
    if kind == "color":
        return f"{include.count} {include.color} {include.cls}"
    if kind == "position":
        assert include.position is not None
        relation, target = include.position
        return f"{include.cls} {relation} {spec.include[target].cls}"
    raise ValueError(f"unknown fact kind {kind!r}")


def spec_facts(spec: Spec) -> list[tuple[str, int]]:
    """The facts of a spec as (kind, index), in the order every judge reports them: per include its presence
    (or count), colour, position; then each exclude."""
    facts: list[tuple[str, int]] = []
    for i, include in enumerate(spec.include):
        facts.append(("present" if include.count == 1 else "count", i))
        if include.color is not None:
            facts.append(("color", i))
        if include.position is not None:
            facts.append(("position", i))
    facts.extend(("absent", j) for j in range(len(spec.exclude)))
    return facts


def judge_detections(
    detections: Iterable[Detection],
    spec: Spec,
    image_size: tuple[int, int] | None,
    thresholds: Thresholds | None = None,
) -> Judgement:
    """GenEval's verdict on one image from its detections (colours already assigned where a fact needs them).

    A colour or position fact whose include was not matched fails as "not checked", as GenEval skips it (the image
    fails either way). `image_size` is (width, height); None leaves boxes as they are.
    """
    thresholds = thresholds or Thresholds()
    kept = kept_detections(detections, spec, thresholds, image_size)
    verdicts: dict[tuple[str, int], FactVerdict] = {}
    # The best `count` objects of each include when its presence (and colour) holds, else None.
    groups: list[list[Detection] | None] = []
    for i, include in enumerate(spec.include):
        objs = kept.get(include.cls, [])
        found = objs[: include.count]
        present = len(found) >= include.count
        kind = "present" if include.count == 1 else "count"
        short = f"found {len(objs)} {include.cls}, needs at least {include.count}"
        verdicts[(kind, i)] = _verdict(kind, spec, i, present, f"found {len(objs)} {include.cls}" if present else short)
        matched = present
        if include.color is not None:
            if not present:
                verdicts[("color", i)] = _verdict("color", spec, i, False, f"not checked: {short}")
            else:
                matched = _color_verdict(include, found, spec, i, verdicts)
        groups.append(found if matched else None)
    # Positions in include order, so a target checked before its referrer counts with its own position, as in
    # GenEval (which only has backward references); a forward reference sees the target's presence and colour.
    for i, include in enumerate(spec.include):
        if include.position is None:
            continue
        relation, target = include.position
        target_cls = spec.include[target].cls
        mine, theirs = groups[i], groups[target]
        if mine is None:
            failed = [v for key, v in verdicts.items() if key[1] == i and key[0] != "position" and not v.passed]
            reason = f"not checked: {failed[0].reason}" if failed else "not checked"
            verdicts[("position", i)] = _verdict("position", spec, i, False, reason)
            continue
        if theirs is None:
            reason = f"no {target_cls} matched to be {relation}"
            verdicts[("position", i)] = _verdict("position", spec, i, False, reason)
            groups[i] = None
            continue
        reason = ""
        for obj in mine:
            for other in theirs:
                seen = relative_position(obj.box, other.box, thresholds.position_margin)
                if relation not in seen:
                    if seen:
                        reason = f"found {include.cls} {' and '.join(sorted(seen))} {target_cls}, needs {relation}"
                    else:
                        reason = f"found {include.cls} and {target_cls} too close to call (centres within the margin)"
                    break
            if reason:
                break
        ok = not reason
        found_ok = f"found {include.cls} {relation} {target_cls}"
        verdicts[("position", i)] = _verdict("position", spec, i, ok, reason or found_ok)
        if not ok:
            groups[i] = None
    for j, exclude in enumerate(spec.exclude):
        n = len(kept.get(exclude.cls, []))
        reason = f"found {n} {exclude.cls}" + ("" if n < exclude.count else f", needs fewer than {exclude.count}")
        verdicts[("absent", j)] = _verdict("absent", spec, j, n < exclude.count, reason)
    facts = tuple(verdicts[key] for key in spec_facts(spec))
    seen_objects = tuple(d for cls in spec.classes for d in kept.get(cls, []))
    return Judgement(passed=all(f.passed for f in facts), facts=facts, detections=seen_objects)


def _verdict(kind: str, spec: Spec, index: int, passed: bool, reason: str) -> FactVerdict:
    return FactVerdict(kind=kind, fact=fact_text(kind, spec, index), passed=passed, reason=reason)


def _color_verdict(
    include: Include, found: list[Detection], spec: Spec, index: int, verdicts: dict[tuple[str, int], FactVerdict]
) -> bool:
    # GenEval classifies the colour of the `count` best objects only, and needs them all in the asked colour.
    colors = [d.color or "unknown" for d in found]
    n = colors.count(include.color)  # pyright: ignore[reportArgumentType]  # called only when include.color is set
    ok = n >= include.count
    seen = ", ".join(colors)
    best = f"the best {include.count} {include.cls}" if include.count > 1 else f"the best {include.cls}"
    reason = f"{best}: {seen}" + ("" if ok else f"; needs {include.count} {include.color}")
    verdicts[("color", index)] = _verdict("color", spec, index, ok, reason)
    return ok
