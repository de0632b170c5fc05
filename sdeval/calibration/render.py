"""Draw what a spec says: flat-coloured shapes on a plain background, with at most one known, seeded mistake.

Layout: every include entry becomes `count` shapes of its class (in its colour, or a random palette colour),
each 1/10..1/3 of the short side, at least `gap` px (4 px, more on large images) from each other and from
the border. A `position` entry is drawn with GenEval's relation test passing with a margin (normalized score
>= 0.7 where GenEval needs > 0.5), so neither a correct nor a swapped relation is borderline.

Mistakes: with probability `mistakes.rate(spec.tag)` the image gets exactly one mistake of its category:
counting draws n-1 objects (or n+1 where the spec excludes n+1), colors draws a wrong colour, color_attr
swaps the two colours, position draws the opposite relation, single_object/two_object leave an object out
or draw another class in its place. A spec that offers no such fact (a colors spec without a colour) gets
a left-out object instead, so the rate is always the failure rate.

Randomness: independent numpy streams per purpose, all from the image's seed, so an image depends only on
(spec, seed, size, options), and two checkpoints that differ only in rates draw the same image wherever
neither makes a mistake (the mistake draw is one uniform number compared with the rate: raising a rate
only adds mistakes, it never moves the others).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from sdeval.calibration.world import (
    CLASSES,
    DEFAULT_BACKGROUND,
    MIN_BACKGROUND_DELTA_E,
    PALETTE,
    Degradation,
    MistakeRates,
    delta_e,
)
from sdeval.suites.spec import Spec

#: GenEval's share of the two boxes' sizes discounted from a centre offset before testing a relation.
POSITION_THRESHOLD = 0.1
#: Relation score a drawn relation reaches (GenEval's test: > 0.5).
RELATION_MARGIN = 0.7
OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
SUPERSAMPLE = 4  # drawn at 4x and box-filtered down: true area anti-aliasing
TRIANGLE_HEIGHT = math.sqrt(3) / 2  # equilateral, pointing up
#: One independent random stream per purpose (SeedSequence children, in this order: never reorder, only append).
STREAMS = ("decide", "mistake", "layout", "colors", "noise", "keep")

Box = tuple[float, float, float, float]


class RenderError(ValueError):
    """A spec the world cannot draw (unknown class or colour, image too small); the message says which."""


@dataclass(frozen=True)
class DrawnObject:
    """One shape as drawn: class, palette colour name, and its extent (x0, y0, x1, y1) in pixels."""

    cls: str
    color: str
    box: Box


@dataclass(frozen=True)
class Mistake:
    """The one injected mistake: `kind` is count, color, swapped_colors, relation, missing or wrong_object."""

    kind: str
    detail: str


@dataclass(frozen=True)
class Rendered:
    """A drawn image (HxWx3 uint8 RGB) and its truth: what is in it, and the mistake, if any."""

    image: np.ndarray
    objects: tuple[DrawnObject, ...]
    mistake: Mistake | None


@dataclass(frozen=True)
class _Group:
    """One include entry as it will be drawn (after any mistake)."""

    cls: str
    count: int
    color: str | None
    relation: tuple[str, int] | None


def relation_scores(a: Box, b: Box) -> dict[str, float]:
    """GenEval's test of where box `a` lies relative to box `b`: a relation holds when its score > 0.5.

    The centre offset, shrunk on each axis by 0.1 x the two boxes' sizes, over the offset's length.
    """
    off = np.array([(a[0] + a[2] - b[0] - b[2]) / 2, (a[1] + a[3] - b[1] - b[3]) / 2])
    dims = np.array([a[2] - a[0] + b[2] - b[0], a[3] - a[1] + b[3] - b[1]])
    norm = float(np.hypot(*off))
    if norm == 0:
        return dict.fromkeys(OPPOSITE, 0.0)
    revised = np.maximum(np.abs(off) - POSITION_THRESHOLD * dims, 0) * np.sign(off)
    dx, dy = revised / norm
    return {"left of": -dx, "right of": dx, "above": -dy, "below": dy}


def streams(seed: int) -> dict[str, np.random.Generator]:
    """The image's random streams, one per purpose (`STREAMS`), all from its seed."""
    children = np.random.SeedSequence(seed).spawn(len(STREAMS))
    return {name: np.random.default_rng(child) for name, child in zip(STREAMS, children, strict=True)}


