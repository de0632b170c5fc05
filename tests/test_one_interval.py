"""One interval per (cell, metric, level), whoever shows it: `score --ci` records how it drew its intervals, and the
gate, the report and `sdeval diff` use the results' own intervals and draw every later one (differences included)
the same way. Results holding values sdeval could not have written are refused on load, naming the field."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import warm_copy

from sdeval.cli import main
from sdeval.core.errors import ConfigError, ExitCode
from sdeval.score.demo import make_image_set

SEED = 7  # not the default (2020): a later interval drawn with the default seed would differ
# Images (each its own prompt) per set: as many as the default jackknife blocks (25), and under the 30 prompts from
# which FID's jackknife is checked, so its interval carries the "indicative" note.
N = 25


@pytest.fixture(scope="module")
def scored(tmp_path_factory, inception_weights: str, image_sets_cache: dict[str, Any]) -> dict[str, Path]:
    """A baseline and a candidate folder (the same file names, so the cells pair image by image) scored against
    one reference with `--ci --seed 7`. One feature cache, a copy of the session's: the reference and the baseline
    are the first images of the session's two sets (the same seeds), so only the candidate is extracted."""
    root = tmp_path_factory.mktemp("one-interval")
    cache = warm_copy(image_sets_cache, root / "cache")
    make_image_set(root / "ref", N, seed=2, style="spots")
    make_image_set(root / "base", N, seed=1, style="blobs")
    make_image_set(root / "cand", N, seed=3, style="blobs")
    out = {}
    for name in ("base", "cand"):
        path = root / f"{name}.json"
        result = CliRunner().invoke(
            main,
            ["score", str(root / name), "--reference", str(root / "ref"), "--metrics", "fid,pr",
             "--inception-weights", inception_weights, "--ci", "--seed", str(SEED), "--cache-dir", str(cache),
             "-o", str(path)],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        out[name] = path
    out["root"] = root
    return out


def _gate_json(
    results: Path, rules: str, tmp_path: Path, *extra: str, codes: tuple[int, ...] = (0, 1)
) -> tuple[dict[str, Any], str]:
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(rules, encoding="utf-8")
    verdicts = tmp_path / "gate.json"
    result = CliRunner().invoke(
        main, ["gate", str(results), "--rules", str(rules_file), "--json", str(verdicts), *extra]
    )
    assert result.exit_code in codes, result.output
    return json.loads(verdicts.read_text(encoding="utf-8")), result.output


def test_score_records_how_it_drew_its_intervals(scored: dict[str, Path]) -> None:
    document = json.loads(scored["base"].read_text(encoding="utf-8"))
    (cell,) = document["cells"]
    assert cell["intervals"] == {"level": 0.95, "replicates": 200, "seed": SEED, "blocks": 25}
    assert {"fid", "precision", "recall"} <= {k for k, e in cell["metrics"].items() if "interval" in e}


def test_a_cells_interval_is_the_same_in_results_gate_and_report(scored: dict[str, Path], tmp_path: Path) -> None:
    from sdeval.report import ReportOptions
    from sdeval.report.load import load_cells
    from sdeval.report.tables import metric_columns, summary_table

    document = json.loads(scored["cand"].read_text(encoding="utf-8"))
    stored = document["cells"][0]["metrics"]
    rules = "rules:\n" + "".join(
        f"  - {{metric: {key}, min: 0, require_interval: true}}\n" for key in ("fid", "recall", "precision")
    )
    data, output = _gate_json(scored["cand"], rules, tmp_path)
    for verdict in data["verdicts"]:
        key = verdict["rule"]["metric"]
        shown = verdict["interval"]
        assert (shown["low"], shown["high"]) == (stored[key]["interval"]["low"], stored[key]["interval"]["high"])
        # A note (FID's jackknife is "indicative" at N prompts) travels with the interval.
        assert shown.get("note") == stored[key]["interval"].get("note")
    assert "indicative" in data["verdicts"][0]["interval"]["note"]
    assert data["intervals"]["seed"] == SEED and data["intervals"]["source"] == "results"
    assert f"seed {SEED} (as recorded in the results)" in output

    cells, _ = load_cells([scored["cand"]], ReportOptions())
    table, _ = summary_table(cells, metric_columns(cells), ReportOptions())
    for key in ("fid", "precision", "recall"):
        mark = table[cells[0].label][key]
        assert (mark.low, mark.high) == (stored[key]["interval"]["low"], stored[key]["interval"]["high"])


def test_an_interval_computed_later_uses_the_recorded_settings(scored: dict[str, Path], tmp_path: Path) -> None:
    """Without a stored interval (removed here), the gate and the report compute it with the recorded seed: the
    same numbers as `score --ci` wrote."""
    document = json.loads(scored["cand"].read_text(encoding="utf-8"))
    stored = {k: dict(e["interval"]) for k, e in document["cells"][0]["metrics"].items()}
    for entry in document["cells"][0]["metrics"].values():
        entry.pop("interval")
    stripped = tmp_path / "stripped.json"
    stripped.write_text(json.dumps(document), encoding="utf-8")
    shutil.copy(scored["cand"].with_name("cand.state.npz"), tmp_path / "cand.state.npz")
    data, _ = _gate_json(stripped, "rules:\n  - {metric: fid, max: 1e9, require_interval: true}\n", tmp_path)
    shown = data["verdicts"][0]["interval"]
    assert (shown["low"], shown["high"]) == pytest.approx((stored["fid"]["low"], stored["fid"]["high"]), rel=1e-12)


def test_a_difference_interval_is_the_same_in_gate_and_diff(scored: dict[str, Path], tmp_path: Path) -> None:
    data, _ = _gate_json(
        scored["cand"],
        "rules:\n  - {metric: fid, max_increase: 1e6}\n  - {metric: recall, max_decrease: 1}\n",
        tmp_path,
        "--baseline",
        str(scored["base"]),
    )
    diffed = CliRunner().invoke(main, ["diff", str(scored["base"]), str(scored["cand"]), "--json"])
    assert diffed.exit_code == 0, diffed.output
    found = json.loads(diffed.output)
    rows = {row["key"]: row for row in found["cells"][0]["metrics"]}
    assert found["intervals"]["seed"] == SEED
    for verdict in data["verdicts"]:
        key = verdict["rule"]["metric"]
        assert verdict["paired"] and rows[key]["paired"]
        assert verdict["difference"] == rows[key]["difference"]
        assert [verdict["interval"]["low"], verdict["interval"]["high"]] == rows[key]["interval"]
    text = CliRunner().invoke(main, ["diff", str(scored["base"]), str(scored["cand"])]).output
    assert f"intervals: level 0.95, 200 bootstrap replicates, 25 jackknife blocks, seed {SEED}" in text


def test_the_reports_comparisons_use_the_recorded_settings(scored: dict[str, Path]) -> None:
    """The report's significance test of two cells is the paired comparison the gate would draw: the same p-value
    (one comparison per column: Holm leaves it as it is)."""
    from sdeval import stats
    from sdeval.report import ReportOptions
    from sdeval.report.load import load_cells
    from sdeval.report.tables import metric_columns, summary_table
    from sdeval.stats.settings import IntervalSettings

    cells, _ = load_cells([scored["base"], scored["cand"]], ReportOptions())
    table, _ = summary_table(cells, metric_columns(cells), ReportOptions())
    settings = IntervalSettings.of(cells[0].data)
    assert settings.seed == SEED
    marks = {c.label: table[c.label]["fid"] for c in cells}
    best, other = sorted(cells, key=lambda c: c.data["metrics"]["fid"]["value"])
    expected = stats.compare_cells(best.data, best.state, other.data, other.state, keys=["fid"], **settings.kwargs)
    assert marks[other.label].p_adjusted == pytest.approx(expected["fid"].p_value, rel=1e-12)


# -- values sdeval could not have written ----------------------------------------------------------------------


def _edited(source: Path, tmp_path: Path, edit: Any) -> Path:
    document = json.loads(source.read_text(encoding="utf-8"))
    edit(document["cells"][0]["metrics"])
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda m: m["recall"].update(value=1.7), "metrics.recall.value: 1.7 is outside the range of recall [0, 1]"),
        (lambda m: m["fid"]["interval"].update(low=50.0, high=10.0), "metrics.fid.interval: low 50 exceeds high 10"),
        (lambda m: m["precision"]["interval"].update(high=1.5), "cells[0].metrics.precision.interval: [0"),
        (lambda m: m["fid"].update(value=-3.0), "cells[0].metrics.fid.value: -3 is outside the range of fid [0, ]"),
    ],
)  # fmt: skip
def test_impossible_values_are_refused_by_gate_report_and_diff(
    scored: dict[str, Path], tmp_path: Path, edit: Any, needle: str
) -> None:
    edited = _edited(scored["cand"], tmp_path, edit)
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {metric: fid, max: 1e9}\n", encoding="utf-8")
    for args in (
        ["gate", str(edited), "--rules", str(rules)],
        ["diff", str(scored["base"]), str(edited)],
        ["report", str(edited), "-o", str(tmp_path / "report")],
    ):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == ExitCode.USAGE, (args, result.output)
        assert needle in result.output and "edited.json" in result.output, result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "report").exists()


