"""Read a prompt from metadata inside an image file: sdeval's own PNG chunk, A1111 infotext, ComfyUI graph."""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from sdeval.prompts.a1111 import parse_a1111_parameters
from sdeval.prompts.comfyui import parse_comfyui_prompt
from sdeval.prompts.record import (
    MAX_METADATA_CHARS,
    PromptParseError,
    PromptRecord,
    check_prompt,
    optional_seed,
    optional_text,
)

_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PROMPT_KEYS = frozenset({"sdeval", "parameters", "prompt"})


@dataclass(frozen=True)
class EmbeddedPrompt:
    """What the image's metadata gave: a record (or None) and why other metadata was not used."""

    record: PromptRecord | None
    problems: list[str] = field(default_factory=list)


def read_embedded_prompt(image: str | os.PathLike[str] | Image.Image) -> PromptRecord | None:
    """The prompt stored in the image's metadata, or None when there is none that can be read."""
    return inspect_embedded_prompt(image).record


def inspect_embedded_prompt(image: str | os.PathLike[str] | Image.Image) -> EmbeddedPrompt:
    """Like read_embedded_prompt, but also says why metadata that is present could not be used.

    Sources, most exact first: PNG `sdeval` JSON, A1111 `parameters` (PNG text, or EXIF
    UserComment / JPEG comment for JPEG and WebP), ComfyUI `prompt` graph. The first that parses wins.
    """
    if isinstance(image, Image.Image):
        return _inspect(image, late_keys=None)
    try:
        with Image.open(image) as img:
            late = _png_late_text_keys(image) if img.format == "PNG" else set()
            return _inspect(img, late_keys=late)
    except Exception as err:  # untrusted file: any decoder failure is a reason, never a traceback
        return EmbeddedPrompt(None, [f"cannot read image metadata: {type(err).__name__}: {err}"])


def _inspect(img: Image.Image, late_keys: set[str] | None) -> EmbeddedPrompt:
    problems: list[str] = []
    texts = _text_chunks(img, late_keys, problems)
    attempts = (
        ("PNG 'sdeval' chunk", texts.get("sdeval"), _from_sdeval),
        ("PNG 'parameters' chunk", texts.get("parameters"), _from_a1111),
        ("EXIF UserComment", _exif_user_comment(img, problems), _from_a1111),
        ("JPEG comment", _jpeg_comment(img), _from_a1111),
        ("PNG 'prompt' chunk (ComfyUI)", texts.get("prompt"), _from_comfyui),
    )
    for where, text, parse in attempts:
        if text is None:
            continue
        if len(text) > MAX_METADATA_CHARS:
            problems.append(f"{where} is {len(text)} characters, over the {MAX_METADATA_CHARS} limit")
            continue
        try:
            record, notes = parse(text)
        except PromptParseError as err:
            problems.append(f"{where}: {err}")
            continue
        problems.extend(notes)
        return EmbeddedPrompt(record, problems)
    if "workflow" in texts and "prompt" not in texts:
        problems.append("only a ComfyUI UI 'workflow' chunk is present; it is not read (no API 'prompt')")
    return EmbeddedPrompt(None, problems)


def _text_chunks(img: Image.Image, late_keys: set[str] | None, problems: list[str]) -> dict[str, str]:
    """PNG text chunks. Those before the pixel data are in `info`; later ones need `img.text`.

    `img.text` decodes the whole image, so it is only used when `late_keys` (text chunks found
    after the pixel data by a cheap chunk walk; None = unknown) holds a key we read.
    """
    texts = {k: str(v) for k, v in img.info.items() if isinstance(k, str) and isinstance(v, str)}
    wanted = _PROMPT_KEYS - texts.keys()
    if img.format == "PNG" and wanted and (late_keys is None or wanted & late_keys):
        try:
            late = {k: str(v) for k, v in getattr(img, "text", {}).items() if isinstance(v, str)}
        except Exception as err:  # truncated or hostile file after the header
            problems.append(f"cannot read PNG text chunks after the image data: {err}")
        else:
            texts.update({k: v for k, v in late.items() if k not in texts})
    return texts


