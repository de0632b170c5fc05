"""sdeval's Inception routes against the peers' own code, on real photographs, with the same random weights.

pytorch-fid (`--preprocess pytorch-fid`) and torchmetrics (`--preprocess torchmetrics`, its `antialias=True`
default) are run as the packages run: their own model classes, loaders and statistics. Features, means and
covariances are compared directly: FID below 2048 images rests on a singular covariance and says little about
agreement; the FID itself is compared at 2048 images in a test marked slow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from photos import write_crops

from sdeval.features.extract import extract_folder
from sdeval.features.inception import POOL, InceptionExtractor

SETS = [(128, None), (512, 85), (300, 40)]  # (size, JPEG quality or PNG): upscaled, downscaled, near 299


def _sdeval_pool(folder: Path, weights: str, route: str) -> np.ndarray:
    extractor = InceptionExtractor(weights, route)
    found = extract_folder(str(folder), [extractor], batch_size=8, workers=0, progress=False, label="photos")
    order = np.argsort(found.paths)
    return found.features[extractor.cache_key][POOL][order].astype(np.float64)


def _close(ours: np.ndarray, theirs: np.ndarray) -> float:
    """The largest relative difference of rows (features) or of the whole (statistics)."""
    return float(np.max(np.linalg.norm(ours - theirs, axis=-1) / np.linalg.norm(theirs, axis=-1)))


@pytest.fixture(scope="module")
def photo_sets(tmp_path_factory) -> dict[tuple[int, int | None], Path]:
    root = tmp_path_factory.mktemp("photos")
    return {(size, q): write_crops(root / f"{size}-{q}", 12, size, seed=size, jpeg_quality=q)[0].parent
            for size, q in SETS}  # fmt: skip


@pytest.fixture(scope="module")
def pytorch_fid_model(inception_weights, tmp_path_factory):
    """pytorch-fid's InceptionV3 as its loader builds it: the weights file where it looks for it."""
    import os

    from pytorch_fid.inception import InceptionV3

    home = tmp_path_factory.mktemp("torch-home")
    checkpoints = home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "pt_inception-2015-12-05-6726825d.pth").write_bytes(Path(inception_weights).read_bytes())
    old = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(home)
    try:
        model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    finally:
        if old is None:
            os.environ.pop("TORCH_HOME")
        else:
            os.environ["TORCH_HOME"] = old
    return model


@pytest.mark.parametrize(("size", "quality"), SETS)
def test_pytorch_fid_route_equals_pytorch_fid(photo_sets, pytorch_fid_model, inception_weights, size, quality):
    from pytorch_fid.fid_score import get_activations

    folder = photo_sets[(size, quality)]
    files = sorted(str(p) for p in folder.iterdir())
    with torch.inference_mode():
        theirs = get_activations(files, pytorch_fid_model, batch_size=4, dims=2048, device="cpu", num_workers=0)
    # pytorch-fid's calculate_activation_statistics, on those activations (not run twice).
    mu, sigma = np.mean(theirs, axis=0), np.cov(theirs, rowvar=False)
    ours = _sdeval_pool(folder, inception_weights, "pytorch-fid")
    # float32 rounding (sdeval folds the batch norms into the convolutions): far below any route difference.
    assert _close(ours, theirs) < 2e-5
    assert _close(ours.mean(0), mu) < 2e-5
    assert _close(np.cov(ours, rowvar=False).ravel(), sigma.ravel()) < 1e-4
    # The other routes are measurably elsewhere on the same photographs: the test can tell routes apart.
    assert _close(_sdeval_pool(folder, inception_weights, "legacy"), theirs) > 1e-3


@pytest.mark.parametrize(("size", "quality"), SETS)
def test_torchmetrics_route_equals_torchmetrics(photo_sets, inception_weights, size, quality):
    from PIL import Image
    from torchmetrics.image.fid import NoTrainInceptionV3

    folder = photo_sets[(size, quality)]
    files = sorted(folder.iterdir())
    network = NoTrainInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=inception_weights)
    batch = torch.stack([torch.from_numpy(np.asarray(Image.open(f).convert("RGB"))).permute(2, 0, 1) for f in files])
    with torch.inference_mode():
        theirs = network(batch).double().numpy()
    ours = _sdeval_pool(folder, inception_weights, "torchmetrics")
    assert _close(ours, theirs) < 2e-5
    if size == 512:  # antialiasing acts on a downscale only (128 px: none; 300 px: a 0.3 % shrink, 4e-4 apart)
        assert _close(_sdeval_pool(folder, inception_weights, "legacy"), theirs) > 1e-3


# About 12 s (three networks on 24 images): opt-in. Its fast twins stay in the default run: the torchmetrics route's
# features equal torchmetrics' network's above, and FID's formula against torch-fidelity's (test_peer_agreement.py).
@pytest.mark.slow
def test_torchmetrics_fid_equals_sdevals_on_the_torchmetrics_route(photo_sets, inception_weights):
    """torchmetrics' FID (float64 statistics) against sdeval's FID on the same features: the whole computation."""
    from PIL import Image
    from torchmetrics.image.fid import FrechetInceptionDistance

    from sdeval.metrics.fid import FrechetState, fid_from_features

    real, fake = photo_sets[(512, 85)], photo_sets[(300, 40)]

    def batch(folder: Path) -> torch.Tensor:
        images = [Image.open(f).convert("RGB").resize((320, 320)) for f in sorted(folder.iterdir())]
        return torch.stack([torch.from_numpy(np.asarray(i)).permute(2, 0, 1) for i in images])

    metric = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=inception_weights)
    metric.update(batch(real), real=True)
    metric.update(batch(fake), real=False)
    theirs = float(metric.compute())
    # The same 320 px images through sdeval's route.
    for name, folder in (("real", real), ("fake", fake)):
        target = folder.parent / f"{name}-320"
        target.mkdir(exist_ok=True)
        for f in sorted(folder.iterdir()):
            Image.open(f).convert("RGB").resize((320, 320)).save(target / f"{f.stem}.png")
    ours_real = _sdeval_pool(real.parent / "real-320", inception_weights, "torchmetrics")
    ours_fake = _sdeval_pool(fake.parent / "fake-320", inception_weights, "torchmetrics")
    ours = fid_from_features(ours_fake, FrechetState.from_features(ours_real))
    assert theirs > 0.1  # random weights: small distances, still far from 0
    # 12 images against a 2048-d covariance: both square roots are of a rank-deficient product; what is compared is
    # that the same features give the same number, to the rounding of a near-singular square root.
    assert ours == pytest.approx(theirs, rel=1e-3)
