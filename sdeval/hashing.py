"""sha256 of weight files and folders, cached by (path, size, mtime) so reruns do not rehash."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

from sdeval import atomic
from sdeval.paths import cache_root

_CHUNK = 1 << 20


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of one file, reusing a cached value while the file's size and mtime are unchanged."""
    path = Path(path).resolve()
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    cache_file = cache_root() / "sha256-cache.json"
    cache: dict[str, str] = {}
    with contextlib.suppress(OSError, ValueError):
        cache = json.loads(cache_file.read_text(encoding="utf-8"))
    if key in cache:
        return cache[key]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    value = digest.hexdigest()
    # Only worth caching for big files (checkpoints); small ones hash faster than the cache round trip.
    if st.st_size >= 16 * _CHUNK:
        with contextlib.suppress(OSError, ValueError):
            cache = json.loads(cache_file.read_text(encoding="utf-8"))
        cache[key] = value
        with contextlib.suppress(OSError):
            atomic.write_text(cache_file, json.dumps(cache, indent=0, sort_keys=True))
    return value


def folder_sha256(folder: str | os.PathLike[str]) -> str:
    """sha256 over the sorted (relative path, file sha256) pairs of every non-hidden file in a folder."""
    folder = Path(folder).resolve()
    lines = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            full = Path(root) / name
            lines.append(f"{full.relative_to(folder).as_posix()}\t{file_sha256(full)}\n")
    return hashlib.sha256("".join(sorted(lines)).encode("utf-8")).hexdigest()


def path_sha256(path: str | os.PathLike[str]) -> str:
    """file_sha256 for a file, folder_sha256 for a folder."""
    return folder_sha256(path) if Path(path).is_dir() else file_sha256(path)
