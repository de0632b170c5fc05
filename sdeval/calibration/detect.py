"""Find the calibration world's shapes in an image: flat-coloured shapes on a plain background.

1. Background: the per-channel median of the image's 2 px border (shapes cover less than half of it).
2. Foreground: pixels more than `FOREGROUND_DELTA_E` from the background in CIELAB; 8-connected components,
   specks below a size floor dropped.
3. Per component, its colour is the median of its interior (the mask eroded, so anti-aliased and JPEG-rung
   edges do not pull it); the shape's own mask is then re-cut at half contrast along the background ->
   colour line, which puts the edge where an anti-aliased drawing put it.
4. Class from rotation-invariant numbers of that mask (small shapes: of the coverage map upsampled to ~48 px,
   so anti-aliased edges count to a fraction of a pixel):
   - k-fold symmetry h_k = |sum r^2 e^(-ik theta)| / sum r^2 over its pixels, in polar coordinates about the
     centroid: triangle (any) h3 0.55; circle h4 0; square h4 0.29; cross h4 0.48;
   - solidity = area / convex hull area: 1 for the convex shapes, 0.72 for the cross;
   - fill = area / smallest enclosing rectangle (any rotation): square 1, circle 0.785, cross 0.63, triangle
     exactly 1/2 whatever its shape.
   Triangle when h3 >= 0.19; else circle when h4 < 0.14; else cross when h4 + (1 - solidity) + (1 - fill)
   >= 0.5 (square 0.29, cross 1.14: the three differences add up), else square.
5. Colour: the nearest palette colour in CIELAB.

Measured over ~4000 shapes from 1/10 of a 128 px side up, drawn by this package (also blurred, noisy, JPEG)
and by independent code (rotated, Lanczos-resampled, JPEG q75, noise, colours off the palette, seven
backgrounds): triangle h3 >= 0.28 against <= 0.09 for the rest; circle h4 <= 0.06 against square >= 0.22;
the cross score <= 0.43 for squares and >= 0.6 for crosses. Every threshold keeps a margin of >= 0.07.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from sdeval.calibration.world import nearest_color, srgb_to_lab
from sdeval.judges.base import Detection

FOREGROUND_DELTA_E = 18.0
#: Smallest shape side found, as a share of the image's short side (the world draws 1/10 and up).
MIN_SIDE = 1 / 25
# Class thresholds (module docstring, step 4), each midway between the classes it separates.
_TRIANGLE_H3 = 0.19
_CIRCLE_H4 = 0.14
_CROSS_SCORE = 0.5
#: Shapes smaller than this (px) are measured on an upsampled coverage map.
_MEASURE_SIDE = 48
#: RGB -> YCbCr (BT.601, as JPEG), chroma scaled by CHROMA_WEIGHT.
CHROMA_WEIGHT = 0.3
_YCC_WEIGHTED = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]
).T * np.array([1.0, CHROMA_WEIGHT, CHROMA_WEIGHT])


def detect_shapes(image: np.ndarray) -> list[Detection]:
    """Every shape in an HxWx3 uint8 RGB image, largest first, with class, palette colour and pixel box."""
    rgb = np.asarray(image)
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {rgb.dtype}")
    rgb8 = np.ascontiguousarray(rgb[..., :3])
    rgb = rgb8.astype(np.float64)
    height, width = rgb.shape[:2]
    border = np.concatenate(
        [rgb[:2].reshape(-1, 3), rgb[-2:].reshape(-1, 3), rgb[:, :2].reshape(-1, 3), rgb[:, -2:].reshape(-1, 3)]
    )
    background = np.median(border, axis=0)
    diff = srgb_to_lab(rgb8) - srgb_to_lab(background)
    foreground = np.einsum("...i,...i->...", diff, diff) > FOREGROUND_DELTA_E**2
    # Without `output=`, label returns (labels, count); the type inferred from scipy's source also has the int
    # it returns when given one.
    labels, count = ndimage.label(foreground, structure=np.ones((3, 3), dtype=bool))  # pyright: ignore[reportGeneralTypeIssues]
    if count == 0:
        return []
    min_side = max(3.0, MIN_SIDE * min(height, width))
    found: list[_Shape] = []
    for index, where in enumerate(ndimage.find_objects(labels), start=1):
        if where is None:
            continue
        # A margin of 2 px around the component: its anti-aliased rim may sit below the foreground cut.
        ys = slice(max(where[0].start - 2, 0), min(where[0].stop + 2, height))
        xs = slice(max(where[1].start - 2, 0), min(where[1].stop + 2, width))
        component = labels[ys, xs] == index
        if component.sum() < min_side * min_side / 2:
            continue
        shape = _measure(rgb[ys, xs], labels[ys, xs], component, background, (xs.start, ys.start))
        if shape is not None:
            found.append(shape)
    found.sort(key=lambda f: -f.area)
    return [
        Detection(cls=_classify(s.h3, s.h4, s.solidity, s.fill), score=1.0, box=s.box, color=nearest_color(s.color)[0])
        for s in found
    ]


@dataclass(frozen=True)
class _Shape:
    """One component, measured: area (px), box, median interior colour (RGB) and the class features."""

    area: float
    box: tuple[float, float, float, float]
    color: np.ndarray
    h3: float
    h4: float
    solidity: float
    fill: float


def _measure(
    rgb: np.ndarray, labels: np.ndarray, component: np.ndarray, background: np.ndarray, origin: tuple[int, int]
) -> _Shape | None:
    interior = ndimage.binary_erosion(component, iterations=2)
    if interior.sum() < 0.2 * component.sum():
        interior = ndimage.binary_erosion(component, iterations=1)
    if interior.sum() < 4:
        interior = component
    # binary_erosion returns a bool array; the type inferred from scipy's source is a union of array types.
    color = np.median(rgb[interior], axis=0)  # pyright: ignore[reportCallIssue, reportArgumentType]
    # How far each pixel is from the background towards this shape's colour (its coverage when anti-aliased),
    # measured in YCbCr with chroma down-weighted: JPEG keeps luma sharp but halves chroma resolution.
    contrast = (color - background) @ _YCC_WEIGHTED
    scale = float(contrast @ contrast)
    if scale <= 1e-9:
        return None
    alpha = ((rgb - background) @ _YCC_WEIGHTED) @ contrast / scale
    # Only pixels of this component or of the background ring around it count, never a neighbour's.
    near = ndimage.binary_dilation(component, iterations=2) & ((labels == 0) | component)
    alpha = np.where(near, alpha, 0.0)
    mask = alpha >= 0.5
    area = float(mask.sum())
    ys, xs = np.nonzero(mask)
    if area < 6 or np.ptp(xs) < 2 or np.ptp(ys) < 2:
        return None
    # Small shapes are measured on the coverage map upsampled (bilinear) to ~48 px a side: a cut at 1/2
    # there follows anti-aliased edges to a fraction of a pixel, where a cut of the raw pixels is blocky.
    factor = int(min(4, max(1, math.ceil(_MEASURE_SIDE / max(np.ptp(xs), np.ptp(ys))))))
    fine = ndimage.zoom(alpha, factor, order=1) >= 0.5 if factor > 1 else mask
    features = _features(fine)  # pyright: ignore[reportArgumentType]  # zoom returns an ndarray (scipy's source says less)
    if features is None:
        return None
    x0, y0 = origin
    box = (float(x0 + xs.min()), float(y0 + ys.min()), float(x0 + xs.max() + 1), float(y0 + ys.max() + 1))
    return _Shape(area, box, color, *features)


def _features(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """(h3, h4, solidity, fill) of a binary mask; None if it is too thin to have a hull."""
    ys, xs = np.nonzero(mask)
    edge = mask & ~ndimage.binary_erosion(mask)  # pyright: ignore[reportOperatorIssue]  # binary_erosion returns a bool ndarray
    ey, ex = np.nonzero(edge)
    try:
        hull = ConvexHull(np.column_stack([ex, ey]).astype(np.float64))
    except QhullError:
        return None
    area = float(len(xs))
    corners = hull.points[hull.vertices]
    # Hull and rectangle are measured through pixel centres; grow them to the pixels' outer edges (Steiner
    # formula for the hull: + half the perimeter + a quarter disc; the rectangle: + 1 on each side).
    solidity = area / (hull.volume + 0.5 * hull.area + math.pi / 4)
    fill = area / _min_rect_area(corners)
    z = (xs - xs.mean()) + 1j * (ys - ys.mean())
    r2 = np.abs(z) ** 2
    keep = r2 > 0
    z, r2 = z[keep], r2[keep]
    # sum r^2 e^(-ik theta) = sum conj(z)^k / r^(k-2)
    h3 = float(np.abs((np.conj(z) ** 3 / np.sqrt(r2)).sum()) / r2.sum())
    h4 = float(np.abs((np.conj(z) ** 4 / r2).sum()) / r2.sum())
    return h3, h4, solidity, fill


def _min_rect_area(corners: np.ndarray) -> float:
    """Area of the smallest rectangle (any rotation) around a convex polygon, each side grown by one pixel."""
    edges = np.roll(corners, -1, axis=0) - corners
    # The smallest rectangle has a side along one of the polygon's edges: try each edge direction.
    angles = np.unique(np.mod(np.arctan2(edges[:, 1], edges[:, 0]), math.pi / 2))
    c, s = np.cos(angles)[:, None], np.sin(angles)[:, None]
    u = corners[:, 0] * c + corners[:, 1] * s
    v = corners[:, 1] * c - corners[:, 0] * s
    return float(((np.ptp(u, axis=1) + 1) * (np.ptp(v, axis=1) + 1)).min())


def _classify(h3: float, h4: float, solidity: float, fill: float) -> str:
    if h3 >= _TRIANGLE_H3:
        return "triangle"
    if h4 < _CIRCLE_H4:
        return "circle"
    # Square and cross differ in all three: the cross's arms (h4), its notches (solidity), its empty corners.
    return "cross" if h4 + (1 - solidity) + (1 - fill) >= _CROSS_SCORE else "square"
