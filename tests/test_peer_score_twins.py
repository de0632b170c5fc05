"""The fast twins of tests/test_peer_scores.py: each peer's own scoring functions fed the features sdeval extracted,
against sdeval's KID, IS and FID with that peer's `--protocol`, on a few photo crops (tests/photos.py).

The peers' networks are not run here (their features equal sdeval's to float32 rounding: tests/test_peer_routes.py,
tests/test_peer_scores.py); each peer gets sdeval's rows (float32, as its network would hand them) at the lowest
entry point that takes features:
- torch-fidelity: `kid_features_to_metric`, `isc_features_to_metric`, `fid_features_to_statistics` +
  `fid_statistics_to_metric` (the functions its `calculate_metrics` calls after extraction);
- clean-fid: `kernel_distance` and `fid_from_feats` (`compute_kid` / `compute_fid` after `get_folder_features`);
- pytorch-fid: `calculate_frechet_distance` on `calculate_activation_statistics`' mean and covariance;
- torchmetrics: KernelInceptionDistance, InceptionScore and FrechetInceptionDistance with an identity `feature`
  module, so that `update` takes the features and `compute` is its own.

sdeval scores through `score_folder` with the peer's `--protocol` (its KID subsets, sizes, seed and IS splits) and
`preprocess="legacy"` beside it, so every run reads the same cached features instead of running Inception per route.
Random draws: torch-fidelity's are sdeval's (RandomState(2020), same subsets and splits); clean-fid's global
`np.random` is seeded with sdeval's seed and handed the sets in the order that makes its draws sdeval's
(emulated); torchmetrics' KID takes subsets of both sets' size (every `torch.randperm` subset is the whole set), its
IS permutation is read back and sdeval's estimator handed the rows so that its own shuffle gives that order.

Sets: 10 generated crops (JPEG) each stored twice (20 rows, the fewest IS's 10 splits take with two rows per split)
and 6 reference crops (PNG) each stored twice (12 rows); the copies hit sdeval's content-addressed cache, so
Inception runs on 16 images once for the whole module. Tolerances: measured (docs/metrics.md, "Agreement with the
peers") with a margin.
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
# Measured relative differences (docs/metrics.md, "Agreement with the peers") with a margin: float32 kernels
# (torch-fidelity's and clean-fid's KID: 8.4e-5; torchmetrics' KID, float32 throughout: 4.4e-4; KID is near 0 here,
# so its relative difference is large for its absolute one) against sdeval's float64; IS 2e-16 (torch-fidelity,
# float64), 1.9e-8 (torchmetrics, float32); FID 2.0e-5 to 3.6e-5 (the square root of a rank-deficient product at
# this n: scipy's sqrtm or eigvals against sdeval's n x n route).
KID_REL, KID_TORCHMETRICS_REL, IS_F64_REL, IS_F32_REL, FID_REL = 2e-4, 1e-3, 1e-12, 1e-7, 1e-4


def _rel(ours: float, theirs: float) -> float:
    return abs(ours - theirs) / abs(theirs)


def _twice(files: list[Path], folder: Path) -> Path:
    folder.mkdir()
    for i, path in enumerate(files):
        for copy in range(2):
            shutil.copyfile(path, folder / f"{copy}{i:03d}{path.suffix}")
    return folder


@pytest.fixture(scope="module")
def twin(tmp_path_factory, inception_weights) -> dict[str, Any]:
    """Folders, sdeval's features of each (file-name order, float32) and the weights; Inception runs once."""
    root = tmp_path_factory.mktemp("peer-twins")
    gen = write_crops(root / "unique", 10, 64, seed=41, jpeg_quality=70)
    ref = write_crops(root / "unique", 6, 80, seed=42)
    sets = {"gen": _twice(gen, root / "gen"), "ref": _twice(ref, root / "ref")}
    sets["gen_few"] = root / "gen-few"  # as many generated rows as reference rows (torchmetrics' KID)
    sets["gen_few"].mkdir()
    for path in sorted(sets["gen"].iterdir())[:12]:
        shutil.copyfile(path, sets["gen_few"] / path.name)
    cache = FeatureCache(root / "cache")
    extractor = InceptionExtractor(inception_weights, "legacy")
    features: dict[str, dict[str, np.ndarray]] = {}
    for name in ("unique", "gen", "ref", "gen_few"):  # the first runs the network, the others read the cache
        folder = root / name if name == "unique" else sets[name]
        found = extract_folder(str(folder), [extractor], batch_size=16, workers=0, cache=cache, progress=False,
                               label="photos")  # fmt: skip
        order = np.argsort(found.paths)
        features[name] = {key: found.features[extractor.cache_key][key][order] for key in (POOL, LOGITS)}
    return {"sets": sets, "features": features, "cache": str(root / "cache"), "weights": inception_weights}


def _sdeval(twin: dict[str, Any], protocol: str, metrics: list[str], gen: str = "gen") -> dict[str, float]:
    results = score_folder(twin["sets"][gen], reference=twin["sets"]["ref"], metrics=metrics, protocol=protocol,
                           preprocess="legacy", inception_weights=twin["weights"], cache_dir=twin["cache"],
                           workers=0)  # fmt: skip
    return {key: entry["value"] for key, entry in results["cells"][0]["metrics"].items()}


def test_twin_sets_are_what_the_peers_get(twin):
    f = twin["features"]
    assert f["gen"][POOL].dtype == np.float32 and f["gen"][POOL].shape == (20, 2048)
    assert f["ref"][POOL].shape == (12, 2048) and f["gen_few"][POOL].shape == (12, 2048)
    np.testing.assert_array_equal(f["gen"][POOL][:10], f["gen"][POOL][10:])  # the copies: one row each, cached


