"""One sdeval pass (FID + KID + CLIP score) against torch-fidelity plus a separate CLIP scoring pass.

    python benchmarks/bench_text.py --n 100 --size 512 --clip-model ViT-B-32 --repeat 2

Both sides get the same PNG folders, the same prompt manifest (N/4 prompts x 4 seeds), the same random
Inception weights file and the same CLIP architecture with random weights saved to a file (speed does not
depend on weight values). Each side's time includes loading its models, as a user's run would.

The separate CLIP pass is what a user hand-writes: open each image with PIL, apply open_clip's
preprocess, encode images and their prompts in batches, and take the cosine. Its prompts are encoded
alongside their images (one per image); a second row has it encode each distinct prompt once, as
sdeval does. Two setups: the reference is a folder read in the same run, and the reference was
prepared before (sdeval: a reference file; torch-fidelity: its own feature cache for input2).
Each step runs `--repeat` times (the best is kept), each after waiting until other processes leave
the cores idle (`--quiet`), since the machine may be shared. Prints a Markdown table for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
import torch_fidelity
from PIL import Image

from sdeval.features.random_weights import save_random_inception_weights
from sdeval.reference.build import build_reference_file
from sdeval.score import FeatureOptions, ScoreOptions, score
from sdeval.score.demo import make_image_set


def busy_cores(seconds: float = 2.0) -> float:
    """CPU cores kept busy by other processes over `seconds`, while this one sleeps (Linux /proc/stat)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as handle:
            values = [int(v) for v in handle.readline().split()[1:]]
        idle = values[3] + values[4]
        return sum(values) - idle, sum(values)

    busy0, total0 = sample()
    time.sleep(seconds)
    busy1, total1 = sample()
    return (os.cpu_count() or 1) * (busy1 - busy0) / max(total1 - total0, 1)


def wait_for_quiet(limit: float, max_wait: float = 900.0) -> float:
    """Wait until other processes keep fewer than `limit` cores busy; returns the last measurement."""
    deadline = time.monotonic() + max_wait
    busy = busy_cores()
    while busy > limit and time.monotonic() < deadline:
        time.sleep(10)
        busy = busy_cores()
    return busy


def time_call(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def write_manifest(folder: Path, n: int) -> tuple[Path, list[dict]]:
    rows = [
        {"file": f"img_{i:03d}.png", "prompt": f"a photo of subject {i // 4}, studio light", "seed": i % 4}
        for i in range(n)
    ]
    path = folder.parent / "manifest.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path, rows


def separate_clip_pass(folder: Path, rows: list[dict], model_name: str, weights: Path, batch_size: int, dedupe: bool):
    """The hand-written CLIP scoring loop: per-image cosines with each image's prompt."""
    device = "cuda" if torch.cuda.is_available() else "cpu"  # as sdeval's --device auto
    model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=str(weights), device=device)
    tokenizer = open_clip.get_tokenizer(model_name)
    model.eval()
    cosines = []
    with torch.no_grad():
        if dedupe:
            distinct = list(dict.fromkeys(row["prompt"] for row in rows))
            table = F.normalize(model.encode_text(tokenizer(distinct).to(device)), dim=-1)
            text_of = {prompt: table[i] for i, prompt in enumerate(distinct)}
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            pixels = torch.stack([preprocess(Image.open(folder / row["file"])) for row in batch]).to(device)
            image = F.normalize(model.encode_image(pixels), dim=-1)
            if dedupe:
                text = torch.stack([text_of[row["prompt"]] for row in batch])
            else:
                tokens = tokenizer([row["prompt"] for row in batch]).to(device)
                text = F.normalize(model.encode_text(tokens), dim=-1)
            cosines += (image * text).sum(dim=-1).tolist()
    return np.array(cosines)


