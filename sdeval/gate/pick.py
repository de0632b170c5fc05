"""Which checkpoint to ship: a pick rule over a run's cells, its choice, and the reason, said in full.

```yaml
pick:
  maximize: adherence                                   # or minimize: KEY (one of the two)
  subject_to:
    - {metric: fid, within_interval_of_best: true}      # no worse than the best FID cell's interval allows
    - {metric: clip, min: 0.30}                         # and plain bounds
```

A cell is eligible when it meets every constraint; the pick is the eligible cell best on the objective (the
earliest step, then the first cell, among equals). `within_interval_of_best` compares a cell's value with the
interval of the best cell on that metric (its upper bound for a lower-is-better metric, its lower bound for a
higher-is-better one), so a checkpoint that is worse only by seed noise stays eligible. The intervals are the
results' own (`score --ci`), else drawn from the feature state with the settings the results record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sdeval.core.errors import ConfigError, SdevalError
from sdeval.core.suggest import check_keys, did_you_mean
from sdeval.metrics import registry
from sdeval.stats import cell_intervals
from sdeval.stats.settings import IntervalSettings

PICK_KEYS = ("maximize", "minimize", "subject_to")
CONSTRAINT_KEYS = ("metric", "within_interval_of_best", "min", "max")


@dataclass(frozen=True)
class Constraint:
    metric: str
    within_interval_of_best: bool = False
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class PickRule:
    objective: str
    maximize: bool
    constraints: tuple[Constraint, ...] = ()
    raw: Any = None

    @property
    def metrics(self) -> list[str]:
        return list(dict.fromkeys([self.objective, *(c.metric for c in self.constraints)]))


def parse_pick(raw: Any, where: str = "pick") -> PickRule:
    """A pick rule from its config mapping; every mistake names its key."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping such as {{maximize: adherence}}, got {raw!r}")
    check_keys(raw, PICK_KEYS, where + ".")
    goals = [k for k in ("maximize", "minimize") if k in raw]
    if len(goals) != 1:
        raise ConfigError(f"{where}: give exactly one of maximize: KEY or minimize: KEY")
    objective = _key(raw[goals[0]], f"{where}.{goals[0]}")
    declared = registry.result_key(objective)
    direction = None if declared is None else declared.direction.value
    if (goals[0] == "maximize") != (direction == "higher"):
        better = "higher" if direction == "higher" else "lower"
        raise ConfigError(f"{where}.{goals[0]}: {better} {objective} is better; did you mean "
                          f"{'maximize' if direction == 'higher' else 'minimize'}: {objective}?")  # fmt: skip
    items = raw.get("subject_to") or []
    if not isinstance(items, list):
        raise ConfigError(f"{where}.subject_to: expected a list of {{metric: KEY, ...}}, got {items!r}")
    constraints = []
    for i, item in enumerate(items):
        at = f"{where}.subject_to[{i}]"
        if not isinstance(item, Mapping) or "metric" not in item:
            raise ConfigError(f"{at}: expected {{metric: KEY, within_interval_of_best: true | min: X | max: X}}")
        check_keys(item, CONSTRAINT_KEYS, at + ".")
        within = item.get("within_interval_of_best", False)
        if not isinstance(within, bool):
            raise ConfigError(f"{at}.within_interval_of_best: expected true or false, got {within!r}")
        bounds = {}
        for name in ("min", "max"):
            value = item.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ConfigError(f"{at}.{name}: expected a number, got {value!r}")
            bounds[name] = None if value is None else float(value)
        if not within and bounds["min"] is None and bounds["max"] is None:
            raise ConfigError(f"{at}: says nothing: give within_interval_of_best: true, min or max")
        constraints.append(Constraint(_key(item["metric"], f"{at}.metric"), within, bounds["min"], bounds["max"]))
    return PickRule(objective, goals[0] == "maximize", tuple(constraints), raw=dict(raw))


def _key(value: Any, where: str) -> str:
    known = [key.key for key in registry.result_keys()]
    if not isinstance(value, str) or value not in known:
        raise ConfigError(f"{where}: unknown metric {value!r}{did_you_mean(str(value), known)}")
    return value


def _value(cell: dict[str, Any], key: str) -> float | None:
    value = (cell.get("metrics") or {}).get(key, {}).get("value")
    return None if value is None else float(value)


def _better(rule_max: bool, a: float, b: float) -> bool:
    return a > b if rule_max else a < b


