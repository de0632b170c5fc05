"""The built-in metric on DINOv2 features (the `dinov2` feature input): FD_DINOv2."""

from __future__ import annotations

from sdeval.metrics import fd_dinov2
from sdeval.metrics.builtin.cells import fid_side, require
from sdeval.metrics.registry import (
    CellData,
    Direction,
    Jackknife,
    MetricOutput,
    MetricSpec,
    Need,
    ResultKey,
)


def _fd_dinov2(cell: CellData) -> MetricOutput:
    ref = require(cell.reference, "a reference")
    features = require(cell.features.get("dinov2"), "DINOv2 features")
    ref_features = require(ref.features.get("dinov2"),
                            "the reference's DINOv2 features (`sdeval reference build --dinov2`)")  # fmt: skip
    value = fd_dinov2.fd_dinov2(features, ref_features)
    warning = fd_dinov2.small_set_warning(min(len(features), len(ref_features)), features.shape[1])
    entry = {"value": value, "n": len(features), "n_reference": len(ref_features)}
    return MetricOutput({"fd_dinov2": entry}, warnings=[warning] if warning else [])


FD_DINOV2 = MetricSpec(
    name="fd_dinov2",
    description="FD_DINOv2 (Stein et al. 2023): Fréchet distance of DINOv2 ViT-L/14 CLS features to the reference.",
    results=(ResultKey("fd_dinov2", "FD_DINOv2", Direction.LOWER, (0.0, None),
                       Jackknife(("dinov2", "reference_dinov2"), fid_side)),),
    needs=frozenset({Need.REFERENCE}),
    compute=_fd_dinov2,
    inputs=("dinov2",),  # sdeval.features.dinov2_input:INPUT
)  # fmt: skip
