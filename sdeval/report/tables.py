"""The report's tables: the summary (values, intervals, significance marks per column), adherence per category,
seed robustness."""

from __future__ import annotations

import dataclasses
import sys
from collections import defaultdict
from dataclasses import replace
from typing import Any

from sdeval import stats
from sdeval.core.errors import SdevalError
from sdeval.metrics import registry
from sdeval.metrics.registry import Bootstrap, ResultKey
from sdeval.report.formatting import as_number, fmt
from sdeval.report.model import Cell, Column, Mark, ReportOptions
from sdeval.stats.settings import DEFAULT_LEVEL, IntervalSettings, for_pair


def metric_columns(cells: list[Cell]) -> list[Column]:
    """Result keys with a value in some cell, in registry order (unknown keys after, as found)."""
    found = {
        key for cell in cells for key, e in cell.data["metrics"].items() if isinstance(e.get("value"), int | float)
    }
    order = [result.key for spec in registry.metrics() for result in spec.results]
    keys = [k for k in order if k in found] + sorted(found - set(order))
    columns = []
    for key in keys:
        declared = registry.result_key(key)
        if declared is None:
            columns.append(Column(key, key, None))
        else:
            columns.append(Column(key, declared.label, declared.direction.value))
    return columns


def interval_settings(cell: Cell, options: ReportOptions) -> IntervalSettings:
    """How this cell's intervals are drawn: as its results record, with what the report's options set explicitly."""
    recorded = IntervalSettings.of(cell.data)
    if options.seed is not None:
        recorded = dataclasses.replace(recorded, seed=options.seed, source="report options")
    return recorded.with_level(options.level, options.replicates, source="report options")


def _intervals(cells: list[Cell], options: ReportOptions) -> dict[str, dict[str, Any]]:
    """{cell label: {result key: interval dict}}: the document's own intervals (at the report's level), else
    computed from the state with the settings the results record."""
    out: dict[str, dict[str, Any]] = {}
    for cell in cells:
        settings = interval_settings(cell, options)
        found = {
            k: e["interval"]
            for k, e in cell.data["metrics"].items()
            if isinstance(e.get("interval"), dict) and e["interval"].get("level") == settings.level
        }
        missing = [k for k, e in cell.data["metrics"].items() if k not in found and e.get("value") is not None]
        if missing:
            try:
                computed = stats.cell_intervals(cell.data, cell.state, **settings.kwargs)
            except SdevalError as err:
                print(f"report: {cell.label}: no intervals ({err})", file=sys.stderr)
                computed = {}
            for key, interval in computed.items():
                if key not in found:
                    found[key] = interval.to_json()
        out[cell.label] = found
    return out


def _comparable(cells: list[Cell], key: str) -> list[Cell]:
    """The cells as one column compares them: each in its protocol group for that key, so marks and tests stay
    within cells whose numbers of that metric are comparable."""
    return [replace(c, group=c.groups.get(key, c.group)) for c in cells]


def _better(direction: str | None, a: float, b: float) -> bool:
    return a > b if direction == "higher" else a < b


def _mark_column(
    cells: list[Cell],
    values: dict[str, float | None],
    direction: str | None,
    p_value: Any,
    alpha: float,
) -> dict[str, tuple[str, float | None]]:
    """{cell label: (status, Holm-adjusted p)} for one column: per protocol group, the best cell, and each other
    cell against it; Holm over the comparisons of the column. `p_value(best, other)` is a p-value or None."""
    out: dict[str, tuple[str, float | None]] = {}
    if direction is None:
        return out
    tests: list[tuple[str, float]] = []
    for group in sorted({c.group for c in cells}):
        members = [c for c in cells if c.group == group and values.get(c.label) is not None]
        if not members:
            continue
        best = members[0]
        for cell in members[1:]:
            if _better(direction, values[cell.label], values[best.label]):  # pyright: ignore[reportArgumentType]  # `members` keep only labels with a value
                best = cell
        out[best.label] = ("best", None)
        for cell in members:
            if cell is best:
                continue
            if values[cell.label] == values[best.label]:
                out[cell.label] = ("tie", 1.0)
                continue
            p = p_value(best, cell)
            if p is None:  # no test for this metric here (e.g. no feature state): say so, never imply "worse"
                out[cell.label] = ("untested", None)
            else:
                tests.append((cell.label, float(p)))
    if tests:
        adjusted = stats.holm([p for _, p in tests])
        for (label, _), p in zip(tests, adjusted, strict=True):
            out[label] = ("worse" if p < alpha else "tie", float(p))
    return out


