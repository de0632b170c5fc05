"""Reference sets: shipped definitions of the image sets people compare against (COCO 2014 val 30k, ...).

A definition (JSON, `sdeval/reference_sets/*.json`, format in docs/reference-sets.md) says where the images and
captions come from, which images are in the set and which caption goes with each (seeded rules), the
preprocessing policy, the expected count and, once a build was verified, the file-list hash. This module loads
definitions, checks a user's copy of the images against one (missing, extra, changed files), builds the
reference from it, lists what is defined and built, and turns a set's captions into a prompt suite.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from sdeval.core.atomic import write_text
from sdeval.core.errors import ConfigError, SdevalError
from sdeval.core.images import find_images
from sdeval.core.paths import cache_root
from sdeval.core.textfiles import json_problem
from sdeval.reference.files import images_hash

FORMAT = "sdeval.reference-set"
FORMAT_VERSION = 1
SELECTION_RULES = ("all", "seeded-sample")
CAPTION_RULES = ("seeded-choice",)
PREPROCESSING_POLICIES = ("as-is",)
SOURCE_PREFIX = "refset:"  # a reference built from a set records `refset:ID` as its source
_MAX_NAMED = 5
_PATTERN_FIELD = re.compile(r"\{id(?::0(\d+)d)?\}")


@dataclass(frozen=True)
class Definition:
    """One reference set definition, as read from its file."""

    id: str
    title: str
    description: str
    source: dict[str, str]
    count: int
    pool_count: int | None
    file_pattern: str  # a str.format pattern with one `{id}` field, e.g. COCO_val2014_{id:012d}.jpg
    selection_rule: str
    selection_seed: int | None
    caption_rule: str
    caption_seed: int
    preprocessing: dict[str, str]
    file_list_sha256: str | None  # None: still to be pinned at the first verified build
    files: dict[str, str] | None  # pinned per-file sha256 (name -> sha256), when the definition ships them
    path: Path

    @property
    def pinned(self) -> bool:
        return self.file_list_sha256 is not None

    def file_name(self, image_id: int) -> str:
        return self.file_pattern.format(id=image_id)

    def name_regex(self) -> re.Pattern[str]:
        """The file names the pattern allows (used when no annotation file gives the exact names)."""
        field = _PATTERN_FIELD.search(self.file_pattern)
        assert field is not None  # checked on load
        digits = rf"\d{{{int(field.group(1))}}}" if field.group(1) else r"\d+"
        before, after = self.file_pattern[: field.start()], self.file_pattern[field.end() :]
        return re.compile(f"^{re.escape(before)}{digits}{re.escape(after)}$")

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "count": self.count, "pinned": self.pinned, "path": str(self.path)}


def _need(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ConfigError(f"{where}: `{key}` is missing or not a {getattr(kind, '__name__', kind)}")
    return value


def parse_definition(data: dict[str, Any], path: Path) -> Definition:
    """A definition from its JSON object; ConfigError names the file and the field of the first problem."""
    where = str(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(f"{where}: not a reference set definition (`format` must be {FORMAT!r})")
    if data.get("format_version") != FORMAT_VERSION:
        raise ConfigError(f"{where}: format_version {data.get('format_version')!r} is not {FORMAT_VERSION}")
    images = _need(data, "images", dict, where)
    selection = _need(images, "selection", dict, f"{where}: images")
    captions = _need(data, "captions", dict, where)
    preprocessing = _need(data, "preprocessing", dict, where)
    rule = selection.get("rule")
    if rule not in SELECTION_RULES:
        raise ConfigError(f"{where}: images.selection.rule {rule!r} is not one of {', '.join(SELECTION_RULES)}")
    seed = _need(selection, "seed", int, f"{where}: images.selection") if rule == "seeded-sample" else None
    if captions.get("rule") not in CAPTION_RULES:
        raise ConfigError(f"{where}: captions.rule {captions.get('rule')!r} is not one of {', '.join(CAPTION_RULES)}")
    if preprocessing.get("policy") not in PREPROCESSING_POLICIES:
        raise ConfigError(
            f"{where}: preprocessing.policy {preprocessing.get('policy')!r} is not one of "
            f"{', '.join(PREPROCESSING_POLICIES)}"
        )
    pattern = _need(images, "file_pattern", str, f"{where}: images")
    if len(_PATTERN_FIELD.findall(pattern)) != 1 or "/" in pattern:
        raise ConfigError(f"{where}: images.file_pattern needs exactly one {{id}} or {{id:0Nd}} field, no folder")
    pinned = data.get("file_list_sha256")
    if pinned is not None and not (isinstance(pinned, str) and re.fullmatch(r"[0-9a-f]{64}", pinned)):
        raise ConfigError(f"{where}: file_list_sha256 must be null or a lowercase hex sha256")
    files = data.get("files")
    if files is not None and not (isinstance(files, dict) and all(isinstance(v, str) for v in files.values())):
        raise ConfigError(f"{where}: files must map each file name to its sha256")
    count = _need(images, "count", int, f"{where}: images")
    if files is not None and len(files) != count:
        raise ConfigError(f"{where}: files lists {len(files)} files for images.count {count}")
    return Definition(
        id=_need(data, "id", str, where),
        title=_need(data, "title", str, where),
        description=str(data.get("description", "")),
        source=dict(data.get("source") or {}),
        count=count,
        pool_count=images.get("pool_count"),
        file_pattern=pattern,
        selection_rule=rule,
        selection_seed=seed,
        caption_rule=captions["rule"],
        caption_seed=_need(captions, "seed", int, f"{where}: captions"),
        preprocessing=dict(preprocessing),
        file_list_sha256=pinned,
        files=dict(files) if files is not None else None,
        path=path,
    )


def load_definition(path: str | os.PathLike[str]) -> Definition:
    file = Path(path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"{file}: cannot read the definition: {err.strerror or err}") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"{file}:{err.lineno}: not valid JSON ({json_problem(err, line=False)})") from None
    return parse_definition(data, file)


def shipped_definitions() -> dict[str, Definition]:
    """The definitions that ship with sdeval, by id."""
    found: dict[str, Definition] = {}
    for entry in sorted(resources.files("sdeval.reference_sets").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            definition = parse_definition(json.loads(entry.read_text(encoding="utf-8")), Path(str(entry)))
            found[definition.id] = definition
    return found


def resolve_definition(name: str | None, file: str | None) -> Definition:
    """`--set NAME` (a shipped definition) or `--definition FILE` (any definition file)."""
    if file is not None:
        definition = load_definition(file)
        if name is not None and name != definition.id:
            raise ConfigError(f"--set {name} but {file} defines {definition.id!r}")
        return definition
    if name is None:
        raise ConfigError("give --set NAME (see `sdeval reference list`) or --definition FILE")
    shipped = shipped_definitions()
    if name not in shipped:
        raise ConfigError(f"--set {name}: no such reference set (defined: {', '.join(shipped)})")
    return shipped[name]


# -- annotations: which images, which caption ----------------------------------------------------------------


@dataclass(frozen=True)
class Annotations:
    """What a COCO captions file holds that a set needs: every image id and its captions by annotation id."""

    image_ids: tuple[int, ...]  # sorted
    captions: dict[int, tuple[str, ...]]  # image id -> captions, in ascending annotation id order
    path: Path


def read_annotations(path: str | os.PathLike[str]) -> Annotations:
    """Read a COCO-format captions file (`images` with `id`, `annotations` with `id`, `image_id`, `caption`)."""
    file = Path(path)
    try:
        data = json.loads(file.read_bytes())
        ids = sorted({int(image["id"]) for image in data["images"]})
        rows = sorted((int(a["id"]), int(a["image_id"]), str(a["caption"])) for a in data["annotations"])
    except OSError as err:
        raise SdevalError(f"{file}: cannot read the captions file: {err.strerror or err}") from None
    except (ValueError, KeyError, TypeError) as err:
        raise SdevalError(f"{file}: not a COCO captions file ({type(err).__name__}: {err})") from None
    captions: dict[int, list[str]] = {}
    for _, image_id, caption in rows:
        # COCO captions carry stray newlines and double spaces: one space between words, none around.
        captions.setdefault(image_id, []).append(" ".join(caption.split()))
    return Annotations(tuple(ids), {k: tuple(v) for k, v in captions.items()}, file)


def select_images(definition: Definition, annotations: Annotations) -> list[int]:
    """The set's image ids (sorted): all of the pool, or `count` drawn without replacement from the sorted ids with
    numpy's default_rng(seed).choice."""
    pool = list(annotations.image_ids)
    if definition.pool_count is not None and len(pool) != definition.pool_count:
        raise SdevalError(
            f"{annotations.path}: {len(pool)} images, but set {definition.id} is drawn from {definition.pool_count}"
            " (wrong annotation file?)"
        )
    if definition.selection_rule == "all":
        chosen = pool
    else:
        if definition.count > len(pool):
            raise SdevalError(f"{annotations.path}: {len(pool)} images, fewer than the {definition.count} to draw")
        rows = np.random.default_rng(definition.selection_seed).choice(len(pool), definition.count, replace=False)
        chosen = [pool[int(i)] for i in rows]
    if len(chosen) != definition.count:
        raise SdevalError(f"{annotations.path}: gives {len(chosen)} images, set {definition.id} has {definition.count}")
    return sorted(chosen)


