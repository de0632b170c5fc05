"""The interface every human-preference scorer implements, so one decode pass and one cache can feed them all.

A scorer turns decoded images (and, when `prompt_relative`, each image's prompt) into one float64 score per
image. Like a FeatureExtractor (sdeval/features/base.py), `preprocess` runs in the decode worker processes and
the model runs in the main process on batches of preprocessed tensors of one shape.

Scorers whose score factors into an image embedding and a text embedding (HPS, PickScore, the aesthetic head)
are `EmbeddingScorer`s: the pipeline can cache `extract` per image content hash (under `cache_key`, exactly
as a FeatureExtractor) and `embed_texts` per distinct prompt (under `text_cache_key`), then combine them with
`score_embeddings`; `score` is that composition. ImageReward cannot factor (its text encoder cross-attends to
the image tokens), so it has `score` only; its `cache_key` then names its scores, to be keyed per
(image hash, prompt).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image

from sdeval.preference.info import ScorerAttributes

#: The normalisation constants CLIP, BLIP and ImageReward use.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@runtime_checkable
class PreferenceScorer(ScorerAttributes, Protocol):
    """A model that scores images, each against its prompt when `prompt_relative` (its class attributes:
    sdeval.preference.info.ScorerAttributes)."""

    #: Identity of everything that moves this scorer's per-image outputs; part of every cache key.
    cache_key: str

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        """One decoded HxWx3 uint8 image to the model's input tensor (picklable; runs in decode workers)."""
        ...

    def score(self, batch: torch.Tensor, prompts: Sequence[str]) -> np.ndarray:
        """float64 [N] scores of a batch of preprocessed images, image i against prompts[i]."""
        ...

    def protocol(self) -> dict[str, Any]:
        """Everything that moves the score: model, weights sha256, preprocessing, constants, library versions."""
        ...


@runtime_checkable
class EmbeddingScorer(PreferenceScorer, Protocol):
    """A scorer whose score is a function of a per-image embedding and a per-prompt embedding."""

    #: Name of the feature `extract` returns.
    feature_name: str
    #: Identity of `embed_texts` outputs, to cache them per distinct prompt.
    text_cache_key: str

    def extract(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """{feature_name: float32 [N, D] image embeddings on the CPU} (FeatureExtractor contract)."""
        ...

    def embed_texts(self, prompts: Sequence[str]) -> np.ndarray:
        """float32 [len(prompts), D] prompt embeddings, one row per prompt in order (D may be 0)."""
        ...

    def score_embeddings(self, image_emb: np.ndarray, text_emb: np.ndarray | None) -> np.ndarray:
        """float64 [N] scores from row-aligned image and prompt embeddings."""
        ...


def check_rgb(rgb: np.ndarray) -> np.ndarray:
    """The decode pass's contract: an HxWx3 uint8 RGB array; anything else is a bug upstream, said plainly."""
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        got = f"{rgb.dtype} {rgb.shape}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise ValueError(f"expected an HxWx3 uint8 RGB array, got {got}")
    return rgb


def to_pil(rgb: np.ndarray) -> Image.Image:
    """The PIL image the reference implementations resize (they all start from PIL)."""
    return Image.fromarray(check_rgb(rgb), mode="RGB")


def check_prompts(prompts: Sequence[str], n: int | None = None) -> list[str]:
    """Prompts as a list of str, one per image when `n` is given."""
    prompts = list(prompts)
    for index, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise TypeError(f"prompt {index} is {type(prompt).__name__}, not str")
    if n is not None and len(prompts) != n:
        raise ValueError(f"got {len(prompts)} prompts for {n} images")
    return prompts


def distinct_rows(prompts: Sequence[str], table: np.ndarray, distinct: list[str]) -> np.ndarray:
    """Rows of `table` (one per distinct prompt, in `distinct` order) spread back to one per prompt."""
    position = {prompt: i for i, prompt in enumerate(distinct)}
    return table[[position[p] for p in prompts]]


def row_dot(image_emb: np.ndarray, text_emb: np.ndarray | None, what: str) -> np.ndarray:
    """float64 [N] dot product of row i of each (row-aligned embeddings)."""
    if text_emb is None:
        raise ValueError(f"{what} needs the prompts' embeddings")
    image = np.asarray(image_emb, dtype=np.float64)
    text = np.asarray(text_emb, dtype=np.float64)
    if image.ndim != 2 or image.shape != text.shape:
        raise ValueError(f"{what}: image embeddings {image.shape} and prompt embeddings {text.shape} do not align")
    return np.einsum("nd,nd->n", image, text)


def make_cache_key(kind: str, version: int, label: str, weights_sha256: str, identity: dict[str, Any]) -> str:
    """`kind-vN-label-sha256-digest`: the digest covers what moves outputs besides the weights."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", label)[:80]
    return f"{kind}-v{version}-{safe}-{weights_sha256}-{digest}"


def vocab_sha256(tokenizer: Any) -> str:
    """sha256 of a tokenizer's vocabulary (token -> id), wherever the tokenizer was loaded from."""
    vocab = tokenizer.get_vocab()
    return hashlib.sha256(json.dumps(vocab, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def no_model_error(kind: str) -> RuntimeError:
    """The error of a scorer unpickled in a decode worker and asked to run its model."""
    return RuntimeError(f"this {kind} scorer was unpickled in a worker and has no model; only preprocess() works here")
