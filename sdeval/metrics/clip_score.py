"""CLIP score: 100 * max(cos(image, prompt), 0) per image, and its mean (torchmetrics' CLIPScore scale); or, with the
`mean` aggregation, 100 * cos unclamped, as MLPerf Inference's text-to-image accuracy check computes it
(`text_to_image/tools/accuracy_coco.py`: np.mean of 100 * the cosine of each image with its caption)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sdeval.metrics.embeddings import NotEnoughDataError, l2_normalize

#: How per-image cosines become scores: `clamped` 100 * max(cos, 0) (Hessel et al., torchmetrics' scale), `mean`
#: 100 * cos (MLPerf's, no clamp). Either way the value is the mean of the per-image scores.
AGGREGATIONS = ("clamped", "mean")
DEFAULT_AGGREGATION = "clamped"


@dataclass(frozen=True)
class ClipScoreRow:
    """One image's score; `cosine` is kept so other aggregates can be computed from rows."""

    image_id: str
    cosine: float
    score: float


@dataclass(frozen=True, eq=False)
class ClipScoreResult:
    """Mean CLIP score over images, the per-image rows, and torchmetrics' aggregate for comparison.

    `mean` is the mean of per-image `100 * max(cos, 0)` (Hessel et al.'s per-image clamp, on
    torchmetrics' 0-100 scale). `torchmetrics_value` is `max(100 * mean(cos), 0)`, which is what
    torchmetrics' CLIPScore.compute() returns: it clamps the mean, not each image. The two agree
    whenever no cosine is negative, as is the case for trained CLIP models on real prompts.
    """

    mean: float
    n: int
    torchmetrics_value: float
    rows: list[ClipScoreRow]

    @property
    def scores(self) -> np.ndarray:
        return np.array([row.score for row in self.rows], dtype=np.float64)


def clip_scores(
    image_embeddings: np.ndarray, text_embeddings: np.ndarray, aggregation: str = DEFAULT_AGGREGATION
) -> np.ndarray:
    """Per-image CLIP score, float64 [N]: row i of images against row i of texts (its own prompt)."""
    return _scores(_cosines(image_embeddings, text_embeddings), aggregation)


def _scores(cosines: np.ndarray, aggregation: str) -> np.ndarray:
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"CLIP score aggregation must be one of {', '.join(AGGREGATIONS)}, got {aggregation!r}")
    return 100.0 * (np.maximum(cosines, 0.0) if aggregation == "clamped" else cosines)


def clip_score(
    image_embeddings: np.ndarray,
    text_embeddings: np.ndarray,
    image_ids: Sequence[str] | None = None,
    aggregation: str = DEFAULT_AGGREGATION,
) -> ClipScoreResult:
    """CLIP score of N images, each against its own prompt's embedding (row-aligned, any scale), aggregated as
    `aggregation` says (AGGREGATIONS)."""
    cosines = _cosines(image_embeddings, text_embeddings)
    n = len(cosines)
    if n == 0:
        raise NotEnoughDataError("CLIP score needs at least one image with a prompt")
    if image_ids is None:
        image_ids = [str(i) for i in range(n)]
    elif len(image_ids) != n:
        raise ValueError(f"got {len(image_ids)} image ids for {n} embeddings")
    scores = _scores(cosines, aggregation)
    rows = [
        ClipScoreRow(str(image_id), float(c), float(s))
        for image_id, c, s in zip(image_ids, cosines, scores, strict=True)
    ]
    return ClipScoreResult(
        mean=float(scores.mean()),
        n=n,
        torchmetrics_value=float(max(100.0 * cosines.mean(), 0.0)),
        rows=rows,
    )


def _cosines(image_embeddings: np.ndarray, text_embeddings: np.ndarray) -> np.ndarray:
    images = l2_normalize(image_embeddings, "image_embeddings")
    texts = l2_normalize(text_embeddings, "text_embeddings")
    if images.shape != texts.shape:
        raise ValueError(
            f"image and text embeddings must be row-aligned with the same shape, got {images.shape} and {texts.shape}"
        )
    return np.einsum("nd,nd->n", images, texts)
