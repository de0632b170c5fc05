"""sFID: the spatial feature against torch-fidelity's own layers run by hand, the distance against scipy in float64,
and the metric through every stage by its registration alone (`sdeval metrics`, reference build, score --ci, the
table, shards and merge, the Evaluator, the report and the gate). Random Inception weights; the runs share a
feature cache, so only the first of them runs the network."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import write_prompted_images
from PIL import Image
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

from sdeval.cli import main
from sdeval.features import inception_spatial
from sdeval.features.cache import FeatureCache
from sdeval.features.extract import extract_folder
from sdeval.features.inception import LOGITS, POOL, SPATIAL, InceptionExtractor, resize_legacy
from sdeval.metrics.sfid import sfid
from sdeval.reference.files import load_reference
from sdeval.score.demo import make_image_set

PROMPTS = ["a red cube", "a cat", "a blue sphere", "a dog", "a green cone", "a bird"]
SEEDS = 2


def _run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def _frechet(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook Fréchet distance in float64 with scipy's sqrtm (guided-diffusion's route). Where the first set
    has fewer rows than dimensions, tr sqrt(S1 S2) is taken as tr sqrtm(A^T S2 A) with S1 = A A^T (the same nonzero
    eigenvalues), so a 2023-d covariance costs no 2023 x 2023 sqrtm."""
    from scipy import linalg

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    if len(a) < a.shape[1]:
        factor = (a - a.mean(0)).T / np.sqrt(len(a) - 1)
        trace_root = np.trace(linalg.sqrtm(factor.T @ s2 @ factor).real)
    else:
        trace_root = np.trace(linalg.sqrtm(s1 @ s2).real)
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * trace_root)


# -- the feature and the distance, each against an independent computation ------------------------------------


@pytest.fixture(scope="module")
def extractors(inception_weights) -> tuple[InceptionExtractor, InceptionExtractor]:
    """The extractor without and with the spatial rows, on one network (loaded once)."""
    plain, spatial = InceptionExtractor(inception_weights), InceptionExtractor(inception_weights, spatial=True)
    plain._network = spatial.network
    return plain, spatial


def test_spatial_rows_are_mixed_6_conv_run_by_torch_fidelitys_own_layers(inception_weights, extractors):
    """torch-fidelity's network (batch norms unfolded), its layers called by hand up to `Mixed_6d.branch1x1` (TF's
    `mixed_6/conv`), then guided-diffusion's numpy: NHWC, `[..., :7]`, reshape to [N, 2023]."""
    library = FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(inception_weights)
    ).eval()
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (48 + 8 * i, 64, 3), dtype=np.uint8) for i in range(3)]
    batch = torch.stack([resize_legacy(x) for x in images])
    with torch.inference_mode():
        x = (batch - 128) / 128
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_1", "Conv2d_3b_1x1",
                     "Conv2d_4a_3x3", "MaxPool_2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
                     "Mixed_6c"):  # fmt: skip
            x = getattr(library, name)(x)
        mixed_6_conv = library.Mixed_6d.branch1x1(x).numpy()
    assert mixed_6_conv.shape == (3, 192, 17, 17)  # TF's [N, 17, 17, 192], channels first
    expected = mixed_6_conv.transpose(0, 2, 3, 1)[..., :7].reshape(3, -1)
    without, spatial = extractors
    got = spatial.extract(batch)
    assert got[SPATIAL].shape == (3, inception_spatial.DIM) == (3, 2023) and got[SPATIAL].dtype == torch.float32
    # Ours folds the batch norms into the convolutions and runs channels-last: float32 rounding apart.
    assert float(np.linalg.norm(got[SPATIAL].numpy() - expected) / np.linalg.norm(expected)) < 1e-5
    assert np.all(got[SPATIAL].numpy() >= 0)  # after the ReLU, as TF's tensor is
    plain = without.extract(batch)  # the same network, no hook
    assert set(plain) == {POOL, LOGITS} and torch.equal(plain[POOL], got[POOL])


