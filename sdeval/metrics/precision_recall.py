"""Improved precision and recall (Kynkäänniemi et al. 2019) with k-nearest-neighbour balls.

Each real feature gets a ball whose radius is the distance to its k-th nearest other real feature;
precision is the fraction of generated features inside at least one real ball, recall the fraction of
real features inside at least one generated ball (distances <= radius, as in torch-fidelity). Float64,
computed in row chunks so memory stays bounded; the generated-to-real distances are computed once.
"""

from __future__ import annotations

import numpy as np
import torch

from sdeval.metrics.embeddings import NotEnoughDataError

_CHUNK = 2048


def _pairwise_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # Direct differences would need n*m*d memory; the expansion is exact enough in float64.
    d2 = (a * a).sum(1, keepdim=True) + (b * b).sum(1) - 2.0 * a @ b.T
    return d2.clamp_min_(0).sqrt_()


def knn_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row to its k-th nearest other row."""
    radii = []
    for chunk in features.split(_CHUNK):
        # k + 1 because each point is its own nearest neighbour at distance 0.
        radii.append(_pairwise_distances(chunk, features).kthvalue(k + 1, dim=1).values)
    return torch.cat(radii)


def precision_recall(generated: np.ndarray, real: np.ndarray, k: int = 3) -> tuple[float, float]:
    """(precision, recall) of generated features against real features."""
    if min(len(generated), len(real)) <= k:
        raise NotEnoughDataError(
            f"precision/recall with k={k} needs more than {k} images per set, got {len(generated)} and {len(real)}"
        )
    gen = torch.from_numpy(np.asarray(generated, np.float64))
    ref = torch.from_numpy(np.asarray(real, np.float64))
    ref_radii, gen_radii = knn_radii(ref, k), knn_radii(gen, k)
    # One pass over the generated-to-real distances serves both directions.
    gen_inside = []
    ref_inside = torch.zeros(len(ref), dtype=torch.bool)
    for gen_chunk, chunk_radii in zip(gen.split(_CHUNK), gen_radii.split(_CHUNK), strict=True):
        distances = _pairwise_distances(gen_chunk, ref)
        gen_inside.append((distances <= ref_radii).any(dim=1))
        ref_inside |= (distances <= chunk_radii[:, None]).any(dim=0)
    precision = float(torch.cat(gen_inside).double().mean())
    recall = float(ref_inside.double().mean())
    return precision, recall
