"""sha256 of weight files and folders, cached by (path, size, mtime) so reruns do not rehash."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

from sdeval.core import atomic
from sdeval.core.paths import cache_root

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


# -- model files: the sha256 each had when first downloaded, to compare later ---------------------------------------

_RECORDS_FILE = "model-sha256.json"


def hub_record_key(path: str | os.PathLike[str]) -> str | None:
    """The record key of a file in the Hugging Face cache: `hub:models--OWNER--NAME/snapshots/REVISION/FILE`
    (None when `path` is not laid out that way). One revision's file never changes, so a different sha256 later
    means the file was damaged or replaced."""
    parts = Path(path).parts
    if "snapshots" not in parts[:-1]:
        return None
    at = len(parts) - 1 - parts[::-1].index("snapshots")
    return "hub:" + "/".join(parts[at - 1 :]) if at >= 1 else None


def _read_records() -> dict[str, dict[str, object]]:
    with contextlib.suppress(OSError, ValueError):
        records = json.loads((cache_root() / _RECORDS_FILE).read_text(encoding="utf-8"))
        if isinstance(records, dict):
            return records
    return {}


def recorded_sha256(key: str) -> str | None:
    """The sha256 recorded under `key` when the file was first downloaded (or first checked), else None."""
    record = _read_records().get(key)
    value = record.get("sha256") if isinstance(record, dict) else None
    return value if isinstance(value, str) else None


def record_sha256(key: str, path: str | os.PathLike[str]) -> str:
    """Record the sha256 of the file at `path` under `key` unless one is recorded already; returns the file's."""
    value = file_sha256(path)
    records = _read_records()
    if key not in records:
        records[key] = {"sha256": value, "size": Path(path).stat().st_size}
        with contextlib.suppress(OSError):
            atomic.write_text(cache_root() / _RECORDS_FILE, json.dumps(records, indent=1, sort_keys=True))
    return value
