"""The pick rule: which checkpoint of a series to ship, and why."""

from __future__ import annotations

import pytest

from sdeval.core.errors import ConfigError
from sdeval.gate.pick import parse_pick, pick


def _cell(step: int, adherence: float, fid: float) -> dict:
    return {
        "id": f"run.checkpoint-{step}/s",
        "checkpoint": {"name": f"run.checkpoint-{step}", "sha256": None, "step": step, "run": "run"},
        "metrics": {"adherence": {"value": adherence}, "fid": {"value": fid}},
    }


DOC = {"cells": [_cell(500, 0.60, 30.0), _cell(1000, 0.70, 24.0), _cell(1500, 0.80, 26.5), _cell(2000, 0.85, 31.0)]}
INTERVALS = {
    "run.checkpoint-1000/s": {"fid": {"low": 22.0, "high": 27.0}},  # the best FID: anything up to 27 is noise
    "run.checkpoint-1500/s": {"fid": {"low": 24.0, "high": 29.0}},
}


def test_the_best_objective_among_cells_within_the_interval_of_the_best_fid() -> None:
    rule = parse_pick({"maximize": "adherence", "subject_to": [{"metric": "fid", "within_interval_of_best": True}]})
    found = pick(DOC, rule, INTERVALS)
    # 2000 has the highest adherence but FID 31 > 27 (the upper bound of the best FID's interval): 1500 wins.
    assert found["chosen"] == "run.checkpoint-1500/s"
    assert found["reason"] == (
        "run.checkpoint-1500/s: maximize adherence = 0.8, best of 2 eligible of 4 cells; subject to fid within the "
        "interval [22, 27] of the best, run.checkpoint-1000/s"
    )
    why = {c["cell"]: c["why_not"] for c in found["candidates"]}
    assert why["run.checkpoint-2000/s"] == ["fid 31 outside the interval [22, 27] of the best, run.checkpoint-1000/s"]
    assert [c["step"] for c in found["candidates"]] == [500, 1000, 1500, 2000]


def test_bounds_and_ties_prefer_the_earlier_step() -> None:
    doc = {"cells": [_cell(1000, 0.8, 25.0), _cell(500, 0.8, 25.0), _cell(1500, 0.9, 40.0)]}
    found = pick(doc, parse_pick({"maximize": "adherence", "subject_to": [{"metric": "fid", "max": 30}]}), {})
    assert found["chosen"] == "run.checkpoint-500/s"
    assert found["candidates"][2]["why_not"] == ["fid 40 > 30"]
    none = pick(doc, parse_pick({"minimize": "fid", "subject_to": [{"metric": "adherence", "min": 0.95}]}), {})
    assert none["chosen"] is None and none["reason"] == "no cell meets every constraint (3 considered)"


