"""Results documents: write them (with their feature state), keep them when a write fails, tell what is missing,
and read and check them (format `sdeval.results`, version 1: sdeval/results/schemas/results-v1.schema.json)."""

from __future__ import annotations

import functools
import importlib.resources
import json
import os
import re
import reprlib
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from sdeval.core.atomic import atomic_open, sync, write_json
from sdeval.core.errors import OutputError, SdevalError
from sdeval.core.textfiles import json_problem, read_user_text
from sdeval.results.state import FORMAT as STATE_FORMAT
from sdeval.results.state import FORMAT_VERSION as STATE_VERSION
from sdeval.results.state import state_bytes, state_path


class Scored(Protocol):
    """What write_outputs needs of a scoring run (sdeval.score.ScoreRun): named here, so results import no score."""

    document: dict[str, Any]

    @property
    def state(self) -> dict[str, Any]: ...

    @property
    def cell_ids(self) -> list[str]: ...


#: The results format, said once (sdeval.score.assemble writes it).
RESULTS_FORMAT = "sdeval.results"
RESULTS_VERSION = 1
_SCHEMA_FILE = "results-v1.schema.json"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class InvalidResultsError(ValueError):
    """A results document sdeval made does not match its schema: a bug, so not an SdevalError (the CLI's exit 70)."""


def _read_schema() -> dict[str, Any]:
    return json.loads(
        importlib.resources.files("sdeval.results.schemas").joinpath(_SCHEMA_FILE).read_text(encoding="utf-8")
    )


#: The JSON Schema (draft 2020-12) of results format version 1, read once from the package.
RESULTS_SCHEMA: dict[str, Any] = _read_schema()


@functools.cache
def _validators() -> tuple[Any, Any]:
    """(the whole document's validator, one per-image row's); jsonschema is imported on first use."""
    from jsonschema import Draft202012Validator

    row = {"$defs": RESULTS_SCHEMA["$defs"], "$ref": "#/$defs/per_image_row"}
    return Draft202012Validator(RESULTS_SCHEMA), Draft202012Validator(row)