def summary_table(
    cells: list[Cell], columns: list[Column], options: ReportOptions
) -> tuple[dict[str, dict[str, Mark]], list[str]]:
    """({cell label: {result key: Mark}} with intervals and the significance marks of each column, the test
    methods used)."""
    intervals = _intervals(cells, options)
    alpha = 1.0 - (options.level or DEFAULT_LEVEL)
    comparisons: dict[tuple[str, str], dict[str, Any]] = {}
    methods: set[str] = set()

    def p_value(key: str) -> Any:
        def compute(best: Cell, other: Cell) -> float | None:
            pair = (best.label, other.label)
            if pair not in comparisons:
                try:
                    settings, _ = for_pair(interval_settings(best, options), interval_settings(other, options))
                    comparisons[pair] = stats.compare_cells(
                        best.data, best.state, other.data, other.state, keys=[c.key for c in columns],
                        **settings.kwargs,
                    )  # fmt: skip
                except SdevalError as err:
                    print(f"report: {best.label} vs {other.label}: not compared ({err})", file=sys.stderr)
                    comparisons[pair] = {}
            found = comparisons[pair].get(key)
            if found is None:
                return None
            methods.add(found.method)
            return found.p_value

        return compute

    table: dict[str, dict[str, Mark]] = {c.label: {} for c in cells}
    for column in columns:
        values = {c.label: c.data["metrics"].get(column.key, {}).get("value") for c in cells}
        marks = _mark_column(_comparable(cells, column.key), values, column.direction, p_value(column.key), alpha)
        for cell in cells:
            entry = cell.data["metrics"].get(column.key)
            if entry is None:
                table[cell.label][column.key] = Mark(None, "")
                continue
            value = entry.get("value")
            if value is None:
                table[cell.label][column.key] = Mark(None, "skipped", interval_note=entry.get("skipped"))
                continue
            interval = intervals[cell.label].get(column.key)
            status, p = marks.get(cell.label, ("", None))
            mark = Mark(float(value), fmt(value), status=status, p_adjusted=p)
            if interval:
                mark.low, mark.high = interval.get("low"), interval.get("high")
                mark.interval_note = interval.get("note")  # cut to the range, or fewer prompts than checked
            else:
                mark.interval_note = "no interval: no feature state" if cell.state is None else "no interval"
            table[cell.label][column.key] = mark
    return table, sorted(methods)


def label_columns(cells: list[Cell]) -> dict[str, bool]:
    """Whether the summary shows the checkpoint and setting columns: not where they say nothing the cell label
    does not (a generation run's cell id is `CHECKPOINT/SETTING`) or are empty (a folder scored on its own)."""
    return {
        "checkpoint": any(
            c.checkpoint != c.data["id"] and not c.data["id"].startswith(f"{c.checkpoint}/") for c in cells
        ),
        "setting": any(c.setting and not c.data["id"].endswith(f"/{c.setting}") for c in cells),
    }


def interval_footnotes(columns: list[Column], table: dict[str, dict[str, Mark]]) -> list[str]:
    """Why whole columns have no interval, said once below the table ("FID, KID: no interval: no feature state")
    rather than in each of their cells, which then leave it out."""
    notes: dict[str, list[str]] = defaultdict(list)
    for column in columns:
        marks = [row[column.key] for row in table.values() if row[column.key].value is not None]
        reasons = {m.interval_note for m in marks}
        if not marks or any(m.low is not None for m in marks) or len(reasons) != 1 or None in reasons:
            continue
        notes[str(reasons.pop())].append(column.label)
        for mark in marks:
            mark.extra["note_below"] = True
    return [f"{', '.join(labels)}: {note}." for note, labels in notes.items()]


# -- adherence per category, seed robustness ----------------------------------------------------------------------