def choose_captions(definition: Definition, annotations: Annotations, ids: list[int]) -> dict[int, str]:
    """One caption per image: going through the images in ascending id order with one default_rng(seed), the
    caption at index rng.integers(number of captions) of the image's captions sorted by annotation id."""
    rng = np.random.default_rng(definition.caption_seed)
    chosen: dict[int, str] = {}
    for image_id in sorted(ids):
        options = annotations.captions.get(image_id)
        if not options:
            raise SdevalError(f"{annotations.path}: image {image_id} has no caption")
        chosen[image_id] = options[int(rng.integers(len(options)))]
    return chosen


def captions_suite(
    definition: Definition, captions_json: str | os.PathLike[str], out_path: str | os.PathLike[str]
) -> int:
    """Write the set's chosen captions as a prompt suite (JSONL, docs/suites.md): rows `coco-<image id>`; returns
    the number of rows."""
    annotations = read_annotations(captions_json)
    ids = select_images(definition, annotations)
    captions = choose_captions(definition, annotations, ids)
    header = {
        "suite": {
            "id": definition.id,
            "version": definition.file_list_sha256[:12] if definition.file_list_sha256 else "unpinned",
            "description": f"{definition.title}: one caption per image ({definition.caption_rule}, seed "
            f"{definition.caption_seed}), from {annotations.path.name}",
        }
    }
    lines = [json.dumps(header, ensure_ascii=False)]
    lines += [json.dumps({"id": f"coco-{i}", "prompt": captions[i]}, ensure_ascii=False) for i in ids]
    write_text(out_path, "\n".join(lines) + "\n")
    return len(ids)


