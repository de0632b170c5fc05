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

from sdeval.bench.config import example_names, load_bench_config
from sdeval.cli import main
from sdeval.core.errors import ConfigError, Terminated
from sdeval.gate.verdicts import exit_code as gate_exit_code
from sdeval.results.document import load_results

ROOT = Path(__file__).parents[1]
# 117 prompts x 2 seeds x 3 checkpoints at 128 px: 702 images, enough that a kill lands mid-generation.
SMALL = {"seeds_per_prompt": 2, "settings": {"width": 128, "height": 128}, "batch_size": 1}


def small_example(folder: Path) -> Path:
    """The shipped calibration example with fewer, smaller images; outputs relative to `folder`."""
    import importlib.resources

    data = yaml.safe_load((importlib.resources.files("sdeval.bench.examples") / "calibration.yaml").read_text())
    data.update(SMALL)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bench.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def shapes_slice(folder: Path, every: int, name: str = "slice.jsonl", category: str | None = None) -> Path:
    """Every `every`-th prompt of the built-in shapes suite (of one category, if given) as a suite file in `folder`:
    the calibration world on fewer images. Cell ids do not change (they name checkpoint and setting only)."""
    from sdeval.suites import load_suite

    prompts = [p for p in load_suite("builtin:shapes").prompts if category in (None, p.category)][::every]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join(json.dumps(p.to_json()) + "\n" for p in prompts))
    return folder / name


def example(name: str, folder: Path, **changes: Any) -> Path:
    """A shipped example with `changes` to its top-level keys, written to `folder` (its outputs relative to it)."""
    import importlib.resources

    data = yaml.safe_load((importlib.resources.files("sdeval.bench.examples") / f"{name}.yaml").read_text())
    data.update(changes)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
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
    assert {"calibration", "calibration-release", "sd15-sdxl"} <= set(example_names())
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
    # The rerun in this process, as the uninterrupted run was (a fresh process would only add its start-up).
    rerun = CliRunner().invoke(main, ["bench", str(config), "--quiet"])
    assert rerun.exit_code == 1, rerun.output
    assert "verdict: FAIL (exit code 1" in rerun.output
    whole = uninterrupted["folder"] / "out" / "calibration"
    mine, theirs = _images(out), _images(whole)
    assert mine.keys() == theirs.keys()
    assert all(np.array_equal(mine[k], theirs[k]) for k in mine)
    assert not list(out.rglob("*.tmp"))  # no half-written file survives the kill and the rerun
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
    from sdeval.bench.stages import stage_score

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
    counting = shapes_slice(tmp_path / "suites", 1, "counting.jsonl", category="counting")
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
        # A part of a key is one of the categories the suite's specs give the run's prompts (issue 21):
        "part": ({"gate": {"rules": [{"metric": "adherence.postion", "max_decrease": 0.05}],
                           "baseline": {"checkpoint": "clean"}}},
                 "gate.rules: rule 1 (adherence.postion max_decrease 0.05): adherence.postion: no category 'postion' "
                 "in the suite builtin:shapes (did you mean 'position'?) (categories: color_attr, colors, counting, "
                 "position, single_object, two_object)"),
        "score suite": ({"score": {"judge": "shapes", "suite": str(counting)},
                         "gate": {"rules": [{"metric": "adherence.position", "min": 0.5}]}},
                        f"adherence.position: no category 'position' in the suite {counting} (categories: counting)"),
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