def _part_p(best: Cell, other: Cell, declared: ResultKey, part: str) -> float | None:
    """Exact two-sided test that two cells pass one part's images equally often (the key's per-image 0/1 column):
    McNemar's on the images both cells have (paired by item), else Fisher's on the counts."""
    from scipy.stats import binomtest, fisher_exact  # scipy (2 s): only when a part's cells are compared

    parts, method = declared.parts, declared.interval
    if parts is None or not isinstance(method, Bootstrap) or method.column is None:
        return None
    column = method.column

    def rows(cell: Cell) -> dict[str, bool]:
        return {
            r["item"]: bool(r[column])
            for r in cell.data["per_image"]
            if (r.get(parts.column) or parts.default) == part and r.get(column) is not None
        }

    a, b = rows(best), rows(other)
    if not a or not b:
        return None
    shared = sorted(set(a) & set(b))
    if len(shared) >= min(len(a), len(b)) // 2 and shared:
        only_a = sum(a[i] and not b[i] for i in shared)
        only_b = sum(b[i] and not a[i] for i in shared)
        if only_a + only_b == 0:
            return 1.0
        return float(binomtest(only_a, only_a + only_b, 0.5).pvalue)
    table = [[sum(a.values()), len(a) - sum(a.values())], [sum(b.values()), len(b) - sum(b.values())]]
    # A SignificanceResult; the type inferred from scipy's source is a class of its own without the field.
    return float(fisher_exact(table).pvalue)  # pyright: ignore[reportAttributeAccessIssue]


def category_table(cells: list[Cell], options: ReportOptions) -> dict[str, Any] | None:
    """Each part of the first result key that declares parts (adherence per category) per cell, with the same
    marks as the summary table."""
    for declared in registry.result_keys():
        parts = declared.parts
        if parts is None:
            continue
        entries = {c.label: (c.data["metrics"].get(declared.key) or {}) for c in cells}
        names = sorted({k for e in entries.values() for k in (e.get(parts.field) or {})})
        if names:
            return _parts_rows(cells, declared, entries, names, options)
    return None


def _parts_rows(
    cells: list[Cell], declared: ResultKey, entries: dict[str, Any], names: list[str], options: ReportOptions
) -> dict[str, Any]:
    parts = declared.parts
    assert parts is not None
    alpha = 1.0 - (options.level or DEFAULT_LEVEL)
    rows: dict[str, dict[str, Mark]] = {c.label: {} for c in cells}
    for name in names:
        values = {label: (e.get(parts.field) or {}).get(name, {}).get(parts.value) for label, e in entries.items()}

        def p_value(best: Cell, other: Cell, name: str = name) -> float | None:
            return _part_p(best, other, declared, name)

        marks = _mark_column(_comparable(cells, declared.key), values, declared.direction.value, p_value, alpha)
        for cell in cells:
            found = (entries[cell.label].get(parts.field) or {}).get(name)
            if not found:
                rows[cell.label][name] = Mark(None, "")
                continue
            status, p = marks.get(cell.label, ("", None))
            text = fmt(found[parts.value])
            if "passed" in found and "n" in found:
                text += f" ({found['passed']}/{found['n']})"
            rows[cell.label][name] = Mark(found[parts.value], text, status=status, p_adjusted=p)
    return {"key": declared.key, "label": declared.label, "categories": names, "rows": rows}


def _fixed(value: Any, digits: int) -> str:
    return "–" if as_number(value) is None else f"{value:.{digits}f}"


def robustness_table(cells: list[Cell]) -> dict[str, Any] | None:
    """pass@k per cell (mean over prompts), from the `robustness` entries, as table text; a column with no value
    in any cell (the CLIP spread without a CLIP model) is left out."""
    entries = {
        c.label: c.data["metrics"]["robustness"]
        for c in cells
        if (c.data["metrics"].get("robustness") or {}).get("overall")
    }
    if not entries:
        return None
    ks = sorted({k for e in entries.values() for k in e["overall"].get("pass_at", {})}, key=int)
    names = [f"pass@{k}" for k in ks] + ["prompts never passed", "expected seeds to a pass", "CLIP std across seeds"]
    table = {}
    for label, entry in entries.items():
        overall = entry["overall"]
        never = entry.get("never_passed")
        table[label] = [_fixed(overall.get("pass_at", {}).get(k), 3) for k in ks] + [
            str(never) if never is not None else "–",
            _fixed(overall.get("expected_seeds"), 2),
            _fixed(overall.get("clip_std"), 3),
        ]
    shown = [i for i in range(len(names)) if any(row[i] != "–" for row in table.values())]
    return {
        "columns": [names[i] for i in shown],
        "rows": {label: [row[i] for i in shown] for label, row in table.items()},
    }
