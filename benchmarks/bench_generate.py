"""Generation throughput: plain diffusers (batch 1) vs sdeval's runner (batch 1/4/8/16); FLOP utilisation.

Full mode builds the Stable Diffusion 1.5 architecture (UNet 860M, VAE, CLIP ViT-L/14 text encoder) with
RANDOM weights (no download needed: throughput does not depend on the weight values) and generates at
512x512 with 50 steps and classifier-free guidance. `--smoke` uses sdeval's tiny-random model at 64x64,
2 steps, so the script can be checked on a CPU in well under a minute.

    python benchmarks/bench_generate.py                 # CUDA, SD 1.5 size
    python benchmarks/bench_generate.py --smoke         # any machine, seconds

FLOP utilisation = images/s x steps x 2 (guidance: two UNet evaluations per step) x FLOPs of one UNet
evaluation (counted with torch.utils.flop_counter at the benchmark resolution) / the peak you pass with
--peak-tflops (default: H100 SXM dense FP16/BF16, 989 TFLOP/s). Text encoder and VAE FLOPs are left out.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# SD 1.5 configs (as in the published model's unet/vae/text_encoder config.json), written inline.
SD15_UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280, 1280),
    "down_block_types": (
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
SD15_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}
CLIP_VIT_L14_TEXT = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 1,
}
H100_SXM_DENSE_FP16_TFLOPS = 989.0


def build_sd15(device: str, dtype: Any) -> Any:
    """The SD 1.5 pipeline architecture with random weights, built directly on `device`."""
    import torch
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from sdeval.generate.tiny import sd15_scheduler, tiny_random_path

    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(**SD15_UNET)
        vae = AutoencoderKL(**SD15_VAE)
        text_encoder = CLIPTextModel(CLIPTextConfig(**CLIP_VIT_L14_TEXT))
    # The real CLIP BPE tokenizer (the tiny model ships it).
    tokenizer = CLIPTokenizer.from_pretrained(tiny_random_path() / "tokenizer")
    scheduler = sd15_scheduler()
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return pipe.to(device=device, dtype=dtype)


def build_tiny(device: str, dtype: Any) -> Any:
    from diffusers import StableDiffusionPipeline

    from sdeval.generate.tiny import tiny_random_path

    return StableDiffusionPipeline.from_pretrained(tiny_random_path()).to(device=device, dtype=dtype)


def unet_flops(pipe: Any, size: int, device: str, dtype: Any) -> float:
    """FLOPs of one UNet evaluation for one image at `size` (counted, not estimated)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    side = size // pipe.vae_scale_factor
    x = torch.zeros(1, pipe.unet.config.in_channels, side, side, device=device, dtype=dtype)
    ctx = torch.zeros(1, 77, pipe.unet.config.cross_attention_dim, device=device, dtype=dtype)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        pipe.unet(x, torch.tensor([500], device=device), ctx)
    return float(counter.get_total_flops())


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_plain_diffusers(pipe: Any, n: int, steps: int, size: int, device: str) -> float:
    """images/s of the usual loop: one pipeline call per image, batch 1."""
    import torch

    pipe.set_progress_bar_config(disable=True)
    kwargs = {"num_inference_steps": steps, "height": size, "width": size, "guidance_scale": 7.5}
    pipe("warm-up", generator=torch.Generator("cpu").manual_seed(0), **kwargs)
    _sync(device)
    start = time.perf_counter()
    for i in range(n):
        pipe(f"a photo of object {i}", generator=torch.Generator("cpu").manual_seed(i), **kwargs)
    _sync(device)
    return n / (time.perf_counter() - start)


