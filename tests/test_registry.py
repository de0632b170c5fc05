"""The metric registry is the one source of what a metric is: a metric registered here, and nowhere else, with an
interval method, a range and a detail line, is computed, listed, given intervals (`--ci`), shown in the table and
the report, gated and diffed; and intervals are cut to each metric's declared range."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sdeval.cli import main
from sdeval.metrics import registry
from sdeval.metrics.keys import known_names, lookup
from sdeval.metrics.registry import Bootstrap, CellData, Direction, MetricOutput, MetricSpec, Need, ResultKey
from sdeval.score.demo import make_image_set
from sdeval.stats import cell_intervals


def _run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def _brightness(cell: CellData) -> MetricOutput:
    """A per-image metric of the pool features, so it needs nothing but Inception."""
    values = (np.tanh(cell.pool.mean(axis=1) * 10.0) + 1.0) / 2.0  # in (0, 1)
    entry = {"value": float(values.mean()), "n": cell.n, "spread": float(values.std())}
    return MetricOutput({"glow": entry}, per_image={"glow_image": values.tolist()})


@pytest.fixture
def glow_metric():
    spec = registry.register(MetricSpec(
        name="glow",
        description="A test metric registered by this module alone.",
        results=(ResultKey("glow", "Glow index", Direction.HIGHER, (0.0, 1.0), Bootstrap("glow_image"),
                           detail="(spread {spread:.3g} over {n} images)"),),
        needs=frozenset({Need.INCEPTION_POOL}),
        compute=_brightness,
        per_image=("glow_image",),
    ))  # fmt: skip
    yield spec
    registry.unregister(spec.name)


def test_a_metric_registered_in_a_test_module_reaches_every_consumer(tmp_path: Path, inception_weights, glow_metric):
    make_image_set(tmp_path / "a", 24, seed=1, size=32)
    make_image_set(tmp_path / "b", 24, seed=2, size=32, style="spots")
    outs = {}
    for name in ("a", "b"):
        out = tmp_path / name / "results.json"
        result = _run("score", tmp_path / name, "--metrics", "glow", "--ci", "--inception-weights", inception_weights,
                      "--no-cache", "--workers", 0, "-o", out)  # fmt: skip
        assert result.exit_code == 0, result.output
        # The table: its label, value, interval and declared detail.
        assert "Glow index" in result.output and "(95%)" in result.output and "over 24 images" in result.output
        outs[name] = out
    entry = json.loads(outs["a"].read_text())["cells"][0]["metrics"]["glow"]
    assert entry["interval"]["method"].startswith("bootstrap over prompts")
    assert 0.0 <= entry["interval"]["low"] <= entry["value"] <= entry["interval"]["high"] <= 1.0

    listed = _run("metrics")
    assert "glow: Glow index, higher is better, range [0.0, 1.0], interval: bootstrap over prompts" in listed.output

    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  - {metric: glow, min: 0, require_interval: true}\n  - {metric: glow, max_decrease: 2}\n"
    )
    gate = _run("gate", outs["a"], "--rules", rules, "--baseline", outs["b"], "--json", tmp_path / "gate.json")
    assert gate.exit_code == 0, gate.output
    verdicts = json.loads((tmp_path / "gate.json").read_text())["verdicts"]
    assert [v["status"] for v in verdicts] == ["pass", "pass"] and "interval" in verdicts[1]
    typo = tmp_path / "typo.yaml"
    typo.write_text("rules:\n  - {metric: glwo, min: 0}\n")
    assert "(did you mean 'glow'?)" in _run("gate", outs["a"], "--rules", typo).output

    diff = _run("diff", outs["b"], outs["a"])
    assert diff.exit_code == 0 and "glow: " in diff.output and "n=24)" in diff.output

    report = _run("report", outs["a"], outs["b"], "-o", tmp_path / "report", "--quiet")
    assert report.exit_code == 0, report.output
    html = (tmp_path / "report" / "index.html").read_text()
    assert "Glow index" in html and f"{entry['interval']['low']:.3g}" in html  # an interval's ends: 3 digits


def test_every_built_in_result_key_declares_an_interval():
    """`--ci` gives an interval on every metric (README): each key the built-in metrics fill declares its method."""
    assert [key.key for key in registry.result_keys() if key.interval is None] == []


def test_intervals_are_cut_to_the_declared_range_and_say_so():
    rows = [{"item": f"p{i}#0", "clip_score": 99.9 if i % 2 else 0.1} for i in range(12)]
    cell = {"id": "c", "metrics": {"clip": {"value": 50.0}}, "per_image": rows}
    interval = cell_intervals(cell, None, replicates=200)["clip"]
    assert 0.0 <= interval.low <= interval.high <= 100.0
    assert "12 prompts: the bootstrap over prompts was checked from 30 prompts up" in interval.note
    # Enough prompts for the method: no note.
    rows = [{"item": f"p{i}#0", "rprecision_hit": float(i != 0)} for i in range(40)]
    cell = {"id": "c", "metrics": {"rprecision": {"value": 39 / 40}}, "per_image": rows}
    interval = cell_intervals(cell, None, replicates=200)["rprecision"]
    assert interval.high <= 1.0 and interval.note is None


def test_a_jackknife_interval_of_fid_at_tiny_n_is_cut_at_zero_and_warned():
    from sdeval.stats import CellState

    rng = np.random.default_rng(0)
    pool, ref = rng.normal(size=(12, 4)), rng.normal(size=(50, 4))
    items = [f"p{i}#0" for i in range(12)]
    from sdeval.metrics.fid import FrechetState, fid_from_features

    value = fid_from_features(pool, FrechetState.from_features(ref))
    cell = {"id": "c", "metrics": {"fid": {"value": value}}, "per_image": [{"item": i} for i in items]}
    interval = cell_intervals(cell, CellState(items, pool=pool, reference_pool=ref))["fid"]
    assert interval.low >= 0.0
    assert "12 prompts: the jackknife over prompt blocks was checked from 50 prompts up" in interval.note


def test_parts_of_a_result_are_declared_keys():
    ref = lookup("adherence.counting")
    assert ref is not None and ref.part == "counting" and ref.direction is Direction.HIGHER and ref.range == (0, 1)
    assert lookup("fid.counting") is None and lookup("nope") is None
    assert "adherence.CATEGORY" in known_names()


def test_robustness_is_resampled_as_it_is_computed_each_prompt_counting_once():
    from sdeval.metrics.seed_robustness import robustness
    from sdeval.stats import compare_cells

    rng = np.random.default_rng(3)
    rows = []
    for p in range(40):
        for k in range(1 + p % 5):  # uneven seeds: a pooled mean over images would differ
            rows.append({"item": f"p{p}#{k}", "adherence_passed": bool(rng.random() < 0.3 + 0.01 * p)})
    keys = [row["item"].split("#")[0] for row in rows]
    value = robustness(keys, [None] * len(rows), [row["adherence_passed"] for row in rows], None).overall.pass_rate
    pooled = np.mean([row["adherence_passed"] for row in rows])
    assert abs(value - pooled) > 1e-3
    cell = {"id": "c", "metrics": {"robustness": {"value": value}}, "per_image": rows}
    same = compare_cells(cell, None, cell, None, replicates=100)["robustness"]
    assert same.a == pytest.approx(value) and same.difference == 0.0
    interval = cell_intervals(cell, None, replicates=200)["robustness"]
    assert interval.low < value < interval.high
