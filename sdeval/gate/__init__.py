"""The release gate: rules on a results file (absolute thresholds, regressions against a baseline) -> verdicts
(docs/gate.md); and `diff`, what differs between two results."""

from __future__ import annotations

from sdeval.gate.evaluate import GateResult, Side, load_side, run_gate
from sdeval.gate.rules import Rule, Rules, load_rules, parse_rules
from sdeval.gate.verdicts import ERROR, FAIL, INCONCLUSIVE, PASS, Evidence, Verdict

__all__ = [
    "ERROR",
    "FAIL",
    "INCONCLUSIVE",
    "PASS",
    "Evidence",
    "GateResult",
    "Rule",
    "Rules",
    "Side",
    "Verdict",
    "load_rules",
    "load_side",
    "parse_rules",
    "run_gate",
]