def pick(
    document: dict[str, Any], rule: PickRule, intervals: Mapping[str, Mapping[str, Mapping[str, Any]]]
) -> dict[str, Any]:
    """The rule applied to the document's cells: `{rule, chosen, reason, candidates: [{cell, step, value,
    eligible, why_not}]}`; `intervals` maps cell id -> result key -> {low, high} (needed for
    within_interval_of_best)."""
    cells = [c for c in document.get("cells", []) if _value(c, rule.objective) is not None]
    if not cells:
        raise ConfigError(f"pick: no cell has a value of {rule.objective}")
    bounds: dict[str, tuple[float, str, str]] = {}  # metric -> (bound, best cell id, what the bound is)
    for constraint in rule.constraints:
        if not constraint.within_interval_of_best or constraint.metric in bounds:
            continue
        declared = registry.result_key(constraint.metric)
        higher = declared is not None and declared.direction.value == "higher"
        valued = [c for c in document["cells"] if _value(c, constraint.metric) is not None]
        if not valued:
            raise ConfigError(f"pick: no cell has a value of {constraint.metric}")
        best = valued[0]
        for cell in valued[1:]:
            if _better(higher, _value(cell, constraint.metric), _value(best, constraint.metric)):  # pyright: ignore[reportArgumentType]  # `valued` keeps cells with a value
                best = cell
        interval = intervals.get(best["id"], {}).get(constraint.metric)
        if not interval or interval.get("low") is None or interval.get("high") is None:
            raise ConfigError(
                f"pick: {constraint.metric} within_interval_of_best needs the interval of the best cell "
                f"({best['id']}), which has none (score with an interval, or give min/max instead)"
            )
        side = "low" if higher else "high"
        what = f"[{interval['low']:.4g}, {interval['high']:.4g}] of the best, {best['id']}"
        bounds[constraint.metric] = (float(interval[side]), best["id"], what)

    candidates = []
    for cell in cells:
        why_not = []
        for constraint in rule.constraints:
            value = _value(cell, constraint.metric)
            if value is None:
                why_not.append(f"no {constraint.metric}")
                continue
            if constraint.within_interval_of_best:
                bound, _, what = bounds[constraint.metric]
                declared = registry.result_key(constraint.metric)
                higher = declared is not None and declared.direction.value == "higher"
                if (value < bound) if higher else (value > bound):
                    why_not.append(f"{constraint.metric} {value:.4g} outside the interval {what}")
            if constraint.minimum is not None and value < constraint.minimum:
                why_not.append(f"{constraint.metric} {value:.4g} < {constraint.minimum:g}")
            if constraint.maximum is not None and value > constraint.maximum:
                why_not.append(f"{constraint.metric} {value:.4g} > {constraint.maximum:g}")
        candidates.append({
            "cell": cell["id"],
            "step": (cell.get("checkpoint") or {}).get("step"),
            "value": _value(cell, rule.objective),
            "eligible": not why_not,
            "why_not": why_not,
        })  # fmt: skip
    eligible = [c for c in candidates if c["eligible"]]
    goal = "maximize" if rule.maximize else "minimize"
    if not eligible:
        return {"rule": rule.raw, "chosen": None, "candidates": candidates,
                "reason": f"no cell meets every constraint ({len(candidates)} considered)"}  # fmt: skip
    chosen = eligible[0]
    for candidate in eligible[1:]:
        if _better(rule.maximize, candidate["value"], chosen["value"]):
            chosen = candidate
        elif candidate["value"] == chosen["value"] and (candidate["step"] or 0) < (chosen["step"] or 0):
            chosen = candidate  # among equals, the earlier step: as good, trained for less
    met = [f"{c.metric} within the interval {bounds[c.metric][2]}" for c in rule.constraints
           if c.within_interval_of_best]  # fmt: skip
    met += [f"{c.metric} >= {c.minimum:g}" for c in rule.constraints if c.minimum is not None]
    met += [f"{c.metric} <= {c.maximum:g}" for c in rule.constraints if c.maximum is not None]
    reason = (f"{chosen['cell']}: {goal} {rule.objective} = {chosen['value']:.4g}, best of {len(eligible)} eligible "
              f"of {len(candidates)} cells" + (f"; subject to {', '.join(met)}" if met else ""))  # fmt: skip
    return {"rule": rule.raw, "chosen": chosen["cell"], "reason": reason, "candidates": candidates}


def document_intervals(document: dict[str, Any], states: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each cell's intervals: the results' own, else drawn from its feature state with the settings the results
    record (as the report and the gate draw them)."""
    settings = IntervalSettings.of(document)
    out: dict[str, dict[str, Any]] = {}
    for cell in document.get("cells", []):
        found = {k: e["interval"] for k, e in cell.get("metrics", {}).items() if isinstance(e.get("interval"), dict)}
        state = states.get(cell["id"])
        if state is not None:
            try:
                drawn = cell_intervals(cell, state, **settings.kwargs)
            except SdevalError:
                drawn = {}
            for key, interval in drawn.items():
                found.setdefault(key, interval.to_json())
        out[cell["id"]] = found
    return out
