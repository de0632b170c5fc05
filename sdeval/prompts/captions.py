"""Read a sidecar caption: `NAME.txt` next to `NAME.png` holds the prompt as UTF-8 text."""

from __future__ import annotations

import os
from pathlib import Path

from sdeval.prompts.record import MAX_PROMPT_CHARS, PromptParseError, PromptRecord, check_prompt


def caption_path(image_path: str | os.PathLike[str]) -> Path:
    """Where the caption of `image_path` lives: same folder, same stem, `.txt`."""
    return Path(image_path).with_suffix(".txt")


def read_caption(image_path: str | os.PathLike[str]) -> tuple[PromptRecord | None, str | None]:
    """The sidecar caption as a record.

    Returns (record, None) on success, (None, reason) if the file exists but is unusable, and
    (None, None) if there is no caption file.
    """
    path = caption_path(image_path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None, None
    except OSError as err:
        return None, f"cannot read caption {path.name}: {err.strerror or err}"
    # UTF-8 needs at most 4 bytes a character; a bigger file cannot hold an acceptable prompt.
    if size > 4 * MAX_PROMPT_CHARS:
        limit = f"over the {MAX_PROMPT_CHARS}-character prompt limit"
        return None, f"caption {path.name} is {size} bytes, {limit}"
    try:
        data = path.read_bytes()
    except OSError as err:
        return None, f"cannot read caption {path.name}: {err.strerror or err}"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        return None, f"caption {path.name} is not UTF-8 (invalid byte at offset {err.start})"
    text = text.strip()
    if not text:
        return None, f"caption {path.name} is empty"
    try:
        prompt = check_prompt(text, f"caption {path.name}")
    except PromptParseError as err:
        return None, str(err)
    return PromptRecord(prompt=prompt, source="caption"), None
