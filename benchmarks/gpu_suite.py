"""The GPU suite: every GPU figure of issue 25 in one run, side by side, with random weights and no downloads.

    python benchmarks/gpu_suite.py --json gpu_suite.json          # one GPU, about 5 minutes
    python benchmarks/gpu_suite.py --smoke --json smoke.json      # tiny sizes on the CPU, seconds (the test)

What it measures, each as a ratio of two runs in this process on the same inputs:
- UNet and VAE decode throughput of SD 1.5 at 512 px and SDXL at 1024 px (the published configs in
  benchmarks/configs/, random weights): plain diffusers at batch 1 (the model as built, one call per image)
  against sdeval's generation settings (channels_last, the batch it runs). Images/s count one UNet evaluation
  (one step, no guidance) or one decode per image; model-FLOP utilisation = FLOPs per image (counted with
  torch.utils.flop_counter) x images/s / the device's peak (table below, or --peak-tflops).
- Scoring: decode + Inception + CLIP ViT-L/14 in one sdeval pass (IS and CLIP score of a folder), against
  torch-fidelity's Inception pass over the same folder plus a hand-written CLIP pass (both on the device).
- Precision/recall and all four intervals of one cell at n = 50k (d = 2048 synthetic features): wall seconds.
- Peak GPU memory of each part (torch.cuda.max_memory_allocated; on the CPU the process's peak resident set).
Writes one JSON (--json) and prints a Markdown section for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

CONFIGS = Path(__file__).parent / "configs"

#: Dense FP16/BF16 tensor-core peaks (TFLOP/s) from the vendors' data sheets, matched in order against
#: torch.cuda.get_device_name(): the first key that the name contains wins.
PEAK_TFLOPS: dict[str, float] = {
    "H100 PCIe": 756.0,
    "H100 NVL": 835.0,
    "H100": 989.0,  # SXM
    "H200": 989.0,
    "GH200": 989.0,
    "B200": 2250.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10G": 125.0,
    "RTX 4090": 165.0,
}

#: (name, image size, UNet config, VAE config, sdeval's batch) at full size.
MODELS = (("sd15", 512, "sd15_unet.json", "sd15_vae.json", 8), ("sdxl", 1024, "sdxl_unet.json", "sdxl_vae.json", 4))


def device_peak(device: torch.device, override: float | None) -> tuple[str, float | None]:
    """(device name, peak FLOP/s): --peak-tflops if given, else the table's, else None (no utilisation)."""
    if device.type != "cuda":
        return platform.processor() or platform.machine(), (override * 1e12 if override else None)
    name = torch.cuda.get_device_name(device)
    if override:
        return name, override * 1e12
    return name, next((tflops * 1e12 for key, tflops in PEAK_TFLOPS.items() if key in name), None)


def load_config(name: str) -> dict[str, Any]:
    """A published config without its metadata keys (`_class_name`, ...): the model class's keyword arguments."""
    config = json.loads((CONFIGS / name).read_text(encoding="utf-8"))
    return {key: value for key, value in config.items() if not key.startswith("_")}


def tiny(config: dict[str, Any]) -> dict[str, Any]:
    """The same architecture family at toy width and depth, for the CPU smoke run."""
    small = dict(config)
    blocks = len(config["block_out_channels"])
    small["block_out_channels"] = [32] * (blocks - 1) + [64]
    small["layers_per_block"] = 1
    small["norm_num_groups"] = 8  # 4 channels a group: the 1 x 1 bottom of a 64 px run still normalises
    if "cross_attention_dim" in config:  # the UNet
        small["cross_attention_dim"] = 32
        small["attention_head_dim"] = 8
        if isinstance(config.get("transformer_layers_per_block"), list):
            small["transformer_layers_per_block"] = [1] * blocks
        if config.get("addition_embed_type") == "text_time":
            small["addition_time_embed_dim"] = 8
            small["projection_class_embeddings_input_dim"] = 6 * 8 + 32  # six time ids + a pooled text of 32
    return small


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def images_per_s(call: Callable[[], Any], batch: int, calls: int, device: torch.device) -> float:
    """Images/s of `calls` calls of `call` (each on `batch` images), after two warm-up calls."""
    for _ in range(2):
        call()
    _sync(device)
    start = time.perf_counter()
    for _ in range(calls):
        call()
    _sync(device)
    return batch * calls / (time.perf_counter() - start)


