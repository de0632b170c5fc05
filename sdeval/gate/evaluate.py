"""Run a rules file against a results file (and a baseline): pair cells, check protocols, gather the numbers
and their intervals, and give one verdict per (rule, cell)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdeval.core.errors import ConfigError, ProtocolMismatchError, SdevalError
from sdeval.gate.rules import Rule, Rules
from sdeval.gate.verdicts import (
    ERROR,
    FAIL,
    GATE_FORMAT,
    GATE_FORMAT_VERSION,
    INCONCLUSIVE,
    PASS,
    Evidence,
    Verdict,
    bound_verdict,
    exit_code,
    regression_verdict,
)
from sdeval.metrics import registry
from sdeval.metrics.keys import check_values, lookup, part_view, value_of
from sdeval.metrics.registry import Jackknife
from sdeval.results.document import load_results
from sdeval.results.protocol import binds, describe, differences
from sdeval.stats import cell_intervals, compare_cells, load_cell_states
from sdeval.stats.settings import IntervalSettings, for_pair


@dataclass(frozen=True)
class Side:
    """One results file: its document, the feature state of each cell (None where there is none) and, when the
    state could not be read, why."""

    path: str
    document: dict[str, Any]
    states: dict[str, Any] = field(default_factory=dict)
    state_problem: str | None = None

    @property
    def cells(self) -> dict[str, dict[str, Any]]:
        return {cell["id"]: cell for cell in self.document["cells"]}

    @property
    def settings(self) -> IntervalSettings:
        """How intervals from this file are drawn: as `score --ci` recorded, else the defaults."""
        return IntervalSettings.of(self.document)


@dataclass(frozen=True)
class GateResult:
    verdicts: tuple[Verdict, ...]
    warnings: tuple[str, ...]
    settings: IntervalSettings | None = None  # how the intervals it computed were drawn
    # The files gated, as `file_record` gives them: "results" and "baseline" (None without one).
    files: dict[str, dict[str, Any] | None] = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(v.status == status for v in self.verdicts)

    @property
    def counts(self) -> dict[str, int]:
        """How many verdicts have each status (pass, fail, inconclusive, error)."""
        return {s: self.count(s) for s in (PASS, FAIL, INCONCLUSIVE, ERROR)}

    def exit_code(self, strict: bool = False) -> int:
        """2 for any error, else 1 for any failure, else 4 for anything inconclusive under --strict, else 0."""
        return exit_code(self.counts, strict)

    def summary(self) -> str:
        parts = [
            f"{self.count(s)} {label}"
            for s, label in ((PASS, "passed"), (FAIL, "failed"), (INCONCLUSIVE, "inconclusive"), (ERROR, "errors"))
        ]
        return f"gate: {', '.join(parts)} ({len(self.verdicts)} checks)"

    @property
    def intervals_line(self) -> str | None:
        """How the intervals behind the verdicts were drawn (None when no verdict rests on one)."""
        if self.settings is None or not any(v.evidence is not None for v in self.verdicts):
            return None
        return f"intervals: {self.settings.describe()}"

    def to_json(self) -> dict[str, Any]:
        return {
            "format": GATE_FORMAT,
            "format_version": GATE_FORMAT_VERSION,
            "results": self.files.get("results"),
            "baseline": self.files.get("baseline"),
            "summary": self.counts,
            "verdicts": [v.to_json() for v in self.verdicts],
            "warnings": list(self.warnings),
            "intervals": None
            if self.settings is None
            else {**self.settings.to_json(), "source": self.settings.source, "text": self.settings.describe()},
        }


def file_record(side: Side) -> dict[str, Any]:
    """Which results file a side is, for readers of the verdicts (a report over several runs names each verdict's
    run by it): the path as given and the sha256 of the file (None where it cannot be read)."""
    try:
        digest: str | None = hashlib.sha256(Path(side.path).read_bytes()).hexdigest()
    except OSError:
        digest = None
    return {"path": side.path, "sha256": digest}


def load_side(path: str | Path) -> Side:
    """A results file and, where sdeval.stats can read it, the feature state beside it."""
    document = check_values(load_results(path), path)
    states, problem = _load_states(path, document)
    return Side(str(path), document, states, problem)


def _load_states(path: str | Path, document: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """(each cell's state, None), or ({}, why there is none): values still gate without it, and an interval that
    needs its features names that reason rather than a guess."""
    entry = document.get("state") or {}
    if not entry.get("path"):
        reason = entry.get("reason") or "the results name no feature state file"
        return {}, f"no feature state was kept with {path} ({reason})"
    state_file = Path(path).parent / entry["path"]
    if not state_file.exists():
        return {}, f"no feature state file beside the results: {state_file} is missing (its features are needed)"
    try:
        return dict(load_cell_states(path, document)), None
    except SdevalError as err:
        return {}, f"the feature state beside the results could not be read: {err}"


# -- reading a cell ---------------------------------------------------------------------------------------------


def value_interval(
    cell: dict[str, Any],
    state: Any,
    metric: str,
    settings: IntervalSettings | None = None,
    state_problem: str | None = None,
) -> Evidence | str:
    """A cell's value with its interval, or why there is none: the interval the results hold for it (`score --ci`)
    when there is one at the settings' level, else computed by sdeval.stats with `settings` (the method the registry
    declares for the key; a KEY.PART as a cell of the part's images)."""
    settings = settings or IntervalSettings.of(cell)
    value, _ = value_of(cell, metric)
    view, key = part_view(cell, metric)
    n = len(view.get("per_image", []))
    stored = cell["metrics"].get(metric, {}).get("interval") if view is cell else None
    if isinstance(stored, dict) and stored.get("level") == settings.level:
        return Evidence(float(value or 0.0), stored["low"], stored["high"], stored["level"], n,
                        method=stored.get("method", ""), note=stored.get("note"))  # fmt: skip
    found = cell_intervals(view, state, **settings.kwargs).get(key)
    if found is None:
        return f"{metric}: no interval for cell {cell['id']}: {_why_none(key, state, state_problem)}"
    return Evidence(float(value or 0.0), found.low, found.high, found.level, n, method=found.method,
                    note=found.note)  # fmt: skip


def compare(
    base_cell: dict[str, Any],
    base_state: Any,
    cell: dict[str, Any],
    state: Any,
    metric: str,
    settings: IntervalSettings | None = None,
    state_problem: str | None = None,
) -> Evidence | str:
    """The candidate-minus-baseline difference of `metric` with its interval (paired by item where the cells
    share items; a KEY.PART as cells of the part's images), or why there is none. `settings`: the candidate's
    recorded interval settings unless given (sdeval.stats.settings.for_pair)."""
    settings = settings or for_pair(IntervalSettings.of(base_cell), IntervalSettings.of(cell))[0]
    (base_view, key), (view, _) = part_view(base_cell, metric), part_view(cell, metric)
    found = compare_cells(base_view, base_state, view, state, keys=[key], **settings.kwargs).get(key)
    if found is None:
        why = _why_none(key, state if base_state is not None else None, state_problem)
        return f"{metric}: no interval for the difference: {why}"
    n = found.n_shared if found.paired else min(len(base_view.get("per_image", [])), len(view.get("per_image", [])))
    return Evidence(found.difference, found.interval.low, found.interval.high, found.interval.level, n, found.paired,
                    found.method)  # fmt: skip


def _why_none(key: str, state: Any, state_problem: str | None = None) -> str:
    declared = registry.result_key(key)
    if declared is None or declared.interval is None:
        return f"{key} declares no interval method"
    if isinstance(declared.interval, Jackknife) and state is None:
        return state_problem or "no feature state file beside the results (NAME.state.npz): its features are needed"
    return "its inputs are missing (per-image values, feature state rows or at least 2 prompts)"


# -- pairing and protocols --------------------------------------------------------------------------------------


def pair_cells(rules: Rules, candidate: Side, baseline: Side, needed: list[str]) -> dict[str, str]:
    """candidate cell id -> baseline cell id for each cell in `needed`: `pairs:` first, then the same id, then a
    baseline's only cell; a cell with none is a ConfigError naming it."""
    base_ids = list(baseline.cells)
    where = f"{rules.source}:{rules.pairs_line}: pairs" if rules.pairs_line else f"{rules.source}: pairs"
    for cand, base in rules.pairs.items():
        if cand not in candidate.cells:
            raise ConfigError(
                f"{where}: {cand}: no such cell in {candidate.path} (cells: {', '.join(candidate.cells)})"
            )
        if base not in baseline.cells:
            raise ConfigError(
                f"{where}: {cand}: baseline cell {base!r} is not in {baseline.path} (cells: {', '.join(base_ids)})"
            )
    out: dict[str, str] = {}
    for cell_id in needed:
        if cell_id in rules.pairs:
            out[cell_id] = rules.pairs[cell_id]
        elif cell_id in baseline.cells:
            out[cell_id] = cell_id
        elif len(base_ids) == 1:
            out[cell_id] = base_ids[0]
        else:
            raise ConfigError(
                f"cell {cell_id} of {candidate.path} has no baseline cell: {baseline.path} has no cell of that id "
                f"and {len(base_ids)} cells ({', '.join(base_ids)}); map it under `pairs:` in {rules.source}"
            )
    return out


def check_protocols(
    candidate: Side,
    baseline: Side,
    pairs: dict[str, str],
    allow_mismatch: bool,
    metrics: dict[str, list[str]] | None = None,
) -> list[str]:
    """Refuse (ProtocolMismatchError) paired cells whose protocols differ in a field that binds a metric compared
    on them (`metrics`: cell id -> the rules' keys; None: every field binds), naming it; with `allow_mismatch` that
    is a warning. A binding field that moves none of the compared metrics (the FID reference, for an adherence
    rule) is a warning only. Returns the warnings."""
    warnings = []
    for cell_id, base_id in pairs.items():
        a, b = baseline.cells[base_id]["protocol"], candidate.cells[cell_id]["protocol"]
        binding, _ = differences(a, b)
        if metrics is not None:
            keys = [(found.result.key if (found := lookup(name)) else name) for name in metrics.get(cell_id, [])]
            unrelated = [path for path in binding if not any(binds(path, key) for key in keys)]
            binding = [path for path in binding if path not in unrelated]
            if unrelated:
                warnings.append(
                    f"cell {cell_id} and baseline cell {base_id} differ in "
                    f"{'; '.join(describe(a, b, path) for path in unrelated)}, which moves none of the compared "
                    f"metrics ({', '.join(dict.fromkeys(keys))}): compared"
                )
        if not binding:
            continue
        named = "; ".join(describe(a, b, path) for path in binding)
        message = (
            f"cell {cell_id} and baseline cell {base_id} were scored under different protocols "
            f"(baseline vs candidate): {named}"
        )
        if not allow_mismatch:
            raise ProtocolMismatchError(f"{message} (--allow-protocol-mismatch compares them anyway)")
        warnings.append(f"{message}: compared anyway (--allow-protocol-mismatch)")
    return warnings


# -- the gate ---------------------------------------------------------------------------------------------------


def cells_of(rule: Rule, side: Side) -> list[str]:
    """The cells a rule applies to: the one it names, else every cell."""
    return [rule.cell] if rule.cell is not None else list(side.cells)


def run_gate(
    rules: Rules,
    candidate: Side,
    baseline: Side | None = None,
    *,
    allow_protocol_mismatch: bool = False,
    compare_fn: Callable[..., Evidence | str] = compare,
) -> GateResult:
    """One verdict per (rule, cell). Structural problems (a regression rule without a baseline, a cell without a
    baseline cell, a protocol mismatch) raise; a missing metric or interval is an `error` verdict naming the rule."""
    if baseline is None:
        lacking = [rule for rule in rules.rules if rule.is_regression]
        if lacking:
            rule = lacking[0]
            raise ConfigError(
                f"{rules.source}:{rule.line}: rule {rule.index} ({rule.name}) compares with a baseline: "
                "give --baseline BASELINE.json"
            )
    warnings: list[str] = []
    pairs: dict[str, str] = {}
    settings = candidate.settings
    if baseline is not None:
        settings, mismatch = for_pair(baseline.settings, candidate.settings)
        warnings += [mismatch] if mismatch else []
        needed = [c for rule in rules.rules if rule.is_regression for c in cells_of(rule, candidate)]
        needed = [c for c in dict.fromkeys(needed) if c in candidate.cells]
        pairs = pair_cells(rules, candidate, baseline, needed)
        compared = {
            cell: [rule.metric for rule in rules.rules if rule.is_regression and cell in cells_of(rule, candidate)]
            for cell in pairs
        }
        warnings += check_protocols(candidate, baseline, pairs, allow_protocol_mismatch, compared)
    verdicts = []
    for rule in rules.rules:
        for cell_id in cells_of(rule, candidate):
            verdicts.append(_judge(rule, cell_id, candidate, baseline, pairs, compare_fn, settings))
    files = {"results": file_record(candidate), "baseline": file_record(baseline) if baseline is not None else None}
    return GateResult(tuple(verdicts), tuple(warnings), settings, files=files)


def _judge(
    rule: Rule,
    cell_id: str,
    candidate: Side,
    baseline: Side | None,
    pairs: dict[str, str],
    compare_fn: Callable[..., Evidence | str],
    settings: IntervalSettings,
) -> Verdict:
    cell = candidate.cells.get(cell_id)
    where = f"rule {rule.index} ({rule.name}), line {rule.line}"
    if cell is None:
        return Verdict(
            rule,
            cell_id,
            ERROR,
            f"{where}: no cell {cell_id!r} in {candidate.path} (cells: {', '.join(candidate.cells)})",
        )
    value, problem = value_of(cell, rule.metric)
    if value is None:
        return Verdict(rule, cell_id, ERROR, f"{where}: {problem}")
    statuses: list[tuple[str, str, Evidence | None, int | None]] = []
    base_id = None
    if rule.min is not None or rule.max is not None:
        interval = None
        if rule.require_interval:
            found = value_interval(cell, candidate.states.get(cell_id), rule.metric, settings, candidate.state_problem)
            if isinstance(found, str):
                return Verdict(rule, cell_id, ERROR, f"{where}: require_interval: {found}", value=value)
            interval = found
        status, reason = bound_verdict(rule, value, interval)
        statuses.append((status, reason, interval, None))
    if rule.is_regression:
        assert baseline is not None  # run_gate refuses regression rules without one
        base_id = pairs[cell_id]
        base_cell = baseline.cells[base_id]
        _, base_problem = value_of(base_cell, rule.metric)
        if base_problem is not None:
            return Verdict(
                rule,
                cell_id,
                ERROR,
                f"{where}: baseline {baseline.path}: {base_problem}",
                value=value,
                baseline_cell=base_id,
            )
        problem = candidate.state_problem or baseline.state_problem
        # Positional: tests and callers may pass any callable of these arguments.
        found = compare_fn(
            base_cell, baseline.states.get(base_id), cell, candidate.states.get(cell_id), rule.metric, settings, problem
        )
        if isinstance(found, str):
            return Verdict(rule, cell_id, ERROR, f"{where}: {found}", value=value, baseline_cell=base_id)
        status, reason, more = regression_verdict(rule, found)
        statuses.append((status, reason, found, more))
    # A rule with both bounds and a tolerance: the worst part decides and explains.
    order = (ERROR, FAIL, INCONCLUSIVE, PASS)
    status, reason, evidence, more = min(statuses, key=lambda s: order.index(s[0]))
    if len(statuses) > 1:
        reason = "; ".join(r for s, r, _, _ in statuses if s == status)
    if evidence is not None and evidence.note:
        reason += f" (interval: {evidence.note})"  # e.g. resting on fewer prompts than its coverage was checked at
    return Verdict(
        rule, cell_id, status, reason, value=value, baseline_cell=base_id, evidence=evidence, more_images=more
    )
