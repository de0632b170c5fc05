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
  sfid       sFID: the Fréchet distance of the spatial rows (d = 2023; the first 2023 columns of the pool stand-in)
             against the reference's rows, its state made from them
With --network B it also times the Inception pass itself on B random 299 x 299 images (random weights, batch 32),
without and with sFID's spatial rows (a forward hook on mixed_6/conv), the one cost sFID adds before the metric.
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
    parser.add_argument("--network", type=int, default=0, metavar="B", help="also time the Inception pass on B images")
    parser.add_argument("--only", default=None, help="comma-separated metrics to time (default: all)")
    args = parser.parse_args()
    import sdeval.metrics.corpus as corpus
    import sdeval.metrics.precision_recall as pr
    from sdeval.metrics.density_coverage import density_coverage
    from sdeval.metrics.fd_clip import fd_clip
    from sdeval.metrics.fid import FrechetState, fid_from_features
    from sdeval.metrics.fid_inf import fid_inf
    from sdeval.metrics.sfid import sfid
    from sdeval.metrics.vendi import per_prompt, vendi_score

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

    spatial, ref_spatial = pool[:, :2023].copy(), ref_pool[:, :2023].copy()
    rows = {"fid": run_fid, "fd_clip": lambda: fd_clip(clip, ref_clip), "fid_inf": run_fid_inf,
            "vendi": run_vendi, "dc": run_dc, "sfid": lambda: sfid(spatial, ref_spatial)}  # fmt: skip
    wanted = ["fid", *(name for name in (args.only.split(",") if args.only else rows) if name != "fid")]
    times = {name: _timed(rows[name]) for name in wanted}
    base = times["fid"][0]
    print(f"n = {n}, d = 2048 (pool) / {CLIP_D} (CLIP), {args.prompts_of} seeds per prompt")
    print("| metric | wall s | CPU s | wall / FID |")
    print("| --- | --- | --- | --- |")
    for name, (wall, cpu) in times.items():
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {wall / base:.2f} |")
    if args.network:
        _network(args.network)


def _network(count: int, batch: int = 32) -> None:
    """ms per image of the Inception pass without and with the spatial rows, alternated so load drifts hit both."""
    import tempfile

    import torch

    from sdeval.features.inception import InceptionExtractor
    from sdeval.features.random_weights import save_random_inception_weights

    with tempfile.TemporaryDirectory() as folder:
        weights = Path(folder) / "inception-random.pth"
        save_random_inception_weights(weights, seed=0)
        plain, spatial = InceptionExtractor(weights), InceptionExtractor(weights, spatial=True)
        spatial._network = plain.network  # loaded while the file is there; one network: only the hook differs
    images = torch.rand(count, 3, 299, 299) * 255
    plain.extract(images[:2])  # warm-up
    totals = {"FID alone (pool, logits)": [0.0, 0.0], "with sFID's spatial rows": [0.0, 0.0]}
    for start in range(0, count, batch):
        chunk = images[start : start + batch]
        for name, extractor in zip(totals, (plain, spatial), strict=True):
            wall, cpu = _timed(lambda e=extractor, c=chunk: e.extract(c))
            totals[name][0] += wall
            totals[name][1] += cpu
    print(f"Inception pass, {count} images of 299 x 299, batch {batch}, {torch.get_num_threads()} threads")
    print("| pass | wall ms/image | CPU ms/image |")
    print("| --- | --- | --- |")
    for name, (wall, cpu) in totals.items():
        print(f"| {name} | {1000 * wall / count:.1f} | {1000 * cpu / count:.1f} |")


if __name__ == "__main__":
    main()
