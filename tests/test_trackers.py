"""`sdeval log`: results into MLflow, W&B and TensorBoard, read back offline with each library's own reader: metric
values, interval bounds, steps from checkpoint labels, per-category adherence, parameters and artifacts."""

from __future__ import annotations

import importlib.resources
import json
import struct
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import generate_and_judge, write_shapes_run

from sdeval.cli import main
from sdeval.core.errors import ConfigError, SdevalError
from sdeval.trackers import series
from sdeval.trackers.base import safe_name
from sdeval.trackers.log import log_results
from sdeval.trackers.options import LogOptions, parse_log_section

CATEGORIES = ("colors", "counting", "single_object")


def _suite_rows(per_category: int) -> list[dict[str, Any]]:
    text = importlib.resources.files("sdeval.suites.data").joinpath("shapes.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines()[1:] if line.strip()]
    chosen: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["category"] in CATEGORIES and len(chosen.setdefault(row["category"], [])) < per_category:
            chosen[row["category"]].append(row)
    return [row for members in chosen.values() for row in members]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two checkpoints of the shapes world named after their training steps (the earlier one with colour
    mistakes), scored for adherence with intervals."""
    folder = tmp_path_factory.mktemp("tracked")
    checkpoints = [
        {"name": "checkpoint-500", "path": "shapes", "options": {"mistakes": {"colors": 0.5}}},
        {"name": "checkpoint-1500", "path": "shapes"},
    ]
    config = write_shapes_run(folder, _suite_rows(4), checkpoints=checkpoints, seeds_per_prompt=2)
    return generate_and_judge(config, folder / "results.json", ci=True)


def _expected(results: Path) -> dict[int, dict[str, float]]:
    """{step: {series: value}} as the results file holds them; each category's bounds as the gate draws them
    (the results hold no interval for a part)."""
    from sdeval.gate.evaluate import load_side, value_interval

    side = load_side(results)
    out: dict[int, dict[str, float]] = {}
    for cell in side.document["cells"]:
        entry = cell["metrics"]["adherence"]
        values = {"adherence": entry["value"], "adherence/low": entry["interval"]["low"]}
        values["adherence/high"] = entry["interval"]["high"]
        for category, part in entry["categories"].items():
            name = f"adherence.{category}"
            drawn = value_interval(cell, side.states.get(cell["id"]), name)
            assert not isinstance(drawn, str), drawn
            values.update({name: part["accuracy"], f"{name}/low": drawn.low, f"{name}/high": drawn.high})
        out[int(cell["checkpoint"]["name"].split("-")[1])] = values
    return out


def _log(results: Path, *args: str) -> str:
    outcome = CliRunner().invoke(main, ["log", str(results), *args])
    assert outcome.exit_code == 0, outcome.output
    return outcome.output


# -- the series, whichever tracker -----------------------------------------------------------------------------


def _cell(cid: str, checkpoint: str | None, setting: str | None, value: float) -> dict[str, Any]:
    return {
        "id": cid,
        "checkpoint": {"name": checkpoint, "sha256": None} if checkpoint else None,
        "setting": {"id": setting, "values": {}} if setting else None,
        "group": None,
        "metrics": {"fid": {"value": value, "interval": {"low": value - 1, "high": value + 1, "level": 0.95}}},
        "protocol": {"seed": 2020, "device": setting or "cpu"},
    }


def _document(*cells: dict[str, Any]) -> dict[str, Any]:
    return {"sdeval_version": "0", "cells": list(cells)}


def test_series_steps_from_checkpoint_labels() -> None:
    doc = _document(
        _cell("ckpt-1000/a", "ckpt-1000", "a", 10.0),
        _cell("ckpt-200/a", "ckpt-200", "a", 20.0),
        _cell("ckpt-200/b", "ckpt-200", "b", 30.0),
    )
    plan = series.plan(doc, "run", step_from="checkpoint")
    assert plan.ordered() == [
        (
            200,
            {
                "a/fid": 20.0,
                "a/fid/low": 19.0,
                "a/fid/high": 21.0,
                "b/fid": 30.0,
                "b/fid/low": 29.0,
                "b/fid/high": 31.0,
            },
        ),
        (1000, {"a/fid": 10.0, "a/fid/low": 9.0, "a/fid/high": 11.0}),
    ]
    # Parameters: the protocol fields every cell shares; `device` differs between them and is left out.
    assert plan.params == {"sdeval_version": "0", "n_cells": "3", "protocol.seed": "2020"}


def test_series_without_steps_one_per_cell() -> None:
    plan = series.plan(_document(_cell("x", None, None, 1.0), _cell("y", None, None, 2.0)), "run")
    assert plan.ordered() == [(0, {"x/fid": 1.0, "x/fid/low": 0.0, "x/fid/high": 2.0, "y/fid": 2.0, "y/fid/low": 1.0,
                                   "y/fid/high": 3.0})]  # fmt: skip
    one = series.plan(_document(_cell("x", None, None, 1.0)), "run")
    assert one.series() == ["fid", "fid/high", "fid/low"]


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        ([_cell("whole", None, None, 1.0)], "cell 'whole' names no checkpoint"),
        ([_cell("final/a", "final", "a", 1.0)], "checkpoint 'final' of cell 'final/a' holds no number"),
        (
            [_cell("run1-500/a", "run1-500", "a", 1.0), _cell("run2-500/a", "run2-500", "a", 2.0)],
            "cells 'run1-500/a' and 'run2-500/a' both read as step 500",
        ),
    ],
)
def test_series_step_errors(cells: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(SdevalError, match=message):
        series.plan(_document(*cells), "run", step_from="checkpoint")


def test_safe_names() -> None:
    assert safe_name("clean/g7.5 s50/fid") == "clean/g7.5 s50/fid"
    assert safe_name("a:b#c//d/") == "a_b_c/d"
    assert safe_name("../x") == "x"


def test_bench_log_section(tmp_path: Path) -> None:
    one = {"to": "mlflow", "tracking_uri": "sqlite:///mlflow.db", "step_from": "checkpoint", "experiment": "e"}
    (parsed,) = parse_log_section(one, tmp_path)
    assert parsed == LogOptions(to="mlflow", step_from="checkpoint", experiment="e", quiet=True,
                                tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")  # fmt: skip
    several = parse_log_section([{"to": "tensorboard", "logdir": "runs"}, {"to": "wandb", "grid": False}], tmp_path)
    assert [o.to for o in several] == ["tensorboard", "wandb"] and several[0].logdir == str(tmp_path / "runs")
    assert parse_log_section(None, tmp_path) == ()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"to": "mlfow"}, "log.to: 'mlfow' is not a tracker (did you mean 'mlflow'?) (mlflow, wandb, tensorboard)"),
        ({"experiment": "e"}, "log.to: required key is missing"),
        ({"to": "wandb", "logdir": "runs"}, "log.logdir: for to: tensorboard, not to: wandb"),
        ([{"to": "wandb"}, {"to": "mlflow", "step": 3}], "log[1].step: unknown key"),
        ({"to": "mlflow", "step_from": "setting"}, "log.step_from: expected one of checkpoint, got 'setting'"),
        ("mlflow", "log: expected a mapping (to: mlflow, ...) or a list of them, got 'mlflow'"),
    ],
)
def test_bench_log_section_errors_name_the_key(raw: Any, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as found:
        parse_log_section(raw, tmp_path)
    assert str(found.value).startswith(message)


def test_missing_tracker_names_the_extra(results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    outcome = CliRunner().invoke(main, ["log", str(results), "--to", "wandb"])
    assert outcome.exit_code == 2
    assert outcome.output == "error: --to wandb: wandb is not installed: pip install 'sdeval[wandb]'\n"
    with pytest.raises(SdevalError, match=r"^--to wandb: wandb is not installed"):  # the Python API says the same
        log_results(results, LogOptions(to="wandb"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to", "mlflow", "--logdir", "runs"], "--logdir is for --to tensorboard, not --to mlflow"),
        (["--to", "wandb", "--tracking-uri", "sqlite:///x.db"], "--tracking-uri is for --to mlflow, not --to wandb"),
        (["--to", "tensorboard", "--experiment", "x"], "--experiment is for --to mlflow and --to wandb"),
        (["--to", "tensorboard", "--step-from", "checkpoint", "--report", "."], "--report: . is not a report folder"),
    ],
)
def test_options_that_do_not_fit_are_one_line(results: Path, args: list[str], message: str) -> None:
    outcome = CliRunner().invoke(main, ["log", str(results), *args])
    assert outcome.exit_code == 2 and outcome.output.startswith(f"error: {message}"), outcome.output
    assert outcome.output.count("\n") == 1


def test_a_checkpoint_without_a_step_is_one_line(results: Path, tmp_path: Path) -> None:
    document = json.loads(results.read_text(encoding="utf-8"))
    for cell in document["cells"]:
        cell["checkpoint"]["name"] = "final"
    renamed = tmp_path / "renamed.json"
    renamed.write_text(json.dumps(document), encoding="utf-8")
    outcome = CliRunner().invoke(main, ["log", str(renamed), "--to", "tensorboard", "--step-from", "checkpoint"])
    assert outcome.exit_code == 2
    cell = document["cells"][0]["id"]
    assert outcome.output == (
        f"error: --step-from checkpoint: checkpoint 'final' of cell {cell!r} holds no number to read a step from "
        "(name checkpoints after their step, e.g. checkpoint-1500)\n"
    )


# -- MLflow: a sqlite store and local artifacts, read through its client -------------------------------------------


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One sqlite store for the module: making its tables takes MLflow seconds."""
    pytest.importorskip("mlflow")
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's sqlite store puts artifacts under ./mlruns of the working folder: a test's go into its tmp_path."""
    monkeypatch.chdir(tmp_path)


@pytest.mark.usefixtures("in_tmp")
def test_mlflow(results: Path, mlflow_uri: str) -> None:
    from mlflow.tracking import MlflowClient

    uri = mlflow_uri
    output = _log(results, "--to", "mlflow", "--tracking-uri", uri, "--step-from", "checkpoint", "--run-name", "r1")
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("sdeval")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_id in output and run.info.run_name == "r1" and run.info.status == "FINISHED"
    for step, values in _expected(results).items():
        for name, value in values.items():
            history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, name)}
            assert history[step] == pytest.approx(value), (name, step)
    assert run.data.params["protocol.judge.judge"] == "shapes"
    listed = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"results.json", "report", "images"} <= listed
    report = {f.path for f in client.list_artifacts(run.info.run_id, "report")}
    assert {"report/index.html", "report/summary.md"} <= report
    assert [f.path for f in client.list_artifacts(run.info.run_id, "images")] == ["images/grid.png"]


# -- W&B offline: the run's transaction log, decoded with wandb's own record definitions ---------------------------


def _wandb_records(run_file: Path) -> list[Any]:
    """The records of an offline run's `.wandb` file (a LevelDB-style log of wandb's protobuf Records: 7-byte file
    header, 32 KiB blocks, each chunk a 7-byte header `crc32, length, type`; types 1 full, 2 first, 3 middle, 4
    last). wandb 0.31 keeps no wandb-summary.json for an offline run: this log is what `wandb sync` uploads."""
    from wandb.proto import wandb_internal_pb2

    data = run_file.read_bytes()
    assert data[:4] == b":W&B"
    position, block, pending, out = 7, 32768, b"", []
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if kind == 0:
            break
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            out.append(record)
            pending = b""
    return out


def test_wandb_offline(results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb")
    for name in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    _log(results, "--to", "wandb", "--step-from", "checkpoint", "--experiment", "proj")
    (run_dir,) = (tmp_path / "wandb_dir" / "wandb").glob("offline-run-*")
    records = _wandb_records(next(run_dir.glob("run-*.wandb")))
    history: dict[int, dict[str, Any]] = {}
    for record in records:
        if record.WhichOneof("record_type") == "history":
            items = {"/".join(item.nested_key) or item.key: json.loads(item.value_json) for item in record.history.item}
            history.setdefault(items["_step"], {}).update(items)
    for step, values in _expected(results).items():
        for name, value in values.items():
            assert history[step][name] == pytest.approx(value), (name, step)
    assert history[1500]["images/grid/_type"] == "image-file"  # the grid, at the last step
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run.project == "proj" and run.display_name == "tracked0"
    config = {u.key: json.loads(u.value_json) for u in run.config.update}
    assert config["protocol.judge.judge"] == "shapes"
    (artifact,) = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]
    paths = {entry.path for entry in artifact.manifest.contents}
    assert {"results.json", "report/index.html", "report/summary.md"} <= paths


# -- TensorBoard: event files through tensorboard's event reader -----------------------------------------------


def test_tensorboard(results: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logdir = tmp_path / "runs"
    _log(results, "--to", "tensorboard", "--logdir", str(logdir), "--step-from", "checkpoint", "--no-report")
    folder = logdir / "tracked0"
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    for step, values in _expected(results).items():
        for name, value in values.items():
            scalars = {s.step: s.value for s in events.Scalars(name)}
            assert scalars[step] == pytest.approx(value, abs=1e-6), (name, step)  # stored as float32
    (grid,) = events.Images("images/grid")
    assert grid.step == 1500 and grid.width > 0
    (params,) = events.Tensors("sdeval/params/text_summary")  # torch's writer names a text entry so
    assert "| protocol.judge.judge | shapes |" in params.tensor_proto.string_val[0].decode("utf-8")
    assert (folder / "files" / "results.json").is_file() and not (folder / "files" / "report").exists()


def test_bounds_the_results_lack_are_drawn_as_score_ci_draws_them(results: Path, tmp_path: Path) -> None:
    """Scored without --ci, the results hold no interval: the bounds logged are those `score --ci` would have
    recorded (its default settings, the same draws), as the report and the gate show them."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    document = json.loads(results.read_text(encoding="utf-8"))
    for cell in document["cells"]:
        cell.pop("intervals")
        for entry in cell["metrics"].values():
            entry.pop("interval", None)
    plain = results.parent / "plain.json"  # beside the state file its `state` block names
    plain.write_text(json.dumps(document), encoding="utf-8")
    _log(plain, "--to", "tensorboard", "--logdir", str(tmp_path), "--step-from", "checkpoint", "--no-report")
    events = EventAccumulator(str(tmp_path / "plain"), size_guidance={"scalars": 0})
    events.Reload()
    for step, values in _expected(results).items():
        for name in ("adherence/low", "adherence/high", "adherence.colors/low"):
            assert {s.step: s.value for s in events.Scalars(name)}[step] == pytest.approx(values[name], abs=1e-6)