def render(
    spec: Spec,
    seed: int,
    size: int | tuple[int, int] = 256,
    mistakes: MistakeRates | None = None,
    degrade: Degradation | None = None,
    background: tuple[int, int, int] = DEFAULT_BACKGROUND,
) -> Rendered:
    """Draw `spec` at `size` (side, or (width, height)) from `seed`, with the given mistake rates."""
    mistakes = mistakes or MistakeRates()
    degrade = degrade or Degradation()
    width, height = (size, size) if isinstance(size, int) else size
    rngs = streams(seed)
    allowed = [c for c, rgb in PALETTE.items() if delta_e(rgb, background) >= MIN_BACKGROUND_DELTA_E]
    groups = _groups(spec, allowed)
    mistake = None
    # One uniform number against the rate: a higher rate only adds mistakes (module docstring).
    if rngs["decide"].random() < mistakes.rate(spec.tag):
        groups, mistake = _inject(spec, groups, rngs["mistake"], allowed)
    members: list[tuple[int, str, str]] = []  # (group index, class, colour) per object
    for gi, group in enumerate(groups):
        for _ in range(group.count):
            color = group.color if group.color is not None else allowed[int(rngs["colors"].integers(len(allowed)))]
            members.append((gi, group.cls, color))
    boxes = _layout(members, groups, width, height, rngs["layout"])
    objects = tuple(DrawnObject(cls, color, box) for (_, cls, color), box in zip(members, boxes, strict=True))
    image = _draw(objects, width, height, background)
    return Rendered(image=degrade_image(image, degrade, rngs["noise"]), objects=objects, mistake=mistake)


def _groups(spec: Spec, allowed: list[str]) -> list[_Group]:
    groups = []
    for inc in spec.include:
        if inc.cls not in CLASSES:
            raise RenderError(f"the shapes world has no class {inc.cls!r} (it draws: {', '.join(CLASSES)})")
        if inc.color is not None and inc.color not in PALETTE:
            raise RenderError(f"the shapes world has no colour {inc.color!r} (it draws: {', '.join(PALETTE)})")
        if inc.color is not None and inc.color not in allowed:
            raise RenderError(f"colour {inc.color!r} does not stand out from this background")
        groups.append(_Group(inc.cls, inc.count, inc.color, inc.position))
    return groups


def _inject(spec: Spec, groups: list[_Group], rng: np.random.Generator, allowed: list[str]) -> tuple[list, Mistake]:
    """One mistake of the spec's category (see the module docstring)."""
    groups = list(groups)
    tag = spec.tag
    if tag == "counting":
        # Prefer the entry the spec bounds from above: there n+1 is a mistake too.
        bounded = [i for i, g in enumerate(groups) if any(e.cls == g.cls for e in spec.exclude)]
        i = bounded[0] if bounded else 0
        n = groups[i].count
        choices = [n - 1]
        if any(e.cls == groups[i].cls and n < e.count <= n + 1 for e in spec.exclude):
            choices.append(n + 1)
        new = choices[int(rng.integers(len(choices)))]
        groups[i] = replace(groups[i], count=new)
        return groups, Mistake("count", f"drew {new} {groups[i].cls} instead of {n}")
    colored = [i for i, g in enumerate(groups) if g.color is not None]
    if tag == "color_attr":
        for a in colored:
            for b in colored:
                if a < b and groups[a].color != groups[b].color and groups[a].cls != groups[b].cls:
                    ca, cb = groups[a].color, groups[b].color
                    groups[a], groups[b] = replace(groups[a], color=cb), replace(groups[b], color=ca)
                    return groups, Mistake(
                        "swapped_colors", f"drew the {groups[a].cls} {cb} and the {groups[b].cls} {ca}"
                    )
    if tag in ("colors", "color_attr") and colored:
        i = colored[int(rng.integers(len(colored)))]
        old = groups[i].color
        others = [c for c in allowed if c != old]
        new = others[int(rng.integers(len(others)))]
        groups[i] = replace(groups[i], color=new)
        return groups, Mistake("color", f"drew the {groups[i].cls} {new} instead of {old}")
    placed = [i for i, g in enumerate(groups) if g.relation is not None]
    if tag == "position" and placed:
        i = placed[0]
        relation = groups[i].relation
        assert relation is not None  # `placed` holds only groups with a relation
        rel, j = relation
        groups[i] = replace(groups[i], relation=(OPPOSITE[rel], j))
        return groups, Mistake("relation", f"drew the {groups[i].cls} {OPPOSITE[rel]} the {groups[j].cls}")
    i = int(rng.integers(len(groups)))
    spare = [c for c in CLASSES if c not in spec.classes]
    if tag in ("single_object", "two_object") and spare and rng.random() < 0.5:
        new_cls = spare[int(rng.integers(len(spare)))]
        old_cls = groups[i].cls
        groups[i] = replace(groups[i], cls=new_cls)
        return groups, Mistake("wrong_object", f"drew {new_cls} instead of {old_cls}")
    groups[i] = replace(groups[i], count=0)
    return groups, Mistake("missing", f"left out the {groups[i].cls}")


