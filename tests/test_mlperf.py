"""MLPerf Inference's text-to-image accuracy check (`sdeval bench builtin:mlperf-sdxl`) and what it stands on: one
initial latent from a file for every prompt, references given as Fréchet statistics, MLPerf's CLIP score
aggregation, and `sdeval bench --dry-run`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from generate_fixtures import (
    build_tiny_sdxl,
    load_images,
    manifest_rows,
    sdeval_cache_fixture,  # noqa: F401  (registers the sdeval_cache fixture)
    write_config,
)

from sdeval.core.errors import ConfigError
from sdeval.generate.config import load_config
from sdeval.generate.runner import run_generate

pytestmark = pytest.mark.usefixtures("sdeval_cache")
PROMPTS = [{"id": "a", "prompt": "a red cube"}, {"id": "b", "prompt": "a cat on a mat"}]
NEGATIVE = "normal quality, low quality, worst quality, low res, blurry, nsfw, nude"  # MLPerf's


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory: pytest.TempPathFactory, sdeval_cache: Path) -> Path:
    return build_tiny_sdxl(tmp_path_factory.mktemp("sdxl") / "tiny-sdxl")


def _latent_shape(sdxl: Path, size: int) -> tuple[int, int, int, int]:
    config = json.loads((sdxl / "vae" / "config.json").read_text())
    factor = 2 ** (len(config["block_out_channels"]) - 1)
    channels = json.loads((sdxl / "unet" / "config.json").read_text())["in_channels"]
    return (1, channels, size // factor, size // factor)


def _write_latents(path: Path, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    from safetensors.numpy import save_file

    latent = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    save_file({"latents": latent}, str(path))
    return latent


# -- 1. latents from a file -------------------------------------------------------------------------------------


def test_file_latents_equal_a_plain_diffusers_call(tmp_path: Path, sdxl: Path) -> None:
    import torch
    from diffusers import StableDiffusionXLPipeline  # pyright: ignore[reportPrivateImportUsage]  # lazy export

    latent = _write_latents(tmp_path / "latents.safetensors", _latent_shape(sdxl, 32))
    settings = {"num_inference_steps": 3, "width": 32, "height": 32, "guidance_scale": 8.0,
                "scheduler": "euler", "negative_prompt": NEGATIVE}  # fmt: skip
    path = write_config(tmp_path, prompts=PROMPTS, checkpoints=[{"name": "xl", "path": str(sdxl)}],
                        settings=settings, latents="latents.safetensors", seeds_per_prompt=1, batch_size=2)  # fmt: skip
    config = load_config(path)
    run_generate(config, progress=False)
    images = load_images(tmp_path / "out")
    rows = {r["id"]: r for r in manifest_rows(tmp_path / "out")}
    assert len(images) == 2

    pipe = StableDiffusionXLPipeline.from_pretrained(str(sdxl), torch_dtype=torch.float32).to("cpu")
    pipe.set_progress_bar_config(disable=True)
    sha = config.settings[0].latents.sha256  # pyright: ignore[reportOptionalMemberAccess]  # set above
    for pid, prompt in (("a", "a red cube"), ("b", "a cat on a mat")):
        out = pipe(prompt, negative_prompt=NEGATIVE, num_inference_steps=3, guidance_scale=8.0, width=32, height=32,
                   latents=torch.from_numpy(latent), output_type="np")  # fmt: skip
        expected = np.asarray(out.images[0])  # pyright: ignore[reportAttributeAccessIssue]  # a pipeline output
        got = next(v for k, v in images.items() if Path(k).name.startswith(f"{pid}__"))
        assert np.abs(got.astype(int) - np.round(expected * 255).astype(int)).max() <= 1
        assert f"lat{sha[:8]}" in rows[pid]["file"]
    # One latent for every prompt: both images start from it (recorded with its sha256 in the metadata).
    from sdeval.generate.writer import read_metadata

    meta = read_metadata(tmp_path / "out" / next(iter(images)))
    assert meta is not None and meta["settings"]["latents"] == {"sha256": sha, "shape": list(latent.shape)}


def test_file_latents_are_checked(tmp_path: Path, sdxl: Path) -> None:
    from sdeval.core.errors import SdevalError

    _write_latents(tmp_path / "wrong.safetensors", (1, 4, 7, 7))
    np.save(tmp_path / "two.npy", np.zeros((2, 4, 8, 8), np.float32))
    (tmp_path / "latents.pt").write_bytes(b"not read")
    base = {"prompts": PROMPTS, "checkpoints": [{"name": "xl", "path": str(sdxl)}], "seeds_per_prompt": 1}
    with pytest.raises(ConfigError, match=r"latents: latents.pt is a pickle file.*allow_pickle: true"):
        load_config(write_config(tmp_path, latents="latents.pt", **base))
    with pytest.raises(ConfigError, match=r"latents: two.npy: expected one latent of shape \[1, C, H, W\]"):
        load_config(write_config(tmp_path, latents="two.npy", **base))
    with pytest.raises(ConfigError, match=r"give either latents or settings\.latents"):
        load_config(write_config(tmp_path, latents="wrong.safetensors",
                                 settings={"latents": "wrong.safetensors"}, **base))  # fmt: skip
    config = load_config(write_config(tmp_path, latents="wrong.safetensors", **base))
    with pytest.raises(SdevalError, match=r"holds a latent of shape \[1, 4, 7, 7\], but this checkpoint at 32x32"):
        run_generate(config, progress=False)


def test_configs_without_latents_keep_their_hash(tmp_path: Path) -> None:
    # The key is added only when set: every earlier config and image keeps its identity.
    config = load_config(write_config(tmp_path))
    assert "latents" not in config.to_dict() and "latents" not in config.settings[0].to_dict()


# -- 3. MLPerf's CLIP score aggregation ---------------------------------------------------------------------------


def _mlperf_clip_score(image_features: np.ndarray, text_features: np.ndarray) -> float:
    """MLPerf's CLIPEncoder.get_clip_score and accuracy_coco.py's mean, one image and its caption at a time
    (mlcommons/inference b66003e10e2db4b8c36a448b0545ec90fcc6e9e9, text_to_image/tools/clip/clip_encoder.py)."""
    import torch

    scores = []
    for image, text in zip(image_features, text_features, strict=True):
        image_t = torch.from_numpy(image[None]).float()
        image_t /= image_t.norm(dim=-1, keepdim=True)
        text_t = torch.from_numpy(text[None]).float()
        text_t /= text_t.norm(dim=-1, keepdim=True)
        scores.append(100 * (image_t @ text_t.T).item())
    return float(np.mean(scores))


def test_clip_mean_aggregation_is_mlperfs_formula() -> None:
    from sdeval.metrics.clip_score import clip_score

    rng = np.random.default_rng(3)
    images, texts = rng.standard_normal((50, 64)), rng.standard_normal((50, 64))
    texts[:25] = images[:25] + 0.5 * texts[:25]  # half of them aligned, half near 0 or negative
    mean = clip_score(images, texts, aggregation="mean")
    assert mean.mean == pytest.approx(_mlperf_clip_score(images, texts), rel=1e-5)
    assert min(row.score for row in mean.rows) < 0  # no clamp
    clamped = clip_score(images, texts)  # today's default: each image's score clamped at 0
    assert clamped.mean > mean.mean and clamped.mean == pytest.approx(np.mean([max(r.score, 0) for r in mean.rows]))


def test_clip_aggregation_is_an_option_recorded_in_the_protocol() -> None:
    from sdeval.metrics.builtin.clip import CLIP
    from sdeval.metrics.registry import CellData, PromptData
    from sdeval.options.score import options_from_mapping

    options = options_from_mapping({"clip_aggregation": "mean"}, images=".", metrics=("clip",))
    assert options.params.clip_aggregation == "mean"
    with pytest.raises(ConfigError, match=r"score\.clip_aggregation: expected one of clamped, mean"):
        options_from_mapping({"clip_aggregation": "max"}, images=".")
    rng = np.random.default_rng(0)
    texts = rng.standard_normal((3, 8))
    cell = CellData(paths=["a", "b", "c"], params=options.params, clip_image=rng.standard_normal((3, 8)),
                    prompts=PromptData(np.arange(3), texts, ["x", "y", "z"], None, []))  # fmt: skip
    out = CLIP.compute(cell)
    assert out.entries["clip"]["value"] == pytest.approx(_mlperf_clip_score(cell.clip_image, texts), rel=1e-5)  # pyright: ignore[reportArgumentType]  # set above
    assert CLIP.protocol is not None and CLIP.protocol(options.params, cell)["clip_score"]["aggregation"] == "mean"
    default = options_from_mapping({}, images=".").params
    assert CLIP.protocol(default, cell) == {}  # the default adds nothing: earlier results files stay as they were


# -- 2. references given as Fréchet statistics --------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two sets of 12 small images: enough for a FID, few enough for a fast test."""
    from sdeval.score.demo import make_image_set

    root = tmp_path_factory.mktemp("sets")
    make_image_set(root / "gen", 12, seed=1, size=48, style="blobs")
    make_image_set(root / "ref", 12, seed=2, size=48, style="spots")
    return {"gen": str(root / "gen"), "ref": str(root / "ref")}


