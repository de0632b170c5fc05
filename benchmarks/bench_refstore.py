"""A reference file that stores its k-NN radii and Fréchet eigen-decomposition (format version 3) against its version 2
form, side by side in one process (issue 25 item 2, issue 24 item 4).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=. .venv/bin/python benchmarks/bench_refstore.py \\
        [--n 10000 20000] [--repeats 3]

Features as in bench_scaling.py (d = 2048, float32, reference n = generated n, generated shifted by 0.05). One
reference is built (radii at k = 3, 5 and the pool state's eigh computed and stored: the build's added cost) and also
written in its version 2 form. Per repeat the paths alternate (version 2 first), each from cold caches and from the
file, so a busy machine slows both alike; each figure is the median over the repeats (wall and process CPU seconds),
and the version 3 results are checked equal to the version 2 ones.
  load      load_reference (version 3: + the rows' sha256, the spot checks, putting the radii and root in place)
  pr        load + precision_recall, k = 3 (version 2: the reference's radii computed, as before this format)
  pr_f64    as pr, version 2 with every distance by the float64 formula (gemm="float64": precision/recall as it was
            before issue 25, the issue's "today"); version 3 as in pr (float32 screen, stored radii)
  fid       load + the cell's FID (d x d route): version 2 as before this format (the generated side rooted, eigh +
            eigvalsh); version 3 rooted on the stored decomposition (eigvalsh only)
  fid_root  as fid, version 2 rooted on the reference computed now (the path a version 2 file takes now)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scaling import features

MEASUREMENTS = ("load", "pr", "pr_f64", "fid", "fid_root")
KEY = "inception-bench"


def _forget() -> None:
    import sdeval.metrics.fid as fid
    import sdeval.metrics.precision_recall as pr

    pr._REFERENCE_RADII.clear()
    pr._HITS.clear()
    fid._ROOTS.clear()


def _version_2(v3: Path, out: Path) -> None:
    from sdeval.core.npz import npz_bytes

    with np.load(v3, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    meta = json.loads(str(arrays["meta"]))
    old = {name: values for name, values in arrays.items() if name.startswith(("feat__", "image_"))}
    old |= {f"fid_{part}": arrays[f"frechet__pool__{part}"] for part in ("n", "sum", "sum_outer")}
    meta = {k: v for k, v in meta.items() if k not in ("frechet", "radii", "eigh")} | {"format_version": 2}
    out.write_bytes(npz_bytes({"meta": np.array(json.dumps(meta)), **old}))


def _run(what: str, path: Path, generated: np.ndarray, version: int):
    from sdeval.metrics.fid import fid_from_features, reference_root
    from sdeval.metrics.precision_recall import precision_recall
    from sdeval.reference import load_reference

    _forget()
    start, cpu = time.perf_counter(), time.process_time()
    reference = load_reference(path)
    rows = reference.features[KEY]["pool"]
    state = reference.fid_state
    assert state is not None
    if what == "load":
        value: object = reference.n
    elif what == "pr" or (what == "pr_f64" and version == 3):
        value = precision_recall(generated, rows, 3)
    elif what == "pr_f64":
        value = precision_recall(generated, rows, 3, "float64")
    elif what == "fid" and version == 2:
        value = fid_from_features(generated, state, rows)  # no root: as before this format
    else:
        value = fid_from_features(generated, state, rows, root=lambda: reference_root(rows))
    return time.perf_counter() - start, time.process_time() - cpu, value


def main() -> None:
    from sdeval.metrics.fid import FrechetState
    from sdeval.reference import Reference, save_reference
    from sdeval.reference.build import store_derived

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[10_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="+", choices=MEASUREMENTS, default=list(MEASUREMENTS))
    args = parser.parse_args()
    blas = {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS")}
    print(f"d=2048, {os.cpu_count()} CPUs, env {blas}, load {os.getloadavg()}", flush=True)
    print("| n | measurement | version 2: wall s (CPU s) | version 3: wall s (CPU s) | ratio wall (CPU) |")
    print("| --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as folder:
        for n in args.n:
            generated = features(n, seed=1, shift=0.05, scale=1.0)
            rows = features(n, seed=2, shift=0.0, scale=1.0)
            names = [f"{i:06d}" for i in range(n)]
            state = FrechetState.from_features(rows)
            reference = Reference({KEY: {"extractor": "bench"}}, {KEY: {"pool": rows}}, state, n, "bench", "bench",
                                  [f"{i:064x}" for i in range(n)], names,
                                  state_rows={"pool": (KEY, "pool")})  # fmt: skip
            start, cpu = time.perf_counter(), time.process_time()
            store_derived(reference, [(KEY, "pool")], (3, 5))
            built = (time.perf_counter() - start, time.process_time() - cpu)
            v3, v2 = Path(folder) / f"v3-{n}.npz", Path(folder) / f"v2-{n}.npz"
            save_reference(v3, reference)
            _version_2(v3, v2)
            sizes = f"file {v2.stat().st_size / 2**20:.0f} MiB (v2) -> {v3.stat().st_size / 2**20:.0f} MiB (v3)"
            print(f"  n={n}: build adds {built[0]:.1f} s wall ({built[1]:.1f} s CPU); {sizes}", file=sys.stderr)
            for what in args.only:
                wall: dict[int, list[float]] = {2: [], 3: []}
                cpu_s: dict[int, list[float]] = {2: [], 3: []}
                for _ in range(args.repeats):
                    values = {}
                    for version, path in ((2, v2), (3, v3)):
                        seconds, cpu_seconds, values[version] = _run(what, path, generated, version)
                        wall[version].append(seconds)
                        cpu_s[version].append(cpu_seconds)
                    same = values[2] == values[3] if what != "fid" else np.isclose(values[2], values[3], rtol=1e-9)
                    if not same:
                        raise SystemExit(f"{what} n={n}: version 3 gives {values[3]}, version 2 {values[2]}")
                med = {v: (statistics.median(wall[v]), statistics.median(cpu_s[v])) for v in wall}
                old, new = med[2], med[3]
                print(
                    f"| {n} | {what} | {old[0]:.2f} ({old[1]:.2f}) | {new[0]:.2f} ({new[1]:.2f}) "
                    f"| {new[0] / old[0]:.2f}x ({new[1] / old[1]:.2f}x) |",
                    flush=True,
                )
                runs = {v: ", ".join(f"{w:.2f}" for w in wall[v]) for v in wall}
                print(f"  wall runs: v2 {runs[2]}; v3 {runs[3]}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