def _extent(cls: str, side: float) -> tuple[float, float]:
    """Width and height of a shape whose nominal size is `side`."""
    if cls == "triangle":
        return side, side * TRIANGLE_HEIGHT
    return side, side


def _separated(a: Box, b: Box, gap: float) -> bool:
    return a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1]


def _layout(
    members: list[tuple[int, str, str]], groups: list[_Group], width: int, height: int, rng: np.random.Generator
) -> list[Box]:
    """Random boxes that keep the gaps and every relation (with margin); sizes shrink if the draw keeps failing."""
    short = min(width, height)
    gap = max(4.0, short / 32)
    constraints = [(gi, g.relation[0], g.relation[1]) for gi, g in enumerate(groups) if g.relation is not None]
    upper = 1 / 3
    for _ in range(60):
        boxes: list[Box] = []
        for k, (gi, cls, _) in enumerate(members):
            w, h = _extent(cls, rng.uniform(0.1, upper) * short)
            if width - 2 * gap - w < 0 or height - 2 * gap - h < 0:
                raise RenderError(f"a {width}x{height} image is too small to draw shapes in")
            for _ in range(50):
                x0, y0 = rng.uniform(gap, width - gap - w), rng.uniform(gap, height - gap - h)
                box = (x0, y0, x0 + w, y0 + h)
                if all(_separated(box, b, gap) for b in boxes) and _relations_hold(
                    k, box, gi, boxes, members, constraints
                ):
                    boxes.append(box)
                    break
            else:
                break
        if len(boxes) == len(members):
            return boxes
        upper = max(0.1, upper * 0.9)
    raise RenderError(f"could not place {len(members)} shapes in a {width}x{height} image")


def _relations_hold(
    k: int,
    box: Box,
    gi: int,
    boxes: list[Box],
    members: list[tuple[int, str, str]],
    constraints: list[tuple[int, str, int]],
) -> bool:
    """Whether a new box (object k, of group gi) keeps every relation with the boxes placed so far."""
    for subject, rel, target in constraints:
        for other, placed in zip(members[:k], boxes, strict=True):
            if gi == subject and other[0] == target and relation_scores(box, placed)[rel] < RELATION_MARGIN:
                return False
            if gi == target and other[0] == subject and relation_scores(placed, box)[rel] < RELATION_MARGIN:
                return False
    return True


def _shape_points(cls: str, box: Box) -> list[tuple[float, float]] | None:
    """Polygon corners of a shape in its box (None for a circle)."""
    x0, y0, x1, y1 = box
    cx = (x0 + x1) / 2
    if cls == "circle":
        return None
    if cls == "square":
        return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    if cls == "triangle":
        return [(cx, y0), (x1, y1), (x0, y1)]
    if cls == "cross":
        a, b = (2 * x0 + x1) / 3, (x0 + 2 * x1) / 3
        c, d = (2 * y0 + y1) / 3, (y0 + 2 * y1) / 3
        return [(a, y0), (b, y0), (b, c), (x1, c), (x1, d), (b, d), (b, y1), (a, y1), (a, d), (x0, d), (x0, c), (a, c)]
    raise RenderError(f"unknown class {cls!r}")


def _draw(objects: tuple[DrawnObject, ...], width: int, height: int, background: tuple[int, int, int]) -> Image.Image:
    s = SUPERSAMPLE
    canvas = Image.new("RGB", (width * s, height * s), background)
    draw = ImageDraw.Draw(canvas)
    for obj in objects:
        fill = PALETTE[obj.color]
        points = _shape_points(obj.cls, obj.box)
        if points is None:
            x0, y0, x1, y1 = (v * s for v in obj.box)
            draw.ellipse((x0, y0, x1 - 1, y1 - 1), fill=fill)
        else:
            draw.polygon([(x * s, y * s) for x, y in points], fill=fill)
    return canvas.resize((width, height), Image.Resampling.BOX)


def degrade_image(image: Image.Image, degrade: Degradation, rng: np.random.Generator) -> np.ndarray:
    """Blur, noise (from `rng`), JPEG round trip, as `degrade` says; returns HxWx3 uint8."""
    if degrade.blur > 0:
        image = image.filter(ImageFilter.GaussianBlur(degrade.blur))
    array = np.asarray(image, dtype=np.uint8)
    if degrade.noise > 0:
        noisy = array.astype(np.float64) + rng.normal(0.0, degrade.noise, array.shape)
        array = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    if degrade.jpeg is not None:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="JPEG", quality=degrade.jpeg)
        buffer.seek(0)
        with Image.open(buffer) as im:
            array = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(array)
