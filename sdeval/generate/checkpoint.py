"""What a checkpoint is to generation: its spec as a config gives it (CheckpointSpec), how a run places it
(LoadOptions) and what loading it gives (Loaded). Named pipelines (sdeval.generate.registry) and the loaders
(sdeval.generate.pipelines) both speak these types, so they live below both."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sdeval.generate.schedulers import DEFAULT_SCHEDULER, build_scheduler

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


@dataclass(frozen=True)
class CheckpointSpec:
    """One checkpoint to generate with: where it is, how to load it, and its optional LoRA."""

    name: str
    path: str  # as written in the config
    kind: str  # "builtin" | "folder" | "single_file" | "hub" | "unet" (a training checkpoint's UNet on `config`)
    location: str  # absolute path, hub id, or the built-in name; for "unet" the UNet folder
    lora: str | None = None  # absolute path
    lora_scale: float = 1.0
    allow_pickle: bool = False
    config: str | None = None  # diffusers folder or hub id giving a single file its architecture (a UNet its pipeline)
    variant: str | None = None
    options: Any = None  # a named pipeline's options (shapes: calibration.world.ShapesOptions), part of its identity
    step: int | None = None  # training step, for a checkpoint of a series (sdeval.generate.series)
    run: str | None = None  # the training run it comes from (its series folder)

    @property
    def is_pickle(self) -> bool:
        return self.kind == "single_file" and self.location.lower().endswith(PICKLE_SUFFIXES)


@dataclass(frozen=True)
class LoadOptions:
    """Run-wide choices for how a pipeline is placed and sped up (none of them changes the setting)."""

    pipeline: str  # "text2image" | "image2image"
    device: str
    compile: bool = False
    channels_last: bool = True
    vae_slicing: bool = True
    vae_tiling: bool = False


@dataclass
class Loaded:
    """A ready pipeline and the scheduler it was saved with (the base every named scheduler is built from)."""

    pipe: Any
    base_scheduler: Any
    #: Set for a checkpoint that is not a diffusers pipeline (shapes): (items, kind, init images) -> PIL images.
    render: Callable[[list[Any], str, list[Any] | None], list[Any]] | None = None  # (WorkItems, kind, init images)
    size: tuple[int, int] | None = None  # its native (width, height)

    @property
    def native_size(self) -> tuple[int, int]:
        """Default (width, height): UNet sample size times the VAE scale factor."""
        if self.size is not None:
            return self.size
        side = int(self.pipe.unet.config.sample_size) * int(self.pipe.vae_scale_factor)
        return side, side

    def set_scheduler(self, name: str, **extra: Any) -> None:
        """A fresh scheduler for the next call, so no solver state leaks from the previous call."""
        base = self.base_scheduler
        if name == DEFAULT_SCHEDULER:
            self.pipe.scheduler = type(base).from_config(base.config, **extra)
        else:
            self.pipe.scheduler = build_scheduler(name, base.config, **extra)
