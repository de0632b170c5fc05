"""Cost of a FID interval (delete-a-group jackknife, reference decomposed once) against a plain FID.

    python benchmarks/bench_stats.py [--n 10000] [--n-reference 10000] [--dim 2048] [--blocks 25]

Run with the machine's usual BLAS settings (unset any OPENBLAS_CORETYPE override): the ratio is what matters.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from sdeval.metrics.fid import FrechetState, fid_from_features
from sdeval.stats import CellState, cell_intervals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--n-reference", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--blocks", type=int, default=25)
    parser.add_argument("--seeds", type=int, default=4, help="images per prompt")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    # Random features with a non-trivial spectrum, float32 as stored in the state file.
    mix = rng.normal(size=(args.dim, args.dim)) / np.sqrt(args.dim)
    pool = (rng.normal(size=(args.n, args.dim)) @ mix + 0.1).astype(np.float32)
    reference = (rng.normal(size=(args.n_reference, args.dim)) @ mix).astype(np.float32)
    items = [f"p{i // args.seeds}#{i % args.seeds}" for i in range(args.n)]

    start = time.perf_counter()
    value = fid_from_features(pool, FrechetState.from_features(reference), reference_features=reference)
    plain = time.perf_counter() - start

    cell = {"metrics": {"fid": {"value": value}}, "per_image": [{"item": item} for item in items]}
    state = CellState(items, pool=pool, reference_pool=reference)
    start = time.perf_counter()
    interval = cell_intervals(cell, state, blocks=args.blocks)["fid"]
    timed = time.perf_counter() - start

    threads = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_CORETYPE")}
    print(f"n={args.n} n_reference={args.n_reference} d={args.dim} blocks={args.blocks} env={threads}")
    print(f"plain FID      {plain:8.2f} s   FID = {value:.4f}")
    print(f"FID + interval {timed:8.2f} s   [{interval.low:.4f}, {interval.high:.4f}] ({interval.method})")
    print(f"ratio          {timed / plain:8.2f}x")


if __name__ == "__main__":
    main()
