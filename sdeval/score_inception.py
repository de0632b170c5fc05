"""The Inception side of `sdeval score`: FID, KID, Inception Score and precision/recall from pool features."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from sdeval.errors import SdevalError
from sdeval.features.inception import LOGITS, POOL
from sdeval.metrics.fid import FrechetState, fid_from_states
from sdeval.metrics.inception_score import inception_score
from sdeval.metrics.kid import kid
from sdeval.metrics.precision_recall import precision_recall

INCEPTION_METRICS = ("fid", "kid", "is", "pr")
#: The Inception metrics that compare IMAGES with a reference.
INCEPTION_TWO_SET = ("fid", "kid", "pr")
IS_SPLITS = 10
PR_NEIGHBOURHOOD = 3


def result_keys(name: str) -> tuple[str, ...]:
    """The `metrics` keys a metric fills (`pr` gives two)."""
    return ("precision", "recall") if name == "pr" else (name,)


def kid_subset_size(options: Any, n: int, n_reference: int | None) -> int | None:
    """--kid-subset-size, else min(1000, n, n_reference) (None without a reference)."""
    if options.kid_subset_size is not None:
        return options.kid_subset_size
    if n_reference is None:
        return None
    return min(1000, n, n_reference)


def inception_protocol(options: Any, n: int, n_reference: int | None) -> dict[str, Any]:
    return {
        "kid": {"subsets": options.kid_subsets, "subset_size": kid_subset_size(options, n, n_reference)},
        "is": {"splits": IS_SPLITS},
        "pr": {"k": PR_NEIGHBOURHOOD},
    }


def inception_metric(
    name: str,
    gen: dict[str, np.ndarray],
    real: dict[str, np.ndarray] | None,
    fid_state: FrechetState | None,
    options: Any,
    warns: list[str],
) -> dict[str, Any]:
    """{result key: entry} for one Inception metric of `gen` (against `real`, the reference's features,
    and its stored Fréchet state when it has one); raises SdevalError when it cannot be computed."""
    if name == "is":
        if len(gen[LOGITS]) < 2 * IS_SPLITS:
            # With one image per split each split's score is exactly 1 whatever the images: not a measurement.
            raise SdevalError(
                f"Inception Score needs at least 2 images per split ({2 * IS_SPLITS} for {IS_SPLITS} splits), "
                f"got {len(gen[LOGITS])}"
            )
        mean, std = inception_score(gen[LOGITS], IS_SPLITS, options.seed)
        return {"is": {"value": mean, "std": std}}
    if real is None:
        raise SdevalError(f"{name} needs a reference")
    if name == "fid":
        state = FrechetState.from_features(gen[POOL])
        ref_state = fid_state or FrechetState.from_features(real[POOL])
        value = fid_from_states(state, ref_state)
        small = min(state.n, ref_state.n)
        if small < state.dim:  # only said of a FID that was computed
            warns.append(
                f"FID: {small} images is fewer than the {state.dim} feature dimensions; the covariance is "
                "rank-deficient and FID is biased upward. Use at least 2048 images per set (10k+ to compare)."
            )
            warnings.warn(warns[-1], stacklevel=2)
        return {"fid": {"value": value, "n": state.n, "n_reference": ref_state.n}}
    if name == "kid":
        n_gen, n_ref = len(gen[POOL]), len(real[POOL])
        size = kid_subset_size(options, n_gen, n_ref)
        mean, std = kid(gen[POOL], real[POOL], options.kid_subsets, size, options.seed)
        entry = {"value": mean, "std": std, "subset_size": size, "subsets": options.kid_subsets}
        if size == n_gen == n_ref or options.kid_subsets == 1:
            # Every subset is the same draw: the std over subsets is rounding noise, not a spread.
            entry["std"] = None
            why = "one subset was drawn" if options.kid_subsets == 1 else f"the subset size {size} is both sets' size"
            warns.append(f"KID: no spread is reported because {why}, so every subset is the same")
        return {"kid": entry}
    if name == "pr":
        precision, recall = precision_recall(gen[POOL], real[POOL], PR_NEIGHBOURHOOD)
        return {"precision": {"value": precision}, "recall": {"value": recall}}
    raise SdevalError(f"unknown metric {name!r}")
