"""Report speed and size: 3 checkpoints x 4 settings x 50 prompts x 4 seeds (2400 images, 256x256).

The images come from the offline shapes checkpoint (`sdeval generate`, CPU) and are scored for adherence and
seed robustness with the shapes judge. FID and CLIP score need real networks, so the benchmark adds synthetic
`fid` and `clip` entries (values that move with the guidance scale, with intervals) to each cell: the report
then draws the FID-against-CLIP trade-off plot as it would for a real run. Timed separately: the first build
(which makes the thumbnails) and a second build into the same folder (thumbnails exist: the target is < 10 s);
the report's size (index.html + thumbs/) is checked against 30 MB.

    python benchmarks/bench_report.py [--work DIR] [--prompts 50] [--seeds 4]
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GUIDANCE = [3.0, 5.0, 7.5, 10.0]
CHECKPOINTS = [
    {"name": "clean", "path": "shapes"},
    {"name": "colours", "path": "shapes", "options": {"mistakes": {"colors": 0.3}}},
    {"name": "counts", "path": "shapes", "options": {"mistakes": {"counting": 0.3}}},
]


def _suite(n_prompts: int) -> list[dict[str, Any]]:
    text = importlib.resources.files("sdeval.suites.data").joinpath("shapes.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines()[1:] if line.strip()]
    return rows[:: max(1, len(rows) // n_prompts)][:n_prompts]


def _make_run(work: Path, n_prompts: int, seeds: int) -> Path:
    """Generate and score the run (once: reused when `work` already has the results)."""
    import yaml
    from click.testing import CliRunner

    from sdeval.cli import main

    results = work / "results.json"
    if results.is_file():
        return results
    work.mkdir(parents=True, exist_ok=True)
    rows = _suite(n_prompts)
    (work / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    config = {
        "checkpoints": CHECKPOINTS,
        "suite": "prompts.jsonl",
        "seeds_per_prompt": seeds,
        "settings": {"width": 256, "height": 256, "guidance_scale": GUIDANCE},
        "batch_size": 16,
        "output_dir": "out",
        "device": "cpu",
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    started = time.perf_counter()
    result = CliRunner().invoke(main, ["generate", str(work / "config.yaml"), "--quiet"])
    if result.exit_code != 0:
        raise SystemExit(f"generate failed: {result.output}")
    args = ["score", str(work / "out"), "--metrics", "adherence,robustness", "--judge", "shapes", "-o", str(results)]
    result = CliRunner().invoke(main, args)
    if result.exit_code not in (0, 3):
        raise SystemExit(f"score failed: {result.output}")
    print(f"generate + score: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    _add_synthetic_metrics(results)
    return results


def _add_synthetic_metrics(path: Path) -> None:
    """FID and CLIP score that trade off over guidance (higher guidance: better CLIP, worse FID)."""
    document = json.loads(path.read_text(encoding="utf-8"))
    for i, cell in enumerate(document["cells"]):
        guidance = float(cell["setting"]["values"]["guidance_scale"])
        offset = 1.5 * (i // len(GUIDANCE))
        fid, clip = 12.0 + 0.25 * (guidance - 5.0) ** 2 + offset, 28.0 + 0.4 * guidance - 0.3 * offset
        cell["metrics"]["fid"] = {
            "value": fid,
            "n": cell["n_images"],
            "n_reference": 10000,
            "interval": {"low": fid - 0.8, "high": fid + 0.8, "level": 0.95, "method": "synthetic"},
        }
        cell["metrics"]["clip"] = {"value": clip, "n": cell["n_images"],
                                   "interval": {"low": clip - 0.3, "high": clip + 0.3, "level": 0.95,
                                                "method": "synthetic"}}  # fmt: skip
    path.write_text(json.dumps(document), encoding="utf-8")


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=None, help="folder for the run (kept; default: a temp folder)")
    parser.add_argument("--prompts", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=4)
    args = parser.parse_args()

    from sdeval.report import ReportOptions, build_report

    work = args.work or Path(tempfile.mkdtemp(prefix="sdeval-bench-report-"))
    results = _make_run(work, args.prompts, args.seeds)
    out = work / "report"
    first = build_report([results], out, ReportOptions(quiet=True))
    started = time.perf_counter()
    second = build_report([results], out, ReportOptions(quiet=True))
    seconds = time.perf_counter() - started
    size = _size(out)
    summary = {
        "cells": second["n_cells"],
        "first_build_s": round(sum(first["seconds"].values()), 2),
        "first_build_thumbnails_s": round(first["seconds"]["thumbnails"], 2),
        "thumbnails_made": first["thumbnails"]["made"],
        "second_build_s": round(seconds, 2),
        "second_build_steps_s": {k: round(v, 2) for k, v in second["seconds"].items()},
        "thumbnails_reused": second["thumbnails"]["reused"],
        "index_html_bytes": (out / "index.html").stat().st_size,
        "report_bytes": size,
        "under_10_s": seconds < 10.0,
        "under_30_mb": size < 30e6,
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
