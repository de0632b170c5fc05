"""A benchmark's own generation rules in its suite header (`generation`): generate and bench use them where the
config leaves a key unset, say so, and record them; an explicit key wins; a suite without them changes nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from sdeval.cli import main
from sdeval.core.errors import ConfigError
from sdeval.generate.config import parse_config, suite_defaults_line
from sdeval.suites import load_suite


def _config(tmp_path: Path, suite: str, **keys: Any) -> Any:
    data = {"checkpoints": [{"name": "t", "path": "tiny-random"}], "suite": suite, "output_dir": "out", **keys}
    return parse_config(data, tmp_path)


def test_genevals_rules_fill_what_the_config_leaves_unset(tmp_path: Path) -> None:
    config = _config(tmp_path, "geneval")
    assert config.seeds_per_prompt == 4 and config.seeds is None
    assert {(s.num_inference_steps, s.guidance_scale) for s in config.settings} == {(50, 9.0)}
    rules = {"seeds_per_prompt": 4, "num_inference_steps": 50, "guidance_scale": 9.0}
    assert config.suite_defaults == rules and config.to_dict()["suite_defaults"] == rules  # recorded in run.json
    line = suite_defaults_line(config)
    assert line == (
        "suite geneval: its generation rules where the config sets none: seeds_per_prompt 4, num_inference_steps 50, "
        "guidance_scale 9.0 (set a key to override)"
    )
    # An explicit key wins, and only the keys the suite filled are recorded as filled.
    mine = _config(tmp_path, "geneval", seeds_per_prompt=1, settings={"guidance_scale": [5, 7.5]})
    assert mine.seeds_per_prompt == 1 and {s.guidance_scale for s in mine.settings} == {5.0, 7.5}
    assert mine.suite_defaults == {"num_inference_steps": 50}
    assert _config(tmp_path, "geneval", seeds=[7]).seeds == (7,)


def test_t2i_compbench_fixes_its_seeds_and_dpg_bench_its_count(tmp_path: Path) -> None:
    t2i = _config(tmp_path, "builtin:t2i-compbench")
    assert t2i.seeds == tuple(range(42, 52)) and t2i.seeds_per_prompt == 10
    assert t2i.suite_defaults == {"seeds": list(range(42, 52))}
    assert {s.guidance_scale for s in t2i.settings} == {7.5}  # the benchmark fixes no guidance: diffusers' default
    dpg = _config(tmp_path, "dpg-bench")
    assert dpg.seeds_per_prompt == 4 and dpg.suite_defaults == {"seeds_per_prompt": 4}
    assert load_suite("dsg-1k").generation == {}


def test_a_suite_without_rules_leaves_the_config_and_its_hash_alone(tmp_path: Path) -> None:
    config = _config(tmp_path, "smoke")
    assert config.suite_defaults == {} and "suite_defaults" not in config.to_dict()
    assert config.seeds_per_prompt == 1 and {s.guidance_scale for s in config.settings} == {7.5}
    assert suite_defaults_line(config) is None


def test_the_header_rules_are_checked(tmp_path: Path) -> None:
    header = {"id": "s", "version": "1", "format": 2,
              "generation": {"seeds_per_prompt": 0, "guidance": 9, "guidance_scale": "high"}}  # fmt: skip
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps({"suite": header}) + "\n" + json.dumps({"id": "a", "prompt": "x"}) + "\n")
    result = CliRunner().invoke(main, ["suites", "validate", str(path)])
    assert result.exit_code == 2
    assert "suite.generation.guidance: unknown key" in result.output
    assert "suite.generation.seeds_per_prompt: expected an integer >= 1, got 0" in result.output
    assert "suite.generation.guidance_scale: expected a number >= 0" in result.output
    with pytest.raises(ConfigError, match="generation"):
        load_suite(path)


def test_generate_says_what_the_suite_set(tmp_path: Path) -> None:
    config = tmp_path / "gen.yaml"
    config.write_text("checkpoints: [{name: t, path: tiny-random}]\nsuite: geneval\noutput_dir: out\n")
    result = CliRunner().invoke(main, ["generate", str(config), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "suite geneval: its generation rules where the config sets none: seeds_per_prompt 4" in result.stderr
    assert "553 prompt(s) x 4 seed(s)" in result.stdout
