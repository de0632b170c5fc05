"""Precision/recall by the float32 screen equal the float64 formula's, bit for bit: k-NN radii, hits, both metrics,
the recall leave-outs and precision's per-image hits, on adversarial near-ties, pool3-like features and random small
cases; the screen's error bound holds; a BLAS that does not recompute entries exactly falls back to float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sdeval.metrics.distances as dist
import sdeval.metrics.precision_recall as pr
from sdeval.metrics.corpus import RecallSide, precision_hits
from sdeval.metrics.estimators import blocks_of

K = 3


def _clear() -> None:
    pr._REFERENCE_RADII.clear()
    pr._HITS.clear()


def _assert_same(gen: np.ndarray, real: np.ndarray, k: int = K, blocks: np.ndarray | None = None) -> None:
    """Every output of the screen equals the float64 formula's (radii to the bit, hits exactly)."""
    _clear()
    for features in (gen, real):
        assert torch.equal(pr.knn_radii(features, k, "float32"), pr.knn_radii(features, k, "float64"))
    radii = pr.knn_radii(real, k, "float64")
    assert torch.equal(pr.inside_balls(gen, real, radii, "float32"), pr.inside_balls(gen, real, radii, "float64"))
    assert pr.precision_recall(gen, real, k, "float32") == pr.precision_recall(gen, real, k, "float64")
    if blocks is not None:
        n_blocks = int(blocks.max()) + 1
        fast = pr.recall_leave_outs(gen, real, blocks, n_blocks, k, "float32")
        slow = pr.recall_leave_outs(gen, real, blocks, n_blocks, k, "float64")
        assert fast[0] == slow[0] and np.array_equal(fast[1], slow[1])


def _near_ties(seed: int, d: int, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """Duplicated rows, rows at exactly a k-NN radius, and rows whose distances to a centre differ from its radius
    by a few float32 units in the last place (both sides of it)."""
    rng = np.random.default_rng(seed)
    real = rng.standard_normal((60, d))
    real[20:30] = real[10:20]  # duplicates: radii of 0 and ties at every rank
    real[30:33] = real[33]  # four equal rows: a radius of exactly 0 (k = 3)
    radii = pr.knn_radii(real.astype(dtype), K, "float64").numpy()
    centres = rng.integers(0, 60, 40)
    direction = rng.standard_normal((40, d))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    ulps = rng.integers(-4, 5, 40) * 2.0**-24
    gen = real[centres] + direction * (radii[centres] * (1 + ulps))[:, None]
    gen = np.concatenate([gen, real[:12], real[40:44] + 2.0**-20])  # generated rows equal to real ones, and next to
    return gen.astype(dtype), real.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [1, 7, 64, 300])
def test_near_ties_decide_as_the_float64_formula(d, dtype):
    gen, real = _near_ties(d, d, dtype)
    blocks = np.arange(len(gen)) % 5
    _assert_same(gen, real, K, blocks)
    _assert_same(real, gen, K)  # the other way round: ties among the generated rows' balls


def test_integer_lattice_ties():
    """Small integer coordinates: every distance is exact, many are equal, and points lie exactly on radii."""
    rng = np.random.default_rng(3)
    gen = rng.integers(0, 3, (150, 6)).astype(np.float32)
    real = rng.integers(0, 3, (120, 6)).astype(np.float32)
    _assert_same(gen, real, K, np.arange(150) % 7)
    _assert_same(gen, real, 1)


def test_random_small_cases():
    for seed in range(12):
        rng = np.random.default_rng(100 + seed)
        n, m = int(rng.integers(8, 260)), int(rng.integers(5, 260))
        d = int(rng.choice([2, 3, 12, 50, 129]))
        scale = float(rng.choice([1e-3, 1.0, 1e3]))
        gen = (rng.standard_normal((n, d)) * scale).astype(np.float32)
        real = ((rng.standard_normal((m, d)) + 0.2) * scale).astype(np.float32)
        blocks = rng.permutation(np.arange(n) % 4)
        _assert_same(gen, real, int(rng.integers(1, 5)), blocks)


def _pool3_like(n: int, seed: int, shift: float) -> np.ndarray:
    """Non-negative, sparse rows as Inception pool3 gives: ReLU of correlated Gaussians, about half zeros."""
    rng = np.random.default_rng(seed)
    mix = np.random.default_rng(7).standard_normal((64, 2048)) / 8
    out = np.empty((n, 2048), dtype=np.float32)
    for start in range(0, n, 2048):
        rows = min(2048, n - start)
        z = rng.standard_normal((rows, 64)) @ mix + 0.5 * rng.standard_normal((rows, 2048)) + shift
        out[start : start + rows] = np.maximum(z, 0)
    return out


