from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

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
import yaml  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from sdeval.cli import main  # noqa: E402
from sdeval.score import FeatureOptions, ScoreOptions, score  # noqa: E402
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


@pytest.fixture(scope="session")
def image_sets_cache(tmp_path_factory, inception_weights, image_sets) -> dict[str, Any]:
    """A feature cache holding both image sets' Inception features, filled once by a cold `score` (default metrics,
    KID subsets of 20) whose results document it keeps: {"folder": ..., "cold": ...}. A test whose property does not
    need a cold cache starts from a copy of it (warm_copy), which saves extracting 80 images again."""
    folder = tmp_path_factory.mktemp("image-sets-cache")
    features = FeatureOptions(inception_weights=inception_weights, cache_dir=str(folder), workers=0, progress=False)
    cold = score(ScoreOptions(image_sets["gen"], image_sets["ref"], kid_subset_size=20, features=features))
    return {"folder": folder, "cold": cold}


def warm_copy(image_sets_cache: dict[str, Any], to: Path) -> Path:
    """A private copy of the image sets' feature cache at `to` (tests may write to it)."""
    shutil.copytree(image_sets_cache["folder"], to)
    return to


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


def write_prompted_images(folder: Path, prompts: list[str], seeds: int, seed: int, size: int) -> Path:
    """len(prompts) x `seeds` demo images in `folder` with a manifest.jsonl giving each its prompt, prompt id
    (`p<index>`) and seed (image i has prompt i % len(prompts)); returns the manifest's path."""
    paths = make_image_set(folder, len(prompts) * seeds, seed=seed, size=size)
    rows = [{"file": p.name, "prompt": prompts[i % len(prompts)], "id": f"p{i % len(prompts)}",
             "seed": i // len(prompts)} for i, p in enumerate(paths)]  # fmt: skip
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return manifest


# A run of the calibration world (the `shapes` checkpoints), generated and judged as a user would: the shared
# fixture of the gate, calibration and report tests.
SHAPES_CHECKPOINTS = [
    {"name": "clean", "path": "shapes"},
    {"name": "colours", "path": "shapes", "options": {"mistakes": {"colors": 0.5}}},
]


def write_shapes_run(folder: Path, suite: Path | str | list[dict[str, Any]], **config: Any) -> Path:
    """A `sdeval generate` config, `folder/config.yaml`: the `clean` and `colours` (colour mistakes at 0.5) shapes
    checkpoints, 1 seed per prompt, 128 px on the CPU into `folder/out`; `config` replaces any of these keys.
    `suite` is a suite file, or its rows (written to `folder/prompts.jsonl`)."""
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(suite, list):
        (folder / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in suite), encoding="utf-8")
        suite = "prompts.jsonl"
    data = {
        "checkpoints": SHAPES_CHECKPOINTS,
        "suite": str(suite),
        "seeds_per_prompt": 1,
        "settings": {"width": 128, "height": 128},
        "batch_size": 4,
        "output_dir": "out",
        "device": "cpu",
        **config,
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def generate_and_judge(config: Path, results: Path, metrics: str = "adherence", ci: bool = False) -> Path:
    """`sdeval generate CONFIG`, then `sdeval score` of the images it made, with the shapes judge (and with `ci`,
    intervals), into `results`."""
    generated = CliRunner().invoke(main, ["generate", str(config), "--quiet"])
    assert generated.exit_code == 0, generated.output
    out = config.parent / yaml.safe_load(config.read_text(encoding="utf-8"))["output_dir"]
    args = ["score", str(out), "--metrics", metrics, "--judge", "shapes", *(["--ci"] if ci else []), "-o", str(results)]
    scored = CliRunner().invoke(main, args)
    assert scored.exit_code == 0, scored.output
    return results
