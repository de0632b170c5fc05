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

from sdeval.score.demo import make_image_set  # noqa: E402

# Fixed thread count: CPU results can change in the last bits with it.
torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _temporary_files_in_tmp_path(tmp_path, monkeypatch) -> None:
    """Crash reports (exit 70 writes one to the temporary folder) and other temporary files stay in the test's
    own folder instead of piling up in the machine's."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


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


# A tiny open_clip architecture registered under a name, so code that loads CLIP models by name
# (ClipEmbedder.load, the CLI's --clip-model) can build it offline; weights come from a local file.
TINY_CLIP = "sdeval-test-tiny-clip"
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="session")
def tiny_name(tmp_path_factory) -> str:
    import json

    import open_clip

    folder = tmp_path_factory.mktemp("open_clip_configs")
    (folder / f"{TINY_CLIP}.json").write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(folder)
    return TINY_CLIP


@pytest.fixture(scope="session")
def tiny_clip_weights(tiny_name, tmp_path_factory) -> dict[int, str]:
    """Seeded random weights of the tiny model in local files: {seed: path}, same file name per seed."""
    import open_clip

    paths = {}
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = open_clip.create_model(tiny_name, pretrained=None)
        path = tmp_path_factory.mktemp(f"tiny-clip-{seed}") / "tiny-clip.pt"
        torch.save(model.state_dict(), path)
        paths[seed] = str(path)
    return paths
