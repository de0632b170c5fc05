"""`sdeval demo`: the whole scoring flow offline, on the CPU, on data and weights it makes itself.

The Inception weights are random (seeded), so the numbers show that the pipeline runs, not how good
any image is. Real runs use the standard weights or `--inception-weights`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sdeval.features.options import FeatureOptions
from sdeval.options.score import ScoreOptions
from sdeval.results.document import write_outputs


def make_image_set(folder: Path, n: int, seed: int, size: int = 64, style: str = "blobs") -> list[Path]:
    """Write `n` synthetic RGB PNGs of smooth coloured blobs; `style` changes their statistics."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    paths = []
    for i in range(n):
        image = np.zeros((size, size, 3))
        for _ in range(4 if style == "blobs" else 8):
            cx, cy, r = rng.random(3) * [1, 1, 0.4 if style == "blobs" else 0.15]
            color = rng.random(3) * (1.0 if style == "blobs" else 0.6)
            mask = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (r + 0.05) ** 2))
            image += mask[:, :, None] * color
        image += rng.normal(0, 0.03, image.shape)
        path = folder / f"img_{i:03d}.png"
        Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def run_demo(out: Path, n: int = 48, workers: int = 1) -> dict[str, Any]:
    """Prepare `out` (images, reference, random weights), score, and write `out/results.json`."""
    from sdeval.features.random_weights import save_random_inception_weights  # torch-fidelity: when the demo runs
    from sdeval.score.run import score_run  # torch: when the demo runs, not when a test borrows make_image_set

    weights = out / "inception-random-weights.pth"
    if not weights.exists():
        save_random_inception_weights(weights, seed=0)
    if not (out / "generated").exists():
        make_image_set(out / "generated", n, seed=1, size=128, style="blobs")
        make_image_set(out / "reference", n, seed=2, size=128, style="spots")
    options = ScoreOptions(
        images=str(out / "generated"),
        reference=str(out / "reference"),
        kid_subset_size=min(n // 2, 1000),  # smaller than the sets, so subsets differ
        features=FeatureOptions(inception_weights=str(weights), cache_dir=str(out / "cache"), workers=workers),
    )
    run = score_run(options)
    assert run is not None  # None only on a torchrun's other ranks; the demo is one process
    write_outputs(out / "results.json", run)
    return run.document
