"""Prompt recovery for scored images: manifest, metadata in the image (sdeval, A1111, ComfyUI), captions."""

from __future__ import annotations

from sdeval.prompts.a1111 import parse_a1111_parameters
from sdeval.prompts.captions import caption_path, read_caption
from sdeval.prompts.comfyui import parse_comfyui_prompt
from sdeval.prompts.embedded import (
    EmbeddedPrompt,
    decode_user_comment,
    inspect_embedded_prompt,
    parse_sdeval_metadata,
    read_embedded_prompt,
)
from sdeval.prompts.find import PromptSearch, SkippedImage, find_prompts
from sdeval.prompts.manifest import ManifestProblem, ManifestResult, load_manifest, normalize_relpath
from sdeval.prompts.record import MAX_METADATA_CHARS, MAX_PROMPT_CHARS, PromptParseError, PromptRecord

__all__ = [
    "MAX_METADATA_CHARS",
    "MAX_PROMPT_CHARS",
    "EmbeddedPrompt",
    "ManifestProblem",
    "ManifestResult",
    "PromptParseError",
    "PromptRecord",
    "PromptSearch",
    "SkippedImage",
    "caption_path",
    "decode_user_comment",
    "find_prompts",
    "inspect_embedded_prompt",
    "load_manifest",
    "normalize_relpath",
    "parse_a1111_parameters",
    "parse_comfyui_prompt",
    "parse_sdeval_metadata",
    "read_caption",
    "read_embedded_prompt",
]
