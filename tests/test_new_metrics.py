"""The metrics the peer tools have (FD_CLIP, FID∞, Vendi, density and coverage): each against an independent
computation (scipy's sqrtm in float64, stats' fid_against_n and numpy's polyfit, the `vendi-score` and `prdc`
packages), and each through every stage by its
registration alone: `sdeval metrics`, the table, --ci, shards and merge, the Evaluator, the report and the gate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_prompted_images
from PIL import Image

from sdeval.cli import main
from sdeval.metrics.corpus import ReferenceRoot
from sdeval.metrics.density_coverage import CoverageSide, DensitySide, density_coverage
from sdeval.metrics.fd_clip import fd_clip
from sdeval.metrics.fid_inf import FidInfSide, draws, fid_inf
from sdeval.metrics.vendi import VendiSide, per_prompt, vendi_score
from sdeval.score.demo import make_image_set
from sdeval.stats import fid_against_n

PROMPTS = ["a red cube", "a cat", "a blue sphere", "a dog", "a green cone", "a bird"]
SEEDS = 3
METRICS = "fd_clip,fid_inf,vendi,dc"
KEYS = ("fd_clip", "fid_inf", "vendi", "vendi_all", "density", "coverage")
#: The metrics without Inception: the fast twins of the shard and Evaluator checks run these (the slow ones all).
CLIP_ONLY = ("fd_clip", "vendi")
LABELS = ("FD_CLIP", "FID∞", "Vendi (per prompt)", "Vendi (all images)", "Density (k=5)", "Coverage (k=5)")
CLIP_KEYS = ("fd_clip", "vendi", "vendi_all")


def _run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def _frechet(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook Fréchet distance in float64 with scipy's sqrtm (the peers' route)."""
    from scipy import linalg

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(s1 @ s2).real
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * root))


def _unit(rng: np.random.Generator, n: int, d: int, shift: float = 0.0) -> np.ndarray:
    x = rng.normal(size=(n, d)) + shift
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


# -- each against an independent computation -------------------------------------------------------------------


@pytest.mark.parametrize("n", [300, 20])  # the d x d route, and the n x n route of a set smaller than d
def test_fd_clip_equals_scipy_in_float64(n):
    rng = np.random.default_rng(n)
    x, ref = _unit(rng, n, 24, 0.3), _unit(rng, 250, 24)
    assert fd_clip(x, ref) == pytest.approx(_frechet(x, ref), rel=1e-7)


def test_fid_inf_is_fid_against_n_with_its_residual():
    """The key is the stats' FID∞ from the same seeded draws; its residual sd is numpy's polyfit's over every draw."""
    rng = np.random.default_rng(0)
    x, ref = rng.normal(size=(200, 6)) + 0.2, rng.normal(size=(300, 6))
    root = ReferenceRoot.from_features(ref)
    fitted, points = fid_inf(x, root, seed=7)
    curve = fid_against_n(x, ref, seed=7)
    assert fitted.value == curve.fid_inf and fitted.slope == pytest.approx(curve.slope, rel=1e-12)
    assert [(p["n"], p["mean"]) for p in points] == [(n, mean) for n, mean, _ in curve.points]
    rows = draws(len(x), seed=7)
    inv = np.array([1.0 / len(r) for r in rows])
    values = np.array([_frechet(x[r], ref) for r in rows])
    slope, intercept = np.polyfit(inv, values, 1)
    residual = values - (intercept + slope * inv)
    assert fitted.value == pytest.approx(intercept, rel=1e-6)
    assert fitted.residual_sd == pytest.approx(np.sqrt(residual @ residual / (len(values) - 2)), rel=1e-6)


