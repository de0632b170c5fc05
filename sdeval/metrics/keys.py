"""Result keys as rules, tables and reports name them: `fid`, or one part of a result, `adherence.counting`.

What a key is (direction, range, interval method, parts) is declared once in the registry; this module reads a
results cell through those declarations, so no caller needs to know which metrics have parts or where they keep
them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sdeval.core.errors import SdevalError
from sdeval.metrics import registry
from sdeval.metrics.registry import Direction, ResultKey


@dataclass(frozen=True)
class KeyRef:
    """A declared result key, or one named part of it (`part` set: `adherence.counting`)."""

    result: ResultKey
    part: str | None = None

    @property
    def name(self) -> str:
        return self.result.key if self.part is None else f"{self.result.key}.{self.part}"

    @property
    def label(self) -> str:
        return self.result.label if self.part is None else f"{self.result.label}: {self.part}"

    @property
    def direction(self) -> Direction:
        return self.result.direction

    @property
    def range(self) -> tuple[float | None, float | None]:
        return self.result.range


def lookup(name: str) -> KeyRef | None:
    """The key `name` names: a result key, or KEY.PART of a key that declares parts (None: neither)."""
    declared = registry.result_key(name)
    if declared is not None:
        return KeyRef(declared)
    head, dot, part = name.partition(".")
    declared = registry.result_key(head) if dot and part else None
    if declared is not None and declared.parts is not None:
        return KeyRef(declared, part)
    return None


def known_names() -> list[str]:
    """Every key a rule may name: each result key, and KEY.PART for keys with parts."""
    names = []
    for result in registry.result_keys():
        names.append(result.key)
        if result.parts is not None:
            names.append(f"{result.key}.{result.parts.column.upper()}")
    return names


def value_of(cell: dict[str, Any], name: str) -> tuple[float | None, str | None]:
    """(the value `name` reads in a results cell, None), or (None, why there is none)."""
    metrics = cell["metrics"]
    ref = lookup(name)
    head = ref.result.key if ref is not None else name
    entry = metrics.get(head)
    if entry is None:
        listed = ", ".join(metrics) or "none"
        if head == name:
            return None, f"{name} is not in the results of cell {cell['id']} (metrics: {listed})"
        return None, f"{name}: no {head} in cell {cell['id']} (metrics: {listed})"
    if entry.get("value") is None:
        what = name if head == name else f"{name}: {head}"
        return None, f"{what} was not computed in cell {cell['id']}: {entry.get('skipped', 'no value')}"
    if ref is None or ref.part is None:
        return float(entry["value"]), None
    parts = ref.result.parts
    assert parts is not None  # lookup gives a part only for keys that declare parts
    found = entry.get(parts.field) or {}
    if ref.part not in found:
        listed = ", ".join(found) or "none"
        return None, f"{name}: no {parts.column} {ref.part!r} in cell {cell['id']} ({parts.field}: {listed})"
    return float(found[ref.part][parts.value]), None


def parts_of(cell: dict[str, Any], key: str) -> list[str]:
    """The names of the parts a cell's entry of `key` holds (sorted; [] for a key without parts)."""
    declared = registry.result_key(key)
    entry = cell["metrics"].get(key) or {}
    if declared is None or declared.parts is None:
        return []
    return sorted(entry.get(declared.parts.field) or {})


def with_parts(cells: list[dict[str, Any]]) -> list[str]:
    """Every key of the cells' metrics, each followed by its parts (KEY.PART) found in any of them."""
    out = []
    for key in dict.fromkeys(k for cell in cells for k in cell["metrics"]):
        out.append(key)
        out += [f"{key}.{part}" for part in sorted({p for cell in cells for p in parts_of(cell, key)})]
    return out


def part_view(cell: dict[str, Any], name: str) -> tuple[dict[str, Any], str]:
    """(the cell as the statistics should see `name`, the result key to ask them for): a part becomes a cell of the
    part's images whose value is the part's, so it is resampled exactly as the whole key would be."""
    ref = lookup(name)
    if ref is None or ref.part is None:
        return cell, name
    parts = ref.result.parts
    assert parts is not None
    rows = [r for r in cell.get("per_image", []) if (r.get(parts.column) or parts.default) == ref.part]
    value, _ = value_of(cell, name)
    return {**cell, "per_image": rows, "metrics": {ref.result.key: {"value": value}}}, ref.result.key


# -- values a results file may hold ---------------------------------------------------------------------------------

_SLACK = 1e-6  # float rounding at a bound (a cosine of 1.0000001) is not a hand-edited value


def _outside(value: float, bounds: tuple[float | None, float | None]) -> bool:
    floor, ceiling = bounds
    return (floor is not None and value < floor - _SLACK * max(1.0, abs(floor))) or (
        ceiling is not None and value > ceiling + _SLACK * max(1.0, abs(ceiling))
    )


def _bounds_text(declared: ResultKey) -> str:
    floor, ceiling = ("" if b is None else f"{b:g}" for b in declared.range)
    return f"[{floor}, {ceiling}]"


def value_problem(document: dict[str, Any]) -> str | None:
    """`FIELD: what is wrong` for the first value a results document could not have been given by sdeval: a value
    (or a part's) outside its key's declared range, a negative spread, an interval whose low exceeds its high or
    that lies outside the range, a level outside (0, 1). None when every value is possible."""
    for i, cell in enumerate(document.get("cells") or []):
        for key, entry in (cell.get("metrics") or {}).items():
            declared = registry.result_key(key)
            if declared is None or not isinstance(entry, dict):
                continue
            where = f"cells[{i}].metrics.{key}"
            value = entry.get("value")
            if isinstance(value, int | float) and declared.strict_range and _outside(value, declared.range):
                return f"{where}.value: {value:g} is outside the range of {key} {_bounds_text(declared)}"
            std = entry.get("std")
            if isinstance(std, int | float) and std < 0:
                return f"{where}.std: {std:g} is negative"
            problem = _interval_problem(entry.get("interval"), declared)
            if problem is not None:
                return f"{where}.interval: {problem}"
            parts = declared.parts
            found = entry.get(parts.field) if parts is not None else None
            if parts is None or not isinstance(found, dict):
                continue
            for name, part in found.items():
                number = part.get(parts.value) if isinstance(part, dict) else None
                if isinstance(number, int | float) and _outside(number, declared.range):
                    return (
                        f"{where}.{parts.field}.{name}.{parts.value}: {number:g} is outside the range of {key} "
                        f"{_bounds_text(declared)}"
                    )
    return None


def _interval_problem(interval: Any, declared: ResultKey) -> str | None:
    if not isinstance(interval, dict):
        return None
    low, high, level = interval.get("low"), interval.get("high"), interval.get("level")
    if isinstance(level, int | float) and not 0 < level < 1:
        return f"level {level:g} is not between 0 and 1"
    if not (isinstance(low, int | float) and isinstance(high, int | float)):
        return None
    if low > high:
        return f"low {low:g} exceeds high {high:g}"
    if _outside(low, declared.range) or _outside(high, declared.range):
        return f"[{low:g}, {high:g}] leaves the range of {declared.key} {_bounds_text(declared)}"
    return None


def check_values(document: dict[str, Any], path: Any) -> dict[str, Any]:
    """`document`, or SdevalError `PATH: FIELD: problem` when it holds a value sdeval could not have written
    (value_problem): a hand-edited file is refused, never shown or gated as if it were a result."""
    problem = value_problem(document)
    if problem is not None:
        raise SdevalError(f"{path}: {problem}")
    return document
