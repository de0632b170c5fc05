"""Content-addressed feature cache: one SQLite file, keyed by (image content sha256, extractor cache key).

SQLite gives what several processes sharing one cache need: each write is one transaction, readers never
see half a row, and a killed writer leaves the database as it was (journal rollback). Values are the
extractor's named float32 arrays packed as a small JSON header plus raw bytes (no pickle).
"""

from __future__ import annotations

import json
import os
import sqlite3
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from sdeval.errors import SdevalError

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
    (header_len,) = struct.unpack_from("<I", blob)
    header = json.loads(blob[4 : 4 + header_len])
    offset = 4 + header_len
    arrays = {}
    for name, shape in header.items():
        count = int(np.prod(shape))
        arrays[name] = np.frombuffer(blob, dtype=np.float32, count=count, offset=offset).reshape(shape)
        offset += 4 * count
    return arrays


class FeatureCache:
    """Get and put feature arrays by (content hash, extractor key)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.path = Path(directory) / "features.sqlite3"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=120)
            self._db.execute("PRAGMA busy_timeout = 120000")
            self._db.execute(_SCHEMA)
            self._db.commit()
        except (sqlite3.DatabaseError, OSError) as err:
            raise SdevalError(
                f"feature cache {self.path} is unusable ({err}); delete it or run with --no-cache"
            ) from None

    def get_many(self, hashes: Iterable[str], extractor: str) -> dict[str, dict[str, np.ndarray]]:
        """Cached arrays for those of `hashes` that are present."""
        unique = sorted(set(hashes))
        found: dict[str, dict[str, np.ndarray]] = {}
        for start in range(0, len(unique), _LOOKUP_CHUNK):
            chunk = unique[start : start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT content_hash, value FROM features WHERE extractor = ? AND content_hash IN ({marks})",
                [extractor, *chunk],
            )
            for content_hash, blob in rows:
                found[content_hash] = unpack(blob)
        return found

    def put_many(self, items: Iterable[tuple[str, Mapping[str, np.ndarray]]], extractor: str) -> None:
        """Store arrays for several images in one transaction."""
        rows = [(content_hash, extractor, pack(arrays)) for content_hash, arrays in items]
        if not rows:
            return
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO features VALUES (?, ?, ?)", rows)

    def close(self) -> None:
        self._db.close()
