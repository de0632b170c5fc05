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

from sdeval.errors import SdevalError
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


@dataclass(frozen=True)
class ManifestProblem:
    """One finding about one manifest line. `used` says whether the line still gave a record."""

    line: int
    reason: str
    used: bool = False

    def format(self, manifest: str | os.PathLike[str]) -> str:
        what = "warning" if self.used else "skipped"
        return f"{manifest}:{self.line}: {what}: {self.reason}"


@dataclass(frozen=True)
class ManifestResult:
    """Records keyed by normalized relative path (`a/b.png`), and every problem found, in line order."""

    path: Path
    format: Literal["jsonl", "csv"]
    records: dict[str, PromptRecord] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    problems: list[ManifestProblem] = field(default_factory=list)

    def messages(self) -> list[str]:
        """Problems as `MANIFEST:LINE: skipped|warning: reason` lines."""
        return [p.format(self.path) for p in self.problems]


def normalize_relpath(raw: str) -> str:
    """Turn a manifest `file` value into a clean `/`-separated path, or raise if it leaves the folder.

    Backslashes count as separators (manifests written on Windows). Absolute paths and any `..`
    component are refused outright rather than resolved, so a manifest can never point outside IMAGES.
    """
    if not isinstance(raw, str):
        raise PromptParseError(f"'file' must be a string, got {type(raw).__name__}")
    if "\x00" in raw:
        raise PromptParseError("'file' contains a NUL character")
    text = raw.strip().replace("\\", "/")
    if not text:
        raise PromptParseError("'file' is empty")
    if text.startswith("/") or _DRIVE.match(text):
        raise PromptParseError(f"'file' must be relative to the images folder, got absolute path {raw!r}")
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise PromptParseError(f"'file' {raw!r} escapes the images folder ('..' is not allowed)")
    if not parts:
        raise PromptParseError(f"'file' {raw!r} names no file")
    return "/".join(parts)


def load_manifest(path: str | os.PathLike[str], images_root: str | os.PathLike[str]) -> ManifestResult:
    """Read a JSONL or CSV manifest; bad lines become problems with line numbers, never exceptions.

    Raises SdevalError only when the file as a whole cannot be used (missing, unreadable, a CSV
    without `file`/`prompt` columns).
    """
    path = Path(path)
    root = Path(images_root)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise SdevalError(f"cannot read manifest {path}: {err.strerror or err}") from err
    kind = _detect_format(path, data)
    result = ManifestResult(path=path, format=kind)
    builder = _Builder(result, root)
    if kind == "jsonl":
        _read_jsonl(data, builder)
    else:
        _read_csv(data, path, builder)
    builder.finish()
    result.problems.sort(key=lambda p: p.line)
    return result


def _detect_format(path: Path, data: bytes) -> Literal["jsonl", "csv"]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv",):
        return "csv"
    return "jsonl" if data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") else "csv"


def _read_jsonl(data: bytes, builder: _Builder) -> None:
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue  # blank lines carry nothing; they are not problems
        if len(raw) > MAX_METADATA_CHARS:
            builder.problem(number, f"line is {len(raw)} bytes, over the {MAX_METADATA_CHARS} limit")
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            builder.problem(number, f"not valid UTF-8 (byte {err.start})")
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as err:
            builder.problem(number, f"not valid JSON: {err.msg} at column {err.colno}")
            continue
        except ValueError as err:  # e.g. an integer with too many digits
            builder.problem(number, f"not valid JSON: {err}")
            continue
        if not isinstance(obj, dict):
            builder.problem(number, f"expected a JSON object, got {type(obj).__name__}")
            continue
        builder.add(number, obj, settings_as_json_text=False)


def _read_csv(data: bytes, path: Path, builder: _Builder) -> None:
    # surrogateescape keeps undecodable bytes visible per row instead of failing the whole file.
    text = data.decode("utf-8-sig", errors="surrogateescape")
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
            raise SdevalError(f"manifest {path}: CSV header has no '{needed}' column (columns: {', '.join(columns)})")
    seen: set[str] = set()
    for name in columns:
        if name in seen:
            builder.problem(1, f"column '{name}' appears twice; the last one wins", used=True)
        seen.add(name)
    last_line = reader.line_num
    while True:
        start = last_line + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            builder.problem(start, f"CSV parse error: {err}; lines from here on were not read")
            break
        last_line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if any(_has_surrogates(cell) for cell in row):
            builder.problem(start, "not valid UTF-8")
            continue
        if len(row) != len(columns):
            builder.problem(
                start,
                f"row has {len(row)} cells but the header has {len(columns)} columns "
                "(an unquoted comma or quote in the prompt?)",
            )
            continue
        builder.add(start, dict(zip(columns, row, strict=True)), settings_as_json_text=True)


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


class _Builder:
    """Validates one row at a time and collects records and problems into a ManifestResult."""

    def __init__(self, result: ManifestResult, root: Path) -> None:
        self.result = result
        self.root = root
        self.first_line: dict[str, int] = {}
        self.unknown: dict[str, list[int]] = {}

    def problem(self, line: int, reason: str, used: bool = False) -> None:
        self.result.problems.append(ManifestProblem(line, reason, used))

    def add(self, line: int, row: dict[str, Any], settings_as_json_text: bool) -> None:
        for key in row:
            if key not in KNOWN_COLUMNS:
                self.unknown.setdefault(key, []).append(line)
        if row.get("file") in (None, ""):
            self.problem(line, "missing 'file'")
            return
        try:
            rel = normalize_relpath(row["file"])
        except PromptParseError as err:
            self.problem(line, str(err))
            return
        if rel in self.first_line:
            self.problem(line, f"duplicate entry for '{rel}' (first on line {self.first_line[rel]}); ignored")
            return
        self.first_line[rel] = line
        if not (self.root / rel).is_file():
            self.problem(line, f"file '{rel}' not found in {self.root}")
            return
        if row.get("prompt") is None:
            self.problem(line, f"missing 'prompt' for '{rel}'")
            return
        try:
            prompt = check_prompt(row["prompt"])
        except PromptParseError as err:
            self.problem(line, f"{err} for '{rel}'")
            return
        fields: dict[str, Any] = {}
        for name, parse in (
            ("negative_prompt", lambda v: optional_text(v, "negative_prompt")),
            ("id", lambda v: optional_text(v, "id")),
            ("category", lambda v: optional_text(v, "category")),
            ("checkpoint", lambda v: optional_text(v, "checkpoint")),
            ("seed", optional_seed),
            ("settings", lambda v: _settings(v, settings_as_json_text)),
        ):
            try:
                fields[name] = parse(row.get(name))
            except PromptParseError as err:
                # A bad optional field costs that field only; the prompt is still good.
                self.problem(line, f"{err}; field ignored", used=True)
        settings = fields.pop("settings", None) or {}
        self.result.records[rel] = PromptRecord(prompt=prompt, source="manifest", settings=settings, **fields)
        self.result.lines[rel] = line

    def finish(self) -> None:
        for key, lines in self.unknown.items():
            many = f" (on {len(lines)} lines)" if len(lines) > 1 else ""
            self.problem(lines[0], f"unknown column {key!r} ignored{many}", used=True)


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
