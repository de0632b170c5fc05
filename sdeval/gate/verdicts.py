"""Verdicts as pure functions: one rule, one cell, the numbers (a value, or a difference with its interval)
-> pass, fail or inconclusive with a reason a person can read."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sdeval.core.errors import ExitCode
from sdeval.gate.rules import Rule

PASS, FAIL, INCONCLUSIVE, ERROR = "pass", "fail", "inconclusive", "error"
#: Worst first: a rule with several thresholds takes the worst of their verdicts, a gate run the worst of its rules'.
_ORDER = (ERROR, FAIL, INCONCLUSIVE, PASS)
#: A verdict in one word, as the gate's table, the report's banner and bench's last line say it.
WORDS = {PASS: "PASS", FAIL: "FAIL", INCONCLUSIVE: "INCONCLUSIVE", ERROR: "ERROR"}
#: What `sdeval gate --json` writes (GateResult.to_json), and the newest version of it a reader accepts.
GATE_FORMAT = "sdeval.gate"
GATE_FORMAT_VERSION = 1
_EXIT_CODES = {ERROR: ExitCode.USAGE, FAIL: ExitCode.VERDICT_FAILED, INCONCLUSIVE: ExitCode.INCONCLUSIVE}


def overall_status(counts: Mapping[str, int]) -> str:
    """The status of a whole gate run from its verdict counts: the worst one present (error, then fail, then
    inconclusive), else pass."""
    return next((status for status in _ORDER if counts.get(status)), PASS)


def exit_code(counts: Mapping[str, int], strict: bool = False) -> int:
    """The gate's exit code from its verdict counts (docs/gate.md): 2 for any error, else 1 for any failure, else 4
    for anything inconclusive under --strict, else 0. The gate, bench and the report all read it here."""
    status = overall_status(counts)
    if status == INCONCLUSIVE and not strict:
        return ExitCode.OK
    return _EXIT_CODES.get(status, ExitCode.OK)


def exit_word(code: int) -> str:
    """The one word for a gate exit code (PASS, FAIL, INCONCLUSIVE, ERROR), else the code itself."""
    words = {exit_code({status: 1}, strict=True): word for status, word in WORDS.items()}
    return words.get(code, str(code))


@dataclass(frozen=True)
class Evidence:
    """A number with its interval: a cell's value, or a candidate-minus-baseline difference (`paired` when the
    same items were compared image by image)."""

    estimate: float
    low: float
    high: float
    level: float = 0.95
    n: int | None = None  # images behind the interval (shared items when paired; for KEY.PART, the part's only)
    paired: bool = False
    method: str = ""
    note: str | None = None  # how to read the interval: cut to the metric's range, or resting on few prompts

    @property
    def interval(self) -> tuple[float, float]:
        return (self.low, self.high)


@dataclass(frozen=True)
class Verdict:
    """The outcome of one rule on one cell."""

    rule: Rule
    cell: str
    status: str  # pass, fail, inconclusive, error
    reason: str
    value: float | None = None
    baseline_cell: str | None = None
    evidence: Evidence | None = None
    more_images: int | None = None  # inconclusive: about how many more images per cell would decide it

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rule": self.rule.to_json(),
            "cell": self.cell,
            "status": self.status,
            "reason": self.reason,
            "value": self.value,
        }
        if self.baseline_cell is not None:
            out["baseline_cell"] = self.baseline_cell
        if self.evidence is not None:
            e = self.evidence
            out["difference" if self.rule.is_regression else "estimate"] = e.estimate
            out["interval"] = {"low": e.low, "high": e.high, "level": e.level, "method": e.method}
            if e.note:
                out["interval"]["note"] = e.note
            out["n"] = e.n
            out["paired"] = e.paired
        if self.more_images is not None:
            out["more_images_per_cell"] = self.more_images
        return out


def fmt(value: float) -> str:
    return f"{value:.4g}"


def signed(value: float) -> str:
    return f"{value:+.4g}"


def span(low: float, high: float) -> str:
    return f"[{fmt(low)}, {fmt(high)}]"


def worst(statuses: list[str]) -> str:
    return min(statuses, key=_ORDER.index)


def more_images_to_decide(estimate: float, low: float, high: float, limit: float, n: int | None) -> int | None:
    """About how many more images per cell would put the whole interval on one side of `limit`, assuming the
    estimate stays and the half-width shrinks as 1/sqrt(n); None when no sample size would (estimate on the limit,
    or n unknown)."""
    half, distance = (high - low) / 2, abs(estimate - limit)
    if n is None or n <= 0 or distance == 0 or half <= 0:
        return None
    needed = n * (half / distance) ** 2
    return max(1, math.ceil(needed - n))


def bound_verdict(rule: Rule, value: float, interval: Evidence | None = None) -> tuple[str, str]:
    """min/max on a cell's value: the point value decides; with `require_interval` the whole interval must hold."""
    statuses, reasons = [], []
    for key, limit in (("min", rule.min), ("max", rule.max)):
        if limit is None:
            continue
        holds = value >= limit if key == "min" else value <= limit
        if rule.require_interval:
            assert interval is not None, "require_interval needs the interval"
            edge = interval.low if key == "min" else interval.high
            whole = edge >= limit if key == "min" else edge <= limit
            shown = f"{rule.metric} {fmt(value)} {span(interval.low, interval.high)}"
            ok = ">=" if key == "min" else "<="
            if whole:
                statuses.append(PASS)
                reasons.append(f"{shown} wholly {ok} {key} {fmt(limit)}")
            else:
                statuses.append(FAIL)
                reasons.append(f"{shown} not wholly {ok} {key} {fmt(limit)}")
            continue
        sign = (">=" if holds else "<") if key == "min" else ("<=" if holds else ">")
        statuses.append(PASS if holds else FAIL)
        reasons.append(f"{rule.metric} {fmt(value)} {sign} {key} {fmt(limit)}")
    return _combine(statuses, reasons)


