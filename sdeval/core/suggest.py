"""The "did you mean" hint every config, rules and option error gives for an unknown name, said once."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from sdeval.core.errors import ConfigError


def did_you_mean(word: Any, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest of `choices`, or '' when none is close."""
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_keys(data: Iterable[Any], known: Iterable[str]) -> list[Any]:
    """The keys of `data` that are not `known`, in their order."""
    known = set(known)
    return [key for key in data if key not in known]


def unknown_key_hint(key: Any, known: Iterable[str]) -> str:
    """What follows "unknown key": ` (did you mean 'x'?)` for a close known key, else ` (known: a, b)`."""
    known = list(known)
    return did_you_mean(key, known) or f" (known: {', '.join(known) or 'none'})"


def check_keys(data: Mapping[str, Any], known: tuple[str, ...], prefix: str) -> None:
    """ConfigError `PREFIXKEY: unknown key (did you mean ...?)` (or the known keys) for the first unknown key."""
    unknown = unknown_keys(data, known)
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key{unknown_key_hint(unknown[0], known)}")