# -- from a training loop: the Evaluator logs at its step, into the script's own run ---------------------------------


@pytest.fixture(scope="module")
def evaluator(inception_weights: str) -> Any:
    import numpy as np

    from sdeval.api import Evaluator

    found = Evaluator(metrics=["is"], inception_weights=inception_weights, no_cache=True, workers=0, device="cpu")
    found.update(list(np.random.default_rng(0).integers(0, 256, size=(20, 32, 32, 3), dtype=np.uint8)))
    return found


@pytest.mark.usefixtures("in_tmp")
def test_evaluator_logs_into_the_active_mlflow_run(evaluator: Any, mlflow_uri: str) -> None:
    import mlflow

    mlflow.set_tracking_uri(mlflow_uri)
    try:
        with mlflow.start_run() as run:
            mlflow.log_param("lr", "0.1")  # the training script's own
            document = evaluator.compute()
            for step in (3, 5):
                assert run.info.run_id in evaluator.log_to("mlflow", document, step=step)
                assert mlflow.active_run() is not None  # the script's run goes on
        client = mlflow.tracking.MlflowClient()
        history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "is")}
        value = document["cells"][0]["metrics"]["is"]["value"]
        assert history == {3: pytest.approx(value), 5: pytest.approx(value)}
        finished = client.get_run(run.info.run_id)
        assert finished.data.params["lr"] == "0.1" and "protocol.seed" in finished.data.params
        assert {f.path for f in client.list_artifacts(run.info.run_id)} == {"results-step3.json", "results-step5.json"}
    finally:
        mlflow.set_tracking_uri(None)


