"""The built-in metrics on Inception features: FID, KID, the Inception Score, precision/recall, FID∞, density/coverage
(pool3 features and logits) and sFID (its spatial features).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sdeval.features import inception_spatial as spatial
from sdeval.metrics import corpus
from sdeval.metrics.builtin.cells import fid_side, require
from sdeval.metrics.density_coverage import CoverageSide, DensitySide, density_coverage
from sdeval.metrics.density_coverage import K as DC_NEIGHBOURHOOD
from sdeval.metrics.fid import FrechetState, ReferenceRoot, fid_from_features, reference_root, small_set_warning
from sdeval.metrics.fid_inf import FidInfSide, entry, fid_inf
from sdeval.metrics.inception_score import inception_score
from sdeval.metrics.kid import kid
from sdeval.metrics.precision_recall import precision_recall
from sdeval.metrics.registry import (
    Bootstrap,
    CellData,
    Direction,
    Jackknife,
    MetricOutput,
    MetricSkip,
    MetricSpec,
    Need,
    ResultKey,
    ScoreParams,
)
from sdeval.metrics.sfid import sfid

IS_SPLITS = 10
PR_NEIGHBOURHOOD = 3


# -- jackknife sides (metrics/corpus.py: each metric recomputed leaving a block of prompts out) ---------------------


def _kid_side(x: np.ndarray, reference: np.ndarray, blocks: np.ndarray, k: int, seed: int) -> Any:
    return corpus.kid_side(x, reference, blocks, k, seed)


def _recall_side(x: np.ndarray, reference: np.ndarray, blocks: np.ndarray, k: int, seed: int) -> Any:
    return corpus.RecallSide(x, reference, blocks, k, seed, PR_NEIGHBOURHOOD)


def _is_side(x: np.ndarray, reference: np.ndarray | None, blocks: np.ndarray, k: int, seed: int) -> Any:
    return corpus.InceptionScoreSide(x, blocks, k, seed, IS_SPLITS)


def _precision_hits(inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Each image's precision hit: with the reference fixed, it depends on that image alone (a per-image value)."""
    return corpus.precision_hits(inputs["pool"], inputs["reference_pool"], PR_NEIGHBOURHOOD)


_POOL = ("pool", "reference_pool")


# -- FID, KID, IS, precision/recall ---------------------------------------------------------------------------------


def _fid(cell: CellData) -> MetricOutput:
    ref = require(cell.reference, "a reference")
    pool = require(cell.pool, "Inception features")
    ref_state = ref.fid_state if ref.fid_state is not None else FrechetState.from_features(ref.pool)
    # The d x d route roots the reference, once per run (or never: a reference file stores its decomposition).
    rows = ref.pool
    root = None if rows is None else lambda: reference_root(rows)
    value = fid_from_features(pool, ref_state, reference_features=rows, root=root)
    warnings = []
    small = min(len(pool), ref_state.n)
    if small < ref_state.dim:  # said only of a FID that was computed
        warnings.append(
            f"FID: {small} images is fewer than the {ref_state.dim} feature dimensions; the covariance is "
            "rank-deficient and FID is biased upward. Use at least 2048 images per set (10k+ to compare)."
        )
    # A statistics file whose image count nobody declared (reference/stats.py) says 0: unknown, not its nominal count.
    n_reference = ref_state.n if ref.n else 0
    return MetricOutput({"fid": {"value": value, "n": len(pool), "n_reference": n_reference}}, warnings=warnings)


def kid_subset_size(params: ScoreParams, n: int, n_reference: int | None) -> int | None:
    """--kid-subset-size, else min(1000, n, n_reference) (None without a reference)."""
    if params.kid_subset_size is not None:
        return params.kid_subset_size
    return None if n_reference is None else min(1000, n, n_reference)


def _kid(cell: CellData) -> MetricOutput:
    ref = require(cell.reference, "a reference")
    pool, ref_pool = require(cell.pool, "Inception features"), require(ref.pool, "reference Inception features")
    size = kid_subset_size(cell.params, len(pool), len(ref_pool))
    assert size is not None  # None only without a reference
    mean, std = kid(pool, ref_pool, cell.params.kid_subsets, size, cell.params.seed)
    entry: dict[str, Any] = {"value": mean, "std": std, "subset_size": size, "subsets": cell.params.kid_subsets}
    warnings = []
    if size == len(pool) == len(ref_pool) or cell.params.kid_subsets == 1:
        # Every subset is the same draw: the std over subsets is rounding noise, not a spread.
        entry["std"] = None
        why = "one subset was drawn" if cell.params.kid_subsets == 1 else f"the subset size {size} is both sets' size"
        warnings.append(f"KID: no spread is reported because {why}, so every subset is the same")
    return MetricOutput({"kid": entry}, warnings=warnings)