def test_sfid_equals_scipy_in_float64_and_is_zero_on_itself():
    rng = np.random.default_rng(0)
    for n, d in ((300, 40), (30, 64), (12, 2023)):  # d x d, and n x n routes (2023: sFID's own width)
        x = rng.gamma(2.0, size=(n, d)).astype(np.float32)
        ref = (rng.gamma(2.0, size=(n + 20, d)) * 1.1).astype(np.float32)
        assert sfid(x, ref) == pytest.approx(_frechet(x, ref), rel=1e-7)
        assert sfid(ref, ref) == pytest.approx(0.0, abs=1e-8 * np.trace(np.cov(ref.T.astype(np.float64))))


def test_a_cached_row_without_the_spatial_features_is_computed_again(extractors, tmp_path):
    make_image_set(tmp_path / "images", 2, seed=2, size=32)
    plain, spatial = extractors
    assert plain.cache_key == spatial.cache_key and plain.protocol() == spatial.protocol()

    def extract(extractor):
        cache = FeatureCache(tmp_path / "cache")
        try:
            return extract_folder(tmp_path / "images", [extractor], workers=0, cache=cache, progress=False)
        finally:
            cache.close()

    first = extract(plain)
    assert first.n_computed == 2 and set(first.features[plain.cache_key]) == {POOL, LOGITS}
    second = extract(spatial)  # FID's rows lack the spatial ones: a miss, not a KeyError or a row short
    assert second.n_computed == 2 and second.features[plain.cache_key][SPATIAL].shape == (2, 2023)
    np.testing.assert_array_equal(second.features[plain.cache_key][POOL], first.features[plain.cache_key][POOL])
    third, fourth = extract(spatial), extract(plain)  # the row now holds both: every later run reads it
    assert third.n_computed == fourth.n_computed == 0 and set(fourth.features[plain.cache_key]) == {POOL, LOGITS}
    np.testing.assert_array_equal(third.features[plain.cache_key][SPATIAL], second.features[plain.cache_key][SPATIAL])


# -- through every stage, by the registration alone ------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """12 images (6 prompts x 2 seeds) in a manifest, and a 10-image reference folder."""
    root = tmp_path_factory.mktemp("sfid")
    write_prompted_images(root / "images", PROMPTS, SEEDS, seed=5, size=40)
    make_image_set(root / "ref", 10, seed=6, size=40, style="spots")
    return root


@pytest.fixture(scope="module")
def flags(folder, inception_weights) -> list[str]:
    return ["--inception-weights", inception_weights, "--cache-dir", str(folder / "cache"), "--workers", "0"]


@pytest.fixture(scope="module")
def reference(folder, flags) -> Path:
    out = folder / "ref.npz"
    built = _run("reference", "build", folder / "ref", "-o", out, "--inception-spatial", *flags)
    assert built.exit_code == 0, built.output
    return out


def _score(folder: Path, reference: Path, flags: list[str], out: Path, *extra: object, metrics: str = "sfid,fid"):
    manifest = folder / "images" / "manifest.jsonl"
    return _run("score", folder / "images", "--metrics", metrics, "-r", reference, "--prompts", manifest, *flags,
                "--batch-size", 4, "-o", out, *extra)  # fmt: skip


@pytest.fixture(scope="module")
def whole(folder, reference, flags) -> dict:
    out = folder / "whole.json"
    result = _score(folder, reference, flags, out, "--ci")
    assert result.exit_code == 0, result.output
    return {"doc": json.loads(out.read_text()), "output": result.output, "path": out}


def test_metrics_lists_it():
    listed = {spec["name"]: spec for spec in json.loads(_run("metrics", "--json").output)}
    (key,) = listed["sfid"]["results"]
    assert (key["key"], key["direction"], key["range"], key["interval"]) == (
        "sfid", "lower", [0.0, None], "jackknife over prompt blocks")  # fmt: skip
    assert listed["sfid"]["needs"] == ["inception_pool", "inception_spatial", "reference"]
    assert "--inception-spatial" in _run("reference", "build", "--help").output