def test_within_interval_needs_an_interval() -> None:
    rule = parse_pick({"maximize": "adherence", "subject_to": [{"metric": "fid", "within_interval_of_best": True}]})
    with pytest.raises(ConfigError, match=r"needs the interval of the best cell \(run.checkpoint-1000/s\)"):
        pick(DOC, rule, {})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"maximize": "fid"}, "pick.maximize: lower fid is better; did you mean minimize: fid?"),
        ({"maximize": "adherance"}, "pick.maximize: unknown metric 'adherance' (did you mean 'adherence'?)"),
        ({"maximize": "clip", "minimize": "fid"}, "pick: give exactly one of maximize: KEY or minimize: KEY"),
        ({"maximize": "clip", "subject_to": [{"metric": "fid"}]}, "pick.subject_to[0]: says nothing"),
        ({"maximize": "clip", "subject_to": [{"metric": "fid", "max": "low"}]}, "subject_to[0].max: expected a"),
        ({"maximize": "clip", "subjet_to": []}, "pick.subjet_to: unknown key (did you mean 'subject_to'?)"),
    ],
)
def test_rule_mistakes_are_named(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_pick(raw)
    assert message in str(err.value)


def _colour_rows(colours: list[str]) -> list[dict]:
    """Suite rows asking for one square of each colour (the shapes world's colour mistakes show in them)."""
    spec = {"tag": "colors", "include": [{"class": "square", "count": 1}]}
    return [
        {
            "id": f"c{i}",
            "prompt": f"a photo of a {c} square",
            "spec": {**spec, "include": [{**spec["include"][0], "color": c}]},
        }
        for i, c in enumerate(colours)
    ]


def test_the_report_shows_the_series_its_best_checkpoints_and_the_pick(tmp_path) -> None:
    """Three 'steps' of the shapes world, colour mistakes falling as training goes on: the report draws adherence
    over step, names the best step and the pick with its reason."""
    import json

    from conftest import generate_and_judge, write_shapes_run

    from sdeval.report import ReportOptions, build_report

    rows = _colour_rows(["red", "blue", "green"] * 4)
    checkpoints = [
        {"name": "run.checkpoint-100", "path": "shapes", "step": 100, "options": {"mistakes": {"colors": 0.9}}},
        {"name": "run.checkpoint-200", "path": "shapes", "step": 200, "options": {"mistakes": {"colors": 0.4}}},
        {"name": "run.checkpoint-300", "path": "shapes", "step": 300},
    ]
    config = write_shapes_run(tmp_path / "series", rows, checkpoints=checkpoints)
    results = generate_and_judge(config, tmp_path / "results.json")
    document = json.loads(results.read_text())
    assert [c["checkpoint"]["step"] for c in document["cells"]] == [100, 200, 300]
    rule = parse_pick({"maximize": "adherence"})
    built = build_report([results], tmp_path / "report", ReportOptions(quiet=True, pick=rule))
    html = built["index"].read_text(encoding="utf-8")
    summary = built["summary"].read_text(encoding="utf-8")
    values = [c["metrics"]["adherence"]["value"] for c in document["cells"]]
    assert values[2] == 1.0 and values[0] < values[2]
    assert 'id="series"' in html and "training step" in html
    assert "**pick: run.checkpoint-300/" in summary
    assert "- Adherence: best run.checkpoint-300/" in summary


def test_bench_applies_the_pick_rule_and_says_why(tmp_path, monkeypatch) -> None:
    import json

    import yaml
    from click.testing import CliRunner

    from sdeval.cli import main

    rows = _colour_rows(["red", "blue"] * 3)
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    config = {
        "checkpoints": [
            {"name": "run.checkpoint-100", "path": "shapes", "step": 100, "options": {"mistakes": {"colors": 0.9}}},
            {"name": "run.checkpoint-200", "path": "shapes", "step": 200},
        ],
        "suite": "prompts.jsonl", "settings": {"width": 128, "height": 128}, "device": "cpu", "output_dir": "out",
        "metrics": ["adherence"], "score": {"judge": "shapes", "device": "cpu"}, "report": {"output": "report"},
        "pick": {"maximize": "adherence", "subject_to": [{"metric": "adherence", "min": 0.5}]},
    }  # fmt: skip
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    ran = CliRunner().invoke(main, ["bench", str(path), "--quiet"])
    assert ran.exit_code == 0, ran.output
    chosen = json.loads((tmp_path / "out" / "pick.json").read_text())
    assert chosen["chosen"].startswith("run.checkpoint-200/")
    assert [c["eligible"] for c in chosen["candidates"]] == [False, True]
    assert "pick:     done: run.checkpoint-200/" in ran.output
    assert "Pick: <strong>run.checkpoint-200/" in (tmp_path / "report" / "index.html").read_text(encoding="utf-8")

    config["pick"] = {"maximize": "clip"}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    refused = CliRunner().invoke(main, ["bench", str(path), "--quiet"])
    assert refused.exit_code == 2 and "pick: clip is not computed by this run (metrics: adherence)" in refused.output
