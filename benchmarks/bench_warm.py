"""Warm re-score against torch-fidelity's cold run: FID+KID+IS on the same folders and Inception weights.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_warm.py --n 1000 --size 256 --repeats 3

A user re-scores a folder after changing a gate, a metric or an interval setting: every feature is in sdeval's
cache and the reference is a file. torch-fidelity has no feature cache for folders, so each of its runs is cold.
Each figure is a whole fresh process (imports, model load, decode, network, metrics), the two commands alternating,
medians quoted. The warm run must load no network and import no model library it does not need: the script
checks which of torch_fidelity, open_clip, transformers and diffusers the warm process imported, and says so.
Weights are random (speed does not depend on their values). Prints a Markdown table for benchmarks/RESULTS.md.
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

MODEL_LIBRARIES = ("torch_fidelity", "open_clip", "transformers", "diffusers")

TORCH_FIDELITY = """
import sys, torch_fidelity
out = torch_fidelity.calculate_metrics(input1=sys.argv[1], input2=sys.argv[2], fid=True, kid=True, isc=True,
    kid_subset_size=min(1000, int(sys.argv[4])), feature_extractor_weights_path=sys.argv[3], cache=False,
    verbose=False, cuda=False)
print(out["frechet_inception_distance"])
"""

# Runs the CLI in this process and reports which model libraries it imported (a warm run should import none).
SDEVAL_WARM = f"""
import runpy, sys, json
sys.argv = ["sdeval", *sys.argv[1:]]
code = 0
try:
    runpy.run_module("sdeval", run_name="__main__")
except SystemExit as stop:
    code = stop.code or 0
imported = sorted(m for m in {MODEL_LIBRARIES!r} if m in sys.modules)
print(json.dumps({{"code": code, "imported": imported}}), file=sys.stderr)
"""


def _run(argv: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} ... failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return elapsed, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="images per set")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--root", help="work folder (kept; default: a new temporary folder)")
    args = parser.parse_args()

    from sdeval.features.random_weights import save_random_inception_weights
    from sdeval.score.demo import make_image_set

    root = Path(args.root or tempfile.mkdtemp(prefix="sdeval-warm-"))
    gen, ref, weights, cache = root / "gen", root / "ref", root / "inception.pth", root / "cache"
    if not gen.is_dir():
        make_image_set(gen, args.n, seed=1, size=args.size, style="blobs")
        make_image_set(ref, args.n, seed=2, size=args.size, style="spots")
        save_random_inception_weights(weights, seed=0)
    sdeval = [sys.executable, "-m", "sdeval"]
    common = ["--inception-weights", str(weights), "--cache-dir", str(cache)]
    reference = root / "ref.npz"
    score = ["score", str(gen), "-r", str(reference), "--metrics", "fid,kid,is", *common, "-o"]
    t_build, _ = _run([*sdeval, "reference", "build", str(ref), "-o", str(reference), *common])
    t_cold, _ = _run([*sdeval, *score, str(root / "cold.json")])
    print(f"setup: reference build {t_build:.1f} s, cold score {t_cold:.1f} s (fills the cache)", file=sys.stderr)

    theirs, ours, imported = [], [], set()
    for _ in range(args.repeats):
        t, _ = _run([sys.executable, "-c", TORCH_FIDELITY, str(gen), str(ref), str(weights), str(args.n)])
        theirs.append(t)
        t, done = _run([sys.executable, "-c", SDEVAL_WARM, *score, str(root / "warm.json")])
        ours.append(t)
        imported |= set(json.loads(done.stderr.strip().splitlines()[-1])["imported"])
    warm = json.loads((root / "warm.json").read_text())
    assert warm["images"]["n_computed"] == 0, "the warm run computed features"
    tf, sd = statistics.median(theirs), statistics.median(ours)
    libraries = ", ".join(sorted(imported)) or "none"
    print(
        f"| {args.n}+{args.n} PNGs {args.size} px, FID+KID+IS | torch-fidelity cold {tf:.1f} s | sdeval warm "
        f"{sd:.2f} s | {tf / sd:.1f}x | model libraries the warm run imported: {libraries} |"
    )
    print(
        f"torch-fidelity runs {[round(t, 1) for t in theirs]}, sdeval warm runs {[round(t, 2) for t in ours]}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
