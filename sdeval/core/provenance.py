"""The provenance block of every record sdeval writes (run.json, results): package versions, device, torch
threads, the git commit of the folder worked on where it is a repository, and the command line."""

from __future__ import annotations

import importlib.metadata as md
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sdeval.core.version import __version__

PACKAGES = (
    "torch",
    "torchvision",
    "numpy",
    "scipy",
    "torch-fidelity",
    "open_clip_torch",
    "diffusers",
    "transformers",
    "accelerate",
    "safetensors",
    "peft",
)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def versions() -> dict[str, str | None]:
    """sdeval, Python and each package that moves numbers (None: not installed), plus CUDA and cuDNN."""
    out: dict[str, str | None] = {"sdeval": __version__, "python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    import torch

    out["cuda"] = torch.version.cuda
    out["cudnn"] = str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else None
    return out


def device_info(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "device": device,
        "cpu": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_count"] = torch.cuda.device_count()
    return info


def git_commit(folder: str | Path) -> dict[str, Any] | None:
    """{"commit", "dirty"} of the git repository holding `folder`, or None when it is in none (or git is absent)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
        if head.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def command() -> list[str]:
    """The command line that made the record (program name without its folder)."""
    return [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv else []


def provenance(device: str, folder: str | Path | None = None, started: str | None = None) -> dict[str, Any]:
    """The block itself; `folder` is the one worked on (the scored images, the run's output)."""
    return {
        "command": command(),
        "started_at": started,
        "finished_at": now(),
        "versions": versions(),
        **device_info(device),
        "git": git_commit(folder) if folder is not None else None,
    }
