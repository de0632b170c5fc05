"""Text embeddings of prompts (CLIP's, or a preference scorer's): each distinct prompt embedded once, cached by the
sha256 of its text."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from sdeval.features.cache import FeatureCache
from sdeval.features.clip import TEXT_FEATURE_NAME


def embed_prompts(embedder: Any, prompts: list[str], cache_dir: str | None) -> tuple[np.ndarray, int]:
    """Text embeddings of distinct `prompts` (rows in order) and how many were computed, not cached.

    Cached by (sha256 of the prompt's UTF-8 text, the embedder's text cache key), like image features. `embedder`
    has `embed_texts(prompts)` and `text_cache_key` (a ClipEmbedder, or a preference scorer's text side).
    """
    keys = [hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).hexdigest() for prompt in prompts]
    cache = FeatureCache(cache_dir) if cache_dir else None
    try:
        found = cache.get_many(keys, embedder.text_cache_key) if cache else {}
        todo = [i for i, key in enumerate(keys) if key not in found]
        rows: dict[str, np.ndarray] = {key: arrays[TEXT_FEATURE_NAME] for key, arrays in found.items()}
        if todo:
            computed = embedder.embed_texts([prompts[i] for i in todo])
            new = [(keys[i], {TEXT_FEATURE_NAME: row}) for i, row in zip(todo, computed, strict=True)]
            rows.update((key, arrays[TEXT_FEATURE_NAME]) for key, arrays in new)
            if cache is not None:
                cache.put_many(new, embedder.text_cache_key)
    finally:
        if cache is not None:
            cache.close()
    if not prompts:
        return np.asarray(embedder.embed_texts([]), dtype=np.float32), 0
    return np.stack([rows[key] for key in keys]), len(todo)
