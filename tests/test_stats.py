"""sdeval.stats: intervals, comparisons, FID∞ and Holm, checked on synthetic data whose truth is known.

The coverage checks draw many seeded data sets at small feature dimension (the estimators' logic does not depend
on d; d = 2048 eigen-decompositions would take minutes here). Default runs use fewer data sets and a looser
band; the `slow` versions (--run-slow) use 200+ and the ±3 point band of the issue.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from sdeval.metrics.corpus import InceptionScoreSide
from sdeval.metrics.diversity import image_distances, prompt_diversity
from sdeval.metrics.estimators import blocks_of, group_index, prompt_of
from sdeval.metrics.fid import FrechetState, fid_from_features, frechet_distance
from sdeval.metrics.inception_score import inception_score, split_of_rows
from sdeval.metrics.kid import kid
from sdeval.results.state import save_state
from sdeval.stats import (
    CellState,
    Comparison,
    FidProjection,
    Interval,
    ReferenceRoot,
    cell_intervals,
    compare_cells,
    fid_against_n,
    holm,
    load_cell_states,
)

D = 8


def _gaussian(rng: np.random.Generator, n: int, d: int = D, shift: float = 0.3, scale: float = 1.2) -> np.ndarray:
    # Generated features: a shifted, stretched standard Gaussian (population FID has a closed form).
    return rng.normal(size=(n, d)) * scale + shift


def _population_fid(d: int = D, shift: float = 0.3, scale: float = 1.2) -> float:
    return frechet_distance(np.full(d, shift), np.eye(d) * scale**2, np.zeros(d), np.eye(d))


def _cell(items: list[str], pool: np.ndarray, reference: np.ndarray, clip: np.ndarray | None = None) -> dict:
    metrics = {"fid": {"value": fid_from_features(pool, FrechetState.from_features(reference))}}
    rows = [{"item": item, "path": f"{item}.png", "sha256": "0" * 64} for item in items]
    if clip is not None:
        metrics["clip"] = {"value": float(np.mean(clip))}
        for row, score in zip(rows, clip, strict=True):
            row["clip_score"] = float(score)
    return {"id": "c", "metrics": metrics, "per_image": rows}


def _items(n_prompts: int, seeds: int) -> list[str]:
    return [f"p{p:04d}#{s}" for p in range(n_prompts) for s in range(seeds)]


# -- units --------------------------------------------------------------------------------------------------


def test_holm_matches_hand_computation():
    assert holm([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert holm([]) == []
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])


def test_records_serialise():
    interval = Interval(1.0, 2.0, 0.95, "jackknife over prompt blocks")
    assert interval.to_json() == {"low": 1.0, "high": 2.0, "level": 0.95, "method": "jackknife over prompt blocks"}
    comparison = Comparison("fid", 1.0, 2.0, 1.0, interval, 0.5, True, 10, "m")
    assert json.loads(json.dumps(comparison.to_json()))["interval"]["low"] == 1.0


def test_prompt_grouping_keeps_seeds_together():
    assert prompt_of("p1#3") == "p1" and prompt_of("p1@42") == "p1" and prompt_of("path:a#b.png") == "path:a#b.png"
    groups, prompts = group_index(["a#0", "b#0", "a#1", "c@5"])
    assert prompts == ["a", "b", "c"] and groups.tolist() == [0, 1, 0, 2]
    block = blocks_of(np.array([0, 1, 0, 2, 3, 3]), 4, 2, seed=0)
    assert block[0] == block[2] and block[4] == block[5]


@pytest.mark.parametrize(("n", "d"), [(300, 16), (12, 16), (40, 64)])
def test_fid_projection_equals_fid(n, d):
    rng = np.random.default_rng(n)
    x, ref = rng.normal(size=(n, d)), rng.normal(size=(500, d)) * 1.1 + 0.2
    projection = FidProjection(x, ReferenceRoot.from_features(ref))
    blocks = np.arange(n) % 4
    expected = [fid_from_features(x[blocks != k], FrechetState.from_features(ref)) for k in range(4)]
    assert projection.fid() == pytest.approx(fid_from_features(x, FrechetState.from_features(ref)), rel=1e-10)
    assert projection.leave_block_out(blocks, 4) == pytest.approx(expected, rel=1e-10, abs=1e-10)


@pytest.mark.parametrize(
    ("n", "n_ref", "d", "repeats"), [(30, 20, 64, 1), (80, 40, 64, 1), (10, 5, 64, 1), (30, 24, 64, 2)]
)
def test_a_small_references_root_from_its_rows_equals_the_eigh_root(n, n_ref, d, repeats):
    """A reference of fewer rows than dimensions is factored from its centred rows (no d x d eigh): every FID route
    (the projection, its leave-outs, fid_from_features) gives the eigh root's numbers; repeated rows (a rank below
    n - 1) included."""
    rng = np.random.default_rng(n + n_ref)
    x = rng.normal(size=(n, d))
    ref = np.repeat(rng.normal(size=(n_ref // repeats, d)) * 1.1 + 0.2, repeats, axis=0)
    rows, eigh = ReferenceRoot.from_features(ref), ReferenceRoot.from_state(FrechetState.from_features(ref))
    assert rows.b.shape == (d, n_ref - 1)
    covariance = eigh.b @ eigh.b.T
    np.testing.assert_allclose(rows.b @ rows.b.T, covariance, rtol=0, atol=1e-12 * np.abs(covariance).max())
    assert rows.trace == eigh.trace and np.array_equal(rows.mean, eigh.mean)
    a, b = FidProjection(x, rows), FidProjection(x, eigh)
    assert a.fid() == pytest.approx(b.fid(), rel=1e-10)
    assert a.fid() == pytest.approx(fid_from_features(x, FrechetState.from_features(ref), reference_features=ref),
                                    rel=1e-10)  # fmt: skip
    blocks = np.arange(n) % 4
    assert a.leave_block_out(blocks, 4) == pytest.approx(b.leave_block_out(blocks, 4), rel=1e-10)


def test_cell_intervals_cover_the_value_and_skip_what_is_missing():
    rng = np.random.default_rng(1)
    items = _items(60, 2)
    pool, ref = _gaussian(rng, len(items)), rng.normal(size=(400, D))
    cell = _cell(items, pool, ref, clip=rng.normal(30, 2, len(items)))
    state = CellState(items=items, pool=pool, reference_pool=ref)
    out = cell_intervals(cell, state, replicates=100)
    assert set(out) == {"fid", "clip"}
    for key, interval in out.items():
        assert interval.low < cell["metrics"][key]["value"] < interval.high
        assert interval.level == 0.95
    assert "jackknife" in out["fid"].method and "bootstrap" in out["clip"].method
    assert set(cell_intervals(cell, None, replicates=50)) == {"clip"}  # no state: no FID interval
    assert cell_intervals(cell, state, replicates=100) == out  # seeded


def test_adherence_interval_recomputes_the_mean_over_categories():
    rng = np.random.default_rng(2)
    items = _items(40, 3)
    cats = ["a" if i < 60 else "b" for i in range(len(items))]
    passed = rng.random(len(items)) < np.where(np.array(cats) == "a", 0.9, 0.3)
    rows = [
        {"item": item, "path": "x", "sha256": "0" * 64, "category": c, "adherence_passed": bool(p)}
        for item, c, p in zip(items, cats, passed, strict=True)
    ]
    value = (passed[:60].mean() + passed[60:].mean()) / 2
    cell = {"metrics": {"adherence": {"value": value}}, "per_image": rows}
    interval = cell_intervals(cell, None, replicates=200)["adherence"]
    assert interval.low < value < interval.high
    same = compare_cells(cell, None, cell, None, replicates=50)["adherence"]
    assert same.difference == 0 and same.paired and same.a == pytest.approx(value)


def test_kid_cmmd_precision_recall_intervals_from_state():
    rng = np.random.default_rng(3)
    items = _items(30, 2)
    pool, ref = _gaussian(rng, len(items)), rng.normal(size=(200, D))
    emb, ref_emb = rng.normal(size=(len(items), 4)), rng.normal(size=(150, 4))
    cell = _cell(items, pool, ref)
    for key in ("kid", "cmmd", "precision", "recall"):
        cell["metrics"][key] = {"value": 0.5}
    state = CellState(items=items, pool=pool, reference_pool=ref, cmmd_image=emb, reference_cmmd_image=ref_emb)
    out = cell_intervals(cell, state, replicates=50, blocks=10)
    assert set(out) == {"fid", "kid", "cmmd", "precision", "recall"}
    assert all(np.isfinite([i.low, i.high]).all() and i.low <= i.high for i in out.values())


def _logits(rng: np.random.Generator, n_prompts: int, seeds: int, classes: int = 30) -> np.ndarray:
    """Inception-like logits: a prompt's seeds share its class preferences, so a prompt's images correlate."""
    preference = np.repeat(rng.normal(size=(n_prompts, classes)) * 2.0, seeds, axis=0)
    return preference + rng.normal(size=(n_prompts * seeds, classes))


def test_inception_score_side_is_the_estimator_with_each_block_out_of_its_splits():
    rng = np.random.default_rng(20)
    x = _logits(rng, 101, 3)  # 303 rows: splits of unequal size
    groups, prompts = group_index(_items(101, 3))
    block = blocks_of(groups, len(prompts), 25, seed=1)
    side = InceptionScoreSide(x, block, 25, 2020, 10)
    assert side.value() == pytest.approx(inception_score(x, 10, 2020)[0], rel=1e-12)
    # Leaving a block out takes its rows out of the splits the estimator dealt them to; each split scores as usual.
    split = split_of_rows(len(x), 10, 2020)
    for left_out in (0, 7, 24):
        kept = block != left_out
        expected = np.mean([inception_score(x[kept & (split == k)], 1)[0] for k in range(10)])
        assert side.leave_outs[left_out] == pytest.approx(expected, rel=1e-12)


def test_diversity_distances_average_to_each_prompts_diversity():
    rng = np.random.default_rng(21)
    embeddings, prompts = rng.normal(size=(9, 5)), ["a", "b", "a", "c", "a", "b", "b", "b", "d"]
    distances = image_distances(embeddings, prompts)
    found = prompt_diversity(embeddings, prompts)
    for item in found.per_prompt:
        mine = [d for d, p in zip(distances, prompts, strict=True) if p == item.prompt]
        assert np.mean(mine) == pytest.approx(item.mean_distance, rel=1e-12)
    assert np.isnan(distances[3]) and np.isnan(distances[8])  # a prompt's only image has no pair


def _diversity_cell(
    rng: np.random.Generator, n_prompts: int, seeds: list[int], spreads: np.ndarray | None = None
) -> dict:
    """A cell whose images carry prompt texts but no prompt ids (items `path:...`), prompts differing in diversity
    (each prompt's images spread around its centre by its own amount: `spreads`, else drawn)."""
    texts = [f"prompt {p}" for p in range(n_prompts) for _ in range(seeds[p])]
    centre = np.repeat(rng.normal(size=(n_prompts, D)) * 2.0, seeds, axis=0)
    spreads = rng.uniform(0.3, 1.5, n_prompts) if spreads is None else spreads
    spread = np.repeat(spreads, seeds)[:, None]
    embeddings = centre + rng.normal(size=(len(texts), D)) * spread
    distances = image_distances(embeddings, texts)
    rows = [
        {"item": f"path:{i}.png", "prompt": text, "diversity_distance": None if np.isnan(d) else float(d)}
        for i, (text, d) in enumerate(zip(texts, distances, strict=True))
    ]
    return {"metrics": {"diversity": {"value": prompt_diversity(embeddings, texts).overall}}, "per_image": rows}


def test_diversity_interval_resamples_prompts_by_their_text_and_weighs_each_once():
    rng = np.random.default_rng(22)
    # One prompt with 12 seeds among 40 with 2: weighing images (or resampling them one by one) would move the centre.
    cell = _diversity_cell(rng, 41, [12] + [2] * 40, np.array([5.0] + [0.5] * 40))
    value = cell["metrics"]["diversity"]["value"]
    interval = cell_intervals(cell, None, replicates=400)["diversity"]
    assert interval.low < value < interval.high and interval.note is None
    assert "bootstrap over prompts" in interval.method
    by_image = np.nanmean([np.nan if r["diversity_distance"] is None else r["diversity_distance"]
                           for r in cell["per_image"]])  # fmt: skip
    assert not interval.low < by_image < interval.high  # the images' mean is another number here


def test_faithfulness_intervals_from_their_per_image_columns():
    rng = np.random.default_rng(23)
    items = _items(40, 2)
    edge, cosine = rng.uniform(0.2, 0.8, len(items)), rng.uniform(0.5, 0.9, len(items))
    rows = [{"item": item, "init_edge_ssim": float(e), "init_clip_cosine": float(c)}
            for item, e, c in zip(items, edge, cosine, strict=True)]  # fmt: skip
    rows[0]["init_edge_ssim"] = rows[0]["init_clip_cosine"] = None  # an output without an init image
    metrics = {
        "faithfulness_edge": {"value": float(edge[1:].mean())},
        "faithfulness_clip": {"value": float(cosine[1:].mean())},
    }
    out = cell_intervals({"metrics": metrics, "per_image": rows}, None, replicates=200)
    assert set(out) == {"faithfulness_edge", "faithfulness_clip"}
    for key, interval in out.items():
        assert interval.low < metrics[key]["value"] < interval.high


def test_load_cell_states_splits_rows_by_cell(tmp_path):
    rng = np.random.default_rng(4)
    items = ["p0#0", "p1#0", "p0#0", "p1#0", "p2#0"]
    pool = rng.normal(size=(5, D)).astype(np.float32)
    arrays = {"cell": np.array([0, 0, 1, 1, 1]), "item": items, "sha256": ["0" * 64] * 5, "pool": pool}
    arrays["reference_pool"] = rng.normal(size=(7, D))
    save_state(tmp_path / "r.state.npz", arrays, ["x", "y"])
    document = {"cells": [{"id": "x"}, {"id": "y"}], "state": {"path": "r.state.npz"}}
    states = load_cell_states(tmp_path / "r.json", document)
    assert list(states) == ["x", "y"] and states["y"].items == ["p0#0", "p1#0", "p2#0"]
    assert np.allclose(states["y"].pool, pool[2:]) and states["x"].reference_pool.shape == (7, D)
    assert load_cell_states(tmp_path / "r.json", {"cells": [], "state": {"path": None, "reason": "-o -"}}) == {}


def test_compare_cells_pairs_shared_items_else_says_unpaired():
    rng = np.random.default_rng(5)
    items = _items(40, 2)
    ref = rng.normal(size=(300, D))
    pool_a, pool_b = _gaussian(rng, len(items)), _gaussian(rng, len(items), shift=0.6)
    a = _cell(items, pool_a, ref, clip=rng.normal(30, 2, len(items)))
    b = _cell(items, pool_b, ref, clip=rng.normal(31, 2, len(items)))
    a_state = CellState(items=items, pool=pool_a, reference_pool=ref)
    b_state = CellState(items=items, pool=pool_b, reference_pool=ref)
    out = compare_cells(a, a_state, b, b_state, replicates=100)
    assert set(out) == {"fid", "clip"}
    fid = out["fid"]
    assert fid.paired and fid.n_shared == len(items) and "paired" in fid.method
    assert fid.difference == pytest.approx(b["metrics"]["fid"]["value"] - a["metrics"]["fid"]["value"])
    assert fid.interval.low < fid.difference < fid.interval.high and fid.p_value < 0.05  # shift 0.3 -> 0.6
    other = [f"q{i}#0" for i in range(len(items))]
    b_other = {**b, "per_image": [{**row, "item": o} for row, o in zip(b["per_image"], other, strict=True)]}
    unpaired = compare_cells(a, a_state, b_other, CellState(other, pool=pool_b, reference_pool=ref), replicates=100)
    assert not unpaired["fid"].paired and "unpaired" in unpaired["fid"].method and unpaired["fid"].n_shared == 0
    assert not unpaired["clip"].paired
    # Part shared: the difference is taken on the shared items, recomputed.
    half = compare_cells(a, a_state, {**b, "per_image": b["per_image"][:40]}, b_state, replicates=50)
    assert half["fid"].n_shared == 40 and half["fid"].a != a["metrics"]["fid"]["value"]


def test_fid_against_n_fits_intercept():
    rng = np.random.default_rng(6)
    x, ref = _gaussian(rng, 800), rng.normal(size=(4000, D))
    curve = fid_against_n(x, ref, repeats=3)
    assert len(curve.points) >= 5 and curve.points[-1][0] == 800
    assert curve.fid_inf_interval.low <= curve.fid_inf <= curve.fid_inf_interval.high
    assert curve.slope > 0  # FID is biased upward at small n
    assert json.loads(json.dumps(curve.to_json()))["fid_inf"] == curve.fid_inf


# -- simulations where the truth is known -------------------------------------------------------------------


def _prompted_pool(rng: np.random.Generator, n_prompts: int, seeds: int) -> np.ndarray:
    """Seeds of a prompt share a prompt effect (so rows within a prompt correlate); marginally N(0.3, 1.2²)."""
    effect = np.repeat(rng.normal(size=(n_prompts, D)) * 0.5, seeds, axis=0)
    return 0.3 + effect + rng.normal(size=(n_prompts * seeds, D)) * np.sqrt(1.44 - 0.25)


def _fid_coverage(n_sets: int, n_prompts: int = 100, seeds: int = 2) -> float:
    rng = np.random.default_rng(10)
    ref = rng.normal(size=(1000, D))  # fixed: the interval is conditional on the reference
    root = ReferenceRoot.from_features(ref)
    items = _items(n_prompts, seeds)
    # Truth: E[FID at n | reference], by Monte Carlo over fresh generated sets drawn the same way.
    truth = np.mean([FidProjection(_prompted_pool(rng, n_prompts, seeds), root).fid() for _ in range(4000)])
    hits = 0
    for _ in range(n_sets):
        pool = _prompted_pool(rng, n_prompts, seeds)
        interval = cell_intervals(_cell(items, pool, ref), CellState(items, pool=pool, reference_pool=ref))["fid"]
        hits += interval.low <= truth <= interval.high
    return hits / n_sets


def _kid_coverage(n_sets: int, n: int = 150) -> float:
    rng = np.random.default_rng(11)
    ref = rng.normal(size=(300, D))
    items = _items(n, 1)
    # The run's KID with one subset of all n images is the full unbiased MMD²; truth = its mean over fresh sets.
    truth = np.mean([kid(_gaussian(rng, n), ref, 1, n)[0] for _ in range(1500)])
    hits = 0
    for _ in range(n_sets):
        pool = _gaussian(rng, n)
        cell = {"metrics": {"kid": {"value": kid(pool, ref, 1, n)[0]}}, "per_image": [{"item": i} for i in items]}
        interval = cell_intervals(cell, CellState(items, pool=pool, reference_pool=ref))["kid"]
        hits += interval.low <= truth <= interval.high
    return hits / n_sets


def _mean_coverage(n_sets: int, n_prompts: int = 100, seeds: int = 4) -> float:
    rng = np.random.default_rng(12)
    items = _items(n_prompts, seeds)
    hits = 0
    for _ in range(n_sets):
        # Prompt effects make the seeds of a prompt correlated; the population mean is 30.
        scores = np.repeat(rng.normal(0, 3, n_prompts), seeds) + rng.normal(30, 2, len(items))
        rows = [{"item": i, "clip_score": float(s)} for i, s in zip(items, scores, strict=True)]
        cell = {"metrics": {"clip": {"value": float(scores.mean())}}, "per_image": rows}
        interval = cell_intervals(cell, None, replicates=400, seed=int(rng.integers(1 << 30)))["clip"]
        hits += interval.low <= 30.0 <= interval.high
    return hits / n_sets


def _false_positive_rate(n_sets: int, n_prompts: int = 150, seeds: int = 2) -> tuple[float, float]:
    rng = np.random.default_rng(13)
    items = _items(n_prompts, seeds)
    ref = rng.normal(size=(500, D))
    rejected = {"clip": 0, "fid": 0}
    for _ in range(n_sets):
        # Identical distributions; both runs share prompts (prompt effects), as two checkpoints on one suite.
        effect = np.repeat(rng.normal(size=(n_prompts, D)) * 0.5, seeds, axis=0)
        clip_effect = np.repeat(rng.normal(0, 3, n_prompts), seeds)
        cells, states = [], []
        for _side in range(2):
            pool = 0.3 + effect + rng.normal(size=(len(items), D))
            cells.append(_cell(items, pool, ref, clip=clip_effect + rng.normal(30, 2, len(items))))
            states.append(CellState(items, pool=pool, reference_pool=ref))
        out = compare_cells(cells[0], states[0], cells[1], states[1], replicates=200, seed=int(rng.integers(1 << 30)))
        for key in rejected:
            assert out[key].paired
            rejected[key] += out[key].p_value < 0.05
    return rejected["clip"] / n_sets, rejected["fid"] / n_sets


def _fid_inf_errors(n_sets: int) -> tuple[float, float]:
    rng = np.random.default_rng(14)
    d = 32  # FID's bias at n = 1000 must exceed its spread for FID∞ to have something to remove
    ref = rng.normal(size=(100_000, d))  # large: its own small-sample bias is negligible here
    root = ReferenceRoot.from_features(ref)
    population = _population_fid(d)
    err_inf, err_n = [], []
    for _ in range(n_sets):
        x = _gaussian(rng, 1000, d)
        curve = fid_against_n(x, ref, repeats=5, seed=int(rng.integers(1 << 30)), root=root)
        err_inf.append(abs(curve.fid_inf - population))
        err_n.append(abs(curve.points[-1][1] - population))
    return float(np.mean(err_inf)), float(np.mean(err_n))


def _is_coverage(n_sets: int, n_prompts: int = 100, seeds: int = 2) -> float:
    rng = np.random.default_rng(15)
    items = _items(n_prompts, seeds)
    # Truth: E[IS at n] (10 splits, as the run computes it), by Monte Carlo over fresh sets drawn the same way.
    truth = np.mean([inception_score(_logits(rng, n_prompts, seeds))[0] for _ in range(3000)])
    hits = 0
    for _ in range(n_sets):
        logits = _logits(rng, n_prompts, seeds)
        cell = {"metrics": {"is": {"value": inception_score(logits)[0]}}, "per_image": [{"item": i} for i in items]}
        interval = cell_intervals(cell, CellState(items, logits=logits), seed=int(rng.integers(1 << 30)))["is"]
        hits += interval.low <= truth <= interval.high
    return hits / n_sets


def _diversity_coverage(n_sets: int, n_prompts: int = 100, seeds: int = 3) -> float:
    rng = np.random.default_rng(16)
    # Truth: the mean over the population of prompts of a prompt's expected diversity at this many seeds.
    truth = _diversity_cell(rng, 20_000, [seeds] * 20_000)["metrics"]["diversity"]["value"]
    hits = 0
    for _ in range(n_sets):
        cell = _diversity_cell(rng, n_prompts, [seeds] * n_prompts)
        interval = cell_intervals(cell, None, replicates=400, seed=int(rng.integers(1 << 30)))["diversity"]
        hits += interval.low <= truth <= interval.high
    return hits / n_sets


def test_is_interval_coverage_small():
    assert 0.87 <= _is_coverage(60) <= 1.0


def test_diversity_interval_coverage_small():
    assert 0.87 <= _diversity_coverage(60) <= 1.0


def test_fid_interval_coverage_small():
    assert 0.87 <= _fid_coverage(60) <= 1.0


def test_kid_interval_coverage_small():
    assert 0.88 <= _kid_coverage(60) <= 1.0


def test_per_image_mean_coverage_small():
    assert 0.88 <= _mean_coverage(60) <= 1.0


def test_paired_false_positive_rate_small():
    clip, fid = _false_positive_rate(60)
    assert clip <= 0.12 and fid <= 0.12


def test_fid_inf_beats_fid_at_largest_n_small():
    err_inf, err_n = _fid_inf_errors(5)
    assert err_inf < err_n


@pytest.mark.slow
def test_is_interval_coverage():
    assert abs(_is_coverage(300) - 0.95) <= 0.03


@pytest.mark.slow
def test_diversity_interval_coverage():
    assert abs(_diversity_coverage(300) - 0.95) <= 0.03


@pytest.mark.slow
def test_fid_interval_coverage():
    assert abs(_fid_coverage(300) - 0.95) <= 0.03


@pytest.mark.slow
def test_kid_interval_coverage():
    assert abs(_kid_coverage(300) - 0.95) <= 0.03


@pytest.mark.slow
def test_per_image_mean_coverage():
    assert abs(_mean_coverage(300) - 0.95) <= 0.03


@pytest.mark.slow
def test_paired_false_positive_rate():
    clip, fid = _false_positive_rate(300)
    assert abs(clip - 0.05) <= 0.03 and abs(fid - 0.05) <= 0.03


@pytest.mark.slow
def test_fid_inf_beats_fid_at_largest_n():
    err_inf, err_n = _fid_inf_errors(20)
    assert err_inf < err_n / 2


@pytest.mark.parametrize("kind", ["kid", "cmmd"])
def test_kernel_blocks_do_not_depend_on_the_tile_size(monkeypatch, kind):
    """The KID/CMMD jackknife tiles the kernel in rows and columns; any tile size gives the same block sums."""
    from sdeval.metrics import corpus

    rng = np.random.default_rng(5)
    x, ref = rng.normal(size=(50, 6)), rng.normal(size=(40, 6))
    blocks = np.arange(50) % 7
    whole = corpus.KernelBlocks(kind, x, blocks, 7, ref)
    monkeypatch.setattr(corpus, "_CHUNK", 8)
    tiled = corpus.KernelBlocks(kind, x, blocks, 7, ref)
    np.testing.assert_allclose(tiled.xx, whole.xx, rtol=1e-12)
    np.testing.assert_allclose(tiled.xx_diag, whole.xx_diag, rtol=1e-12)
    np.testing.assert_allclose(tiled.leave_block_out(), whole.leave_block_out(), rtol=1e-10)
