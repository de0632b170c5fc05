"""Inception Score (Salimans et al. 2016) over splits, as torch-fidelity computes it.

Logits (without the final bias, torch-fidelity's `logits_unbiased`) are shuffled with
numpy RandomState(seed), cut into `splits` contiguous parts, and for each part
exp(mean KL(p(y|x) || p(y))) is computed in float64. Returns the mean and std over splits.
"""

from __future__ import annotations

import numpy as np

from sdeval.metrics.embeddings import NotEnoughDataError


def inception_score(logits: np.ndarray, splits: int = 10, seed: int = 2020) -> tuple[float, float]:
    # scipy at call time: the metric declarations and the statistics import this module, and a --help that
    # reaches them must not pay scipy's half second of import time.
    from scipy.special import log_softmax

    n = len(logits)
    if n < splits:
        raise NotEnoughDataError(f"Inception Score with {splits} splits needs at least {splits} images, got {n}")
    order = np.random.RandomState(seed).permutation(n)
    log_p = log_softmax(np.asarray(logits, np.float64)[order], axis=1)
    p = np.exp(log_p)
    scores = []
    for k in range(splits):
        part = slice(k * n // splits, (k + 1) * n // splits)
        log_q = np.log(p[part].mean(axis=0, keepdims=True))
        kl = (p[part] * (log_p[part] - log_q)).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))


def split_of_rows(n: int, splits: int = 10, seed: int = 2020) -> np.ndarray:
    """Each row's split as `inception_score` deals them: shuffled with RandomState(seed), cut into contiguous parts."""
    order = np.random.RandomState(seed).permutation(n)
    split = np.empty(n, dtype=np.int64)
    for k in range(splits):
        split[order[k * n // splits : (k + 1) * n // splits]] = k
    return split
