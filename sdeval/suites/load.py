"""Suite files: read and check a prompt suite (JSONL or YAML), collecting every problem with its line.

Format (docs/suites.md): an optional header `{"suite": {"id", "version", "description"}}` on the first line, then
one prompt row per line: `id`, `prompt`, optional `category`, `tags`, `negative_prompt`, `init_image`, `spec`.
GenEval's metadata rows (`tag`, `include`, `exclude` at the top level, no id) load as they are.
Format 2 (`"format": 2` in the header) adds the benchmark's name, sources, notes and question sets to the header and
`challenge`, `meta` and `questions` to the rows. A `.jsonl.gz` file is read as the JSONL it holds.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdeval.core.errors import ConfigError
from sdeval.core.suggest import unknown_key_hint, unknown_keys
from sdeval.core.textfiles import json_problem
from sdeval.suites.builtin import builtin_name, resolve_suite_path
from sdeval.suites.questionsets import SuiteQuestion, parse_question_sets, parse_row_questions
from sdeval.suites.spec import Spec, SpecError, parse_spec

ROW_KEYS = ("id", "prompt", "category", "tags", "negative_prompt", "init_image", "spec")
#: Row keys of format 2: Parti's challenge, upstream fields kept as they were, the row's question sets.
ROW_KEYS_2 = ("challenge", "meta", "questions")
#: GenEval's metadata keys, accepted at the top level of a row in place of `spec`.
GENEVAL_KEYS = ("tag", "include", "exclude")
HEADER_KEYS = ("id", "version", "description")
#: Header keys of format 2 (docs/suites.md): how the literature names the benchmark, where each file came from.
HEADER_KEYS_2 = ("format", "name", "sources", "notes", "question_sets", "generation")
#: Format 2 `generation`: the benchmark's own generation rules, used where a generate config leaves the key unset.
GENERATION_KEYS = ("seeds_per_prompt", "seeds", "num_inference_steps", "guidance_scale")
FORMATS = (1, 2)
SOURCE_KEYS = ("repo", "path", "commit")
HEADER = "suite"
SKETCH_PREFIX = "sketch:"
YAML_SUFFIXES = (".yaml", ".yml")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")  # the generation config's rule for ids


@dataclass(frozen=True)
class Prompt:
    """One suite row."""

    id: str
    prompt: str
    category: str | None = None
    negative_prompt: str | None = None
    init_image: Path | None = None  # absolute; set for image2image
    init_image_sha256: str | None = None
    tags: tuple[str, ...] = ()
    spec: Spec | None = None
    init_image_source: str | None = None  # as written in the row: a path relative to the suite, or sketch:KEY
    line: int | None = field(default=None, compare=False)  # where the row is in its file, for messages
    challenge: str | None = None  # format 2: PartiPrompts' challenge axis
    meta: tuple[tuple[str, Any], ...] = ()  # format 2: upstream fields kept as they were (scalars)
    questions: tuple[tuple[str, tuple[SuiteQuestion, ...]], ...] = ()  # format 2: per question set

    def question_set(self, name: str) -> tuple[SuiteQuestion, ...] | None:
        """This row's questions of set `name`, or None when it has none."""
        return dict(self.questions).get(name)

    def to_json(self) -> dict[str, Any]:
        """The row as a suite file holds it (init_image as written)."""
        out: dict[str, Any] = {"id": self.id, "prompt": self.prompt, "category": self.category}
        if self.tags:
            out["tags"] = list(self.tags)
        if self.negative_prompt is not None:
            out["negative_prompt"] = self.negative_prompt
        if self.init_image_source is not None:
            out["init_image"] = self.init_image_source
        if self.spec is not None:
            out["spec"] = self.spec.to_json()
        if self.challenge is not None:
            out["challenge"] = self.challenge
        if self.meta:
            out["meta"] = dict(self.meta)
        if self.questions:
            out["questions"] = {name: [q.to_json() for q in items] for name, items in self.questions}
        return out


@dataclass(frozen=True)
class SuiteIdentity:
    """What names a suite in generation metadata and results: id, version, sha256 of the file."""

    id: str
    version: str | None
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "version": self.version, "sha256": self.sha256}


