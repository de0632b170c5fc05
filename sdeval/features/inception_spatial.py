"""sFID's spatial features (Nash et al. 2021), declared as a feature input and served by the Inception extractor.

guided-diffusion's evaluator (openai/guided-diffusion `evaluations/evaluator.py`) reads TF Inception's tensor
`mixed_6/conv:0`, [N, 17, 17, 192]: the output of that scope's last op, the ReLU after its convolution and batch norm.
It keeps the first 7 channels and flattens each image's [17, 17, 7] in numpy's row-major order to 2023 values.
torch-fidelity's TF-to-torch conversion map (toshas/torch-fidelity `convert_inception_weights.py`) loads
`mixed_6/conv/conv2d_params` and `mixed_6/conv/batchnorm` into `Mixed_6d.branch1x1`, a BasicConv2d (conv, batch norm,
ReLU): its output is that tensor in NCHW, taken here by a forward hook during the pool pass (features/inception.py).

The declaration gives the rows a state array, a reference flag (`sdeval reference build --inception-spatial`), a
protocol block, the merge rule and the metric's inputs (sdeval.features.inputs); its host is the Inception input
(features/inception_input.py), whose extractor is built with its spatial output on when sFID is asked for, so the
network runs once. It loads no torch: reading the declarations (`--help`, `sdeval models`) stays light.
"""

from __future__ import annotations

from sdeval.features.inputs import FeatureInput

NAME = "inception_spatial"
#: The feature name the Inception extractor returns the rows under.
FEATURE = "spatial"
LAYER = "mixed_6/conv"  # TF Inception 2015's tensor name
MODULE = "Mixed_6d.branch1x1"  # torch-fidelity's module computing it (conv, batch norm, ReLU)
CHANNELS = 7
SIZE = 17
DIM = CHANNELS * SIZE * SIZE  # 2023
ORDER = "row, column, channel (TF NHWC, as guided-diffusion flattens it)"


#: `reference build --inception-spatial`, state arrays `inception_spatial` / `reference_inception_spatial`.
INPUT = FeatureInput(
    name=NAME,
    label="Inception (mixed_6/conv)",
    feature=FEATURE,
    host="inception",  # the Inception extractor, built with `hosted=("inception_spatial",)`
    stores=f"the Inception spatial features sFID needs ({LAYER}, first {CHANNELS} channels, {DIM}-d)",
)