def _is(cell: CellData) -> MetricOutput:
    logits = require(cell.logits, "Inception logits")
    if len(logits) < 2 * IS_SPLITS:
        # With one image per split each split's score is exactly 1 whatever the images: not a measurement.
        raise MetricSkip(
            f"Inception Score needs at least 2 images per split ({2 * IS_SPLITS} for {IS_SPLITS} splits), "
            f"got {len(logits)}"
        )
    mean, std = inception_score(logits, IS_SPLITS, cell.params.seed)
    return MetricOutput({"is": {"value": mean, "std": std}})


def _pr(cell: CellData) -> MetricOutput:
    ref = require(cell.reference, "a reference")
    pool, ref_pool = require(cell.pool, "Inception features"), require(ref.pool, "reference Inception features")
    precision, recall = precision_recall(pool, ref_pool, PR_NEIGHBOURHOOD)
    return MetricOutput({"precision": {"value": precision}, "recall": {"value": recall}})


def _kid_protocol(params: ScoreParams, cell: CellData) -> dict[str, Any]:
    n_ref = len(cell.reference.pool) if cell.reference is not None and cell.reference.pool is not None else None
    return {"kid": {"subsets": params.kid_subsets, "subset_size": kid_subset_size(params, cell.n, n_ref)}}


FID = MetricSpec(
    name="fid",
    description="Fréchet distance of Inception pool3 features to the reference (torch-fidelity's, exactly).",
    results=(ResultKey("fid", "FID", Direction.LOWER, (0.0, None), Jackknife(_POOL, fid_side)),),
    needs=frozenset({Need.INCEPTION_POOL, Need.REFERENCE}),
    compute=_fid,
    default=True,
    binds=("reference_declared",),  # a statistics reference's declared protocol (sdeval.reference.stats)
)  # fmt: skip
KID = MetricSpec(
    name="kid",
    description="Kernel Inception Distance: unbiased MMD² with the cubic kernel over random subsets.",
    results=(ResultKey("kid", "KID", Direction.LOWER, interval=Jackknife(_POOL, _kid_side)),),
    needs=frozenset({Need.INCEPTION_POOL, Need.REFERENCE}),
    compute=_kid,
    default=True,
    protocol=_kid_protocol,
    binds=("seed",),  # its random subsets are drawn from the scoring seed
)  # fmt: skip
IS = MetricSpec(
    name="is",
    description="Inception Score over 10 splits (needs no reference).",
    results=(ResultKey("is", "Inception Score", Direction.HIGHER, (1.0, None), Jackknife(("logits", None), _is_side)),),
    needs=frozenset({Need.INCEPTION_LOGITS}),
    compute=_is,
    default=True,
    protocol=lambda params, cell: {"is": {"splits": IS_SPLITS}},
    binds=("seed",),  # its splits are drawn from the scoring seed
)  # fmt: skip
PR = MetricSpec(
    name="pr",
    description="Improved precision and recall (Kynkäänniemi et al. 2019), k = 3, on pool3 features.",
    results=(
        ResultKey("precision", "Precision (k=3)", Direction.HIGHER, (0.0, 1.0),
                  Bootstrap(from_state=_precision_hits, state_inputs=_POOL)),
        ResultKey("recall", "Recall (k=3)", Direction.HIGHER, (0.0, 1.0), Jackknife(_POOL, _recall_side)),
    ),
    needs=frozenset({Need.INCEPTION_POOL, Need.REFERENCE}),
    compute=_pr,
    default=True,
    protocol=lambda params, cell: {"pr": {"k": PR_NEIGHBOURHOOD}},
)  # fmt: skip


# -- FID∞ (Chong & Forsyth 2020): FID extrapolated to infinitely many images ----------------------------------------


def _fid_inf_side(x: np.ndarray, reference: np.ndarray, blocks: np.ndarray, k: int, seed: int) -> Any:
    return FidInfSide(x, reference, blocks, k, seed)


def _fid_inf(cell: CellData) -> MetricOutput:
    ref = require(cell.reference, "a reference")
    pool = require(cell.pool, "Inception features")
    if ref.pool is not None:
        root, n_ref = reference_root(ref.pool), len(ref.pool)
    else:
        state = require(ref.fid_state, "the reference's Inception features")
        root, n_ref = ReferenceRoot.from_state(state), state.n
    if len(pool) < 10:
        raise MetricSkip(f"FID∞ needs at least 10 images (2 per draw at n / 5), got {len(pool)}")
    fitted, points = fid_inf(pool, root, cell.params.seed)
    return MetricOutput({"fid_inf": entry(fitted, points, len(pool), n_ref)})


FID_INF = MetricSpec(
    name="fid_inf",
    description="FID∞ (Chong & Forsyth 2020): FID extrapolated to infinitely many images from a line in 1/n.",
    # An extrapolated intercept may fall below 0 when FID is small: such values are not refused on load.
    results=(ResultKey("fid_inf", "FID∞", Direction.LOWER, (0.0, None), Jackknife(_POOL, _fid_inf_side),
                       strict_range=False, detail="(fit residual sd {residual_sd:.3g})"),),
    needs=frozenset({Need.INCEPTION_POOL, Need.REFERENCE}),
    compute=_fid_inf,
    protocol=lambda params, cell: {"fid_inf": {"sizes": "8 evenly spaced in 1/n from n/5 to n", "repeats": 5,
                                               "fit": "least squares of FID against 1/n over every draw"}},
    binds=("seed",),  # its subsample draws come from the scoring seed
)  # fmt: skip


