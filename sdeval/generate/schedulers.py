"""Scheduler names that configs use, mapped to diffusers scheduler classes and their config flags."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any

from sdeval.core.registry import Registry


@dataclass(frozen=True)
class SchedulerSpec:
    """One named sampler: the diffusers class, the flags that make it that sampler, its A1111 label."""

    class_name: str
    flags: dict[str, Any] = field(default_factory=dict)
    a1111: str = ""
    # Schedulers that draw their noise from one seed per *call* (a Brownian tree) rather than from the
    # per-image generators; sdeval runs them one image per call so an image never depends on its batch.
    per_call_noise: bool = False
    needs: str | None = None


_KARRAS = {"use_karras_sigmas": True}
_SDE = {"algorithm_type": "sde-dpmsolver++"}

# Names follow the common A1111/ComfyUI vocabulary; mapping as in the diffusers scheduler docs.
_BUILTIN: dict[str, SchedulerSpec] = {
    "ddim": SchedulerSpec("DDIMScheduler", a1111="DDIM"),
    "ddpm": SchedulerSpec("DDPMScheduler", a1111="DDPM"),
    "pndm": SchedulerSpec("PNDMScheduler", a1111="PLMS"),
    "lms": SchedulerSpec("LMSDiscreteScheduler", a1111="LMS"),
    "lms_karras": SchedulerSpec("LMSDiscreteScheduler", _KARRAS, "LMS Karras"),
    "euler": SchedulerSpec("EulerDiscreteScheduler", a1111="Euler"),
    "euler_karras": SchedulerSpec("EulerDiscreteScheduler", _KARRAS, "Euler Karras"),
    "euler_a": SchedulerSpec("EulerAncestralDiscreteScheduler", a1111="Euler a"),
    "heun": SchedulerSpec("HeunDiscreteScheduler", a1111="Heun"),
    "dpm2": SchedulerSpec("KDPM2DiscreteScheduler", a1111="DPM2"),
    "dpm2_karras": SchedulerSpec("KDPM2DiscreteScheduler", _KARRAS, "DPM2 Karras"),
    "dpm2_a": SchedulerSpec("KDPM2AncestralDiscreteScheduler", a1111="DPM2 a"),
    "dpm2_a_karras": SchedulerSpec("KDPM2AncestralDiscreteScheduler", _KARRAS, "DPM2 a Karras"),
    "dpmpp_2m": SchedulerSpec("DPMSolverMultistepScheduler", a1111="DPM++ 2M"),
    "dpmpp_2m_karras": SchedulerSpec("DPMSolverMultistepScheduler", _KARRAS, "DPM++ 2M Karras"),
    "dpmpp_2m_sde": SchedulerSpec("DPMSolverMultistepScheduler", _SDE, "DPM++ 2M SDE"),
    "dpmpp_2m_sde_karras": SchedulerSpec("DPMSolverMultistepScheduler", {**_SDE, **_KARRAS}, "DPM++ 2M SDE Karras"),
    "dpmpp_sde": SchedulerSpec("DPMSolverSDEScheduler", a1111="DPM++ SDE", per_call_noise=True, needs="torchsde"),
    "dpmpp_sde_karras": SchedulerSpec(
        "DPMSolverSDEScheduler", _KARRAS, "DPM++ SDE Karras", per_call_noise=True, needs="torchsde"
    ),
    "unipc": SchedulerSpec("UniPCMultistepScheduler", a1111="UniPC"),
    "deis": SchedulerSpec("DEISMultistepScheduler", a1111="DEIS"),
}
#: Every named sampler a setting's `scheduler` may name (the registry type of metrics, judges and pipelines).
SCHEDULERS: Registry[SchedulerSpec] = Registry("scheduler")
for _name, _spec in _BUILTIN.items():
    SCHEDULERS.register(_name, _spec)

#: The checkpoint's own scheduler, as saved with it.
DEFAULT_SCHEDULER = "default"


def missing_dependency(name: str) -> str | None:
    """The package a scheduler needs that is not installed, or None."""
    spec = SCHEDULERS.find(name)
    if spec is None or spec.needs is None:
        return None
    return None if importlib.util.find_spec(spec.needs) else spec.needs


def build_scheduler(name: str, base_config: Any, **extra: Any) -> Any:
    """A fresh scheduler `name` built from the checkpoint's scheduler config (betas, offset, prediction)."""
    import diffusers

    spec = SCHEDULERS.get(name)
    cls = getattr(diffusers, spec.class_name)
    return cls.from_config(base_config, **spec.flags, **extra)
