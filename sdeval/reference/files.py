"""Reference files: the statistics and features of a reference image set, with the protocol that made them.

A reference file is a numpy .npz (read with allow_pickle=False). Format version 3 holds:
- `meta`: JSON text: format, version, protocol per extractor, n, images hash, source, sdeval version, and what
  made each stored state, radius array and decomposition below;
- `frechet__<name>__n`, `__sum`, `__sum_outer`: mergeable Fréchet states by name (`pool`: the Inception pool
  features'), each with the feature rows it was accumulated from, if the file holds them;
- `feat__<extractor index>__<name>`: per-image feature arrays (KID, precision/recall, CMMD need them);
- `image_sha256` (fixed-width ASCII bytes) and `image_paths` (str, relative to the folder): the identity of
  each image, in the row order of the features. They let `merge_references` find images that two parts share;
- `radii__<i>`: k-NN radii (float64 [n]) of a feature array, with k, the distance rule and the rows' sha256;
- `eigh__<name>__values`, `eigh__<name>__vectors`: eigh of a state's covariance (float64 [d] and [d, d]: 32 MiB
  at d = 2048), with the state's sha256. Radii and decompositions are checked on load (reference/derived.py).

Version 2 (the pool's state as `fid_n`, `fid_sum`, `fid_sum_outer`; no radii or decompositions: computed when
used) and version 1 files (no per-image identity either) still load, with `image_hashes` and `image_paths` None
where the file lacks them. The zip is written with fixed timestamps, so the same reference always gives the same
bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sdeval.core.atomic import write_bytes
from sdeval.core.errors import ProtocolMismatchError, SdevalError
from sdeval.core.npz import npz_bytes
from sdeval.core.version import __version__
from sdeval.metrics.fid import FrechetState
from sdeval.reference import derived
from sdeval.reference.derived import StoredEigh, StoredRadii

FORMAT = "sdeval-reference"
FORMAT_VERSION = 3  # 3: named Fréchet states, stored k-NN radii and eigen-decompositions
#: The name of the Inception pool features' Fréchet state (Reference.fid_state).
POOL_STATE = "pool"
_HASH_DTYPE = "S64"  # a hex sha256 is 64 ASCII characters; bytes take a quarter of the room of str
_MAX_LISTED_PAIRS = 5


def images_hash(paths: list[str], hashes: list[str]) -> str:
    """Identity of an image set: sha256 over the sorted (relative path, content sha256) pairs."""
    digest = hashlib.sha256()
    for path, content in sorted(zip(paths, hashes, strict=True)):
        digest.update(f"{path}\0{content}\n".encode())
    return digest.hexdigest()


@dataclass
class Reference:
    """A reference set in memory: per-extractor features and protocols, plus the Fréchet state.

    `image_hashes` and `image_paths` give each feature row's content sha256 and relative path; both are None
    for a reference read from a version 1 file (or merged from one).
    """

    protocols: dict[str, dict[str, Any]]  # extractor cache key -> protocol
    features: dict[str, dict[str, np.ndarray]]  # extractor cache key -> name -> [n, d]
    fid_state: FrechetState | None
    n: int
    images_hash: str
    source: str  # folder or file it came from
    image_hashes: list[str] | None = None
    image_paths: list[str] | None = None
    #: What the user declared a statistics file was made with (sdeval.reference.stats); None for images' features.
    declared: dict[str, Any] | None = None
    #: Fréchet states besides the pool's (`fid_state`), by name: stored, merged and loaded as that one is.
    frechet: dict[str, FrechetState] = field(default_factory=dict)
    #: The feature rows (extractor cache key, feature name) each named state was accumulated from, where known.
    state_rows: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: k-NN radii of feature rows, and eigen-decompositions of named states: computed once (reference/derived.py).
    radii: list[StoredRadii] = field(default_factory=list)
    eigh: dict[str, StoredEigh] = field(default_factory=dict)

    def states(self) -> dict[str, FrechetState]:
        """Every named Fréchet state, the pool's first."""
        pool = {} if self.fid_state is None else {POOL_STATE: self.fid_state}
        return pool | self.frechet

    def rows(self, features: tuple[str, str]) -> np.ndarray | None:
        key, name = features
        return self.features.get(key, {}).get(name)

    def identity(self) -> dict[str, Any]:
        out = {"source": self.source, "n": self.n, "images_sha256": self.images_hash}
        return out if self.declared is None else {**out, "declared": self.declared}

    @property
    def has_image_identity(self) -> bool:
        return self.image_hashes is not None and self.image_paths is not None