def test_reference_build_stores_the_spatial_rows(reference, folder, flags, tmp_path):
    stored = load_reference(reference)
    (arrays,) = stored.features.values()
    assert set(arrays) == {POOL, SPATIAL} and arrays[SPATIAL].shape == (10, 2023)
    # Without the flag the file holds what it always held, under the same extractor key and protocol.
    plain = tmp_path / "plain.npz"
    built = _run("reference", "build", folder / "ref", "-o", plain, *flags)
    assert built.exit_code == 0, built.output
    without = load_reference(plain)
    (plain_arrays,) = without.features.values()
    assert without.protocols == stored.protocols and set(plain_arrays) == {POOL}
    np.testing.assert_array_equal(plain_arrays[POOL], arrays[POOL])


def test_score_value_interval_protocol_and_table(whole, reference):
    cell = whole["doc"]["cells"][0]
    entry = cell["metrics"]["sfid"]
    with np.load(whole["path"].with_name("whole.state.npz")) as state:
        mine, theirs = state["inception_spatial"], state["reference_inception_spatial"]
    assert mine.shape == (12, 2023) and theirs.shape == (10, 2023)
    (stored,) = load_reference(reference).features.values()
    np.testing.assert_array_equal(theirs, stored[SPATIAL])
    assert entry["value"] == pytest.approx(_frechet(mine, theirs), rel=1e-6)
    assert (entry["n"], entry["n_reference"]) == (12, 10)
    assert entry["interval"]["low"] <= entry["value"] <= entry["interval"]["high"]
    assert "jackknife" in entry["interval"]["method"]
    assert cell["protocol"]["sfid"]["dim"] == 2023 and "mixed_6/conv" in cell["protocol"]["sfid"]["layer"]
    assert "Mixed_6d.branch1x1" in cell["protocol"]["sfid"]["layer"]
    assert cell["protocol"]["inception_spatial"] == cell["protocol"]["inception"]  # the one extractor
    assert "sFID" in whole["output"] and "FID" in whole["output"]
    assert any("fewer than the 2023 feature dimensions" in w for w in cell["warnings"])


def test_sfid_of_a_set_against_itself_is_zero(folder, flags, tmp_path):
    out = tmp_path / "self.json"
    result = _run("score", folder / "ref", "--metrics", "sfid", "-r", folder / "ref", *flags, "-o", out)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["cells"][0]["metrics"]["sfid"]["value"] == pytest.approx(0.0, abs=1e-6)


def test_a_reference_folder_gives_the_files_number(whole, folder, flags, tmp_path):
    out = tmp_path / "folder.json"
    result = _score(folder, folder / "ref", flags, out)
    assert result.exit_code == 0, result.output
    got = json.loads(out.read_text())["cells"][0]["metrics"]["sfid"]["value"]
    assert got == whole["doc"]["cells"][0]["metrics"]["sfid"]["value"]


def test_a_reference_without_the_rows_skips_sfid_naming_the_flag(whole, folder, flags, tmp_path):
    plain = tmp_path / "plain.npz"
    assert _run("reference", "build", folder / "ref", "-o", plain, *flags).exit_code == 0
    out = tmp_path / "skipped.json"
    result = _score(folder, plain, flags, out)
    assert result.exit_code == 3, result.output  # incomplete: a metric could not be computed, said with why
    assert "sfid" in result.output and "--inception-spatial" in result.output
    metrics = json.loads(out.read_text())["cells"][0]["metrics"]
    assert metrics["fid"]["value"] == whole["doc"]["cells"][0]["metrics"]["fid"]["value"]  # FID as before
    assert "sfid" not in metrics or metrics["sfid"].get("value") is None
    assert "--inception-spatial" in out.read_text()


