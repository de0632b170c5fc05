"""The per-image share of a scoring run: what the expensive stage (decoding, the models, the judges) made of some
of the images, in a form that merges across ranks (torch.distributed) and array jobs (`--shard I/N` part files).

A run always goes through one: the whole set is the part (0, 1), so a merged run and a single-process run score
their cells from the same data by the same code. A part file is JSON (`format: sdeval.score-part`) with its arrays
in `NAME.npz` beside it (read without pickle).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sdeval.core.atomic import atomic_open, sync, write_bytes
from sdeval.core.errors import NoImagesError, ProtocolMismatchError, SdevalError
from sdeval.core.npz import npz_bytes
from sdeval.features import inputs as feature_inputs
from sdeval.judges.base import Detection, FactVerdict, Judgement
from sdeval.judges.vqa import VqaJudgement
from sdeval.metrics.fid import FrechetState
from sdeval.prompts.record import PromptRecord
from sdeval.reference.files import images_hash

FORMAT = "sdeval.score-part"
FORMAT_VERSION = 2  # 2: a part may hold a share of a reference folder (version 1 parts still load)
_READS = (1, 2)


def role_features(role: str) -> dict[str, str]:
    """{feature name its extractor returns: state array name} of a model role: each feature input is a role of its
    own name (sdeval.features.inputs), its outputs' state arrays declared with it (Inception's `pool` and `logits`,
    CMMD's `cmmd_image`); a reference keeps `reference_` + name of those it stores."""
    return {output.feature: output.state for output in feature_inputs.get(role).arrays}


def reference_arrays() -> tuple[str, ...]:
    """Every state array a reference can hold: each stored output of the feature inputs."""
    return feature_inputs.reference_arrays()


@dataclass
class ModelKeys:
    """What scoring the cells needs of the models: each role's cache key and protocol, and each preference
    scorer's protocol (the models themselves stay with the stage that ran them)."""

    roles: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    preference: dict[str, dict[str, Any]] = field(default_factory=dict)

    def protocol(self, role: str) -> dict[str, Any] | None:
        found = self.roles.get(role)
        return found[1] if found is not None else None

    def to_json(self) -> dict[str, Any]:
        return {"roles": {r: list(v) for r, v in self.roles.items()}, "preference": self.preference}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelKeys:
        return cls({r: (v[0], v[1]) for r, v in data["roles"].items()}, dict(data["preference"]))


@dataclass
class ReferencePart:
    """The reference as the cells need it: its identity, its rows of each feature kind and its Fréchet state.

    A share of a reference folder (`share` (I, N) with N > 1: one rank's or one array job's, made with its image
    shard) holds only its own rows, with each row's path and hash, the files it could not decode and how many files
    the folder lists, and no Fréchet state: `merge_parts` makes the whole from the shares as one process would."""

    identity: dict[str, Any]
    n: int
    arrays: dict[str, np.ndarray]  # state names (pool, cmmd_image, each stored feature input's)
    fid_state: FrechetState | None
    share: tuple[int, int] = (0, 1)
    paths: list[str] | None = None  # a share's rows (relative to the folder), sorted
    hashes: list[str] | None = None
    skipped: list[str] = field(default_factory=list)
    n_listed: int | None = None

    @property
    def is_share(self) -> bool:
        return self.share[1] > 1

    def key(self) -> dict[str, Any]:
        """What every part of one run must agree on: the reference's identity, or for shares its folder and split."""
        return {"source": self.identity["source"], "shares": self.share[1]} if self.is_share else self.identity

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"identity": self.identity, "n": self.n}
        if self.is_share:
            out.update(share=list(self.share), paths=self.paths, hashes=self.hashes, skipped=self.skipped,
                       n_listed=self.n_listed)  # fmt: skip
        return out


