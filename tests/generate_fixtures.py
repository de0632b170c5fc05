"""Shared fixtures and helpers for the generation tests (imported by tests/test_generate_*.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

MINIMAL_PROMPTS = [
    {"id": "p1", "prompt": "a red cube on a table"},
    {"id": "p2", "prompt": "a photo of a cat", "category": "animals"},
    {"id": "p3", "prompt": "a blue sphere", "negative_prompt": "blurry"},
]


@pytest.fixture(scope="session", name="sdeval_cache")
def sdeval_cache_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private cache folder holding the tiny-random checkpoint, built once per test session."""
    folder = tmp_path_factory.mktemp("sdeval-cache")
    old = os.environ.get("SDEVAL_CACHE_DIR")
    os.environ["SDEVAL_CACHE_DIR"] = str(folder)
    import torch

    # Two cores shared with other work: one thread avoids OpenMP spin-wait collapse and keeps runs bitwise stable.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    from sdeval.generate.tiny import tiny_random_path

    tiny_random_path()
    yield folder
    torch.set_num_threads(threads)
    if old is None:
        os.environ.pop("SDEVAL_CACHE_DIR", None)
    else:
        os.environ["SDEVAL_CACHE_DIR"] = old


def write_config(folder: Path, prompts: list[dict[str, Any]] | None = None, **overrides: Any) -> Path:
    """A small, fast config (32x32, 2 steps) in `folder`; keys in `overrides` replace or extend it."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = MINIMAL_PROMPTS if prompts is None else prompts
    (folder / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    config: dict[str, Any] = {
        "checkpoints": [{"name": "tiny", "path": "tiny-random"}],
        "pipeline": "text2image",
        "suite": "prompts.jsonl",
        "seeds_per_prompt": 2,
        "base_seed": 0,
        "settings": {
            "guidance_scale": 7.5,
            "num_inference_steps": 2,
            "width": 32,
            "height": 32,
            "scheduler": "ddim",
        },
        "batch_size": 2,
        "output_dir": "out",
        "device": "cpu",
    }
    for key, value in overrides.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def load_images(out: Path) -> dict[str, np.ndarray]:
    """Every generated PNG under `out` (state folders skipped), decoded to int16 arrays, by relative path."""
    from PIL import Image

    images = {}
    for path in sorted(out.rglob("*.png")):
        rel = path.relative_to(out)
        if any(part.startswith(".") for part in rel.parts):
            continue
        with Image.open(path) as im:
            images[rel.as_posix()] = np.asarray(im.convert("RGB"), dtype=np.int16)
    return images


def assert_same_images(a: dict[str, np.ndarray], b: dict[str, np.ndarray], atol: int = 2) -> None:
    """Same files, same pixels up to a couple of 8-bit levels (thread count can move the last float bits)."""
    assert sorted(a) == sorted(b)
    for key in a:
        diff = int(np.abs(a[key] - b[key]).max())
        assert diff <= atol, f"{key}: max pixel difference {diff}"


def manifest_rows(out: Path) -> list[dict[str, Any]]:
    text = (out / "manifest.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def index_rows(out: Path) -> list[dict[str, Any]]:
    """Full rows (every metadata field) from the output folder's internal index."""
    text = (out / ".sdeval" / "index.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def tiny_as_single_file(folder: Path, target: Path) -> None:
    """Save the tiny diffusers checkpoint as one A1111/LDM-style .safetensors (the layout Civitai files use).

    Test-only inverse of diffusers' single-file key conversion, for this architecture (SD 1.x layout).
    """
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextModel

    unet = UNet2DConditionModel.from_pretrained(folder / "unet")
    vae = AutoencoderKL.from_pretrained(folder / "vae")
    text = CLIPTextModel.from_pretrained(folder / "text_encoder")
    out: dict[str, torch.Tensor] = {}

    levels = len(unet.config.block_out_channels)
    per = unet.config.layers_per_block
    resnet = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
              ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection")]  # fmt: skip
    top = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
           "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}  # fmt: skip

    def unet_key(key: str) -> str:
        for new, old in top.items():
            if key.startswith(new + "."):
                return old + key[len(new) :]
        parts = key.split(".")
        if parts[0] == "down_blocks":
            i, kind = int(parts[1]), parts[2]
            if kind == "downsamplers":
                return f"input_blocks.{(per + 1) * (i + 1)}.0.op." + ".".join(parts[5:])
            j = int(parts[3])
            prefix = f"input_blocks.{(per + 1) * i + j + 1}.{0 if kind == 'resnets' else 1}."
        elif parts[0] == "up_blocks":
            i, kind = int(parts[1]), parts[2]
            has_attn = any(k.startswith(f"up_blocks.{i}.attentions.") for k in unet_keys)
            if kind == "upsamplers":
                return f"output_blocks.{(per + 1) * i + per}.{2 if has_attn else 1}.conv." + ".".join(parts[5:])
            j = int(parts[3])
            prefix = f"output_blocks.{(per + 1) * i + j}.{0 if kind == 'resnets' else 1}."
        elif parts[0] == "mid_block":
            kind, j = parts[1], int(parts[2])
            prefix = f"middle_block.{1 if kind == 'attentions' else 2 * j}."
        else:
            raise KeyError(key)
        rest = ".".join(parts[4:] if parts[0] != "mid_block" else parts[3:])
        if kind == "resnets":
            for new, old in resnet:
                if rest.startswith(new + "."):
                    rest = old + rest[len(new) :]
        return prefix + rest

    unet_keys = list(unet.state_dict())
    for key, value in unet.state_dict().items():
        out["model.diffusion_model." + unet_key(key)] = value
    assert levels == 2  # the mapping above is written for the tiny layout

    vae_resnet = {"conv_shortcut": "nin_shortcut"}
    vae_attn = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    n_up = len(vae.config.block_out_channels)

    def vae_key(key: str) -> str:
        parts = key.split(".")
        if parts[0] in ("quant_conv", "post_quant_conv"):
            return key
        side, rest = parts[0], parts[1:]
        if rest[0] in ("conv_in", "conv_out"):
            return key
        if rest[0] == "conv_norm_out":
            return f"{side}.norm_out." + ".".join(rest[1:])
        if rest[0] == "mid_block":
            if rest[1] == "attentions":
                name = ".".join(rest[3:-1])
                return f"{side}.mid.attn_1.{vae_attn.get(name, name)}.{rest[-1]}"
            name = ".".join(rest[3:-1])
            return f"{side}.mid.block_{int(rest[2]) + 1}.{vae_resnet.get(name, name)}.{rest[-1]}"
        i = int(rest[1])
        block = f"{side}.down.{i}" if side == "encoder" else f"{side}.up.{n_up - 1 - i}"
        if rest[2] in ("downsamplers", "upsamplers"):
            return f"{block}.{'downsample' if side == 'encoder' else 'upsample'}.conv.{rest[-1]}"
        name = ".".join(rest[4:-1])
        return f"{block}.block.{rest[3]}.{vae_resnet.get(name, name)}.{rest[-1]}"

    for key, value in vae.state_dict().items():
        new = vae_key(key)
        if ".attn_1." in new and value.ndim == 2:
            value = value[:, :, None, None]  # LDM stores the VAE attention projections as 1x1 convs
        out["first_stage_model." + new] = value
    for key, value in text.state_dict().items():
        # transformers >= 5.6 flattened CLIPTextModel (no `text_model.` prefix); LDM files always have it.
        key = key if key.startswith("text_model.") else "text_model." + key
        out["cond_stage_model.transformer." + key] = value
    save_file({k: v.contiguous() for k, v in out.items()}, str(target))


def build_tiny_sdxl(target: Path) -> Path:
    """A tiny SDXL-shaped diffusers folder (two text encoders, text_time conditioning), seeded random weights."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from sdeval.generate.tiny import tiny_random_path

    text_config = {
        "vocab_size": 49408,
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_attention_heads": 4,
        "num_hidden_layers": 3,
        "max_position_embeddings": 77,
        "bos_token_id": 49406,
        "eos_token_id": 49407,
        "pad_token_id": 49407,
        "projection_dim": 32,
        "hidden_act": "gelu",
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=1,
            sample_size=32,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            transformer_layers_per_block=(1, 2),
            projection_class_embeddings_input_dim=6 * 8 + 32,  # time ids + pooled text_encoder_2 output
            cross_attention_dim=64,  # both encoders' hidden states, concatenated
        )
        vae = AutoencoderKL(
            block_out_channels=(32, 64),
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            latent_channels=4,
            sample_size=64,
        )
        text_encoder = CLIPTextModel(CLIPTextConfig(**text_config))
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**text_config))
    tokenizer = CLIPTokenizer.from_pretrained(tiny_random_path() / "tokenizer")
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, timestep_spacing="leading"
    )
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=scheduler,
    )
    pipe.save_pretrained(target)
    return target
