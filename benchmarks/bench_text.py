"""One sdeval pass (FID + KID + CLIP score) against torch-fidelity plus a separate CLIP scoring pass.

    python benchmarks/bench_text.py --n 100 --size 512 --clip-model ViT-B-32

Both sides get the same PNG folders, the same prompt manifest (N/4 prompts x 4 seeds), the same random
Inception weights file and the same CLIP architecture with random weights saved to a file (speed does not
depend on weight values). Each side's time includes loading its models, as a user's run would.

The separate CLIP pass is what a user hand-writes: open each image with PIL, apply open_clip's
preprocess, encode images and their prompts in batches, and take the cosine. Its prompts are encoded
alongside their images (one per image); `--dedupe` adds a row where it encodes each distinct prompt
once, as sdeval does. Two setups: the reference is a folder read in the same run, and the reference
was prepared before (sdeval: a reference file; torch-fidelity: its own feature cache for input2).
Prints a Markdown table for benchmarks/RESULTS.md.
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

from sdeval.demo import make_image_set
from sdeval.features.random_weights import save_random_inception_weights
from sdeval.score import FeatureOptions, ScoreOptions, build_reference_file, score


def load() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


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
    model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=str(weights))
    tokenizer = open_clip.get_tokenizer(model_name)
    model.eval()
    cosines = []
    with torch.no_grad():
        if dedupe:
            distinct = list(dict.fromkeys(row["prompt"] for row in rows))
            table = F.normalize(model.encode_text(tokenizer(distinct)), dim=-1)
            text_of = {prompt: table[i] for i, prompt in enumerate(distinct)}
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            pixels = torch.stack([preprocess(Image.open(folder / row["file"])) for row in batch])
            image = F.normalize(model.encode_image(pixels), dim=-1)
            if dedupe:
                text = torch.stack([text_of[row["prompt"]] for row in batch])
            else:
                text = F.normalize(model.encode_text(tokenizer([row["prompt"] for row in batch])), dim=-1)
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

        def sdeval_pass(reference: str, cache: str):
            options = ScoreOptions(
                str(gen), reference, metrics=("fid", "kid", "clip"), kid_subset_size=kid_size, prompts=str(manifest),
                clip_model=args.clip_model, clip_pretrained=str(clip_weights), per_image=True,
                features=FeatureOptions(inception_weights=str(inception), cache_dir=str(root / cache),
                                        workers=args.workers, batch_size=bs, progress=False),
            )  # fmt: skip
            return score(options)

        lines = []
        loads = [load()]
        t_clip, cos = time_call(lambda: separate_clip_pass(gen, rows, args.clip_model, clip_weights, bs, False))
        loads.append(load())
        t_clip_dedupe = None
        if args.dedupe:
            t_clip_dedupe, _ = time_call(lambda: separate_clip_pass(gen, rows, args.clip_model, clip_weights, bs, True))
        loads.append(load())

        # Setup 1: the reference is a folder, read in the same run by both sides.
        t_tf, theirs = time_call(lambda: fidelity(None))
        loads.append(load())
        t_ours, ours = time_call(lambda: sdeval_pass(str(ref), "cache-1"))
        loads.append(load())
        fid_rel = abs(ours["metrics"]["fid"]["value"] / theirs["frechet_inception_distance"] - 1)
        cos_diff = float(np.max(np.abs(np.array([r["clip_cosine"] for r in ours["per_image"]]) - cos)))
        label = f"{args.n} PNGs {args.size}x{args.size}, {args.n // 4} prompts x 4 seeds, CLIP {args.clip_model}"
        check = f"FID rel. diff {fid_rel:.1e}, max cosine diff {cos_diff:.1e}"
        lines.append(_row(f"{label}; reference: folder of {args.n}", t_tf, t_clip, t_ours, check))
        if t_clip_dedupe is not None:
            lines.append(_row("same, hand-written pass encodes each distinct prompt once", t_tf, t_clip_dedupe, t_ours))

        # Setup 2: the reference was prepared before (not timed), only IMAGES are new.
        fidelity("bench-ref")  # fills torch-fidelity's feature cache for input2
        build_reference_file(
            str(ref), str(root / "ref.npz"),
            FeatureOptions(inception_weights=str(inception), workers=args.workers, batch_size=bs, progress=False),
        )  # fmt: skip
        loads.append(load())
        t_tf2, _ = time_call(lambda: fidelity("bench-ref"))
        loads.append(load())
        t_ours2, _ = time_call(lambda: sdeval_pass(str(root / "ref.npz"), "cache-2"))
        loads.append(load())
        lines.append(_row("same; reference prepared beforehand (file / torch-fidelity cache)", t_tf2, t_clip, t_ours2))
        if t_clip_dedupe is not None:
            lines.append(
                _row("same, hand-written pass encodes each distinct prompt once", t_tf2, t_clip_dedupe, t_ours2)
            )
        lines.append("")
        lines.append(f"load average (1, 5, 15 min) before/after each timed step: {' | '.join(loads)}")
        return lines
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
    parser.add_argument("--dedupe", action="store_true", help="also time the hand-written pass with prompts deduped")
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
