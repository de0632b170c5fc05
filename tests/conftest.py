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


import torch  # noqa: E402

from sdeval.demo import make_image_set  # noqa: E402

# Fixed thread count: CPU results can change in the last bits with it.
torch.set_num_threads(2)


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
