"""FID: closed forms, float64 references, invariants and mergeability."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from sdeval.metrics.fid import FrechetState, fid_from_states, frechet_distance, trace_sqrt_product


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
    x = np.random.default_rng(3).random((40, 2048)).astype(np.float32)
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
