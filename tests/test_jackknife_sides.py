"""Every jackknife side equals its metric. Each key a built-in metric gives a jackknife interval has a pin here, reached
through its registration (so the wiring is pinned too): on seeded random features, the side's value with nothing left
out is the metric's own function on the same rows, and a leave-out is the metric on the remaining rows. Where the side
necessarily differs from the cell's number, the pin says how (KID's subsets, the Inception Score's splits)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from click.testing import CliRunner

from sdeval.cli import main
from sdeval.metrics import registry
from sdeval.metrics.builtin.inception import IS_SPLITS, PR_NEIGHBOURHOOD
from sdeval.metrics.cmmd import cmmd
from sdeval.metrics.density_coverage import density_coverage
from sdeval.metrics.fd_clip import fd_clip
from sdeval.metrics.fd_dinov2 import fd_dinov2
from sdeval.metrics.fid import FrechetState, fid_from_features
from sdeval.metrics.inception_score import inception_score, split_of_rows
from sdeval.metrics.kid import kid, mmd2_unbiased, polynomial_kernel
from sdeval.metrics.precision_recall import precision_recall
from sdeval.metrics.registry import Bootstrap, Direction, Jackknife, ResultKey
from sdeval.metrics.sfid import sfid
from sdeval.metrics.vendi import vendi_score

K = 6  # blocks
SEED = 2020
LEFT_OUT = (0, 3)  # blocks whose leave-out is recomputed from scratch
REL = 1e-12


def _blocks(n: int) -> np.ndarray:
    return np.random.default_rng(n).permutation(np.arange(n) % K)


def _side(key: str, x: np.ndarray, reference: np.ndarray | None, blocks: np.ndarray):
    method = registry.result_key(key).interval
    assert isinstance(method, Jackknife)
    return method.side(x, reference, blocks, K, SEED)


def _sets(seed: int, n: int, n_ref: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.normal(size=(n_ref, d)) * 1.1 + 0.2


def _pin_frechet(key: str, metric: Callable[[np.ndarray, np.ndarray], float]) -> None:
    for n, d in ((90, 8), (20, 32)):  # the d' x d' route, and the n x n route of a subset smaller than d
        x, ref = _sets(n, n, 120, d)
        blocks = _blocks(n)
        side = _side(key, x, ref, blocks)
        assert side.value() == pytest.approx(metric(x, ref), rel=REL)
        for j in LEFT_OUT:
            assert side.leave_outs[j] == pytest.approx(metric(x[blocks != j], ref), rel=REL)


def _pin_fid() -> None:
    _pin_frechet("fid", lambda x, ref: fid_from_features(x, FrechetState.from_features(ref)))


def _pin_fd_dinov2() -> None:
    _pin_frechet("fd_dinov2", fd_dinov2)


def _pin_fd_clip() -> None:
    _pin_frechet("fd_clip", fd_clip)


def _pin_sfid() -> None:
    _pin_frechet("sfid", sfid)


def _pin_fid_inf() -> None:
    """With the run's seed the side draws the metric's own subsets; a leave-out is the same fit over those draws less
    the block's rows (drawing afresh from the remaining rows would add the draws' noise to every leave-out)."""
    from sdeval.metrics.corpus import FidProjection, ReferenceRoot
    from sdeval.metrics.fid_inf import draws, fid_inf, fit

    x, ref = _sets(7, 90, 120, 8)
    blocks = _blocks(90)
    side = _side("fid_inf", x, ref, blocks)
    root = ReferenceRoot.from_features(ref)
    assert side.value() == pytest.approx(fid_inf(x, root, SEED)[0].value, rel=1e-9)
    for j in LEFT_OUT:
        kept = [r[blocks[r] != j] for r in draws(len(x), SEED)]
        values = [FidProjection(x[r], root).fid() for r in kept]
        assert side.leave_outs[j] == pytest.approx(fit(np.array([len(r) for r in kept]), np.array(values)).value,
                                                   rel=1e-9)  # fmt: skip


def _pin_vendi_all(key: str = "vendi_all") -> None:
    for n, d in ((60, 12), (30, 64)):  # the d x d Gram route, and the n x n route (fewer rows than dimensions)
        x = _sets(8, n, 1, d)[0]
        blocks = _blocks(n)
        side = _side(key, x, None, blocks)
        assert side.value() == pytest.approx(vendi_score(x), rel=REL)
        for j in LEFT_OUT:
            assert side.leave_outs[j] == pytest.approx(vendi_score(x[blocks != j]), rel=1e-10)


def _pin_density_coverage(key: str, which: int) -> None:
    """With the reference fixed, a leave-out is the metric of the remaining rows, to the last bit of the counts."""
    x, ref = _sets(9, 90, 40, 8)
    ref = ref * 2.0  # some real balls far from every row: coverage below 1
    blocks = _blocks(90)
    side = _side(key, x, ref, blocks)
    assert side.value() == density_coverage(x, ref)[which]
    for j in range(K):
        assert side.leave_outs[j] == pytest.approx(density_coverage(x[blocks != j], ref)[which], rel=REL)


def _pin_kid() -> None:
    """The side is the unbiased MMD² of all the rows against the reference rows (KID's estimator, metrics/kid.py),
    not the cell's mean over random subsets: with one subset as large as both sets, KID is the same number."""
    x, ref = _sets(1, 60, 60, 8)
    blocks = _blocks(60)
    side = _side("kid", x, ref, blocks)
    assert side.value() == pytest.approx(kid(x, ref, subsets=1, subset_size=60, seed=SEED)[0], rel=REL)
    _pin_kernel_leave_outs(side, x, blocks, lambda rows: _mmd2_unbiased(rows, ref))
    x, ref = _sets(2, 60, 80, 8)  # sets of different sizes: the estimator on the whole matrices
    side = _side("kid", x, ref, blocks)
    assert side.value() == pytest.approx(_mmd2_unbiased(x, ref), rel=REL)
    _pin_kernel_leave_outs(side, x, blocks, lambda rows: _mmd2_unbiased(rows, ref))


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    return mmd2_unbiased(polynomial_kernel(x, x), polynomial_kernel(x, y), polynomial_kernel(y, y))


def _pin_cmmd() -> None:
    x, ref = _sets(3, 60, 70, 8)
    x, ref = x / np.linalg.norm(x, axis=1, keepdims=True), ref / np.linalg.norm(ref, axis=1, keepdims=True)
    blocks = _blocks(60)
    side = _side("cmmd", x, ref, blocks)
    assert side.value() == pytest.approx(cmmd(x, ref), rel=REL)
    _pin_kernel_leave_outs(side, x, blocks, lambda rows: cmmd(rows, ref))


def _pin_kernel_leave_outs(side, x: np.ndarray, blocks: np.ndarray, metric: Callable[[np.ndarray], float]) -> None:
    """A KID/CMMD leave-out is the metric of the remaining rows less the reference-reference term, a constant that
    cancels in the spread and in paired differences (so it is not computed for each)."""
    shift = []
    for j in range(K):
        keep = np.arange(K) != j
        if j in LEFT_OUT:
            assert side.value(keep) == pytest.approx(metric(x[blocks != j]), rel=REL)
        shift.append(side.value(keep) - side.leave_outs[j])
    np.testing.assert_allclose(shift, shift[0], rtol=REL)


def _pin_recall() -> None:
    x, ref = _sets(4, 60, 50, 8)
    blocks = _blocks(60)
    side = _side("recall", x, ref, blocks)
    assert side.value() == precision_recall(x, ref, PR_NEIGHBOURHOOD)[1]
    for j in range(K):  # every leave-out, to the bit
        assert side.leave_outs[j] == precision_recall(x[blocks != j], ref, PR_NEIGHBOURHOOD)[1]


def _pin_is() -> None:
    """With the run's seed the side deals the rows into the estimator's own splits; a leave-out takes the block's rows
    out of those splits rather than re-dealing the rest (the re-deal's noise would swamp the spread)."""
    logits = np.random.default_rng(5).normal(size=(73, 12)) * 2.0  # splits of unequal size
    blocks = _blocks(73)
    side = _side("is", logits, None, blocks)
    assert side.value() == pytest.approx(inception_score(logits, IS_SPLITS, SEED)[0], rel=REL)
    split = split_of_rows(len(logits), IS_SPLITS, SEED)
    for j in LEFT_OUT:
        kept = blocks != j
        expected = np.mean([inception_score(logits[kept & (split == s)], 1)[0] for s in range(IS_SPLITS)])
        assert side.leave_outs[j] == pytest.approx(expected, rel=REL)


PINS = {
    "fid": _pin_fid,
    "fd_dinov2": _pin_fd_dinov2,
    "fd_clip": _pin_fd_clip,
    "sfid": _pin_sfid,
    "fid_inf": _pin_fid_inf,
    "vendi_all": _pin_vendi_all,
    "vendi_inception_all": lambda: _pin_vendi_all("vendi_inception_all"),  # the same side on Inception features
    "density": lambda: _pin_density_coverage("density", 0),
    "coverage": lambda: _pin_density_coverage("coverage", 1),
    "kid": _pin_kid,
    "cmmd": _pin_cmmd,
    "recall": _pin_recall,
    "is": _pin_is,
}


def _builtin_jackknife_keys() -> set[str]:
    return {
        result.key
        for result in registry.result_keys()
        if isinstance(result.interval, Jackknife)
        and result.interval.side.__module__.startswith("sdeval.metrics.builtin.")
    }


def test_every_jackknife_key_is_pinned():
    assert _builtin_jackknife_keys() == set(PINS)


@pytest.mark.parametrize("key", sorted(PINS))
def test_side_equals_its_metric(key):
    PINS[key]()


def test_precision_hits_average_to_precision():
    """Precision's interval is a bootstrap of each image's hit (a per-image value once the reference is fixed): their
    mean over any rows is the metric of those rows."""
    x, ref = _sets(6, 60, 50, 8)
    method = registry.result_key("precision").interval
    assert isinstance(method, Bootstrap)
    hits = method.from_state({"pool": x, "reference_pool": ref})
    assert hits.mean() == precision_recall(x, ref, PR_NEIGHBOURHOOD)[0]
    rows = _blocks(60) != 0
    assert hits[rows].mean() == precision_recall(x[rows], ref, PR_NEIGHBOURHOOD)[0]


@pytest.mark.parametrize("command", ["score", "merge"])
def test_ci_help_names_the_jackknife_keys_from_the_registry(monkeypatch, command):
    """--ci's help lists the jackknife keys as registered (it once listed them by hand, and drifted)."""
    method = Jackknife(("pool", "reference_pool"), lambda *args: None)
    extra = ResultKey("glow", "Glow", Direction.HIGHER, interval=method)
    keys = registry.result_keys()
    monkeypatch.setattr(registry, "result_keys", lambda: [*keys, extra])
    result = CliRunner().invoke(main, [command, "--help"], terminal_width=1000)
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if "--ci LEVEL" in line)
    listed = line.split("block jackknife for ")[1].split(";")[0].split(", ")
    assert listed == [*sorted(_builtin_jackknife_keys(), key=[r.key for r in keys].index), "glow"]
