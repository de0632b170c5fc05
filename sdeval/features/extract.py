"""Turn a folder of images into feature arrays: hash, look up the cache, decode once, run each extractor.

Every image is read and hashed once; only images missing from the cache for some extractor are decoded
(in parallel worker processes), and each decoded image feeds every extractor that needs it. Results are
aligned with the sorted list of scored files, whatever the batch size or worker count.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from sdeval.core.errors import NoImagesError
from sdeval.core.images import DEFAULT_MAX_PIXELS, ImageDecodeError, Skipped, content_hash, decode_bytes, require_images
from sdeval.features.base import FeatureExtractor
from sdeval.features.cache import FeatureCache


@dataclass
class FolderFeatures:
    """Features of the scored images of one folder, in file order, plus the files that were skipped."""

    root: str
    paths: list[str]  # relative to root, '/'-separated
    hashes: list[str]  # sha256 of each file's bytes
    features: dict[str, dict[str, np.ndarray]]  # extractor cache key -> feature name -> [n, d]
    skipped: list[Skipped] = field(default_factory=list)
    n_computed: int = 0  # images that went through a model (cache misses)
    n_listed: int = 0  # image files found under root, in every shard (this one's are `paths` and `skipped`)

    @property
    def n(self) -> int:
        return len(self.paths)


def _read_and_hash(path: Path) -> tuple[str, str | None]:
    try:
        data = path.read_bytes()
    except OSError as err:
        return "", f"unreadable: {err.strerror or err}"
    return content_hash(data), None


class _DecodeDataset(Dataset):
    """Decodes one file and runs the preprocessing of each extractor that needs it (in a worker)."""

    def __init__(self, items: list[tuple[int, Path, tuple[int, ...]]], extractors, max_pixels: int) -> None:
        self.items = items
        self.extractors = extractors
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        index, path, needed = self.items[i]
        try:
            rgb = decode_bytes(path.read_bytes(), self.max_pixels)
        except ImageDecodeError as err:
            return index, None, str(err)
        except OSError as err:
            return index, None, f"unreadable: {err.strerror or err}"
        return index, {e: self.extractors[e].preprocess(rgb) for e in needed}, None


def _identity(sample):
    return sample


def unique_extractors(extractors: Sequence[FeatureExtractor]) -> list[FeatureExtractor]:
    """One extractor per cache key: two with one key produce the same features (the aesthetic head reads CLIP's),
    so the model runs once."""
    unique: dict[str, FeatureExtractor] = {}
    for extractor in extractors:
        unique.setdefault(extractor.cache_key, extractor)
    return list(unique.values())


def extract_folder(
    root: str | os.PathLike[str],
    extractors: Sequence[FeatureExtractor],
    *,
    batch_size: int = 32,
    workers: int = 1,
    cache: FeatureCache | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = True,
    label: str = "images",
    shard: tuple[int, int] | None = None,
    files: list[str] | None = None,
) -> FolderFeatures:
    """Features of every image under `root` for each extractor; unreadable files are listed in `skipped`.

    With `shard=(I, N)` only every N-th file of the sorted listing from the I-th on is read (a rank's or an array
    job's share); with `files` (paths relative to root) only those of them that are listed. Such a share may be
    empty, and an undecodable share is not an error on its own.
    """
    root_path = Path(root)
    extractors = unique_extractors(extractors)
    paths = require_images(root_path)
    n_listed = len(paths)
    if files is not None:
        wanted = set(files)
        paths = [p for p in paths if p.relative_to(root_path).as_posix() in wanted]
    if shard is not None:
        paths = paths[shard[0] :: shard[1]]
    rel = [p.relative_to(root_path).as_posix() for p in paths]

    with ThreadPoolExecutor(max_workers=4) as pool:  # hashlib releases the GIL on large buffers
        hashed = list(pool.map(_read_and_hash, paths))
    skipped: dict[int, str] = {i: err for i, (_, err) in enumerate(hashed) if err}
    hashes = [h for h, _ in hashed]

    keys = [e.cache_key for e in extractors]
    # The arrays each extractor is asked for (`outputs`, where it says; else whatever it returns): a cached row that
    # lacks one (made by a run that asked for fewer, as FID alone before sFID) is a miss, and its recomputed row,
    # with every array, replaces it.
    outputs: list[tuple[str, ...] | None] = [getattr(e, "outputs", None) for e in extractors]
    per_image: list[dict[str, dict[str, np.ndarray]]] = [{} for _ in paths]
    for key, wanted in zip(keys, outputs, strict=True):
        found = cache.get_many([h for i, h in enumerate(hashes) if i not in skipped], key) if cache else {}
        for i, h in enumerate(hashes):
            if h in found and (wanted is None or all(name in found[h] for name in wanted)):
                per_image[i][key] = found[h]

    todo = []
    for i, path in enumerate(paths):
        needed = tuple(e for e, key in enumerate(keys) if key not in per_image[i])
        if needed and i not in skipped:
            todo.append((i, path, needed))
    if todo:
        _run_models(
            todo, extractors, per_image, skipped, hashes, cache,
            batch_size=batch_size, workers=workers, max_pixels=max_pixels, progress=progress, label=label,
        )  # fmt: skip

    kept = [i for i in range(len(paths)) if i not in skipped]
    if not kept and shard is None and files is None:
        raise NoImagesError(f"{root}: none of the {len(paths)} image files could be decoded (first: {skipped[0]})")
    features = {
        key: {name: np.stack([per_image[i][key][name] for i in kept]) for name in wanted or per_image[kept[0]][key]}
        if kept
        else {}
        for key, wanted in zip(keys, outputs, strict=True)
    }
    return FolderFeatures(
        root=str(root_path),
        paths=[rel[i] for i in kept],
        hashes=[hashes[i] for i in kept],
        features=features,
        skipped=[Skipped(rel[i], skipped[i]) for i in sorted(skipped)],
        n_computed=len({i for i, _, _ in todo} - set(skipped)),
        n_listed=n_listed,
    )


def _run_models(
    todo: list[tuple[int, Path, tuple[int, ...]]],
    extractors: list[FeatureExtractor],
    per_image: list[dict[str, dict[str, np.ndarray]]],
    skipped: dict[int, str],
    hashes: list[str],
    cache: FeatureCache | None,
    *,
    batch_size: int,
    workers: int,
    max_pixels: int,
    progress: bool,
    label: str,
) -> None:
    """Decode the `todo` images in workers, batch them per extractor, run the models, fill the cache.

    Results land in `per_image[i][cache key]`; files that fail to decode are added to `skipped`.
    """
    loader = DataLoader(
        _DecodeDataset(todo, list(extractors), max_pixels),
        batch_size=None,
        num_workers=workers,
        collate_fn=_identity,
        prefetch_factor=max(2, batch_size // max(workers, 1)) if workers else None,
        persistent_workers=False,
    )
    pending: dict[int, list[tuple[int, torch.Tensor]]] = {e: [] for e in range(len(extractors))}

    def flush(e: int) -> None:
        batch = pending[e]
        if not batch:
            return
        out = extractors[e].extract(torch.stack([t for _, t in batch]))
        key = extractors[e].cache_key
        rows = []
        for row, (i, _) in enumerate(batch):
            arrays = {name: values[row].numpy().astype(np.float32, copy=True) for name, values in out.items()}
            per_image[i][key] = arrays
            rows.append((hashes[i], arrays))
        if cache is not None:
            cache.put_many(rows, key)
        pending[e] = []

    with tqdm(total=len(todo), desc=f"features ({label})", unit="img", disable=not progress, leave=False) as bar:
        for index, tensors, error in loader:
            if error is not None:
                skipped[index] = error
            else:
                for e, tensor in tensors.items():
                    pending[e].append((index, tensor))
                    if len(pending[e]) >= batch_size:
                        flush(e)
            bar.update(1)
        for e in pending:
            flush(e)
