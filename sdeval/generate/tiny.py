"""The built-in `tiny-random` checkpoint: real diffusers classes at tiny size with seeded RANDOM weights.

It exists so that the whole generation flow (load from disk, schedulers, batching, seeding, writing) runs
offline on a CPU in seconds. Its images are noise-like and mean nothing about model quality.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

from sdeval.core.paths import cache_root

TINY_NAME = "tiny-random"
# Bump when the architecture or seeding changes, so an old cache folder is never reused by mistake.
TINY_VERSION = 2
_SEED = 0


@lru_cache(maxsize=1)
def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible byte -> printable-unicode table (as in openai/CLIP simple_tokenizer.py)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def clip_vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    """The real CLIP BPE vocabulary (49408 tokens) and merges, derived from open_clip's BPE file."""
    import open_clip

    bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    with gzip.open(bpe) as handle:
        lines = handle.read().decode("utf-8").split("\n")
    # Line 0 is a version header; CLIP keeps the first 49152 - 256 - 2 merges.
    merges = lines[1 : 49152 - 256 - 2 + 1]
    byte_chars = list(_bytes_to_unicode().values())
    vocab = byte_chars + [c + "</w>" for c in byte_chars]
    vocab += ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(vocab)}, merges


def _write_tokenizer(folder: Path) -> None:
    """tokenizer/ with vocab.json + merges.txt (what slow CLIPTokenizer reads) and tokenizer.json (fast)."""
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab_and_merges()
    target = folder / "tokenizer"
    target.mkdir(parents=True)
    (target / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (target / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    (target / "tokenizer_config.json").write_text(
        json.dumps({"model_max_length": 77, "tokenizer_class": "CLIPTokenizer"}), encoding="utf-8"
    )
    CLIPTokenizer.from_pretrained(target).save_pretrained(target)


def sd15_scheduler():
    """The scheduler config Stable Diffusion 1.5 ships with, so scheduler swaps behave as on real models."""
    # diffusers exports its classes lazily, without an __all__ that type checkers would read.
    from diffusers import PNDMScheduler  # pyright: ignore[reportPrivateImportUsage]

    return PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        set_alpha_to_one=False,
        skip_prk_steps=True,
        steps_offset=1,
    )


def _build(folder: Path) -> None:
    """Build the tiny pipeline with seeded weights and save it in diffusers folder layout."""
    import torch
    import transformers
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel  # pyright: ignore[reportPrivateImportUsage]  # as above
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    transformers.utils.logging.disable_progress_bar()  # no "Writing model shards" bars on stderr
    _write_tokenizer(folder)
    # fork_rng: seeding must not disturb the caller's global RNG state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        # diffusers annotates the per-block tuples below as tuple[int] / tuple[str] (one element); they take one
        # entry per block.
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=1,
            sample_size=32,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=(2, 4),  # pyright: ignore[reportArgumentType]
        )
        torch.manual_seed(_SEED + 1)
        vae = AutoencoderKL(
            block_out_channels=(32, 64),  # pyright: ignore[reportArgumentType]
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),  # pyright: ignore[reportArgumentType]
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),  # pyright: ignore[reportArgumentType]
            latent_channels=4,
            sample_size=64,
        )
        torch.manual_seed(_SEED + 2)
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=49408,
                hidden_size=32,
                intermediate_size=37,
                num_attention_heads=4,
                num_hidden_layers=5,
                max_position_embeddings=77,
                bos_token_id=49406,
                eos_token_id=49407,
                pad_token_id=49407,
                layer_norm_eps=1e-5,
            )
        )
    scheduler = sd15_scheduler()
    # diffusers annotates the scheduler as the KarrasDiffusionSchedulers enum (it takes any scheduler) and the
    # safety parts as required (None is its documented way to go without, with requires_safety_checker=False).
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        unet=unet,
        scheduler=scheduler,  # pyright: ignore[reportArgumentType]
        safety_checker=None,  # pyright: ignore[reportArgumentType]
        feature_extractor=None,  # pyright: ignore[reportArgumentType]
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    (folder / "README.md").write_text(
        "# tiny-random (sdeval)\n\nRANDOM WEIGHTS. A tiny Stable Diffusion 1.x-shaped pipeline for tests\n"
        "and smoke runs; its images are noise and mean nothing about model quality.\n",
        encoding="utf-8",
    )


def tiny_random_path() -> Path:
    """Path of the tiny-random diffusers folder, built on first use (safe when processes race)."""
    target = cache_root() / f"{TINY_NAME}-v{TINY_VERSION}"
    if (target / "model_index.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _build(tmp)
        try:
            # A folder rename is atomic: readers see either nothing or the complete checkpoint.
            os.replace(tmp, target)
        except OSError:
            if not (target / "model_index.json").is_file():
                raise
            # Another process finished first; its copy is identical (same seeds), keep it.
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
    return target
