"""Atomic PNG writes with sdeval metadata, per-process manifest shards, and the shard -> manifest merge.

Crash safety rests on two rules. An image appears at its final path only complete (temp file + fsync +
rename). Its row is appended to the process's shard only after that rename, and the merge rebuilds the
rows from the shards *and* from the images' own metadata, so a kill between the rename and the append
loses nothing: the merge finds the image without a row and rebuilds the row from the PNG.

Two files come out of a merge: `.sdeval/index.jsonl` (full rows: every metadata field, what resume
checks against) and `manifest.jsonl` (the same rows cut to the columns of docs/formats.md, what the
scoring stage reads).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdeval.core import atomic

META_KEY = "sdeval"
MANIFEST = "manifest.jsonl"
STATE_DIR = ".sdeval"  # per-run state inside the output folder: index, shards, stats, lock
INDEX = f"{STATE_DIR}/index.jsonl"
#: Manifest columns (docs/formats.md); the rest of the metadata stays in the PNG and the index.
MANIFEST_COLUMNS = ("file", "id", "prompt", "negative_prompt", "seed", "category", "checkpoint", "settings")
#: Metadata fields that do not decide the pixels, so they never make an existing image stale. The suite's identity
#: (id, version, sha256 of the whole file) changes when any other line of the suite is edited; each prompt's own
#: inputs (text, negative prompt, spec, init image) are compared field by field instead.
_NOT_IDENTITY = ("sdeval_version", "suite", "tags")

try:  # POSIX; elsewhere the lock is a no-op and only one process may use an output folder at a time.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None


def shard_dir(out_dir: Path) -> Path:
    return out_dir / STATE_DIR / "shards"


@contextlib.contextmanager
def folder_lock(out_dir: Path) -> Iterator[None]:
    """Exclusive inter-process lock for manifest merges in one output folder."""
    path = out_dir / STATE_DIR / "lock"
    with atomic.output_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+b")  # noqa: SIM115  (closed below; opened here so a full disk names the lock file)
    with handle:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def write_png(path: Path, image: Any, metadata: dict[str, Any], parameters: str | None = None) -> None:
    """Write a PIL image as PNG with the `sdeval` JSON text chunk (and an A1111-style `parameters` chunk)."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(META_KEY, json.dumps(metadata, ensure_ascii=False, sort_keys=True, allow_nan=False))
    if parameters is not None:
        info.add_text("parameters", parameters)
    with atomic.atomic_open(path, "wb") as handle:
        image.save(handle, format="PNG", pnginfo=info)


def read_metadata(path: Path) -> dict[str, Any] | None:
    """The `sdeval` metadata of a PNG, or None if it has none or cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            text = im.info.get(META_KEY)
        meta = json.loads(text) if isinstance(text, str) else None
    except (OSError, ValueError, SyntaxError):
        return None
    return meta if isinstance(meta, dict) else None


def row_from_metadata(meta: dict[str, Any], file: str) -> dict[str, Any]:
    """A full (index) row: the image's metadata plus its file; `id` is the prompt id."""
    row: dict[str, Any] = {"file": file, "id": meta.get("prompt_id")}
    row.update((k, v) for k, v in meta.items() if k != "prompt_id")
    return row


def manifest_row(row: dict[str, Any]) -> dict[str, Any]:
    """The manifest's cut of a full row (docs/formats.md columns only)."""
    return {k: row.get(k) for k in MANIFEST_COLUMNS}


def identity(row_or_meta: dict[str, Any]) -> dict[str, Any]:
    """The fields that must match for an existing image to count as the planned one."""
    out = {k: v for k, v in row_or_meta.items() if k not in _NOT_IDENTITY and k not in ("file", "id")}
    out["prompt_id"] = row_or_meta.get("prompt_id", row_or_meta.get("id"))
    return out


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of a JSONL file; a torn last line (a kill mid-append) or any malformed line is skipped."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            row = json.loads(line)
            if isinstance(row, dict) and isinstance(row.get("file"), str):
                yield row


