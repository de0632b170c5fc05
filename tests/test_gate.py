"""The release gate: rule parsing, verdicts, pairing, protocol checks, outputs, and the calibration world."""

from __future__ import annotations

import hashlib
import json
import random
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import generate_and_judge, write_shapes_run

from sdeval.cli import main
from sdeval.core.errors import ConfigError, ExitCode, ProtocolMismatchError
from sdeval.gate import ERROR, FAIL, INCONCLUSIVE, PASS, Evidence, Side, parse_rules, run_gate
from sdeval.gate.outputs import junit_xml, markdown
from sdeval.gate.verdicts import bound_verdict, more_images_to_decide, regression_verdict

MINIMAL = """\
rules:
  - {metric: fid, max: 25}
  - {metric: clip, min: 30}
  - {metric: adherence.counting, min: 0.5}
  - {metric: fid, max_increase: 1.0}          # needs --baseline
  - {metric: clip, max_decrease: 0.5}         # needs --baseline
"""


def test_the_minimal_rules_file_parses_as_written() -> None:
    rules = parse_rules(MINIMAL)
    assert [r.name for r in rules.rules] == [
        "fid max 25",
        "clip min 30",
        "adherence.counting min 0.5",
        "fid max_increase 1",
        "clip max_decrease 0.5",
    ]
    assert [r.line for r in rules.rules] == [2, 3, 4, 5, 6]
    assert [r.direction.value for r in rules.rules] == ["lower", "higher", "higher", "lower", "higher"]
    assert rules.needs_baseline


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "rules:\n  - {metric: fid, max: 25}\n  - metric: fid\n    max_increase: a lot\n",
            "rules.yaml:4: rule 2: max_increase: expected a number, got 'a lot'",
        ),
        (
            "rules:\n  - {metric: fd, max: 1}\n",
            "rules.yaml:2: rule 1: metric: unknown metric 'fd' (did you mean 'fid'?)",
        ),
        ("rules:\n  - {metric: fid, mx: 1}\n", "rules.yaml:2: rule 1: unknown key 'mx' (did you mean 'max'?)"),
        ("rule:\n  - {metric: fid, max: 1}\n", "rules.yaml:1: unknown key 'rule' (did you mean 'rules'?)"),
        ("rules:\n  - {metric: fid}\n", "rules.yaml:2: rule 1: fid: no threshold"),
        ("rules:\n  - {max: 3}\n", "rules.yaml:2: rule 1: no `metric`"),
        ("rules:\n  - {metric: clip, min: 30, max: 20}\n", "rules.yaml:2: rule 1: max: max 20 is below min 30"),
        ("rules:\n  - {metric: fid, max_increase: -1}\n", "rules.yaml:2: rule 1: max_increase: a tolerance is not"),
        ("rules:\n  - {metric: fid, max: true}\n", "rules.yaml:2: rule 1: max: expected a number, got True"),
        ("rules:\n  - {metric: fid, max: 1, max: 2}\n", "rules.yaml:2: max: given twice"),
        (
            "rules:\n  - {metric: fid, max: 1, require_interval: yes please}\n",
            "rules.yaml:2: rule 1: require_interval: expected true or false",
        ),
        ("rules:\n  - fid < 25\n", "rules.yaml:1: rule 1: expected a mapping"),
        ("rules: []\n", "rules.yaml:1: rules: expected a non-empty list"),
        ("", "rules.yaml: empty"),
        ("rules: [\n", "rules.yaml:2: not valid YAML"),
        ("rules:\n  - {metric: fid, max: 1}\npairs: [a, b]\n", "rules.yaml:3: pairs: expected a mapping"),
    ],
)
def test_malformed_rules_name_the_line_and_the_reason(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_rules(text)
    assert str(err.value).startswith(message), str(err.value)


def test_rule_options() -> None:
    rules = parse_rules(
        "rules:\n  - {metric: clip, min: 20, max: 40, cell: a, require_interval: true}\n"
        "  - {metric: fid, max: 1e-3}\npairs:\n  new: old\n"
    )
    first, second = rules.rules
    assert (first.min, first.max, first.cell, first.require_interval) == (20.0, 40.0, "a", True)
    assert second.max == 0.001  # YAML 1.1 reads 1e-3 as text: still a number here
    assert rules.pairs == {"new": "old"}


def _rule(text: str):
    return parse_rules(f"rules:\n  - {text}\n").rules[0]


@pytest.mark.parametrize(
    ("rule", "value", "status", "reason"),
    [
        ("{metric: fid, max: 25}", 27.3, FAIL, "fid 27.3 > max 25"),
        ("{metric: fid, max: 25}", 25.0, PASS, "fid 25 <= max 25"),
        ("{metric: clip, min: 30}", 31.0, PASS, "clip 31 >= min 30"),
        ("{metric: clip, min: 30, max: 32}", 33.0, FAIL, "clip 33 > max 32"),
        ("{metric: adherence.counting, min: 0.5}", 0.25, FAIL, "adherence.counting 0.25 < min 0.5"),
    ],
)
def test_absolute_verdicts(rule: str, value: float, status: str, reason: str) -> None:
    assert bound_verdict(_rule(rule), value) == (status, reason)


def test_require_interval_needs_the_whole_interval() -> None:
    rule = _rule("{metric: fid, max: 25, require_interval: true}")
    assert bound_verdict(rule, 22.0, Evidence(22.0, 20.0, 24.0))[0] == PASS
    status, reason = bound_verdict(rule, 22.0, Evidence(22.0, 19.0, 26.0))
    assert status == FAIL and reason == "fid 22 [19, 26] not wholly <= max 25"


@pytest.mark.parametrize(
    ("rule", "evidence", "status", "reason"),
    [
        (
            "{metric: fid, max_increase: 1.0}",
            Evidence(1.8, 1.2, 2.4, n=100),
            FAIL,
            "fid +1.8 [1.2, 2.4] beyond max_increase 1",
        ),
        (
            "{metric: fid, max_increase: 1.0}",
            Evidence(0.2, -0.3, 0.6, n=100),
            PASS,
            "fid +0.2 [-0.3, 0.6] within max_increase 1",
        ),
        (
            "{metric: clip, max_decrease: 0.5}",
            Evidence(-0.3, -0.9, 0.2, n=100),
            INCONCLUSIVE,
            "clip -0.3 [-0.9, 0.2] straddles max_decrease 0.5: about 1245 more images per cell would decide it",
        ),
        (
            "{metric: clip, max_decrease: 0.5}",
            Evidence(-1.0, -1.4, -0.6, n=100),
            FAIL,
            "clip -1 [-1.4, -0.6] beyond max_decrease 0.5",
        ),
        # Read literally: max_increase on a higher-is-better metric bounds an increase.
        (
            "{metric: clip, max_increase: 0.5}",
            Evidence(-3.0, -4.0, -2.0, n=100),
            PASS,
            "clip -3 [-4, -2] within max_increase 0.5",
        ),
        (
            "{metric: fid, max_increase: 1, max_decrease: 1}",
            Evidence(-2.0, -2.5, -1.5, n=100),
            FAIL,
            "fid -2 [-2.5, -1.5] beyond max_decrease 1",
        ),
    ],
)
def test_regression_verdicts(rule: str, evidence: Evidence, status: str, reason: str) -> None:
    got_status, got_reason, _ = regression_verdict(_rule(rule), evidence)
    assert (got_status, got_reason) == (status, reason)


def test_more_images_scale_with_the_square_of_the_half_width() -> None:
    # Half-width 0.5, 0.25 from the limit: the half-width must halve, so 4x the images, 3x more.
    assert more_images_to_decide(0.0, -0.5, 0.5, 0.25, 100) == 300
    assert more_images_to_decide(0.25, -0.25, 0.75, 0.25, 100) is None  # on the limit: nothing decides it


def _category_cell(cell_id: str, seed: int) -> dict[str, Any]:
    """10 `colors` images (7 pass) and 190 `counting` ones: categories of very different sizes."""
    rows, categories = [], {}
    for category, n, passing in (("colors", 10, 7), ("counting", 190, 150)):
        order = random.Random(seed).sample(range(n), n)
        for i in range(n):
            passed = order[i] < passing
            rows.append({"item": f"{category}-{i}#0", "path": f"{category}-{i}.png", "sha256": "0" * 64,
                         "prompt_id": f"{category}-{i}", "category": category, "adherence_passed": passed})  # fmt: skip
        categories[category] = {"accuracy": passing / n, "n": n, "passed": passing}
    value = sum(c["accuracy"] for c in categories.values()) / 2
    return {
        "id": cell_id,
        "n_images": len(rows),
        "metrics": {"adherence": {"value": value, "categories": categories}},
        "per_image": rows,
        "protocol": {"device": "cpu"},
    }


def test_a_category_rule_counts_that_categorys_images_to_decide() -> None:
    rules = parse_rules("rules:\n  - {metric: adherence.colors, max_decrease: 0.2}\n")
    cand, base = _side(_category_cell("a", 1)), _side(_category_cell("a", 2))
    (verdict,) = run_gate(rules, cand, base).verdicts
    assert verdict.status == INCONCLUSIVE, verdict.reason
    e = verdict.evidence
    # The interval is that of the 10 colours images, so they are what must grow, not the cell's 200.
    assert e is not None and e.paired and e.n == 10
    assert verdict.more_images == more_images_to_decide((e.low + e.high) / 2, e.low, e.high, -0.2, 10)
    assert f"about {verdict.more_images} more colors images per cell would decide it" in verdict.reason


# -- the gate on documents built by hand ------------------------------------------------------------------------


def _cell(cell_id: str, metrics: dict[str, Any], protocol: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": cell_id,
        "n_images": 10,
        "metrics": {k: {"value": v} for k, v in metrics.items()},
        "per_image": [],
        "protocol": protocol or {"inception": {"extractor": "x"}, "device": "cpu"},
    }


def _side(*cells: dict[str, Any], name: str = "r.json") -> Side:
    return Side(name, {"cells": list(cells)})


def _fixed(evidence: Evidence):
    return lambda *args: evidence


def test_gate_verdicts_per_rule_and_cell() -> None:
    rules = parse_rules(MINIMAL)
    cand = _side(_cell("a", {"fid": 20.0, "clip": 31.0}), _cell("b", {"fid": 27.3, "clip": 29.0}))
    cand.cells["a"]["metrics"]["adherence"] = {"value": 0.7, "categories": {"counting": {"accuracy": 0.6}}}
    base = _side(_cell("only", {"fid": 19.0, "clip": 31.0}))  # one baseline cell pairs with every cell
    result = run_gate(rules, cand, base, compare_fn=_fixed(Evidence(0.1, -0.2, 0.4, n=50)))
    table = {(v.rule.index, v.cell): v.status for v in result.verdicts}
    assert table == {
        (1, "a"): PASS,
        (1, "b"): FAIL,
        (2, "a"): PASS,
        (2, "b"): FAIL,
        (3, "a"): PASS,
        (3, "b"): ERROR,
        (4, "a"): PASS,
        (4, "b"): PASS,
        (5, "a"): PASS,
        (5, "b"): PASS,
    }
    missing = next(v for v in result.verdicts if v.status == ERROR)
    assert "rule 3 (adherence.counting min 0.5), line 4" in missing.reason and "no adherence" in missing.reason
    assert {v.baseline_cell for v in result.verdicts if v.rule.is_regression} == {"only"}
    assert result.exit_code() == ExitCode.USAGE


def test_exit_codes_follow_the_table() -> None:
    rules = parse_rules("rules:\n  - {metric: fid, max_increase: 1}\n")
    cand, base = _side(_cell("a", {"fid": 20.0})), _side(_cell("a", {"fid": 19.0}))
    cases = [(Evidence(0.1, -0.2, 0.4), 0, 0), (Evidence(2.0, 1.5, 2.5), 1, 1), (Evidence(0.9, 0.5, 1.3), 0, 4)]
    for evidence, loose, strict in cases:
        result = run_gate(rules, cand, base, compare_fn=_fixed(evidence))
        assert (result.exit_code(), result.exit_code(strict=True)) == (loose, strict)


def test_a_named_cell_and_pairs() -> None:
    rules = parse_rules("rules:\n  - {metric: fid, max_increase: 1, cell: new/x}\npairs:\n  new/x: old/x\n")
    cand = _side(_cell("new/x", {"fid": 20.0}), _cell("new/y", {"fid": 99.0}))
    base = _side(_cell("old/x", {"fid": 19.0}), _cell("old/y", {"fid": 19.0}))
    result = run_gate(rules, cand, base, compare_fn=_fixed(Evidence(0.5, 0.1, 0.9)))
    assert [(v.cell, v.baseline_cell, v.status) for v in result.verdicts] == [("new/x", "old/x", PASS)]


def test_structural_errors_name_what_to_fix() -> None:
    cand = _side(_cell("a", {"fid": 20.0}), _cell("b", {"fid": 20.0}))
    with pytest.raises(ConfigError, match=r"rules.yaml:2: rule 1 \(fid max_increase 1\) .* --baseline"):
        run_gate(parse_rules("rules:\n  - {metric: fid, max_increase: 1}\n"), cand)
    base = _side(_cell("x", {"fid": 1.0}), _cell("y", {"fid": 1.0}))
    with pytest.raises(ConfigError, match=r"cell a of r\.json has no baseline cell.*pairs:"):
        run_gate(parse_rules("rules:\n  - {metric: fid, max_increase: 1}\n"), cand, base)
    with pytest.raises(ConfigError, match=r"rules\.yaml:3: pairs: zz: no such cell"):
        run_gate(parse_rules("rules:\n  - {metric: fid, max_increase: 1}\npairs: {zz: x}\n"), cand, base)


def test_protocol_mismatch_is_refused_or_warned() -> None:
    rules = parse_rules("rules:\n  - {metric: fid, max_increase: 1}\n")
    cand = _side(_cell("a", {"fid": 20.0}, {"inception": {"extractor": "y"}, "device": "cuda"}))
    base = _side(_cell("a", {"fid": 19.0}))
    with pytest.raises(ProtocolMismatchError, match=r"inception\.extractor: 'x' vs 'y'") as err:
        run_gate(rules, cand, base, compare_fn=_fixed(Evidence(0.1, 0.0, 0.2)))
    assert "device" not in str(err.value)  # informative fields never refuse
    result = run_gate(rules, cand, base, allow_protocol_mismatch=True, compare_fn=_fixed(Evidence(0.1, 0.0, 0.2)))
    assert result.warnings and "inception.extractor" in result.warnings[0]


def test_a_field_that_moves_no_compared_metric_only_warns() -> None:
    """Two runs that differ only in the FID reference stay comparable for adherence (as the report groups them)."""
    rules = parse_rules("rules:\n  - {metric: adherence.colors, max_decrease: 0.1}\n")
    protocol = {"inception": {"extractor": "x"}, "reference": {"images_sha256": "r1"}, "judge": {"name": "shapes"}}
    moved = {**protocol, "reference": {"images_sha256": "r2"}}
    adherence = {"value": 0.7, "categories": {"colors": {"accuracy": 0.6}}}
    cand, base = _cell("a", {}, moved), _cell("a", {}, protocol)
    cand["metrics"]["adherence"] = base["metrics"]["adherence"] = adherence
    result = run_gate(rules, _side(cand), _side(base), compare_fn=_fixed(Evidence(0.0, -0.05, 0.05)))
    assert [v.status for v in result.verdicts] == ["pass"]
    assert "reference.images_sha256: 'r1' vs 'r2'" in result.warnings[0] and "moves none" in result.warnings[0]
    fid_rules = parse_rules("rules:\n  - {metric: fid, max_increase: 1}\n")
    cand["metrics"]["fid"], base["metrics"]["fid"] = {"value": 20.0}, {"value": 19.0}
    with pytest.raises(ProtocolMismatchError, match=r"reference\.images_sha256"):
        run_gate(fid_rules, _side(cand), _side(base), compare_fn=_fixed(Evidence(0.1, 0.0, 0.2)))


def test_junit_and_markdown() -> None:
    rules = parse_rules(
        "rules:\n  - {metric: fid, max: 25}\n  - {metric: fid, max_increase: 1}\n  - {metric: clip, min: 1}\n"
    )
    cand = _side(_cell("a", {"fid": 20.0}), _cell("b", {"fid": 30.0}))
    base = _side(_cell("z", {"fid": 19.0}))
    result = run_gate(rules, cand, base, compare_fn=_fixed(Evidence(0.9, 0.5, 1.3, n=10)))
    root = ET.fromstring(junit_xml(result))
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == int(suite.get("tests")) == 6
    assert int(suite.get("failures")) == len(suite.findall("testcase/failure")) == 1
    assert int(suite.get("errors")) == len(suite.findall("testcase/error")) == 2
    assert int(suite.get("skipped")) == len(suite.findall("testcase/skipped")) == 2
    assert {c.get("classname") for c in cases} == {"sdeval.gate.a", "sdeval.gate.b"}
    assert all(set(c.attrib) == {"classname", "name"} for c in cases)
    assert "| FAIL | `b` | fid max 25 | fid 30 > max 25 |" in markdown(result)


# -- the command, and the calibration world ---------------------------------------------------------------------


def _suite_rows(n: int) -> list[dict[str, Any]]:
    palette, classes = ["red", "blue", "green", "yellow", "purple"], ["circle", "square", "triangle", "cross"]
    rows = []
    for i in range(n):
        colour, cls = palette[i % len(palette)], classes[(i // len(palette)) % len(classes)]
        spec = {"tag": "colors", "include": [{"class": cls, "count": 1, "color": colour}], "exclude": []}
        rows.append(
            {"id": f"colors-{i:03d}", "prompt": f"a photo of a {colour} {cls}", "category": "colors", "spec": spec}
        )
    return rows


def _generate_and_score(root: Path, prompts: Path, name: str, colors: float, base_seed: int) -> Path:
    checkpoint: dict[str, Any] = {"name": "shapes", "path": "shapes"}
    if colors:
        checkpoint["options"] = {"mistakes": {"colors": colors}}
    config = write_shapes_run(
        root / name, prompts, checkpoints=[checkpoint], seeds_per_prompt=2, base_seed=base_seed, batch_size=8
    )
    return generate_and_judge(config, root / f"{name}.json")


@pytest.fixture(scope="module")
def calibration_runs(tmp_path_factory) -> dict[str, Path]:
    """The same model (10% colour mistakes) twice with different base seeds, and a faulty one (50%)."""
    root = tmp_path_factory.mktemp("gate")
    prompts = root / "prompts.jsonl"  # one suite file: its path is part of the judge's protocol
    prompts.write_text("".join(json.dumps(r) + "\n" for r in _suite_rows(40)), encoding="utf-8")
    return {
        "baseline": _generate_and_score(root, prompts, "baseline", 0.1, 0),
        "reseeded": _generate_and_score(root, prompts, "reseeded", 0.1, 777),
        "faulty": _generate_and_score(root, prompts, "faulty", 0.5, 0),
        "root": root,
    }


def test_gate_catches_colour_mistakes_and_not_seed_noise(calibration_runs: dict[str, Path]) -> None:
    root = calibration_runs["root"]
    rules = root / "rules.yaml"
    rules.write_text(
        "rules:\n  - {metric: adherence.colors, max_decrease: 0.05}\n  - {metric: adherence, max_decrease: 0.05}\n",
        encoding="utf-8",
    )
    base = str(calibration_runs["baseline"])
    junit, report, verdicts = root / "junit.xml", root / "gate.md", root / "gate.json"
    faulty = CliRunner().invoke(
        main,
        [
            "gate",
            str(calibration_runs["faulty"]),
            "--rules",
            str(rules),
            "--baseline",
            base,
            "--junit",
            str(junit),
            "--markdown",
            str(report),
            "--json",
            str(verdicts),
        ],
    )
    assert faulty.exit_code == ExitCode.VERDICT_FAILED, faulty.output
    assert "beyond max_decrease 0.05" in faulty.output
    data = json.loads(verdicts.read_text())
    assert data["summary"]["fail"] == 2 and all(v["paired"] for v in data["verdicts"])
    # The files gated, so a report over several runs can name each verdict's run.
    faulty_file = calibration_runs["faulty"]
    assert data["results"] == {"path": str(faulty_file), "sha256": hashlib.sha256(faulty_file.read_bytes()).hexdigest()}
    assert data["baseline"]["path"] == base
    assert ET.parse(junit).getroot().find("testsuite").get("failures") == "2"
    assert "FAIL" in report.read_text()
    for strict, allowed in (([], {0}), (["--strict"], {0, 4})):
        reseeded = CliRunner().invoke(
            main, ["gate", str(calibration_runs["reseeded"]), "--rules", str(rules), "--baseline", base, *strict]
        )
        assert reseeded.exit_code in allowed, reseeded.output  # never a false regression from seed noise
        assert "FAIL" not in reseeded.output


def test_gate_command_errors(calibration_runs: dict[str, Path], tmp_path: Path) -> None:
    results = str(calibration_runs["baseline"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {metric: adherence, min: 0.5}\n  - {metric: adherence, max_decrease: lots}\n")
    for args, needle in (
        (["--rules", str(bad)], "bad.yaml:3: rule 2: max_decrease: expected a number, got 'lots'"),
        (["--rules", str(tmp_path / "none.yaml")], "none.yaml: no such rules file"),
    ):
        result = CliRunner().invoke(main, ["gate", results, *args])
        assert result.exit_code == ExitCode.USAGE and needle in result.output, result.output
        assert "Traceback" not in result.output
    bad.write_text("rules:\n  - {metric: fid, max: 25}\n")
    missing = CliRunner().invoke(main, ["gate", results, "--rules", str(bad)])
    assert missing.exit_code == ExitCode.USAGE and "rule 1 (fid max 25), line 2: fid is not in the results" in (
        missing.output
    )


def test_diff_command(calibration_runs: dict[str, Path]) -> None:
    result = CliRunner().invoke(main, ["diff", str(calibration_runs["baseline"]), str(calibration_runs["faulty"])])
    assert result.exit_code == 0, result.output
    assert "protocol: same" in result.output
    line = next(x for x in result.output.splitlines() if x.strip().startswith("adherence.colors:"))
    assert "(paired, n=80)" in line and " -0." in line
