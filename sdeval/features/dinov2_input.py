"""FD_DINOv2's feature input, declared apart from its extractor so that reading the declaration (the commands'
`--help`, `sdeval models`, config checks) loads neither torch nor transformers: the extractor module is imported
only when a run builds it."""

from __future__ import annotations

from sdeval.features.inputs import FeatureInput, InputOption

#: Name of the feature the extractor returns: float32 [N, D] CLS tokens after the final layer norm.
FEATURE_NAME = "dinov2"
#: ViT-L/14, the model of Stein et al. 2023 (dgm-eval's default `vitl14`).
DEFAULT_MODEL = "facebook/dinov2-large"


#: `--dinov2-model`, `reference build --dinov2`, protocol block `dinov2` (sdeval.features.inputs).
INPUT = FeatureInput(
    name="dinov2",
    label="DINOv2 model",
    feature=FEATURE_NAME,
    load="sdeval.features.dinov2:build",  # torch and transformers load when a run builds the extractor
    options=(
        InputOption(
            "dinov2_model",
            "DINOv2 for fd_dinov2",
            default_label=DEFAULT_MODEL,
            metavar="ID|PATH",
            path=True,
            reference_help="DINOv2 model for those features",
        ),
    ),
    stores="the DINOv2 features FD_DINOv2 needs",
    model_option="dinov2_model",
)
