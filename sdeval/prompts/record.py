"""The prompt record every prompt source produces, and the size limits that guard untrusted text."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

PromptSource = Literal["manifest", "a1111", "comfyui", "sdeval", "caption", "geneval", "api"]

#: Longest prompt accepted. CLIP reads 77 tokens; anything this long is a broken file, not a prompt.
MAX_PROMPT_CHARS = 20_000
#: Largest metadata blob (manifest line, JSON chunk, caption file) we parse, in bytes or characters.
MAX_METADATA_CHARS = 4 * 1024 * 1024


class PromptParseError(ValueError):
    """Metadata that is present but cannot be read as a prompt; the message says why."""


@dataclass(frozen=True)
class PromptRecord:
    """A prompt and what is known about how its image was made.

    `settings` is a plain dict (kept out of the hash) so records pickle and serialise to JSON as is.
    """

    prompt: str
    source: PromptSource
    negative_prompt: str | None = None
    seed: int | None = None
    id: str | None = None
    category: str | None = None
    checkpoint: str | None = None
    settings: dict[str, Any] = field(default_factory=dict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the manifest's field names plus `source`)."""
        return {
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "seed": self.seed,
            "id": self.id,
            "category": self.category,
            "checkpoint": self.checkpoint,
            "settings": dict(self.settings),
            "source": self.source,
        }


def check_prompt(value: Any, what: str = "prompt") -> str:
    """Return `value` if it is an acceptable prompt string, else raise PromptParseError saying why."""
    if not isinstance(value, str):
        raise PromptParseError(f"{what} must be a string, got {type(value).__name__}")
    if len(value) > MAX_PROMPT_CHARS:
        raise PromptParseError(f"{what} is {len(value)} characters, over the {MAX_PROMPT_CHARS} limit")
    return value


def optional_text(value: Any, what: str) -> str | None:
    """A string field that may be absent (None or ''); numbers are accepted and kept as text."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise PromptParseError(f"{what} must be a string, got a boolean")
    if isinstance(value, (int, float)):
        return str(value)
    return check_prompt(value, what)


def optional_seed(value: Any) -> int | None:
    """A seed given as an int or a string of digits (CSV, A1111); anything else raises PromptParseError."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise PromptParseError("seed must be an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        # Bound the length so a hostile value cannot make int() do quadratic work.
        if len(text) <= 40 and text.lstrip("+-").isdigit():
            return int(text)
    raise PromptParseError(f"seed must be an integer, got {_short(value)}")


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