def test_rules_on_question_set_categories_are_checked_as_scoring_assigns_them(tmp_path: Path) -> None:
    """Under `--judge vqa` a suite's question set gives each image its row's category (DSG-1k's dataset categories,
    rows without specs): a rule on one of them is accepted, a misspelt one refused naming them, before anything runs."""
    import gzip

    from sdeval.suites.builtin import builtin_path

    lines = gzip.decompress(builtin_path("dsg-1k").read_bytes()).decode("utf-8").splitlines()
    rows = [json.loads(line) for line in lines[1:]]
    chosen = [next(r for r in rows if r["category"] == c) for c in ("count", "relation")]
    assert all("spec" not in r for r in chosen)  # the categories come from the question set's rows alone
    (tmp_path / "dsg.jsonl").write_text(lines[0] + "\n" + "".join(json.dumps(r) + "\n" for r in chosen))
    config = {"checkpoints": [{"name": "clean", "path": "shapes"}], "suite": "dsg.jsonl", "seeds_per_prompt": 1,
              "device": "cpu", "output_dir": "out", "metrics": ["adherence"], "score": {"judge": "vqa"}}  # fmt: skip

    def check(*categories: str) -> None:
        rules = [{"metric": f"adherence.{c}", "min": 0.5} for c in categories]
        (tmp_path / "bench.yaml").write_text(yaml.safe_dump({**config, "gate": {"rules": rules}}))
        load_bench_config(str(tmp_path / "bench.yaml"))

    check("count", "relation")
    with pytest.raises(ConfigError, match=r"no category 'relaton' .*\(did you mean 'relation'\?\) \(categories: count, "
                       r"relation\)"):  # fmt: skip
        check("count", "relaton")
    assert not (tmp_path / "out").exists()


def test_gate_exit_codes() -> None:
    assert gate_exit_code({"pass": 3}, strict=True) == 0
    assert gate_exit_code({"pass": 1, "inconclusive": 1}, strict=False) == 0
    assert gate_exit_code({"pass": 1, "inconclusive": 1}, strict=True) == 4
    assert gate_exit_code({"fail": 1, "inconclusive": 1}, strict=True) == 1
    assert gate_exit_code({"fail": 1, "error": 1}, strict=False) == 2


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> Path:
    """The results of an earlier, small calibration run (checkpoints clean and colours30, adherence only): a
    baseline file for the gate of a later run."""
    folder = tmp_path_factory.mktemp("earlier")
    config = example("calibration", folder, suite=shapes_slice(folder, 12).name, seeds_per_prompt=1,
                     metrics=["adherence"], checkpoints=[{"name": "clean", "path": "shapes"},
                     {"name": "colours30", "path": "shapes", "options": {"mistakes": {"colors": 0.3}}}],
                     report=False, gate=None, about=None)  # fmt: skip
    result = CliRunner().invoke(main, ["bench", str(config), "--quiet"])
    assert result.exit_code == 0, result.output
    return folder / "out" / "calibration" / "results.json"


