"""The added cost of the metrics the peers have, each against FID alone, features given (no network; issue 24).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=. .venv/bin/python benchmarks/bench_new_metrics.py \\
        [--n 10000] [--prompts-of 4]

Inception pool features as in bench_scaling.py (d = 2048, float32, reference n = generated n, generated shifted by
0.05); CLIP image embeddings d = 768, L2-normalised, generated as n / SEEDS prompts x SEEDS seeds (a prompt's seeds
share a direction). Each figure is wall and process CPU seconds of the metric's own function on one cell, from a
cold cache (reference radii and roots cleared), so it is what `sdeval score --metrics fid,NAME` adds to `fid`:
  fid        fid_from_features against the reference's state (the baseline)
  fd_clip    the Fréchet distance of the CLIP embeddings (d = 768)
  fid_inf    FID∞: 36 FIDs of subsample draws (8 sizes from n / 5 to n, 5 draws each) and the fit
  vendi      Vendi per prompt (n / SEEDS eigvalsh of SEEDS x SEEDS) and over all images (one 768 x 768)
  dc         density and coverage, k = 5 (reference radii at k = 5, then the generated-to-real pass)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scaling import features

CLIP_D = 768


def _clip(n: int, seeds: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    prompts = rng.normal(size=(n // seeds, CLIP_D))
    x = np.repeat(prompts, seeds, axis=0) + 0.7 * rng.normal(size=(n // seeds * seeds, CLIP_D))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--prompts-of", type=int, default=4, help="seeds per prompt of the CLIP embeddings")
    args = parser.parse_args()
    import sdeval.metrics.precision_recall as pr
    import sdeval.stats.corpus as corpus
    from sdeval.metrics.density_coverage import density_coverage
    from sdeval.metrics.fd_clip import fd_clip
    from sdeval.metrics.fid import FrechetState, fid_from_features
    from sdeval.metrics.vendi import per_prompt, vendi_score
    from sdeval.stats.fid_inf import fid_inf

    n = args.n
    pool, ref_pool = features(n, 1, 0.05, 1.0), features(n, 2, 0.0, 1.0)
    clip, ref_clip = _clip(n, args.prompts_of, 3), _clip(n, args.prompts_of, 4)
    prompt_of = np.repeat(np.arange(n // args.prompts_of), args.prompts_of)

    def run_fid() -> None:
        fid_from_features(pool, FrechetState.from_features(ref_pool), reference_features=ref_pool)

    def run_fid_inf() -> None:
        corpus._ROOTS.clear()
        fid_inf(pool, corpus.reference_root(ref_pool), seed=2020)

    def run_vendi() -> None:
        per_prompt(clip, prompt_of)
        vendi_score(clip)

    def run_dc() -> None:
        pr._REFERENCE_RADII.clear()
        density_coverage(pool, ref_pool)

    rows = {"fid": run_fid, "fd_clip": lambda: fd_clip(clip, ref_clip), "fid_inf": run_fid_inf,
            "vendi": run_vendi, "dc": run_dc}  # fmt: skip
    times = {name: _timed(fn) for name, fn in rows.items()}
    base = times["fid"][0]
    print(f"n = {n}, d = 2048 (pool) / {CLIP_D} (CLIP), {args.prompts_of} seeds per prompt")
    print("| metric | wall s | CPU s | wall / FID |")
    print("| --- | --- | --- | --- |")
    for name, (wall, cpu) in times.items():
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {wall / base:.2f} |")


if __name__ == "__main__":
    main()
