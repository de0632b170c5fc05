from __future__ import annotations

import os

# Tests never touch the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="run tests marked slow")
    parser.addoption("--run-gpu", action="store_true", help="run tests marked gpu (needs CUDA)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "slow" in item.keywords and not config.getoption("--run-slow"):
            item.add_marker(pytest.mark.skip(reason="slow: pass --run-slow"))
        if "gpu" in item.keywords and not config.getoption("--run-gpu"):
            item.add_marker(pytest.mark.skip(reason="gpu: pass --run-gpu"))


import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

# Fixed thread count: CPU results can change in the last bits with it.
torch.set_num_threads(2)


def make_image_set(folder, n: int, seed: int, size: int = 64, style: str = "blobs") -> list:
    """Write `n` synthetic RGB PNGs: smooth coloured blobs whose statistics depend on `style`."""
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


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory) -> str:
    from sdeval.features.random_weights import save_random_inception_weights

    path = tmp_path_factory.mktemp("weights") / "inception-random.pth"
    save_random_inception_weights(path, seed=0)
    return str(path)


@pytest.fixture(scope="session")
def image_sets(tmp_path_factory) -> dict:
    """Two small sets of 64x64 images with different statistics, and a copy of the first."""
    root = tmp_path_factory.mktemp("images")
    make_image_set(root / "gen", 40, seed=1, style="blobs")
    make_image_set(root / "ref", 40, seed=2, style="spots")
    return {"gen": str(root / "gen"), "ref": str(root / "ref")}
