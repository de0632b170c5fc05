"""Prompt suites for generation: JSONL rows of {id, prompt} (optional category, negative_prompt, init_image).

Kept minimal on purpose; when `sdeval.suites` lands, this loader should move there.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from sdeval.errors import ConfigError

_ROW_KEYS = ("id", "prompt", "category", "negative_prompt", "init_image")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass(frozen=True)
class Prompt:
    """One suite row."""

    id: str
    prompt: str
    category: str | None = None
    negative_prompt: str | None = None
    init_image: Path | None = None  # absolute; set for image2image
    init_image_sha256: str | None = None


@dataclass(frozen=True)
class Suite:
    prompts: tuple[Prompt, ...]
    path: Path
    sha256: str


def load_suite(path: Path, *, need_init_images: bool = False, init_images: Path | None = None) -> Suite:
    """Read and validate a JSONL suite; errors name the line and the key (`suite: prompts.jsonl:3: ...`)."""
    from sdeval.generate.config import SAFE_NAME

    data = path.read_bytes()
    where = f"suite: {path.name}"
    prompts: list[Prompt] = []
    seen: dict[str, int] = {}
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{where}: not UTF-8 text") from err
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        at = f"{where}:{lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{at}: not valid JSON ({err.msg})") from err
        if not isinstance(row, dict):
            raise ConfigError(f"{at}: expected a JSON object, got {type(row).__name__}")
        unknown = [k for k in row if k not in _ROW_KEYS]
        if unknown:
            raise ConfigError(f"{at}: unknown key {unknown[0]!r} (known: {', '.join(_ROW_KEYS)})")
        for key in ("id", "prompt"):
            if key not in row:
                raise ConfigError(f"{at}: missing {key!r}")
        pid = row["id"]
        if not isinstance(pid, str) or not SAFE_NAME.match(pid):
            raise ConfigError(f"{at}: id: expected a file-name-safe id (letters, digits, '.', '_', '-'), got {pid!r}")
        if pid in seen:
            raise ConfigError(f"{at}: id {pid!r} repeats line {seen[pid]}")
        seen[pid] = lineno
        for key in ("prompt", "category", "negative_prompt", "init_image"):
            if key in row and row[key] is not None and not isinstance(row[key], str):
                raise ConfigError(f"{at}: {key}: expected a string, got {row[key]!r}")
        init_image = None
        if need_init_images:
            init_image = _find_init_image(row, pid, path.parent, init_images, at)
        elif row.get("init_image") is not None:
            raise ConfigError(f"{at}: init_image: only used by pipeline: image2image")
        prompts.append(
            Prompt(
                id=pid,
                prompt=row["prompt"],
                category=row.get("category"),
                negative_prompt=row.get("negative_prompt"),
                init_image=init_image,
                init_image_sha256=None if init_image is None else hashlib.sha256(init_image.read_bytes()).hexdigest(),
            )
        )
    if not prompts:
        raise ConfigError(f"{where}: holds no prompts")
    return Suite(prompts=tuple(prompts), path=path, sha256=hashlib.sha256(data).hexdigest())


def _find_init_image(row: dict, pid: str, suite_dir: Path, folder: Path | None, at: str) -> Path:
    """A row's own `init_image` (relative to the suite file) wins; else `<id>.<ext>` in init_images."""
    if row.get("init_image"):
        candidate = (suite_dir / row["init_image"]).resolve()
        if not candidate.is_file():
            raise ConfigError(f"{at}: init_image: no such file: {candidate}")
        return candidate
    if folder is not None:
        for suffix in _IMAGE_SUFFIXES:
            candidate = folder / f"{pid}{suffix}"
            if candidate.is_file():
                return candidate
        raise ConfigError(f"{at}: init_image: no {pid}.png/.jpg/.jpeg/.webp/.bmp in init_images folder {folder}")
    raise ConfigError(
        f"{at}: init_image: image2image needs an init image per prompt (an init_image key in the suite row"
        " or an init_images folder in the config)"
    )
