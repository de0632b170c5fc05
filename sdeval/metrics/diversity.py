"""Per-prompt diversity: mean pairwise cosine distance of CLIP image embeddings across a prompt's seeds."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from sdeval.metrics.embeddings import NotEnoughDataError, l2_normalize

#: What images are grouped by (prompt text, id or index): the results name prompts by the same values.
P = TypeVar("P", bound=Hashable)


@dataclass(frozen=True)
class PromptDiversity(Generic[P]):
    """Mean of 1 - cos over all pairs of one prompt's images (0: identical images; 1: orthogonal)."""

    prompt: P
    n_images: int
    mean_distance: float


@dataclass(frozen=True)
class SkippedPrompt(Generic[P]):
    prompt: P
    reason: str


@dataclass(frozen=True)
class DiversityResult(Generic[P]):
    """`overall` is the unweighted mean over prompts, so a prompt with many seeds does not dominate."""

    overall: float
    n_prompts: int
    per_prompt: list[PromptDiversity[P]]
    skipped: list[SkippedPrompt[P]]


def prompt_diversity(image_embeddings: np.ndarray, prompts: Sequence[P]) -> DiversityResult[P]:
    """Diversity of each prompt's images (grouped by `prompts[i]`, e.g. prompt text or id) and overall.

    A collapse detector: a model that ignores the seed gives ~0. Prompts with a single image have
    no pairs and are listed in `skipped`. Cosine distance is 1 - cos, in [0, 2].
    """
    embeddings = l2_normalize(image_embeddings, "image_embeddings")
    if len(prompts) != len(embeddings):
        raise ValueError(f"got {len(prompts)} prompts for {len(embeddings)} embeddings")
    groups: dict[P, list[int]] = {}
    for i, prompt in enumerate(prompts):
        groups.setdefault(prompt, []).append(i)
    per_prompt: list[PromptDiversity[P]] = []
    skipped: list[SkippedPrompt[P]] = []
    for prompt, members in groups.items():
        k = len(members)
        if k < 2:
            skipped.append(SkippedPrompt(prompt, "only one image: no pairs to compare"))
            continue
        group = embeddings[members]
        # Mean over i != j of e_i.e_j from the sum vector: (|sum e|^2 - sum |e_i|^2) / (k (k-1)), O(k d).
        total = group.sum(axis=0)
        mean_cos = (total @ total - float(np.einsum("ij,ij->", group, group))) / (k * (k - 1))
        per_prompt.append(PromptDiversity(prompt, k, float(1.0 - mean_cos)))
    if not per_prompt:
        raise NotEnoughDataError("diversity needs at least one prompt with two or more images (seeds)")
    overall = float(np.mean([item.mean_distance for item in per_prompt]))
    return DiversityResult(overall=overall, n_prompts=len(per_prompt), per_prompt=per_prompt, skipped=skipped)


def image_distances(image_embeddings: np.ndarray, prompts: Sequence[Hashable]) -> np.ndarray:
    """Each image's mean cosine distance to the other images of its prompt (NaN for a prompt's only image): a
    prompt's mean of these is its diversity, so a bootstrap over prompts can resample them (docs/statistics.md)."""
    embeddings = l2_normalize(image_embeddings, "image_embeddings")
    groups: dict[Hashable, list[int]] = {}
    for i, prompt in enumerate(prompts):
        groups.setdefault(prompt, []).append(i)
    out = np.full(len(embeddings), np.nan)
    for members in groups.values():
        k = len(members)
        if k < 2:
            continue
        group = embeddings[members]
        # e_i . (sum of the others) = e_i . total - |e_i|^2, over the k - 1 others.
        others = group @ group.sum(axis=0) - np.einsum("ij,ij->i", group, group)
        out[members] = 1.0 - others / (k - 1)
    return out