# -- checking a user's copy -----------------------------------------------------------------------------------


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_NAMED])
    return shown + (f" and {len(names) - _MAX_NAMED} more" if len(names) > _MAX_NAMED else "")


@dataclass(frozen=True)
class CopyCheck:
    """A user's copy of a set's images against its definition."""

    definition: Definition
    folder: Path
    names: tuple[str, ...]  # the files that make the set (relative paths), sorted
    hashes: tuple[str, ...]  # their content sha256, in the order of `names`
    missing: tuple[str, ...]
    extra: tuple[str, ...]  # files in the folder that are not in the set and not in its pool
    unused: tuple[str, ...]  # pool images that the set does not draw (a full val2014 copy): left out, not an error
    changed: tuple[str, ...]  # files whose content differs from the pinned per-file hash
    exact_names: bool  # True when an annotation file gave the exact names; else only count and pattern

    @property
    def file_list_sha256(self) -> str:
        """sha256 over the sorted (name, content sha256) pairs: the reference's images_sha256 too."""
        return images_hash(list(self.names), list(self.hashes))

    def problems(self) -> list[str]:
        """Every way the copy differs from the definition, one sentence each (empty: it matches)."""
        d, out = self.definition, []
        if self.missing:
            out.append(f"{len(self.missing)} file(s) missing: {_listed(list(self.missing))}")
        if self.extra:
            out.append(f"{len(self.extra)} extra file(s) not in set {d.id}: {_listed(list(self.extra))}")
        if not self.exact_names and not self.missing and not self.extra and len(self.names) != d.count:
            out.append(f"{len(self.names)} files, set {d.id} has {d.count} (pass --captions to name the difference)")
        if self.changed:
            out.append(f"{len(self.changed)} file(s) changed since the set was pinned: {_listed(list(self.changed))}")
        if not out and d.pinned and self.file_list_sha256 != d.file_list_sha256:
            out.append(
                f"the file list hash is {self.file_list_sha256} but {d.path.name} pins {d.file_list_sha256} (the "
                "definition pins no per-file hashes, so which file changed cannot be named)"
            )
        return out