def _state_name(name: str) -> str:
    """A state's name becomes part of array names: a plain identifier without a double underscore."""
    if not name.isidentifier() or "__" in name:
        raise SdevalError(f"a Fréchet state's name must be an identifier without '__', got {name!r}")
    return name


def _state_entry(reference: Reference, name: str) -> dict[str, Any]:
    """A named state's meta: the rows it was accumulated from and their sha256 (checked on load), where known."""
    features = reference.state_rows.get(name)
    rows = None if features is None else reference.rows(features)
    if features is None or rows is None:
        return {"name": _state_name(name), "features": None}
    return {"name": _state_name(name), "features": list(features), "rows_sha256": derived.rows_sha256(rows)}


def save_reference(path: str | os.PathLike[str], reference: Reference) -> None:
    """Write atomically; the file either appears whole or not at all."""
    keys = list(reference.features)
    states = reference.states()
    meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "sdeval_version": __version__,
        "n": reference.n,
        "images_sha256": reference.images_hash,
        "source": reference.source,
        "extractors": [{"cache_key": key, "protocol": reference.protocols[key]} for key in keys],
        "frechet": [_state_entry(reference, name) for name in states],
        "radii": [],
        "eigh": [],
    }
    arrays: dict[str, np.ndarray] = {}
    for name, state in states.items():
        arrays[f"frechet__{name}__n"] = np.array(state.n, dtype=np.int64)
        arrays[f"frechet__{name}__sum"] = state.sum
        arrays[f"frechet__{name}__sum_outer"] = state.sum_outer
    for index, stored in enumerate(reference.radii):
        rows = reference.rows(stored.features)
        if rows is None or stored.radii.shape != (len(rows),):
            raise SdevalError(f"reference {reference.source}: k-NN radii of {stored.features} without their rows")
        meta["radii"].append({"array": f"radii__{index}", "features": list(stored.features), "k": stored.k,
                              "distance": stored.distance, "rows_sha256": stored.rows_sha256})  # fmt: skip
        arrays[f"radii__{index}"] = np.asarray(stored.radii, dtype=np.float64)
    for name, decomposition in reference.eigh.items():
        if name not in states:
            raise SdevalError(f"reference {reference.source}: an eigen-decomposition of no state ({name!r})")
        meta["eigh"].append({"state": name, "state_sha256": decomposition.state_sha256})
        arrays[f"eigh__{name}__values"] = np.asarray(decomposition.values, dtype=np.float64)
        arrays[f"eigh__{name}__vectors"] = np.asarray(decomposition.vectors, dtype=np.float64)
    arrays = {"meta": np.array(json.dumps(meta)), **arrays}
    for index, key in enumerate(keys):
        for name, values in reference.features[key].items():
            arrays[f"feat__{index}__{name}"] = np.asarray(values, dtype=np.float32)
    if reference.image_hashes is not None and reference.image_paths is not None:
        if not len(reference.image_hashes) == len(reference.image_paths) == reference.n:
            raise SdevalError(
                f"reference {reference.source}: {len(reference.image_hashes)} image hashes and "
                f"{len(reference.image_paths)} paths for {reference.n} images"
            )
        arrays["image_sha256"] = np.array(reference.image_hashes, dtype=_HASH_DTYPE).reshape(-1)
        arrays["image_paths"] = np.array(reference.image_paths, dtype=str).reshape(-1)
    write_bytes(path, npz_bytes(arrays))


def _image_identity(arrays: dict[str, np.ndarray], n: int) -> tuple[list[str] | None, list[str] | None]:
    """The per-image hashes and paths of a version 2 file, or (None, None) where it holds none."""
    if "image_sha256" not in arrays and "image_paths" not in arrays:
        return None, None
    hashes = [h.decode("ascii") if isinstance(h, bytes) else str(h) for h in arrays["image_sha256"].tolist()]
    paths = [str(p) for p in arrays["image_paths"].tolist()]
    if not len(hashes) == len(paths) == n:
        raise ValueError(f"{len(hashes)} image hashes and {len(paths)} image paths for {n} images")
    return hashes, paths


def holds_radii(path: str | os.PathLike[str]) -> bool:
    """Whether a reference file stores k-NN radii (version 3), read from its `meta` alone (its arrays stay unread);
    False for anything that is not a readable reference file."""
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return False
    return isinstance(meta, dict) and meta.get("format") == FORMAT and bool(meta.get("radii"))