def run(args) -> list[str]:
    root = Path(tempfile.mkdtemp(prefix="sdeval-bench-text-"))
    try:
        gen, ref = root / "gen", root / "ref"
        make_image_set(gen, args.n, seed=1, size=args.size, style="blobs")
        make_image_set(ref, args.n, seed=2, size=args.size, style="spots")
        manifest, rows = write_manifest(gen, args.n)
        inception = root / "inception.pth"
        save_random_inception_weights(inception, seed=0)
        clip_weights = root / f"{args.clip_model}-random.pt"
        torch.manual_seed(0)
        torch.save(open_clip.create_model(args.clip_model, pretrained=None).state_dict(), clip_weights)
        kid_size = min(1000, args.n)
        bs = args.batch_size

        def fidelity(cache_name: str | None):
            return torch_fidelity.calculate_metrics(
                input1=str(gen), input2=str(ref), cuda=torch.cuda.is_available(), fid=True, kid=True,
                kid_subset_size=kid_size, batch_size=bs, feature_extractor_weights_path=str(inception),
                cache_root=str(root / "tf-cache"), cache=cache_name is not None, input2_cache_name=cache_name,
                verbose=False,
            )  # fmt: skip

        def sdeval_pass(reference: str, cache: str, metrics=("fid", "kid", "clip")):
            options = ScoreOptions(
                str(gen), reference, metrics=metrics, kid_subset_size=kid_size, prompts=str(manifest),
                clip_model=args.clip_model, clip_pretrained=str(clip_weights), per_image=True,
                features=FeatureOptions(inception_weights=str(inception), cache_dir=str(root / cache),
                                        workers=args.workers, batch_size=bs, progress=False),
            )  # fmt: skip
            return score(options)

        # Prepared references for setup 2 (not timed): torch-fidelity's feature cache for input2, a sdeval file.
        fidelity("bench-ref")
        build_reference_file(
            str(ref), str(root / "ref.npz"),
            FeatureOptions(inception_weights=str(inception), workers=args.workers, batch_size=bs, progress=False),
        )  # fmt: skip

        steps = {
            "clip pass": lambda: separate_clip_pass(gen, rows, args.clip_model, clip_weights, bs, False),
            "clip pass, deduped": lambda: separate_clip_pass(gen, rows, args.clip_model, clip_weights, bs, True),
            "torch-fidelity, ref folder": lambda: fidelity(None),
            "sdeval, ref folder": lambda: sdeval_pass(str(ref), f"cache-{time.monotonic_ns()}"),
            "torch-fidelity, ref cached": lambda: fidelity("bench-ref"),
            "sdeval, ref file": lambda: sdeval_pass(str(root / "ref.npz"), f"cache-{time.monotonic_ns()}"),
            "sdeval FID+KID only, ref file": lambda: sdeval_pass(
                str(root / "ref.npz"), f"cache-{time.monotonic_ns()}", ("fid", "kid")
            ),
        }
        best: dict[str, float] = {}
        results: dict[str, object] = {}
        others: list[float] = []
        for _ in range(args.repeat):
            for name, step in steps.items():
                others.append(wait_for_quiet(args.quiet))
                seconds, results[name] = time_call(step)
                best[name] = min(seconds, best.get(name, float("inf")))

        ours, theirs = results["sdeval, ref folder"], results["torch-fidelity, ref folder"]
        fid_rel = abs(ours["cells"][0]["metrics"]["fid"]["value"] / theirs["frechet_inception_distance"] - 1)  # type: ignore[index]
        sd_cos = np.array([r["clip_cosine"] for r in ours["cells"][0]["per_image"]])  # type: ignore[index]
        cos_diff = float(np.max(np.abs(sd_cos - results["clip pass"])))  # type: ignore[operator]
        label = f"{args.n} PNGs {args.size}x{args.size}, {args.n // 4} prompts x 4 seeds, CLIP {args.clip_model}"
        clip, deduped = best["clip pass"], best["clip pass, deduped"]
        tf1, sd1 = best["torch-fidelity, ref folder"], best["sdeval, ref folder"]
        tf2, sd2 = best["torch-fidelity, ref cached"], best["sdeval, ref file"]
        check = f"FID rel. diff {fid_rel:.1e}, max cosine diff {cos_diff:.1e}"
        marginal = sd2 - best["sdeval FID+KID only, ref file"]
        return [
            _row(f"{label}; reference: folder of {args.n} images", tf1, clip, sd1, check),
            _row("same, hand-written pass encodes each distinct prompt once", tf1, deduped, sd1),
            _row("same; reference prepared beforehand (sdeval file / torch-fidelity cache)", tf2, clip, sd2),
            _row("same, hand-written pass encodes each distinct prompt once", tf2, deduped, sd2),
            "",
            f"CLIP score's cost inside the sdeval pass (reference file; FID+KID+CLIP minus FID+KID only): "
            f"{marginal:.1f} s, against {clip:.1f} s ({deduped:.1f} s deduped) for the separate pass.",
            f"Best of {args.repeat} runs per step. Cores kept busy by other processes just before each step: "
            f"max {max(others):.2f}, mean {np.mean(others):.2f} (of {os.cpu_count()}).",
        ]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _row(task: str, t_tf: float, t_clip: float, t_ours: float, check: str = "") -> str:
    base = t_tf + t_clip
    return (
        f"| {task} | {t_tf:.1f} s + {t_clip:.1f} s = {base:.1f} s | {t_ours:.1f} s | {base / t_ours:.2f}x | {check} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="images in IMAGES and in the reference")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--clip-model", default="ViT-B-32", help="open_clip architecture (random weights)")
    parser.add_argument("--workers", type=int, default=1, help="sdeval decode workers")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2, help="runs per step; the best is reported")
    parser.add_argument("--quiet", type=float, default=0.3,
                        help="before each step, wait until other processes keep fewer cores busy")  # fmt: skip
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import logging

    logging.getLogger().setLevel(logging.ERROR)  # open_clip logs "initialized randomly" for the random model
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({platform.processor() or 'x86_64'})"
    print(
        f"device: {device}, {os.cpu_count()} cores, torch threads: {torch.get_num_threads()}, "
        f"torch {torch.__version__}, torch-fidelity {torch_fidelity.__version__}, open_clip {open_clip.__version__}\n"
    )
    print("| task | torch-fidelity FID+KID + separate CLIP pass | sdeval, one pass | speed-up | check |")
    print("| --- | --- | --- | --- | --- |")
    print("\n".join(run(args)))


if __name__ == "__main__":
    main()
