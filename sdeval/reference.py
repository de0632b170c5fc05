"""Reference files: the statistics and features of a reference image set, with the protocol that made them.

A reference file is a numpy .npz (read with allow_pickle=False) holding:
- `meta`: JSON text: format, version, protocol per extractor, n, images hash, root, sdeval version;
- `fid_n`, `fid_sum`, `fid_sum_outer`: the mergeable Fréchet state of the Inception pool features;
- `feat__<extractor index>__<name>`: per-image feature arrays (KID, precision/recall, CMMD need them).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sdeval import __version__
from sdeval.atomic import write_bytes
from sdeval.errors import ProtocolMismatchError, SdevalError
from sdeval.metrics.fid import FrechetState

FORMAT = "sdeval-reference"
FORMAT_VERSION = 1


def images_hash(paths: list[str], hashes: list[str]) -> str:
    """Identity of an image set: sha256 over the sorted (relative path, content sha256) pairs."""
    digest = hashlib.sha256()
    for path, content in sorted(zip(paths, hashes, strict=True)):
        digest.update(f"{path}\0{content}\n".encode())
    return digest.hexdigest()


@dataclass
class Reference:
    """A reference set in memory: per-extractor features and protocols, plus the Fréchet state."""

    protocols: dict[str, dict[str, Any]]  # extractor cache key -> protocol
    features: dict[str, dict[str, np.ndarray]]  # extractor cache key -> name -> [n, d]
    fid_state: FrechetState | None
    n: int
    images_hash: str
    source: str  # folder or file it came from

    def identity(self) -> dict[str, Any]:
        return {"source": self.source, "n": self.n, "images_sha256": self.images_hash}


def save_reference(path: str | os.PathLike[str], reference: Reference) -> None:
    """Write atomically; the file either appears whole or not at all."""
    keys = list(reference.features)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "sdeval_version": __version__,
        "n": reference.n,
        "images_sha256": reference.images_hash,
        "source": reference.source,
        "extractors": [{"cache_key": key, "protocol": reference.protocols[key]} for key in keys],
    }
    arrays: dict[str, np.ndarray] = {"meta": np.array(json.dumps(meta))}
    if reference.fid_state is not None:
        arrays["fid_n"] = np.array(reference.fid_state.n, dtype=np.int64)
        arrays["fid_sum"] = reference.fid_state.sum
        arrays["fid_sum_outer"] = reference.fid_state.sum_outer
    for index, key in enumerate(keys):
        for name, values in reference.features[key].items():
            arrays[f"feat__{index}__{name}"] = np.asarray(values, dtype=np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_bytes(path, buffer.getvalue())


def load_reference(path: str | os.PathLike[str]) -> Reference:
    """Read a reference file, with a clear error for anything that is not one."""
    file = Path(path)
    try:
        with np.load(file, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except FileNotFoundError:
        raise SdevalError(f"{path}: no such reference file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise SdevalError(f"{path}: not a readable reference file ({err})") from None
    try:
        meta = json.loads(str(arrays["meta"]))
        if meta.get("format") != FORMAT:
            raise ValueError("not an sdeval reference")
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"format version {meta.get('format_version')} is not {FORMAT_VERSION}")
        keys = [entry["cache_key"] for entry in meta["extractors"]]
        protocols = {entry["cache_key"]: entry["protocol"] for entry in meta["extractors"]}
        features: dict[str, dict[str, np.ndarray]] = {key: {} for key in keys}
        for name, values in arrays.items():
            if name.startswith("feat__"):
                _, index, feature = name.split("__", 2)
                features[keys[int(index)]][feature] = values
        fid_state = None
        if "fid_n" in arrays:
            fid_state = FrechetState(int(arrays["fid_n"]), arrays["fid_sum"], arrays["fid_sum_outer"])
        return Reference(protocols, features, fid_state, int(meta["n"]), meta["images_sha256"], str(file))
    except (KeyError, ValueError, IndexError, TypeError) as err:
        raise SdevalError(f"{path}: not a valid sdeval reference file ({err})") from None


def check_protocol(expected: dict[str, Any], found: dict[str, Any], what: str) -> None:
    """Raise ProtocolMismatchError naming the first field that differs between two protocols."""
    for field in sorted(set(expected) | set(found)):
        if expected.get(field) != found.get(field):
            raise ProtocolMismatchError(
                f"{what} was made with a different protocol: {field} is {found.get(field)!r} there "
                f"but {expected.get(field)!r} here"
            )


#: Protocol fields that name a library release, not something that moves the features.
_VERSION_FIELDS = ("open_clip_version",)


def require_features(reference: Reference, protocol: dict[str, Any], cache_key: str, missing_hint: str) -> None:
    """Check that `reference` holds features made by the extractor whose protocol and cache key are given.

    A reference with features of the same kind (same `extractor` field) made another way raises
    ProtocolMismatchError naming the first field that differs; a reference with none of that kind
    raises SdevalError ending with `missing_hint` (how to rebuild it).
    """
    what = f"reference {reference.source}"
    wanted = {k: v for k, v in protocol.items() if k not in _VERSION_FIELDS}
    if cache_key in reference.protocols:
        found = {k: v for k, v in reference.protocols[cache_key].items() if k not in _VERSION_FIELDS}
        check_protocol(wanted, found, what)
        return
    kind = protocol.get("extractor")
    for found in reference.protocols.values():
        if found.get("extractor") == kind:
            check_protocol(wanted, {k: v for k, v in found.items() if k not in _VERSION_FIELDS}, what)
            raise ProtocolMismatchError(f"{what} holds {kind} features made another way (cache key differs)")
    raise SdevalError(f"{what} holds no {kind} features; {missing_hint}")


def merge_references(parts: list[Reference], source: str) -> Reference:
    """Combine references built on disjoint shards of one image set (same protocols required)."""
    if not parts:
        raise SdevalError("nothing to merge")
    first = parts[0]
    for other in parts[1:]:
        if list(other.protocols) != list(first.protocols):
            raise ProtocolMismatchError(f"{other.source}: holds different extractors than {first.source}")
        for key in first.protocols:
            check_protocol(first.protocols[key], other.protocols[key], other.source)
    features = {
        key: {name: np.concatenate([p.features[key][name] for p in parts]) for name in first.features[key]}
        for key in first.features
    }
    fid_state = None
    if all(p.fid_state is not None for p in parts):
        fid_state = parts[0].fid_state
        for p in parts[1:]:
            fid_state = fid_state.merge(p.fid_state)  # type: ignore[union-attr]
    digest = hashlib.sha256("".join(sorted(p.images_hash for p in parts)).encode()).hexdigest()
    return Reference(first.protocols, features, fid_state, sum(p.n for p in parts), digest, source)
