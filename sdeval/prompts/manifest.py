"""Read a prompt manifest (JSONL or CSV, one row per image) into records keyed by relative path."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sdeval.core.errors import SdevalError
from sdeval.core.textfiles import json_problem
from sdeval.prompts.record import (
    MAX_METADATA_CHARS,
    PromptParseError,
    PromptRecord,
    check_prompt,
    optional_seed,
    optional_text,
)

KNOWN_COLUMNS = ("file", "prompt", "id", "seed", "negative_prompt", "category", "checkpoint", "settings")
_DRIVE = re.compile(r"^[A-Za-z]:")
_UTF8_BOM = b"\xef\xbb\xbf"
#: Longest piece of manifest text quoted in a message; a hostile value must not flood the terminal.
_QUOTE_LIMIT = 80


@dataclass(frozen=True)
class ManifestProblem:
    """One finding about one manifest line (line 0: the file as a whole). `used`: the line still gave a record."""

    line: int
    reason: str
    used: bool = False

    def format(self, manifest: str | os.PathLike[str]) -> str:
        what = "warning" if self.used else "skipped"
        where = f"{manifest}:{self.line}" if self.line else str(manifest)
        return f"{where}: {what}: {self.reason}"


@dataclass(frozen=True)
class ManifestResult:
    """Records keyed by image path relative to IMAGES (`a/b.png`), and every problem found, in line order.

    `base` is the folder the `file` values were resolved against: the manifest's own folder, or IMAGES
    when none matched there (manifests written relative to IMAGES). `outside` holds `(line, file)` for
    the rows that resolve outside IMAGES: they apply to no image being scored, and are not problems.
    """

    path: Path
    format: Literal["jsonl", "csv"]
    records: dict[str, PromptRecord] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    problems: list[ManifestProblem] = field(default_factory=list)
    base: Path | None = None
    outside: list[tuple[int, str]] = field(default_factory=list)

    def messages(self) -> list[str]:
        """Problems as `MANIFEST:LINE: skipped|warning: reason` lines (`MANIFEST: warning: ...` for the file)."""
        return [p.format(self.path) for p in self.problems]


def _quote(text: str, limit: int = _QUOTE_LIMIT) -> str:
    """`text` as a quoted literal for a message: control and invisible characters escaped, long text cut."""
    # repr() escapes everything str.isprintable() rejects (control, surrogate, bidi and zero-width characters).
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def _file_parts(raw: Any) -> list[str]:
    """The components of a manifest `file` value, `.` and empty ones dropped and `..` kept; raise if unusable.

    Backslashes count as separators (manifests written on Windows). Absolute paths are refused: a
    manifest travels with its folder (copied, moved, mounted elsewhere), where they would stop matching.
    """
    if not isinstance(raw, str):
        raise PromptParseError(f"'file' must be a string, got {type(raw).__name__}")
    if "\x00" in raw:
        raise PromptParseError("'file' contains a NUL character")
    text = raw.strip().replace("\\", "/")
    if not text:
        raise PromptParseError("'file' is empty")
    if text.startswith("/") or _DRIVE.match(text):
        raise PromptParseError(f"'file' must be a relative path, got absolute path {_quote(raw)}")
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if not parts:
        raise PromptParseError(f"'file' {_quote(raw)} names no file")
    return parts


def normalize_relpath(raw: str) -> str:
    """Turn a `file` value into a clean `/`-separated path that stays inside its folder, or raise.

    Stricter than the manifest loader, which resolves `..` and keeps only what lands inside IMAGES:
    here any `..` component is refused, as are absolute paths.
    """
    parts = _file_parts(raw)
    if ".." in parts:
        raise PromptParseError(f"'file' {_quote(raw)} escapes the images folder ('..' is not allowed)")
    return "/".join(parts)


def load_manifest(path: str | os.PathLike[str], images_root: str | os.PathLike[str]) -> ManifestResult:
    """Read a JSONL or CSV manifest; bad lines become problems with line numbers, never exceptions.

    Each `file` is resolved against the manifest's own folder and keyed by its path relative to IMAGES
    (`images_root`); rows that land outside IMAGES go to `outside`. When no row names an existing file
    that way but some do relative to IMAGES, the paths are taken relative to IMAGES, with a warning.

    Raises SdevalError only when the file as a whole cannot be used (missing, unreadable, not UTF-8
    text, a CSV without `file`/`prompt` columns). A manifest that gives no record at all is never
    silent: it gets a file-level warning (line 0) saying why.
    """
    path = Path(path)
    root = Path(images_root)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise SdevalError(f"cannot read manifest {path}: {err.strerror or err}") from err
    text = _decode(data, path)
    kind = _detect_format(path, data)
    builder = _Builder(path, root)
    empty_reason = _read_jsonl(text, builder) if kind == "jsonl" else _read_csv(text, path, builder)
    base = builder.finish()
    problems = sorted(builder.problems, key=lambda p: p.line)
    if not builder.records:
        if empty_reason is None:
            empty_reason = _why_empty(problems, len(builder.outside), root)
        problems.append(ManifestProblem(0, f"no usable rows: {empty_reason}", used=True))
    return ManifestResult(path, kind, builder.records, builder.lines, problems, base=base, outside=builder.outside)


def _why_empty(problems: list[ManifestProblem], outside: int, root: Path) -> str:
    skipped = len({p.line for p in problems if not p.used})
    if not outside:
        return f"every row was skipped ({skipped} listed above)"
    where = f"names a file outside IMAGES {root} ({outside} row{'s' if outside > 1 else ''})"
    return f"every row was skipped ({skipped} listed above) or {where}" if skipped else f"every row {where}"


def _decode(data: bytes, path: Path) -> str:
    """The manifest's text: UTF-8, with or without a BOM; anything else is one error for the whole file.

    An encoding is a property of the file, so a wrong one is not reported row by row: rows that
    happen to be ASCII would be read and the rest dropped, and a UTF-16 file would fill messages
    with NUL bytes.
    """
    if data.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        raise SdevalError(f"manifest {path}: not UTF-8 text (it looks like UTF-32: save it as UTF-8)")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or _looks_like_utf16(data):
        raise SdevalError(f"manifest {path}: not UTF-8 text (it looks like UTF-16: save it as UTF-8)")
    body = data[len(_UTF8_BOM) :] if data.startswith(_UTF8_BOM) else data
    skip = len(data) - len(body)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        offset = skip + err.start
        raise SdevalError(
            f"manifest {path}: not UTF-8 text (byte 0x{data[offset]:02X} at {_offset(data, offset)}: save it as UTF-8)"
        ) from None
    nul = body.find(b"\x00")
    if nul >= 0:  # valid UTF-8, but no text file holds NUL: binary data, or UTF-32 without a BOM
        offset = skip + nul
        raise SdevalError(f"manifest {path}: not UTF-8 text (NUL byte at {_offset(data, offset)}: save it as UTF-8)")
    return text


def _offset(data: bytes, offset: int) -> str:
    line = data.count(b"\n", 0, offset) + 1
    return f"offset {offset}, line {line}"


def _looks_like_utf16(data: bytes) -> bool:
    """UTF-16 without a BOM: many NUL bytes, nearly all at even or all at odd offsets (the ASCII half of each unit)."""
    sample = data[:4096]
    nuls = sample.count(0)
    if nuls * 8 < len(sample) or not nuls:
        return False
    return max(sample[0::2].count(0), sample[1::2].count(0)) >= 0.9 * nuls


def _detect_format(path: Path, data: bytes) -> Literal["jsonl", "csv"]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv",):
        return "csv"
    return "jsonl" if data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") else "csv"


def _read_jsonl(text: str, builder: _Builder) -> str | None:
    """Read JSON Lines; returns why the file gives no rows at all when that is plain from its shape."""
    if not text.strip():
        return "the file is empty" if not text else "the file has only blank lines"
    if text.lstrip().startswith("["):
        try:
            whole = json.loads(text)
        except ValueError:
            whole = None  # not one JSON document: read it line by line and report each line
        if isinstance(whole, list):
            return (
                f"the file is one JSON array ({len(whole)} items), not JSON Lines: "
                "write one object per line, with no enclosing [ ]"
            )
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue  # blank lines carry nothing; they are not problems
        if len(line) > MAX_METADATA_CHARS:
            builder.problem(number, f"line is {len(line)} characters, over the {MAX_METADATA_CHARS} limit")
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            builder.problem(number, f"not valid JSON: {json_problem(err, line=False)}")
            continue
        except ValueError as err:  # e.g. an integer with too many digits
            builder.problem(number, f"not valid JSON: {err}")
            continue
        if not isinstance(obj, dict):
            builder.problem(number, f"expected a JSON object, got {type(obj).__name__}")
            continue
        builder.add(number, obj, settings_as_json_text=False)
    return None


def _read_csv(text: str, path: Path, builder: _Builder) -> str | None:
    """Read a CSV with a header row; returns why the file gives no rows at all when that is plain from its shape."""
    if not text.strip():
        # Kept an error, as before: a CSV manifest's header is part of its format.
        empty = "is empty" if not text else "has only blank lines"
        raise SdevalError(
            f"manifest {path}: the file {empty}; a CSV manifest needs a header row with 'file' and 'prompt'"
        )
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as err:
        raise SdevalError(f"manifest {path}: cannot read the CSV header: {err}") from err
    if not header or not any(cell.strip() for cell in header):
        raise SdevalError(f"manifest {path}: CSV has no header row (need at least 'file' and 'prompt')")
    columns = [cell.strip() for cell in header]
    for needed in ("file", "prompt"):
        if needed not in columns:
            raise SdevalError(
                f"manifest {path}: CSV header has no '{needed}' column: a CSV manifest needs 'file' and 'prompt' "
                f"columns (found: {_list_columns(columns)})"
            )
    seen: set[str] = set()
    for name in columns:
        if name in seen:
            builder.problem(1, f"column {_quote(name)} appears twice; the last one wins", used=True)
        seen.add(name)
    rows = 0
    last_line = reader.line_num
    while True:
        start = last_line + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            rows += 1  # a row was there, it just could not be parsed
            builder.problem(start, f"CSV parse error: {err}; lines from here on were not read")
            break
        last_line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        rows += 1
        if len(row) != len(columns):
            builder.problem(
                start,
                f"row has {len(row)} cells but the header has {len(columns)} columns "
                "(an unquoted comma or quote in the prompt?)",
            )
            continue
        builder.add(start, dict(zip(columns, row, strict=True)), settings_as_json_text=True)
    return None if rows else "the CSV has a header row but no data rows"


def _list_columns(columns: list[str], most: int = 10) -> str:
    shown = ", ".join(_quote(name, 40) for name in columns[:most])
    return shown + (f", and {len(columns) - most} more" if len(columns) > most else "")


@dataclass(frozen=True)
class _Row:
    """A row whose `file` value is well formed, kept until the folder it is relative to is decided."""

    line: int
    parts: list[str]
    row: dict[str, Any]
    settings_as_json_text: bool


class _Builder:
    """Collects rows, then resolves their `file` values and validates them into records and problems."""

    def __init__(self, manifest: Path, root: Path) -> None:
        self.root = root
        self.manifest_dir = manifest.parent
        # Real paths, so IMAGES given through a symlink and a manifest given by its real path still agree.
        self.real_root = os.path.realpath(root)
        self.real_dir = os.path.realpath(manifest.parent)
        self.rows: list[_Row] = []
        self.records: dict[str, PromptRecord] = {}
        self.lines: dict[str, int] = {}
        self.problems: list[ManifestProblem] = []
        self.outside: list[tuple[int, str]] = []
        self.unknown: dict[str, list[int]] = {}
        self.found: dict[str, bool | OSError] = {}

    def problem(self, line: int, reason: str, used: bool = False) -> None:
        self.problems.append(ManifestProblem(line, reason, used))

    def add(self, line: int, row: dict[str, Any], settings_as_json_text: bool) -> None:
        for key in row:
            if key not in KNOWN_COLUMNS:
                self.unknown.setdefault(key, []).append(line)
        if row.get("file") in (None, ""):
            self.problem(line, "missing 'file'")
            return
        try:
            parts = _file_parts(row["file"])
        except PromptParseError as err:
            self.problem(line, str(err))
            return
        self.rows.append(_Row(line, parts, row, settings_as_json_text))

    def finish(self) -> Path:
        """Validate every row against the chosen folder; returns that folder (as given, not resolved)."""
        base = self._choose_base()
        shown_base = self.root if base == self.real_root else self.manifest_dir
        first_line: dict[str, int] = {}
        for row in self.rows:
            self._check(row, base, shown_base, first_line)
        for key, lines in self.unknown.items():
            many = f" (on {len(lines)} lines)" if len(lines) > 1 else ""
            self.problem(lines[0], f"unknown column {_quote(key)} ignored{many}", used=True)
        return shown_base

    def _choose_base(self) -> str:
        """The manifest's folder, unless no row names an existing image from there but some do from IMAGES."""
        if self.real_dir == self.real_root or self._any_found(self.real_dir) or not self._any_found(self.real_root):
            return self.real_dir
        # Manifests written before paths were relative to the manifest's folder keep working, with a nudge.
        self.problem(
            0,
            f"'file' paths are taken relative to IMAGES ({self.root}) because none matched relative to the "
            f"manifest's folder ({self.manifest_dir}); write them relative to the manifest's folder",
            used=True,
        )
        return self.real_root

    def _any_found(self, base: str) -> bool:
        return any(key is not None and self._exists(key) is True for key in (self._key(base, r) for r in self.rows))

    def _key(self, base: str, row: _Row) -> str | None:
        """The path relative to IMAGES of the file `row` names from `base`; None when that lies outside IMAGES.

        Resolved lexically, without touching the file system: a row can name an image inside IMAGES by
        climbing out of the manifest's folder (`../a/x.png`), but nothing outside IMAGES is ever looked up.
        """
        location = os.path.normpath(os.path.join(base, *row.parts))
        try:
            rel = os.path.relpath(location, self.real_root)
        except ValueError:  # another drive (Windows)
            return None
        if rel in (os.curdir, os.pardir) or rel.startswith(os.pardir + os.sep):
            return None
        return Path(rel).as_posix()

    def _exists(self, key: str) -> bool | OSError:
        if key not in self.found:
            try:
                self.found[key] = (Path(self.real_root) / key).is_file()
            except OSError as err:  # is_file() lets some errors through, e.g. a name too long for the file system
                self.found[key] = err
        return self.found[key]

    def _check(self, item: _Row, base: str, shown_base: Path, first_line: dict[str, int]) -> None:
        line, row = item.line, item.row
        key = self._key(base, item)
        written = "/".join(item.parts)
        if key is None:
            # Not an error: a manifest for a whole run also lists the images of folders not being scored.
            self.outside.append((line, written))
            return
        shown = _quote(written)
        if key in first_line:
            self.problem(line, f"duplicate entry for {shown} (first on line {first_line[key]}); ignored")
            return
        first_line[key] = line
        found = self._exists(key)
        if isinstance(found, OSError):
            self.problem(line, f"file {shown} cannot be looked up in {shown_base}: {found.strerror or found}")
            return
        if not found:
            self.problem(line, f"file {shown} not found in {shown_base}")
            return
        if row.get("prompt") is None:
            self.problem(line, f"missing 'prompt' for {shown}")
            return
        try:
            prompt = check_prompt(row["prompt"])
        except PromptParseError as err:
            self.problem(line, f"{err} for {shown}")
            return
        fields: dict[str, Any] = {}
        for name, parse in (
            ("negative_prompt", lambda v: optional_text(v, "negative_prompt")),
            ("id", lambda v: optional_text(v, "id")),
            ("category", lambda v: optional_text(v, "category")),
            ("checkpoint", lambda v: optional_text(v, "checkpoint")),
            ("seed", optional_seed),
            ("settings", lambda v: _settings(v, item.settings_as_json_text)),
        ):
            try:
                fields[name] = parse(row.get(name))
            except PromptParseError as err:
                # A bad optional field costs that field only; the prompt is still good.
                self.problem(line, f"{err}; field ignored", used=True)
        settings = fields.pop("settings", None) or {}
        self.records[key] = PromptRecord(prompt=prompt, source="manifest", settings=settings, **fields)
        self.lines[key] = line


def _settings(value: Any, as_json_text: bool) -> dict[str, Any] | None:
    if value is None or value == "":
        return None
    if as_json_text and isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as err:
            raise PromptParseError(f"'settings' is not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise PromptParseError(f"'settings' must be an object, got {type(value).__name__}")
    return value