def _stats_file(tmp_path: Path, image_sets: dict, weights: str, preprocess: str) -> tuple[Path, Path]:
    """(an sdeval reference of the `ref` set, the same set as pytorch-fid's mu/sigma .npz)."""
    from sdeval.features.options import FeatureOptions
    from sdeval.reference.build import build_reference_file

    cache = os.environ["SDEVAL_CACHE_DIR"]  # the features of both sets are extracted once for these tests
    options = FeatureOptions(preprocess=preprocess, inception_weights=weights, device="cpu", cache_dir=cache,
                             progress=False)  # fmt: skip
    full = tmp_path / "ref.npz"
    state = build_reference_file(image_sets["ref"], str(full), options).fid_state
    assert state is not None
    stats = tmp_path / "stats.npz"
    np.savez_compressed(stats, mu=state.mean(), sigma=state.covariance())  # as pytorch-fid --save-stats writes them
    return full, stats


def test_fid_against_frechet_statistics_equals_fid_against_the_reference(
    tmp_path: Path, small_sets: dict, inception_weights: str
) -> None:
    image_sets = small_sets
    from sdeval.api import score_folder
    from sdeval.core.hashing import file_sha256
    from sdeval.results.protocol import differences

    full, stats = _stats_file(tmp_path, image_sets, inception_weights, "legacy")
    common = {"metrics": ["fid"], "inception_weights": inception_weights, "device": "cpu"}
    expected = score_folder(image_sets["gen"], reference=full, **common)
    # Random weights: the declaration names them (the default is the standard weights').
    sha = file_sha256(inception_weights)
    Path(f"{stats}.json").write_text(json.dumps({"weights_sha256": sha, "n": 12, "source": "the ref set"}))
    # Through the command, which writes the results file (checked against the results schema on the way).
    from click.testing import CliRunner

    from sdeval.cli import main
    from sdeval.results.document import load_results

    args = ["score", image_sets["gen"], "--reference", str(stats), "--reference-protocol", "legacy", "--metrics", "fid",
            "--inception-weights", inception_weights, "--device", "cpu", "-o", str(tmp_path / "r.json")]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    got = load_results(tmp_path / "r.json")
    fid, want = got["cells"][0]["metrics"]["fid"], expected["cells"][0]["metrics"]["fid"]
    assert fid["value"] == pytest.approx(want["value"], rel=1e-6) and fid["n_reference"] == 12
    assert got["reference"] == {"source": str(stats), "n": 12, "images_sha256": file_sha256(stats)}
    declared = got["cells"][0]["protocol"]["reference_declared"]
    assert declared == {"kind": "frechet-statistics", "preprocess": "legacy", "weights_sha256": sha,
                        "source": "the ref set", "declared_by": "--reference-protocol and stats.npz.json"}  # fmt: skip
    # The declaration binds: a result against declared statistics is not compared silently with one against images.
    binding, _ = differences(got["cells"][0]["protocol"], expected["cells"][0]["protocol"])
    assert "reference_declared.kind" in binding and "reference.images_sha256" in binding
    from sdeval.results.protocol import binds

    assert binds("reference_declared.preprocess", "fid") and not binds("reference_declared.preprocess", "clip")


