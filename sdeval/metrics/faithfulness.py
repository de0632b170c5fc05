"""Image-to-image faithfulness: how much of the init image an output keeps.

Two terms per (init image, output) pair, reported next to prompt adherence so that a strength sweep shows the
trade-off at each strength: the cosine of their CLIP image embeddings (semantic content) and the SSIM of their
luma edge maps (layout and structure; a recolouring that keeps brightness keeps it). Both are 1 for an
output identical to its init.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from torchmetrics.functional.image import structural_similarity_index_measure

from sdeval.metrics.embeddings import NotEnoughDataError, l2_normalize

DEFAULT_SIZE = 256

#: Gaussian smoothing (pixels at `size`) before the Sobel filter, the usual first step of edge detection: without
#: it pixel-level noise and fine texture dominate the edge map, and the term would measure grain, not layout.
EDGE_SMOOTHING_SIGMA = 1.0

# The largest Sobel gradient magnitude of an image in [0, 1]: each of the x and y kernels sums its positive
# weights (1 + 2 + 1) to 4. Dividing by this fixed bound rather than by each map's own maximum keeps the
# maps on one scale, so a single bright noise pixel cannot rescale a whole map, and lets SSIM use a fixed data
# range of 1.
_SOBEL_MAX = 4.0 * math.sqrt(2.0)


def _gray(image: np.ndarray, name: str, size: int) -> np.ndarray:
    """`image` (HxWx3 or HxW uint8) as float64 luma in [0, 1], resized to size x size."""
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8, got {array.dtype}")
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ValueError(f"{name} must be an HxWx3 (or HxW) image, got shape {array.shape}")
    if min(array.shape[:2]) < 1:
        raise ValueError(f"{name} is empty: shape {array.shape}")
    pil = Image.fromarray(np.ascontiguousarray(array)).convert("L")  # ITU-R 601-2 luma for RGB
    # Both images go onto one grid so their edge maps compare pixel for pixel whatever their sizes.
    resized = pil.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(resized, dtype=np.float64) / 255.0


def edge_map(image: np.ndarray, size: int = DEFAULT_SIZE, name: str = "image") -> np.ndarray:
    """Sobel gradient magnitude of the image's smoothed luma at size x size, scaled to [0, 1] by its largest value."""
    gray = ndimage.gaussian_filter(_gray(image, name, size), EDGE_SMOOTHING_SIGMA, mode="reflect")
    gx = ndimage.sobel(gray, axis=1, mode="reflect")
    gy = ndimage.sobel(gray, axis=0, mode="reflect")
    return np.hypot(gx, gy) / _SOBEL_MAX


def edge_ssim(init: np.ndarray, output: np.ndarray, size: int = DEFAULT_SIZE) -> float:
    """SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5) between the two images' edge maps (`edge_map`).

    Both images are HxWx3 uint8 (HxW grayscale also accepted), of any sizes. 1 for identical images; lower as
    the output's edges move away from the init's or noise adds edges the init does not have.
    """
    if size < 11:
        raise ValueError(f"size must be at least 11 (the SSIM window), got {size}")
    # float32: SSIM's convolutions are ~15x slower in float64 on CPU, and identical maps still give exactly 1.
    a = torch.from_numpy(edge_map(init, size, "init").astype(np.float32))[None, None]
    b = torch.from_numpy(edge_map(output, size, "output").astype(np.float32))[None, None]
    # Fixed data range: the maps are scaled to [0, 1] by a fixed bound, and a range taken from the data would
    # change SSIM's stabilising constants from pair to pair.
    value = structural_similarity_index_measure(b, a, data_range=1.0)
    # A tensor: torchmetrics returns a tuple only with return_full_image or return_contrast_sensitivity.
    return float(value)  # pyright: ignore[reportArgumentType]


def clip_image_cosine(a_embeddings: np.ndarray, b_embeddings: np.ndarray) -> np.ndarray:
    """Cosine of row i of `a_embeddings` with row i of `b_embeddings`, float64 [N] (embeddings at any scale)."""
    a = l2_normalize(a_embeddings, "a_embeddings")
    b = l2_normalize(b_embeddings, "b_embeddings")
    if a.shape != b.shape:
        raise ValueError(f"embedding shapes differ: {a.shape} and {b.shape}")
    # Clipped because rounding can put the cosine of a vector with itself a hair above 1.
    return np.clip(np.einsum("ij,ij->i", a, b), -1.0, 1.0)


def faithfulness_rows(
    init_images: Sequence[np.ndarray],
    outputs: Sequence[np.ndarray],
    init_embeddings: np.ndarray,
    output_embeddings: np.ndarray,
    size: int = DEFAULT_SIZE,
) -> list[dict[str, Any]]:
    """Per (init, output) pair, row-aligned: {"edge_ssim", "clip_cosine"}, both 1 for an unchanged image."""
    n = len(outputs)
    if len(init_images) != n:
        raise ValueError(f"got {len(init_images)} init images for {n} outputs")
    if n == 0:
        raise NotEnoughDataError("faithfulness needs at least one (init image, output) pair")
    cosines = clip_image_cosine(init_embeddings, output_embeddings)
    if len(cosines) != n:
        raise ValueError(f"got {len(cosines)} embedding rows for {n} image pairs")
    return [
        {"edge_ssim": edge_ssim(init, output, size), "clip_cosine": float(cosine)}
        for init, output, cosine in zip(init_images, outputs, cosines, strict=True)
    ]
