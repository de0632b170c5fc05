"""The Python API: score_folder, score_images and the streaming Evaluator give the results of `sdeval score` on
the same images (the same document, the same numbers), accept arrays, PIL images and tensors, and sync across
DDP ranks exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import TINY_CLIP, TINY_CLIP_CONFIG
from PIL import Image

from sdeval import Evaluator, score_folder, score_images
from sdeval.api import as_rgb
from sdeval.cli import main
from sdeval.core.errors import SdevalError

PROMPTS = ["a red cube", "a cat", "a blue sphere", "a dog"]
METRICS = ["fid", "kid", "is", "pr", "clip", "rprecision", "cmmd", "diversity"]
# As few as every metric takes: Inception Score's 10 splits need 20 images, KID's subsets of 10 a reference of 10.
N_IMAGES, N_REFERENCE = 20, 10


def _images(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        base = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
        out.append(np.asarray(Image.fromarray(base).resize((40, 40), Image.BILINEAR)))
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """20 images with prompts written as PNGs (img_000.png, ... in the order they are given), and a reference."""
    root = tmp_path_factory.mktemp("api")
    images, reference = _images(N_IMAGES, 1), _images(N_REFERENCE, 2)
    (root / "images").mkdir()
    (root / "ref").mkdir()
    prompts = [PROMPTS[i % 4] for i in range(N_IMAGES)]
    rows = []
    for i, (rgb, prompt) in enumerate(zip(images, prompts, strict=True)):
        Image.fromarray(rgb).save(root / "images" / f"img_{i:03d}.png")
        rows.append({"file": f"img_{i:03d}.png", "prompt": prompt})
    (root / "images" / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for i, rgb in enumerate(reference):
        Image.fromarray(rgb).save(root / "ref" / f"r_{i:03d}.png")
    return {"root": root, "images": images, "prompts": prompts}


@pytest.fixture(scope="module")
def options(inception_weights, tiny_name, tiny_clip_weights) -> dict:
    clip = {"model": tiny_name, "pretrained": tiny_clip_weights[0]}
    return {"inception_weights": inception_weights, "clip_model": clip["model"], "clip_pretrained": clip["pretrained"],
            "cmmd_model": clip["model"], "cmmd_pretrained": clip["pretrained"], "kid_subset_size": 10,
            "no_cache": True, "workers": 0}  # fmt: skip


@pytest.fixture(scope="module")
def cli(data, options) -> dict:
    out = data["root"] / "cli.json"
    args = ["score", str(data["root"] / "images"), "--metrics", ",".join(METRICS), "-r", str(data["root"] / "ref")]
    args += ["--prompts", str(data["root"] / "images" / "manifest.jsonl"), "-o", str(out)]
    for key, value in options.items():
        args += [f"--{key.replace('_', '-')}"] if value is True else [f"--{key.replace('_', '-')}", str(value)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())


def _values(document: dict) -> dict[str, float | None]:
    return {key: entry["value"] for key, entry in document["cells"][0]["metrics"].items()}


def assert_same_numbers(a: dict, b: dict) -> None:
    va, vb = _values(a), _values(b)
    assert va.keys() == vb.keys()
    for key in va:
        assert vb[key] == pytest.approx(va[key], rel=1e-6, abs=1e-9), key


def test_score_folder_is_the_command(data, options, cli):
    manifest = data["root"] / "images" / "manifest.jsonl"
    found = score_folder(
        data["root"] / "images", reference=data["root"] / "ref", metrics=METRICS, prompts=str(manifest), **options
    )
    assert _values(found) == _values(cli)
    assert [r["item"] for r in found["cells"][0]["per_image"]] == [r["item"] for r in cli["cells"][0]["per_image"]]


def test_the_evaluator_streams_to_the_commands_numbers(data, options, cli):
    evaluator = Evaluator(metrics=METRICS, reference=data["root"] / "ref", **options)
    for start in range(0, N_IMAGES, 7):  # uneven batches
        evaluator.update(data["images"][start : start + 7], data["prompts"][start : start + 7])
    assert evaluator.n == N_IMAGES
    document = evaluator.compute()
    assert_same_numbers(cli, document)
    assert document["images"]["n_scored"] == N_IMAGES and document["prompts"]["source_counts"] == {"api": N_IMAGES}
    evaluator.reset()
    with pytest.raises(SdevalError, match="no image"):
        evaluator.compute()


def test_score_images_takes_arrays_pil_and_tensors(data, options, cli):
    rgbs, prompts = data["images"], data["prompts"]
    forms = [
        torch.from_numpy(rgbs[i].copy()).permute(2, 0, 1).float() / 255.0 if i % 3 == 0  # CHW float in [0, 1]
        else Image.fromarray(rgbs[i]) if i % 3 == 1
        else rgbs[i]
        for i in range(len(rgbs))
    ]  # fmt: skip
    document = score_images(forms, prompts, reference=data["root"] / "ref", metrics=METRICS, **options)
    assert_same_numbers(cli, document)


def test_in_memory_images_are_decoded_as_files_are():
    rgb = _images(1, 3)[0]
    assert np.array_equal(as_rgb(torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255.0), rgb)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    assert np.array_equal(as_rgb(rgba), rgb)
    assert np.array_equal(as_rgb(rgb[:, :, 0]), np.repeat(rgb[:, :, :1], 3, axis=2))
    for bad, message in (
        (np.full((4, 4, 3), np.nan, np.float32), "float image must hold values in"),
        (np.full((4, 4, 3), 2.0), "float image must hold values in"),
        (np.zeros((4, 4, 5), np.uint8), "must be HxW"),
        (np.zeros((4, 4, 3), np.int64), "must be uint8"),
    ):
        with pytest.raises(SdevalError, match=message):
            as_rgb(bad)


def test_the_evaluator_refuses_what_needs_pixels_kept(options):
    with pytest.raises(SdevalError, match="Evaluator cannot score adherence"):
        Evaluator(metrics=["adherence"], judge="shapes", suite="builtin:shapes")


DDP_SCRIPT = """
import json, sys
import numpy as np, open_clip, torch, torch.distributed as dist
from PIL import Image
open_clip.add_model_config(sys.argv[1])
dist.init_process_group("gloo")
torch.set_num_threads(1)  # two ranks on two cores: more threads would only contend
from sdeval import Evaluator
options, folder, out = json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
rank, world = dist.get_rank(), dist.get_world_size()
names = sorted(p for p in __import__("os").listdir(folder + "/images") if p.endswith(".png"))
mine = names[rank * len(names) // world:(rank + 1) * len(names) // world]  # rank-major: rank 0's images first
prompts = {r["file"]: r["prompt"] for r in map(json.loads, open(folder + "/images/manifest.jsonl"))}
evaluator = Evaluator(metrics=options.pop("metrics"), reference=folder + "/ref", **options)
for start in range(0, len(mine), 4):  # a short last batch
    batch = mine[start:start + 4]
    evaluator.update([np.asarray(Image.open(folder + "/images/" + n)) for n in batch], [prompts[n] for n in batch])
document = evaluator.compute()
json.dump(document, open(f"{out}.{rank}.json", "w"))
# How many reference images this rank extracted itself (a share of the folder, not all of it).
json.dump(evaluator.reference.reference.n, open(f"{out}.{rank}.reference.json", "w"))
dist.destroy_process_group()
"""


def test_ddp_ranks_compute_the_single_process_results(data, options, cli, tmp_path):
    """torchrun, 2 processes, gloo on CPU: each rank updates with its half; compute() on every rank equals the
    single-process numbers (the same images in rank order)."""
    configs = tmp_path / "open_clip_configs"
    configs.mkdir()
    (configs / f"{TINY_CLIP}.json").write_text(json.dumps(TINY_CLIP_CONFIG))
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    args = json.dumps({**options, "metrics": METRICS})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           str(configs), args, str(data["root"]), str(tmp_path / "out")]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"out.{r}.json").read_text()) for r in range(2)]
    assert _values(ranks[0]) == _values(ranks[1])  # every rank gets the same results
    assert_same_numbers(cli, ranks[0])
    assert ranks[0]["images"]["n_scored"] == N_IMAGES
    # Each rank extracted only its share of the reference folder; the shares were gathered exactly (the numbers
    # above equal the single process's).
    extracted = [json.loads((tmp_path / f"out.{r}.reference.json").read_text()) for r in range(2)]
    assert extracted == [N_REFERENCE // 2, N_REFERENCE - N_REFERENCE // 2]
