from __future__ import annotations

import itertools
import json
import math
from fractions import Fraction

import numpy as np
import pytest

from sdeval.metrics.embeddings import NotEnoughDataError
from sdeval.metrics.seed_robustness import (
    NO_PASS,
    expected_seeds_to_first_pass,
    pass_at_k,
    robustness,
)


def _outcomes(n: int, c: int) -> tuple[bool, ...]:
    return (True,) * c + (False,) * (n - c)


def _brute_pass_at_k(n: int, c: int, k: int) -> Fraction:
    """Share of all k-subsets of the n seeds that hold at least one pass."""
    subsets = list(itertools.combinations(_outcomes(n, c), k))
    return Fraction(sum(any(s) for s in subsets), len(subsets))


def _brute_expected_seeds(n: int, c: int) -> Fraction:
    """Mean over all orderings of the n seeds of the 1-based position of the first pass."""
    orders = list(itertools.permutations(_outcomes(n, c)))
    return Fraction(sum(order.index(True) + 1 for order in orders), len(orders))


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_matches_enumeration(n: int) -> None:
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == float(_brute_pass_at_k(n, c, k)), (n, c, k)


def test_pass_at_k_edges_and_codex_product_form() -> None:
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(5, 5, 3) == 1.0
    assert pass_at_k(10, 3, 1) == 0.3  # pass@1 is the pass rate
    # The Codex paper's float product form agrees where it is accurate.
    for n, c, k in [(200, 7, 10), (50, 1, 4), (1000, 999, 10), (30, 25, 10)]:
        product = 1.0 if n - c < k else 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))
        assert pass_at_k(n, c, k) == pytest.approx(product, rel=1e-12)
    # Tiny pass@k stays exact where 1 - product would cancel.
    assert pass_at_k(10**6, 1, 1) == 1e-6


def test_pass_at_k_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="needs at least 4 seeds"):
        pass_at_k(3, 1, 4)
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 0)
    with pytest.raises(TypeError):
        pass_at_k(3.0, 1, 1)  # type: ignore[arg-type]


@pytest.mark.parametrize("n", range(1, 8))
def test_expected_seeds_matches_enumeration(n: int) -> None:
    assert expected_seeds_to_first_pass(n, 0) is None
    for c in range(1, n + 1):
        brute = _brute_expected_seeds(n, c)
        assert brute == Fraction(n + 1, c + 1)
        assert expected_seeds_to_first_pass(n, c) == pytest.approx(float(brute), rel=1e-15)