def test_a_negative_cmmd_is_possible_and_not_refused() -> None:
    """CMMD's estimator is unbiased: below 0 is a result, not an edit."""
    from sdeval.metrics.keys import value_problem

    document = {"cells": [{"metrics": {"cmmd": {"value": -0.02}, "recall": {"value": 1.0000000001}}}]}
    assert value_problem(document) is None


# -- a real cause instead of a wrong message --------------------------------------------------------------------


RULE = "rules:\n  - {metric: fid, max: 1e9, require_interval: true}\n"


def test_a_corrupt_state_file_is_named_not_called_missing(scored: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "cand.json"
    shutil.copy(scored["cand"], copy)
    state = tmp_path / "cand.state.npz"
    data = scored["cand"].with_name("cand.state.npz").read_bytes()
    state.write_bytes(data[: len(data) // 2])  # truncated
    document = json.loads(copy.read_text(encoding="utf-8"))
    for entry in document["cells"][0]["metrics"].values():
        entry.pop("interval")
    copy.write_text(json.dumps(document), encoding="utf-8")
    verdicts, _ = _gate_json(copy, RULE, tmp_path, codes=(ExitCode.USAGE,))
    reason = verdicts["verdicts"][0]["reason"]
    assert verdicts["verdicts"][0]["status"] == "error"
    assert "could not be read" in reason and "cand.state.npz" in reason and "no feature state file" not in reason
    state.unlink()
    verdicts, _ = _gate_json(copy, RULE, tmp_path, codes=(ExitCode.USAGE,))
    assert "cand.state.npz is missing" in verdicts["verdicts"][0]["reason"]


def test_a_broken_detail_line_is_a_bug_that_surfaces() -> None:
    from sdeval.metrics.registry import Direction, ResultKey

    key = ResultKey("x", "X", Direction.HIGHER, detail="({n:.q} images)")
    assert key.describe({"value": 1.0}) == ""  # the entry lacks `n`: no detail line
    assert key.describe({"value": 1.0, "n": None}) == ""
    with pytest.raises(ValueError):
        key.describe({"value": 1.0, "n": 3})
    assert ResultKey("y", "Y", Direction.HIGHER, detail="({n} images)").describe({"n": 3}) == "(3 images)"


def test_toml_without_tomli_names_the_package(monkeypatch: Any, tmp_path: Path) -> None:
    from sdeval.core import configfile

    monkeypatch.setattr(configfile.sys, "version_info", (3, 10, 0))
    monkeypatch.setitem(sys.modules, "tomli", None)  # import fails as for a package that is not installed
    config = tmp_path / "config.toml"
    config.write_text('suite = "builtin:smoke"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"needs the `tomli` package") as caught:
        configfile.read_config_file(config)
    assert "not valid TOML" not in str(caught.value)


def test_a_toml_syntax_error_is_still_one_line_with_the_place(tmp_path: Path) -> None:
    from sdeval.generate.config import load_config

    config = tmp_path / "config.toml"
    config.write_text('suite = "builtin:smoke"\ncheckpoints = = 1\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"config: config.toml: line \d+, column \d+: not valid TOML"):
        load_config(config)


def test_interval_settings_round_trip() -> None:
    from sdeval.stats.settings import IntervalSettings, for_pair

    record = {"level": 0.9, "replicates": 300, "seed": 1, "blocks": 20}
    recorded = IntervalSettings.of({"cells": [{"intervals": record}]})
    assert (recorded.level, recorded.replicates, recorded.seed, recorded.blocks, recorded.source) == (
        0.9, 300, 1, 20, "results",
    )  # fmt: skip
    default = IntervalSettings.of({"cells": [{}]})
    assert default.source == "defaults" and default.seed == 2020
    chosen, warning = for_pair(default, recorded)
    assert chosen is recorded and warning is None
    other = IntervalSettings.of({"cells": [{"intervals": {**record, "seed": 2}}]})
    chosen, warning = for_pair(other, recorded)
    assert chosen is recorded and "record different interval settings" in (warning or "")
    assert np.isclose(recorded.with_level(0.8).level, 0.8)


def test_the_report_says_how_its_intervals_were_drawn(scored: dict[str, Path], tmp_path: Path) -> None:
    from sdeval.report import ReportOptions, build_report

    written = build_report([scored["cand"]], tmp_path / "report", ReportOptions(quiet=True))
    summary = Path(written["summary"]).read_text(encoding="utf-8")
    assert f"seed {SEED} (as recorded in the results)" in summary
    overridden = build_report([scored["cand"]], tmp_path / "again", ReportOptions(quiet=True, replicates=100))
    assert "100 bootstrap replicates" in Path(overridden["summary"]).read_text(encoding="utf-8")
    assert "from report options" in Path(overridden["summary"]).read_text(encoding="utf-8")