def test_a_baseline_files_cells_and_metrics_are_checked_before_anything_runs(earlier_run: Path, tmp_path: Path) -> None:
    """`gate.baseline: PATH`: pairs name the baseline file's cells (checkpoints renamed between releases), every
    compared cell finds its baseline cell, and the baseline holds each regression rule's metric (issue 21)."""
    setting = "g7.5-s50-default-256x256-fp32"
    renamed = {"checkpoints": [{"name": "counting40", "path": "shapes",
                                "options": {"mistakes": {"counting": 0.4}}}]}  # fmt: skip
    rules = [{"metric": "adherence.counting", "max_decrease": 0.05}]

    def config(name: str, gate: dict[str, Any], **changes: Any) -> Path:
        return example("calibration", tmp_path / name, **{**renamed, "gate": {"baseline": str(earlier_run), **gate},
                                                          **changes})  # fmt: skip

    good = config("good", {"rules": rules, "pairs": {f"counting40/{setting}": f"clean/{setting}"}})
    gate = load_bench_config(str(good)).gate
    assert gate is not None and gate.baseline_file == earlier_run
    assert dict(gate.pairs) == {f"counting40/{setting}": f"clean/{setting}"}
    cases = {
        "typo": ({"rules": rules, "pairs": {f"counting40/{setting}": f"claen/{setting}"}},
                 f"gate.pairs: counting40/{setting}: no cell 'claen/{setting}' in the baseline {earlier_run} (did you "
                 f"mean 'clean/{setting}'?) (cells: clean/{setting}, colours30/{setting})"),
        "candidate": ({"rules": rules, "pairs": {f"counting30/{setting}": f"clean/{setting}"}},
                      f"gate.pairs: no cell 'counting30/{setting}' in this run (did you mean 'counting40/{setting}'?)"),
        "unpaired": ({"rules": rules},
                     f"gate.baseline: cell counting40/{setting} of this run has no baseline cell: {earlier_run} has "
                     f"no cell of that id and 2 cells (clean/{setting}, colours30/{setting}); pair it under "
                     "gate.pairs"),
        "metric": ({"rules": [{"metric": "robustness", "max_decrease": 0.1}],
                    "pairs": {f"counting40/{setting}": f"clean/{setting}"}},
                   f"gate.rules: rule 1 (robustness max_decrease 0.1): in the baseline {earlier_run}: robustness is "
                   f"not in the results of cell clean/{setting} (metrics: adherence)"),
    }  # fmt: skip
    for name, (section, message) in cases.items():
        result = CliRunner().invoke(main, ["bench", str(config(name, section)), "--quiet"])
        assert result.exit_code == 2, (name, result.output)
        assert f"error: {message}" in result.output, (name, result.output)
        assert "generate:" not in result.output and not (tmp_path / name / "out").exists(), name  # nothing ran