def test_vendi_equals_the_vendi_score_package():
    from vendi_score import vendi

    rng = np.random.default_rng(1)
    for n, d in ((40, 16), (10, 64)):  # the d x d route, and the n x n route
        x = rng.normal(size=(n, d))
        assert vendi_score(x) == pytest.approx(vendi.score_dual(x), rel=1e-9)
        assert vendi_score(x) == pytest.approx(vendi.score_X(x), rel=1e-9)
    same = np.tile(rng.normal(size=(1, 8)), (5, 1))
    assert vendi_score(same) == pytest.approx(1.0, rel=1e-9)  # one image, five times
    assert vendi_score(np.eye(6)) == pytest.approx(6.0, rel=1e-9)  # six orthogonal images
    prompt_of = np.repeat(np.arange(4), 5)
    x = rng.normal(size=(20, 8))
    got = per_prompt(x, prompt_of)
    assert [s.score for s in got] == pytest.approx([vendi.score_dual(x[prompt_of == p]) for p in range(4)], rel=1e-9)
    side = VendiSide(x, prompt_of, 4)
    assert side.value() == pytest.approx(vendi.score_dual(x), rel=1e-9)
    assert side.leave_outs[2] == pytest.approx(vendi.score_dual(x[prompt_of != 2]), rel=1e-9)


@pytest.mark.parametrize("d", [8, 64])
def test_density_and_coverage_equal_prdc(d):
    import prdc

    rng = np.random.default_rng(d)
    x = rng.normal(size=(300, d)).astype(np.float32)
    ref = (rng.normal(size=(250, d)) * 1.1 + 0.1).astype(np.float32)
    expected = prdc.compute_prdc(ref.astype(np.float64), x.astype(np.float64), nearest_k=5)
    density, coverage = density_coverage(x, ref)
    assert density == pytest.approx(expected["density"], rel=1e-12) and coverage == expected["coverage"]
    assert density_coverage(x, ref, k=3) == pytest.approx(
        [
            prdc.compute_prdc(ref.astype(np.float64), x.astype(np.float64), nearest_k=3)[m]
            for m in ("density", "coverage")
        ]
    )  # k is configurable


def test_density_and_coverage_leave_outs_are_the_metric_of_the_other_rows():
    rng = np.random.default_rng(4)
    x, ref = rng.normal(size=(120, 6)), rng.normal(size=(60, 6)) * 2.5  # real balls far from any row: coverage below 1
    blocks = rng.permutation(np.arange(120) % 6)
    density, coverage = DensitySide(x, ref, blocks, 6), CoverageSide(x, ref, blocks, 6)
    assert (density.value(), coverage.value()) == density_coverage(x, ref)
    for j in range(6):
        assert (density.leave_outs[j], coverage.leave_outs[j]) == pytest.approx(density_coverage(x[blocks != j], ref))
    assert 0 < coverage.value() < 1


def test_fid_inf_side_of_a_small_set_drops_the_draws_a_block_empties():
    rng = np.random.default_rng(3)
    x, ref = rng.normal(size=(12, 4)), rng.normal(size=(30, 4))
    blocks = np.arange(12) % 6
    side = FidInfSide(x, ref, blocks, 6, seed=1)
    assert np.isfinite(side.leave_outs).all() and np.isfinite(side.value())


# -- through every stage, by the registration alone ------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """18 images (6 prompts x 3 seeds) in a manifest, and a 16-image reference."""
    root = tmp_path_factory.mktemp("peers")
    write_prompted_images(root / "images", PROMPTS, SEEDS, seed=5, size=40)
    make_image_set(root / "ref", 16, seed=6, size=40, style="spots")
    return root


@pytest.fixture(scope="module")
def models(inception_weights, tiny_name, tiny_clip_weights) -> dict:
    clip = tiny_clip_weights[0]
    return {"inception_weights": inception_weights, "clip_model": tiny_name, "clip_pretrained": clip,
            "cmmd_model": tiny_name, "cmmd_pretrained": clip, "no_cache": True, "workers": 0}  # fmt: skip


def _flags(models: dict) -> list[str]:
    out: list[str] = []
    for key, value in models.items():
        out += [f"--{key.replace('_', '-')}"] if value is True else [f"--{key.replace('_', '-')}", str(value)]
    return out


