"""CLIP R-precision: how often an image's own prompt outranks R-1 other prompts of the run."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sdeval.metrics.embeddings import NotEnoughDataError, l2_normalize, rows_per_block

DEFAULT_MAX_R = 100
# Rows of images per step, bounded so the [rows, P] key and similarity arrays stay near 128 MB.
_ROW_CHUNK = 1024
_MAX_CHUNK_ELEMENTS = 1 << 24


@dataclass(frozen=True, eq=False)
class RPrecisionResult:
    """Fraction of images whose own prompt ranked first among R candidates; `hits` per image."""

    value: float
    r: int
    n: int
    seed: int
    hits: np.ndarray

    @property
    def chance(self) -> float:
        """Expected value for embeddings that carry no information: 1/R."""
        return 1.0 / self.r


def clip_r_precision(
    image_embeddings: np.ndarray,
    prompt_embeddings: np.ndarray,
    prompt_index: np.ndarray,
    *,
    r: int | None = None,
    seed: int = 0,
) -> RPrecisionResult:
    """CLIP R-precision over N images and P distinct prompts.

    `prompt_embeddings` holds one row per distinct prompt; `prompt_index[i]` is the row of image
    i's prompt. Each image is compared, by cosine, with its own prompt and R-1 other distinct
    prompts drawn without replacement from a numpy Generator seeded with `seed`; it scores a hit
    when its own prompt is strictly the most similar (a tie counts as a miss). R defaults to
    min(100, P).
    """
    images = l2_normalize(image_embeddings, "image_embeddings")
    prompts = l2_normalize(prompt_embeddings, "prompt_embeddings")
    index = np.asarray(prompt_index)
    n, p = len(images), len(prompts)
    if images.shape[1] != prompts.shape[1]:
        raise ValueError(f"embedding sizes differ: images {images.shape[1]}, prompts {prompts.shape[1]}")
    if index.shape != (n,) or not np.issubdtype(index.dtype, np.integer):
        raise ValueError(f"prompt_index must be {n} integers, one per image")
    if n and (index.min() < 0 or index.max() >= p):
        raise ValueError(f"prompt_index values must lie in [0, {p})")
    if n == 0:
        raise NotEnoughDataError("CLIP R-precision needs at least one image with a prompt")
    if p < 2:
        raise NotEnoughDataError(f"CLIP R-precision needs at least 2 distinct prompts, got {p}")
    if r is None:
        r = min(DEFAULT_MAX_R, p)
    if not 2 <= r <= p:
        raise ValueError(f"R must be between 2 and the number of distinct prompts ({p}), got {r}")

    rng = np.random.default_rng(seed)
    hits = np.zeros(n, dtype=bool)
    # The Generator fills arrays in order, so the draws (and the result) do not depend on the chunking.
    chunk = rows_per_block(p, _ROW_CHUNK, _MAX_CHUNK_ELEMENTS)
    rows = np.arange(chunk)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        own = index[start:stop]
        # Negatives: the R-1 smallest of uniform random keys, with the own prompt's key pushed to
        # +inf, is a uniform draw without replacement from the other P-1 prompts.
        keys = rng.random((stop - start, p))
        keys[rows[: stop - start], own] = np.inf
        negatives = np.argpartition(keys, r - 2, axis=1)[:, : r - 1]
        similarity = images[start:stop] @ prompts.T
        own_score = similarity[rows[: stop - start], own]
        best_negative = np.take_along_axis(similarity, negatives, axis=1).max(axis=1)
        hits[start:stop] = own_score > best_negative
    return RPrecisionResult(value=float(hits.mean()), r=r, n=n, seed=seed, hits=hits)
