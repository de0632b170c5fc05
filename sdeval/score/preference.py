"""Human-preference scores of a run's images (sdeval.preference): one per image, NaN where it has none.

Scorers whose score factors into an image embedding and a prompt embedding (HPS, PickScore, the aesthetic head)
ride the one decode pass as feature extractors; their prompt embeddings are computed once per distinct prompt and
cached like CLIP's. ImageReward's text encoder looks at the image tokens, so it scores (image, prompt) pairs in a
pass of its own, each pair cached by the image's content hash and the prompt.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from sdeval.core.images import ImageDecodeError, load_rgb
from sdeval.features.cache import FeatureCache
from sdeval.features.extract import FolderFeatures
from sdeval.features.text_embeddings import embed_prompts
from sdeval.prompts.lookup import ImagePrompts

_SCORE = "score"


@dataclass
class PreferenceScores:
    """Per scorer name: each image's score (NaN where none) and, for images without one, the reason."""

    scores: dict[str, np.ndarray]
    missing: dict[str, dict[int, str]]


def is_embedding(scorer: Any) -> bool:
    """Whether the scorer factors into image and prompt embeddings (so it can ride the decode pass)."""
    return all(hasattr(scorer, attr) for attr in ("extract", "embed_texts", "score_embeddings", "feature_name"))


def score_preferences(
    scorers: dict[str, Any],
    generated: FolderFeatures,
    prompts: ImagePrompts | None,
    cache_dir: str | None,
    batch_size: int,
    progress: bool,
) -> PreferenceScores:
    """Every scorer's score of every scored image (the embedding scorers' image features are in `generated`)."""
    out = PreferenceScores({}, {})
    for name, scorer in scorers.items():
        n = generated.n
        records = prompts.records if prompts is not None else [None] * n
        missing: dict[int, str] = {}
        texts: list[str | None] = [None] * n
        for i, record in enumerate(records):
            if record is not None:
                texts[i] = record.prompt
            elif scorer.prompt_relative:
                missing[i] = f"no prompt: {name} scores an image against its prompt"
        rows = [i for i in range(n) if i not in missing]
        scores = np.full(n, np.nan)
        if rows and is_embedding(scorer):
            scores[rows] = _embedding_scores(scorer, generated, rows, texts, cache_dir)
        elif rows:
            found, unreadable = _pair_scores(scorer, generated, rows, texts, cache_dir, batch_size, progress)
            scores[rows] = found
            missing.update(unreadable)
        out.scores[name], out.missing[name] = scores, missing
    return out


def _embedding_scores(
    scorer: Any, generated: FolderFeatures, rows: list[int], texts: list[str | None], cache_dir: str | None
) -> np.ndarray:
    images = generated.features[scorer.cache_key][scorer.feature_name][rows]
    if not scorer.prompt_relative:
        return scorer.score_embeddings(images, None)
    prompts = [texts[i] or "" for i in rows]
    distinct = list(dict.fromkeys(prompts))
    table, _ = embed_prompts(scorer, distinct, cache_dir)
    position = {text: j for j, text in enumerate(distinct)}
    return scorer.score_embeddings(images, table[[position[p] for p in prompts]])


def _pair_key(image_sha256: str, prompt: str) -> str:
    return hashlib.sha256(f"{image_sha256}\0{prompt}".encode("utf-8", "surrogatepass")).hexdigest()


def _pair_scores(
    scorer: Any,
    generated: FolderFeatures,
    rows: list[int],
    texts: list[str | None],
    cache_dir: str | None,
    batch_size: int,
    progress: bool,
) -> tuple[np.ndarray, dict[int, str]]:
    """Scores of (image, prompt) pairs that a model must see together, from the cache or a decode pass of their own
    (the feature pass keeps no pixels); images that can no longer be read get NaN and a reason."""
    keys = {i: _pair_key(generated.hashes[i], texts[i] or "") for i in rows}
    cache = FeatureCache(cache_dir) if cache_dir else None
    found: dict[int, float] = {}
    unreadable: dict[int, str] = {}
    try:
        cached = cache.get_many(keys.values(), scorer.cache_key) if cache else {}
        found = {i: float(cached[key][_SCORE][0]) for i, key in keys.items() if key in cached}
        todo = [i for i in rows if i not in found]
        bar = tqdm(total=len(todo), desc=f"{scorer.name} scores", unit="img", file=sys.stderr,
                   disable=not progress or not todo, leave=False)  # fmt: skip
        for start in range(0, len(todo), batch_size):
            batch, tensors = [], []
            for i in todo[start : start + batch_size]:
                try:
                    tensors.append(scorer.preprocess(load_rgb(Path(generated.root) / generated.paths[i])))
                    batch.append(i)
                except ImageDecodeError as err:  # decoded fine in the feature pass; changed on disk since
                    unreadable[i] = f"cannot be read for {scorer.name}: {err}"
            if batch:
                values = scorer.score(torch.stack(tensors), [texts[i] or "" for i in batch])
                # float32, as the cache keeps it: a score does not depend on whether it came from the cache.
                found.update(zip(batch, (float(v) for v in np.asarray(values, dtype=np.float32)), strict=True))
                if cache is not None:
                    cache.put_many([(keys[i], {_SCORE: np.array([found[i]])}) for i in batch], scorer.cache_key)
            bar.update(len(todo[start : start + batch_size]))
        bar.close()
    finally:
        if cache is not None:
            cache.close()
    return np.array([found.get(i, np.nan) for i in rows]), unreadable
