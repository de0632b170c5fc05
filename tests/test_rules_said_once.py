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
