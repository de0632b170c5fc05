"""The prompt of every scored image: the manifest, then metadata in the image, then a sidecar caption."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdeval.prompts.find import find_prompts
from sdeval.prompts.manifest import ManifestResult
from sdeval.prompts.record import PromptRecord


@dataclass
class ImagePrompts:
    """The prompt record of each scored image, aligned with the scored paths (None: no prompt found)."""

    records: list[PromptRecord | None]
    missing: list[dict[str, str]]  # {"path", "reason"} for each image without a prompt
    warnings: list[str]
    manifest: str | None

    @property
    def with_prompt(self) -> list[int]:
        return [i for i, record in enumerate(self.records) if record is not None]

    def summary(self) -> dict[str, Any]:
        """The results document's `prompts` section."""
        counts = Counter(record.source for record in self.records if record is not None)
        return {
            "manifest": self.manifest,
            "n_with_prompt": len(self.with_prompt),
            "n_distinct": len({record.prompt for record in self.records if record is not None}),
            "source_counts": dict(sorted(counts.items())),
            "missing": self.missing,
            "warnings": self.warnings,
        }


def find_image_prompts(
    root: str | Path, paths: list[str], manifest: ManifestResult | None, scored_elsewhere: Iterable[str] = ()
) -> ImagePrompts:
    """Look up the prompt of every scored image (`paths` relative to `root`; `scored_elsewhere`: the images other
    shares of the run score)."""
    root = Path(root)
    absolute = [root / rel for rel in paths]
    search = find_prompts(absolute, root, manifest, scored_elsewhere)
    relative = {str(path): rel for path, rel in zip(absolute, paths, strict=True)}
    return ImagePrompts(
        records=[search.records.get(path) for path in absolute],
        missing=[{"path": relative[str(s.path)], "reason": s.reason} for s in search.skipped],
        warnings=list(search.warnings),
        manifest=str(manifest.path) if manifest is not None else None,
    )
