"""Per-rank scaling of `sdeval score`'s extraction: one process against a torchrun launch of N processes, on the
same images and the same cores, with the results checked equal.

    python benchmarks/bench_ranks.py [--images 384] [--size 256] [--nproc 2] [--repeats 3] [--device cpu]

Each configuration runs `sdeval score IMAGES --metrics is` (Inception only, no cache) as a fresh process; one
process gets all the cores as threads, each of the N ranks cores/N threads. Random Inception weights: speed does
not depend on weight values. Prints wall seconds (median of --repeats) and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _run(cmd: list[str], threads: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=384)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--workers", type=int, default=1, help="decode processes per rank")
    args = parser.parse_args()
    from sdeval.features.random_weights import save_random_inception_weights
    from sdeval.score.demo import make_image_set

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_image_set(root / "images", args.images, seed=0, size=args.size)
        save_random_inception_weights(root / "w.pth", seed=0)
        score = ["score", str(root / "images"), "--metrics", "is", "--inception-weights", str(root / "w.pth"),
                 "--no-cache", "--workers", str(args.workers), "--device", args.device]  # fmt: skip
        one = [sys.executable, "-m", "sdeval", *score, "-o", str(root / "one.json")]
        many = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(args.nproc),
                "-m", "sdeval", *score, "-o", str(root / "many.json")]  # fmt: skip
        times: dict[str, list[float]] = {"one": [], "many": []}
        for _ in range(args.repeats):  # interleaved, so drift in the machine's speed hits both alike
            times["one"].append(_run(one, args.cores))
            times["many"].append(_run(many, max(1, args.cores // args.nproc)))
        values = [
            json.loads((root / f).read_text())["cells"][0]["metrics"]["is"]["value"] for f in ("one.json", "many.json")
        ]
        a, b = statistics.median(times["one"]), statistics.median(times["many"])
        print(f"{args.images} images of {args.size}px, {args.cores} cores, device {args.device}")
        threads = max(1, args.cores // args.nproc)
        print(f"1 process x {args.cores} threads: {a:.1f} s ({args.images / a:.1f} img/s), runs {times['one']}")
        print(f"{args.nproc} ranks x {threads} threads: {b:.1f} s ({args.images / b:.1f} img/s), runs {times['many']}")
        print(f"speed-up {a / b:.2f}x; IS one process {values[0]!r}, {args.nproc} ranks {values[1]!r}")


if __name__ == "__main__":
    main()
