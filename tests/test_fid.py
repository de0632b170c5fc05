"""FID: closed forms, float64 references, invariants, mergeability and the low-rank (n < d) route."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

import sdeval.metrics.fid as fid_module
from sdeval.core.errors import SdevalError
from sdeval.metrics.fid import (
    FrechetState,
    fid_from_features,
    fid_from_states,
    frechet_distance,
    trace_sqrt_product,
    trace_sqrt_product_low_rank,
)


def _random_spd(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T / d


def test_closed_form_diagonal_gaussians():
    # For commuting (here diagonal) covariances, tr sqrt(S1 S2) = sum sqrt(a_i b_i), so
    # FID = |mu1 - mu2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2.
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = 1 + 0 + 4 + (1 - 2) ** 2 + (2 - 1) ** 2 + (3 - 1) ** 2
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_closed_form_rotated_gaussians():
    # Rotating both covariances by the same orthogonal matrix leaves FID unchanged.
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    a, b = rng.uniform(0.5, 3, 5), rng.uniform(0.5, 3, 5)
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(np.zeros(5), s1, np.zeros(5), s2) == pytest.approx(expected, rel=1e-10)


def test_trace_sqrt_matches_scipy_sqrtm():
    rng = np.random.default_rng(1)
    s1, s2 = _random_spd(rng, 64), _random_spd(rng, 64)
    reference = np.trace(scipy.linalg.sqrtm(s1 @ s2)).real
    assert trace_sqrt_product(s1, s2) == pytest.approx(reference, rel=1e-10)


def test_trace_sqrt_rank_deficient_matches_nuclear_norm():
    # With S1 = A A^T / r and S2 = B B^T / r, the non-zero eigenvalues of S1 S2 are the squared singular
    # values of A^T B / r, so tr sqrt(S1 S2) is the nuclear norm of A^T B / r (sqrtm is inaccurate here).
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((256, 30)), rng.standard_normal((256, 30))
    reference = np.linalg.svd(a.T @ b / 30, compute_uv=False).sum()
    assert trace_sqrt_product(a @ a.T / 30, b @ b.T / 30) == pytest.approx(reference, rel=1e-9)


def test_fid_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(2).standard_normal((300, 128)) * 3 + 1
    state = FrechetState.from_features(x)
    assert fid_from_states(state, state) == pytest.approx(0.0, abs=1e-6)


def test_rank_deficient_identical_sets_are_zero_and_never_negative():
    # d = 256, not 2048: a d x d eigh at 2048 takes 3-20 s on 2 cores. The slow
    # test_low_rank_route_matches_the_d_by_d_route_at_inception_size runs this check at 2048.
    x = np.random.default_rng(3).random((40, 256)).astype(np.float32)
    state = FrechetState.from_features(x)
    value = fid_from_states(state, state)
    assert 0.0 <= value < 1e-6


def test_state_matches_numpy_mean_and_cov():
    x = np.random.default_rng(4).standard_normal((200, 16))
    state = FrechetState.from_features(x, chunk=37)
    np.testing.assert_allclose(state.mean(), x.mean(0), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(state.covariance(), np.cov(x, rowvar=False), rtol=1e-10, atol=1e-13)


def test_merging_shards_in_any_order_equals_the_whole():
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((500, 32)), rng.standard_normal((400, 32)) + 0.3
    whole = fid_from_states(FrechetState.from_features(x), FrechetState.from_features(y))
    shards = [FrechetState.from_features(part) for part in np.array_split(x, 7)]
    merged = shards[3]
    for shard in shards[:3] + shards[4:][::-1]:
        merged = merged.merge(shard)
    assert merged.n == 500
    assert fid_from_states(merged, FrechetState.from_features(y)) == pytest.approx(whole, rel=1e-10)


# -- low-rank route (n < d) ---------------------------------------------------------------------------------


def _features(rng, n, d):
    """Rows with a non-zero mean and unequal column scales, like pooled Inception features."""
    return rng.standard_normal((n, d)) * rng.uniform(0.1, 3.0, d) + rng.uniform(0.0, 1.0, d)


def _exact_trace(x, y):
    # The non-zero eigenvalues of S1 S2 are the squared singular values of X1c Y1c^T / sqrt((n1 - 1)(n2 - 1)):
    # an SVD, accurate where either route's eigvalsh would take square roots of round-off.
    xc, yc = x - x.mean(0), y - y.mean(0)
    return np.linalg.svd(xc @ yc.T / np.sqrt((len(x) - 1) * (len(y) - 1)), compute_uv=False).sum()


def _exact_fid(x, y):
    diff = x.mean(0) - y.mean(0)
    traces = np.var(x, axis=0, ddof=1).sum() + np.var(y, axis=0, ddof=1).sum()
    return diff @ diff + traces - 2.0 * _exact_trace(x, y)


@pytest.mark.parametrize("d", [64, 256])
@pytest.mark.parametrize("n", [2, 5, 40])
@pytest.mark.parametrize("n_reference", ["full", 50], ids=["full-rank-ref", "rank-49-ref"])
def test_low_rank_trace_equals_d_by_d_route(n, d, n_reference):
    # A rank-deficient reference, but of rank 49 >= n - 1: below that, the d x d route itself is off (next test).
    rng = np.random.default_rng(10 * n + d)
    x = _features(rng, n, d)
    y = _features(rng, 3 * d if n_reference == "full" else n_reference, d)
    sigma1, sigma2 = FrechetState.from_features(x).covariance(), FrechetState.from_features(y).covariance()
    expected = trace_sqrt_product(sigma1, sigma2)
    assert trace_sqrt_product_low_rank(x, sigma2) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("n", [5, 40])
def test_low_rank_trace_with_reference_of_lower_rank_than_the_set(n):
    # A reference of rank 3 leaves X1 S2 X1^T with n - 4 zero eigenvalues. The d x d route's eigvalsh turns each
    # into the square root of round-off (errors near 1e-8 relative); the low-rank route cuts them, and matches
    # the SVD exactly to rounding.
    rng = np.random.default_rng(n)
    x, y = _features(rng, n, 128), _features(rng, 4, 128)
    sigma2 = FrechetState.from_features(y).covariance()
    assert trace_sqrt_product_low_rank(x, sigma2) == pytest.approx(_exact_trace(x, y), rel=1e-12)
    sigma1 = FrechetState.from_features(x).covariance()
    assert trace_sqrt_product_low_rank(x, sigma2) == pytest.approx(trace_sqrt_product(sigma1, sigma2), rel=1e-6)


def _spy_low_rank(monkeypatch):
    """Record the row count of every low-rank call, so a test can tell which route was taken."""
    calls: list[int] = []
    real = fid_module.trace_sqrt_product_low_rank

    def spy(features1, sigma2):
        calls.append(len(features1))
        return real(features1, sigma2)

    monkeypatch.setattr(fid_module, "trace_sqrt_product_low_rank", spy)
    return calls


@pytest.mark.parametrize(
    ("n_gen", "n_ref", "route"),
    [(40, 500, "generated"), (400, 30, "reference"), (20, 30, "generated"), (30, 20, "reference"), (300, 200, None)],
)
def test_fid_from_features_equals_fid_from_states(monkeypatch, n_gen, n_ref, route):
    d = 128
    rng = np.random.default_rng(n_gen + n_ref)
    x, y = _features(rng, n_gen, d), _features(rng, n_ref, d) + 0.2
    ref = FrechetState.from_features(y)
    calls = _spy_low_rank(monkeypatch)
    value = fid_from_features(x, ref, reference_features=y)
    # The smaller of two small sets is the one decomposed; with n >= d for both, the d x d route.
    assert calls == {"generated": [n_gen], "reference": [n_ref], None: []}[route]
    assert value == pytest.approx(_exact_fid(x, y), rel=1e-9)
    # The d x d route cuts the round-off eigenvalues of B^T S2 B too, so both routes agree to 1e-9 everywhere.
    assert value == pytest.approx(fid_from_states(FrechetState.from_features(x), ref), rel=1e-9)


def test_small_reference_without_its_features_takes_the_d_by_d_route(monkeypatch):
    rng = np.random.default_rng(7)
    x, y = _features(rng, 300, 64), _features(rng, 30, 64)
    ref = FrechetState.from_features(y)
    calls = _spy_low_rank(monkeypatch)
    assert fid_from_features(x, ref) == pytest.approx(fid_from_states(FrechetState.from_features(x), ref), rel=1e-12)
    assert calls == []


def test_float32_reference_rows_of_a_float64_state_are_accepted():
    # References store their rows in float32; the state may have been summed from the float64 originals.
    rng = np.random.default_rng(8)
    x, y = _features(rng, 300, 64), _features(rng, 30, 64)
    ref = FrechetState.from_features(y)
    value = fid_from_features(x, ref, reference_features=y.astype(np.float32))
    assert value == pytest.approx(fid_from_states(FrechetState.from_features(x), ref), rel=1e-5)


def test_low_rank_fid_of_a_set_with_itself_is_zero(monkeypatch):
    x = np.random.default_rng(9).random((40, 256)).astype(np.float32)
    state = FrechetState.from_features(x)
    calls = _spy_low_rank(monkeypatch)
    value = fid_from_features(x, state, reference_features=x)
    assert calls == [40]
    # Relative to tr(S1) + tr(S2), the size of the terms that cancel.
    assert 0.0 <= value <= 1e-9 * 2 * np.trace(state.covariance())


def test_low_rank_route_at_inception_size():
    # A grid cell: 40 images of d = 2048 features. The low-rank route needs no 2048 x 2048 eigh (seconds on
    # 2 cores); the SVD reference below needs none either.
    rng = np.random.default_rng(11)
    x, y = rng.random((40, 2048)).astype(np.float32), rng.random((60, 2048)).astype(np.float32)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    ref = FrechetState.from_features(y)
    assert fid_from_features(x, ref, reference_features=y) == pytest.approx(_exact_fid(x64, y64), rel=1e-9)
    own = FrechetState.from_features(x)
    assert 0.0 <= fid_from_features(x, own, reference_features=x) <= 1e-9 * 2 * np.trace(own.covariance())


@pytest.mark.slow
def test_low_rank_route_matches_the_d_by_d_route_at_inception_size():
    rng = np.random.default_rng(12)
    x, y = rng.random((40, 2048)).astype(np.float32), rng.random((3000, 2048)).astype(np.float32)
    gen, ref = FrechetState.from_features(x), FrechetState.from_features(y)
    assert fid_from_features(x, ref, reference_features=y) == pytest.approx(fid_from_states(gen, ref), rel=1e-9)
    assert 0.0 <= fid_from_states(gen, gen) < 1e-6  # the d x d route on a rank-deficient pair, never negative


@pytest.mark.parametrize(("n_gen", "n_ref"), [(1, 50), (0, 50), (50, 1)])
def test_fid_from_features_needs_two_images_per_set(n_gen, n_ref):
    rng = np.random.default_rng(13)
    ref = FrechetState.from_features(_features(rng, n_ref, 16))
    with pytest.raises(SdevalError, match="at least 2 images per set"):
        fid_from_features(_features(rng, n_gen, 16), ref)


def test_low_rank_trace_needs_two_images():
    with pytest.raises(SdevalError, match="at least 2 images, got 1"):
        trace_sqrt_product_low_rank(np.ones((1, 8)), np.eye(8))


def test_fid_from_features_refuses_mismatched_shapes_and_reference_rows():
    rng = np.random.default_rng(14)
    y = _features(rng, 30, 64)
    ref = FrechetState.from_features(y)
    with pytest.raises(SdevalError, match=r"features of shape \[n, 64\], got \[40, 8\]"):
        fid_from_features(_features(rng, 40, 8), ref)
    with pytest.raises(SdevalError, match=r"features of shape \[n, 64\], got \[64\]"):
        fid_from_features(np.ones(64), ref)
    # Rows that are not the ones the state was accumulated from would mix two sets' statistics.
    with pytest.raises(SdevalError, match="not the 30 images"):
        fid_from_features(_features(rng, 100, 64), ref, reference_features=y[:29])
    with pytest.raises(SdevalError, match="not the 30 images"):
        fid_from_features(_features(rng, 100, 64), ref, reference_features=y + 0.01)
