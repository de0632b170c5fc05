"""The built-in tiny-random checkpoint: real classes, real CLIP tokenizer, seeded and reproducible."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from generate_fixtures import sdeval_cache_fixture  # noqa: F401  (registers the sdeval_cache fixture)

from sdeval.core.hashing import folder_sha256
from sdeval.generate import tiny


def test_tokenizer_matches_the_real_clip_ids(sdeval_cache: Path) -> None:
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(tiny.tiny_random_path() / "tokenizer")
    # Ids of openai/clip-vit-large-patch14's tokenizer for the same text.
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert len(tok) == 49408 and tok.model_max_length == 77
    vocab, merges = tiny.clip_vocab_and_merges()
    assert len(vocab) == 49408 and len(merges) == 49152 - 256 - 2


def test_folder_is_a_labelled_sd1_diffusers_checkpoint(sdeval_cache: Path) -> None:
    folder = tiny.tiny_random_path()
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    assert "RANDOM WEIGHTS" in (folder / "README.md").read_text()
    unet = json.loads((folder / "unet" / "config.json").read_text())
    assert unet["block_out_channels"] == [32, 64] and unet["cross_attention_dim"] == 32
    assert unet["layers_per_block"] == 1 and unet["sample_size"] == 32


def test_build_is_seeded(sdeval_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDEVAL_CACHE_DIR", str(tmp_path))
    rebuilt = tiny.tiny_random_path()
    assert rebuilt.parent == tmp_path
    weights = ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors")
    original = sdeval_cache / rebuilt.name
    for name in weights:
        assert (rebuilt / name).read_bytes() == (original / name).read_bytes(), name
    assert folder_sha256(rebuilt) == folder_sha256(original)
