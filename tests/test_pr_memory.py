"""Precision/recall in row chunks: the same values as a float64 numpy reference and as recomputing from scratch,
whatever the chunk size, with no n x m distance matrix held; KID's memory bounded by its subsets."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest
import torch

import sdeval.metrics.kid as kid_module
import sdeval.metrics.precision_recall as pr
from sdeval.core.errors import SdevalError
from sdeval.metrics.corpus import RecallSide, precision_hits
from sdeval.metrics.estimators import blocks_of

K = 3


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Direct differences in float64: the definition, no expansion."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=-1))


def _radii(x: np.ndarray, k: int) -> np.ndarray:
    return np.sort(_distances(x, x), axis=1)[:, k]  # column 0 is the point itself


def _reference(gen: np.ndarray, real: np.ndarray, k: int) -> tuple[float, float, np.ndarray]:
    """(precision, recall, per-generated hit) straight from the paper's definition."""
    cross = _distances(gen, real)
    hits = (cross <= _radii(real, k)[None, :]).any(axis=1)
    recall = float((cross <= _radii(gen, k)[:, None]).any(axis=0).mean())
    return float(hits.mean()), recall, hits


def _clustered(seed: int, prompts: int = 60, seeds: int = 3, n_real: int = 150, d: int = 12):
    """Generated rows in prompt clusters (seeds of a prompt are near each other), a wider real set, and the
    jackknife's blocks over prompts."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((prompts, d))
    gen = (np.repeat(centres, seeds, axis=0) + 0.4 * rng.standard_normal((prompts * seeds, d))).astype(np.float32)
    real = (1.2 * rng.standard_normal((n_real, d)) + 0.1).astype(np.float32)
    groups = np.repeat(np.arange(prompts), seeds)
    return gen, real, blocks_of(groups, prompts, 25, seed)


def test_precision_recall_equal_the_float64_definition():
    for seed in range(3):
        gen, real, _ = _clustered(seed)
        precision, recall, hits = _reference(gen, real, K)
        assert pr.precision_recall(gen, real, K) == (precision, recall)
        assert np.array_equal(precision_hits(gen, real, K), hits)
        np.testing.assert_allclose(pr.knn_radii(torch.from_numpy(real.astype(np.float64)), K), _radii(real, K), 1e-12)


@pytest.mark.parametrize("rows, elements", [(16, 1 << 23), (7, 1 << 23), (2048, 100), (1, 1)])
def test_every_path_is_independent_of_the_chunk_size(monkeypatch, rows, elements):
    gen, real, blocks = _clustered(4)
    ref64 = torch.from_numpy(real.astype(np.float64))
    whole = (
        pr.precision_recall(gen, real, K), precision_hits(gen, real, K), pr.knn_radii(ref64, K),
        pr.recall_leave_outs(gen, real, blocks, 25, K)[1],
    )  # fmt: skip
    monkeypatch.setattr(pr, "_CHUNK", rows)
    monkeypatch.setattr(pr, "_CHUNK_ELEMENTS", elements)
    pr._REFERENCE_RADII.clear()  # the reference's radii recomputed with these chunks too
    assert pr.precision_recall(gen, real, K) == whole[0]
    assert np.array_equal(precision_hits(gen, real, K), whole[1])
    np.testing.assert_allclose(pr.knn_radii(ref64, K), whole[2], rtol=1e-12)
    assert np.array_equal(pr.recall_leave_outs(gen, real, blocks, 25, K)[1], whole[3])


def test_the_reference_radii_are_computed_once_per_reference(monkeypatch):
    """Cells and the precision interval measure against one reference: its k-NN radii (the costliest pass) are
    kept for the next call on the same features and k, and recomputed for other features or another k."""
    gen, real, _ = _clustered(5)
    calls: list[int] = []
    knn = pr.knn_radii
    monkeypatch.setattr(pr, "knn_radii", lambda x, k: calls.append(len(x)) or knn(x, k))
    pr._REFERENCE_RADII.clear()
    first = pr.precision_recall(gen, real, K)
    assert calls == [len(real), len(gen)]
    assert pr.precision_recall(gen[:90], real, K) == _reference(gen[:90], real, K)[:2]  # another cell: reused
    assert np.array_equal(precision_hits(gen, real, K), _reference(gen, real, K)[2])  # the interval's hits: reused
    assert calls == [len(real), len(gen), 90]
    other = real.copy()
    other[70] += 1  # a change in a middle row: not the same reference
    pr.precision_recall(gen, other, K)
    pr.precision_recall(gen, other, K + 1)
    assert calls[3::2] == [len(real), len(real)] and pr.precision_recall(gen, real, K) == first


@pytest.mark.parametrize("near", [pr._NEAR, 1])  # 1: every grown radius read from the whole row
def test_recall_leave_outs_equal_recomputing_from_scratch(monkeypatch, near):
    monkeypatch.setattr(pr, "_NEAR", near)
    for seed in range(3):
        gen, real, blocks = _clustered(10 + seed, prompts=40, seeds=4)
        n_blocks = int(blocks.max()) + 2  # one block holds no rows: leaving it out changes nothing
        from_scratch = [pr.precision_recall(gen[blocks != j], real, K)[1] for j in range(n_blocks)]
        definition = [_reference(gen[blocks != j], real, K)[1] for j in range(n_blocks)]
        leave_outs = pr.recall_leave_outs(gen, real, blocks, n_blocks, K)[1]
        assert list(leave_outs) == from_scratch == definition
        side = RecallSide(gen, real, blocks, n_blocks, seed, K)
        assert list(side.leave_outs) == from_scratch
        assert side.value() == pr.precision_recall(gen, real, K)[1]


def test_recall_leave_outs_of_too_few_rows_say_so_as_from_scratch():
    gen, real, _ = _clustered(0, prompts=3, seeds=2)
    blocks = np.array([0, 0, 0, 0, 1, 1])  # leaving block 0 out keeps 2 rows, k = 3
    with pytest.raises(SdevalError, match=r"needs more than 3 images per set, got 2 and 150"):
        pr.precision_recall(gen[blocks != 0], real, K)
    with pytest.raises(SdevalError, match=r"needs more than 3 images per set, got 2 and 150"):
        pr.recall_leave_outs(gen, real, blocks, 2, K)[1]


@pytest.mark.parametrize("gemm", ["float32", "float64"])
def test_no_distance_block_holds_more_than_the_chunk_budget(monkeypatch, gemm):
    """Every distance block of every path stays within the budget: a few whole rows, never n x m (the float64
    formula's blocks, and the float32 screen's)."""
    gen, real, blocks = _clustered(5, prompts=100, seeds=3, n_real=250)
    budget = 2000
    monkeypatch.setattr(pr, "_CHUNK_ELEMENTS", budget)
    shapes: list[tuple[int, int]] = []
    against: set[int] = set()  # the sizes of the sets on the column side (whole rows or square blocks of them)
    compute, screen = pr._pairwise_distances, pr.screen

    def recorded(a: torch.Tensor, b: torch.Tensor, *norms: torch.Tensor | None) -> torch.Tensor:
        out = compute(a, b, *norms)
        shapes.append(tuple(out.shape))
        against.add(len(b))
        return out

    def screened(a: pr.ScreenedSet, rows: slice, b: pr.ScreenedSet, *cols: slice) -> torch.Tensor:
        out = screen(a, rows, b, *cols)
        shapes.append(tuple(out.shape))
        against.add(len(b))
        return out

    monkeypatch.setattr(pr, "_pairwise_distances", recorded)
    monkeypatch.setattr(pr, "screen", screened)
    pr._REFERENCE_RADII.clear()
    pr.precision_recall(gen, real, K, gemm)
    pr.inside_balls(gen, real, pr.reference_radii(real, K, gemm), gemm)
    pr.recall_leave_outs(gen, real, blocks, int(blocks.max()) + 1, K, gemm)
    precision_hits(gen, real, K)
    RecallSide(gen, real, blocks, int(blocks.max()) + 1, 0, K)
    assert against == {len(gen), len(real)}  # every pairing went through the recorder
    for rows, cols in shapes:
        assert rows * cols <= max(budget, cols), (rows, cols)


_RSS_SCRIPT = """
import resource, sys
import numpy as np
import torch
import sdeval.metrics.precision_recall as pr
from sdeval.metrics.corpus import precision_hits

