"""Cost growth with n: FID, KID, precision/recall and the cell intervals on synthetic features (issue 16).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=. .venv/bin/python benchmarks/bench_scaling.py \\
        [--n 1000 10000 30000 50000] [--only fid kid pr ...] [--json out.json]

Generated and reference sets of the same n, d = 2048, float32, seeded Gaussians with a non-trivial spectrum (the
generated set shifted by 0.05 per dimension). Each (measurement, n) runs in a fresh subprocess: wall seconds of the
metric call alone (feature synthesis excluded), and the process's peak resident set (ru_maxrss, everything included:
Python, torch, the two feature sets) with its resident set just before the call, so the call's own peak is the
difference. Measurements:

  fid        fid_from_features (both covariances, the d x d route)
  kid        kid: 100 subsets of min(1000, n), the default
  pr         precision_recall, k = 3
  fid_ci     cell_intervals on a cell of n / 2 prompts x 2 seeds holding only that metric: jackknife, K = 25
  kid_ci     the same for KID (jackknife)
  recall_ci  the same for recall (jackknife)
  prec_ci    the same for precision (bootstrap of per-image hits, 200 replicates)
  intervals  all four intervals in one cell_intervals call
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

import numpy as np

D = 2048
MEASUREMENTS = ("fid", "kid", "pr", "fid_ci", "kid_ci", "recall_ci", "prec_ci", "intervals")
_INTERVAL_KEYS = {
    "fid_ci": ("fid",),
    "kid_ci": ("kid",),
    "recall_ci": ("recall",),
    "prec_ci": ("precision",),
    "intervals": ("fid", "kid", "precision", "recall"),
}


def features(n: int, seed: int, shift: float, scale: float) -> np.ndarray:
    """n x D float32 rows of N(shift, scale² A Aᵀ), A a fixed random mixing matrix, made in row blocks so that no
    float64 copy of the whole set is ever held."""
    mix = np.random.default_rng(1234).normal(size=(D, D)) / np.sqrt(D)
    rng = np.random.default_rng(seed)
    out = np.empty((n, D), dtype=np.float32)
    for start in range(0, n, 4096):
        rows = min(4096, n - start)
        out[start : start + rows] = rng.normal(size=(rows, D)) @ mix * scale + shift
    return out


def _resident() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(what: str, n: int) -> dict[str, Any]:
    """Run one measurement in this process: {seconds, peak and resident-before bytes, value}."""
    from sdeval.metrics.fid import FrechetState, fid_from_features
    from sdeval.metrics.kid import kid
    from sdeval.metrics.precision_recall import precision_recall
    from sdeval.stats import CellState, cell_intervals

    generated = features(n, seed=1, shift=0.05, scale=1.0)  # precision, recall near 0.45: neither saturated
    reference = features(n, seed=2, shift=0.0, scale=1.0)
    before = _resident()
    start = time.perf_counter()
    if what == "fid":
        value: Any = fid_from_features(generated, FrechetState.from_features(reference), reference_features=reference)
    elif what == "kid":
        value = kid(generated, reference, subsets=100, subset_size=min(1000, n))[0]
    elif what == "pr":
        value = precision_recall(generated, reference, k=3)
    else:
        items = [f"p{i // 2}#{i % 2}" for i in range(n)]  # n / 2 prompts x 2 seeds
        # The point values only centre the intervals; their cost is what is timed here.
        metrics = {key: {"value": 0.5} for key in _INTERVAL_KEYS[what]}
        cell = {"metrics": metrics, "per_image": [{"item": item} for item in items]}
        state = CellState(items, pool=generated, reference_pool=reference)
        found = cell_intervals(cell, state)
        value = {key: round(found[key].high - found[key].low, 6) for key in sorted(found)}
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"what": what, "n": n, "seconds": seconds, "peak": peak, "before": before, "value": value}


def _run_child(what: str, n: int, timeout: float) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", what, str(n)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"what": what, "n": n, "error": f"over {timeout:.0f} s"}
    if done.returncode != 0:
        return {"what": what, "n": n, "error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _cell(result: dict[str, Any] | None) -> str:
    if result is None:
        return "-"
    if "error" in result:
        return result["error"]
    own = (result["peak"] - result["before"]) / 2**30
    return f"{result['seconds']:.1f} s, {result['peak'] / 2**30:.2f} GiB (+{max(own, 0):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 10_000, 30_000, 50_000])
    parser.add_argument("--only", nargs="+", choices=MEASUREMENTS, default=list(MEASUREMENTS))
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per measurement")
    parser.add_argument("--json", help="append each result as a JSON line to this file")
    parser.add_argument("--child", nargs=2, metavar=("WHAT", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], int(args.child[1]))))
        return
    blas = {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS")}
    print(f"d={D}, float32 features, reference n = generated n; {os.cpu_count()} CPUs; env {blas}", flush=True)
    results: dict[tuple[str, int], dict[str, Any]] = {}
    for n in args.n:
        for what in args.only:
            result = _run_child(what, n, args.timeout)
            results[what, n] = result
            print(f"{what:>10} n={n:>6}: {_cell(result)}  {result.get('value', '')}", file=sys.stderr, flush=True)
            if args.json:
                with open(args.json, "a") as out:
                    out.write(json.dumps(result) + "\n")
    print("seconds of the call; peak resident set of the process (+ above the resident set before the call)")
    print("| n | " + " | ".join(args.only) + " |")
    print("|---" * (len(args.only) + 1) + "|")
    for n in args.n:
        print(f"| {n} | " + " | ".join(_cell(results.get((what, n))) for what in args.only) + " |")


if __name__ == "__main__":
    main()
