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


def check_keys(data: Mapping[str, Any], known: tuple[str, ...], prefix: str) -> None:
    """ConfigError `PREFIXKEY: unknown key (did you mean ...?)` (or the known keys) for the first unknown key."""
    for key in data:
        if key not in known:
            hint = did_you_mean(key, known) or f" (known: {', '.join(known)})"
            raise ConfigError(f"{prefix}{key}: unknown key{hint}")
