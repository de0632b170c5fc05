"""Scoring speed: sdeval against torch-fidelity on the same folder and weights, and trace-sqrt against scipy.

    python benchmarks/bench_score.py --n 200 --size 512

Both tools get the same PNG folders and the same (random) Inception weights file, in one process.
Speed does not depend on weight values. Prints a Markdown table for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
import torch_fidelity

from sdeval.features.random_weights import save_random_inception_weights
from sdeval.metrics.fid import trace_sqrt_product
from sdeval.score import FeatureOptions, ScoreOptions, score
from sdeval.score.demo import make_image_set


def time_call(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def bench_folders(n: int, size: int, workers: int, batch_size: int) -> list[str]:
    root = Path(tempfile.mkdtemp(prefix="sdeval-bench-"))
    try:
        make_image_set(root / "gen", n, seed=1, size=size, style="blobs")
        make_image_set(root / "ref", n, seed=2, size=size, style="spots")
        weights = root / "inception.pth"
        save_random_inception_weights(weights, seed=0)
        kid_size = min(1000, n)

        t_tf, theirs = time_call(
            lambda: torch_fidelity.calculate_metrics(
                input1=str(root / "gen"), input2=str(root / "ref"), cuda=torch.cuda.is_available(),
                fid=True, kid=True, isc=True, kid_subset_size=kid_size, batch_size=batch_size,
                feature_extractor_weights_path=str(weights), verbose=False,
            )
        )  # fmt: skip
        options = ScoreOptions(
            str(root / "gen"), str(root / "ref"), metrics=("fid", "kid", "is"), kid_subset_size=kid_size,
            features=FeatureOptions(inception_weights=str(weights), cache_dir=str(root / "cache"),
                                    workers=workers, batch_size=batch_size, progress=False),
        )  # fmt: skip
        t_cold, cold = time_call(lambda: score(options))
        t_warm, warm = time_call(lambda: score(options))
        assert warm["images"]["n_computed"] == 0
        fid_rel = abs(cold["cells"][0]["metrics"]["fid"]["value"] / theirs["frechet_inception_distance"] - 1)
        return [
            f"| FID+KID+IS, {n}+{n} PNGs {size}x{size}, cold | {t_tf:.1f} s | {t_cold:.1f} s | {t_tf / t_cold:.2f}x |"
            f" FID rel. diff {fid_rel:.1e} |",
            f"| same, warm feature cache | {t_tf:.1f} s | {t_warm:.2f} s | {t_tf / t_warm:.1f}x | no model run |",
        ]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def bench_trace_sqrt(dim: int = 2048, n: int = 5000) -> list[str]:
    rng = np.random.default_rng(0)
    a = np.maximum(rng.standard_normal((n, dim)) @ rng.standard_normal((dim, dim)) / dim**0.5, 0)
    b = np.maximum(rng.standard_normal((n, dim)) @ rng.standard_normal((dim, dim)) / dim**0.5, 0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    t_scipy, root = time_call(lambda: scipy.linalg.sqrtm(s1 @ s2))
    reference = float(np.trace(root).real)
    t_ours, ours = time_call(lambda: trace_sqrt_product(s1, s2))
    rel = abs(ours / reference - 1)
    return [
        f"| tr sqrt(S1 S2), {dim}x{dim}, full rank | {t_scipy:.2f} s (scipy sqrtm) | {t_ours:.2f} s |"
        f" {t_scipy / t_ours:.1f}x | rel. diff {rel:.1e} |"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200, help="images per set")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--skip-folders", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({platform.processor() or 'x86_64'})"
    print(f"device: {device}, torch threads: {torch.get_num_threads()}, torch {torch.__version__}, "
          f"torch-fidelity {torch_fidelity.__version__}\n")  # fmt: skip
    print("| task | torch-fidelity / scipy | sdeval | speed-up | check |")
    print("| --- | --- | --- | --- | --- |")
    rows = bench_trace_sqrt()
    if not args.skip_folders:
        rows = bench_folders(args.n, args.size, args.workers, args.batch_size) + rows
    print("\n".join(rows))


if __name__ == "__main__":
    main()
