"""Each peer's own KID and IS against sdeval's with that peer's `--protocol`, on real photographs, with the same
random Inception weights (tests/photos.py: the sample photographs the installed packages ship).

- torch-fidelity: its own steps (the feature extractor its `calculate_metrics` builds, its featuresdict, its KID and
  IS functions), KID over 100 subsets drawn by `np.random.RandomState(2020)` and IS over 10 splits shuffled by it:
  sdeval draws the same subsets and splits (the preset's seed), so the comparison is of the same draws.
- clean-fid (no IS): `compute_kid`'s own two steps (`get_folder_features`, `kernel_distance`), its network handed the
  same weights (its TorchScript file cannot be fetched here). Its subsets come from the unseeded global `np.random`:
  the test seeds it with sdeval's seed and hands the folders in the order that makes its draws sdeval's (generated
  set first, then reference; `np.random.choice` is `RandomState.choice` on the same stream): emulated, not whole sets.
- torchmetrics: its KernelInceptionDistance and InceptionScore with its own network (NoTrainInceptionV3) on uint8
  batches. KID with the subset size equal to both sets, so every `torch.randperm` subset is the whole set; IS by
  emulating its draw: torch is seeded, its permutation read back, and sdeval's estimator handed the rows so that its
  own shuffle gives that order.

Features, means and covariances of torch-fidelity's and clean-fid's routes are compared directly (pytorch-fid's and
torchmetrics' are in tests/test_peer_routes.py). These tests run 20 generated and 8 reference crops (each peer's
whole pipeline: slow), the last one more crops; tests/test_peer_score_twins.py is their fast twin (each peer's scoring
on sdeval's features). Tolerances: KID_REL and IS_REL below, from the measured differences.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from photos import write_crops

from sdeval import score_folder
from sdeval.features.cache import FeatureCache
from sdeval.features.extract import extract_folder
from sdeval.features.inception import LOGITS, POOL, InceptionExtractor
from sdeval.metrics.inception_score import inception_score

SEED = 2020  # the presets' scoring seed (torch-fidelity's)
# Measured on 2026-12-07 (relative): KID torch-fidelity 2.4e-5, clean-fid 2.9e-5, torchmetrics 2.2e-6 (KID is near 0
# here: about -2e-3); IS torch-fidelity 1.7e-8, torchmetrics 7.4e-8. The features differ by float32 rounding (sdeval's
# folded batch norms); torch-fidelity and torchmetrics compute KID in float32, torch-fidelity IS in float64,
# torchmetrics IS in float32, clean-fid KID in float32 (its features' dtype). The bounds leave a margin of about 3x.
KID_REL, IS_REL = 1e-4, 1e-6


def _close(ours: np.ndarray, theirs: np.ndarray) -> float:
    """The largest relative difference of rows (features) or of the whole (statistics)."""
    return float(np.max(np.linalg.norm(ours - theirs, axis=-1) / np.linalg.norm(theirs, axis=-1)))


def _rel(ours: float, theirs: float) -> float:
    return abs(ours - theirs) / abs(theirs)


def _photo_sets(root: Path, n_gen: int, n_ref: int) -> dict[str, Path]:
    """Generated crops (JPEG, 96 px), reference crops (PNG, 128 px), and the first n_ref generated crops alone (the
    same files: sdeval's feature cache serves them)."""
    gen = write_crops(root / "gen", n_gen, 96, seed=31, jpeg_quality=70)[0].parent
    ref = write_crops(root / "ref", n_ref, 128, seed=32)[0].parent
    few = root / "gen-few"
    few.mkdir()
    for path in sorted(gen.iterdir())[:n_ref]:
        shutil.copyfile(path, few / path.name)
    return {"gen": gen, "ref": ref, "gen_few": few, "cache": root / "cache"}


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    return _photo_sets(tmp_path_factory.mktemp("peer-scores"), 20, 8)


def _sdeval_features(folder: Path, weights: str, route: str, cache: Path) -> dict[str, np.ndarray]:
    """sdeval's pool features and logits in file-name order, stored in the cache the scoring runs then read."""
    extractor = InceptionExtractor(weights, route)
    found = extract_folder(str(folder), [extractor], batch_size=8, workers=0, cache=FeatureCache(cache),
                           progress=False, label="photos")  # fmt: skip
    order = np.argsort(found.paths)
    return {name: found.features[extractor.cache_key][name][order].astype(np.float64) for name in (POOL, LOGITS)}


def _sdeval_scores(sets: dict[str, Path], weights: str, protocol: str, metrics: list[str], gen: str = "gen") -> dict:
    results = score_folder(sets[gen], reference=sets["ref"], metrics=metrics, protocol=protocol,
                           inception_weights=weights, cache_dir=str(sets["cache"]), workers=0)  # fmt: skip
    return {key: entry["value"] for key, entry in results["cells"][0]["metrics"].items()}


def _assert_statistics_agree(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert _close(ours, theirs) < 2e-5
    assert _close(ours.mean(0), theirs.mean(0)) < 2e-5
    assert _close(np.cov(ours, rowvar=False).ravel(), np.cov(theirs, rowvar=False).ravel()) < 1e-4


# -- torch-fidelity ----------------------------------------------------------------------------------------------


def _check_torch_fidelity(sets: dict[str, Path], weights: str) -> None:
    from torch_fidelity.metric_isc import isc_featuresdict_to_metric
    from torch_fidelity.metric_kid import kid_featuresdict_to_metric
    from torch_fidelity.utils import create_feature_extractor, extract_featuresdict_from_input_id_cached

    n_ref = len(list(sets["ref"].iterdir()))
    kwargs: dict[str, Any] = dict(input1=str(sets["gen"]), input2=str(sets["ref"]), cuda=False, isc=True, kid=True,
                  kid_subset_size=n_ref, feature_extractor_weights_path=weights, verbose=False, cache=False,
                  save_cpu_ram=True, batch_size=8)  # fmt: skip
    # calculate_metrics' own steps, so that the features it scores are at hand.
    network = create_feature_extractor("inception-v3-compat", ["2048", "logits_unbiased"], **kwargs)
    gen = extract_featuresdict_from_input_id_cached(1, network, **kwargs)
    ref = extract_featuresdict_from_input_id_cached(2, network, **kwargs)
    kid = kid_featuresdict_to_metric(gen, ref, "2048", **kwargs)["kernel_inception_distance_mean"]
    isc = isc_featuresdict_to_metric(gen, "logits_unbiased", **kwargs)["inception_score_mean"]

    ours_gen = _sdeval_features(sets["gen"], weights, "legacy", sets["cache"])
    ours_ref = _sdeval_features(sets["ref"], weights, "legacy", sets["cache"])
    _assert_statistics_agree(ours_gen[POOL], gen["2048"].double().numpy())
    _assert_statistics_agree(ours_ref[POOL], ref["2048"].double().numpy())
    assert _close(ours_gen[LOGITS], gen["logits_unbiased"].double().numpy()) < 2e-5

    scores = _sdeval_scores(sets, weights, "torch-fidelity", ["kid", "is"])
    assert _rel(scores["kid"], kid) < KID_REL, (scores["kid"], kid)
    assert _rel(scores["is"], isc) < IS_REL, (scores["is"], isc)
    assert isc > 1.05 and abs(kid) > 1e-6  # non-trivial numbers


@pytest.mark.slow  # 70-105 s wall on the shared 2-core machine: no fast twin sized yet
def test_torch_fidelity_kid_and_is_on_photographs(photos, inception_weights):
    _check_torch_fidelity(photos, inception_weights)


# -- clean-fid ---------------------------------------------------------------------------------------------------


def _check_clean_fid(sets: dict[str, Path], weights: str) -> None:
    from cleanfid.fid import get_folder_features, kernel_distance

    extractor = InceptionExtractor(weights, preprocess="clean")

    class Float299(torch.nn.Module):  # clean-fid hands its model float 0..255 batches at 299 x 299
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return extractor.extract(x)[POOL]

    def features(folder: Path) -> np.ndarray:
        return get_folder_features(str(folder), Float299(), num_workers=0, batch_size=8, device=torch.device("cpu"),
                                   mode="clean", verbose=False)  # fmt: skip

    gen, ref = features(sets["gen"]), features(sets["ref"])
    # compute_kid(fdir1, fdir2) is kernel_distance(features1, features2), which draws from features2 first: the
    # reference as fdir1 makes its first draw the generated set's, as sdeval's is.
    np.random.seed(SEED)
    kid = kernel_distance(ref, gen)

    ours_gen = _sdeval_features(sets["gen"], weights, "clean", sets["cache"])
    ours_ref = _sdeval_features(sets["ref"], weights, "clean", sets["cache"])
    _assert_statistics_agree(ours_gen[POOL], gen.astype(np.float64))
    _assert_statistics_agree(ours_ref[POOL], ref.astype(np.float64))

    # clean-fid's preset has no seed of its own: sdeval's default (2020) is the one the test seeded numpy with.
    scores = _sdeval_scores(sets, weights, "clean-fid", ["kid"])
    assert _rel(scores["kid"], kid) < KID_REL, (scores["kid"], kid)
    assert abs(kid) > 1e-6


@pytest.mark.slow  # 70-105 s wall on the shared 2-core machine: no fast twin sized yet
def test_clean_fid_kid_on_photographs(photos, inception_weights):
    _check_clean_fid(photos, inception_weights)


# -- torchmetrics ------------------------------------------------------------------------------------------------


def _uint8_batch(folder: Path) -> torch.Tensor:
    from PIL import Image

    images = [np.asarray(Image.open(f).convert("RGB")) for f in sorted(folder.iterdir())]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def _check_torchmetrics(sets: dict[str, Path], weights: str) -> None:
    from torchmetrics.image.fid import NoTrainInceptionV3
    from torchmetrics.image.inception import InceptionScore
    from torchmetrics.image.kid import KernelInceptionDistance

    n_ref = len(list(sets["ref"].iterdir()))
    pool_net = NoTrainInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=weights)
    # KID with subsets the size of both sets: every torch.randperm subset is the whole set.
    kid_metric = KernelInceptionDistance(feature=pool_net, subsets=3, subset_size=n_ref)
    kid_metric.update(_uint8_batch(sets["ref"]), real=True)
    kid_metric.update(_uint8_batch(sets["gen_few"]), real=False)
    kid = float(kid_metric.compute()[0])

    logits_net = NoTrainInceptionV3("inception-v3-compat", ["logits_unbiased"], feature_extractor_weights_path=weights)
    is_metric = InceptionScore(feature=logits_net, splits=10)
    is_metric.update(_uint8_batch(sets["gen"]))
    torch.manual_seed(SEED)
    isc = float(is_metric.compute()[0])
    torch.manual_seed(SEED)
    drawn = torch.randperm(len(list(sets["gen"].iterdir()))).numpy()  # its permutation, read back

    ours = _sdeval_features(sets["gen"], weights, "torchmetrics", sets["cache"])
    _sdeval_features(sets["ref"], weights, "torchmetrics", sets["cache"])
    scores = _sdeval_scores(sets, weights, "torchmetrics", ["kid"], gen="gen_few")
    assert _rel(scores["kid"], kid) < KID_REL, (scores["kid"], kid)
    assert abs(kid) > 1e-6

    # IS: sdeval's estimator on its features of the torchmetrics route, the rows arranged so that its seeded shuffle
    # yields torchmetrics' order (torch.chunk's splits are its contiguous parts when 10 divides n).
    arranged = np.empty_like(ours[LOGITS])
    arranged[np.random.RandomState(SEED).permutation(len(arranged))] = ours[LOGITS][drawn]
    emulated, _ = inception_score(arranged, splits=10, seed=SEED)
    assert _rel(emulated, isc) < IS_REL, (emulated, isc)
    # and the scored IS is that estimator on those features, with sdeval's own draw
    scored = _sdeval_scores(sets, weights, "torchmetrics", ["is"])["is"]
    assert scored == pytest.approx(inception_score(ours[LOGITS], splits=10, seed=SEED)[0], rel=1e-6)
    assert isc > 1.05


@pytest.mark.slow  # 70-105 s wall on the shared 2-core machine: no fast twin sized yet
def test_torchmetrics_kid_and_is_on_photographs(photos, inception_weights):
    _check_torchmetrics(photos, inception_weights)


@pytest.mark.slow
@pytest.mark.parametrize("peer", [_check_torch_fidelity, _check_clean_fid, _check_torchmetrics],
                         ids=["torch-fidelity", "clean-fid", "torchmetrics"])  # fmt: skip
def test_peer_kid_and_is_on_more_photographs(tmp_path, inception_weights, peer):
    peer(_photo_sets(tmp_path, 100, 60), inception_weights)


# -- FID at n >= 2048 --------------------------------------------------------------------------------------------


@pytest.mark.slow  # each peer's own network and sdeval's on 2 x n images: about an hour of CPU per peer at n = 2048
def test_peers_fid_at_full_rank(tmp_path, inception_weights):
    """FID where the covariance product is well conditioned (n >= 2048, more than the 2048 dimensions): each peer's
    own pipeline (benchmarks/peer_fids.py) against sdeval with its `--protocol` (float64 statistics; torchmetrics
    returns its FID as float32).
    SDEVAL_PEER_FID_N sets n (a small n proves the test runs; its bound is then the rank-deficient one)."""
    import os

    from benchmarks.peer_fids import compare

    n = int(os.environ.get("SDEVAL_PEER_FID_N", "2048"))
    # small crops: the network sees 299 x 299 whatever the size
    gen = write_crops(tmp_path / "gen", n, 32, seed=51, jpeg_quality=70)[0].parent
    ref = write_crops(tmp_path / "ref", n, 32, seed=52)[0].parent
    for row in compare(str(gen), str(ref), inception_weights):
        assert row["sdeval_vs_peer"] < (1e-4 if n >= 2048 else 1e-3), row