def test_frechet_statistics_give_fid_only_and_need_a_declared_matching_route(
    tmp_path: Path, small_sets: dict, inception_weights: str
) -> None:
    image_sets = small_sets
    from sdeval.api import score_folder
    from sdeval.core.errors import ProtocolMismatchError, SdevalError
    from sdeval.core.hashing import file_sha256

    _, stats = _stats_file(tmp_path, image_sets, inception_weights, "legacy")
    common: dict[str, Any] = {"inception_weights": inception_weights, "device": "cpu"}
    with pytest.raises(SdevalError, match=r"Fréchet statistics \(mu, sigma\) only, which give FID alone: kid needs"):
        score_folder(image_sets["gen"], reference=stats, metrics=["fid", "kid"], reference_protocol="legacy", **common)
    with pytest.raises(SdevalError, match=r"declare the Inception route with --reference-protocol"):
        score_folder(image_sets["gen"], reference=stats, metrics=["fid"], **common)
    Path(f"{stats}.json").write_text(
        json.dumps({"preprocess": "legacy", "weights_sha256": file_sha256(inception_weights)})
    )
    with pytest.raises(SdevalError, match=r"--reference-protocol clean disagrees with stats.npz.json"):
        score_folder(image_sets["gen"], reference=stats, metrics=["fid"], reference_protocol="clean", **common)
    # Made one way, scored another: FID is refused as incomparable, naming the field.
    with pytest.raises(ProtocolMismatchError, match=r"preprocess is 'legacy' there but 'clean' here"):
        score_folder(image_sets["gen"], reference=stats, metrics=["fid"], preprocess="clean", **common)
    Path(f"{stats}.json").unlink()  # declared by the flag alone, the standard weights are assumed: not these
    with pytest.raises(ProtocolMismatchError, match=r"weights_sha256 is '6726825d"):
        score_folder(image_sets["gen"], reference=stats, metrics=["fid"], reference_protocol="legacy", **common)