def existing_rows(out_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Candidate full rows per file: the merged index first, then every shard (sorted by name)."""
    rows: dict[str, list[dict[str, Any]]] = {}
    sources = [out_dir / INDEX, *sorted(shard_dir(out_dir).glob("*.jsonl"))]
    for source in sources:
        for row in _read_jsonl(source):
            rows.setdefault(row["file"], []).append(row)
    return rows


class ManifestShard:
    """One process's append-only manifest shard."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    @classmethod
    def for_rank(cls, out_dir: Path, rank: int, world_size: int) -> ManifestShard:
        return cls(shard_dir(out_dir) / f"rank{rank:05d}-of-{world_size:05d}.jsonl")

    def append(self, row: dict[str, Any]) -> None:
        line = json.dumps(row, ensure_ascii=False, sort_keys=True, allow_nan=False) + "\n"
        with self._lock, atomic.output_errors(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a+b") as handle:
                if fcntl is not None:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
                handle.seek(0, os.SEEK_END)
                if handle.tell() > 0:
                    # A kill mid-append leaves a torn line; end it so this row stays parseable.
                    handle.seek(-1, os.SEEK_END)
                    if handle.read(1) != b"\n":
                        handle.write(b"\n")
                handle.write(line.encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())


@dataclass(frozen=True)
class MergeResult:
    rows: int
    rebuilt: int  # rows rebuilt from PNG metadata (missing, or shards disagreed)
    dropped: int  # rows whose image no longer exists


def merge_manifest(out_dir: Path, remove_shards: list[Path] | None = None) -> MergeResult:
    """Rebuild the index and OUT/manifest.jsonl: one row per sdeval image in the folder, sorted by file.

    `remove_shards` are shards whose writers have finished; they are deleted once their rows are in the
    manifest. Safe to run at any time and any number of times; concurrent merges serialize on a lock.
    """
    with folder_lock(out_dir):
        candidates = existing_rows(out_dir)
        merged: dict[str, dict[str, Any]] = {}
        rebuilt = dropped = 0
        for file, rows in candidates.items():
            path = out_dir / file
            if not _safe_relative(file) or not path.is_file():
                dropped += 1
                continue
            distinct = {json.dumps(r, sort_keys=True) for r in rows}
            if len(distinct) == 1:
                merged[file] = rows[0]
                continue
            # Rows disagree (an image was regenerated): the PNG's own metadata decides.
            meta = read_metadata(path)
            if meta is not None:
                merged[file] = row_from_metadata(meta, file)
                rebuilt += 1
        for file in _sdeval_pngs(out_dir):
            if file in merged:
                continue
            meta = read_metadata(out_dir / file)
            if meta is not None:
                merged[file] = row_from_metadata(meta, file)
                rebuilt += 1
        files = sorted(merged)
        # The index first: a kill between the two writes leaves a stale manifest, which the next merge
        # rebuilds from the index, never the other way round.
        atomic.write_text(out_dir / INDEX, "".join(_line(merged[f]) for f in files))
        atomic.write_text(out_dir / MANIFEST, "".join(_line(manifest_row(merged[f])) for f in files))
        for shard in remove_shards or []:
            with contextlib.suppress(FileNotFoundError):
                shard.unlink()
    return MergeResult(rows=len(merged), rebuilt=rebuilt, dropped=dropped)


def _line(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False, sort_keys=True, allow_nan=False) + "\n"


def _safe_relative(file: str) -> bool:
    parts = file.split("/")
    return not file.startswith("/") and ".." not in parts and "\\" not in file


def _sdeval_pngs(out_dir: Path) -> Iterator[str]:
    """Relative paths of every PNG under out_dir, skipping hidden files and folders (state, temp files)."""
    for root, dirs, files in os.walk(out_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel_root = Path(root).relative_to(out_dir)
        for name in sorted(files):
            if name.lower().endswith(".png") and not name.startswith("."):
                yield (rel_root / name).as_posix()


class ImageWriter:
    """Encodes and writes images on worker threads (zlib releases the GIL) while the GPU keeps working.

    Each image is renamed into place before its row is appended to the shard, never the other way round.
    `written` counts the images that reached their final path (a full disk stops the rest).
    """

    def __init__(self, out_dir: Path, shard: ManifestShard, workers: int = 2, max_pending: int = 64) -> None:
        self.out_dir = out_dir
        self.shard = shard
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sdeval-writer")
        self._pending: list[Future[None]] = []
        self._max_pending = max_pending
        self.written = 0
        self._count = threading.Lock()

    def submit(self, file: str, image: Any, metadata: dict[str, Any], parameters: str | None = None) -> None:
        self._reap(block=len(self._pending) >= self._max_pending)
        self._pending.append(self._pool.submit(self._write, file, image, metadata, parameters))

    def _write(self, file: str, image: Any, metadata: dict[str, Any], parameters: str | None) -> None:
        write_png(self.out_dir / file, image, metadata, parameters)
        with self._count:
            self.written += 1  # kept from here on: a row lost below is rebuilt from the PNG by the next merge
        self.shard.append(row_from_metadata(metadata, file))

    def _reap(self, block: bool) -> None:
        if block and self._pending:
            self._pending[0].result()
        still = []
        for future in self._pending:
            if future.done():
                future.result()  # re-raise a failed write in the main thread
            else:
                still.append(future)
        self._pending = still

    def close(self) -> None:
        """Wait for every queued write; raise the first failure."""
        try:
            for future in self._pending:
                future.result()
        finally:
            self._pending = []
            self._pool.shutdown(wait=True)