def test_evaluator_logs_to_tensorboard_at_its_step(evaluator: Any, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    document = evaluator.compute()
    evaluator.log_to("tensorboard", document, step=42, logdir=str(tmp_path), run_name="train")
    events = EventAccumulator(str(tmp_path / "train"))
    events.Reload()
    (scalar,) = events.Scalars("is")
    assert scalar.step == 42 and scalar.value == pytest.approx(document["cells"][0]["metrics"]["is"]["value"])
    assert "images/grid" not in events.Tags()["images"]  # images scored in memory: no folder to draw from


# -- from a bench config: `log:` after the report, once per result --------------------------------------------------


def test_bench_logs_after_its_report_and_once(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _suite_rows(2)), encoding="utf-8")
    checkpoints = [
        {"name": "step-100", "path": "shapes", "options": {"mistakes": {"colors": 0.5}}},
        {"name": "step-200", "path": "shapes"},
    ]
    config = {
        "checkpoints": checkpoints,
        "suite": "prompts.jsonl",
        "settings": {"width": 128, "height": 128},
        "output_dir": "out",
        "device": "cpu",
        "metrics": ["adherence"],
        "score": {"judge": "shapes", "device": "cpu"},
        "report": {"output": "report"},
        "log": {"to": "tensorboard", "logdir": "runs", "step_from": "checkpoint", "run_name": "bench"},
    }
    path = tmp_path / "bench.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML
    first = CliRunner().invoke(main, ["bench", str(path), "--quiet"])
    assert first.exit_code == 0, first.output
    assert f"log:      done: tensorboard run {tmp_path / 'runs' / 'bench'}" in first.output, first.output
    second = CliRunner().invoke(main, ["bench", str(path), "--quiet"])
    assert "log:      skipped (already done): tensorboard: these results were logged" in second.output
    events = EventAccumulator(str(tmp_path / "runs" / "bench"))
    events.Reload()
    document = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
    expected = {
        int(c["checkpoint"]["name"].split("-")[1]): c["metrics"]["adherence"]["value"] for c in document["cells"]
    }
    assert {s.step: s.value for s in events.Scalars("adherence")} == pytest.approx(expected)
    assert (tmp_path / "runs" / "bench" / "files" / "report" / "index.html").is_file()  # the bench's own report
