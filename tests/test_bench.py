"""`sdeval bench`: the shipped calibration example (made smaller) end to end, resume after SIGKILL, config errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from sdeval.bench import example_names, gate_exit_code, load_bench_config
from sdeval.cli import main
from sdeval.results import load_results

ROOT = Path(__file__).parents[1]
# 117 prompts x 2 seeds x 3 checkpoints at 128 px: 702 images, enough that a kill lands mid-generation.
SMALL = {"seeds_per_prompt": 2, "settings": {"width": 128, "height": 128}, "batch_size": 1}


def small_example(folder: Path) -> Path:
    """The shipped calibration example with fewer, smaller images; outputs relative to `folder`."""
    import importlib.resources

    data = yaml.safe_load((importlib.resources.files("sdeval.examples") / "calibration.yaml").read_text())
    data.update(SMALL)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bench.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("cache")
    old = os.environ.get("SDEVAL_CACHE_DIR")
    os.environ["SDEVAL_CACHE_DIR"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("SDEVAL_CACHE_DIR", None)
    else:
        os.environ["SDEVAL_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> dict[str, Any]:
    """One uninterrupted run in-process, then a second run of the same command."""
    folder = tmp_path_factory.mktemp("whole")
    config = small_example(folder)
    runner = CliRunner()
    first = runner.invoke(main, ["bench", str(config), "--quiet"])
    second = runner.invoke(main, ["bench", str(config), "--quiet"])
    return {"folder": folder, "first": first, "second": second}


def _images(out: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(out)): np.asarray(Image.open(p)) for p in sorted(out.rglob("*.png"))}


def _metrics(path: Path) -> list[tuple[str, Any]]:
    """What the results say, without the parts that name paths or times."""
    doc = load_results(path)
    return [(cell["id"], cell["metrics"]) for cell in doc["cells"]]


def _verdicts(path: Path) -> list[tuple[str, str, str]]:
    return [(v["rule"]["name"] if isinstance(v["rule"], dict) else v["rule"], v["cell"], v["status"])
            for v in json.loads(path.read_text())["verdicts"]]  # fmt: skip


def test_examples_are_shipped_and_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert {"calibration", "sd15-sdxl"} <= set(example_names())
    monkeypatch.chdir(tmp_path)
    config = load_bench_config("builtin:calibration")
    assert config.out == tmp_path / "out" / "calibration"  # an example's outputs land in the current folder
    assert config.report is not None and config.report.output == tmp_path / "reports" / "calibration"
    assert [c.name for c in config.generate.checkpoints] == ["clean", "colours30", "counting30"]
    (tmp_path / "refs").mkdir()
    (tmp_path / "refs" / "coco-val2017.npz").write_bytes(b"")  # the placeholder the real example names
    real = load_bench_config("builtin:sd15-sdxl")
    assert real.score.options.metrics == ("fid", "kid", "clip", "adherence") and real.score.options.ci == 0.95


def test_end_to_end_report_results_and_failing_verdict(uninterrupted: dict[str, Any]) -> None:
    first, folder = uninterrupted["first"], uninterrupted["folder"]
    # colours30 and counting30 lose their injected category against clean: the gate fails, exit code 1.
    assert first.exit_code == 1, first.output
    assert "verdict: FAIL (exit code 1" in first.output
    for stage in ("generate", "score", "gate", "report"):
        assert f"{stage + ':':<10}done" in first.output
    assert "What you are looking at" in first.output
    out = folder / "out" / "calibration"
    assert len(list(out.rglob("*.png"))) == 702
    results = load_results(out / "results.json")
    assert [c["id"].split("/")[0] for c in results["cells"]] == ["clean", "colours30", "counting30"]
    assert (folder / "reports" / "calibration" / "index.html").is_file()
    failed = {(v[0], v[1].split("/")[0]) for v in _verdicts(out / "gate.json") if v[2] == "fail"}
    assert failed == {("adherence.colors max_decrease 0.05", "colours30"),
                      ("adherence.counting max_decrease 0.05", "counting30")}  # fmt: skip
    summary = json.loads((out / "gate.json").read_text())["summary"]
    assert gate_exit_code(summary, strict=False) == first.exit_code


def test_second_run_skips_every_stage(uninterrupted: dict[str, Any]) -> None:
    second = uninterrupted["second"]
    assert second.exit_code == 1, second.output
    for stage in ("generate", "score", "gate", "report"):
        assert f"{stage + ':':<10}skipped (already done)" in second.output


def test_sigkill_during_generation_then_rerun_equals_uninterrupted(
    uninterrupted: dict[str, Any], tmp_path: Path, cache: Path
) -> None:
    config = small_example(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "sdeval", "bench", str(config), "--quiet"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = tmp_path / "out" / "calibration"
    deadline = time.time() + 120
    try:
        while len(list(out.rglob("*.png"))) < 5 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done_before = len(list(out.rglob("*.png")))
    assert 5 <= done_before < 702, "the kill should land mid-generation"
    assert not (out / "results.json").exists()
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 1, rerun.stderr[-2000:]
    assert "verdict: FAIL (exit code 1" in rerun.stdout
    whole = uninterrupted["folder"] / "out" / "calibration"
    mine, theirs = _images(out), _images(whole)
    assert mine.keys() == theirs.keys()
    assert all(np.array_equal(mine[k], theirs[k]) for k in mine)
    assert _metrics(out / "results.json") == _metrics(whole / "results.json")
    assert _verdicts(out / "gate.json") == _verdicts(whole / "gate.json")


def test_array_job_shards_then_one_merge_equal_the_uninterrupted_run(
    uninterrupted: dict[str, Any], tmp_path: Path, cache: Path
) -> None:
    """`sdeval bench CONFIG --shard I/N` per array job (each generates and scores its share), then `sdeval bench
    CONFIG` once: the parts are merged (not scored again), and results and verdicts equal one uninterrupted run."""
    config = small_example(tmp_path)
    for index in (1, 0):
        job = CliRunner().invoke(main, ["bench", str(config), "--quiet", "--shard", f"{index}/2"])
        assert job.exit_code == 0, job.output
        assert f"shard {index}/2:" in job.output and "when every shard of 2 is done" in job.output
    out = tmp_path / "out" / "calibration"
    assert len(list((out / ".sdeval" / "score-parts").glob("part-*.json"))) == 2 and not (out / "results.json").exists()
    final = CliRunner().invoke(main, ["bench", str(config), "--quiet"])
    assert final.exit_code == 1, final.output
    assert "merged from the 2 shards' parts" in final.output and "verdict: FAIL (exit code 1" in final.output
    whole = uninterrupted["folder"] / "out" / "calibration"
    assert _metrics(out / "results.json") == _metrics(whole / "results.json")
    assert _verdicts(out / "gate.json") == _verdicts(whole / "gate.json")
    assert not (out / ".sdeval" / "score-parts").exists()  # merged into the results


def test_torchrun_two_processes_equal_the_uninterrupted_run(uninterrupted: dict[str, Any], tmp_path: Path) -> None:
    """`torchrun --nproc_per_node 2 -m sdeval bench CONFIG` (gloo on CPU): both ranks generate and score their shares
    in one process group that outlives generation; rank 0 alone gates, reports and prints; the same images, results
    and verdicts as one process."""
    config = small_example(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "SDEVAL_CACHE_DIR": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "sdeval", "bench", str(config), "--quiet"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-3000:]  # the example's verdict is FAIL
    assert proc.stdout.count("verdict: FAIL (exit code 1") == 1 and proc.stdout.count("score:    done") == 1
    out, whole = tmp_path / "out" / "calibration", uninterrupted["folder"] / "out" / "calibration"
    mine, theirs = _images(out), _images(whole)
    assert mine.keys() == theirs.keys() and all(np.array_equal(mine[k], theirs[k]) for k in mine)
    assert _metrics(out / "results.json") == _metrics(whole / "results.json")
    assert _verdicts(out / "gate.json") == _verdicts(whole / "gate.json")


def test_changed_images_are_scored_again(uninterrupted: dict[str, Any], cache: Path) -> None:
    from sdeval.bench import stage_score

    folder = uninterrupted["folder"]
    config = load_bench_config(str(folder / "bench.yaml"))
    assert stage_score(config, progress=False)[0].skipped
    victim = next(iter(sorted((folder / "out" / "calibration" / "clean").rglob("*.png"))))
    original = victim.read_bytes()
    try:
        Image.new("RGB", (128, 128), "white").save(victim)
        assert not stage_score(config, progress=False)[0].skipped
    finally:
        victim.write_bytes(original)
        stage_score(config, progress=False)


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    base = yaml.safe_load(small_example(tmp_path).read_text())
    cases = {
        "metric": ({"metric": ["adherence"]}, "metric: unknown key (did you mean 'metrics'?)"),
        "gate": ({"gate": {"rules": [], "baseline": {"checkpoint": "clean"}}}, "gate.rules: expected a non-empty"),
        "baseline": ({"gate": {"rules": [{"metric": "adherence", "min": 0.5}], "baseline": {"ckpt": "x"}}},
                     "gate.baseline.ckpt: unknown key"),
        "fid": ({"metrics": "fid,adherence"}, "reference: required by metrics fid"),
        "score": ({"score": {"judge": "eyes"}}, "score.judge: expected one of detector"),
        "option": ({"score": {"kid_subset": 10}}, "score.kid_subset: unknown key (did you mean 'kid_subsets'?)"),
        # Gate mistakes are found before anything is generated or scored (issue 15):
        "rule key": ({"gate": {"rules": [{"metric": "adherence", "max_decreese": 0.1}],
                               "baseline": {"checkpoint": "clean"}}},
                     "unknown key 'max_decreese' (did you mean 'max_decrease'?)"),
        "checkpoint": ({"gate": {"rules": [{"metric": "adherence", "max_decrease": 0.1}],
                                 "baseline": {"checkpoint": "claen"}}},
                       "gate.baseline.checkpoint: no checkpoint 'claen' in this run (did you mean 'clean'?)"),
        "cell": ({"gate": {"rules": [{"metric": "adherence", "min": 0.5, "cell": "clean/nope"}]}},
                 "rule 1 (adherence min 0.5 (cell clean/nope)): cell: no cell 'clean/nope' in this run"),
        "uncomputed": ({"gate": {"rules": [{"metric": "clip", "min": 30}]}},
                       "clip is filled by metric 'clip', which this run does not compute"),
    }  # fmt: skip
    for name, (change, message) in cases.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**base, **change}))
        result = CliRunner().invoke(main, ["bench", str(path)])
        assert result.exit_code == 2, (name, result.output)
        assert message in result.output, (name, result.output)
        assert "generate:" not in result.output and not (tmp_path / "out").exists(), name  # nothing ran
    result = CliRunner().invoke(main, ["bench", "builtin:nope"])
    assert result.exit_code == 2 and "no built-in example 'nope'" in result.output


def test_gate_exit_codes() -> None:
    assert gate_exit_code({"pass": 3}, strict=True) == 0
    assert gate_exit_code({"pass": 1, "inconclusive": 1}, strict=False) == 0
    assert gate_exit_code({"pass": 1, "inconclusive": 1}, strict=True) == 4
    assert gate_exit_code({"fail": 1, "inconclusive": 1}, strict=True) == 1
    assert gate_exit_code({"fail": 1, "error": 1}, strict=False) == 2