def _assert_pool3(n: int) -> None:
    gen, real = _pool3_like(n, 1, 0.02), _pool3_like(n, 2, 0.0)
    assert 0.4 < float((real == 0).mean()) < 0.6
    blocks = blocks_of(np.arange(n) // 2, n // 2, 25, 0)
    _assert_same(gen, real, K, blocks)


def test_pool3_like_features():
    _assert_pool3(2000)


@pytest.mark.slow
def test_pool3_like_features_at_10k():
    _assert_pool3(10_000)


def test_the_screen_bounds_the_float64_formula():
    """hi - 2c S - tiny <= D <= hi + tiny for every pair, D the float64 formula's squared distance."""
    for seed, d in ((0, 5), (1, 200), (2, 2048)):
        rng = np.random.default_rng(seed)
        x = np.maximum(rng.standard_normal((70, d)) + 0.3, 0)
        x[5:9] = x[0]  # duplicates: D near 0, where the relative error is largest
        for array in (x.astype(np.float32), x):  # float64 input: rounded to float32 in the screen
            s = dist.ScreenedSet(array)
            hi = dist.screen(s, slice(0, s.n), s).double()
            exact = dist.squared_distances(torch.from_numpy(x.astype(array.dtype)).double(), s.rows64(np.arange(s.n)))
            band = 2 * s.c * (s.sq[:, None] + s.sq[None, :])
            assert bool((exact <= hi + 2.0**-90).all()) and bool((hi - band - 2.0**-90 <= exact).all())


def test_exact_recomputation_equals_the_float64_formula():
    """Entries recomputed from gathered columns and the last window equal the whole product's, for column counts
    on and off the window's multiple."""
    rng = np.random.default_rng(4)
    for n in (5, 48, 100, 1000, 1001):
        s = dist.ScreenedSet(rng.standard_normal((n, 256)).astype(np.float32))
        rows = np.arange(min(n, 20))
        whole = dist.squared_distances(s.rows64(rows), s.rows64(np.arange(n)), s.sq, s.sq[torch.from_numpy(rows)])
        cols = rng.integers(0, n, (len(rows), 6))
        got = dist.exact_squared(s, np.repeat(rows, 6), s, cols.ravel())
        assert torch.equal(got, whole[torch.from_numpy(np.repeat(rows, 6)), torch.from_numpy(cols.ravel())])
        assert torch.equal(dist.exact_rows(s, rows, s), whole)
        for start, stop in ((0, min(n, 7)), (n // 3, n), (n // 2, n // 2 + 1)):  # a tile of columns alone
            assert torch.equal(dist.exact_rows(s, rows, s, slice(start, stop)), whole[:, start:stop])
        assert dist.reproduces_float64(s, s)


def test_a_blas_that_recomputes_otherwise_falls_back_to_float64(monkeypatch):
    gen, real = _near_ties(0, 16, np.float32)
    _clear()
    expected = pr.precision_recall(gen, real, K, "float64")
    monkeypatch.setattr(pr, "reproduces_float64", lambda a, b: False)
    _clear()
    with pytest.warns(UserWarning, match="precision/recall in float64"):
        assert pr.precision_recall(gen, real, K) == expected


def test_crowded_blocks_are_recomputed_whole(monkeypatch):
    """All rows equal: every pair is a close call, so blocks are recomputed whole (the float64 path's cost), also
    when the blocks are tiles of the columns."""
    gen = np.ones((40, 10), dtype=np.float32)
    real = np.ones((30, 10), dtype=np.float32)
    _assert_same(gen, real, K, np.arange(40) % 4)
    _clear()
    assert pr.precision_recall(gen, real, K) == (1.0, 1.0)
    monkeypatch.setattr(pr, "_CHUNK_ELEMENTS", 200)  # squares of 8, tiles of 24 rows by 8 of the 30 columns
    _clear()
    _assert_same(gen, real, K, np.arange(40) % 4)


def test_precision_hits_come_from_the_last_pass_over_the_same_sets(monkeypatch):
    """The precision interval's hits are the metric's (or the recall interval's) own, not a third pass."""
    rng = np.random.default_rng(9)
    gen, real = rng.standard_normal((90, 12)).astype(np.float32), rng.standard_normal((70, 12)).astype(np.float32)
    _clear()
    expected = pr.inside_balls(gen, real, pr.knn_radii(real, K), "float64").numpy()
    pr.precision_recall(gen, real, K)
    monkeypatch.setattr(pr, "inside_balls", lambda *args: pytest.fail("a generated-to-real pass was recomputed"))
    assert np.array_equal(precision_hits(gen, real, K), expected)
    pr._HITS.clear()
    blocks = np.arange(90) % 6
    RecallSide(gen, real, blocks, 6, 0, K)  # the reference's radii are at hand: its pass keeps the hits too
    assert np.array_equal(precision_hits(gen, real, K), expected)
    pr._HITS.clear()
    with pytest.raises(pytest.fail.Exception):
        precision_hits(gen, real, K)  # nothing kept: the pass is recomputed
