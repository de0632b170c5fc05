"""sdeval against torch-fidelity and clean-fid on the same images with the same random Inception weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch_fidelity
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

from sdeval.features.extract import extract_folder
from sdeval.features.inception import POOL, InceptionExtractor, resize_clean, resize_legacy
from sdeval.score import FeatureOptions, ScoreOptions, score
from sdeval.score.demo import make_image_set


def _options(weights, cache_dir=None, **kwargs):
    return FeatureOptions(inception_weights=weights, cache_dir=cache_dir, workers=0, progress=False, **kwargs)


def test_resized_entry_point_equals_library_forward(inception_weights, image_sets):
    extractor = InceptionExtractor(inception_weights)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(64, 64), (64, 64), (64, 64)]]
    uint8 = torch.stack([torch.from_numpy(x).permute(2, 0, 1) for x in images])
    with torch.inference_mode():
        pool_lib, logits_lib = extractor.network.forward(uint8)  # torch-fidelity's own path, uint8 in
    ours = extractor.extract(torch.stack([resize_legacy(x) for x in images]))
    np.testing.assert_allclose(ours[POOL].numpy(), pool_lib.numpy(), rtol=1e-4, atol=1e-4 * pool_lib.abs().max())
    np.testing.assert_allclose(ours["logits_unbiased"].numpy(), logits_lib.numpy(), rtol=1e-4, atol=1e-3)


def test_folded_network_equals_torch_fidelitys_unfolded_one(inception_weights):
    # Our network folds batch norms into the convolutions; torch-fidelity's own keeps them.
    library = FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(inception_weights)
    ).eval()
    extractor = InceptionExtractor(inception_weights)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in extractor.network.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in library.modules())
    uint8 = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (4, 3, 299, 299), dtype=np.uint8))
    with torch.inference_mode():
        pool_lib, logits_lib = library(uint8)
    ours = extractor.extract(uint8.float())
    assert float((ours[POOL] - pool_lib).norm() / pool_lib.norm()) < 1e-5
    assert float((ours["logits_unbiased"] - logits_lib).norm() / logits_lib.norm()) < 1e-5


def test_extractors_of_one_weights_file_share_one_network(inception_weights, tmp_path):
    """A process builds each network once per weights file and device (the Evaluator at each evaluation step,
    score_folder in a loop): a second extractor reuses it, with the features a fresh build gives; other weights get
    their own."""
    from sdeval.features.inception import forget_built_networks
    from sdeval.features.random_weights import save_random_inception_weights

    first, second = InceptionExtractor(inception_weights), InceptionExtractor(inception_weights)
    assert first.network is second.network
    other = tmp_path / "other.pth"
    save_random_inception_weights(other, seed=1)
    assert InceptionExtractor(other).network is not first.network
    forget_built_networks()
    fresh = InceptionExtractor(inception_weights)
    assert fresh.network is not first.network
    batch = torch.from_numpy(np.random.default_rng(2).uniform(0, 255, (2, 3, 299, 299)).astype(np.float32))
    shared, built = second.extract(batch), fresh.extract(batch)
    assert all(torch.equal(shared[name], built[name]) for name in shared)


@pytest.fixture(scope="module")
def small_sets(tmp_path_factory) -> dict:
    """The fast twins' sets: 20 images each, the fewest Inception Score's 10 splits take; and a feature cache that
    sdeval's runs on them share (torch-fidelity's agreement fills it, the FID of a folder with itself reads it)."""
    root = tmp_path_factory.mktemp("small")
    make_image_set(root / "gen", 20, seed=1, style="blobs")
    make_image_set(root / "ref", 20, seed=2, style="spots")
    return {"gen": str(root / "gen"), "ref": str(root / "ref"), "cache": str(root / "cache")}


def _assert_agrees_with_torch_fidelity(weights: str, sets: dict, kid_subset_size: int) -> None:
    features = _options(weights, sets.get("cache"))
    ours = score(ScoreOptions(sets["gen"], sets["ref"], kid_subset_size=kid_subset_size, features=features))
    theirs = torch_fidelity.calculate_metrics(
        input1=sets["gen"], input2=sets["ref"], cuda=False, isc=True, fid=True, kid=True, prc=True,
        kid_subset_size=kid_subset_size, feature_extractor="inception-v3-compat", feature_layer_prc="2048",
        feature_extractor_weights_path=weights, verbose=False, save_cpu_ram=True,
    )  # fmt: skip
    m = ours["cells"][0]["metrics"]
    assert m["fid"]["value"] > 1.0  # the two sets really differ
    assert m["fid"]["value"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-4)
    kid_std = theirs["kernel_inception_distance_std"]
    assert abs(m["kid"]["value"] - theirs["kernel_inception_distance_mean"]) <= max(kid_std, 1e-6)
    assert abs(m["is"]["value"] - theirs["inception_score_mean"]) <= max(theirs["inception_score_std"], 1e-6)
    assert m["is"]["value"] > 1.05  # non-trivial logits
    assert m["precision"]["value"] == pytest.approx(theirs["precision"], abs=1e-6)
    assert m["recall"]["value"] == pytest.approx(theirs["recall"], abs=1e-6)


@pytest.mark.slow
def test_scores_agree_with_torch_fidelity(inception_weights, image_sets):
    _assert_agrees_with_torch_fidelity(inception_weights, image_sets, kid_subset_size=30)


def test_scores_agree_with_torch_fidelity_on_few_images(inception_weights, small_sets):
    _assert_agrees_with_torch_fidelity(inception_weights, small_sets, kid_subset_size=10)


def test_fid_of_a_folder_with_itself_is_zero(inception_weights, small_sets):
    features = _options(inception_weights, small_sets["cache"])
    results = score(ScoreOptions(small_sets["gen"], small_sets["gen"], metrics=("fid",), features=features))
    assert results["cells"][0]["metrics"]["fid"]["value"] == pytest.approx(0.0, abs=1e-6)


# 26 s: clean-fid's whole pipeline. Its fast twins: test_clean_resize_is_clean_fids_resizer below (the resize, bit for
# bit) and tests/test_peer_score_twins.py (clean-fid's own KID and FID on sdeval's features).
@pytest.mark.slow
def test_clean_mode_agrees_with_clean_fid(inception_weights, image_sets):
    cleanfid = pytest.importorskip("cleanfid.fid")
    extractor = InceptionExtractor(inception_weights, preprocess="clean")

    class Float299(torch.nn.Module):  # clean-fid hands the model float 0..255 299x299 batches
        def forward(self, x):
            return extractor.extract(x)[POOL]

    theirs = cleanfid.compute_fid(
        image_sets["gen"], image_sets["ref"], mode="clean", custom_feat_extractor=Float299(),
        device=torch.device("cpu"), num_workers=0, batch_size=16, verbose=False,
    )  # fmt: skip
    ours = score(
        ScoreOptions(
            image_sets["gen"], image_sets["ref"], metrics=("fid",),
            features=_options(inception_weights, preprocess="clean"),
        )
    )  # fmt: skip
    assert ours["cells"][0]["metrics"]["fid"]["value"] == pytest.approx(theirs, rel=1e-4)
    assert ours["cells"][0]["protocol"]["inception"]["preprocess"] == "clean"


def test_clean_resize_is_clean_fids_resizer():
    from cleanfid.resize import build_resizer

    rgb = np.random.default_rng(1).integers(0, 256, (97, 131, 3), dtype=np.uint8)
    expected = build_resizer("clean")(rgb).transpose(2, 0, 1)
    np.testing.assert_array_equal(resize_clean(rgb).numpy(), expected)


def test_features_do_not_depend_on_batch_size_or_workers(inception_weights, small_sets):
    """20 images: batches of 7 leave a short last one, a batch of 64 takes them all."""
    extractor = InceptionExtractor(inception_weights)
    runs = [
        extract_folder(small_sets["gen"], [extractor], batch_size=b, workers=w, progress=False)
        for b, w in [(1, 0), (7, 2), (64, 1)]
    ]
    base = runs[0].features[extractor.cache_key][POOL]
    for run in runs[1:]:
        assert run.paths == runs[0].paths
        np.testing.assert_allclose(run.features[extractor.cache_key][POOL], base, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size", [(256, 256), (512, 384), (300, 299), (64, 97), (1, 5), (299, 299)])
def test_legacy_resize_is_torch_fidelitys_bit_for_bit(size):
    """sdeval's legacy resize (interpolating each row along x once, then gathering rows) gives torch-fidelity's TF1
    bilinear resize exactly: up, down, non-square, one-pixel and identity sizes."""
    rgb = np.random.default_rng(sum(size)).integers(0, 256, (*size, 3), dtype=np.uint8)
    x = torch.tensor(rgb).permute(2, 0, 1).unsqueeze(0).to(torch.float32)
    theirs = interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)[0]
    assert torch.equal(resize_legacy(rgb), theirs)