def load_reference(path: str | os.PathLike[str]) -> Reference:
    """Read a reference file (format version 1 to 3), with a clear error for anything that is not one."""
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
        version = meta.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ValueError(f"format version {version!r} is not a known one")
        if version > FORMAT_VERSION:
            raise SdevalError(
                f"{path}: reference format version {version} was written by a newer sdeval "
                f"({meta.get('sdeval_version', 'unknown')}); this one ({__version__}) reads versions 1 to "
                f"{FORMAT_VERSION}: upgrade sdeval"
            )
        n = int(meta["n"])
        keys = [entry["cache_key"] for entry in meta["extractors"]]
        protocols = {entry["cache_key"]: entry["protocol"] for entry in meta["extractors"]}
        features: dict[str, dict[str, np.ndarray]] = {key: {} for key in keys}
        for name, values in arrays.items():
            if name.startswith("feat__"):
                _, index, feature = name.split("__", 2)
                if len(values) != n:
                    raise ValueError(f"{name} has {len(values)} rows for {n} images")
                features[keys[int(index)]][feature] = values
        states, state_rows, rows_sha256 = _states(arrays, meta, version)
        hashes, paths = _image_identity(arrays, n) if version >= 2 else (None, None)
        reference = Reference(protocols, features, states.pop(POOL_STATE, None), n, meta["images_sha256"], str(file),
                              hashes, paths, frechet=states, state_rows=state_rows)  # fmt: skip
        if version >= 3:
            reference.radii = [_radii(arrays, entry) for entry in meta["radii"]]
            reference.eigh = {entry["state"]: _eigh(arrays, entry) for entry in meta["eigh"]}
    except (KeyError, ValueError, IndexError, TypeError, AttributeError) as err:
        raise SdevalError(f"{path}: not a valid sdeval reference file ({err})") from None
    _check_and_offer(reference, rows_sha256, str(path))
    return reference


def _states(
    arrays: dict[str, np.ndarray], meta: dict[str, Any], version: int
) -> tuple[dict[str, FrechetState], dict[str, tuple[str, str]], dict[str, str]]:
    """The named Fréchet states, the rows each is of and those rows' sha256 (version 1 and 2: the pool's state
    alone, as fid_*, its rows unsaid)."""
    if version < 3:
        if "fid_n" not in arrays:
            return {}, {}, {}
        return {POOL_STATE: FrechetState(int(arrays["fid_n"]), arrays["fid_sum"], arrays["fid_sum_outer"])}, {}, {}
    states, rows, digests = {}, {}, {}
    for entry in meta["frechet"]:
        name = _state_name(entry["name"])
        prefix = f"frechet__{name}__"
        states[name] = FrechetState(int(arrays[prefix + "n"]), arrays[prefix + "sum"], arrays[prefix + "sum_outer"])
        if entry["features"] is not None:
            key, feature = entry["features"]
            rows[name], digests[name] = (str(key), str(feature)), str(entry["rows_sha256"])
    return states, rows, digests


def _radii(arrays: dict[str, np.ndarray], entry: dict[str, Any]) -> StoredRadii:
    key, feature = entry["features"]
    k = entry["k"]
    if not isinstance(k, int) or isinstance(k, bool):
        raise ValueError(f"k-NN radii with k {k!r}")
    values = np.asarray(arrays[entry["array"]], dtype=np.float64)
    return StoredRadii((str(key), str(feature)), k, values, str(entry["rows_sha256"]), str(entry["distance"]))


def _eigh(arrays: dict[str, np.ndarray], entry: dict[str, Any]) -> StoredEigh:
    name = _state_name(entry["state"])
    values, vectors = arrays[f"eigh__{name}__values"], arrays[f"eigh__{name}__vectors"]
    return StoredEigh(np.asarray(values, np.float64), np.asarray(vectors, np.float64), str(entry["state_sha256"]))


def _check_and_offer(reference: Reference, state_rows_sha256: dict[str, str], where: str) -> None:
    """Check the stored radii and decompositions against the rows and states they are of (a stale or changed one
    is an error, never used), then put them where the metrics look for them."""
    rows_of: dict[tuple[str, str], np.ndarray] = {}
    for features in dict.fromkeys(stored.features for stored in reference.radii):
        rows = reference.rows(features)
        if rows is None:
            raise SdevalError(f"{where}: k-NN radii of {features[1]} ({features[0]}), which it lacks")
        derived.check_radii([stored for stored in reference.radii if stored.features == features], rows, where)
        rows_of[features] = rows
    states = reference.states()
    for name, decomposition in reference.eigh.items():
        if name not in states:
            raise SdevalError(f"{where}: an eigen-decomposition of Fréchet state {name!r}, which it lacks")
        derived.check_eigh(decomposition, states[name], name, where)
        features = reference.state_rows.get(name)
        rows = None if features is None else reference.rows(features)
        if features is not None and rows is not None:
            if derived.rows_sha256(rows) != state_rows_sha256.get(name):
                raise SdevalError(f"{where}: Fréchet state {name!r} was accumulated from other rows than it holds now")
            rows_of[features] = rows
    derived.offer(reference.radii, rows_of, reference.eigh, states, reference.state_rows)