def test_aggregation_on_a_hand_built_case() -> None:
    # a: 4 seeds, 1 pass (color). b: 2 seeds, 2 passes (color). c: 10 seeds, 0 passes (count).
    # d: 1 seed, no category, passes, no CLIP score.
    rows = (
        [("a", "color", p, s) for p, s in zip([True, False, False, False], [30.0, 32.0, 34.0, None], strict=True)]
        + [("b", "color", True, 25.0), ("b", "color", True, 27.0)]
        + [("c", "count", False, 20.0 + i) for i in range(10)]
        + [("d", None, True, None)]
    )
    ids, cats, passed, clip = (list(col) for col in zip(*rows, strict=True))
    result = robustness(ids, cats, passed, clip)

    by_id = {p.prompt_id: p for p in result.prompts}
    a, b, c, d = by_id["a"], by_id["b"], by_id["c"], by_id["d"]
    assert (a.n, a.passes, a.pass_rate) == (4, 1, 0.25)
    assert a.pass_at == {1: 0.25, 4: 1.0}  # no pass@10 with 4 seeds
    assert a.clip_n == 3 and a.clip_mean == pytest.approx(32.0) and a.clip_std == pytest.approx(2.0)
    assert a.expected_seeds == pytest.approx(2.5)  # (4 + 1) / (1 + 1)
    assert b.pass_at == {1: 1.0} and b.clip_std == pytest.approx(math.sqrt(2.0)) and b.expected_seeds == 1.0
    assert c.pass_at == {1: 0.0, 4: 0.0, 10: 0.0} and c.expected_seeds is None
    assert c.clip_std == pytest.approx(float(np.std(np.arange(10.0), ddof=1)))
    assert d.clip_std is None and d.clip_mean is None and d.clip_n == 0 and d.pass_at == {1: 1.0}

    # Categories sorted, uncategorised last.
    assert [cat.category for cat in result.categories] == ["color", "count", None]
    color = result.categories[0]
    assert (color.n_images, color.never_passed, color.summary.n_items) == (6, 0, 2)
    assert color.summary.pass_rate == pytest.approx((0.25 + 1.0) / 2)
    assert color.summary.pass_at == {1: pytest.approx(0.625), 4: 1.0}
    assert color.summary.pass_at_n == {1: 2, 4: 1}  # only prompt a has 4 seeds
    assert color.summary.clip_std == pytest.approx((2.0 + math.sqrt(2.0)) / 2) and color.summary.clip_std_n == 2
    assert color.summary.expected_seeds == pytest.approx((2.5 + 1.0) / 2) and color.summary.expected_seeds_n == 2
    count = result.categories[1]
    assert count.never_passed == 1 and count.summary.expected_seeds is None and count.summary.expected_seeds_n == 0
    assert count.summary.pass_at == {1: 0.0, 4: 0.0, 10: 0.0}

    overall = result.overall
    assert overall.n_items == 4 and result.n_images == 17 and result.never_passed == 1
    assert overall.pass_rate == pytest.approx((0.25 + 1.0 + 0.0 + 1.0) / 4)
    assert overall.pass_at[1] == pytest.approx((0.25 + 1.0 + 0.0 + 1.0) / 4)
    assert overall.pass_at[4] == pytest.approx((1.0 + 0.0) / 2) and overall.pass_at_n[4] == 2
    assert overall.pass_at[10] == 0.0 and overall.pass_at_n[10] == 1
    assert overall.expected_seeds == pytest.approx((2.5 + 1.0 + 1.0) / 3)

    # GenEval-style: each category's mean counts once.
    by_cat = result.by_category
    assert by_cat.n_items == 3
    assert by_cat.pass_rate == pytest.approx((0.625 + 0.0 + 1.0) / 3)
    assert by_cat.pass_at[4] == pytest.approx((1.0 + 0.0) / 2) and by_cat.pass_at_n[4] == 2
    assert by_cat.clip_std_n == 2  # the uncategorised prompt has no CLIP spread
    assert by_cat.expected_seeds == pytest.approx(((2.5 + 1.0) / 2 + 1.0) / 2)

    data = json.loads(json.dumps(result.to_json()))
    assert data["ks"] == [1, 4, 10]
    assert data["overall"]["pass_at"]["4"] == pytest.approx(0.5)
    assert data["categories"][2]["category"] is None
    prompt_c = next(p for p in data["prompts"] if p["prompt_id"] == "c")
    assert prompt_c["expected_seeds"] is None and prompt_c["expected_seeds_note"] == NO_PASS


def test_without_clip_scores_and_custom_ks() -> None:
    result = robustness(["p"] * 3, ["x"] * 3, [np.bool_(True), 0, 1], ks=(2, 1, 2, 5))
    assert result.ks == (1, 2, 5)
    row = result.prompts[0]
    assert row.pass_at == {1: pytest.approx(2 / 3), 2: 1.0} and row.clip_std is None
    assert result.overall.clip_std is None and result.overall.clip_std_n == 0
    assert 5 not in result.overall.pass_at


def test_bad_input() -> None:
    with pytest.raises(NotEnoughDataError):
        robustness([], [], [])
    with pytest.raises(ValueError, match="one entry per judged image"):
        robustness(["a"], ["x", "y"], [True])
    with pytest.raises(ValueError, match="categories"):
        robustness(["a", "a"], ["x", "y"], [True, False])
    with pytest.raises(ValueError, match="must be a bool"):
        robustness(["a"], ["x"], [float("nan")])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="NaN"):
        robustness(["a", "a"], ["x", "x"], [True, False], [1.0, float("nan")])
    with pytest.raises(ValueError, match="CLIP scores"):
        robustness(["a"], ["x"], [True], [1.0, 2.0])
    with pytest.raises(ValueError, match="ks"):
        robustness(["a"], ["x"], [True], ks=(0,))
