"""MLPerf Inference's text-to-image accuracy check (`sdeval bench builtin:mlperf-sdxl`) and what it stands on: one
initial latent from a file for every prompt, references given as Fréchet statistics, MLPerf's CLIP score
aggregation, and `sdeval bench --dry-run`."""

from __future__ import annotations

import json
from pathlib import Path

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
