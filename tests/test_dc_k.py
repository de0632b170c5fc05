"""Density and coverage at a k the user chooses (`--dc-k`, `score.dc_k`): the value, the protocol block, the interval's
jackknife side (which reads k from the cell's protocol block, Jackknife.reads) and the reference radii all use it,
checked against the `prdc` package at k = 3. On seeded random features through the registry: no network runs."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from sdeval.cli import main
from sdeval.metrics import registry
from sdeval.metrics.density_coverage import K, density_coverage
from sdeval.metrics.estimators import blocks_of, group_index, jackknife_interval
from sdeval.metrics.precision_recall import keep_reference_radii
from sdeval.metrics.registry import CellData, Jackknife, ReferenceData, ScoreParams
from sdeval.options.score import options_from_mapping
from sdeval.stats import CellState, cell_intervals

SEED = 2020


def _sets(seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(120, 8)), rng.normal(size=(90, 8)) * 1.6 + 0.1  # some real balls far from the rows


def _prdc(x: np.ndarray, ref: np.ndarray, k: int) -> tuple[float, float]:
    import prdc

    found = prdc.compute_prdc(ref, x, nearest_k=k)
    return found["density"], found["coverage"]


def _cell(x: np.ndarray, ref: np.ndarray, k: int) -> tuple[dict, CellState]:
    """A results cell of `dc` scored at k (its entries and protocol block, as the scoring run writes them), and its
    feature state: 30 prompts of 4 images each."""
    spec = registry.get("dc")
    params = ScoreParams(dc_k=k)
    data = CellData(paths=[f"{i}.png" for i in range(len(x))], params=params, pool=x,
                    reference=ReferenceData(pool=ref, n=len(ref)))  # fmt: skip
    assert spec.protocol is not None
    items = [f"prompt {i % 30}/seed {i // 30}" for i in range(len(x))]
    cell = {"id": "c", "metrics": spec.compute(data).entries, "protocol": spec.protocol(params, data),
            "per_image": [{"item": item} for item in items]}  # fmt: skip
    return cell, CellState(items, pool=x, reference_pool=ref)


def test_the_value_and_the_protocol_at_k3_are_prdc_at_k3():
    x, ref = _sets()
    cell, _ = _cell(x, ref, 3)
    expected = _prdc(x, ref, 3)
    assert cell["metrics"]["density"]["value"] == pytest.approx(expected[0], rel=1e-12)
    assert cell["metrics"]["coverage"]["value"] == expected[1]
    assert expected != pytest.approx(_prdc(x, ref, K))  # k moves the numbers: the test can tell them apart
    assert cell["protocol"]["dc"]["k"] == 3 and cell["metrics"]["density"]["k"] == 3
    assert registry.result_key("density").describe(cell["metrics"]["density"]) == "(at k=3)"
    default, _ = _cell(x, ref, K)  # the paper's k: entries as before, the label says it
    assert "k" not in default["metrics"]["density"] and default["protocol"]["dc"]["k"] == K


def test_the_interval_side_at_k3_equals_the_metric_at_k3():
    x, ref = _sets(8)
    cell, state = _cell(x, ref, 3)
    for key, which in (("density", 0), ("coverage", 1)):
        method = registry.result_key(key).interval
        assert isinstance(method, Jackknife)
        parameters = method.parameters(cell["protocol"]["dc"])
        assert parameters == {"neighbourhood": 3}
        groups, prompts = group_index([row["item"] for row in cell["per_image"]])
        blocks = blocks_of(groups, len(prompts), 10, 0)
        side = method.side(x, ref, blocks, int(blocks.max()) + 1, SEED, **parameters)
        assert side.value() == cell["metrics"][key]["value"]
        for j in (0, 4):
            assert side.leave_outs[j] == pytest.approx(density_coverage(x[blocks != j], ref, 3)[which], rel=1e-12)
        # the interval drawn from the results cell is this side's (the statistics read k from the protocol block)
        drawn = cell_intervals(cell, state, seed=0, blocks=10)[key]
        expected = jackknife_interval(side.value(), side.leave_outs, 0.95, method.name)
        assert (drawn.low, drawn.high) == pytest.approx(registry.result_key(key).clip(expected.low, expected.high))
    # a cell whose protocol block lacks the field (a file written before --dc-k) gets the side's default, the paper's
    assert method.parameters({"ball": "distance <= radius"}) == {} and method.parameters(None) == {}


def test_radii_stored_at_another_k_are_never_reused():
    x, ref = _sets(9)
    keep_reference_radii(ref, K, np.zeros(len(ref)))  # a reference file's radii at k=5 only (wrong on purpose)
    assert density_coverage(x, ref, 3) == pytest.approx(_prdc(x, ref, 3), rel=1e-12)  # k=3's computed, not k=5's


def test_the_option_reaches_the_parameters_and_is_checked():
    assert options_from_mapping({"dc_k": 3}, images="x").params.dc_k == 3
    assert options_from_mapping({}, images="x").params.dc_k == K == ScoreParams().dc_k
    with pytest.raises(Exception, match="dc_k: expected an integer >= 1"):
        options_from_mapping({"dc_k": 0}, images="x", where="score")
    bad = CliRunner().invoke(main, ["score", ".", "--dc-k", "0"])
    assert bad.exit_code == 2 and "--dc-k" in bad.output
    assert "--dc-k" in CliRunner().invoke(main, ["score", "--help"]).output
