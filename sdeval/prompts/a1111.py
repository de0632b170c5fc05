"""Parse Automatic1111's `parameters` text (prompt, `Negative prompt:`, and a `Key: value, ...` line)."""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

from sdeval.prompts.record import PromptParseError, PromptRecord, check_prompt, optional_seed

# One `Key: value` pair of the settings line. A key is words joined by single spaces (so the regex
# cannot backtrack quadratically on long runs of spaces). A value is either a double-quoted
# JSON-style string (which may hold commas and escaped quotes) or everything up to the next comma.
_KEY = r"[A-Za-z][\w\-/.()+]*(?: [\w\-/.()+]+)*"
_PAIR = re.compile(rf'\s*({_KEY})\s*:\s*("(?:\\.|[^\\"])*"|[^,]*)\s*(?:,|$)')
# Real settings lines are a few kB; longer last lines are prompt text (and are not regex-scanned).
_MAX_SETTINGS_LINE = 64 * 1024
# Keys A1111 always writes; one of them must be present for a line to count as the settings line.
_ANCHOR_KEYS = frozenset({"Steps", "Sampler", "CFG scale", "Seed", "Size", "Model hash", "Model"})
_NEGATIVE = "Negative prompt:"
# Lines the Dynamic Prompts extension inserts after the prompts; they are settings, not prompt text.
_EXTRA_LINES = ("Template:", "Negative Template:")


def parse_a1111_parameters(text: str) -> PromptRecord:
    """Read an A1111 infotext into a PromptRecord (source 'a1111'); PromptParseError if it is not one."""
    if not isinstance(text, str):
        raise PromptParseError("A1111 'parameters' is not text")
    lines = text.strip().replace("\r\n", "\n").split("\n")
    settings: dict[str, Any] = {}
    if lines and lines[-1].strip():
        parsed = _parse_settings_line(lines[-1])
        if parsed is not None:
            settings = parsed
            lines = lines[:-1]
    if not settings:
        raise PromptParseError("A1111 'parameters' has no settings line (Steps:, Sampler:, Seed: ...)")

    prompt_lines: list[str] = []
    negative_lines: list[str] | None = None
    extra_key: str | None = None
    for line in lines:
        stripped = line.strip()
        starts = next((key for key in _EXTRA_LINES if stripped.startswith(key)), None)
        if starts is not None:
            extra_key = starts[:-1]
            settings[extra_key] = stripped[len(starts) :].strip()
            continue
        if extra_key is not None:  # the lines after an extra's first belong to it
            settings[extra_key] += "\n" + stripped
            continue
        if negative_lines is None and stripped.startswith(_NEGATIVE):
            negative_lines = [stripped[len(_NEGATIVE) :].strip()]
        elif negative_lines is not None:
            negative_lines.append(stripped)
        else:
            prompt_lines.append(stripped)
    prompt = check_prompt("\n".join(prompt_lines).strip())
    negative = check_prompt("\n".join(negative_lines).strip(), "negative prompt") if negative_lines else None

    seed = None
    if "Seed" in settings:
        try:
            seed = optional_seed(settings["Seed"])
        except PromptParseError:
            seed = None  # keep the raw text in settings; a prompt without a seed is still useful
    checkpoint = settings.get("Model") or settings.get("Model hash")
    return PromptRecord(
        prompt=prompt,
        source="a1111",
        negative_prompt=negative or None,
        seed=seed,
        checkpoint=str(checkpoint) if checkpoint else None,
        settings=_typed(settings),
    )


def _parse_settings_line(line: str) -> dict[str, str] | None:
    """Pairs of the last line, or None when the line is prompt text that merely contains colons."""
    pairs: dict[str, str] = {}
    pos = 0
    line = line.strip()
    if len(line) > _MAX_SETTINGS_LINE:
        return None
    while pos < len(line):
        match = _PAIR.match(line, pos)
        if match is None or match.end() == pos:
            return None  # text that is not `Key: value` means this is not a settings line
        key, value = match.group(1).strip(), match.group(2).strip()
        pairs[key] = _unquote(value)
        pos = match.end()
    if len(pairs) < 3 or not (_ANCHOR_KEYS & pairs.keys()):
        return None
    return pairs


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        try:
            decoded = json.loads(value)
        except ValueError:
            return value[1:-1]
        if isinstance(decoded, str):
            return decoded
    return value


def _typed(settings: dict[str, str]) -> dict[str, Any]:
    """Numbers A1111 always writes as numbers become numbers; everything else stays the exact text."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        out[key] = value
        if key in ("Steps", "Seed", "Clip skip"):
            with contextlib.suppress(ValueError):
                out[key] = int(value)
        elif key in ("CFG scale", "Denoising strength"):
            with contextlib.suppress(ValueError):
                out[key] = float(value)
    return out