@dataclass(frozen=True)
class Suite:
    prompts: tuple[Prompt, ...]
    path: Path
    sha256: str
    id: str = ""
    version: str | None = None
    description: str | None = None
    source: str = ""  # how to name it again: builtin:NAME for a built-in suite, else the file's path
    format: int = 1
    name: str | None = None  # format 2: the benchmark as the literature names it
    sources: tuple[dict[str, Any], ...] = ()  # format 2: each upstream file (repo, path, commit, license, sha256, ...)
    notes: tuple[str, ...] = ()  # format 2: what a reader must know to compare with published numbers
    question_sets: dict[str, dict[str, str]] = field(default_factory=dict)  # format 2: name -> format, description
    generation: dict[str, Any] = field(default_factory=dict)  # format 2: the benchmark's generation defaults

    @property
    def identity(self) -> SuiteIdentity:
        return SuiteIdentity(self.id, self.version, self.sha256)

    @property
    def categories(self) -> dict[str, int]:
        """Prompts per category, in first-seen order (rows without one count under "")."""
        return dict(Counter(p.category or "" for p in self.prompts))

    @property
    def challenges(self) -> dict[str, int]:
        """Prompts per challenge (format 2), in first-seen order; empty when no row has one."""
        return dict(Counter(p.challenge for p in self.prompts if p.challenge is not None))

    def question_counts(self) -> dict[str, int]:
        """Questions per declared question set, over every row (0 for a set no row fills)."""
        counts = dict.fromkeys(self.question_sets, 0)
        for prompt in self.prompts:
            for name, items in prompt.questions:
                counts[name] = counts.get(name, 0) + len(items)
        return counts


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a suite file; `line` is 1-based, None for the file as a whole."""

    line: int | None
    reason: str

    def at(self, name: str) -> str:
        return f"{name}:{self.line}: {self.reason}" if self.line is not None else f"{name}: {self.reason}"

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "reason": self.reason}


def derived_id(prompt: str, spec: Spec) -> str:
    """Id of a row that has none (GenEval's metadata rows): a hash of its content, so it stays the same when lines
    are added or moved."""
    canonical = json.dumps({"prompt": prompt, "spec": spec.to_json()}, sort_keys=True, separators=(",", ":"))
    return "g-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:10]


def parse_suite(data: bytes, path: Path, *, check_files: bool = False) -> tuple[Suite, list[Problem]]:
    """The suite in `data` (read from `path`) and every problem found; rows with a problem are left out.

    `check_files`: also check that init images named by path exist and that sketches can be drawn. A `.gz` file is
    decompressed first, and its sha256 is that of the JSONL it holds (so it does not depend on the compressor).
    """
    if path.suffix.lower() == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            return _empty(path, hashlib.sha256(data).hexdigest()), [Problem(None, f"not a gzip file ({err})")]
    sha256 = hashlib.sha256(data).hexdigest()
    problems: list[Problem] = []
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        return _empty(path, sha256), [Problem(line, "not UTF-8 text")]
    yaml = path.suffix.lower() in YAML_SUFFIXES
    header, records = _yaml_records(text, problems) if yaml else _jsonl_records(text, problems)
    head = _header(header, path, problems, "" if yaml else f"{HEADER}.")
    prompts: list[Prompt] = []
    seen: dict[str, int | None] = {}
    for line, obj in records:
        prompt = _row(obj, line, path.parent, problems, check_files, head)
        if prompt is None:
            continue
        if prompt.id in seen:
            if "id" in obj:
                problems.append(Problem(line, f"id {prompt.id!r} repeats line {seen[prompt.id]}"))
            else:
                problems.append(
                    Problem(line, f"same prompt and spec as line {seen[prompt.id]}; give the rows distinct ids")
                )
            continue
        seen[prompt.id] = line
        prompts.append(prompt)
    if not records and not problems:
        problems.append(Problem(None, "holds no prompts"))
    problems.sort(key=lambda p: p.line or 0)
    suite = Suite(
        prompts=tuple(prompts),
        path=path,
        sha256=sha256,
        id=head.id,
        version=head.version,
        description=head.description,
        source=str(path),
        format=head.format,
        name=head.name,
        sources=head.sources,
        notes=head.notes,
        question_sets=head.question_sets,
        generation=head.generation,
    )
    return suite, problems


def _empty(path: Path, sha256: str) -> Suite:
    return Suite(prompts=(), path=path, sha256=sha256, id=_stem_id(path), source=str(path))


def _stem_id(path: Path) -> str:
    """A header-less suite's id: its file name without the suffix (and .gz), made file-name safe."""
    name = path.name[: -len(".gz")] if path.name.lower().endswith(".gz") else path.name
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(name).stem).strip("-._") or "suite"
    return stem[:100]