@dataclass
class ImagePart:
    """Per image of one share (in sorted path order), and what the share shares with the run."""

    root: str
    shard: tuple[int, int]  # (index, count); (0, 1) is the whole set
    n_listed: int  # image files found under root, in every shard
    options: dict[str, Any]  # the run's options that move results (equal in every part)
    source: dict[str, Any]  # the results' `source` block
    models: ModelKeys
    reference: ReferencePart | None
    paths: list[str]
    hashes: list[str]
    skipped: list[dict[str, str]]
    n_computed: int
    features: dict[str, np.ndarray]  # state name -> [n, d]
    prompts: dict[str, Any] | None  # records (per image), missing, warnings, manifest; None: not looked up
    run_rows: list[dict[str, Any] | None] | None  # each image's generation-run row; None: not a run
    texts: dict[str, Any] | None  # distinct, embeddings [P, D], truncated, n_computed, warning
    judged: dict[str, Any] | None  # judgements (JSON), categories, prompt_ids, specs, missing, protocol
    faithful: dict[str, Any] | None  # columns, missing
    preference: dict[str, Any] | None  # scores {name: [n]}, missing {name: {index: reason}}
    warnings: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.paths)

    @property
    def label(self) -> str:
        return f"shard {self.shard[0]}/{self.shard[1]}"

    # -- files ------------------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the part (JSON) and its arrays (NAME.npz beside it); returns the arrays' path. The JSON is
        written and synced first, then the arrays are written and put in place, then the JSON: so a part's JSON
        never names arrays that are not there yet, and a failed write (a full disk) leaves an earlier part at that
        path as it was."""
        path = Path(path)
        arrays_path = path.with_name(f"{path.stem if path.suffix == '.json' else path.name}.npz")
        arrays: dict[str, np.ndarray] = {f"feature__{k}": v for k, v in self.features.items()}
        if self.texts is not None:
            arrays["texts"] = np.asarray(self.texts["embeddings"], dtype=np.float32)
        if self.preference is not None:
            arrays.update({f"preference__{k}": v for k, v in self.preference["scores"].items()})
        if self.reference is not None:
            arrays.update({f"reference__{k}": v for k, v in self.reference.arrays.items()})
            state = self.reference.fid_state
            if state is not None:
                arrays.update(fid_n=np.array(state.n), fid_sum=state.sum, fid_sum_outer=state.sum_outer)
        with atomic_open(path, "w") as handle:  # renamed into place when this block ends
            handle.write(json.dumps(self._document(arrays_path.name), indent=2, allow_nan=False) + "\n")
            sync(handle)
            write_bytes(arrays_path, npz_bytes(arrays))
        return arrays_path

    def _document(self, arrays_name: str) -> dict[str, Any]:
        texts = None if self.texts is None else {k: v for k, v in self.texts.items() if k != "embeddings"}
        faithful = None if self.faithful is None else {**self.faithful, "missing": _str_keys(self.faithful["missing"])}
        preference = None
        if self.preference is not None:  # JSON keys are strings: image indices go out as text and come back as int
            preference = {"missing": {name: _str_keys(r) for name, r in self.preference["missing"].items()}}
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "arrays": arrays_name,
            "root": self.root,
            "shard": list(self.shard),
            "n_listed": self.n_listed,
            "options": self.options,
            "source": self.source,
            "models": self.models.to_json(),
            "reference": None if self.reference is None else self.reference.to_json(),
            "paths": self.paths,
            "hashes": self.hashes,
            "skipped": self.skipped,
            "n_computed": self.n_computed,
            "prompts": _prompts_out(self.prompts),
            "run_rows": self.run_rows,
            "texts": texts,
            "judged": self.judged,
            "faithful": faithful,
            "preference": preference,
            "warnings": self.warnings,
        }

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ImagePart:
        """A part file and its arrays; anything else is one SdevalError naming the file."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SdevalError(f"{path}: no such part file") from None
        except (OSError, ValueError) as err:
            raise SdevalError(f"{path}: not a readable part file ({err})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
            raise SdevalError(f"{path}: not a part of `sdeval score --shard` (format {found!r}, expected {FORMAT})")
        if doc.get("format_version") not in _READS:
            raise SdevalError(
                f"{path}: part format version {doc.get('format_version')} is not one this sdeval reads "
                f"({', '.join(map(str, _READS))})"
            )
        arrays_path = path.parent / doc["arrays"]
        try:
            with np.load(arrays_path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
        except FileNotFoundError:
            raise SdevalError(
                f"{path}: its arrays {arrays_path.name} are missing (keep them beside the part)"
            ) from None
        except (OSError, ValueError) as err:
            raise SdevalError(f"{arrays_path}: not readable ({err})") from None
        try:
            return cls._from_document(doc, arrays)
        except (KeyError, TypeError, ValueError) as err:
            raise SdevalError(f"{path}: a damaged part file ({type(err).__name__}: {err})") from None

    @classmethod
    def _from_document(cls, doc: dict[str, Any], arrays: dict[str, np.ndarray]) -> ImagePart:
        def prefixed(prefix: str) -> dict[str, np.ndarray]:
            return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}

        reference = None
        if doc["reference"] is not None:
            state = None
            if "fid_n" in arrays:
                state = FrechetState(int(arrays["fid_n"]), arrays["fid_sum"], arrays["fid_sum_outer"])
            block = doc["reference"]
            reference = ReferencePart(block["identity"], block["n"], prefixed("reference__"), state)
            if "share" in block:
                reference.share = (int(block["share"][0]), int(block["share"][1]))
                reference.paths, reference.hashes = list(block["paths"]), list(block["hashes"])
                reference.skipped, reference.n_listed = list(block["skipped"]), int(block["n_listed"])
        texts = None if doc["texts"] is None else {**doc["texts"], "embeddings": arrays["texts"]}
        preference = None
        if doc["preference"] is not None:
            missing = {name: _int_keys(r) for name, r in doc["preference"]["missing"].items()}
            preference = {"scores": prefixed("preference__"), "missing": missing}
        faithful = None
        if doc["faithful"] is not None:
            faithful = {**doc["faithful"], "missing": _int_keys(doc["faithful"]["missing"])}
        return cls(
            root=doc["root"],
            shard=(int(doc["shard"][0]), int(doc["shard"][1])),
            n_listed=int(doc["n_listed"]),
            options=doc["options"],
            source=doc["source"],
            models=ModelKeys.from_json(doc["models"]),
            reference=reference,
            paths=list(doc["paths"]),
            hashes=list(doc["hashes"]),
            skipped=list(doc["skipped"]),
            n_computed=int(doc["n_computed"]),
            features=prefixed("feature__"),
            prompts=_prompts_in(doc["prompts"]),
            run_rows=doc["run_rows"],
            texts=texts,
            judged=doc["judged"],
            faithful=faithful,
            preference=preference,
            warnings=list(doc["warnings"]),
        )


# -- merging -----------------------------------------------------------------------------------------------------


def merge_parts(parts: list[ImagePart], names: list[str] | None = None) -> ImagePart:
    """The whole set from its shares: every shard of one split exactly once, made under one set of options, models
    and reference; images in sorted path order, as one process would have them. `names` label the parts in errors
    (their files)."""
    if not parts:
        raise SdevalError("merge: no parts")
    names = names or [part.label for part in parts]
    _check_split(parts, names)
    _check_same(parts, names)
    if len(parts) == 1:
        return parts[0]
    order = sorted((path, p, i) for p, part in enumerate(parts) for i, path in enumerate(part.paths))
    position = {(p, i): j for j, (_, p, i) in enumerate(order)}  # (part, its index) -> index in the whole
    first = parts[0]
    merged = ImagePart(
        root=first.root,
        shard=(0, 1),
        n_listed=first.n_listed,
        options=first.options,
        source=first.source,
        models=first.models,
        reference=_merge_reference(parts, names),
        paths=[path for path, _, _ in order],
        hashes=[parts[p].hashes[i] for _, p, i in order],
        skipped=sorted((s for part in parts for s in part.skipped), key=lambda s: s["path"]),
        n_computed=sum(part.n_computed for part in parts),
        features=_merge_features(parts, order),
        prompts=_merge_prompts(parts, order),
        run_rows=None if first.run_rows is None else [parts[p].run_rows[i] for _, p, i in order],  # pyright: ignore[reportOptionalSubscript]  # all parts of a run have it when the first has
        texts=_merge_texts(parts),
        judged=_merge_judged(parts, order, position),
        faithful=_merge_faithful(parts, order, position),
        preference=_merge_preference(parts, order, position),
        warnings=list(dict.fromkeys(w for part in parts for w in part.warnings)),
    )
    return merged


def _check_split(parts: list[ImagePart], names: list[str]) -> None:
    counts = {part.shard[1] for part in parts}
    if len(counts) > 1:
        listed = ", ".join(f"{n}: {p.shard[0]}/{p.shard[1]}" for n, p in zip(names, parts, strict=True))
        raise SdevalError(f"merge: the parts come from different splits ({listed})")
    (count,) = counts
    seen: dict[int, str] = {}
    for name, part in zip(names, parts, strict=True):
        index = part.shard[0]
        if index in seen:
            raise SdevalError(f"merge: shard {index}/{count} is given twice ({seen[index]} and {name})")
        seen[index] = name
    missing = [i for i in range(count) if i not in seen]
    if missing:
        listed = ", ".join(f"{i}/{count}" for i in missing)
        raise SdevalError(f"merge: shard(s) {listed} missing: run `sdeval score ... --shard I/{count}` for each")
    owner: dict[str, str] = {}
    for name, part in zip(names, parts, strict=True):
        for path in [*part.paths, *(s["path"] for s in part.skipped)]:
            if path in owner:
                raise SdevalError(f"merge: {path} is in both {owner[path]} and {name}: the shards overlap")
            owner[path] = name
    listed = {part.n_listed for part in parts}
    if len(listed) > 1 or len(owner) != next(iter(listed)):
        raise SdevalError(
            f"merge: the shards hold {len(owner)} images but the folder had {sorted(listed)} when they were made: "
            "the images changed between shards; score them again"
        )


def _check_same(parts: list[ImagePart], names: list[str]) -> None:
    first, first_name = parts[0], names[0]
    for name, part in zip(names[1:], parts[1:], strict=True):
        for what, a, b in (
            ("options", first.options, part.options),
            ("root", first.root, part.root),
            ("models", first.models.to_json(), part.models.to_json()),
            ("reference", first.reference.key() if first.reference else None,
             part.reference.key() if part.reference else None),
        ):  # fmt: skip
            if a != b:
                field_name = _first_difference(a, b)
                raise ProtocolMismatchError(
                    f"merge: {first_name} and {name} were made with different {what}"
                    f"{f' ({field_name})' if field_name else ''}: score every shard with the same command"
                )


def _first_difference(a: Any, b: Any, prefix: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
    return prefix.rstrip(".")


def _merge_reference(parts: list[ImagePart], names: list[str]) -> ReferencePart | None:
    """The reference of the whole: the run's own when every part holds all of it (a file), else the shares of its
    folder put together as one process extracts it: rows in sorted path order, the Fréchet state of those rows."""
    first = parts[0].reference
    if first is None or not first.is_share:
        return first
    shares: list[ReferencePart] = []
    for name, part in zip(names, parts, strict=True):
        share = part.reference
        if share is None or share.share != part.shard:
            held = f"{share.share[0]}/{share.share[1]}" if share is not None else "none"
            raise SdevalError(
                f"merge: {name} holds reference share {held} with image shard {part.shard[0]}/{part.shard[1]}: "
                "score every shard with the same command"
            )
        shares.append(share)
    _check_reference_cover(shares, names)
    paths = [path for share in shares for path in share.paths or ()]
    hashes = [h for share in shares for h in share.hashes or ()]
    source = first.identity["source"]
    if not paths:
        skipped = sorted(s for share in shares for s in share.skipped)
        raise NoImagesError(
            f"{source}: none of the {first.n_listed} image files could be decoded (first: {skipped[0]})"
        )
    order = np.array(sorted(range(len(paths)), key=paths.__getitem__), dtype=np.intp)
    held = [share for share in shares if share.n]  # an empty share holds no arrays
    arrays = {name: np.concatenate([share.arrays[name] for share in held])[order]
              for name in dict.fromkeys(name for share in held for name in share.arrays)}  # fmt: skip
    paths, hashes = [paths[i] for i in order], [hashes[i] for i in order]
    identity = {"source": source, "n": len(paths), "images_sha256": images_hash(paths, hashes)}
    state = FrechetState.from_features(arrays["pool"]) if "pool" in arrays else None
    return ReferencePart(identity, len(paths), arrays, state)


def _check_reference_cover(shares: list[ReferencePart], names: list[str]) -> None:
    """The shares hold every file of the reference folder once, as it was listed when each was made."""
    owner: dict[str, str] = {}
    listed: set[int] = set()
    for name, share in zip(names, shares, strict=True):
        for path in [*(share.paths or ()), *share.skipped]:
            if path in owner:
                raise SdevalError(f"merge: reference image {path} is in both {owner[path]} and {name}")
            owner[path] = name
        assert share.n_listed is not None  # a share is made, and read back, with the count its folder listed
        listed.add(share.n_listed)
    if len(listed) > 1 or len(owner) != next(iter(listed)):
        raise SdevalError(
            f"merge: the reference shares hold {len(owner)} images but the folder {shares[0].identity['source']} had "
            f"{sorted(listed)} when they were made: the reference changed between shards; score them again"
        )


def _merge_features(parts: list[ImagePart], order: list[tuple[str, int, int]]) -> dict[str, np.ndarray]:
    """Every feature array by rows, in the whole's image order: the models' and each feature input's (the one merge
    rule an input declares, sdeval.features.inputs.ROWS)."""
    names = [k for part in parts for k in part.features]
    out = {}
    for name in dict.fromkeys(names):
        out[name] = np.stack([parts[p].features[name][i] for _, p, i in order])
    return out


def _merge_prompts(parts: list[ImagePart], order: list[tuple[str, int, int]]) -> dict[str, Any] | None:
    if parts[0].prompts is None:
        return None
    return {
        "records": [parts[p].prompts["records"][i] for _, p, i in order],  # pyright: ignore[reportOptionalSubscript]  # all parts of a run have it when the first has
        "missing": sorted((m for part in parts for m in part.prompts["missing"]), key=lambda m: m["path"]),  # pyright: ignore[reportOptionalSubscript]  # all parts of a run have it when the first has
        "warnings": list(dict.fromkeys(w for part in parts for w in part.prompts["warnings"])),  # pyright: ignore[reportOptionalSubscript]  # all parts of a run have it when the first has
        "manifest": parts[0].prompts["manifest"],
    }


def _merge_texts(parts: list[ImagePart]) -> dict[str, Any] | None:
    if parts[0].texts is None:
        return None
    rows: dict[str, np.ndarray] = {}
    truncated: dict[str, bool] = {}
    for part in parts:
        texts = part.texts
        assert texts is not None
        for j, prompt in enumerate(texts["distinct"]):
            rows.setdefault(prompt, texts["embeddings"][j])
            if texts["truncated"] is not None:
                truncated[prompt] = texts["truncated"][j]
    distinct = list(rows)
    width = next((len(r) for r in rows.values()), parts[0].texts["embeddings"].shape[-1])
    return {
        "distinct": distinct,
        "embeddings": np.stack(list(rows.values())) if rows else np.zeros((0, width), np.float32),
        "truncated": [truncated[p] for p in distinct] if len(truncated) == len(distinct) else None,
        "n_computed": sum(part.texts["n_computed"] for part in parts),  # pyright: ignore[reportOptionalSubscript]  # all parts of a run have it when the first has
        "context": parts[0].texts.get("context"),
    }


def _merge_faithful(
    parts: list[ImagePart], order: list[tuple[str, int, int]], position: dict[tuple[int, int], int]
) -> dict[str, Any] | None:
    """`columns`: per-image lists by name; `missing`: image index -> reason."""
    blocks = [part.faithful for part in parts]
    if blocks[0] is None:
        return None
    columns = {name: [blocks[p]["columns"][name][i] for _, p, i in order] for name in blocks[0]["columns"]}  # pyright: ignore[reportOptionalSubscript]  # all parts of a run have it when the first has
    missing = {position[(p, i)]: r for p, block in enumerate(blocks) for i, r in block["missing"].items()}  # pyright: ignore[reportOptionalSubscript]  # all parts of a run have it when the first has
    return {"columns": columns, "missing": missing}


def _merge_judged(
    parts: list[ImagePart], order: list[tuple[str, int, int]], position: dict[tuple[int, int], int]
) -> dict[str, Any] | None:
    blocks = [part.judged for part in parts]
    if blocks[0] is None:
        return None
    keys = ("judgements", "categories", "prompt_ids", "specs")
    out: dict[str, Any] = {key: [blocks[p][key][i] for _, p, i in order] for key in keys}  # pyright: ignore[reportOptionalSubscript]  # all parts of a run have it when the first has
    out["missing"] = {
        str(position[(p, int(i))]): r
        for p, block in enumerate(blocks)
        for i, r in block["missing"].items()  # pyright: ignore[reportOptionalSubscript]  # all parts of a run have it when the first has
    }
    out["protocol"] = blocks[0]["protocol"]
    return out


def _merge_preference(
    parts: list[ImagePart], order: list[tuple[str, int, int]], position: dict[tuple[int, int], int]
) -> dict[str, Any] | None:
    blocks = [part.preference for part in parts]
    if blocks[0] is None:
        return None
    scores = {name: np.array([blocks[p]["scores"][name][i] for _, p, i in order]) for name in blocks[0]["scores"]}  # pyright: ignore[reportOptionalSubscript]  # all parts of a run have it when the first has
    missing = {
        name: {position[(p, i)]: r for p, block in enumerate(blocks) for i, r in block["missing"][name].items()}  # pyright: ignore[reportOptionalSubscript]  # all parts of a run have it when the first has
        for name in blocks[0]["missing"]
    }
    return {"scores": scores, "missing": missing}


# -- JSON forms ----------------------------------------------------------------------------------------------------


def judgement_json(judgement: Judgement | None) -> dict[str, Any] | None:
    return None if judgement is None else judgement.to_json()


def judgement_from_json(data: dict[str, Any] | None) -> Judgement | None:
    """A judgement as the metrics read it (pass, facts with reasons, detections) from its JSON form."""
    if data is None:
        return None
    facts = tuple(FactVerdict(f["kind"], f["fact"], bool(f["passed"]), f["reason"]) for f in data["facts"])
    if "questions" in data:  # a VQA judgement keeps its answers: the benchmarks' own rules read them
        return VqaJudgement.from_json(data, facts)
    detections = tuple(
        Detection(d["class"], float(d["score"]), tuple(d["box"]), d.get("color")) for d in data.get("detections", [])
    )
    return Judgement(bool(data["passed"]), facts, detections, data.get("score"))


def _prompts_out(prompts: dict[str, Any] | None) -> dict[str, Any] | None:
    if prompts is None:
        return None
    return {**prompts, "records": [r.to_dict() if r is not None else None for r in prompts["records"]]}


def _prompts_in(prompts: dict[str, Any] | None) -> dict[str, Any] | None:
    if prompts is None:
        return None
    return {**prompts, "records": [PromptRecord(**r) if r is not None else None for r in prompts["records"]]}


def _str_keys(reasons: dict[int, str]) -> dict[str, str]:
    return {str(i): r for i, r in reasons.items()}


def _int_keys(reasons: dict[str, str]) -> dict[int, str]:
    return {int(i): r for i, r in reasons.items()}
