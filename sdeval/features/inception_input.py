"""Inception-v3's pool features and logits, declared as a feature input (sdeval.features.inputs) apart from the
extractor (features/inception.py), so that reading the declaration (the commands' `--help`, `sdeval models`, config
checks) loads no torch: the extractor module is imported when a run builds it.

One extractor gives two outputs: the 2048-d pool3 features (FID, KID, precision/recall, density/coverage, ...),
which every reference stores with their Fréchet state and k-NN radii (`Output.frechet`, `.knn_radii`), and the
1008-d unbiased logits (the Inception Score, which reads no reference). Metrics read them by their needs
(`Need.INCEPTION_POOL`, `Need.INCEPTION_LOGITS`). Its options are the route and weights every command that extracts
features has (`--preprocess`, `--inception-weights`: FeatureOptions fields, set by the `--protocol` presets too), and
its extractor hosts sFID's spatial rows (features/inception_spatial.py) from the same pass.
"""

from __future__ import annotations

from sdeval.features.inputs import FeatureInput, Output

NAME = "inception"
POOL = "pool"  # 2048-d pool3 features, as the extractor returns them
LOGITS = "logits_unbiased"  # 1008-d logits without bias (the Inception Score, as torch-fidelity)

#: Protocol block `inception`, state arrays `pool` (and `reference_pool`) and `logits`.
INPUT = FeatureInput(
    name=NAME,
    label="Inception-v3",
    feature=POOL,
    load="sdeval.features.inception:build",  # torch and torch-fidelity load when a run builds the extractor
    outputs=(
        Output(POOL, "pool", need="inception_pool", frechet=True, knn_radii=True),
        Output(LOGITS, "logits", reference=False, need="inception_logits"),
    ),
    feature_options=("inception_weights", "preprocess"),
    always_stored=True,
    stores="the Inception pool features and their Fréchet state",
)
