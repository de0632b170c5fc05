"""How images become features for a command: the options (the Inception input, features/inception_input.py, reads
its route and weights from them), and one decode pass over a folder with the feature cache they name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the models' libraries load when features are made, not when options are read
    from sdeval.features.extract import FolderFeatures


@dataclass(frozen=True)
class FeatureOptions:
    """How images become features: everything here is part of the protocol or of the speed."""

    preprocess: str = "legacy"
    inception_weights: str | None = None
    batch_size: int = 32
    workers: int = 1
    device: str = "auto"
    cache_dir: str | None = None  # None: no cache
    progress: bool = True


def extract(
    folder: str,
    extractors: list,
    options: FeatureOptions,
    label: str,
    shard: tuple[int, int] | None = None,
    files: list[str] | None = None,
) -> FolderFeatures:
    """Features of a folder (or of one shard of it) for all `extractors` in one pass: each image is decoded once."""
    # The cache (sqlite3, numpy) and the extraction (torch, decode workers): when a run extracts, not when a command
    # reads its options.
    from sdeval.features.cache import FeatureCache
    from sdeval.features.extract import extract_folder

    cache = FeatureCache(options.cache_dir) if options.cache_dir else None
    try:
        return extract_folder(
            folder,
            extractors,
            batch_size=options.batch_size,
            workers=options.workers,
            cache=cache,
            progress=options.progress,
            label=label,
            shard=shard,
            files=files,
        )
    finally:
        if cache is not None:
            cache.close()
