"""Rough line sketches of a spec, drawn procedurally: the init images of image-to-image suites (`sketch:KEY`).

A sketch is black pencil-like strokes on white, 512x512: each object of the spec as a simple outline, as many as
its count, laid out so that GenEval's position rule holds between the objects a relation names. Strokes wobble
like a hand-drawn line; the wobble comes from a generator seeded by the key, so a (spec, key) pair always gives
the same pixels. Files are written as BMP under the cache root: BMP has no compressor whose version could change
the bytes, so an init image's sha256 (part of every image's identity) is the same on every machine.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sdeval.core import atomic
from sdeval.core.paths import cache_root
from sdeval.suites.spec import Spec

SIZE = 512
#: Part of every sketch's cache name: bump it when a drawing changes (that changes the pixels and the sha256).
VERSION = 1
INK = 20  # near-black, a soft pencil
MAX_OBJECTS = 4  # per include entry; a sketch with more is a crowd, not a layout
Box = tuple[float, float, float, float]
Point = tuple[float, float]


@dataclass(frozen=True)
class Sketch:
    """The drawing (mode L) and where each object went: (class, (x0, y0, x1, y1)) in pixels."""

    image: Any
    boxes: tuple[tuple[str, Box], ...]


class _Pen:
    """Wobbly strokes: each outline is cut into short segments whose points are jittered, and drawn twice."""

    def __init__(self, draw: Any, rng: np.random.Generator, scale: float) -> None:
        self.draw, self.rng, self.scale = draw, rng, scale

    def line(self, points: Sequence[Point], closed: bool = False) -> None:
        pts = [*points, points[0]] if closed else list(points)
        dense: list[Point] = [pts[0]]
        for (x0, y0), (x1, y1) in itertools.pairwise(pts):
            steps = max(1, math.ceil(math.hypot(x1 - x0, y1 - y0) / (10 * self.scale)))
            dense.extend((x0 + (x1 - x0) * t / steps, y0 + (y1 - y0) * t / steps) for t in range(1, steps + 1))
        width = max(2, round(3 * self.scale))
        for shade, spread in ((INK, 1.2), (INK + 70, 2.0)):
            noise = self.rng.normal(0.0, spread * self.scale, size=(len(dense), 2))
            wobbly = [(x + float(dx), y + float(dy)) for (x, y), (dx, dy) in zip(dense, noise, strict=True)]
            self.draw.line(wobbly, fill=shade, width=width if shade == INK else max(1, width - 1), joint="curve")

    def arc(self, cx: float, cy: float, rx: float, ry: float, start: float = 0, end: float = 360) -> None:
        """Part of an ellipse, angles in degrees (0 = right, 90 = down, as PIL)."""
        n = max(8, int(abs(end - start) / 8))
        angles = np.radians(np.linspace(start, end, n + 1))
        self.line([(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles])

    def ellipse(self, cx: float, cy: float, rx: float, ry: float) -> None:
        self.arc(cx, cy, rx, ry, 0, 360)

    def rect(self, x0: float, y0: float, x1: float, y1: float) -> None:
        self.line([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], closed=True)


def _ball(p: _Pen, x0: float, y0: float, x1: float, y1: float) -> None:
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    p.ellipse(cx, cy, r, r)
    p.arc(cx - 1.55 * r, cy, 1.2 * r, 1.2 * r, -40, 40)
    p.arc(cx + 1.55 * r, cy, 1.2 * r, 1.2 * r, 140, 220)


def _clock(p: _Pen, x0: float, y0: float, x1: float, y1: float) -> None:
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    p.ellipse(cx, cy, r, r)
    for k in range(12):
        a = math.radians(30 * k)
        p.line(
            [
                (cx + 0.8 * r * math.cos(a), cy + 0.8 * r * math.sin(a)),
                (cx + 0.92 * r * math.cos(a), cy + 0.92 * r * math.sin(a)),
            ]
        )
    p.line([(cx, cy), (cx, cy - 0.6 * r)])
    p.line([(cx, cy), (cx + 0.42 * r, cy + 0.12 * r)])


def _orange(p: _Pen, x0: float, y0: float, x1: float, y1: float) -> None:
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    p.ellipse(cx, cy, r, r * 0.95)
    p.line([(cx - 0.05 * r, cy - 0.95 * r), (cx + 0.05 * r, cy - 1.0 * r)])
    p.arc(cx + 0.25 * r, cy - 1.0 * r, 0.25 * r, 0.1 * r)  # a leaf
    for a in (200, 240, 300):
        x, y = cx + 0.5 * r * math.cos(math.radians(a)), cy + 0.5 * r * math.sin(math.radians(a))
        p.line([(x, y), (x + 0.04 * r, y + 0.04 * r)])


def _apple(p: _Pen, x0: float, y0: float, x1: float, y1: float) -> None:
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2 + (y1 - y0) * 0.05, (x1 - x0) / 2
    pts = []
    for t in np.linspace(0, 2 * math.pi, 49):
        # A circle pulled in at the top and the bottom: the apple's two dimples.
        dent = 0.18 * max(0.0, math.cos(t)) ** 6 + 0.08 * max(0.0, -math.cos(t)) ** 6
        rr = r * (1 - dent)
        pts.append((cx + rr * math.sin(t), cy - rr * math.cos(t) * 0.92))
    p.line(pts)
    p.line([(cx, cy - 0.75 * r), (cx + 0.1 * r, cy - 1.15 * r)])
    p.arc(cx + 0.35 * r, cy - 1.0 * r, 0.28 * r, 0.12 * r)


def _donut(p: _Pen, x0: float, y0: float, x1: float, y1: float) -> None:
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    p.ellipse(cx, cy, rx, ry)
    p.ellipse(cx, cy - 0.05 * ry, 0.32 * rx, 0.28 * ry)
    p.arc(cx, cy, 0.75 * rx, 0.7 * ry, 200, 340)  # the icing edge
    for a in (30, 70, 150, 250, 290):
        x, y = cx + 0.62 * rx * math.cos(math.radians(a)), cy + 0.6 * ry * math.sin(math.radians(a))
        p.line([(x, y), (x + 0.07 * rx, y - 0.04 * ry)])


def _frisbee(p: _Pen, x0: float, y0: float, x1: float, y1: float) -> None:
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    p.ellipse(cx, cy, rx, ry)
    p.ellipse(cx, cy - 0.1 * ry, 0.7 * rx, 0.6 * ry)


def _pizza(p: _Pen, x0: float, y0: float, x1: float, y1: float) -> None:
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    p.ellipse(cx, cy, r, r)
    p.ellipse(cx, cy, 0.85 * r, 0.85 * r)
    for a in (0, 60, 120):
        dx, dy = 0.85 * r * math.cos(math.radians(a)), 0.85 * r * math.sin(math.radians(a))
        p.line([(cx - dx, cy - dy), (cx + dx, cy + dy)])
    for a, d in ((30, 0.5), (150, 0.45), (270, 0.55), (90, 0.35)):
        x, y = cx + d * r * math.cos(math.radians(a)), cy + d * r * math.sin(math.radians(a))
        p.ellipse(x, y, 0.1 * r, 0.1 * r)


def _tv(p: _Pen, x0: float, y0: float, x1: float, y1: float) -> None:
    w, h = x1 - x0, y1 - y0
    p.rect(x0, y0, x1, y0 + 0.82 * h)
    p.rect(x0 + 0.06 * w, y0 + 0.08 * h, x1 - 0.06 * w, y0 + 0.74 * h)
    cx = (x0 + x1) / 2
    p.line([(cx - 0.08 * w, y0 + 0.82 * h), (cx - 0.12 * w, y1)])
    p.line([(cx + 0.08 * w, y0 + 0.82 * h), (cx + 0.12 * w, y1)])
    p.line([(cx - 0.25 * w, y1), (cx + 0.25 * w, y1)])


def _laptop(p: _Pen, x0: float, y0: float, x1: float, y1: float) -> None:
    w, h = x1 - x0, y1 - y0
    p.rect(x0 + 0.1 * w, y0, x1 - 0.1 * w, y0 + 0.6 * h)
    p.rect(x0 + 0.15 * w, y0 + 0.06 * h, x1 - 0.15 * w, y0 + 0.54 * h)
    p.line([(x0 + 0.1 * w, y0 + 0.6 * h), (x1 - 0.1 * w, y0 + 0.6 * h), (x1, y1), (x0, y1)], closed=True)
    for k in range(1, 3):
        y = y0 + (0.6 + 0.13 * k) * h
        p.line([(x0 + (0.1 - 0.035 * k) * w + 0.05 * w, y), (x1 - (0.1 - 0.035 * k) * w - 0.05 * w, y)])


def _book(p: _Pen, x0: float, y0: float, x1: float, y1: float) -> None:
    w, h = x1 - x0, y1 - y0
    p.rect(x0, y0, x1, y1)
    p.line([(x0 + 0.12 * w, y0), (x0 + 0.12 * w, y1)])
    p.line([(x0 + 0.3 * w, y0 + 0.2 * h), (x1 - 0.15 * w, y0 + 0.2 * h)])
    p.line([(x0 + 0.3 * w, y0 + 0.28 * h), (x1 - 0.3 * w, y0 + 0.28 * h)])


def _phone(p: _Pen, x0: float, y0: float, x1: float, y1: float) -> None:
    w, h = x1 - x0, y1 - y0
    r = 0.15 * w
    p.line(
        [
            (x0 + r, y0),
            (x1 - r, y0),
            (x1, y0 + r),
            (x1, y1 - r),
            (x1 - r, y1),
            (x0 + r, y1),
            (x0, y1 - r),
            (x0, y0 + r),
        ],
        closed=True,
    )
    p.rect(x0 + 0.1 * w, y0 + 0.1 * h, x1 - 0.1 * w, y0 + 0.84 * h)
    p.ellipse((x0 + x1) / 2, y0 + 0.92 * h, 0.07 * w, 0.07 * w)


def _stop_sign(p: _Pen, x0: float, y0: float, x1: float, y1: float) -> None:
    w = x1 - x0
    cx, r = (x0 + x1) / 2, w / 2
    cy = y0 + r
    angles = [math.radians(22.5 + 45 * k) for k in range(8)]
    for rr in (r, 0.8 * r):
        p.line([(cx + rr * math.cos(a), cy + rr * math.sin(a)) for a in angles], closed=True)
    p.line([(cx - 0.05 * w, cy + r), (cx - 0.05 * w, y1)])
    p.line([(cx + 0.05 * w, cy + r), (cx + 0.05 * w, y1)])


def _kite(p: _Pen, x0: float, y0: float, x1: float, y1: float) -> None:
    w, h = x1 - x0, y1 - y0
    cx = (x0 + x1) / 2
    top, mid, bottom = y0, y0 + 0.28 * h, y0 + 0.72 * h
    p.line([(cx, top), (x1, mid), (cx, bottom), (x0, mid)], closed=True)
    p.line([(cx, top), (cx, bottom)])
    p.line([(x0, mid), (x1, mid)])
    tail = [(cx + 0.08 * w * math.sin(t * 2.2), bottom + (y1 - bottom) * t / 3) for t in np.linspace(0, 3, 13)]
    p.line(tail)


def _cup(p: _Pen, x0: float, y0: float, x1: float, y1: float) -> None:
    w, h = x1 - x0, y1 - y0
    left, right = x0, x0 + 0.78 * w
    cx = (left + right) / 2
    p.ellipse(cx, y0 + 0.08 * h, (right - left) / 2, 0.08 * h)
    p.line([(left, y0 + 0.08 * h), (left + 0.08 * w, y1 - 0.05 * h)])
    p.line([(right, y0 + 0.08 * h), (right - 0.08 * w, y1 - 0.05 * h)])
    p.arc(cx, y1 - 0.05 * h, (right - left) / 2 - 0.08 * w, 0.05 * h, 0, 180)
    p.arc(right - 0.02 * w, y0 + 0.45 * h, 0.2 * w, 0.2 * h, -80, 80)


def _bottle(p: _Pen, x0: float, y0: float, x1: float, y1: float) -> None:
    w, h = x1 - x0, y1 - y0
    cx = (x0 + x1) / 2
    neck = 0.18 * w
    p.line(
        [(cx - neck, y0 + 0.08 * h), (cx - neck, y0 + 0.25 * h), (x0, y0 + 0.4 * h), (x0, y1), (x1, y1),
         (x1, y0 + 0.4 * h), (cx + neck, y0 + 0.25 * h), (cx + neck, y0 + 0.08 * h)],
    )  # fmt: skip
    p.rect(cx - neck * 1.1, y0, cx + neck * 1.1, y0 + 0.08 * h)
    p.rect(x0 + 0.1 * w, y0 + 0.55 * h, x1 - 0.1 * w, y0 + 0.78 * h)  # the label


def _wine_glass(p: _Pen, x0: float, y0: float, x1: float, y1: float) -> None:
    w, h = x1 - x0, y1 - y0
    cx = (x0 + x1) / 2
    p.ellipse(cx, y0 + 0.05 * h, w / 2, 0.05 * h)
    p.arc(cx, y0 + 0.05 * h, w / 2, 0.42 * h, 0, 180)
    p.line([(cx, y0 + 0.47 * h), (cx, y1 - 0.05 * h)])
    p.ellipse(cx, y1 - 0.05 * h, 0.35 * w, 0.05 * h)


def _umbrella(p: _Pen, x0: float, y0: float, x1: float, y1: float) -> None:
    w, h = x1 - x0, y1 - y0
    cx, rim = (x0 + x1) / 2, y0 + 0.45 * h
    p.arc(cx, rim, w / 2, 0.45 * h, 180, 360)
    for k in range(4):
        a, b = x0 + k * w / 4, x0 + (k + 1) * w / 4
        p.arc((a + b) / 2, rim, (b - a) / 2, 0.06 * h, 180, 360)
    p.line([(cx, y0), (cx, y1 - 0.08 * h)])
    p.arc(cx - 0.08 * w, y1 - 0.08 * h, 0.08 * w, 0.08 * h, 0, 180)


def _bowl(p: _Pen, x0: float, y0: float, x1: float, y1: float) -> None:
    w, h = x1 - x0, y1 - y0
    cx = (x0 + x1) / 2
    p.ellipse(cx, y0 + 0.15 * h, w / 2, 0.15 * h)
    p.arc(cx, y0 + 0.15 * h, w / 2, 0.72 * h, 0, 180)
    p.line([(cx - 0.18 * w, y1 - 0.06 * h), (cx - 0.2 * w, y1), (cx + 0.2 * w, y1), (cx + 0.18 * w, y1 - 0.06 * h)])


def _vase(p: _Pen, x0: float, y0: float, x1: float, y1: float) -> None:
    w, h = x1 - x0, y1 - y0
    cx = (x0 + x1) / 2
    ts = np.linspace(0, 1, 25)
    # Half-width along the height: a flared lip, a narrow neck, a round belly, a flat foot.
    neck = [0.25 * math.sin(math.pi * min(t / 0.3, 1)) for t in ts]
    belly = [0.55 * max(0.0, math.sin(math.pi * (t - 0.25) / 0.8)) for t in ts]
    half = [w / 2 * (0.45 - n + b) for n, b in zip(neck, belly, strict=True)]
    right = [(cx + hw, y0 + t * h) for t, hw in zip(ts, half, strict=True)]
    left = [(cx - hw, y0 + t * h) for t, hw in zip(ts, half, strict=True)]
    p.line([*left[::-1], *right])
    p.line([right[-1], left[-1]])
    p.ellipse(cx, y0, half[0], 0.03 * h)


def _cake(p: _Pen, x0: float, y0: float, x1: float, y1: float) -> None:
    w, h = x1 - x0, y1 - y0
    cx, top = (x0 + x1) / 2, y0 + 0.35 * h
    p.ellipse(cx, top, w / 2, 0.1 * h)
    p.line([(x0, top), (x0, y1 - 0.1 * h)])
    p.line([(x1, top), (x1, y1 - 0.1 * h)])
    p.arc(cx, y1 - 0.1 * h, w / 2, 0.1 * h, 0, 180)
    p.arc(cx, top + 0.3 * h, w / 2, 0.1 * h, 0, 180)
    p.rect(cx - 0.04 * w, y0 + 0.1 * h, cx + 0.04 * w, top)
    p.arc(cx, y0 + 0.05 * h, 0.03 * w, 0.05 * h)


def _traffic_light(p: _Pen, x0: float, y0: float, x1: float, y1: float) -> None:
    w, h = x1 - x0, y1 - y0
    cx = (x0 + x1) / 2
    p.rect(x0, y0, x1, y0 + 0.8 * h)
    for k in range(3):
        p.ellipse(cx, y0 + (0.15 + 0.25 * k) * h, 0.3 * w, 0.3 * w)
    p.line([(cx, y0 + 0.8 * h), (cx, y1)])


#: Classes a sketch can draw: (width / height, drawing function).
CLASSES: dict[str, tuple[float, Callable[[_Pen, float, float, float, float], None]]] = {
    "apple": (1.0, _apple),
    "book": (0.75, _book),
    "bottle": (0.38, _bottle),
    "bowl": (1.8, _bowl),
    "cake": (1.0, _cake),
    "cell phone": (0.5, _phone),
    "clock": (1.0, _clock),
    "cup": (1.1, _cup),
    "donut": (1.3, _donut),
    "frisbee": (2.2, _frisbee),
    "kite": (0.7, _kite),
    "laptop": (1.3, _laptop),
    "orange": (1.0, _orange),
    "pizza": (1.0, _pizza),
    "sports ball": (1.0, _ball),
    "stop sign": (0.55, _stop_sign),
    "traffic light": (0.4, _traffic_light),
    "tv": (1.4, _tv),
    "umbrella": (1.1, _umbrella),
    "vase": (0.6, _vase),
    "wine glass": (0.5, _wine_glass),
}


def sketch_problem(spec: Spec) -> str | None:
    """Why a spec cannot be sketched, or None."""
    unknown = [i.cls for i in spec.include if i.cls not in CLASSES]
    if unknown:
        return f"sketch: cannot draw {unknown[0]!r} (drawable: {', '.join(CLASSES)})"
    if len(spec.include) > 2:
        return "sketch: draws at most two include entries"
    if any(i.count > MAX_OBJECTS for i in spec.include):
        return f"sketch: draws at most {MAX_OBJECTS} objects of a class"
    return None


def _seed(key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"sdeval-sketch/v{VERSION}/{key}".encode()).digest()[:8], "big")


def _regions(spec: Spec, rng: np.random.Generator, size: int) -> list[Box]:
    """One region per include entry; a relation puts the two on the sides it names."""
    margin = 0.06 * size
    full = (margin, margin, size - margin, size - margin)
    if len(spec.include) == 1:
        return [full]
    subject, relation = 1, None
    for i, inc in enumerate(spec.include):
        if inc.position is not None:
            subject, relation = i, inc.position[0]
    if relation is None:
        relation = ("left of", "right of")[int(rng.integers(2))]
    x0, y0, x1, y1 = full
    mx, my = size / 2, size / 2
    halves = {
        "left of": ((x0, y0, mx, y1), (mx, y0, x1, y1)),
        "right of": ((mx, y0, x1, y1), (x0, y0, mx, y1)),
        "above": ((x0, y0, x1, my), (x0, my, x1, y1)),
        "below": ((x0, my, x1, y1), (x0, y0, x1, my)),
    }[relation]
    regions = [halves[1], halves[1]]
    regions[subject] = halves[0]
    return regions


def _cells(region: Box, n: int) -> list[Box]:
    """n cells in a region: a row (or column) along its long side, 2x2 for four."""
    x0, y0, x1, y1 = region
    w, h = x1 - x0, y1 - y0
    if n == 4:
        cols, rows = 2, 2
    elif w >= h:
        cols, rows = n, 1
    else:
        cols, rows = 1, n
    cw, ch = w / cols, h / rows
    cells = [(x0 + c * cw, y0 + r * ch, x0 + (c + 1) * cw, y0 + (r + 1) * ch) for r in range(rows) for c in range(cols)]
    return cells[:n]


def _place(cell: Box, aspect: float, rng: np.random.Generator) -> Box:
    """An object's box in its cell: 62-80 % of the cell, at the class's aspect, shifted a little."""
    x0, y0, x1, y1 = cell
    cw, ch = x1 - x0, y1 - y0
    scale = float(rng.uniform(0.62, 0.8))
    w = min(cw * scale, ch * scale * aspect)
    h = w / aspect
    # Shift by at most 30 % of the slack, so an object keeps to its side of a relation.
    dx = float(rng.uniform(-0.3, 0.3)) * (cw - w)
    dy = float(rng.uniform(-0.3, 0.3)) * (ch - h)
    cx, cy = (x0 + x1) / 2 + dx, (y0 + y1) / 2 + dy
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def draw_sketch(spec: Spec, key: str, size: int = SIZE) -> Sketch:
    """The sketch of a spec: same (spec, key, size), same pixels. Colours and excludes are not drawn."""
    from PIL import Image, ImageDraw  # PIL: when a sketch is drawn, not when a suite's specs are checked

    problem = sketch_problem(spec)
    if problem:
        raise ValueError(problem)
    rng = np.random.default_rng(_seed(key))
    image = Image.new("L", (size, size), 255)
    pen = _Pen(ImageDraw.Draw(image), rng, size / SIZE)
    boxes: list[tuple[str, Box]] = []
    for inc, region in zip(spec.include, _regions(spec, rng, size), strict=True):
        aspect, draw = CLASSES[inc.cls]
        for cell in _cells(region, inc.count):
            box = _place(cell, aspect, rng)
            draw(pen, *box)
            boxes.append((inc.cls, box))
    return Sketch(image=image, boxes=tuple(boxes))


def sketch_bytes(spec: Spec, key: str) -> bytes:
    """The sketch as BMP file bytes (uncompressed: the same bytes wherever it is drawn)."""
    buffer = io.BytesIO()
    draw_sketch(spec, key).image.save(buffer, format="BMP")
    return buffer.getvalue()


def sketch_file(spec: Spec, key: str, folder: Path | None = None) -> Path:
    """The sketch's file in the cache (`<cache root>/sketches/`), drawn and written when missing or different."""
    data = sketch_bytes(spec, key)
    name = hashlib.sha256(
        json.dumps({"v": VERSION, "key": key, "spec": spec.to_json()}, sort_keys=True).encode("utf-8")
    ).hexdigest()[:24]
    path = (folder or cache_root() / "sketches") / f"{name}.bmp"
    try:
        same = path.read_bytes() == data
    except OSError:
        same = False
    if not same:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(path, data)
    return path