def test_release_example_gates_a_candidate_against_an_earlier_runs_results(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shipped builtin:calibration-release after builtin:calibration, on a slice of the suite: the candidate's
    renamed checkpoints are paired with the earlier run's `clean` cell through `gate.pairs`; `v2` draws what `clean`
    drew and passes everything, `v2-small`'s injected position mistakes fail the position rule alone."""
    sliced = {"suite": shapes_slice(tmp_path, 3).name, "seeds_per_prompt": 2}  # 39 prompts of all six categories
    earlier = CliRunner().invoke(main, ["bench", str(example("calibration", tmp_path, **sliced)), "--quiet"])
    assert earlier.exit_code == 1 and "verdict: FAIL" in earlier.output, earlier.output
    monkeypatch.chdir(tmp_path)  # where the shipped config finds the earlier run: its pairs name that file's cells
    shipped = load_bench_config("builtin:calibration-release")
    assert shipped.gate is not None and shipped.gate.baseline_file == tmp_path / "out" / "calibration" / "results.json"
    release = CliRunner().invoke(main, ["bench", str(example("calibration-release", tmp_path, **sliced)), "--quiet"])
    assert release.exit_code == 1, release.output
    assert "verdict: FAIL (exit code 1" in release.output and "v2-small" in release.output
    verdicts = json.loads((tmp_path / "out" / "calibration-release" / "gate.json").read_text())["verdicts"]
    failed = {(v["rule"]["name"], v["cell"].split("/")[0]) for v in verdicts if v["status"] == "fail"}
    assert failed == {("adherence.position max_decrease 0.05", "v2-small")}
    compared = [v for v in verdicts if "max_decrease" in v["rule"]["name"]]
    assert len(compared) == 6 and {v["baseline_cell"] for v in compared} == {"clean/g7.5-s50-default-256x256-fp32"}
    assert all(v["difference"] == 0 for v in compared if v["cell"].startswith("v2/"))  # the same images as clean
    assert all(v["status"] == "pass" for v in verdicts if (v["rule"]["name"], v["cell"].split("/")[0]) not in failed)


def _small_run(folder: Path, **changes: Any) -> Path:
    """The calibration example on 6 prompts x 2 seeds of one checkpoint, batches of 2, no gate: 12 images."""
    return example("calibration", folder, suite=shapes_slice(folder, 20).name, seeds_per_prompt=2, batch_size=2,
                   checkpoints=[{"name": "clean", "path": "shapes"}], gate=None, report=False, about=None,
                   **changes)  # fmt: skip


def test_a_full_disk_while_generating_says_what_was_kept_and_how_to_resume(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails mid-generation (disk full) ends as `sdeval generate` ends: the file and errno, the images
    kept, and the command that resumes once there is room; exit 2."""
    import errno

    import sdeval.generate.runner as runner_mod
    from sdeval.core.errors import OutputError

    config = _small_run(tmp_path)
    out = tmp_path / "out" / "calibration"
    real, calls = runner_mod.generate_batch, {"n": 0}

    def fills_up(*args: object, **kwargs: object) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OutputError(out / "x.png", OSError(errno.ENOSPC, "No space left on device"))
        return real(*args, **kwargs)

    monkeypatch.setattr(runner_mod, "generate_batch", fills_up)
    result = CliRunner().invoke(main, ["bench", str(config), "--quiet"])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: cannot write {out / 'x.png'}: No space left on device (ENOSPC); stopped during generate: 4 of 12 "
        f"images are kept in {out}; to resume once there is room, run: sdeval bench {config} --quiet"
    )


def test_a_stopped_bench_says_what_it_kept_and_the_command_that_resumes(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C or SIGTERM in any stage ends as `sdeval generate` ends: the stage, how many images are kept and where,
    and the command that resumes; that command then finishes the run (issue 21)."""
    import sdeval.generate.runner as runner_mod
    import sdeval.score as score_mod

    config = _small_run(tmp_path)
    out = tmp_path / "out" / "calibration"
    real, calls = runner_mod.generate_batch, {"n": 0}

    def stopped(*args: object, **kwargs: object) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(runner_mod, "generate_batch", stopped)
    result = CliRunner().invoke(main, ["bench", str(config), "--quiet"])
    assert result.exit_code == 130, result.output
    assert len(list(out.rglob("*.png"))) == 4
    assert result.stderr.strip().splitlines()[-1] == (
        f"interrupted during generate: 4 of 12 images are kept in {out}; to resume, run: sdeval bench {config} --quiet"
    )
    monkeypatch.setattr(runner_mod, "generate_batch", real)

    def terminated(*args: object, **kwargs: object) -> Any:
        raise Terminated

    monkeypatch.setattr(score_mod, "score_run", terminated)
    result = CliRunner().invoke(main, ["bench", str(config)])
    assert result.exit_code == 143, result.output
    assert result.stderr.strip().splitlines()[-1] == (
        f"terminated (SIGTERM) during score: 12 of 12 images are kept in {out}; to resume, run: sdeval bench {config}"
    )
    monkeypatch.undo()
    resumed = CliRunner().invoke(main, ["bench", str(config), "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    assert "generate: skipped (already done)" in resumed.output and "score:    done" in resumed.output


def test_an_incomplete_bench_names_each_metric_it_could_not_compute_and_why(tmp_path: Path, cache: Path) -> None:
    """Exit code 3 (no gate) says which metrics have no value and why, as `sdeval score` does (issue 21): here the
    score suite gives none of the run's prompts a spec."""
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"id": "elsewhere", "prompt": "a photo of a cross", "spec": {
        "tag": "single_object", "include": [{"class": "cross", "count": 1}]}}) + "\n")  # fmt: skip
    config = _small_run(tmp_path, score={"judge": "shapes", "device": "cpu", "suite": str(other)})
    result = CliRunner().invoke(main, ["bench", str(config), "--quiet"])
    assert result.exit_code == 3, result.output
    why = "no scored image has a prompt with a spec (each image's reason is listed under `images_skipped`)"
    lines = result.output.splitlines()
    assert lines[lines.index("not computed:") + 1 :] == [
        f"  adherence: {why}",
        f"  robustness: {why}",
        "incomplete: adherence, robustness could not be computed (exit code 3; reasons above)",
    ]
