"""Content-addressed feature cache: one SQLite file, keyed by (image content sha256, extractor cache key).

SQLite gives what several processes sharing one cache need: each write is one transaction, readers never
see half a row, and a killed writer leaves the database as it was (journal rollback). Values are the
extractor's named float32 arrays packed as a small JSON header plus raw bytes (no pickle).

A cache only saves time, so a damaged one (not a database, a page or a value overwritten) never stops a run: the
first sign of damage prints one warning naming the file and the fix, and the run goes on without it, computing
every feature. The file is left as it is (other processes may have it open; it may be worth a look). A full disk
stops only the caching of new features. Anything else (a read-only file, a lock held too long) is an SdevalError
naming the file, --cache-dir and --no-cache.
"""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from sdeval.core.errors import SdevalError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS features (
    content_hash TEXT NOT NULL,
    extractor TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (content_hash, extractor)
) WITHOUT ROWID
"""
_LOOKUP_CHUNK = 500  # SQLite's default limit on bound parameters is 999


def pack(arrays: Mapping[str, np.ndarray]) -> bytes:
    header = {}
    chunks = []
    for name, array in arrays.items():
        data = np.ascontiguousarray(array, dtype=np.float32)
        header[name] = list(data.shape)
        chunks.append(data.tobytes())
    header_bytes = json.dumps(header).encode()
    return struct.pack("<I", len(header_bytes)) + header_bytes + b"".join(chunks)


def unpack(blob: bytes) -> dict[str, np.ndarray]:
    """The arrays `pack` stored; ValueError for bytes that are not such a value (a damaged cache)."""
    try:
        (header_len,) = struct.unpack_from("<I", blob)
        header = json.loads(blob[4 : 4 + header_len])
        offset = 4 + header_len
        arrays = {}
        for name, shape in header.items():
            count = int(np.prod(shape))
            arrays[name] = np.frombuffer(blob, dtype=np.float32, count=count, offset=offset).reshape(shape)
            offset += 4 * count
    except (struct.error, TypeError, AttributeError) as err:
        raise ValueError(f"not a packed value ({err})") from None
    if offset != len(blob):
        raise ValueError(f"{len(blob)} bytes, its header says {offset}")
    return arrays


class FeatureCache:
    """Get and put feature arrays by (content hash, extractor key)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.path = Path(directory) / "features.sqlite3"
        self._db: sqlite3.Connection | None = None
        self._writable = _file_key(self.path) not in _FULL
        if _file_key(self.path) in _DAMAGED:
            return  # found damaged earlier in this process, and said so
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=120)
            self._db.execute("PRAGMA busy_timeout = 120000")
            self._db.execute(_SCHEMA)
            self._db.commit()
        except sqlite3.DatabaseError as err:
            self._failed(err)
        except OSError as err:
            raise SdevalError(f"feature cache {self.path} is unusable ({err}); {_FIX}") from None

    def get_many(self, hashes: Iterable[str], extractor: str) -> dict[str, dict[str, np.ndarray]]:
        """Cached arrays for those of `hashes` that are present (none once the cache is found damaged)."""
        if self._db is None:
            return {}
        unique = sorted(set(hashes))
        found: dict[str, dict[str, np.ndarray]] = {}
        try:
            for start in range(0, len(unique), _LOOKUP_CHUNK):
                chunk = unique[start : start + _LOOKUP_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT content_hash, value FROM features WHERE extractor = ? AND content_hash IN ({marks})",
                    [extractor, *chunk],
                )
                for content_hash, blob in rows:
                    found[content_hash] = unpack(blob)
        except sqlite3.DatabaseError as err:
            self._failed(err)
            return {}
        except ValueError as err:  # a value's bytes overwritten: its header or its size is wrong
            self._damaged(f"a stored value is corrupt: {err}")
            return {}
        return found

    def put_many(self, items: Iterable[tuple[str, Mapping[str, np.ndarray]]], extractor: str) -> None:
        """Store arrays for several images in one transaction (nothing once the cache is damaged or full)."""
        rows = [(content_hash, extractor, pack(arrays)) for content_hash, arrays in items]
        if not rows or self._db is None or not self._writable:
            return
        try:
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO features VALUES (?, ?, ?)", rows)
        except sqlite3.DatabaseError as err:
            self._failed(err)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()

    def _failed(self, err: sqlite3.DatabaseError) -> None:
        """Go on without the cache when it is damaged, without storing when the disk is full; else stop."""
        name = getattr(err, "sqlite_errorname", "")
        if name in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or "malformed" in str(err) or "not a database" in str(err):
            self._damaged(str(err))
        elif name == "SQLITE_FULL" or "disk is full" in str(err):
            self._writable = False
            _FULL.add(_file_key(self.path))
            _warn(f"feature cache {self.path}: cannot store new features ({err}); the run goes on without storing")
        else:
            raise SdevalError(f"feature cache {self.path}: {err}; {_FIX}") from None

    def _damaged(self, why: str) -> None:
        _DAMAGED.add(_file_key(self.path))
        _warn(
            f"feature cache {self.path} is damaged ({why}); the run goes on without it, computing every feature. "
            f"Delete it (or move it aside) to start a new one, or run with --no-cache"
        )
        if self._db is not None:
            self._db.close()
            self._db = None


_FIX = "use another --cache-dir, or run with --no-cache"
# Cache files found damaged or full in this process: each is said once, and later opens (the next extractor, the
# text embeddings) skip it rather than meet the damage again. Keyed by inode too: a new file there starts afresh.
_DAMAGED: set[tuple[str, int, int]] = set()
_FULL: set[tuple[str, int, int]] = set()


def _file_key(path: Path) -> tuple[str, int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return (str(path), -1, -1)
    return (str(path), st.st_dev, st.st_ino)


def _warn(text: str) -> None:
    # tqdm.write keeps an open progress bar intact below the line.
    from tqdm import tqdm

    tqdm.write(f"warning: {text}", file=sys.stderr)