def bench_sdeval(
    pipe: Any, n: int, batch: int, steps: int, size: int, device: str, dtype_name: str, workdir: Path
) -> tuple[float, int | None]:
    """images/s of sdeval's runner (batching, per-image generators, PNG + metadata writes, manifest)."""
    from sdeval.generate.config import load_config
    from sdeval.generate.pipelines import LoadOptions, prepare_pipeline
    from sdeval.generate.runner import run_generate

    def loader(_spec: Any, _dtype: str, options: LoadOptions) -> Any:
        return prepare_pipeline(pipe, options)

    def run(folder: Path, images: int) -> Any:
        folder.mkdir(parents=True)
        rows = [{"id": f"p{i:04d}", "prompt": f"a photo of object {i}"} for i in range(images)]
        (folder / "suite.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        config = {
            # The loader below replaces the checkpoint; tiny-random only satisfies config validation.
            "checkpoints": [{"name": "bench", "path": "tiny-random"}],
            "suite": "suite.jsonl",
            "seeds_per_prompt": 1,
            "settings": {"num_inference_steps": steps, "width": size, "height": size, "dtype": dtype_name},
            "batch_size": batch,
            "output_dir": "out",
            "device": device,
        }
        (folder / "config.json").write_text(json.dumps(config))
        return run_generate(load_config(folder / "config.json"), progress=False, loader=loader)

    run(workdir / f"warm-b{batch}", batch)  # first-call costs (cuDNN autotune, allocator growth) stay out
    result = run(workdir / f"b{batch}", n)
    return result.images_per_s or 0.0, result.peak_gpu_memory_bytes


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny model, 64x64, 2 steps (CPU-friendly)")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--batch-sizes", default="1,4,8,16")
    parser.add_argument("--steps", type=int, default=None, help="default 50 (smoke: 2)")
    parser.add_argument("--size", type=int, default=None, help="default 512 (smoke: 64)")
    parser.add_argument("--images", type=int, default=None, help="images per measurement; default 2 x batch (min 8)")
    parser.add_argument("--dtype", default=None, choices=("fp32", "fp16", "bf16"), help="default fp16 on CUDA")
    parser.add_argument("--peak-tflops", type=float, default=H100_SXM_DENSE_FP16_TFLOPS)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (smoke on CPU: 1)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    import torch

    warnings.filterwarnings("ignore", message=".*invalid value encountered in cast.*")  # random weights -> NaN
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype_name = args.dtype or ("fp16" if device.startswith("cuda") else "fp32")
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype_name]
    if args.threads or (args.smoke and device == "cpu"):
        # One thread by default in CPU smoke runs: on a shared machine OpenMP spin-waits make 2+ threads
        # erratic by an order of magnitude, which would swamp the comparison.
        torch.set_num_threads(args.threads or 1)
    steps = args.steps or (2 if args.smoke else 50)
    size = args.size or (64 if args.smoke else 512)
    batches = [int(b) for b in args.batch_sizes.split(",")]

    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        pipe = build_tiny(device, dtype) if args.smoke else build_sd15(device, dtype)
        flops = unet_flops(pipe, size, device, dtype)
        per_image = flops * steps * 2

        def utilisation(rate: float) -> float:
            return rate * per_image / (args.peak_tflops * 1e12)

        rows = []
        n1 = args.images or 8
        rate = bench_plain_diffusers(pipe, n1, steps, size, device)
        rows.append({"runner": "diffusers loop", "batch": 1, "images": n1, "images_per_s": rate})
        for batch in batches:
            n = args.images or max(8, 2 * batch)
            rate, peak = bench_sdeval(pipe, n, batch, steps, size, device, dtype_name, Path(tmp))
            rows.append({"runner": "sdeval", "batch": batch, "images": n, "images_per_s": rate, "peak_mem": peak})
    for row in rows:
        row["s_per_image"] = 1 / row["images_per_s"] if row["images_per_s"] else None
        row["flop_utilisation"] = utilisation(row["images_per_s"])
    device_name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"
    report = {
        "mode": "smoke" if args.smoke else "sd15",
        "device": device_name,
        "torch_threads": torch.get_num_threads(),
        "dtype": dtype_name,
        "size": size,
        "steps": steps,
        "unet_tflop_per_call": flops / 1e12,
        "peak_tflops": args.peak_tflops,
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__},
        "rows": rows,
    }
    print(
        f"# {report['mode']}: {device_name}, {dtype_name}, {size}x{size}, {steps} steps, guidance on;"
        f" UNet {report['unet_tflop_per_call']:.4g} TFLOP/call; peak {args.peak_tflops:g} TFLOP/s"
    )
    print("| runner | batch | images | images/s | s/image | FLOP utilisation | peak GPU mem |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        mem = f"{row['peak_mem'] / 2**30:.1f} GiB" if row.get("peak_mem") else "-"
        print(
            f"| {row['runner']} | {row['batch']} | {row['images']} | {row['images_per_s']:.3f} |"
            f" {row['s_per_image']:.3f} | {100 * row['flop_utilisation']:.3g}% | {mem} |"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