def _png_late_text_keys(path: str | os.PathLike[str]) -> set[str]:
    """Keywords of PNG text chunks that come after the first IDAT, found by walking chunk headers."""
    keys: set[str] = set()
    seen_idat = False
    with open(path, "rb") as handle:
        if handle.read(8) != _PNG_SIGNATURE:
            return keys
        while True:
            head = handle.read(8)
            if len(head) < 8:
                break
            length, kind = struct.unpack(">I4s", head)
            if kind == b"IEND":
                break
            if kind == b"IDAT":
                seen_idat = True
            elif seen_idat and kind in (b"tEXt", b"zTXt", b"iTXt"):
                start = handle.read(min(length, 80))  # the keyword is at most 79 bytes, then NUL
                keys.add(start.split(b"\x00", 1)[0].decode("latin-1"))
                handle.seek(length - len(start) + 4, os.SEEK_CUR)
                continue
            handle.seek(length + 4, os.SEEK_CUR)  # chunk data and CRC
    return keys


def _exif_user_comment(img: Image.Image, problems: list[str]) -> str | None:
    if img.format not in ("JPEG", "WEBP", "MPO", "TIFF"):
        return None
    try:
        exif = img.getexif()
        raw = exif.get_ifd(_EXIF_IFD).get(_USER_COMMENT, exif.get(_USER_COMMENT))
    except Exception as err:
        problems.append(f"cannot read EXIF: {err}")
        return None
    if raw is None:
        return None
    try:
        return decode_user_comment(raw)
    except UnicodeDecodeError as err:
        problems.append(f"EXIF UserComment is not valid text: {err.reason}")
        return None


def _jpeg_comment(img: Image.Image) -> str | None:
    raw = img.info.get("comment")
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors="replace")
    return raw if isinstance(raw, str) else None


def decode_user_comment(raw: bytes | str) -> str:
    """Decode an EXIF UserComment: an 8-byte charset prefix, then text (A1111 writes UNICODE = UTF-16)."""
    if isinstance(raw, str):
        return raw.rstrip("\x00")
    prefix, body = raw[:8], raw[8:]
    if prefix == b"UNICODE\x00":
        if body[:2] in (b"\xff\xfe", b"\xfe\xff"):
            return body.decode("utf-16").rstrip("\x00")
        # No BOM: the spec says big-endian, but writers differ. ASCII-heavy text has its zero bytes
        # at even offsets in big-endian and odd offsets in little-endian.
        zeros_even = body[0::2].count(0)
        zeros_odd = body[1::2].count(0)
        return body.decode("utf-16-be" if zeros_even >= zeros_odd else "utf-16-le").rstrip("\x00")
    if prefix in (b"ASCII\x00\x00\x00", b"\x00" * 8):
        return body.decode("utf-8").rstrip("\x00")
    return raw.decode("utf-8").rstrip("\x00")


def _from_a1111(text: str) -> tuple[PromptRecord, list[str]]:
    return parse_a1111_parameters(text), []


def _from_comfyui(text: str) -> tuple[PromptRecord, list[str]]:
    return parse_comfyui_prompt(_json(text))


def _from_sdeval(text: str) -> tuple[PromptRecord, list[str]]:
    return parse_sdeval_metadata(_json(text)), []


def parse_sdeval_metadata(obj: Any) -> PromptRecord:
    """Read sdeval's own PNG metadata object (see docs/formats.md) into a PromptRecord."""
    if not isinstance(obj, dict):
        raise PromptParseError("sdeval metadata is not a JSON object")
    if "prompt" not in obj:
        raise PromptParseError("sdeval metadata has no 'prompt'")
    settings = obj.get("settings")
    if settings is None:
        settings = {}
    if not isinstance(settings, dict):
        raise PromptParseError(f"sdeval metadata 'settings' must be an object, got {type(settings).__name__}")
    settings = dict(settings)
    # Identity fields that have no PromptRecord slot travel in settings, never overwriting a setting.
    for key in ("setting_id", "seed_index", "checkpoint_hash", "sdeval_version"):
        if obj.get(key) is not None:
            settings.setdefault(key, obj[key])
    return PromptRecord(
        prompt=check_prompt(obj["prompt"]),
        source="sdeval",
        negative_prompt=optional_text(obj.get("negative_prompt"), "negative_prompt"),
        seed=optional_seed(obj.get("seed")),
        id=optional_text(obj.get("prompt_id", obj.get("id")), "prompt_id"),
        category=optional_text(obj.get("category"), "category"),
        checkpoint=optional_text(obj.get("checkpoint"), "checkpoint"),
        settings=settings,
    )


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as err:
        raise PromptParseError(f"not valid JSON ({err})") from None
