"""The built-in named pipelines (sdeval.generate.registry names each as `sdeval.generate.builtin:NAME`)."""

from __future__ import annotations

import sys
from typing import Any

from sdeval.calibration.world import ShapesOptions, parse_options
from sdeval.core.errors import ConfigError
from sdeval.core.hashing import path_sha256
from sdeval.generate.config import CheckpointSpec
from sdeval.generate.pipelines import Loaded, LoadOptions, load_diffusers
from sdeval.generate.shapes import DEFAULT_SIZE, ShapesCheckpoint
from sdeval.generate.tiny import TINY_NAME, tiny_random_path


class TinyRandom:
    """`tiny-random`: a tiny Stable Diffusion 1.x-shaped diffusers pipeline with seeded RANDOM weights, for tests."""

    unused: tuple[str, ...] = ()
    takes_options = False

    def parse_options(self, raw: Any, where: str) -> Any:
        raise ConfigError(f"{where}: {TINY_NAME} takes no options")

    def identity(self, spec: CheckpointSpec) -> str | None:
        return path_sha256(tiny_random_path())

    def load(self, spec: CheckpointSpec, dtype: str, options: LoadOptions) -> Loaded:
        print(f"sdeval: checkpoint {spec.name!r} is {TINY_NAME}: RANDOM weights, for tests only", file=sys.stderr)
        return load_diffusers(spec, dtype, options, location=str(tiny_random_path()))


class Shapes:
    """`shapes`: the calibration world, no diffusers pipeline: it draws each item's spec with known mistakes."""

    unused = ("lora", "variant")
    takes_options = True

    def parse_options(self, raw: Any, where: str) -> ShapesOptions:
        return parse_options(raw, where)

    def identity(self, spec: CheckpointSpec) -> str | None:
        # The world has no weights: its identity is its version and options.
        return (spec.options or ShapesOptions()).sha256

    def load(self, spec: CheckpointSpec, dtype: str, options: LoadOptions) -> Loaded:
        shapes = ShapesCheckpoint(spec.name, spec.options)
        return Loaded(pipe=None, base_scheduler=None, render=shapes.generate, size=(DEFAULT_SIZE, DEFAULT_SIZE))


TINY = TinyRandom()
SHAPES = Shapes()