# -- density and coverage (Naeem et al. 2020), on precision/recall's k-NN balls -------------------------------------


def _density_side(x: np.ndarray, reference: np.ndarray, blocks: np.ndarray, k: int, seed: int,
                  neighbourhood: int = DC_NEIGHBOURHOOD) -> Any:  # fmt: skip
    return DensitySide(x, reference, blocks, k, neighbourhood)


def _coverage_side(x: np.ndarray, reference: np.ndarray, blocks: np.ndarray, k: int, seed: int,
                   neighbourhood: int = DC_NEIGHBOURHOOD) -> Any:  # fmt: skip
    return CoverageSide(x, reference, blocks, k, neighbourhood)


def _dc(cell: CellData) -> MetricOutput:
    ref = require(cell.reference, "a reference")
    pool, ref_pool = require(cell.pool, "Inception features"), require(ref.pool, "reference Inception features")
    k = cell.params.dc_k
    density, coverage = density_coverage(pool, ref_pool, k)
    # The labels name the paper's k; an entry says its own where --dc-k chose another (its `detail`).
    other = {} if k == DC_NEIGHBOURHOOD else {"k": k}
    return MetricOutput({"density": {"value": density, **other}, "coverage": {"value": coverage, **other}})


#: The side reads the k the cell was scored with from its protocol block (`dc.k`), not the paper's default.
_DC_READS = (("k", "neighbourhood"),)

DC = MetricSpec(
    name="dc",
    description=f"Density and coverage (Naeem et al. 2020), k = {DC_NEIGHBOURHOOD} (--dc-k), on pool3 features: "
    "precision/recall's real k-NN balls counted (density) and covered (coverage).",
    results=(
        # Density is 1 on average for two sets from one distribution and may exceed it: no upper bound.
        ResultKey("density", f"Density (k={DC_NEIGHBOURHOOD})", Direction.HIGHER, (0.0, None),
                  Jackknife(_POOL, _density_side, reads=_DC_READS), detail="(at k={k})"),
        ResultKey("coverage", f"Coverage (k={DC_NEIGHBOURHOOD})", Direction.HIGHER, (0.0, 1.0),
                  Jackknife(_POOL, _coverage_side, reads=_DC_READS), detail="(at k={k})"),
    ),
    needs=frozenset({Need.INCEPTION_POOL, Need.REFERENCE}),
    compute=_dc,
    protocol=lambda params, cell: {"dc": {"k": params.dc_k, "ball": "distance <= radius"}},
)  # fmt: skip


# -- sFID (Nash et al. 2021): FID on Inception's spatial features (mixed_6/conv) ------------------------------------


_SPATIAL = (spatial.NAME, f"reference_{spatial.NAME}")


def _sfid(cell: CellData) -> MetricOutput:
    ref = require(cell.reference, "a reference")
    rows = require(cell.features.get(spatial.NAME), "Inception spatial features")
    ref_rows = require(ref.features.get(spatial.NAME), "the reference's Inception spatial features (`sdeval "
                        "reference build --inception-spatial`, or a reference folder)")  # fmt: skip
    warning = small_set_warning("sFID", min(len(rows), len(ref_rows)), spatial.DIM, subject="sFID")
    entry = {"value": sfid(rows, ref_rows), "n": len(rows), "n_reference": len(ref_rows)}
    return MetricOutput({"sfid": entry}, warnings=[warning] if warning else [])


def _sfid_protocol(params: ScoreParams, cell: CellData) -> dict[str, Any]:
    return {"sfid": {"layer": f"{spatial.LAYER} (torch-fidelity {spatial.MODULE}: conv, batch norm, ReLU)",
                     "channels": f"first {spatial.CHANNELS}", "size": f"{spatial.SIZE}x{spatial.SIZE}",
                     "dim": spatial.DIM, "order": spatial.ORDER}}  # fmt: skip


SFID = MetricSpec(
    name="sfid",
    description="sFID (Nash et al. 2021): Fréchet distance of Inception's spatial features (mixed_6/conv, first 7 "
    "channels, 2023-d, as guided-diffusion) to the reference, from the FID pass.",
    results=(ResultKey("sfid", "sFID", Direction.LOWER, (0.0, None), Jackknife(_SPATIAL, fid_side),
                       detail="({n} images)"),),
    # The Inception network's pass (its model slot, the reference's Inception protocol), and its spatial rows.
    needs=frozenset({Need.INCEPTION_POOL, Need.REFERENCE}),
    compute=_sfid,
    inputs=(spatial.NAME,),  # sdeval.features.inception_spatial:INPUT, served by the Inception extractor
    protocol=_sfid_protocol,
)  # fmt: skip
