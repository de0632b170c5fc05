"""One reader for config files (YAML, TOML, JSON) shared by `generate`, `bench` and rules files: the format from the
suffix, and a parse error as one line that names the place (`line L, column C: not valid FMT: problem`)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from sdeval.core.errors import ConfigError

FORMATS = {".yaml": "yaml", ".yml": "yaml", ".toml": "toml", ".json": "json"}
_TOML_WHERE = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


def config_format(path: Path) -> str:
    """yaml, toml or json from the file's suffix; anything else is a ConfigError."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(f"config: {path.name}: expected a .yaml, .yml, .toml or .json file")
    return fmt


def _toml_loads() -> Any:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    try:
        # A declared dependency on Python 3.10 only, so absent from an environment of a newer Python.
        import tomli  # pyright: ignore[reportMissingImports]
    except ImportError as err:  # a missing package is not a syntax error in the user's file
        raise ConfigError("config: reading TOML on Python 3.10 needs the `tomli` package: pip install tomli") from err
    return tomli


def parse_text(text: str, fmt: str, name: str) -> Any:
    """The parsed document of `text` in format `fmt`; a syntax error is a ConfigError naming `name` and the place."""
    if fmt == "yaml":
        import yaml

        errors: tuple[type[Exception], ...] = (yaml.YAMLError,)
        load: Any = yaml.safe_load
    elif fmt == "toml":
        toml = _toml_loads()
        errors, load = (toml.TOMLDecodeError,), toml.loads
    elif fmt == "json":
        errors, load = (json.JSONDecodeError,), json.loads
    else:
        raise ValueError(f"unknown config format {fmt!r}")
    try:
        return load(text)
    except errors as err:
        raise ConfigError(f"config: {name}: {parse_error(err, text, fmt.upper())}") from err


def read_config_file(path: str | Path) -> Any:
    """The parsed document of a .yaml/.yml, .toml or .json file (ConfigError when missing or not parseable)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config: no such file: {path}")
    fmt = config_format(path)
    return parse_text(path.read_text(encoding="utf-8"), fmt, path.name)


def parse_error(err: Exception, text: str, fmt: str) -> str:
    """`line L, column C: not valid FMT: problem` (1-based, one line) from a YAML, TOML or JSON parser error."""
    line = column = None
    problem = " ".join(str(err).split()) or type(err).__name__
    mark = getattr(err, "problem_mark", None)  # yaml.MarkedYAMLError: 0-based marks
    if mark is not None:
        line, column = mark.line + 1, mark.column + 1
        problem = " ".join(str(getattr(err, "problem", None) or type(err).__name__).split())
        context, context_mark = getattr(err, "context", None), getattr(err, "context_mark", None)
        if context:
            # PyYAML's context says what construct was open and where it began: the usual real cause.
            where = ""
            if context_mark is not None and (context_mark.line, context_mark.column) != (mark.line, mark.column):
                where = f" at line {context_mark.line + 1}, column {context_mark.column + 1}"
            problem += f" ({' '.join(str(context).split())}{where})"
    elif isinstance(getattr(err, "position", None), int) and hasattr(err, "character"):
        # yaml.reader.ReaderError (a character YAML does not allow) gives only a character offset.
        position = err.position  # pyright: ignore[reportAttributeAccessIssue]  # a ReaderError, duck-typed by the elif
        line = text.count("\n", 0, position) + 1
        column = position - text.rfind("\n", 0, position)
        code = err.character  # pyright: ignore[reportAttributeAccessIssue]  # a ReaderError, duck-typed by the elif
        shown = f"U+{code:04X}" if isinstance(code, int) else repr(code)
        problem = f"unacceptable character {shown}: {err.reason}"  # pyright: ignore[reportAttributeAccessIssue]  # a ReaderError, duck-typed by the elif
    elif isinstance(err, json.JSONDecodeError):
        # The place leads the line; a message that ends in "at" ("Unterminated string starting at") names it.
        line, column = err.lineno, err.colno
        problem = f"{err.msg} line {line}, column {column}" if err.msg.endswith(" at") else err.msg
    elif match := _TOML_WHERE.search(problem):  # tomllib puts the place at the end of its message
        line, column = int(match.group(1)), int(match.group(2))
        problem = problem[: match.start()]
    where = f"line {line}, column {column}: " if line is not None else ""
    return f"{where}not valid {fmt}: {problem}"
