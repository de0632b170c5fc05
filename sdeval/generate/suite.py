"""The generation stage's view of a suite: `sdeval.suites` with generation's rule for init images."""

from __future__ import annotations

from pathlib import Path

from sdeval.suites.load import Prompt, Suite
from sdeval.suites.load import load_suite as _load_suite

__all__ = ["Prompt", "Suite", "load_suite"]


def load_suite(path: str | Path, *, need_init_images: bool = False, init_images: Path | None = None) -> Suite:
    """Read a suite for generation: image2image finds (or draws) every init image; text2image refuses rows that
    name one, since it would ignore them silently."""
    return _load_suite(
        path, need_init_images=need_init_images, init_images=init_images, reject_init_images=not need_init_images
    )
