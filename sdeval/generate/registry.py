"""Named pipelines: the checkpoints a config names by `path: NAME` instead of a folder, file or hub id.

The built-ins (`tiny-random`, the calibration world's `shapes`) are registered as any third-party pipeline is:
by a lazy `module:object` reference here, or an entry point of the `sdeval.pipelines` group.
"""

from __future__ import annotations

from typing import Any, Protocol

from sdeval.calibration.world import SHAPES_NAME
from sdeval.core.errors import SdevalError
from sdeval.core.registry import Registry
from sdeval.generate.checkpoint import CheckpointSpec, Loaded, LoadOptions
from sdeval.generate.tiny import TINY_NAME


class Pipeline(Protocol):
    """A named checkpoint: which config keys it takes, what identifies it, and how it loads."""

    #: Checkpoint keys it has no use for (a config that sets one is refused).
    unused: tuple[str, ...]
    #: Whether it takes an `options:` mapping (read by parse_options; its `to_json()` is part of the config hash).
    takes_options: bool

    def parse_options(self, raw: Any, where: str) -> Any:
        """The checkpoint's `options:` (None: the defaults), checked; ConfigError names the key under `where`."""
        ...

    def identity(self, spec: CheckpointSpec) -> str | None:
        """The sha256 that identifies what it draws (weights, or version and options); None where unknown."""
        ...

    def load(self, spec: CheckpointSpec, dtype: str, options: LoadOptions) -> Loaded:
        """Ready to generate on the run's device."""
        ...


def _check(name: str, pipeline: Any) -> None:
    missing = [a for a in ("unused", "takes_options", "parse_options", "identity", "load") if not hasattr(pipeline, a)]
    if missing:
        raise SdevalError(f"pipeline {name!r}: {pipeline!r} is no pipeline (it lacks {', '.join(missing)})")


#: Every named pipeline: the built-ins, then the `sdeval.pipelines` entry points of installed packages.
NAMED_PIPELINES: Registry[Pipeline] = Registry("pipeline", group="sdeval.pipelines", check=_check)
NAMED_PIPELINES.register(TINY_NAME, "sdeval.generate.builtin:TINY")
NAMED_PIPELINES.register(SHAPES_NAME, "sdeval.generate.builtin:SHAPES")
