"""Rules said once: the gate verdict and its exit code, the unknown-key check."""

from __future__ import annotations

import pytest

from sdeval.core.errors import ExitCode
from sdeval.gate.verdicts import ERROR, FAIL, INCONCLUSIVE, PASS, WORDS, exit_code, exit_word, overall_status


@pytest.mark.parametrize(
    ("counts", "status", "loose", "strict"),
    [
        ({}, PASS, ExitCode.OK, ExitCode.OK),
        ({PASS: 3}, PASS, ExitCode.OK, ExitCode.OK),
        ({PASS: 1, INCONCLUSIVE: 1}, INCONCLUSIVE, ExitCode.OK, ExitCode.INCONCLUSIVE),
        ({FAIL: 1, INCONCLUSIVE: 2}, FAIL, ExitCode.VERDICT_FAILED, ExitCode.VERDICT_FAILED),
        ({FAIL: 1, ERROR: 1}, ERROR, ExitCode.USAGE, ExitCode.USAGE),
        ({PASS: 0, FAIL: 0, INCONCLUSIVE: 0, ERROR: 0}, PASS, ExitCode.OK, ExitCode.OK),
    ],
)
def test_one_verdict_and_one_exit_code_per_gate_run(counts, status, loose, strict) -> None:
    assert overall_status(counts) == status
    assert (exit_code(counts), exit_code(counts, strict=True)) == (loose, strict)
    assert exit_word(exit_code(counts, strict=True)) == WORDS[status]


def test_the_gate_result_reads_the_same_rule() -> None:
    from sdeval.gate import GateResult

    result = GateResult(verdicts=(), warnings=())
    assert result.exit_code(strict=True) == exit_code(result.counts, strict=True) == ExitCode.OK
    assert result.to_json()["format"] == "sdeval.gate" and result.to_json()["summary"] == result.counts
    assert exit_word(ExitCode.INCOMPLETE) == str(ExitCode.INCOMPLETE)


# -- one unknown-key check: every config, rules file, suite and options mapping says "did you mean" ---------------


def _suite_problems(tmp_path, text: str) -> list[str]:
    from sdeval.suites.load import parse_suite

    _, problems = parse_suite(text.encode(), tmp_path / "s.jsonl")
    return [p.reason for p in problems]


def test_every_unknown_key_check_says_did_you_mean(tmp_path) -> None:
    from sdeval.calibration.world import parse_options
    from sdeval.core.errors import ConfigError
    from sdeval.gate.rules import parse_rules
    from sdeval.preference.imagereward import vision_config

    with pytest.raises(ConfigError, match=r"^x\.mistake: unknown key \(did you mean 'mistakes'\?\)$"):
        parse_options({"mistake": {}}, "x")
    with pytest.raises(ConfigError, match=r"rules\.yaml:2: rule 1: unknown key 'mx' \(did you mean 'max'\?\)$"):
        parse_rules("rules:\n  - {metric: fid, mx: 1}\n", "rules.yaml")
    header = '{"suite": {"id": "s", "version": "1", "descripton": "x"}}\n{"id": "a", "promt": "a cat"}\n'
    problems = _suite_problems(tmp_path, header)
    assert "suite.descripton: unknown key (did you mean 'description'?)" in problems
    assert "unknown key 'promt' (did you mean 'prompt'?)" in problems
    config = tmp_path / "vision_config.json"
    config.write_text('{"hiden_size": 8}')
    with pytest.raises(
        ConfigError, match=r"vision_config .*: hiden_size: unknown key \(did you mean 'hidden_size'\?\)"
    ):
        vision_config(config)


# -- one device grammar: generate's config and every --device read it ---------------------------------------------


def test_one_device_grammar() -> None:
    from sdeval.core.devices import is_device_name, resolve_device
    from sdeval.core.errors import SdevalError

    assert all(is_device_name(name) for name in ("auto", "cpu", "mps", "cuda", "cuda:1"))
    assert not any(is_device_name(name) for name in ("gpu", "cuda:", "CPU", "", None, 0))
    with pytest.raises(SdevalError, match=r"^--device must be auto, cpu, cuda\[:N\] or mps, got 'gpu'$"):
        resolve_device("gpu")