def flops_of(call: Callable[[], Any]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        call()
    return float(counter.get_total_flops())


def unet_inputs(unet: Any, batch: int, latent: int, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """Random inputs of one UNet evaluation: latents, a timestep, a 77-token text and SDXL's added conditions."""
    config = unet.config
    generator = torch.Generator(device="cpu").manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(device, dtype)

    inputs: dict[str, Any] = {
        "sample": randn(batch, config.in_channels, latent, latent),
        "timestep": torch.tensor(500, device=device),
        "encoder_hidden_states": randn(batch, 77, config.cross_attention_dim),
    }
    if config.addition_embed_type == "text_time":
        pooled = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
        size = latent * 8
        time_ids = torch.tensor([[size, size, 0, 0, size, size]] * batch, device=device, dtype=dtype)
        inputs["added_cond_kwargs"] = {"text_embeds": randn(batch, pooled), "time_ids": time_ids}
    return inputs


def bench_model(
    name: str, size: int, unet_file: str, vae_file: str, batch: int, args: argparse.Namespace, peak: float | None
) -> list[dict[str, Any]]:
    """UNet and VAE decode: plain diffusers at batch 1 against channels_last at sdeval's batch."""
    from diffusers import AutoencoderKL, UNet2DConditionModel  # pyright: ignore[reportPrivateImportUsage]  # lazy export

    device, dtype = args.device, args.dtype
    unet_config, vae_config = load_config(unet_file), load_config(vae_file)
    if args.smoke:
        unet_config, vae_config = tiny(unet_config), tiny(vae_config)
    latent = size // 8
    torch.manual_seed(0)
    rows = []
    for part, cls, config in (("unet", UNet2DConditionModel, unet_config), ("vae decode", AutoencoderKL, vae_config)):
        _reset_peak(device)
        model: Any = cls(**config).to(device, dtype).eval()
        params = sum(p.numel() for p in model.parameters())

        def call_on(batch_size: int, model: Any = model, part: str = part, config: dict = config) -> Callable:
            if part == "unet":
                inputs = unet_inputs(model, batch_size, latent, device, dtype)
                return lambda: model(**inputs).sample
            z = torch.randn(batch_size, config["latent_channels"], latent, latent, device=device, dtype=dtype)
            return lambda: model.decode(z / config.get("scaling_factor", 1.0)).sample

        with torch.inference_mode():
            per_image = flops_of(call_on(1))
            plain = images_per_s(call_on(1), 1, args.calls, device)
            model.to(memory_format=torch.channels_last)  # sdeval's generation default (generate.channels_last)
            ours = images_per_s(call_on(batch), batch, max(1, args.calls // batch), device)
        rows.append({
            "model": name, "part": part, "size": size, "params": params, "gflop_per_image": per_image / 1e9,
            "plain_batch1_images_per_s": plain, "sdeval_batch": batch, "sdeval_images_per_s": ours,
            "speedup": ours / plain,
            "plain_mfu": per_image * plain / peak if peak else None,
            "sdeval_mfu": per_image * ours / peak if peak else None,
            "peak_memory_bytes": _peak_memory(device),
        })  # fmt: skip
        del model
    return rows


def bench_scoring(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """One sdeval pass (decode + Inception + CLIP) against torch-fidelity's Inception pass plus a CLIP pass."""
    import open_clip
    import torch.nn.functional as F
    import torch_fidelity
    from PIL import Image

    from sdeval.features.random_weights import save_random_inception_weights
    from sdeval.score import FeatureOptions, ScoreOptions, score
    from sdeval.score.demo import make_image_set

    device = args.device
    folder = root / "images"
    make_image_set(folder, args.images, seed=1, size=args.image_size, style="blobs")
    rows = [{"file": f"{i:05d}.png", "prompt": f"a photo of blob {i % 50}"} for i in range(args.images)]
    files = sorted(p.name for p in folder.glob("*.png"))
    rows = [{"file": name, "prompt": row["prompt"]} for name, row in zip(files, rows, strict=True)]
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    inception = root / "inception.pth"
    save_random_inception_weights(inception, seed=0)
    clip_name = args.clip_model
    if args.smoke:  # a toy CLIP, registered as tests/conftest.py does
        configs = root / "open_clip_configs"
        configs.mkdir()
        clip_name = "gpu-suite-tiny-clip"
        (configs / f"{clip_name}.json").write_text(json.dumps({
            "embed_dim": 32,
            "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
        }))  # fmt: skip
        open_clip.add_model_config(configs)
    clip_weights = root / "clip-random.pt"
    torch.manual_seed(0)
    torch.save(open_clip.create_model(clip_name, pretrained=None).state_dict(), clip_weights)
    batch = args.score_batch

    def ours() -> Any:
        features = FeatureOptions(inception_weights=str(inception), batch_size=batch, workers=args.workers,
                                  device=str(device), progress=False)  # fmt: skip
        options = ScoreOptions(str(folder), None, metrics=("is", "clip"), prompts=str(manifest), clip_model=clip_name,
                               clip_pretrained=str(clip_weights), features=features)  # fmt: skip
        return score(options)

    def fidelity() -> Any:
        return torch_fidelity.calculate_metrics(
            input1=str(folder), isc=True, cuda=device.type == "cuda", batch_size=batch, verbose=False,
            feature_extractor_weights_path=str(inception), cache=False,
        )  # fmt: skip

    def clip_pass() -> list[float]:
        created: Any = open_clip.create_model_and_transforms(clip_name, pretrained=str(clip_weights))
        model, _, preprocess = created  # the evaluation transform is the third
        model = model.to(device).eval()
        tokenizer = open_clip.get_tokenizer(clip_name)
        cosines: list[float] = []
        with torch.no_grad():
            for start in range(0, len(rows), batch):
                part = rows[start : start + batch]
                pixels = torch.stack([preprocess(Image.open(folder / row["file"])) for row in part]).to(device)
                text = model.encode_text(tokenizer([row["prompt"] for row in part]).to(device))
                image = model.encode_image(pixels)
                cosines += (F.normalize(image, dim=-1) * F.normalize(text, dim=-1)).sum(-1).tolist()
        return cosines

    timings: dict[str, float] = {}
    memory: dict[str, int] = {}
    for label, step in (("torch-fidelity inception", fidelity), ("clip pass", clip_pass), ("sdeval", ours)):
        _reset_peak(device)
        _sync(device)
        start = time.perf_counter()
        step()
        _sync(device)
        timings[label] = time.perf_counter() - start
        memory[label] = _peak_memory(device)
    peers = timings["torch-fidelity inception"] + timings["clip pass"]
    return {
        "images": args.images, "image_size": args.image_size, "clip_model": clip_name, "batch_size": batch,
        "seconds": timings, "sdeval_images_per_s": args.images / timings["sdeval"],
        "peers_images_per_s": args.images / peers, "speedup": peers / timings["sdeval"],
        "peak_memory_bytes": memory,
    }  # fmt: skip


def bench_statistics(args: argparse.Namespace) -> dict[str, Any]:
    """Precision/recall and one cell's four intervals at n generated and n reference rows of d features."""
    from sdeval.metrics.precision_recall import precision_recall
    from sdeval.stats import CellState, cell_intervals

    n, d = args.pr_n, args.pr_d
    rng = np.random.default_rng(0)
    scale = np.linspace(1.0, 0.1, d, dtype=np.float32)  # a spectrum that is not flat
    generated = (rng.standard_normal((n, d), dtype=np.float32) * scale + 0.05).astype(np.float32)
    reference = rng.standard_normal((n, d), dtype=np.float32) * scale
    start = time.perf_counter()
    precision, recall = precision_recall(generated, reference, k=3)
    pr_seconds = time.perf_counter() - start
    items = [f"p{i // 2}#{i % 2}" for i in range(n)]  # n / 2 prompts x 2 seeds
    keys = ("fid", "kid", "precision", "recall")
    cell = {"metrics": {key: {"value": 0.5} for key in keys}, "per_image": [{"item": item} for item in items]}
    start = time.perf_counter()
    found = cell_intervals(cell, CellState(items, pool=generated, reference_pool=reference))
    intervals_seconds = time.perf_counter() - start
    return {
        "n": n, "d": d, "device": "cpu",  # sdeval's PR and interval kernels run on the CPU (float64)
        "precision": precision, "recall": recall, "pr_seconds": pr_seconds,
        "intervals": sorted(found), "intervals_seconds": intervals_seconds, "threads": torch.get_num_threads(),
    }  # fmt: skip


def markdown(report: dict[str, Any]) -> str:
    """The RESULTS.md section."""
    env = report["environment"]
    lines = [
        f"## GPU suite (`benchmarks/gpu_suite.py`{' --smoke' if env['smoke'] else ''}), {env['date']}",
        f"Device: {env['device_name']} ({env['device']}, {env['dtype']}); peak "
        f"{env['peak_tflops'] or 'unknown'} TFLOP/s; torch {env['torch']}, diffusers {env['diffusers']}. "
        f"Command: `{env['command']}`.",
        "",
        "| model | part | px | GFLOP/image | plain diffusers, batch 1 | sdeval settings (batch) | speed-up "
        "| MFU plain / sdeval | peak memory |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in report["models"]:
        mfu = "-" if row["plain_mfu"] is None else f"{100 * row['plain_mfu']:.1f}% / {100 * row['sdeval_mfu']:.1f}%"
        lines.append(
            f"| {row['model']} | {row['part']} | {row['size']} | {row['gflop_per_image']:.4g} "
            f"| {row['plain_batch1_images_per_s']:.3g} img/s | {row['sdeval_images_per_s']:.3g} img/s "
            f"({row['sdeval_batch']}) | {row['speedup']:.2f}x | {mfu} | {row['peak_memory_bytes'] / 2**30:.2f} GiB |"
        )
    s = report["scoring"]
    t = s["seconds"]
    lines += [
        "",
        f"Scoring {s['images']} PNGs of {s['image_size']} px (IS + CLIP score, CLIP {s['clip_model']}, batch "
        f"{s['batch_size']}): sdeval {t['sdeval']:.2f} s ({s['sdeval_images_per_s']:.3g} img/s) against "
        f"torch-fidelity {t['torch-fidelity inception']:.2f} s + a CLIP pass {t['clip pass']:.2f} s "
        f"({s['peers_images_per_s']:.3g} img/s): {s['speedup']:.2f}x; peak memory sdeval "
        f"{s['peak_memory_bytes']['sdeval'] / 2**30:.2f} GiB.",
        "",
    ]
    p = report["statistics"]
    lines.append(
        f"Precision/recall at n = {p['n']} (d = {p['d']}, on the {p['device']}, {p['threads']} threads): "
        f"{p['pr_seconds']:.1f} s; the four intervals of one cell ({', '.join(p['intervals'])}): "
        f"{p['intervals_seconds']:.1f} s."
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="The GPU suite of issue 25 (see the module docstring).")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: checks the code runs")
    parser.add_argument("--device", default=None, help="default: cuda if available (cpu with --smoke)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's peak, overriding the table")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--markdown", type=Path, help="write the RESULTS.md section here (it is printed too)")
    parser.add_argument("--only", nargs="+", choices=("models", "scoring", "statistics"),
                        default=["models", "scoring", "statistics"])  # fmt: skip
    parser.add_argument("--workers", type=int, default=8, help="sdeval's decode workers")
    args = parser.parse_args(argv)
    args.device = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not args.smoke else "cpu"))
    args.dtype = torch.float16 if args.device.type == "cuda" else torch.float32
    # Sizes: the smoke run only checks that every part runs and reports sane numbers.
    args.calls, args.images, args.image_size = (2, 8, 64) if args.smoke else (24, 2000, 512)
    args.score_batch, args.pr_n, args.pr_d = (4, 300, 64) if args.smoke else (100, 50_000, 2048)
    args.clip_model = "ViT-L-14"
    if args.smoke:
        args.workers = 0
    import diffusers

    name, peak = device_peak(args.device, args.peak_tflops)
    report: dict[str, Any] = {
        "format": "sdeval-gpu-suite",
        "environment": {
            "smoke": args.smoke, "device": str(args.device), "device_name": name, "dtype": str(args.dtype),
            "peak_tflops": peak / 1e12 if peak else None, "torch": torch.__version__,
            "diffusers": diffusers.__version__, "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
            "command": " ".join(["python", "benchmarks/gpu_suite.py", *(argv if argv is not None else sys.argv[1:])]),
        },
        "models": [], "scoring": None, "statistics": None,
    }  # fmt: skip
    started = time.perf_counter()
    if "models" in args.only:
        for spec in MODELS:
            size = 64 if args.smoke else spec[1]
            batch = 2 if args.smoke else spec[4]
            report["models"] += bench_model(spec[0], size, spec[2], spec[3], batch, args, peak)
    if "scoring" in args.only:
        root = Path(tempfile.mkdtemp(prefix="sdeval-gpu-suite-"))
        try:
            report["scoring"] = bench_scoring(args, root)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    if "statistics" in args.only:
        report["statistics"] = bench_statistics(args)
    report["environment"]["seconds"] = time.perf_counter() - started
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if report["models"] and report["scoring"] and report["statistics"]:
        section = markdown(report)
        print(section)
        if args.markdown:
            args.markdown.write_text(section, encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
