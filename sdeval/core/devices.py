"""One rule for turning a device name (auto, cpu, cuda, cuda:N, mps) into the device a stage runs on."""

from __future__ import annotations

import re

from sdeval.core.errors import SdevalError

_VALID = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
#: The device names a config or an option accepts, as its errors list them.
DEVICE_NAMES = "auto, cpu, cuda, cuda:N or mps"


def is_device_name(value: object) -> bool:
    """Whether `value` is a device name (the grammar alone: no library is asked whether the device exists)."""
    return isinstance(value, str) and _VALID.match(value) is not None


def resolve_device(requested: str, local_rank: int = 0, world_size: int = 1, what: str = "--device") -> str:
    """`auto` is CUDA, else MPS, else the CPU; `cuda` is cuda:LOCAL_RANK in a multi-process launch.

    `what` names the option or config key in errors (`--device`, `device`).
    """
    import torch

    if not is_device_name(requested):
        raise SdevalError(f"{what} must be auto, cpu, cuda[:N] or mps, got {requested!r}")
    if requested == "auto":
        if torch.cuda.is_available():
            requested = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            requested = "mps"
        else:
            requested = "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SdevalError(f"{what}: {requested} was asked for, but torch sees no CUDA device")
        if requested == "cuda":
            index = local_rank % torch.cuda.device_count() if world_size > 1 else torch.cuda.current_device()
            requested = f"cuda:{index}"
        torch.cuda.set_device(requested)
    if requested == "mps" and not torch.backends.mps.is_available():
        raise SdevalError(f"{what}: mps was asked for, but torch sees no MPS device")
    return requested
