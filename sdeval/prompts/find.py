"""Find each image's prompt: manifest first, then metadata inside the image, then a sidecar caption."""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from sdeval.prompts.captions import caption_path, read_caption
from sdeval.prompts.embedded import inspect_embedded_prompt
from sdeval.prompts.manifest import ManifestResult, load_manifest
from sdeval.prompts.record import PromptRecord


@dataclass(frozen=True)
class SkippedImage:
    """An image for which no prompt was found, and everything that was tried."""

    path: Path
    reason: str


class PromptSearch(NamedTuple):
    """Result of find_prompts. `records` is keyed by the image paths exactly as they were given."""

    records: dict[Hashable, PromptRecord]
    skipped: list[SkippedImage]
    warnings: list[str]


def find_prompts(
    image_paths: Iterable[str | os.PathLike[str]],
    images_root: str | os.PathLike[str],
    manifest: ManifestResult | str | os.PathLike[str] | None = None,
) -> PromptSearch:
    """Look up each image's prompt in precedence order: manifest, embedded metadata, sidecar caption.

    A source that is present but unusable (bad JSON chunk, non-UTF-8 caption) does not stop the
    search; its reason becomes a warning if a later source succeeds, or part of the skip reason if none does.
    """
    root = Path(images_root)
    if manifest is not None and not isinstance(manifest, ManifestResult):
        manifest = load_manifest(manifest, root)
    records: dict[Hashable, PromptRecord] = {}
    skipped: list[SkippedImage] = []
    warnings: list[str] = manifest.messages() if manifest is not None else []
    used_manifest_keys: set[str] = set()
    abs_root = os.path.abspath(root)

    for image in image_paths:
        path = Path(image)
        rel = Path(os.path.relpath(os.path.abspath(path), abs_root)).as_posix()
        if manifest is not None and rel in manifest.records:
            records[image] = manifest.records[rel]
            used_manifest_keys.add(rel)
            continue
        tried: list[str] = []
        if manifest is not None:
            tried.append(f"not in manifest {manifest.path.name}")
        embedded = inspect_embedded_prompt(path)
        if embedded.record is not None:
            records[image] = embedded.record
            warnings.extend(f"{path}: {problem}" for problem in embedded.problems)
            continue
        tried.extend(embedded.problems or ["no prompt metadata in the image"])
        caption, problem = read_caption(path)
        if caption is not None:
            records[image] = caption
            warnings.extend(f"{path}: {reason}" for reason in embedded.problems)
            continue
        tried.append(problem or f"no caption file {caption_path(path).name}")
        skipped.append(SkippedImage(path, "no prompt found: " + "; ".join(tried)))

    if manifest is not None:
        unused = sorted(set(manifest.records) - used_manifest_keys)
        if unused:
            more = f" and {len(unused) - 1} more" if len(unused) > 1 else ""
            warnings.append(
                f"{manifest.path}: {len(unused)} manifest entries match no image being scored "
                f"(line {manifest.lines[unused[0]]}: '{unused[0]}'{more})"
            )
    return PromptSearch(records, skipped, warnings)