def _shards_merge_into_the_whole(whole, folder, reference, flags, tmp_path, *ci: str) -> None:
    """Two `--shard` parts (their features from the shared cache) merged in the other order give the whole's value
    (and with --ci its interval)."""
    for index in (0, 1):
        out = tmp_path / f"p{index}.json"
        part = _score(folder, reference, flags, out, "--shard", f"{index}/2", metrics="sfid")
        assert part.exit_code == 0, part.output
    merged = _run("merge", tmp_path / "p1.json", tmp_path / "p0.json", "-o", tmp_path / "merged.json", *ci)
    assert merged.exit_code == 0, merged.output
    got = json.loads((tmp_path / "merged.json").read_text())["cells"][0]["metrics"]["sfid"]
    want = whole["doc"]["cells"][0]["metrics"]["sfid"]
    assert got["value"] == pytest.approx(want["value"], rel=1e-9)
    if ci:
        assert got["interval"]["low"] == pytest.approx(want["interval"]["low"], rel=1e-6)


def test_shards_merge_into_the_whole(whole, folder, reference, flags, tmp_path):
    _shards_merge_into_the_whole(whole, folder, reference, flags, tmp_path)


@pytest.mark.slow  # about 10 s: the merged interval's 2023-d jackknife; the test above is its fast twin
def test_shards_merge_into_the_whole_with_the_interval(whole, folder, reference, flags, tmp_path):
    _shards_merge_into_the_whole(whole, folder, reference, flags, tmp_path, "--ci")


def test_the_evaluators_models_run_the_network_once(inception_weights):
    """What the Evaluator (and prepare) build for sFID: one Inception extractor, spatial on, serving the input."""
    from sdeval.features.extract import unique_extractors
    from sdeval.metrics import registry
    from sdeval.options.score import ScoreOptions
    from sdeval.score import FeatureOptions
    from sdeval.score.models import RunModels

    specs = [registry.get("sfid"), registry.get("fid")]
    options = ScoreOptions("", None, features=FeatureOptions(inception_weights=inception_weights))
    models = RunModels.for_metrics(specs, {n for spec in specs for n in spec.needs}, options, torch.device("cpu"))
    assert models.inception is not None and models.inception.spatial
    assert models.inputs == {"inception": models.inception, inception_spatial.NAME: models.inception}  # hosted
    assert unique_extractors(models.extractors) == [models.inception]


@pytest.mark.slow  # about 10 s: the Evaluator loads the network and runs it; the test above is its fast twin
def test_the_evaluator_gives_the_same_number(whole, folder, reference, inception_weights):
    from sdeval import Evaluator

    evaluator = Evaluator(metrics=["sfid"], reference=reference, inception_weights=inception_weights, no_cache=True,
                          workers=0)  # fmt: skip
    rows = [json.loads(line) for line in (folder / "images" / "manifest.jsonl").read_text().splitlines()]
    for start in range(0, len(rows), 6):
        batch = rows[start : start + 6]
        images = [np.asarray(Image.open(folder / "images" / r["file"]).convert("RGB")) for r in batch]
        evaluator.update(images, [r["prompt"] for r in batch], ids=[f"{r['id']}/seed{r['seed']}" for r in batch])
    got = evaluator.compute()["cells"][0]["metrics"]["sfid"]["value"]
    assert got == pytest.approx(whole["doc"]["cells"][0]["metrics"]["sfid"]["value"], rel=1e-5)


def test_report_and_gate_name_it(whole, tmp_path):
    report = _run("report", whole["path"], "-o", tmp_path / "report", "--quiet")
    assert report.exit_code == 0, report.output
    assert "sFID" in (tmp_path / "report" / "summary.md").read_text()
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {metric: sfid, max: 1000000}\n")
    gate = _run("gate", whole["path"], "--rules", rules, "--json", tmp_path / "gate.json")
    assert gate.exit_code == 0, gate.output
    assert "sfid" in (tmp_path / "gate.json").read_text()
