"""Scoring a generation run per (checkpoint, setting) cell, --group-by, the metric registry, and the state file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from generate_fixtures import sdeval_cache_fixture, write_config  # noqa: F401  (registers sdeval_cache)

import sdeval.features.extract as extract_module
from sdeval.cli import main
from sdeval.metrics import registry
from sdeval.metrics.registry import CellData, Direction, MetricOutput, MetricSkip, MetricSpec, Need, ResultKey
from sdeval.results.state import load_state
from sdeval.score.demo import make_image_set

PROMPTS = [{"id": f"p{i}", "prompt": text} for i, text in enumerate(["a red cube", "a cat", "a blue sphere", "a dog"])]


def _run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory, sdeval_cache) -> Path:
    """2 checkpoints x 2 settings x 4 prompts x 2 seeds = 32 images of 32x32 from tiny-random (two seeds: the
    fewest diversity takes)."""
    folder = tmp_path_factory.mktemp("grid")
    settings = {"guidance_scale": [3.0, 7.5], "num_inference_steps": 2, "width": 32, "height": 32, "scheduler": "ddim"}
    checkpoints = [{"name": "alpha", "path": "tiny-random"}, {"name": "beta", "path": "tiny-random"}]
    path = write_config(folder, prompts=PROMPTS, settings=settings, checkpoints=checkpoints, seeds_per_prompt=2)
    result = _run("generate", path, "--quiet")
    assert result.exit_code == 0, result.output
    return folder / "out"


@pytest.fixture(scope="module")
def reference_file(tmp_path_factory, inception_weights, tiny_name, tiny_clip_weights) -> Path:
    folder = tmp_path_factory.mktemp("ref")
    make_image_set(folder / "images", 16, seed=9, size=32)
    out = folder / "ref.npz"
    result = _run("reference", "build", folder / "images", "-o", out, "--inception-weights", inception_weights,
                  "--cmmd-model", tiny_name, "--cmmd-pretrained", tiny_clip_weights[0], "--no-cache",
                  "--workers", 0)  # fmt: skip
    assert result.exit_code == 0, result.output
    return out


def _score_args(images: Path, reference: Path, weights: str, tiny_name: str, clip_weights: str) -> list[object]:
    return ["score", images, "-r", reference, "--metrics", "fid,kid,pr,clip,rprecision,diversity,cmmd",
            "--kid-subset-size", 5, "--inception-weights", weights, "--clip-model", tiny_name,
            "--clip-pretrained", clip_weights, "--cmmd-model", tiny_name, "--cmmd-pretrained", clip_weights,
            "--no-cache", "--workers", 0, "--batch-size", 1]  # fmt: skip
    # Batch size 1: a float32 network's output for an image then does not depend on which images share its
    # batch, so a cell scored inside the run and alone see bit-identical features.


def test_a_generation_run_is_scored_per_cell_in_one_decode_pass_and_each_cell_equals_its_folder_alone(
    tmp_path, grid_run, reference_file, inception_weights, tiny_name, tiny_clip_weights, monkeypatch
):
    decoded: list[int] = []
    real_decode = extract_module.decode_bytes

    def counting_decode(data, *args, **kwargs):
        decoded.append(len(data))
        return real_decode(data, *args, **kwargs)

    monkeypatch.setattr(extract_module, "decode_bytes", counting_decode)
    args = _score_args(grid_run, reference_file, inception_weights, tiny_name, tiny_clip_weights[0])
    result = _run(*args, "-o", tmp_path / "run.json")
    assert result.exit_code == 0, result.output
    assert len(decoded) == 32  # every image once, for Inception and both CLIP uses together
    doc = json.loads((tmp_path / "run.json").read_text())
    assert doc["source"]["kind"] == "generation_run" and doc["source"]["run"]["config_sha256"]
    assert doc["prompts"]["source_counts"] == {"manifest": 32}  # the run's own manifest, no --prompts
    cells = {cell["id"]: cell for cell in doc["cells"]}
    assert sorted(cells) == [
        "alpha/g3-s2-ddim-32x32-fp32", "alpha/g7.5-s2-ddim-32x32-fp32",
        "beta/g3-s2-ddim-32x32-fp32", "beta/g7.5-s2-ddim-32x32-fp32",
    ]  # fmt: skip
    for cell_id, cell in cells.items():
        checkpoint, setting = cell_id.split("/")
        assert cell["checkpoint"]["name"] == checkpoint and cell["checkpoint"]["sha256"]
        assert cell["setting"]["id"] == setting and cell["setting"]["values"]["guidance_scale"] in (3.0, 7.5)
        assert cell["n_images"] == 8
        assert sorted(row["item"] for row in cell["per_image"]) == sorted(
            f"p{p}#{s}" for p in range(4) for s in range(2)
        )
        alone = _run(*_score_args(grid_run / checkpoint / setting, reference_file, inception_weights, tiny_name,
                                  tiny_clip_weights[0]), "-o", tmp_path / "alone.json")  # fmt: skip
        assert alone.exit_code == 0, alone.output
        (single,) = json.loads((tmp_path / "alone.json").read_text())["cells"]
        assert single["metrics"]["fid"]["value"] == pytest.approx(cell["metrics"]["fid"]["value"], rel=1e-9)
        for key in ("kid", "precision", "recall", "clip", "rprecision", "diversity", "cmmd"):
            assert single["metrics"][key]["value"] == pytest.approx(cell["metrics"][key]["value"], rel=1e-9), key
        mine = {row["item"]: row for row in cell["per_image"]}
        for row in single["per_image"]:
            assert row["clip_score"] == mine[row["item"]]["clip_score"]  # identical, item keys agree
            assert row["rprecision_hit"] == mine[row["item"]]["rprecision_hit"]

    meta, state = load_state(tmp_path / "run.state.npz")
    assert meta["cells"] == [cell["id"] for cell in doc["cells"]] and len(state["pool"]) == 32
    rows = [row for cell in doc["cells"] for row in cell["per_image"]]
    assert state["item"].tolist() == [row["item"] for row in rows]
    assert state["sha256"].tolist() == [row["sha256"] for row in rows]
    assert state["clip_image"].shape == (32, 32) and len(state["reference_pool"]) == 16


def test_group_by_folder_splits_a_plain_folder(tmp_path, inception_weights):
    for name, seed in (("left", 1), ("right", 2)):
        make_image_set(tmp_path / "images" / name, 8, seed=seed, size=32)
    out = tmp_path / "r.json"
    result = _run("score", tmp_path / "images", "--group-by", "folder", "-r", tmp_path / "images", "--metrics",
                  "kid", "--kid-subset-size", 4, "--inception-weights", inception_weights, "--no-cache",
                  "--workers", 0, "-o", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert [(c["id"], c["n_images"], c["group"]) for c in doc["cells"]] == [
        ("left", 8, {"by": "folder", "value": "left"}),
        ("right", 8, {"by": "folder", "value": "right"}),
    ]
    assert "cell left" in result.output and "cell right" in result.output


def test_without_out_no_state_is_kept_and_the_table_says_so(tmp_path, inception_weights):
    make_image_set(tmp_path / "images", 6, seed=1, size=32)
    result = _run("score", tmp_path / "images", "-r", tmp_path / "images", "--metrics", "pr",
                  "--inception-weights", inception_weights, "--no-cache", "--workers", 0)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "no feature state was kept" in result.output


# -- a metric registered here, and nowhere else ---------------------------------------------------------------


def _mean_pool_norm(cell: CellData) -> MetricOutput:
    norms = np.linalg.norm(cell.pool, axis=1)
    return MetricOutput({"pool_norm": {"value": float(norms.mean()), "n": cell.n}}, per_image={"norm": norms.tolist()})


@pytest.fixture
def pool_norm_metric():
    spec = registry.register(MetricSpec(
        name="poolnorm",
        description="Mean L2 norm of the Inception pool features (a test metric).",
        results=(ResultKey("pool_norm", "Pool norm", Direction.HIGHER, (0.0, None)),),
        needs=frozenset({Need.INCEPTION_POOL}),
        compute=_mean_pool_norm,
        per_image=("norm",),
    ))  # fmt: skip
    yield spec
    registry.unregister(spec.name)


def test_a_metric_registered_in_a_test_module_is_validated_computed_written_listed_and_shown(
    tmp_path, inception_weights, pool_norm_metric
):
    make_image_set(tmp_path / "images", 6, seed=1, size=32)
    listed = _run("metrics", "--json")
    assert "poolnorm" in [m["name"] for m in json.loads(listed.output)]
    assert "Pool norm, higher is better" in _run("metrics").output
    assert "poolnorm" in _run("score", "--help").output
    out = tmp_path / "r.json"
    result = _run("score", tmp_path / "images", "--metrics", "poolnorm", "--inception-weights", inception_weights,
                  "--no-cache", "--workers", 0, "-o", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Pool norm" in result.output
    (cell,) = json.loads(out.read_text())["cells"]
    norms = [row["norm"] for row in cell["per_image"]]
    assert cell["metrics"]["pool_norm"]["value"] == pytest.approx(np.mean(norms)) and len(norms) == 6
    unknown = _run("score", tmp_path / "images", "--metrics", "poolnorms", "--no-cache")
    assert unknown.exit_code == 2 and "unknown metric(s) poolnorms" in unknown.output


def test_a_metric_that_cannot_be_computed_is_a_listed_skip_and_a_bug_is_an_internal_error(tmp_path, inception_weights):
    def degenerate(cell: CellData) -> MetricOutput:
        raise MetricSkip("embeddings contain NaN")

    def buggy(cell: CellData) -> MetricOutput:
        raise ValueError("index out of range")  # a bug: it must not pass for a skipped metric

    make_image_set(tmp_path / "images", 4, seed=1, size=32)
    results = {}
    for name, compute in (("degenerate", degenerate), ("buggy", buggy)):
        registry.register(MetricSpec(name, "fails", (ResultKey(name, name, Direction.HIGHER),),
                                     frozenset({Need.INCEPTION_POOL}), compute))  # fmt: skip
        try:
            out = tmp_path / f"{name}.json"
            results[name] = (_run("score", tmp_path / "images", "--metrics", name, "--inception-weights",
                                  inception_weights, "--no-cache", "--workers", 0, "-o", out), out)  # fmt: skip
        finally:
            registry.unregister(name)
    skipped, out = results["degenerate"]
    assert skipped.exit_code == 3 and "Traceback" not in skipped.output
    assert json.loads(out.read_text())["cells"][0]["metrics"]["degenerate"] == {
        "value": None,
        "skipped": "embeddings contain NaN",
    }
    bug, out = results["buggy"]
    assert bug.exit_code == 70 and "internal error: ValueError: index out of range" in bug.output
    assert not out.exists()


def test_every_builtin_metric_declares_direction_and_needs():
    specs = {spec.name: spec for spec in registry.metrics()}
    assert set(specs) >= {"fid", "kid", "is", "pr", "clip", "rprecision", "cmmd", "diversity"}
    assert registry.result_key("fid").direction is Direction.LOWER
    assert registry.result_key("precision").direction is Direction.HIGHER
    assert [key.key for key in specs["pr"].results] == ["precision", "recall"]
    assert registry.default_names() == ("fid", "kid", "is", "pr")
    assert specs["clip"].per_image == ("clip_score", "clip_cosine")