torch.set_num_threads(1)  # memory does not depend on it, and two threads crawl on a busy 2-core machine
pr._CHUNK_ELEMENTS = 1 << 18  # 2 MiB float64 blocks
n = int(sys.argv[1])
rng = np.random.default_rng(0)
gen, real = rng.standard_normal((n, 8)), rng.standard_normal((n, 8)) + 0.2
blocks = np.arange(n) % 25
pr.precision_recall(gen[:64], real[:64])  # warm torch's kernels before the baseline
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
pr.precision_recall(gen, real)
precision_hits(gen, real)
pr.recall_leave_outs(gen, real, blocks, 25)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


def test_peak_resident_memory_stays_far_below_one_distance_matrix():
    n = 4000
    matrix = n * n * 8  # one n x n float64 matrix: 128 MB
    # Large blocks straight from mmap and back on free, so the peak is what was live, not what malloc kept.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    script = textwrap.dedent(_RSS_SCRIPT)
    run = subprocess.run([sys.executable, "-c", script, str(n)], capture_output=True, text=True, check=True, env=env)
    grown = int(run.stdout.split()[-1])
    assert grown < matrix / 4, f"peak resident memory grew by {grown / 2**20:.0f} MiB"


def test_kid_on_subsets_never_copies_the_whole_sets(monkeypatch):
    """Above the Gram limit, KID's memory is the subsets' (rows and three subset² kernels), not the sets'."""
    monkeypatch.setattr(kid_module, "_GRAM_LIMIT", 100)
    rng = np.random.default_rng(6)
    x, y = rng.random((5000, 64), dtype=np.float32), rng.random((5000, 64), dtype=np.float32)
    size = 100
    tracemalloc.start()
    kid_module.kid(x, y, subsets=5, subset_size=size)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    subset_bytes = 2 * size * 64 * 8 + 4 * size * size * 8 + 2 * 5000 * 8  # rows, kernels, the draws' permutations
    assert peak < 2 * subset_bytes < x.size * 8  # a float64 copy of one set would be 2.6 MB
