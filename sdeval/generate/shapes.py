"""The built-in `shapes` checkpoint of `sdeval generate`: each image is `render(prompt's spec, image's seed)`.

Text-to-image: the suite row's GenEval spec, drawn at the setting's width x height (default 256 x 256) with the
checkpoint's mistake rates and degradations. Guidance, steps, scheduler, negative prompt and dtype are ignored
(they still name the setting); batch, device and process count never change an image.

Image-to-image (a strength sweep, offline): with probability 1 - strength the output keeps the init image's
layout, i.e. it is the init image itself (resized to the setting's size as for any pipeline, then given the
checkpoint's degradations); otherwise it is drawn from the spec exactly as text-to-image would draw it with the
same seed. So at strength s, with an init image that passes with probability a and a checkpoint whose rate for
the category is r, the expected pass rate is (1 - s) a + s (1 - r), and the share of outputs identical in
layout to their init image is (1 - s) plus the chance that a fresh drawing matches it. The keep-or-draw choice
comes from its own stream of the image's seed, so raising the strength only turns kept images into drawn ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from sdeval.calibration.render import RenderError, degrade_image, render, streams
from sdeval.calibration.world import ShapesOptions
from sdeval.core.errors import SdevalError
from sdeval.generate.plan import WorkItem
from sdeval.suites.spec import Spec, SpecError, parse_spec

#: Width and height when the setting leaves them unset (the checkpoint's "native" size).
DEFAULT_SIZE = 256


class ShapesCheckpoint:
    """The calibration world as a generation pipeline: draws specs, with known mistakes."""

    def __init__(self, name: str, options: ShapesOptions | None = None) -> None:
        self.name = name
        self.options = options or ShapesOptions()

    def image(
        self,
        spec: Spec,
        seed: int,
        size: tuple[int, int] = (DEFAULT_SIZE, DEFAULT_SIZE),
        strength: float | None = None,
        init: Any = None,
    ) -> np.ndarray:
        """One output (HxWx3 uint8): a fresh drawing, or with `init` and `strength` perhaps the init image kept."""
        if init is not None and strength is not None and streams(seed)["keep"].random() >= strength:
            kept = Image.fromarray(np.asarray(init.convert("RGB") if hasattr(init, "convert") else init))
            if kept.size != size:
                kept = kept.resize(size, Image.Resampling.LANCZOS)
            return degrade_image(kept, self.options.degrade, streams(seed)["noise"])
        opts = self.options
        return render(spec, seed, size, opts.mistakes, opts.degrade, opts.background).image

    def generate(self, items: list[WorkItem], kind: str, init_images: list[Any] | None = None) -> list[Image.Image]:
        """PIL images for a batch of work items, in item order (the hook `generate_batch` calls)."""
        out = []
        for i, item in enumerate(items):
            setting = item.setting
            size = (setting.width or DEFAULT_SIZE, setting.height or DEFAULT_SIZE)
            init = init_images[i] if kind == "image2image" and init_images is not None else None
            try:
                pixels = self.image(_spec(item), item.seed, size, setting.strength, init)
            except RenderError as err:
                raise SdevalError(f"checkpoint {self.name!r} (shapes): prompt {item.prompt.id!r}: {err}") from err
            out.append(Image.fromarray(pixels))
        return out


def _spec(item: WorkItem) -> Spec:
    spec = getattr(item.prompt, "spec", None)
    if isinstance(spec, dict):
        try:
            spec = parse_spec(spec, f"prompt {item.prompt.id!r}: spec")
        except SpecError as err:
            raise SdevalError(str(err)) from err
    if spec is None:
        raise SdevalError(
            f"prompt {item.prompt.id!r} has no spec: the shapes checkpoint draws a prompt's GenEval spec; use a suite"
            " whose rows carry one (e.g. builtin:shapes)"
        )
    return spec
