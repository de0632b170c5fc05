"""Reading a text file a user handed in (results, rules): every way it can fail is one error naming the file."""

from __future__ import annotations

import json
import os
from pathlib import Path

from sdeval.core.errors import SdevalError


def read_user_text(path: str | os.PathLike[str], kind: str, error: type[SdevalError] = SdevalError) -> str:
    """The UTF-8 text of `path`; `kind` names what it should be ("results", "rules") in the messages."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: no such {kind} file") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder, not a {kind} file") from None
    except UnicodeDecodeError as err:
        raise error(f"{path}: not a {kind} file (not UTF-8 text: byte {err.start})") from None
    except OSError as err:
        raise error(f"{path}: cannot read ({err.strerror or err})") from None


def json_problem(err: json.JSONDecodeError, line: bool = True) -> str:
    """Python's JSON error with its place, as one phrase: `Expecting ',' delimiter at line 4, column 3`. Some of
    its messages end in "at" already ("Unterminated string starting at"): the place follows without a second."""
    place = f"line {err.lineno}, column {err.colno}" if line else f"column {err.colno}"
    return f"{err.msg} {place}" if err.msg.endswith(" at") else f"{err.msg} at {place}"
