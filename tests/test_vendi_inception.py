"""The Vendi score on Inception pool3 features (`--metrics vendi_inception`: keys `vendi_inception`,
`vendi_inception_all`), against the `vendi-score` package on the same features (the run's feature state), and through
its registration alone: `sdeval metrics`, the table, --ci and the gate."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from sdeval.cli import main
from sdeval.score.demo import make_image_set

PROMPTS = ["a red cube", "a cat", "a blue sphere", "a dog"]
SEEDS = 2
KEYS = ("vendi_inception", "vendi_inception_all")


def _run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def scored(tmp_path_factory, inception_weights) -> dict:
    """8 small images (4 prompts x 2 seeds) scored with --ci: one Inception pass."""
    root = tmp_path_factory.mktemp("vendi-inception")
    paths = make_image_set(root / "images", len(PROMPTS) * SEEDS, seed=11, size=32)
    rows = [{"file": p.name, "prompt": PROMPTS[i % len(PROMPTS)], "seed": i // len(PROMPTS)}
            for i, p in enumerate(paths)]  # fmt: skip
    manifest = root / "images" / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = root / "results.json"
    result = _run("score", root / "images", "--metrics", "vendi_inception", "--prompts", manifest,
                  "--inception-weights", inception_weights, "--no-cache", "--workers", 0,
                  "-o", out, "--ci")  # fmt: skip
    assert result.exit_code == 0, result.output
    return {"doc": json.loads(out.read_text()), "output": result.output, "path": out, "root": root}


def test_it_equals_the_vendi_score_package_on_the_same_features(scored):
    # The package's n x n form (score_X): its d x d form (score_dual) is a 2048 x 2048 eigvalsh per call.
    from vendi_score import vendi

    cell = scored["doc"]["cells"][0]
    metrics = cell["metrics"]
    with np.load(scored["path"].with_name("results.state.npz")) as state:
        pool = state["pool"].astype(np.float64)
    prompt_of = np.array([PROMPTS.index(row["prompt"]) for row in cell["per_image"]])
    expected = np.mean([vendi.score_X(pool[prompt_of == p]) for p in range(len(PROMPTS))])
    assert metrics["vendi_inception"]["value"] == pytest.approx(expected, rel=1e-9)
    assert metrics["vendi_inception"]["n_prompts"] == len(PROMPTS)
    assert metrics["vendi_inception_all"]["value"] == pytest.approx(vendi.score_X(pool), rel=1e-9)
    assert 1.0 < metrics["vendi_inception_all"]["value"] <= len(pool)
    rows = {row["prompt"]: row["vendi_inception_prompt"] for row in cell["per_image"]}
    assert np.mean(list(rows.values())) == pytest.approx(expected, rel=1e-12)  # what the bootstrap resamples
    assert cell["protocol"]["vendi_inception"]["kernel"] == "cosine of Inception pool3 features"
    assert "vendi" not in cell["protocol"] and "clip" not in cell["protocol"]  # no CLIP model was needed


def test_through_the_registry_alone(scored, tmp_path):
    metrics = scored["doc"]["cells"][0]["metrics"]
    assert "bootstrap" in metrics["vendi_inception"]["interval"]["method"]
    assert "jackknife" in metrics["vendi_inception_all"]["interval"]["method"]
    for key in KEYS:
        interval = metrics[key]["interval"]
        assert interval["low"] <= metrics[key]["value"] <= interval["high"], key
    for label in ("Vendi, Inception (per prompt)", "Vendi, Inception (all images)"):
        assert label in scored["output"], label
    listed = json.loads(_run("metrics", "--json").output)
    spec = next(s for s in listed if s["name"] == "vendi_inception")
    assert [r["key"] for r in spec["results"]] == list(KEYS) and "inception_pool" in spec["needs"]
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {metric: vendi_inception, min: 1}\n  - {metric: vendi_inception_all, min: 1}\n")
    gate = _run("gate", scored["path"], "--rules", rules, "--json", tmp_path / "gate.json")
    assert gate.exit_code == 0, gate.output
    assert all(key in (tmp_path / "gate.json").read_text() for key in KEYS)
