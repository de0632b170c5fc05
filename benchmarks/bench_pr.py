"""Precision/recall: the float32 screen against the float64 formula, side by side in one process (issue 25).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=. .venv/bin/python benchmarks/bench_pr.py \\
        [--n 10000 20000] [--repeats 3]

Features as in bench_scaling.py (d = 2048, float32, reference n = generated n, generated shifted by 0.05). Per n and
per repeat, the two paths alternate (float64 first, then float32), so a busy machine slows both alike; each figure
is the median over the repeats (wall and process CPU seconds), and every result of the float32 screen is checked
equal to the float64 formula's.
Measurements, each from a cold cache unless said:
  pr          precision_recall (both sets' k-NN radii computed)
  pr_stored   precision_recall with the reference's radii already at hand (a stored reference)
  recall_ci   recall_leave_outs, K = 25 blocks of n / 2 prompts x 2 seeds (the recall interval's side), reference
              radii at hand; it also yields precision's per-image hits (the precision interval)
  prec_hits   precision's per-image hits alone (inside_balls), reference radii at hand
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scaling import features

MEASUREMENTS = ("pr", "pr_stored", "recall_ci", "prec_hits")


def _run(what: str, gemm: str, generated: np.ndarray, reference: np.ndarray, blocks: np.ndarray):
    import sdeval.metrics.precision_recall as pr

    pr._HITS.clear()
    if what == "pr":
        pr._REFERENCE_RADII.clear()
    else:
        pr.reference_radii(reference, 3, gemm)  # at hand, as a stored reference's
    start, cpu = time.perf_counter(), time.process_time()
    if what in ("pr", "pr_stored"):
        value: object = pr.precision_recall(generated, reference, 3, gemm)
    elif what == "recall_ci":
        recall, leave_outs = pr.recall_leave_outs(generated, reference, blocks, 25, 3, gemm)
        value = (recall, leave_outs.tolist(), pr._HITS and next(iter(pr._HITS.values())).tolist())
    else:
        value = pr.inside_balls(generated, reference, pr.reference_radii(reference, 3, gemm), gemm).tolist()
    return time.perf_counter() - start, time.process_time() - cpu, value


def main() -> None:
    from sdeval.metrics.estimators import blocks_of

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[10_000, 20_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="+", choices=MEASUREMENTS, default=list(MEASUREMENTS))
    args = parser.parse_args()
    blas = {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS")}
    print(f"d=2048, {os.cpu_count()} CPUs, env {blas}, load {os.getloadavg()}", flush=True)
    print("| n | measurement | float64 formula: wall s (CPU s) | float32 screen: wall s (CPU s) | ratio wall (CPU) |")
    print("| --- | --- | --- | --- | --- |")
    for n in args.n:
        generated = features(n, seed=1, shift=0.05, scale=1.0)
        reference = features(n, seed=2, shift=0.0, scale=1.0)
        blocks = blocks_of(np.arange(n) // 2, n // 2, 25, 0)
        medians: dict[str, dict[str, tuple[float, float]]] = {}
        for what in args.only:
            wall: dict[str, list[float]] = {"float64": [], "float32": []}
            cpu: dict[str, list[float]] = {"float64": [], "float32": []}
            for _ in range(args.repeats):
                values = {}
                for gemm in ("float64", "float32"):
                    seconds, cpu_seconds, values[gemm] = _run(what, gemm, generated, reference, blocks)
                    wall[gemm].append(seconds)
                    cpu[gemm].append(cpu_seconds)
                if values["float64"] != values["float32"]:
                    raise SystemExit(f"{what} n={n}: the float32 screen differs from the float64 formula")
            med = medians[what] = {g: (statistics.median(wall[g]), statistics.median(cpu[g])) for g in wall}
            slow, fast = med["float64"], med["float32"]
            print(
                f"| {n} | {what} | {slow[0]:.1f} ({slow[1]:.1f}) | {fast[0]:.1f} ({fast[1]:.1f}) "
                f"| {fast[0] / slow[0]:.2f}x ({fast[1] / slow[1]:.2f}x) |",
                flush=True,
            )
            runs = {g: ", ".join(f"{w:.1f}" for w in wall[g]) for g in wall}
            print(f"  wall runs: float64 {runs['float64']}; float32 {runs['float32']}", file=sys.stderr, flush=True)
        if "pr" in medians and "pr_stored" in medians:
            # The comparison: a stored reference's radii with the screen against today's path, which
            # computes them with the float64 formula.
            slow, fast = medians["pr"]["float64"], medians["pr_stored"]["float32"]
            print(
                f"| {n} | pr_stored (float32) against pr (float64) | {slow[0]:.1f} ({slow[1]:.1f}) "
                f"| {fast[0]:.1f} ({fast[1]:.1f}) | {fast[0] / slow[0]:.2f}x ({fast[1] / slow[1]:.2f}x) |",
                flush=True,
            )


if __name__ == "__main__":
    main()