def test_torch_fidelity_scoring_on_sdeval_features(twin):
    from torch_fidelity.metric_isc import isc_features_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric

    gen, ref = twin["features"]["gen"], twin["features"]["ref"]
    kid = kid_features_to_metric(torch.from_numpy(gen[POOL]), torch.from_numpy(ref[POOL]), kid_subset_size=12,
                                 verbose=False)["kernel_inception_distance_mean"]  # fmt: skip
    isc = isc_features_to_metric(torch.from_numpy(gen[LOGITS]), splits=10, rng_seed=SEED)["inception_score_mean"]
    ours = _sdeval(twin, "torch-fidelity", ["kid", "is"])
    assert _rel(ours["kid"], kid) < KID_REL, (ours["kid"], kid)
    assert _rel(ours["is"], isc) < IS_F64_REL, (ours["is"], isc)
    assert isc > 1.05 and abs(kid) > 1e-6  # non-trivial numbers


def test_clean_fid_scoring_on_sdeval_features(twin):
    from cleanfid.fid import kernel_distance

    gen, ref = twin["features"]["gen"][POOL], twin["features"]["ref"][POOL]
    # compute_kid(fdir1, fdir2) is kernel_distance(features1, features2), which draws from features2 first: the
    # reference as features1 makes its first draw the generated set's, as sdeval's is.
    np.random.seed(SEED)
    kid = kernel_distance(ref, gen)
    ours = _sdeval(twin, "clean-fid", ["kid"])
    assert _rel(ours["kid"], kid) < KID_REL, (ours["kid"], kid)
    assert abs(kid) > 1e-6


class _Features(torch.nn.Identity):
    """torchmetrics' `feature` module for rows already extracted (`num_features` spares FID its dummy image)."""

    num_features = 2048


def test_torchmetrics_scoring_on_sdeval_features(twin):
    from torchmetrics.image.inception import InceptionScore
    from torchmetrics.image.kid import KernelInceptionDistance

    f = twin["features"]
    with pytest.warns(UserWarning, match="save all extracted features"):  # KID's and IS's notice of their buffers
        kid_metric = KernelInceptionDistance(feature=_Features(), subsets=3, subset_size=12)
    kid_metric.update(torch.from_numpy(f["ref"][POOL]), real=True)
    kid_metric.update(torch.from_numpy(f["gen_few"][POOL]), real=False)
    kid = float(kid_metric.compute()[0])
    with pytest.warns(UserWarning, match="save all extracted features"):
        is_metric = InceptionScore(feature=torch.nn.Identity(), splits=10)
    is_metric.update(torch.from_numpy(f["gen"][LOGITS]))
    torch.manual_seed(SEED)
    isc = float(is_metric.compute()[0])
    torch.manual_seed(SEED)
    drawn = torch.randperm(20).numpy()  # its permutation, read back

    ours = _sdeval(twin, "torchmetrics", ["kid"], gen="gen_few")["kid"]
    assert _rel(ours, kid) < KID_TORCHMETRICS_REL, (ours, kid)
    assert abs(kid) > 1e-6

    # IS: sdeval's estimator handed the rows so that its seeded shuffle yields torchmetrics' order (torch.chunk's
    # splits are its contiguous parts when 10 divides n), and the scored IS is that estimator with its own draw.
    logits = f["gen"][LOGITS].astype(np.float64)
    arranged = np.empty_like(logits)
    arranged[np.random.RandomState(SEED).permutation(len(arranged))] = logits[drawn]
    emulated, _ = inception_score(arranged, splits=10, seed=SEED)
    assert _rel(emulated, isc) < IS_F32_REL, (emulated, isc)
    scored = _sdeval(twin, "torchmetrics", ["is"])["is"]
    assert scored == pytest.approx(inception_score(logits, splits=10, seed=SEED)[0], rel=1e-12)
    assert isc > 1.05


def _peer_fids(gen: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Each peer's FID from the same rows, by its own functions."""
    from cleanfid.fid import fid_from_feats
    from pytorch_fid.fid_score import calculate_frechet_distance
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torchmetrics.image.fid import FrechetInceptionDistance

    def statistics(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # calculate_activation_statistics' two lines
        return np.mean(rows, axis=0), np.cov(rows, rowvar=False)

    metric = FrechetInceptionDistance(feature=_Features())
    metric.update(torch.from_numpy(ref), real=True)
    metric.update(torch.from_numpy(gen), real=False)
    statistics_tf = [fid_features_to_statistics(torch.from_numpy(rows)) for rows in (gen, ref)]
    return {
        "torch-fidelity": fid_statistics_to_metric(*statistics_tf, verbose=False)["frechet_inception_distance"],
        "clean-fid": float(fid_from_feats(gen, ref)),
        "pytorch-fid": float(calculate_frechet_distance(*statistics(gen), *statistics(ref))),
        "torchmetrics": float(metric.compute()),
    }


@pytest.mark.slow  # 2048 x 2048 sqrtm (clean-fid, pytorch-fid) and eigvals per peer: 100-140 s on 2 loaded cores
def test_peers_fid_on_sdeval_features(twin):
    import warnings

    from scipy.linalg import LinAlgWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LinAlgWarning)  # scipy's sqrtm of a rank-deficient product: the case here
        theirs = _peer_fids(twin["features"]["gen"][POOL], twin["features"]["ref"][POOL])
    for peer, fid in theirs.items():
        ours = _sdeval(twin, peer, ["fid"])["fid"]
        assert _rel(ours, fid) < FID_REL, (peer, ours, fid)
        assert fid > 1e-3
