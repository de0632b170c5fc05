"""sdeval's warm re-score (or its cold run) against torch-fidelity's cold run: FID+KID+IS on the same folders and
Inception weights, each a whole fresh process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_warm.py --n 1000 --size 256 --repeats 3
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_warm.py --cold --n 120 --n-ref 110 \
        --size 256 --repeats 3

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
import resource
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


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(argv: list[str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall seconds, CPU seconds of the process and its children, the finished process)."""
    start, cpu = time.perf_counter(), _cpu()
    done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} ... failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return elapsed, _cpu() - cpu, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="generated images")
    parser.add_argument("--n-ref", type=int, default=None, help="reference images (default: --n)")
    parser.add_argument("--cold", action="store_true", help="sdeval cold too: no cache, the reference a folder")
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
        make_image_set(ref, args.n_ref or args.n, seed=2, size=args.size, style="spots")
        save_random_inception_weights(weights, seed=0)
    sdeval = [sys.executable, "-m", "sdeval"]
    common = ["--inception-weights", str(weights), "--cache-dir", str(cache)]
    reference = root / "ref.npz"
    score = ["score", str(gen), "-r", str(reference), "--metrics", "fid,kid,is", *common, "-o"]
    if args.cold:
        score = ["score", str(gen), "-r", str(ref), "--metrics", "fid,kid,is", "--inception-weights", str(weights)]
        score += ["--no-cache", "-o"]
    else:
        t_build, _, _ = _run([*sdeval, "reference", "build", str(ref), "-o", str(reference), *common])
        t_cold, _, _ = _run([*sdeval, *score, str(root / "cold.json")])
        print(f"setup: reference build {t_build:.1f} s, cold score {t_cold:.1f} s (fills the cache)", file=sys.stderr)

    theirs, ours, imported = [], [], set()
    subset = str(min(args.n, args.n_ref or args.n))  # KID subset size, both tools
    for _ in range(args.repeats):
        wall, cpu, _ = _run([sys.executable, "-c", TORCH_FIDELITY, str(gen), str(ref), str(weights), subset])
        theirs.append((wall, cpu))
        wall, cpu, done = _run([sys.executable, "-c", SDEVAL_WARM, *score, str(root / "warm.json")])
        ours.append((wall, cpu))
        imported |= set(json.loads(done.stderr.strip().splitlines()[-1])["imported"])
    warm = json.loads((root / "warm.json").read_text())
    assert (warm["images"]["n_computed"] == 0) != args.cold, "the warm run computed features, or the cold one did not"
    tf = [statistics.median(t[i] for t in theirs) for i in (0, 1)]
    sd = [statistics.median(t[i] for t in ours) for i in (0, 1)]
    libraries = ", ".join(sorted(imported)) or "none"
    print(
        f"| {args.n}+{args.n_ref or args.n} PNGs {args.size} px, FID+KID+IS "
        f"| torch-fidelity cold {tf[0]:.1f} s ({tf[1]:.1f} s CPU) | sdeval {'cold' if args.cold else 'warm'} "
        f"{sd[0]:.2f} s ({sd[1]:.2f} s CPU) | {tf[0] / sd[0]:.2f}x wall, {tf[1] / sd[1]:.2f}x CPU "
        f"| model libraries sdeval's run imported: {libraries} |"
    )
    print(
        f"runs (wall, CPU): torch-fidelity {[(round(w, 1), round(c, 1)) for w, c in theirs]}, "
        f"sdeval {[(round(w, 2), round(c, 2)) for w, c in ours]}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