def first_difference(expected: dict[str, Any], found: dict[str, Any]) -> str | None:
    """The first field (in sorted order) whose value differs between two protocols, or None."""
    for name in sorted(set(expected) | set(found)):
        if expected.get(name) != found.get(name):
            return name
    return None


def check_protocol(expected: dict[str, Any], found: dict[str, Any], what: str) -> None:
    """Raise ProtocolMismatchError naming the first field that differs between two protocols."""
    name = first_difference(expected, found)
    if name is not None:
        raise ProtocolMismatchError(
            f"{what} was made with a different protocol: {name} is {found.get(name)!r} there "
            f"but {expected.get(name)!r} here"
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


@dataclass
class MergeResult:
    """A merged reference, and what the caller should tell the user about it."""

    reference: Reference
    warnings: list[str] = field(default_factory=list)


def _describe(key: str, protocol: dict[str, Any]) -> str:
    return f"{protocol.get('extractor', 'unknown')} features (cache key {key})"


def _check_same_protocols(parts: list[Reference]) -> None:
    """Every part must hold the same extractors, each with the same protocol, as the first one.

    A protocol change often changes the cache key too (Inception's preprocessing is part of it), so features
    of one kind under two keys are compared field by field before they are reported as missing and extra.
    """
    first = parts[0]
    for other in parts[1:]:
        missing = [k for k in first.protocols if k not in other.protocols]
        extra = [k for k in other.protocols if k not in first.protocols]
        for key, expected in first.protocols.items():
            kind = expected.get("extractor", key)
            same_kind = [k for k in extra if other.protocols[k].get("extractor", k) == kind]
            found_key = key if key in other.protocols else next(iter(same_kind), None)
            if found_key is None:
                continue
            name = first_difference(expected, other.protocols[found_key])
            if name is not None:
                raise ProtocolMismatchError(
                    f"cannot merge parts made with different protocols: the {kind} {name} is "
                    f"{other.protocols[found_key].get(name)!r} in {other.source} but {expected.get(name)!r} "
                    f"in {first.source}"
                )
            if found_key != key:
                raise ProtocolMismatchError(
                    f"cannot merge parts made with different protocols: the {kind} cache key is {found_key!r} "
                    f"in {other.source} but {key!r} in {first.source}"
                )
        if missing or extra:
            problems = [
                f"{other.source} lacks the {_describe(k, first.protocols[k])} of {first.source}" for k in missing
            ]
            problems += [
                f"{other.source} holds {_describe(k, other.protocols[k])} that {first.source} lacks" for k in extra
            ]
            raise ProtocolMismatchError(f"cannot merge parts with different extractors: {'; '.join(problems)}")


def _shared_images(parts: list[Reference]) -> dict[tuple[int, int], int]:
    """(part index, part index) -> how many distinct images (by content sha256) the two parts share.

    Parts without per-image hashes can only be compared whole: the same images hash means the same set.
    A repeat inside one part is not counted: identical outputs do occur in one image set.
    """
    owners: dict[str, list[int]] = {}
    for index, part in enumerate(parts):
        for content in set(part.image_hashes or ()):
            owners.setdefault(content, []).append(index)
    pairs: dict[tuple[int, int], int] = {}
    for holders in owners.values():
        for a, i in enumerate(holders):
            for j in holders[a + 1 :]:
                pairs[i, j] = pairs.get((i, j), 0) + 1
    for i, first in enumerate(parts):
        for j in range(i + 1, len(parts)):
            other = parts[j]
            if (i, j) in pairs or (first.has_image_identity and other.has_image_identity):
                continue
            if first.images_hash == other.images_hash and min(first.n, other.n) > 0:
                pairs[i, j] = min(first.n, other.n)
    return dict(sorted(pairs.items()))


def _overlap_text(parts: list[Reference], pairs: dict[tuple[int, int], int]) -> str:
    listed = [
        f"{parts[i].source} (part {i + 1}) and {parts[j].source} (part {j + 1}) share {count} image"
        + ("s" if count != 1 else "")
        for (i, j), count in list(pairs.items())[:_MAX_LISTED_PAIRS]
    ]
    if len(pairs) > _MAX_LISTED_PAIRS:
        listed.append(f"and {len(pairs) - _MAX_LISTED_PAIRS} more pairs of parts")
    return "; ".join(listed)


def merge_references(parts: list[Reference], source: str, allow_duplicates: bool = False) -> MergeResult:
    """Combine references built on disjoint shards of one image set (same extractors and protocols required).

    Parts that share images (same content sha256) are an error unless `allow_duplicates`, since every shared
    image would count twice in FID, KID and the rest. The result does not depend on the order of `parts`:
    they are put in a canonical order (by images hash, then n) before the Fréchet states are summed, and when
    every part knows its images, the rows are sorted by (path, content sha256), the order a folder's reference
    has, so the merge of a folder's flat shards has the rows, images hash and KID of the folder itself.
    """
    if not parts:
        raise SdevalError("nothing to merge")
    _check_same_protocols(parts)
    warnings = [
        f"{p.source} holds no per-image hashes (reference format version 1, or merged from such a file), so "
        "whether it shares images with the other parts cannot be checked; rebuild it with "
        "`sdeval reference build` to check"
        for p in parts
        if not p.has_image_identity
    ]
    pairs = _shared_images(parts)
    if pairs:
        if not allow_duplicates:
            raise SdevalError(
                f"the parts overlap: {_overlap_text(parts, pairs)}; each shared image would count more than once "
                "(merge disjoint shards only, or pass --allow-duplicates to keep every copy)"
            )
        warnings.append(f"keeping images that occur in more than one part: {_overlap_text(parts, pairs)}")

    # Canonical order: the input order must not change a single bit of the result (the index only breaks ties
    # between copies of one image set, which --allow-duplicates lets through).
    ordered = [parts[i] for i in sorted(range(len(parts)), key=lambda i: (parts[i].images_hash, parts[i].n, i))]
    first = ordered[0]
    features = {
        key: {name: np.concatenate([p.features[key][name] for p in ordered]) for name in first.features[key]}
        for key in first.features
    }
    merged_states = {}
    for name in first.states():
        states = [p.states()[name] for p in ordered if name in p.states()]
        if len(states) == len(ordered):
            merged_states[name] = states[0]
            for state in states[1:]:
                merged_states[name] = merged_states[name].merge(state)
    fid_state = merged_states.pop(POOL_STATE, None)
    n = sum(p.n for p in ordered)
    if all(p.has_image_identity for p in ordered):
        paths = [path for p in ordered for path in p.image_paths or ()]
        hashes = [content for p in ordered for content in p.image_hashes or ()]
        order = sorted(range(n), key=lambda row: (paths[row], hashes[row]))
        rows = np.asarray(order, dtype=np.intp)
        features = {key: {name: values[rows] for name, values in arrays.items()} for key, arrays in features.items()}
        paths, hashes = [paths[row] for row in order], [hashes[row] for row in order]
        merged = Reference(first.protocols, features, fid_state, n, images_hash(paths, hashes), source, hashes, paths)
    else:
        digest = hashlib.sha256("".join(sorted(p.images_hash for p in ordered)).encode()).hexdigest()
        merged = Reference(first.protocols, features, fid_state, n, digest, source)
    merged.frechet = merged_states
    merged.state_rows = {
        name: rows for name, rows in first.state_rows.items() if all(p.state_rows.get(name) == rows for p in ordered)
    }
    _derive_again(merged, ordered)
    return MergeResult(merged, warnings)


def _derive_again(merged: Reference, parts: list[Reference]) -> None:
    """Radii and decompositions do not merge: the radii at each k some part stored, and each state's decomposition
    (as a build stores it), are computed once over the whole."""
    wanted: dict[tuple[str, str], set[int]] = {}
    for part in parts:
        for stored in part.radii:
            wanted.setdefault(stored.features, set()).add(stored.k)
    for features, ks in sorted(wanted.items()):
        rows = merged.rows(features)
        if rows is not None:
            merged.radii += derived.compute_radii(rows, features, tuple(sorted(ks)))
    for name, state in merged.states().items():
        decomposition = derived.compute_eigh(state)  # as a build stores it (states of at least d images)
        if decomposition is not None:
            merged.eigh[name] = decomposition
