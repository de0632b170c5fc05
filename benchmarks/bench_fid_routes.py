"""FID of a small cell (n < 2048) by the n x n route against the d x d route, at Inception's d = 2048.

env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=. .venv/bin/python benchmarks/bench_fid_routes.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sdeval.metrics.fid import FrechetState, fid_from_features, fid_from_states


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="images in the cell")
    parser.add_argument("--n-reference", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    d = 2048
    features = rng.standard_normal((args.n, d)).astype(np.float32)
    reference = FrechetState.from_features(rng.standard_normal((args.n_reference, d)).astype(np.float32) + 0.1)
    state = FrechetState.from_features(features)
    best = {"n x n": float("inf"), "d x d": float("inf")}
    values = {}
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        values["n x n"] = fid_from_features(features, reference)
        best["n x n"] = min(best["n x n"], time.perf_counter() - t0)
        t0 = time.perf_counter()
        values["d x d"] = fid_from_states(state, reference)
        best["d x d"] = min(best["d x d"], time.perf_counter() - t0)
    print(f"n={args.n}, d={d}, reference n={args.n_reference}: best of {args.repeat}")
    for route in best:
        print(f"  {route}: {best[route]:.3f} s  FID {values[route]:.9f}")
    relative = abs(values["n x n"] / values["d x d"] - 1)
    print(f"  ratio: {best['d x d'] / best['n x n']:.1f}x; relative difference {relative:.1e}")


if __name__ == "__main__":
    main()
