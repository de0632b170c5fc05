"""KID, Inception Score and precision/recall against float64 references, closed forms and torch-fidelity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric
from torch_fidelity.metric_prc import prc_features_to_metric

from sdeval.core.errors import SdevalError
from sdeval.metrics.inception_score import inception_score
from sdeval.metrics.kid import kid
from sdeval.metrics.precision_recall import precision_recall


def _direct_mmd2(x, y):
    """Unbiased MMD^2 with the cubic polynomial kernel, written out term by term in float64."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    d, m = x.shape[1], len(x)
    k = lambda a, b: (a @ b / d + 1.0) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_whole_set_equals_direct_formula():
    rng = np.random.default_rng(0)
    x, y = rng.random((25, 8)), rng.random((25, 8)) + 0.1
    mean, std = kid(x, y, subsets=3, subset_size=25)
    assert mean == pytest.approx(_direct_mmd2(x, y), rel=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)  # every subset is the whole set


def test_kid_matches_torch_fidelity_subsets():
    rng = np.random.default_rng(1)
    x = rng.random((120, 64)).astype(np.float32)
    y = (rng.random((90, 64)) * 1.2).astype(np.float32)
    ours = kid(x, y, subsets=20, subset_size=50, seed=7)
    theirs = kid_features_to_metric(
        torch.from_numpy(x), torch.from_numpy(y), kid_subsets=20, kid_subset_size=50, rng_seed=7, verbose=False
    )
    assert ours[0] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-4)
    assert ours[1] == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-3)


def test_kid_too_few_images_is_a_clear_error():
    with pytest.raises(SdevalError, match=r"KID subset size 10 is larger than the sets \(5 and 20 images\)"):
        kid(np.zeros((5, 4)), np.zeros((20, 4)), subset_size=10)
    with pytest.raises(SdevalError, match="KID subset size must be at least 2, got 1"):
        kid(np.zeros((5, 4)), np.zeros((20, 4)), subset_size=1)


def test_inception_score_closed_forms():
    # Uniform predictions: p(y|x) = p(y), KL = 0, IS = 1.
    assert inception_score(np.zeros((100, 5)), splits=10)[0] == pytest.approx(1.0)
    # Confident, balanced predictions over C classes: IS = C.
    logits = np.full((100, 4), -1e3)
    logits[np.arange(100), np.arange(100) % 4] = 1e3
    mean, _ = inception_score(logits, splits=1)
    assert mean == pytest.approx(4.0, rel=1e-9)


def test_inception_score_matches_torch_fidelity():
    logits = np.random.default_rng(2).normal(0, 3, (230, 50)).astype(np.float32)
    theirs = isc_features_to_metric(torch.from_numpy(logits), splits=10, shuffle=True, rng_seed=2020)
    mean, std = inception_score(logits, splits=10, seed=2020)
    assert mean == pytest.approx(theirs["inception_score_mean"], rel=1e-9)
    assert std == pytest.approx(theirs["inception_score_std"], rel=1e-6)


def test_precision_recall_closed_forms():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((50, 8))
    assert precision_recall(x, x, k=3) == (1.0, 1.0)
    assert precision_recall(x, x + 100.0, k=3) == (0.0, 0.0)


def test_precision_recall_matches_torch_fidelity():
    rng = np.random.default_rng(4)
    gen = rng.standard_normal((150, 16)).astype(np.float32)
    real = (rng.standard_normal((120, 16)) * 1.3 + 0.4).astype(np.float32)
    theirs = prc_features_to_metric(
        torch.from_numpy(gen), torch.from_numpy(real), prc_neighborhood=3, prc_batch_size=10000,
        save_cpu_ram=False, verbose=False,
    )  # fmt: skip
    precision, recall = precision_recall(gen, real, k=3)
    # torch-fidelity reports float32 means; the decisions per point are the same.
    assert precision == pytest.approx(theirs["precision"], abs=1e-6)
    assert recall == pytest.approx(theirs["recall"], abs=1e-6)
    assert 0.0 < precision < 1.0 and 0.0 < recall < 1.0


def test_precision_recall_does_not_depend_on_the_chunk_size(monkeypatch):
    import sdeval.metrics.precision_recall as pr

    rng = np.random.default_rng(5)
    gen, real = rng.standard_normal((70, 8)), rng.standard_normal((50, 8)) * 1.2
    whole = pr.precision_recall(gen, real, k=3)
    monkeypatch.setattr(pr, "_CHUNK", 16)
    assert pr.precision_recall(gen, real, k=3) == whole