def check_copy(definition: Definition, folder: str | os.PathLike[str], annotations: Annotations | None) -> CopyCheck:
    """Compare the image files under `folder` with the set: exact names when `annotations` are given (the ids come
    from the annotation file), else the count and the name pattern only."""
    root = Path(folder)
    found = [p.relative_to(root).as_posix() for p in find_images(root)]
    unused: list[str] = []
    if annotations is not None:
        expected = {definition.file_name(i) for i in select_images(definition, annotations)}
        pool = {definition.file_name(i) for i in annotations.image_ids}
        present = set(found)
        missing = sorted(expected - present)
        extra = sorted(n for n in found if n not in expected and n not in pool)
        unused = sorted(n for n in found if n not in expected and n in pool)
        names = sorted(n for n in found if n in expected)
    elif definition.files is not None:  # pinned names: exact even without the annotation file
        expected = set(definition.files)
        missing = sorted(expected - set(found))
        extra = sorted(n for n in found if n not in expected)
        names = sorted(n for n in found if n in expected)
    else:
        regex = definition.name_regex()
        missing = []
        extra = sorted(n for n in found if not regex.match(n))
        names = sorted(n for n in found if regex.match(n))
    with ThreadPoolExecutor(max_workers=4) as pool_:  # hashlib releases the GIL on large buffers
        hashes = list(pool_.map(_sha256_file, [root / n for n in names]))
    changed: list[str] = []
    if definition.files is not None:
        changed = [n for n, h in zip(names, hashes, strict=True) if definition.files.get(n, h) != h]
    return CopyCheck(
        definition, root, tuple(names), tuple(hashes), tuple(missing), tuple(extra), tuple(unused), tuple(changed),
        exact_names=annotations is not None or definition.files is not None,
    )  # fmt: skip


# -- building and listing ---------------------------------------------------------------------------------------


def default_reference_path(set_id: str) -> Path:
    """Where `reference build --set` writes when no -o is given, and where `reference list` looks."""
    return cache_root() / "references" / f"{set_id}.npz"


@dataclass(frozen=True)
class SetBuild:
    """A reference built from a set: the check of the copy and the reference written."""

    check: CopyCheck
    reference: Any  # sdeval.reference.Reference
    out: Path


def build_set_reference(
    check: CopyCheck,
    out: str | os.PathLike[str],
    options: Any,
    inputs: tuple[str, ...] = (),
    values: Mapping[str, Any] | None = None,
    radii_k: tuple[int, ...] | None = None,
) -> SetBuild:
    """Build the reference of a checked copy through the normal `reference build` path (`inputs`, `values`
    and `radii_k` (None: its default) as `build_reference_file` takes them); its source is `refset:ID`.

    A copy holding the whole pool (e.g. all of val2014 for the 30k set) is built from a temporary folder of links
    to the set's files, so the reference's paths and hash are those of the set alone.
    """
    # The build (torch, the extractors) and the file format (numpy): when a set is built, not when one is listed.
    from sdeval.reference.build import build_reference_file
    from sdeval.reference.files import save_reference

    problems = check.problems()
    if problems:
        raise SdevalError(f"{check.folder} is not set {check.definition.id}: {'; '.join(problems)}")
    with tempfile.TemporaryDirectory(prefix="sdeval-refset-") as staging:
        folder = check.folder
        if check.unused:
            folder = Path(staging) / "images"
            folder.mkdir()
            for name in check.names:
                (folder / name).symlink_to((check.folder / name).resolve())
        # Written to a temporary file first: `out` must only ever hold a verified set.
        extra = {} if radii_k is None else {"radii_k": radii_k}
        reference = build_reference_file(str(folder), str(Path(staging) / "ref.npz"), options, inputs=inputs,
                                         values=values, **extra)  # fmt: skip
    if reference.images_hash != check.file_list_sha256:
        # A file that could not be decoded is skipped by extraction: the reference would not be the set.
        raise SdevalError(
            f"{check.folder}: the reference holds {reference.n} of the {len(check.names)} files (some could not be "
            "decoded); not written as set " + check.definition.id
        )
    reference.source = SOURCE_PREFIX + check.definition.id
    save_reference(out, reference)
    return SetBuild(check, reference, Path(out))


def built_references(folder: Path | None = None) -> list[dict[str, Any]]:
    """The references in the cache's references folder: file, n, images hash, source (only `meta` is read)."""
    root = folder if folder is not None else default_reference_path("x").parent
    rows = []
    for file in sorted(root.glob("*.npz")) if root.is_dir() else []:
        try:
            with np.load(file, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
            rows.append({"path": str(file), "n": meta["n"], "images_sha256": meta["images_sha256"],
                         "source": meta.get("source")})  # fmt: skip
        except (OSError, ValueError, KeyError, EOFError) as err:
            rows.append({"path": str(file), "error": f"not a readable reference ({err})"})
    return rows