def _jsonl_records(text: str, problems: list[Problem]) -> tuple[tuple[int, Any] | None, list[tuple[int, Any]]]:
    header: tuple[int, Any] | None = None
    records: list[tuple[int, Any]] = []
    first = True
    # Split on newlines only: str.splitlines would also cut at U+2028 and friends, which JSON strings may hold.
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            problems.append(Problem(lineno, f"not valid JSON ({json_problem(err, line=False)})"))
            first = False
            continue
        if isinstance(obj, dict) and list(obj) == [HEADER]:
            if first:
                header = (lineno, obj[HEADER])
            else:
                problems.append(Problem(lineno, "the suite header must be the first line"))
        else:
            records.append((lineno, obj))
        first = False
    return header, records


class _Lined(dict):
    """A YAML mapping that remembers the line it starts on."""

    line: int = 0


def _yaml_records(text: str, problems: list[Problem]) -> tuple[tuple[int, Any] | None, list[tuple[int | None, Any]]]:
    import yaml  # PyYAML: only for a .yaml suite, not with every JSONL one

    class Loader(yaml.SafeLoader):
        pass

    def construct(loader: yaml.SafeLoader, node: yaml.MappingNode) -> _Lined:
        obj = _Lined(loader.construct_mapping(node, deep=True))
        obj.line = node.start_mark.line + 1
        return obj

    Loader.add_constructor("tag:yaml.org,2002:map", construct)
    try:
        doc = yaml.load(text, Loader=Loader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        reason = " ".join(str(getattr(err, "problem", None) or err).split())
        problems.append(Problem(None if mark is None else mark.line + 1, f"not valid YAML: {reason}"))
        return None, []
    if doc is None:
        return None, []
    if isinstance(doc, list):  # a bare list of rows: no header
        return None, [(getattr(obj, "line", 0) or None, obj) for obj in doc]
    if not isinstance(doc, dict):
        problems.append(Problem(1, f"expected a mapping with id, version, description, prompts; got {_kind(doc)}"))
        return None, []
    rows = doc.get("prompts")
    header = {k: v for k, v in doc.items() if k != "prompts"}
    if not isinstance(rows, list):
        problems.append(Problem(getattr(doc, "line", 1), "prompts: expected a list of prompt rows"))
        rows = []
    records = [(getattr(obj, "line", 0) or None, obj) for obj in rows]
    return ((getattr(doc, "line", 1), header) if header else None), records


@dataclass(frozen=True)
class _Head:
    """What the header says (a file without one: named after itself, unversioned, format 1)."""

    id: str
    version: str | None = None
    description: str | None = None
    format: int = 1
    name: str | None = None
    sources: tuple[dict[str, Any], ...] = ()
    notes: tuple[str, ...] = ()
    question_sets: dict[str, dict[str, str]] = field(default_factory=dict)
    generation: dict[str, Any] = field(default_factory=dict)


def _header(header: tuple[int, Any] | None, path: Path, problems: list[Problem], prefix: str) -> _Head:
    """The header's fields; a file without one is named after itself, unversioned."""
    if header is None:
        return _Head(_stem_id(path))
    line, obj = header
    if not isinstance(obj, dict):
        problems.append(Problem(line, f"{HEADER}: expected an object with {', '.join(HEADER_KEYS)}, got {_kind(obj)}"))
        return _Head(_stem_id(path))
    form = obj.get("format", 1)
    if form not in FORMATS or isinstance(form, bool):
        problems.append(
            Problem(line, f"{prefix}format: must be one of {', '.join(map(str, FORMATS))}, got {_show(form)}")
        )
        form = 1
    known = HEADER_KEYS + (HEADER_KEYS_2 if form == 2 else ("format",))
    for key in unknown_keys(obj, known):
        hint = ' (a format 2 key: add "format": 2 to the header)' if key in HEADER_KEYS_2 else ""
        problems.append(Problem(line, f"{prefix}{key}: unknown key{hint or unknown_key_hint(key, known)}"))
    suite_id = obj.get("id")
    if not isinstance(suite_id, str) or not _SAFE_NAME.match(suite_id):
        problems.append(Problem(line, f"{prefix}id: expected a file-name-safe id, got {_show(suite_id)}"))
        suite_id = _stem_id(path)
    version = obj.get("version")
    if isinstance(version, int) and not isinstance(version, bool):
        version = str(version)
    if not isinstance(version, str) or not version.strip():
        problems.append(Problem(line, f'{prefix}version: expected a string such as "1", got {_show(version)}'))
        version = None
    description = obj.get("description")
    if description is not None and not isinstance(description, str):
        problems.append(Problem(line, f"{prefix}description: expected a string, got {_show(description)}"))
        description = None
    if form != 2:
        return _Head(suite_id, version, description)

    def bad(reason: str) -> None:
        problems.append(Problem(line, f"{prefix}{reason}"))

    name = obj.get("name")
    if name is not None and not (isinstance(name, str) and name.strip()):
        bad(f"name: expected a non-empty string, got {_show(name)}")
        name = None
    notes = obj.get("notes", [])
    if not (isinstance(notes, list) and all(isinstance(n, str) and n.strip() for n in notes)):
        bad(f"notes: expected a list of non-empty strings, got {_show(notes)}")
        notes = []
    sets = parse_question_sets(obj.get("question_sets", {}), "question_sets", bad)
    generation = _generation(obj.get("generation", {}), bad)
    sources = _sources(obj.get("sources", []), bad)
    return _Head(suite_id, version, description, 2, name, sources, tuple(notes), sets, generation)


def _generation(value: Any, bad: Any) -> dict[str, Any]:
    """Format 2 `generation`: {seeds_per_prompt | seeds, num_inference_steps, guidance_scale}, each checked."""
    if not isinstance(value, dict):
        bad(f"generation: expected an object with {', '.join(GENERATION_KEYS)}, got {_show(value)}")
        return {}
    out: dict[str, Any] = {}
    for key in unknown_keys(value, GENERATION_KEYS):
        bad(f"generation.{key}: unknown key{unknown_key_hint(key, GENERATION_KEYS)}")
    if "seeds" in value and "seeds_per_prompt" in value:
        bad("generation.seeds: give either seeds or seeds_per_prompt, not both")
    for key in ("seeds_per_prompt", "num_inference_steps"):
        if key in value:
            if _whole(value[key]) and value[key] >= 1:
                out[key] = value[key]
            else:
                bad(f"generation.{key}: expected an integer >= 1, got {_show(value[key])}")
    if "seeds" in value:
        seeds = value["seeds"]
        if (
            isinstance(seeds, list)
            and seeds
            and all(_whole(x) and x >= 0 for x in seeds)
            and len(set(seeds)) == len(seeds)
        ):
            out["seeds"] = list(seeds)
        else:
            bad(f"generation.seeds: expected a non-empty list of distinct integers >= 0, got {_show(seeds)}")
    if "guidance_scale" in value:
        scale = value["guidance_scale"]
        if isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale >= 0:
            out["guidance_scale"] = float(scale)
        else:
            bad(f"generation.guidance_scale: expected a number >= 0, got {_show(scale)}")
    return out


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _sources(value: Any, bad: Any) -> tuple[dict[str, Any], ...]:
    """Format 2 `sources`: a list of objects, each naming at least its repository, path and 40-hex commit."""
    if not isinstance(value, list):
        bad(f"sources: expected a list of objects, got {_show(value)}")
        return ()
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            bad(f"sources[{i}]: expected an object with {', '.join(SOURCE_KEYS)}, got {_kind(item)}")
            continue
        missing = [k for k in SOURCE_KEYS if not (isinstance(item.get(k), str) and item[k].strip())]
        if missing:
            bad(f"sources[{i}]: missing {', '.join(missing)}")
        elif not re.fullmatch(r"[0-9a-f]{40}", item["commit"]):
            bad(f"sources[{i}].commit: expected 40 hex digits, got {_show(item['commit'])}")
        else:
            out.append(item)
    return tuple(out)


def _row(
    obj: Any, line: int | None, folder: Path, problems: list[Problem], check_files: bool, head: _Head | None = None
) -> Prompt | None:
    """One prompt row, or None when it has a problem (each one is appended)."""
    if not isinstance(obj, dict):
        problems.append(Problem(line, f"expected a JSON object, got {_kind(obj)}"))
        return None
    before = len(problems)

    def bad(reason: str) -> None:
        problems.append(Problem(line, reason))

    form = head.format if head is not None else 1
    known = ROW_KEYS + (ROW_KEYS_2 if form == 2 else ()) + GENEVAL_KEYS
    for key in unknown_keys(obj, known):
        hint = ' (a format 2 key: add "format": 2 to the header)' if key in ROW_KEYS_2 else ""
        bad(f"unknown key {key!r}{hint or unknown_key_hint(key, known)}")
    for key in ("id", "prompt"):
        if key not in obj and (key == "prompt" or not _has_spec(obj)):
            bad(f"missing {key!r}" + (" (only rows with a spec may leave it out)" if key == "id" else ""))
    pid = obj.get("id")
    if "id" in obj and (not isinstance(pid, str) or not _SAFE_NAME.match(pid)):
        bad(f"id: expected a file-name-safe id (letters, digits, '.', '_', '-'), got {_show(pid)}")
    text = obj.get("prompt")
    if "prompt" in obj and (not isinstance(text, str) or not text.strip()):
        bad(f"prompt: expected a non-empty string, got {_show(text)}")
    for key in ("category", "negative_prompt", "init_image"):
        if obj.get(key) is not None and not isinstance(obj[key], str):
            bad(f"{key}: expected a string, got {_show(obj[key])}")
    tags = obj.get("tags")
    if tags is not None and not (isinstance(tags, list) and all(isinstance(t, str) and t.strip() for t in tags)):
        bad(f"tags: expected a list of non-empty strings, got {_show(tags)}")
    challenge, meta, questions = _format2_fields(obj, head, bad) if form == 2 else (None, (), ())
    spec = _spec(obj, bad)
    category = obj.get("category")
    if spec is not None and isinstance(category, str) and category != spec.tag:
        bad(f"category: {category!r} differs from the spec's tag {spec.tag!r}")
    init_source = obj.get("init_image")
    if isinstance(init_source, str):
        reason = _init_image_problem(init_source, spec, folder, check_files)
        if reason:
            bad(f"init_image: {reason}")
    if len(problems) > before:
        return None
    if spec is not None and category is None:
        category = spec.tag
    assert isinstance(text, str)  # a row without a prompt string was a problem above
    return Prompt(
        id=pid if "id" in obj else derived_id(text, spec),  # pyright: ignore[reportArgumentType]  # a row without an id has a spec (checked above)
        prompt=text,
        category=category,
        negative_prompt=obj.get("negative_prompt"),
        tags=tuple(tags or ()),
        spec=spec,
        init_image_source=init_source,
        line=line,
        challenge=challenge,
        meta=meta,
        questions=questions,
    )


def _format2_fields(
    obj: dict[str, Any], head: _Head | None, bad: Any
) -> tuple[str | None, tuple[tuple[str, Any], ...], tuple[tuple[str, tuple[SuiteQuestion, ...]], ...]]:
    """A format 2 row's challenge, meta (an object of scalars) and questions (sets the header declares)."""
    challenge = obj.get("challenge")
    if challenge is not None and not (isinstance(challenge, str) and challenge.strip()):
        bad(f"challenge: expected a non-empty string, got {_show(challenge)}")
        challenge = None
    meta = obj.get("meta") or {}
    if not (isinstance(meta, dict) and all(v is None or isinstance(v, (str, int, float, bool)) for v in meta.values())):
        bad(f"meta: expected an object of strings, numbers or null, got {_show(meta)}")
        meta = {}
    questions = ()
    if obj.get("questions") is not None:
        questions = parse_row_questions(obj["questions"], head.question_sets if head else {}, bad)
    return challenge, tuple(meta.items()), questions


def _has_spec(obj: dict[str, Any]) -> bool:
    return obj.get("spec") is not None or any(k in obj for k in GENEVAL_KEYS)


def _spec(obj: dict[str, Any], bad: Any) -> Spec | None:
    top = [k for k in GENEVAL_KEYS if k in obj]
    if top and obj.get("spec") is not None:
        bad(f"give the spec either as 'spec' or as GenEval's top-level {', '.join(GENEVAL_KEYS)}, not both")
        return None
    try:
        if top:
            # GenEval's own metadata row: the spec fields sit at the top level, so messages name them there.
            return parse_spec({k: obj[k] for k in top}, where="spec")
        if obj.get("spec") is not None:
            return parse_spec(obj["spec"], where="spec")
    except SpecError as err:
        for message in err.problems:
            bad(message.removeprefix("spec.") if top else message)
    return None


def _init_image_problem(source: str, spec: Spec | None, folder: Path, check_files: bool) -> str | None:
    if source.startswith(SKETCH_PREFIX):
        if not source[len(SKETCH_PREFIX) :].strip():
            return "sketch: needs a key after 'sketch:' (it seeds the drawing)"
        if spec is None:
            return "a sketch is drawn from the row's spec, and this row has none"
        if check_files:
            from sdeval.suites.sketches import sketch_problem  # numpy: only for a sketch row

            return sketch_problem(spec)
        return None
    if not source.strip():
        return "expected a path relative to the suite file, or sketch:KEY"
    if check_files and not (folder / source).is_file():
        return f"no such file: {source} (relative to the suite file)"
    return None


def resolve_init_images(suite: Suite, folder: Path | None) -> tuple[Suite, list[Problem]]:
    """The suite with every prompt's init image found (and sketches drawn), or the problems that prevent it.

    A row's own `init_image` (a path relative to the suite file, or sketch:KEY) wins; else `<id>.<ext>` in
    `folder` (the config's init_images).
    """
    problems: list[Problem] = []
    prompts: list[Prompt] = []
    for prompt in suite.prompts:
        line = prompt.line
        try:
            path = _find_init_image(prompt, suite.path.parent, folder)
        except _InitImageMissing as err:
            problems.append(Problem(line, f"init_image: {err}"))
            continue
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        prompts.append(dataclasses.replace(prompt, init_image=path, init_image_sha256=sha))
    return dataclasses.replace(suite, prompts=tuple(prompts)), problems


class _InitImageMissing(Exception):
    pass


def _find_init_image(prompt: Prompt, suite_dir: Path, folder: Path | None) -> Path:
    source = prompt.init_image_source
    if source and source.startswith(SKETCH_PREFIX):
        from sdeval.suites.sketches import sketch_file  # numpy and PIL: only for a sketch row

        if prompt.spec is None:  # parse_suite refuses this; kept for suites built in code
            raise _InitImageMissing("a sketch is drawn from the row's spec, and this row has none")
        return sketch_file(prompt.spec, source[len(SKETCH_PREFIX) :])
    if source:
        candidate = (suite_dir / source).resolve()
        if not candidate.is_file():
            raise _InitImageMissing(f"no such file: {candidate}")
        return candidate
    if folder is not None:
        for suffix in IMAGE_SUFFIXES:
            candidate = folder / f"{prompt.id}{suffix}"
            if candidate.is_file():
                return candidate
        raise _InitImageMissing(f"no {prompt.id}.png/.jpg/.jpeg/.webp/.bmp in init_images folder {folder}")
    raise _InitImageMissing(
        "image2image needs an init image per prompt (an init_image key in the suite row"
        " or an init_images folder in the config)"
    )


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string"}.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def read_suite_file(source: str | Path, base_dir: Path | None = None) -> tuple[Path, bytes]:
    """The file a suite argument names (a path, `builtin:NAME`, or a built-in name) and its bytes."""
    path = resolve_suite_path(source, base_dir)
    try:
        return path, path.read_bytes()
    except OSError as err:
        raise ConfigError(f"suite: cannot read {path}: {err.strerror or err}") from err


def load_suite(
    source: str | Path,
    *,
    base_dir: Path | None = None,
    need_init_images: bool = False,
    init_images: Path | None = None,
    reject_init_images: bool = False,
) -> Suite:
    """Read a suite; raise ConfigError naming the file, line and field of its first problem.

    `source`: a path (relative to `base_dir`, default the working folder), `builtin:NAME`, or a built-in suite's
    name when no such file exists. `need_init_images`: find (or draw) every prompt's init image, for image2image.
    `reject_init_images`: a row with an init_image is an error (text2image would silently ignore it).
    """
    path, data = read_suite_file(source, base_dir)
    suite, problems = parse_suite(data, path)
    if not problems and need_init_images:
        suite, problems = resolve_init_images(suite, init_images)
    elif not problems and reject_init_images:
        problems = [
            Problem(p.line, "init_image: only used by pipeline: image2image")
            for p in suite.prompts
            if p.init_image_source
        ]
    if problems:
        raise ConfigError(f"suite: {problems[0].at(path.name)}")
    name = builtin_name(path)
    if name is not None:
        suite = dataclasses.replace(suite, source=f"builtin:{name}")
    return suite


def check_suite(source: str | Path, base_dir: Path | None = None) -> tuple[Suite, list[Problem]]:
    """Every problem of a suite file, in line order (for `sdeval suites validate`): the rows, the header, init images
    named by path (they must exist) and sketches (they must be drawable)."""
    path, data = read_suite_file(source, base_dir)
    return parse_suite(data, path, check_files=True)