# -- 4. sdeval bench --dry-run, 5. builtin:mlperf-sdxl ------------------------------------------------------------


def _mlperf_config() -> dict[str, Any]:
    import yaml

    from sdeval.bench.config import read_config_text

    return yaml.safe_load(read_config_text("builtin:mlperf-sdxl")[0])


def test_dry_run_prints_the_plan_of_all_5000_captions_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from sdeval.cli import main

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["bench", "builtin:mlperf-sdxl", "--dry-run"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "1 checkpoint(s) x 1 setting(s) x 5000 prompts x 1 seed(s) = 5000 images" in out
    assert "sdxl: stabilityai/stable-diffusion-xl-base-1.0 (hub)" in out
    assert "guidance_scale 8.0, num_inference_steps 20, scheduler 'euler', width 1024, height 1024" in out
    assert "latents builtin:mlperf-sdxl (1x4x128x128, sha256 78cac10a20ea, the same for every prompt)" in out
    assert "clip_aggregation mean, clip_model ViT-B-32, clip_pretrained openai, preprocess pytorch-fid" in out
    assert "fid min 23.01085758 max 23.95007626" in out and "clip min 31.68631873 max 31.81331801" in out
    assert "missing (needed before a real run): reference: no such file or folder" in out  # the user's val2014 stats
    assert list(tmp_path.iterdir()) == []  # nothing written
    # Without --dry-run the missing reference stops the run before anything starts.
    result = CliRunner().invoke(main, ["bench", "builtin:mlperf-sdxl"])
    assert result.exit_code == 2 and "reference: no such file or folder" in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_statistics_reference_is_checked_when_the_config_is_read(tmp_path: Path) -> None:
    import yaml

    from sdeval.bench.config import load_bench_config

    config = _mlperf_config()
    np.savez(tmp_path / "stats.npz", mu=np.zeros(4), sigma=np.eye(4))
    config.update(reference="stats.npz", output_dir="out")

    def load(**changes: Any) -> Any:
        data = {**config, **changes}
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
        return load_bench_config(str(tmp_path / "c.yaml"))

    assert load().score.options.reference_protocol == "pytorch-fid"
    with pytest.raises(ConfigError, match=r"reference: .*give FID alone: kid needs"):
        load(metrics=["fid", "kid", "clip"])
    with pytest.raises(ConfigError, match=r"score\.preprocess: 'legacy', but the statistics in stats\.npz were made"):
        load(score={**config["score"], "preprocess": "legacy"})
    with pytest.raises(ConfigError, match=r"reference: .*declare the Inception route"):
        load(score={k: v for k, v in config["score"].items() if k != "reference_protocol"})


def _mlperf_copy(folder: Path, sdxl: Path, inception_weights: str, clip: tuple[str, str], captions: int) -> Path:
    """The shipped config with what a CPU can run put in: a tiny random SDXL and its latent, random Inception and CLIP
    weights, statistics of random images as the reference, and the first `captions` of MLPerf's captions."""
    import yaml

    from sdeval.core.hashing import file_sha256
    from sdeval.suites import load_suite

    config = _mlperf_config()
    suite = load_suite("builtin:mlperf-coco2014")
    rows = [{"id": p.id, "prompt": p.prompt} for p in suite.prompts[:captions]]
    (folder / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    _write_latents(folder / "latents.safetensors", _latent_shape(sdxl, 32))
    rng = np.random.default_rng(0)
    features = rng.standard_normal((64, 2048)) * 0.1 + 0.2
    np.savez(folder / "val2014.npz", mu=features.mean(0), sigma=np.cov(features, rowvar=False))
    (folder / "val2014.npz.json").write_text(json.dumps({"weights_sha256": file_sha256(inception_weights)}))
    config.update(
        checkpoints=[{"name": "sdxl", "path": str(sdxl)}], suite="captions.jsonl", latents="latents.safetensors",
        settings={**config["settings"], "width": 32, "height": 32, "num_inference_steps": 2}, device="cpu",
        reference="val2014.npz", output_dir="out", report={**config["report"], "output": "report"},
        score={**config["score"], "clip_model": clip[0], "clip_pretrained": clip[1],
               "inception_weights": inception_weights, "device": "cpu"},
    )  # fmt: skip
    path = folder / "mlperf-sdxl.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.mark.slow
def test_mlperf_sdxl_runs_end_to_end_on_the_cpu(
    tmp_path: Path, sdxl: Path, inception_weights: str, tiny_name: str, tiny_clip_weights: dict[int, str]
) -> None:
    from sdeval.bench.stages import run_bench
    from sdeval.results.document import load_results

    path = _mlperf_copy(tmp_path, sdxl, inception_weights, (tiny_name, tiny_clip_weights[0]), captions=20)
    lines: list[str] = []
    code = run_bench(str(path), progress=False, echo=lines.append)
    assert code == 1, "\n".join(lines)  # random weights land outside MLPerf's ranges: the gate fails, as it should
    results = load_results(tmp_path / "out" / "results.json")
    cell = results["cells"][0]
    assert cell["metrics"]["fid"]["n"] == 20 and cell["metrics"]["clip"]["n"] == 20
    protocol = cell["protocol"]
    assert protocol["inception"]["preprocess"] == "pytorch-fid"
    assert protocol["clip_score"]["aggregation"] == "mean"
    assert protocol["reference_declared"]["preprocess"] == "pytorch-fid"
    gate = json.loads((tmp_path / "out" / "gate.json").read_text())
    assert gate["summary"]["fail"] == 2
    assert (tmp_path / "report" / "index.html").is_file()
