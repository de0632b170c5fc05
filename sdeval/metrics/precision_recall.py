"""Improved precision and recall (Kynkäänniemi et al. 2019) with k-nearest-neighbour balls.

Each real feature gets a ball whose radius is the distance to its k-th nearest other real feature;
precision is the fraction of generated features inside at least one real ball, recall the fraction of
real features inside at least one generated ball (distances <= radius, as in torch-fidelity). Float64,
computed in row chunks so memory stays bounded.
"""

from __future__ import annotations

import numpy as np
import torch

from sdeval.errors import SdevalError

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


def _coverage(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> float:
    inside = [(_pairwise_distances(chunk, centres) <= radii).any(dim=1) for chunk in queries.split(_CHUNK)]
    return float(torch.cat(inside).double().mean())


def precision_recall(generated: np.ndarray, real: np.ndarray, k: int = 3) -> tuple[float, float]:
    """(precision, recall) of generated features against real features."""
    if min(len(generated), len(real)) <= k:
        raise SdevalError(
            f"precision/recall with k={k} needs more than {k} images per set, got {len(generated)} and {len(real)}"
        )
    gen = torch.from_numpy(np.asarray(generated, np.float64))
    ref = torch.from_numpy(np.asarray(real, np.float64))
    precision = _coverage(gen, ref, knn_radii(ref, k))
    recall = _coverage(ref, gen, knn_radii(gen, k))
    return precision, recall