def regression_verdict(rule: Rule, evidence: Evidence) -> tuple[str, str, int | None]:
    """max_increase / max_decrease on the candidate-minus-baseline difference: fail only when the whole interval
    lies beyond the tolerance, pass when it lies wholly within, inconclusive when it straddles (with about how
    many more images per cell would decide it). The rule is read literally: max_increase bounds an increase
    whatever the metric's direction."""
    d, low, high = evidence.estimate, evidence.low, evidence.high
    shown = f"{rule.metric} {signed(d)} {span(low, high)}"
    statuses, reasons, needed = [], [], []
    for key, limit in (("max_increase", rule.max_increase), ("max_decrease", rule.max_decrease)):
        if limit is None:
            continue
        # The difference must stay <= +limit (an increase) or >= -limit (a decrease).
        edge = limit if key == "max_increase" else -limit
        within = high <= edge if key == "max_increase" else low >= edge
        beyond = low > edge if key == "max_increase" else high < edge
        if beyond:
            statuses.append(FAIL)
            reasons.append(f"{shown} beyond {key} {fmt(limit)}")
        elif within:
            statuses.append(PASS)
            reasons.append(f"{shown} within {key} {fmt(limit)}")
        else:
            more = more_images_to_decide((low + high) / 2, low, high, edge, evidence.n)
            needed.append(more)
            hint = (
                f"about {more} more {_counted(rule.metric)} per cell would decide it"
                if more is not None
                else "no sample size would decide it (the estimate sits on the tolerance)"
            )
            statuses.append(INCONCLUSIVE)
            reasons.append(f"{shown} straddles {key} {fmt(limit)}: {hint}")
    status, reason = _combine(statuses, reasons)
    known = [n for n in needed if n is not None]
    return status, reason, (max(known) if status == INCONCLUSIVE and known else None)


def _counted(metric: str) -> str:
    """What the estimate counts: a KEY.PART (adherence.counting) is decided by the part's images alone (Evidence n),
    so more images per cell means more of those, not of the whole cell."""
    _, dot, part = metric.partition(".")
    return f"{part} images" if dot else "images"


def _combine(statuses: list[str], reasons: list[str]) -> tuple[str, str]:
    """The worst verdict, explained by the reasons that gave it."""
    status = worst(statuses)
    return status, "; ".join(r for s, r in zip(statuses, reasons, strict=True) if s == status)
