"""Find each image's prompt: manifest first, then metadata inside the image, then a sidecar caption."""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from sdeval.prompts.captions import caption_path, read_caption
from sdeval.prompts.embedded import inspect_embedded_prompt
from sdeval.prompts.manifest import ManifestResult, _quote, load_manifest
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
    scored_elsewhere: Iterable[str] = (),
) -> PromptSearch:
    """Look up each image's prompt in precedence order: manifest, embedded metadata, sidecar caption.

    `scored_elsewhere` (paths relative to IMAGES) are images another share of the run scores: their manifest
    entries are not reported as matching no image.

    A source that is present but unusable (bad JSON chunk, non-UTF-8 caption) does not stop the
    search; its reason becomes a warning if a later source succeeds, or part of the skip reason if none does.
    """
    root = Path(images_root)
    if manifest is not None and not isinstance(manifest, ManifestResult):
        manifest = load_manifest(manifest, root)
    records: dict[Hashable, PromptRecord] = {}
    skipped: list[SkippedImage] = []
    warnings: list[str] = manifest.messages() if manifest is not None else []
    used_manifest_keys: set[str] = set(scored_elsewhere)
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

    if manifest is not None and manifest.records:  # with no record, the loader's `no usable rows` says why
        unused = _unused_entries(manifest, used_manifest_keys, root)
        if unused:
            warnings.append(unused)
    return PromptSearch(records, skipped, warnings)


def _unused_entries(manifest: ManifestResult, used: set[str], root: Path) -> str | None:
    """One line for every manifest entry that matched no scored image, however many there are.

    Rows outside IMAGES are counted apart: scoring one sub-folder of a run with the run's manifest
    leaves the rows of every other folder unmatched, which is expected and needs no line each.
    """
    unused = sorted(set(manifest.records) - used)
    total = len(unused) + len(manifest.outside)
    if not total:
        return None
    head = f"{manifest.path}: {total} manifest entries match no image being scored"
    if not manifest.outside:
        more = f" and {len(unused) - 1} more" if len(unused) > 1 else ""
        return f"{head} (line {manifest.lines[unused[0]]}: {_quote(unused[0])}{more})"
    line, file = manifest.outside[0]
    parts = [f"{len(manifest.outside)} outside IMAGES {root}, e.g. line {line}: {_quote(file)}"]
    if unused:
        parts.append(f"{len(unused)} not scored, e.g. line {manifest.lines[unused[0]]}: {_quote(unused[0])}")
    return f"{head} ({'; '.join(parts)})"
