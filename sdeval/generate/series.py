"""Checkpoint series: the checkpoints of training runs, found by a glob and ordered by training step.

`checkpoints: {glob: "runs/*/checkpoint-*", step: "checkpoint-(\\d+)", base: BASE}` (or such a mapping as one
entry of the `checkpoints:` list) expands, when the config is read, into one checkpoint per match, ordered by run
and step. Each match is recognised by what it holds:

- a diffusers/accelerate training checkpoint (`unet/`, and `unet_ema/` when EMA was on): the UNet swapped into the
  `base` pipeline; the EMA weights are used when present (`ema: auto`, the default), always (`true`) or never
  (`false`). Optimizer and scheduler state beside them are not read.
- a LoRA training output (`pytorch_lora_weights.safetensors`): the LoRA fused into the `base` pipeline;
- a full diffusers pipeline (`model_index.json`) or a single `.safetensors` file: loaded as such.

A checkpoint's name carries its run (the folder that holds it), so two runs' `checkpoint-500` never collide:
`lr1e-4.checkpoint-500`. Rerunning picks up checkpoints saved since: generation skips the images already made.
"""

from __future__ import annotations

import glob as globmod
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdeval.core.errors import ConfigError
from sdeval.core.suggest import check_keys

SERIES_KEYS = ("glob", "step", "base", "ema", "lora_scale", "allow_pickle", "variant")
DEFAULT_STEP = r"checkpoint-(\d+)"
EMA_CHOICES = ("auto", True, False)
LORA_FILE = "pytorch_lora_weights.safetensors"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Found:
    """One checkpoint of a series: where it is, what it holds, its run and step."""

    path: Path  # the matched folder or file
    run: str
    step: int
    form: str  # "unet" | "lora" | "pipeline" | "single_file"
    weights: Path  # the UNet folder, the LoRA file, the pipeline folder or the file itself

    @property
    def name(self) -> str:
        return _safe(f"{self.run}.{self.path.name}")


def is_series(entry: Any) -> bool:
    return isinstance(entry, Mapping) and "glob" in entry


def expand_series(entry: Mapping[str, Any], where: str, base_dir: Path) -> list[Found]:
    """The checkpoints a series entry names, ordered by (run, step), and its options; ConfigError when the glob
    finds nothing or a match is none of the recognised forms (options are read by the caller)."""
    check_keys(entry, SERIES_KEYS, where + ".")
    pattern = entry["glob"]
    if not isinstance(pattern, str) or not pattern:
        raise ConfigError(f"{where}.glob: expected a glob pattern such as 'runs/*/checkpoint-*', got {pattern!r}")
    step_text = entry.get("step", DEFAULT_STEP)
    try:
        step_re = re.compile(step_text)
    except (re.error, TypeError) as err:
        raise ConfigError(f"{where}.step: not a regular expression ({err})") from None
    if step_re.groups != 1:
        raise ConfigError(f"{where}.step: expected one group capturing the step number, got {step_text!r}")
    ema = entry.get("ema", "auto")
    if ema not in EMA_CHOICES:
        raise ConfigError(f"{where}.ema: expected auto, true or false, got {ema!r}")

    full = str(base_dir / Path(pattern).expanduser())
    matches = sorted(Path(p) for p in globmod.glob(full))
    if not matches:
        raise ConfigError(f"{where}.glob: {pattern!r} matches nothing (looked for {full})")
    found = []
    for path in matches:
        match = step_re.search(path.name)
        if match is None:
            continue  # e.g. a `logs/` folder beside the checkpoints: not a checkpoint of the series
        try:
            step = int(match.group(1))
        except ValueError:
            raise ConfigError(
                f"{where}.step: {step_text!r} captured {match.group(1)!r} in {path.name}, not a number"
            ) from None
        found.append(_recognise(path, step, ema, where))
    if not found:
        raise ConfigError(f"{where}.step: no match of {pattern!r} has a step ({step_text!r} found none in its name)")
    found.sort(key=lambda f: (f.run, f.step))
    names = [f.name for f in found]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"{where}.glob: two matches are both named {name!r}; narrow the glob")
    return found


def _recognise(path: Path, step: int, ema: Any, where: str) -> Found:
    run = path.parent.name
    if path.is_file():
        if path.suffix.lower() != ".safetensors":
            raise ConfigError(f"{where}.glob: {path} is a file but not .safetensors")
        return Found(path, run, step, "single_file", path)
    if (path / "model_index.json").is_file():
        return Found(path, run, step, "pipeline", path)
    unet, unet_ema = path / "unet", path / "unet_ema"
    if ema is not False and (unet_ema / "config.json").is_file():
        return Found(path, run, step, "unet", unet_ema)
    if ema is True:
        raise ConfigError(f"{where}.ema: true, but {path} has no unet_ema/ (EMA off in that training run?)")
    if (unet / "config.json").is_file():
        return Found(path, run, step, "unet", unet)
    if (path / LORA_FILE).is_file():
        return Found(path, run, step, "lora", path / LORA_FILE)
    raise ConfigError(
        f"{where}.glob: {path} is not a checkpoint sdeval knows: expected unet/ (or unet_ema/), {LORA_FILE}, "
        "a diffusers pipeline (model_index.json) or a .safetensors file"
    )


def needs_base(found: list[Found]) -> bool:
    return any(f.form in ("unet", "lora") for f in found)


def step_of(name: str, pattern: str = DEFAULT_STEP) -> int | None:
    """The step in a checkpoint's name (`lr1e-4.checkpoint-500` -> 500), None when it has none."""
    match = re.search(pattern, name)
    return int(match.group(1)) if match else None


def _safe(text: str) -> str:
    return _UNSAFE.sub("-", text).strip("-._")[:100] or "checkpoint"
