"""The calibration world's vocabulary and options: shape classes, the colour palette, mistake rates, degradations.

Colours are compared in CIELAB (D65, ΔE76): a nearest-palette rule there matches what people call "red" or
"orange" far better than RGB distance, and the palette below is spaced so that every pair is at least ~38 ΔE
apart and the usual textbook values (pure red, blue, yellow, ...) land on the right name.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from sdeval.core.errors import ConfigError
from sdeval.core.suggest import check_keys
from sdeval.suites.spec import CATEGORIES

#: The checkpoint path that names this world in a generation config.
SHAPES_NAME = "shapes"
#: Shape classes the world draws and the detector tells apart (rotation-invariant features, see detect.py).
CLASSES = ("circle", "square", "triangle", "cross")
#: Plurals for prompt text.
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "cross": "crosses"}
#: GenEval's ten colour names, each with the sRGB value the world draws it in.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 135, 20),
    "yellow": (240, 220, 30),
    "green": (40, 160, 60),
    "blue": (25, 90, 235),
    "purple": (135, 45, 160),
    "pink": (240, 130, 190),
    "brown": (125, 75, 35),
    "black": (20, 20, 20),
    "white": (240, 240, 240),
}
#: Mid grey: far (>= 40 ΔE) from every palette colour, black and white included.
DEFAULT_BACKGROUND = (128, 128, 128)
#: A background closer than this to a palette colour would hide shapes of that colour.
MIN_BACKGROUND_DELTA_E = 25.0
#: Bump when a change to drawing or mistakes changes pixels for the same (spec, seed, options).
WORLD_VERSION = 1

_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
_WHITE = np.array([0.95047, 1.0, 1.08883])


_LEVELS = np.arange(256) / 255.0
_LINEAR_LUT = np.where(_LEVELS <= 0.04045, _LEVELS / 12.92, ((_LEVELS + 0.055) / 1.055) ** 2.4)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in 0..255 (any shape ending in 3) to CIELAB under D65; uint8 input takes a lookup table."""
    rgb = np.asarray(rgb)
    if rgb.dtype == np.uint8:
        linear = _LINEAR_LUT[rgb]
    else:
        c = rgb.astype(np.float64) / 255.0
        linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ (_XYZ.T / _WHITE)
    eps = (6 / 29) ** 3
    f = np.where(xyz > eps, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


_PALETTE_NAMES = tuple(PALETTE)
_PALETTE_LAB = srgb_to_lab(np.array([PALETTE[n] for n in _PALETTE_NAMES]))


def nearest_color(rgb: Any) -> tuple[str, float]:
    """The palette name nearest to an sRGB colour, and its ΔE."""
    dist = np.linalg.norm(_PALETTE_LAB - srgb_to_lab(np.asarray(rgb, dtype=np.float64)), axis=-1)
    i = int(np.argmin(dist))
    return _PALETTE_NAMES[i], float(dist[i])


def delta_e(a: Any, b: Any) -> float:
    """ΔE76 between two sRGB colours."""
    return float(np.linalg.norm(srgb_to_lab(np.asarray(a, dtype=np.float64)) - srgb_to_lab(np.asarray(b))))


@dataclass(frozen=True)
class MistakeRates:
    """Probability that an image of each GenEval category gets one mistake of that category's kind."""

    single_object: float = 0.0
    two_object: float = 0.0
    counting: float = 0.0
    colors: float = 0.0
    position: float = 0.0
    color_attr: float = 0.0

    def rate(self, tag: str) -> float:
        """The rate for a spec's tag (0 for a tag outside GenEval's six)."""
        return float(getattr(self, tag, 0.0)) if tag in CATEGORIES else 0.0

    def to_json(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Degradation:
    """Applied after drawing, in this order: Gaussian blur (radius in px), additive Gaussian noise (sigma in
    8-bit levels), a JPEG round trip (quality 1..95; None: none)."""

    blur: float = 0.0
    noise: float = 0.0
    jpeg: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"blur": self.blur, "noise": self.noise, "jpeg": self.jpeg}


@dataclass(frozen=True)
class ShapesOptions:
    """The options of a `shapes` checkpoint entry; all of them are part of its identity and hash."""

    mistakes: MistakeRates = field(default_factory=MistakeRates)
    degrade: Degradation = field(default_factory=Degradation)
    background: tuple[int, int, int] = DEFAULT_BACKGROUND

    def to_json(self) -> dict[str, Any]:
        return {
            "mistakes": self.mistakes.to_json(),
            **self.degrade.to_json(),
            "background": list(self.background),
        }

    @property
    def sha256(self) -> str:
        """Identity of the checkpoint: world version + every option, as canonical JSON."""
        ident = {"checkpoint": "shapes", "world_version": WORLD_VERSION, "options": self.to_json()}
        return hashlib.sha256(json.dumps(ident, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


OPTION_KEYS = ("mistakes", "blur", "noise", "jpeg", "background")


def parse_options(raw: Any, where: str) -> ShapesOptions:
    """Validate a checkpoint entry's `options` mapping; ConfigError names the key (`where` is its prefix)."""
    if raw is None:
        return ShapesOptions()
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping ({', '.join(OPTION_KEYS)}), got {raw!r}")
    check_keys(raw, OPTION_KEYS, f"{where}.")
    mistakes = raw.get("mistakes") or {}
    if not isinstance(mistakes, Mapping):
        raise ConfigError(f"{where}.mistakes: expected a mapping of category to rate, got {mistakes!r}")
    rates: dict[str, float] = {}
    for tag, rate in mistakes.items():
        if tag not in CATEGORIES:
            raise ConfigError(f"{where}.mistakes.{tag}: unknown category (known: {', '.join(CATEGORIES)})")
        if not _is_number(rate) or not 0 <= rate <= 1:
            raise ConfigError(f"{where}.mistakes.{tag}: expected a rate in [0, 1], got {rate!r}")
        rates[tag] = float(rate)
    blur, noise = raw.get("blur", 0), raw.get("noise", 0)
    for key, value in (("blur", blur), ("noise", noise)):
        if not _is_number(value) or value < 0:
            raise ConfigError(f"{where}.{key}: expected a number >= 0, got {value!r}")
    jpeg = raw.get("jpeg")
    if jpeg is not None and (isinstance(jpeg, bool) or not isinstance(jpeg, int) or not 1 <= jpeg <= 95):
        raise ConfigError(f"{where}.jpeg: expected a JPEG quality 1..95 (or null), got {jpeg!r}")
    return ShapesOptions(
        mistakes=MistakeRates(**rates),
        degrade=Degradation(blur=float(blur), noise=float(noise), jpeg=jpeg),
        background=parse_background(raw.get("background"), f"{where}.background"),
    )


def parse_background(value: Any, where: str) -> tuple[int, int, int]:
    """`grey`/`gray`, or [r, g, b] in 0..255, far enough from every palette colour that no shape vanishes."""
    if value is None or value in ("grey", "gray"):
        return DEFAULT_BACKGROUND
    if not (
        isinstance(value, (list, tuple))
        and len(value) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value)
    ):
        raise ConfigError(f"{where}: expected grey or [r, g, b] with integers 0..255, got {value!r}")
    rgb = (int(value[0]), int(value[1]), int(value[2]))
    name, dist = nearest_color(rgb)
    if dist < MIN_BACKGROUND_DELTA_E:
        raise ConfigError(
            f"{where}: {list(rgb)} is too close to the palette colour {name} (ΔE {dist:.0f} <"
            f" {MIN_BACKGROUND_DELTA_E:.0f}): {name} shapes would not stand out; pick a colour away from the palette"
        )
    return rgb


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