@pytest.fixture(scope="module")
def reference(folder, models) -> Path:
    out = folder / "ref.npz"
    keep = ["--inception-weights", "--cmmd-model", "--cmmd-pretrained", "--no-cache", "--workers"]
    flags = [f for i, f in enumerate(_flags(models)) if f in keep or (i and _flags(models)[i - 1] in keep)]
    built = _run("reference", "build", folder / "ref", "-o", out, *flags)
    assert built.exit_code == 0, built.output
    return out


def _score(folder: Path, reference: Path, models: dict, out: Path, *extra: object, metrics: str = METRICS):
    manifest = folder / "images" / "manifest.jsonl"
    return _run("score", folder / "images", "--metrics", metrics, "-r", reference, "--prompts", manifest,
                *_flags(models), "--batch-size", 1, "-o", out, *extra)  # fmt: skip


@pytest.fixture(scope="module")
def whole(folder, reference, models) -> dict:
    out = folder / "whole.json"
    result = _score(folder, reference, models, out, "--ci")
    assert result.exit_code == 0, result.output
    return {"doc": json.loads(out.read_text()), "output": result.output, "path": out}


def test_metrics_lists_them():
    listed = _run("metrics", "--json")
    keys = {r["key"]: r for spec in json.loads(listed.output) for r in spec["results"]}
    assert {k: (keys[k]["direction"], keys[k]["interval"]) for k in KEYS} == {
        "fd_clip": ("lower", "jackknife over prompt blocks"),
        "fid_inf": ("lower", "jackknife over prompt blocks"),
        "vendi": ("higher", "bootstrap over prompts"),
        "vendi_all": ("higher", "jackknife over prompt blocks"),
        "density": ("higher", "jackknife over prompt blocks"),
        "coverage": ("higher", "jackknife over prompt blocks"),
    }


def test_score_values_intervals_and_table(whole, folder):
    cell = whole["doc"]["cells"][0]
    metrics = cell["metrics"]
    from sdeval.reference.files import load_reference

    with np.load(whole["path"].with_name("whole.state.npz")) as state:
        mine, theirs, pool = state["cmmd_image"], state["reference_cmmd_image"], state["pool"]
        ref_pool, clip = state["reference_pool"], state["clip_image"]
    assert load_reference(folder / "ref.npz") is not None
    assert metrics["fd_clip"]["value"] == pytest.approx(_frechet(mine, theirs), rel=1e-6)
    assert metrics["fid_inf"]["value"] == pytest.approx(fid_against_n(pool, ref_pool, seed=2020).fid_inf, rel=1e-9)
    assert metrics["fid_inf"]["residual_sd"] > 0 and len(metrics["fid_inf"]["points"]) >= 2
    from vendi_score import vendi

    prompt_of = np.array([PROMPTS.index(row["prompt"]) for row in cell["per_image"]])
    expected = np.mean([vendi.score_dual(clip[prompt_of == p].astype(np.float64)) for p in range(len(PROMPTS))])
    assert metrics["vendi"]["value"] == pytest.approx(expected, rel=1e-9)
    assert metrics["vendi"]["n_prompts"] == len(PROMPTS)
    assert metrics["vendi_all"]["value"] == pytest.approx(vendi.score_dual(clip.astype(np.float64)), rel=1e-9)
    density, coverage = density_coverage(pool, ref_pool)
    assert metrics["density"]["value"] == density and metrics["coverage"]["value"] == coverage
    for key in KEYS:  # --ci: each with its declared method
        interval = metrics[key]["interval"]
        assert interval["low"] <= metrics[key]["value"] <= interval["high"] or key == "fid_inf", key
    assert "bootstrap" in metrics["vendi"]["interval"]["method"]
    assert "jackknife" in metrics["vendi_all"]["interval"]["method"]
    for label in LABELS:
        assert label in whole["output"], label
    assert cell["protocol"]["fid_inf"]["repeats"] == 5 and cell["protocol"]["vendi"]["q"] == 1