def json_path(parts: Iterable[str | int]) -> str:
    """`cells[0].metrics.fid.value` from ("cells", 0, "metrics", "fid", "value"); `<document>` for the root."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _NAME.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out or "<document>"


# -- a quick check of per-image rows ---------------------------------------------------------------------------
# jsonschema spends ~0.1 ms on a row, which is 10 s for 100k rows (10 cells of 10k images). Rows use a few
# simple keywords only, so each row is first checked by a predicate compiled from its schema; the validator
# runs only on a row that fails it, and gives the message. A keyword the compiler does not know sends every
# row to the validator, so a later change to the schema can make this slower, never wrong.

_QUICK_KEYWORDS = {"type", "required", "properties", "pattern", "minimum", "minLength", "description", "$comment"}
# Exact classes: narrower than JSON Schema's types (an integral float is an integer there), which only sends
# such a value to the validator.
_QUICK_TYPES: dict[str, tuple[type, ...]] = {
    "null": (type(None),),
    "boolean": (bool,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "object": (dict,),
    "array": (list,),
}


def _compile(schema: dict[str, Any]) -> Callable[[Any], bool] | None:
    """A predicate true when a value surely matches `schema`, or None if `schema` uses other keywords."""
    while "$ref" in schema:
        schema = RESULTS_SCHEMA["$defs"][schema["$ref"].rsplit("/", 1)[1]]
    if not set(schema) <= _QUICK_KEYWORDS:
        return None
    names = schema.get("type", list(_QUICK_TYPES))
    classes = frozenset(c for name in ([names] if isinstance(names, str) else names) for c in _QUICK_TYPES[name])
    min_length, minimum = schema.get("minLength", 0), schema.get("minimum")
    pattern = re.compile(schema["pattern"]) if "pattern" in schema else None
    required = tuple(schema.get("required", ()))
    compiled = {key: _compile(sub) for key, sub in schema.get("properties", {}).items()}
    properties = {key: check for key, check in compiled.items() if check is not None}
    if len(properties) < len(compiled):
        return None

    def check(value: Any) -> bool:
        kind = type(value)
        if kind not in classes:
            return False
        if kind is str:
            return len(value) >= min_length and (pattern is None or pattern.search(value) is not None)
        if kind in (int, float):
            return minimum is None or value >= minimum
        if kind is dict:
            if any(key not in value for key in required):
                return False
            return all(properties[key](item) for key, item in value.items() if key in properties)
        return True

    return check


@functools.cache
def _row_check() -> Callable[[Any], bool]:
    return _compile(RESULTS_SCHEMA["$defs"]["per_image_row"]) or (lambda row: False)


def _errors(doc: Any) -> list[tuple[tuple[str | int, ...], Any]]:
    """The schema errors of `doc` as (absolute path, error): the document without its per-image rows through
    the validator, then the first row of each cell that fails the quick check (enough to find the first error
    in document order; a bug that breaks every row costs one row's validation per cell, not 100k)."""
    document, row_validator = _validators()
    cells = doc.get("cells") if isinstance(doc, dict) else None
    if not isinstance(cells, list):
        return [(tuple(e.absolute_path), e) for e in document.iter_errors(doc)]
    bare = [
        {**c, "per_image": []} if isinstance(c, dict) and isinstance(c.get("per_image"), list) else c for c in cells
    ]
    found = [(tuple(e.absolute_path), e) for e in document.iter_errors({**doc, "cells": bare})]
    quick = _row_check()
    for i, cell in enumerate(cells):
        rows = cell.get("per_image") if isinstance(cell, dict) else None
        for j, row in enumerate(rows if isinstance(rows, list) else ()):
            if quick(row):
                continue
            errors = [(("cells", i, "per_image", j, *e.absolute_path), e) for e in row_validator.iter_errors(row)]
            found.extend(errors)
            if errors:
                break
    return found


def _document_order(doc: Any, path: tuple[str | int, ...]) -> tuple[int, ...]:
    """Where `path` is in `doc` as positions (of a key among its object's keys, of an item in its array), so
    errors sort in the order a reader meets them, a parent before its children."""
    out, node = [], doc
    for part in path:
        if isinstance(node, dict):
            keys = list(node)
            out.append(keys.index(part) if part in node else len(keys))
        else:
            out.append(part if isinstance(part, int) else 0)
        if isinstance(node, dict):
            node = node.get(part)
        else:  # an array's item by its index (a key there, as a position above, names none)
            node = node[part] if isinstance(node, list) and isinstance(part, int) else None
    return tuple(out)


def schema_problem(doc: Any) -> str | None:
    """`FIELD: what is wrong` for the first problem in document order (a parent before its children), or None
    when `doc` matches the schema. The same document always names the same field."""
    from jsonschema.exceptions import best_match

    found = _errors(doc)
    if not found:
        return None
    path, error = min(found, key=lambda item: _document_order(doc, item[0]))
    best = best_match([error])  # descends into the alternatives of a failed oneOf/anyOf, if one is ever added
    if best is not error:
        path = path[: len(path) - len(error.absolute_path)] + tuple(best.absolute_path)
    message, shown = best.message, repr(best.instance)
    if len(shown) > 80 and message.startswith(shown):  # a whole cell or row in one line helps no one
        message = reprlib.repr(best.instance) + message[len(shown) :]
    return f"{json_path(path)}: {message}"


def validate_results(doc: Any, name: str = "results.json") -> None:
    """Raise SdevalError `NAME: FIELD: problem` naming the first field where `doc` departs from format version 1."""
    problem = schema_problem(doc)
    if problem is not None:
        raise SdevalError(f"{name}: {problem}")


def load_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a results file; every way it can be wrong is one SdevalError that names the file."""
    path = Path(path)
    text = read_user_text(path, "results")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise SdevalError(f"{path}: not valid JSON: {json_problem(err)}") from None
    if not isinstance(doc, dict):
        kind = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}.get(type(doc), "null")
        raise SdevalError(f"{path}: not an sdeval results file (a JSON {kind}, not an object)")
    if doc.get("format") != RESULTS_FORMAT:
        found = f"format {doc['format']!r}" if "format" in doc else "no `format` field"
        raise SdevalError(f"{path}: not an sdeval results file ({found}; expected {RESULTS_FORMAT!r})")
    version = doc.get("format_version")
    # bool is an int subclass: `true` is no version.
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        found = "no `format_version` field" if "format_version" not in doc else f"format_version {version!r}"
        raise SdevalError(f"{path}: unknown results format version ({found}; this sdeval reads {RESULTS_VERSION})")
    if version > RESULTS_VERSION:
        raise SdevalError(
            f"{path}: written by a newer sdeval (format version {version}; this one reads {RESULTS_VERSION}): "
            "upgrade sdeval"
        )
    validate_results(doc, str(path))
    return doc


def write_results(
    path: str | os.PathLike[str], results: dict[str, Any], *, lost_state: dict[str, Any] | None = None
) -> None:
    """Check `results` against the schema, then write atomically; if the write fails (disk full, quota, folder
    removed meanwhile), keep the computed results in a temp file and raise OutputError naming both paths and the
    errno, so a long run is never lost to a write error. `lost_state` is the `state` block of that temp copy when
    the state file was to go in place only with the results (write_outputs), so it does not name a file that
    never came.

    A document that fails the schema is a bug in sdeval, not in the user's input: InvalidResultsError names the
    field. It is not written to `path`, so no reader sees a file that breaks the format, but it is kept in a
    temp file too, so the computed numbers survive the bug.
    """
    problem = schema_problem(results)
    if problem is not None:
        raise InvalidResultsError(
            f"the results document does not match format version {RESULTS_VERSION}: {problem} "
            f"(the document was saved to {_save_fallback(results)})"
        )
    try:
        write_json(path, results)
    except BrokenPipeError:
        raise  # `-o - | head`: the reader went away, which is no failed write (exit 141)
    except OSError as err:
        kept = results if lost_state is None else {**results, "state": lost_state}
        name = err.filename if isinstance(err, OutputError) else path
        raise OutputError(name, err, note=_keep(kept)) from None


def _keep(results: dict[str, Any]) -> str:
    """Save `results` to a temp file; what to tell the user about it."""
    try:
        return f"the results were saved to {_save_fallback(results)}"
    except OSError as err:
        return f"the results could not be saved to a temp file either ({err.strerror or err})"


def _save_fallback(results: dict[str, Any]) -> str:
    """Write `results` to a new temp file and return its path; nothing is left of a copy that could not be
    written whole."""
    fd, fallback = tempfile.mkstemp(prefix="sdeval-results-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
    except BaseException:
        os.unlink(fallback)
        raise
    return fallback


def incomplete_metrics(results: dict[str, Any]) -> list[str]:
    """Result keys of the requested metrics that have no value in some cell (each carries its `skipped` reason),
    as `key` for a single cell and `cell id: key` otherwise."""
    cells = results["cells"]
    return [
        key if len(cells) == 1 else f"{cell['id']}: {key}"
        for cell in cells
        for key, entry in cell["metrics"].items()
        if entry.get("value") is None
    ]


def write_outputs(out: str | os.PathLike[str], run: Scored) -> None:
    """Write the results to `out` and, beside a results file, the feature state of its rows (sdeval/results/state.py);
    the results' `state` block says where it is, or why there is none.

    The two go in as a pair: the state is written and synced to a temp file, then the results are written, then
    the state is renamed into place. So a results file never names a state of another run: when the results
    cannot be written, both files stay as they were (the results are saved to a temp file, write_results); when
    the state cannot be written (a full disk: it is the big one), the results are still written, saying why
    they have no state, and OutputError names the state file.
    """
    path = state_path(out)
    document = run.document
    if path is None:
        document["state"] = {"path": None, "reason": "results written to a stream: no feature state was kept"}
        write_results(out, document)
        return
    block = {
        "path": path.name,
        "format": STATE_FORMAT,
        "format_version": STATE_VERSION,
        "n_rows": len(run.state["cell"]),
        "arrays": sorted(run.state),
    }
    lost = {"path": None, "reason": f"the results could not be written to {out}, so their feature state was not kept"}
    stage = "state"
    try:
        with atomic_open(path, "wb") as handle:  # renamed into place when this block ends, after the results
            handle.write(state_bytes(run.state, run.cell_ids))
            sync(handle)
            document["state"] = block
            stage = "results"
            write_results(out, document, lost_state=lost)
            stage = "rename"
    except OutputError as err:
        if stage == "results":
            raise  # it says where the results were saved
        document["state"] = {"path": None, "reason": f"the feature state could not be written: {err}"}
        write_results(out, document)  # small: it fits where the state did not
        note = f"the results were written to {out} without it (free space and score again to keep it)"
        raise OutputError(path, err, note=note) from None