def _shards_merge_into_the_whole(whole, folder, reference, models, tmp_path, metrics: tuple[str, ...]):
    """Two `--shard` parts merged (in the other order) give the whole run's values and intervals."""
    for index in (0, 1):
        out = tmp_path / f"p{index}.json"
        part = _score(folder, reference, models, out, "--shard", f"{index}/2", metrics=",".join(metrics))
        assert part.exit_code == 0, part.output
    merged = _run("merge", tmp_path / "p1.json", tmp_path / "p0.json", "-o", tmp_path / "merged.json", "--ci")
    assert merged.exit_code == 0, merged.output
    got = json.loads((tmp_path / "merged.json").read_text())["cells"][0]["metrics"]
    want = whole["doc"]["cells"][0]["metrics"]
    assert set(got) == {key for key in KEYS if key in got} and len(got) == (len(KEYS) if "fid_inf" in metrics else 3)
    for key in got:
        assert got[key]["value"] == pytest.approx(want[key]["value"], rel=1e-9), key
        assert got[key]["interval"]["low"] == pytest.approx(want[key]["interval"]["low"], rel=1e-6), key


def test_shards_merge_into_the_whole(whole, folder, reference, models, tmp_path):
    _shards_merge_into_the_whole(whole, folder, reference, models, tmp_path, CLIP_ONLY)


@pytest.mark.slow  # about 30 s: two more Inception passes; the test above is its fast twin (FID∞ merges as FID does)
def test_shards_merge_into_the_whole_with_fid_inf(whole, folder, reference, models, tmp_path):
    _shards_merge_into_the_whole(whole, folder, reference, models, tmp_path, tuple(METRICS.split(",")))


def _evaluator_gives_the_same_numbers(whole, folder, reference, models, metrics: tuple[str, ...]):
    from sdeval import Evaluator

    evaluator = Evaluator(metrics=list(metrics), reference=reference, **models)
    rows = [json.loads(line) for line in (folder / "images" / "manifest.jsonl").read_text().splitlines()]
    for start in range(0, len(rows), 5):
        batch = rows[start : start + 5]
        images = [np.asarray(Image.open(folder / "images" / r["file"]).convert("RGB")) for r in batch]
        evaluator.update(images, [r["prompt"] for r in batch], ids=[f"{r['id']}/seed{r['seed']}" for r in batch])
    got = evaluator.compute()["cells"][0]["metrics"]
    want = whole["doc"]["cells"][0]["metrics"]
    for key in got:
        assert got[key]["value"] == pytest.approx(want[key]["value"], rel=1e-5), key
    return got


def test_the_evaluator_gives_the_same_numbers(whole, folder, reference, models):
    assert set(_evaluator_gives_the_same_numbers(whole, folder, reference, models, CLIP_ONLY)) == set(CLIP_KEYS)


@pytest.mark.slow  # about 20 s: another Inception pass; the test above is its fast twin
def test_the_evaluator_gives_the_same_fid_inf(whole, folder, reference, models):
    assert set(_evaluator_gives_the_same_numbers(whole, folder, reference, models, tuple(METRICS.split(",")))) == set(
        KEYS
    )


def test_report_and_gate_name_them(whole, tmp_path):
    report = _run("report", whole["path"], "-o", tmp_path / "report", "--quiet")
    assert report.exit_code == 0, report.output
    summary = (tmp_path / "report" / "summary.md").read_text()
    for label in LABELS:
        assert label in summary, label
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {metric: fd_clip, max: 1000}\n  - {metric: fid_inf, max: 100000}\n"
                     "  - {metric: vendi, min: 1}\n  - {metric: vendi_all, min: 1}\n  - {metric: density, min: 0}\n"
                     "  - {metric: coverage, min: 0}\n")  # fmt: skip
    gate = _run("gate", whole["path"], "--rules", rules, "--json", tmp_path / "gate.json")
    assert gate.exit_code == 0, gate.output
    verdicts = json.loads((tmp_path / "gate.json").read_text())
    assert all(key in json.dumps(verdicts) for key in KEYS)
