"""Build the report: read results files, compute intervals and significance marks, make thumbnails and plots,
and render `index.html` (self-contained, offline) and `summary.md` from the Jinja2 templates beside this file."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import importlib.resources
import json
import math
import os
import shutil
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sdeval import stats
from sdeval.core.atomic import check_output_folder, write_text
from sdeval.core.errors import SdevalError
from sdeval.core.textfiles import json_problem, read_user_text
from sdeval.metrics import registry
from sdeval.metrics.keys import check_values
from sdeval.metrics.registry import Bootstrap, ResultKey
from sdeval.report.images import make_thumbnails
from sdeval.report.plots import sweep_plots
from sdeval.results.document import load_results
from sdeval.results.protocol import binds, flatten, is_informative
from sdeval.stats.settings import DEFAULT_LEVEL, IntervalSettings, for_pair

N_GRID_PROMPTS = 6  # prompts in the side-by-side grid
N_WORST = 5  # worst prompts shown per checkpoint
N_WORST_IMAGES = 4  # images shown per worst prompt
NEAR_ZERO = 1e-12  # a value this close to 0 is rounding (a diversity of 1.48e-16 from identical images): shown as 0


@dataclass
class ReportOptions:
    """What `sdeval report` was asked for."""

    title: str = "sdeval report"
    gate: str | os.PathLike[str] | None = None
    # None: as the results record (score --ci), else the defaults: one interval per cell whoever shows it.
    level: float | None = None
    replicates: int | None = None
    seed: int | None = None
    quiet: bool = False
    labels: tuple[str, ...] = ()  # one run label per results file, in order; empty: derived from the paths


@dataclass
class Cell:
    """One cell of one results file, as the report shows it."""

    label: str  # unique across the report: the cell id, prefixed by its run's label when there are several runs
    run: str  # the label of the results file it came from (unique across the report)
    source: str  # that results file
    data: dict[str, Any]
    state: Any  # sdeval.stats.CellState, or None: no feature state
    checkpoint: str
    setting: str
    values: dict[str, Any]
    images_root: Path | None
    group: int = 0  # its protocol group over every metric shown (cells in one group are comparable on all)
    groups: dict[str, int] = field(default_factory=dict)  # its protocol group per result key shown


@dataclass
class Column:
    key: str
    label: str
    direction: str | None  # "higher", "lower", or None when the registry does not know the key


@dataclass
class Mark:
    """A table entry: the value, its interval, and how it compares with the best of its column."""

    value: float | None
    text: str
    low: float | None = None
    high: float | None = None
    interval_note: str | None = None  # why there is no interval, or how to read the one there is
    status: str = ""  # best, tie (not significantly different from the best), worse, ncmp, or ""
    p_adjusted: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _fmt(value: float | None, digits: int = 4) -> str:
    """A number as tables show it: 4 significant digits, 0 for rounding noise around 0, "–" for none."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return "0" if abs(value) < NEAR_ZERO else f"{value:.{digits}g}"


def _bound(value: float | None) -> str:
    """An interval's end: 3 significant digits (it is less certain than the value), so one fits a narrow column."""
    return _fmt(value, 3)


def _signed(value: float) -> str:
    """A difference as tables show it: with its sign, except 0 (rounding noise included)."""
    return "0" if abs(value) < NEAR_ZERO else f"{value:+.4g}"


def _sha256(path: Path) -> str | None:
    """The sha256 of a results file, by which a gate verdict names the file it checked (None: unreadable)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _resolve_root(root: str, results_path: Path) -> Path | None:
    """The scored images' folder: as recorded, else relative to the results file (a report built elsewhere)."""
    candidates = [Path(root)] if Path(root).is_absolute() else [Path.cwd() / root, results_path.parent / root]
    return next((c for c in candidates if c.is_dir()), None)


def run_labels(paths: list[Path]) -> list[str]:
    """A short, unique label per results file: its name without suffix; where those clash, the folders above it
    (as few as make every label unique), alone when every file has the same name (`a/results.json`,
    `b/results.json`: `a`, `b`). The same file given twice is an error."""
    first: dict[str, Path] = {}
    for given in paths:
        real = os.path.realpath(given)
        if real in first:
            raise SdevalError(f"report: the same results file was given twice: {first[real]} and {given}")
        first[real] = given
    # Labels come from the paths as given (made absolute), not from where a link points: `latest/` stays `latest`.
    absolute = [Path(os.path.abspath(p)) for p in paths]
    stems = [p.stem for p in absolute]
    if len(set(stems)) == len(stems):
        return stems
    same_name = len(set(stems)) == 1  # every bench writes results.json: the folders alone tell them apart
    for depth in range(1, max(len(p.parts) for p in absolute)):
        labels = []
        for path in absolute:
            folders = list(path.parent.parts[1:][-depth:])  # without the root
            labels.append("/".join(folders if same_name and folders else [*folders, path.stem]))
        if len(set(labels)) == len(labels):
            return labels
    return [str(p) for p in absolute]  # names that differ only in their suffix


def _given_labels(labels: tuple[str, ...], n_files: int) -> list[str]:
    """--label, checked: one per results file, non-empty, no two the same."""
    if len(labels) != n_files:
        raise SdevalError(
            f"--label: {len(labels)} given for {n_files} results file{'s' if n_files != 1 else ''} "
            "(give one per results file, in order, or none)"
        )
    for label in labels:
        if not label.strip():
            raise SdevalError("--label: a label is empty")
    repeated = [label for label, n in Counter(labels).items() if n > 1]
    if repeated:
        raise SdevalError(f"--label: {repeated[0]!r} is given twice (each run needs its own label)")
    return list(labels)


def load_cells(paths: list[Path], options: ReportOptions) -> tuple[list[Cell], list[dict[str, Any]]]:
    """Every cell of every results file, labelled uniquely, with its feature state where there is one."""
    runs = run_labels(paths)  # refuses the same file twice, with or without --label
    if options.labels:
        runs = _given_labels(options.labels, len(paths))
    documents, cells = [], []
    for path, run in zip(paths, runs, strict=True):
        document = check_values(load_results(path), path)
        documents.append(
            {"path": str(path), "name": path.name, "label": run, "document": document, "sha256": _sha256(path)}
        )
        states: dict[str, Any] = {}
        if (document.get("state") or {}).get("path"):
            try:
                states = stats.load_cell_states(path, document)
            except (SdevalError, OSError) as err:
                print(f"report: {path.name}: feature state not used ({err})", file=sys.stderr)
        root = _resolve_root(document["images"]["root"], path)
        for cell in document["cells"]:
            checkpoint = (cell.get("checkpoint") or {}).get("name") or (cell.get("group") or {}).get("value")
            setting = cell.get("setting") or {}
            cells.append(
                Cell(
                    # With several runs every cell names its run, so a label reads the same in every section.
                    label=f"{run}: {cell['id']}" if len(paths) > 1 else cell["id"],
                    run=run,
                    source=str(path),
                    data=cell,
                    state=states.get(cell["id"]),
                    checkpoint=checkpoint or cell["id"],
                    setting=setting.get("id") or "",
                    values=dict(setting.get("values") or {}),
                    images_root=root,
                )
            )
    repeated = [label for label, n in Counter(c.label for c in cells).items() if n > 1]
    if repeated:
        source = next(c.source for c in cells if c.label == repeated[0])
        raise SdevalError(f"report: {source}: cell {repeated[0]!r} appears twice")
    return cells, documents


# -- protocol ---------------------------------------------------------------------------------------------------


def _partition(flat: list[dict[str, Any]], fields: list[str]) -> list[int]:
    """Each cell's group (numbered by first appearance) among cells that agree on every one of `fields`."""
    seen: dict[str, int] = {}
    return [seen.setdefault(json.dumps([f.get(p) for p in fields], default=str), len(seen)) for f in flat]


def _column_groups(cells: list[Cell], columns: list[Column], flat: list[dict[str, Any]], binding: list[str]) -> None:
    """Set `cell.group` (over the binding fields that bind some column shown) and `cell.groups` (per column)."""
    shown = [p for p in binding if any(binds(p, c.key) for c in columns)]
    for cell, group in zip(cells, _partition(flat, shown), strict=True):
        cell.group = group
    for column in columns:
        for cell, group in zip(cells, _partition(flat, [p for p in binding if binds(p, column.key)]), strict=True):
            cell.groups[column.key] = group


def _split_lines(cells: list[Cell], columns: list[Column], binding: list[str]) -> list[dict[str, Any]]:
    """The columns whose cells fall into several groups, those split alike in one line: their labels, the fields
    that split them, and which page groups (1-based) each of their groups holds."""
    lines: dict[str, dict[str, Any]] = {}
    for column in columns:
        sets: dict[int, set[int]] = defaultdict(set)
        for cell in cells:
            sets[cell.groups[column.key]].add(cell.group + 1)
        if len(sets) < 2:
            continue
        fields = [p for p in binding if binds(p, column.key)]
        groups = [sorted(found) for _, found in sorted(sets.items())]
        line = lines.setdefault(json.dumps([fields, groups]), {"labels": [], "fields": fields, "groups": groups})
        line["labels"].append(column.label)
    for line in lines.values():
        names = [("group " if len(g) == 1 else "groups ") + "+".join(map(str, g)) for g in line["groups"]]
        line["between"] = " vs ".join(names)
    return list(lines.values())


def _binds_text(path: str, columns: list[Column]) -> str:
    """Which of the columns shown a binding field moves: "every metric shown", their labels, or none."""
    bound = [c.label for c in columns if binds(path, c.key)]
    if not bound:
        return "no metric shown"
    return "every metric shown" if len(bound) == len(columns) else ", ".join(bound)


def protocol_card(cells: list[Cell], columns: list[Column]) -> dict[str, Any]:
    """Group cells by binding protocol, per column: cells are comparable on a metric when they agree on every
    binding field that moves it (sdeval.results.protocol.binds), so runs that differ only in the FID reference stay one
    group for adherence. The page's groups (`cell.group`) are over the fields that bind some column shown; the
    banner names, per column, only the fields that differ and bind it. Also: the fields that differ between any
    two cells, binding ones first, with the columns each binding field moves."""
    flat = [flatten(cell.data["protocol"]) for cell in cells]
    paths = sorted({p for f in flat for p in f})
    differing = [p for p in paths if any(f.get(p) != flat[0].get(p) for f in flat[1:])]
    binding = [p for p in differing if not is_informative(p)]
    _column_groups(cells, columns, flat, binding)
    n_groups = max((c.group for c in cells), default=0) + 1
    rows = []
    for path in differing:
        kind = "informative" if is_informative(path) else "binding"
        rows.append(
            {
                "field": path,
                "kind": kind,
                "binds": _binds_text(path, columns) if kind == "binding" else "",
                "cells": [json.dumps(f.get(path), default=str) if f.get(path) is not None else "–" for f in flat],
            }
        )
    rows.sort(key=lambda row: (row["kind"] != "binding", row["field"]))
    split = _split_lines(cells, columns, binding)
    shared = {p: v for p, v in flat[0].items() if all(f.get(p) == v for f in flat[1:])} if flat else {}
    return {
        "n_groups": n_groups,
        "groups": [[c.label for c in cells if c.group == g] for g in range(n_groups)],
        "binding": [p for p in binding if any(binds(p, c.key) for c in columns)],
        "unbound": [p for p in binding if not any(binds(p, c.key) for c in columns)],
        "split": split,
        "comparable": [c.label for c in columns if len({cell.groups[c.key] for cell in cells}) == 1],
        "rows": rows,
        "shared": [(p, json.dumps(v, default=str)) for p, v in sorted(shared.items())],
    }


# -- the summary table ------------------------------------------------------------------------------------------


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
            if _better(direction, values[cell.label], values[best.label]):  # type: ignore[arg-type]
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
            mark = Mark(float(value), _fmt(value), status=status, p_adjusted=p)
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
    from scipy.stats import binomtest, fisher_exact

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
    return float(fisher_exact(table).pvalue)


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
            text = _fmt(found[parts.value])
            if "passed" in found and "n" in found:
                text += f" ({found['passed']}/{found['n']})"
            rows[cell.label][name] = Mark(found[parts.value], text, status=status, p_adjusted=p)
    return {"key": declared.key, "label": declared.label, "categories": names, "rows": rows}


def _fixed(value: Any, digits: int) -> str:
    return "–" if _number(value) is None else f"{value:.{digits}f}"


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


# -- images -----------------------------------------------------------------------------------------------------


def _image(cell: Cell, row: dict[str, Any]) -> dict[str, Any]:
    """What the page needs to show one image (its thumbnail is made later)."""
    source = cell.images_root / row["path"] if cell.images_root is not None else None
    return {"sha256": row["sha256"], "source": source, "prompt": row.get("prompt") or "", "cell": cell.label,
            "item": row["item"], "passed": row.get("adherence_passed"), "failed": row.get("adherence_failed") or [],
            "seed": row.get("seed"), "thumb": None}  # fmt: skip


def _stable(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _prompt_key(row: dict[str, Any]) -> str:
    """What gathers the images of one prompt: its prompt id, else its prompt text (a manifest without ids), else
    the image's own path (nothing is known of its prompt)."""
    if row.get("prompt_id") is not None:
        return f"id:{row['prompt_id']}"
    if row.get("prompt"):
        return f"text:{row['prompt']}"
    return f"path:{row.get('path') or row['item']}"


def _prompt_view(row: dict[str, Any]) -> dict[str, Any]:
    """How a prompt is named on the page: its id (or, with neither id nor text, the image path) and its text."""
    named = row.get("prompt_id")
    if named is None and not row.get("prompt"):
        named = row.get("path") or row["item"]
    return {"prompt_id": named, "prompt": row.get("prompt") or ""}


def _seed_order(row: dict[str, Any]) -> tuple[float, float, str]:
    """Sort key putting a prompt's first seed first."""
    index, seed = row.get("seed_index"), row.get("seed")
    return (index if index is not None else math.inf, seed if seed is not None else math.inf, row["item"])


def _contrast(rows: list[dict[str, Any]]) -> tuple[int, float]:
    """How much the cells differ on one prompt's shown images: (1 when adherence passes in some and fails in
    others, else 0; the spread of their CLIP scores)."""
    passes = {bool(r["adherence_passed"]) for r in rows if r.get("adherence_passed") is not None}
    clips = [float(r["clip_score"]) for r in rows if isinstance(r.get("clip_score"), int | float)]
    return int(len(passes) > 1), (max(clips) - min(clips)) if len(clips) > 1 else 0.0


def image_grid(cells: list[Cell]) -> list[dict[str, Any]]:
    """A few prompts at their first seed, across every cell: prompts every cell has, then those where the cells
    differ most (adherence passes in some and not others, then the widest CLIP score spread), then by a hash of
    the prompt, so the same prompts are chosen each time."""
    by_prompt: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)  # prompt key -> cell -> row
    for cell in cells:
        for row in cell.data["per_image"]:
            key = _prompt_key(row)
            seen = by_prompt[key].get(cell.label)
            if seen is None or _seed_order(row) < _seed_order(seen):
                by_prompt[key][cell.label] = row

    def rank(key: str) -> tuple[int, int, float, str]:
        differs, spread = _contrast(list(by_prompt[key].values()))
        return (-len(by_prompt[key]), -differs, -spread, _stable(key))

    grid = []
    for key in sorted(by_prompt, key=rank)[:N_GRID_PROMPTS]:
        members = by_prompt[key]
        first = next(iter(members.values()))
        grid.append(
            {
                **_prompt_view(first),
                "images": [_image(c, members[c.label]) if c.label in members else None for c in cells],
            }
        )
    return grid


def worst_prompts(cells: list[Cell]) -> list[dict[str, Any]]:
    """Per checkpoint (of each run), the prompts with the lowest adherence pass rate (else mean CLIP score), with
    their images. A prompt whose every image passed is no failure and is not listed."""
    out = []
    several_runs = len({c.run for c in cells}) > 1
    for run, checkpoint in dict.fromkeys((c.run, c.checkpoint) for c in cells):
        members = [c for c in cells if c.run == run and c.checkpoint == checkpoint]
        scores: dict[str, list[float]] = defaultdict(list)
        images: dict[str, list[tuple[Cell, dict[str, Any]]]] = defaultdict(list)
        adherence = any(r.get("adherence_passed") is not None for c in members for r in c.data["per_image"])
        column, label = ("adherence_passed", "pass rate") if adherence else ("clip_score", "mean CLIP score")
        for cell in members:
            for row in cell.data["per_image"]:
                value = row.get(column)
                if value is None:
                    continue
                key = _prompt_key(row)
                scores[key].append(float(value))
                images[key].append((cell, row))
        if not scores:
            continue
        mean = {key: sum(found) / len(found) for key, found in scores.items()}
        candidates = [key for key in scores if not adherence or mean[key] < 1.0]
        ranked = sorted(candidates, key=lambda key: (mean[key], _stable(key)))[:N_WORST]
        prompts = []
        for key in ranked:
            shown = sorted(images[key], key=lambda pair: (pair[1].get(column) or 0, pair[1]["item"]))[:N_WORST_IMAGES]
            failed = sorted({f for _, r in images[key] for f in (r.get("adherence_failed") or [])})
            prompts.append(
                {
                    **_prompt_view(shown[0][1]),
                    "score": _fmt(mean[key]),
                    "n": len(scores[key]),
                    "failed": failed[:6],
                    "images": [_image(cell, row) for cell, row in shown],
                }
            )
        out.append(
            {
                "checkpoint": f"{run}: {checkpoint}" if several_runs else checkpoint,
                "measure": label,
                "prompts": prompts,
                "show_failed": any(p["failed"] for p in prompts),  # no column of facts where none failed
                "n_prompts": len(scores),
            }
        )
    return out


# -- gate -------------------------------------------------------------------------------------------------------


GATE_FORMAT = "sdeval.gate"  # what `sdeval gate --json` writes (GateResult.to_json)
GATE_VERSION = 1
_GATE_WORDS = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE", "error": "ERROR"}


def gate_verdict(counts: Counter[str]) -> str:
    """The verdict of a gate run from its counts, in the gate's own order (GateResult.exit_code): any error makes
    it ERROR, else any failure FAIL, else anything inconclusive INCONCLUSIVE, else PASS."""
    for status in ("error", "fail", "inconclusive"):
        if counts[status]:
            return _GATE_WORDS[status]
    return "PASS"


def read_gate(path: str | os.PathLike[str], runs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The verdict file of `sdeval gate --json`: its overall verdict, counts, one readable row per (rule, cell)
    and its warnings. With several `runs` (load_cells' documents) each row's cells are labelled by their run, as
    the rest of the page labels them. Anything else is an SdevalError naming the file."""
    where = f"--gate {path}"
    try:
        text = read_user_text(path, "gate verdict")
    except SdevalError as err:
        raise SdevalError(f"--gate {err}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        raise SdevalError(f"{where}: not a gate verdict (not valid JSON: {json_problem(err)})") from None
    if not isinstance(document, dict) or document.get("format") != GATE_FORMAT:
        has_format = isinstance(document, dict) and "format" in document
        found = f"format {document['format']!r}" if has_format else "no `format` field"
        raise SdevalError(f"{where}: not a gate verdict of `sdeval gate --json` ({found}; expected {GATE_FORMAT!r})")
    version = document.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version > GATE_VERSION:
        raise SdevalError(f"{where}: gate verdict format_version {version!r}: this sdeval reads {GATE_VERSION}")
    verdicts = document.get("verdicts")
    if not isinstance(verdicts, list) or not all(
        isinstance(v, dict) and v.get("status") in _GATE_WORDS for v in verdicts
    ):
        raise SdevalError(f"{where}: not a gate verdict (`verdicts` must be a list of verdicts with a status)")
    counts = Counter(v["status"] for v in verdicts)
    levels = {
        v["interval"].get("level")
        for v in verdicts
        if isinstance(v.get("interval"), dict) and isinstance(v["interval"].get("level"), int | float)
    }
    warnings = document.get("warnings")
    runs = runs or []
    candidate, baseline = (_gated_run(document.get(k), Path(path), runs) for k in ("results", "baseline"))
    note = _gate_runs_note(document, candidate, runs)
    if len(runs) > 1:
        rows = [_gate_row(v, candidate or _only_run(v.get("cell"), runs), baseline) for v in verdicts]
    else:
        rows = [_gate_row(v) for v in verdicts]
    return {
        "name": Path(path).name,
        "verdict": gate_verdict(counts),
        "counts": {status: counts[status] for status in _GATE_WORDS},
        "rows": rows,
        # A column with no value in any row (every check an error: no value, no evidence) is not shown.
        "columns": [c for c in ("value", "evidence", "reason") if any(row[c] != "–" for row in rows)],
        "levels": sorted(levels),
        "runs_note": note,
        "warnings": [str(w) for w in warnings] if isinstance(warnings, list) else [],
    }


def _gated_run(record: Any, gate_path: Path, runs: list[dict[str, Any]]) -> str | None:
    """The label of the run that a gate file's `results` or `baseline` record names: by its path (as given to the
    gate, from the current folder or from the gate file's), else by the sha256 of the file where one run alone
    has it (copies of one file in several runs are told apart by path only)."""
    if not isinstance(record, dict):
        return None
    given = record.get("path")
    if isinstance(given, str) and given:
        places = {os.path.realpath(given), os.path.realpath(gate_path.parent / given)}
        found = [run["label"] for run in runs if os.path.realpath(run["path"]) in places]
        if len(found) == 1:
            return found[0]
    digest = record.get("sha256")
    found = [run["label"] for run in runs if digest and run.get("sha256") == digest]
    return found[0] if len(found) == 1 else None


def _only_run(cell: Any, runs: list[dict[str, Any]]) -> str | None:
    """The run that alone has a cell of this id (a gate file that does not name its results file)."""
    found = [run["label"] for run in runs if any(c["id"] == cell for c in run["document"]["cells"])]
    return found[0] if len(found) == 1 else None


def _gate_runs_note(document: dict[str, Any], candidate: str | None, runs: list[dict[str, Any]]) -> str | None:
    """What the page says when the gated results file is none of the report's runs, or is not named."""
    if candidate is not None or not runs:
        return None
    record = document.get("results")
    if isinstance(record, dict) and isinstance(record.get("path"), str):
        return f"The gate checked {record['path']}, which is not one of the results files of this report."
    if len(runs) > 1:
        return (
            "The gate file does not name the results file it checked (an older sdeval wrote it): its cells are "
            "labelled by run only where one run alone has a cell of that id."
        )
    return None


def _text(value: Any) -> str:
    """A string field of a verdict as shown: "–" when it is missing."""
    return value if isinstance(value, str) and value else "–"


def _gate_row(verdict: dict[str, Any], run: str | None = None, baseline_run: str | None = None) -> dict[str, str]:
    """One verdict as table text: numbers to 4 significant digits, a missing value as "–", never raw JSON. `run`
    and `baseline_run` label its cell and baseline cell as the page labels cells of several runs."""
    rule = verdict.get("rule")
    name = (rule.get("name") or rule.get("metric")) if isinstance(rule, dict) else rule
    cell, baseline = _text(verdict.get("cell")), verdict.get("baseline_cell")
    if run is not None:
        cell = f"{run}: {cell}"
    if isinstance(baseline, str) and baseline and baseline_run is not None:
        baseline = f"{baseline_run}: {baseline}"
    if isinstance(baseline, str) and baseline and baseline != cell:
        cell = f"{cell} (baseline {baseline})"
    evidence = "–"
    difference, estimate = _number(verdict.get("difference")), _number(verdict.get("estimate"))
    if difference is not None:
        evidence = _signed(difference)  # a regression's difference keeps its sign, as the gate writes it
    elif estimate is not None:
        evidence = _fmt(estimate)
    interval = verdict.get("interval")
    if isinstance(interval, dict):
        low, high = _number(interval.get("low")), _number(interval.get("high"))
        if low is not None and high is not None:
            span = f"[{_fmt(low)}, {_fmt(high)}]"
            evidence = span if evidence == "–" else f"{evidence} {span}"
    return {
        "status": verdict["status"],
        "verdict": _GATE_WORDS[verdict["status"]],
        "cell": cell,
        "rule": _text(name),
        "value": _fmt(_number(verdict.get("value"))),
        "evidence": evidence,
        "reason": _text(verdict.get("reason")),
    }


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


# -- rendering --------------------------------------------------------------------------------------------------


def _templates() -> tuple[Any, Any]:
    """(HTML environment with autoescape on, Markdown environment)."""
    import jinja2

    loader = jinja2.PackageLoader("sdeval.report", "templates")
    html = jinja2.Environment(loader=loader, autoescape=True, trim_blocks=True, lstrip_blocks=True)
    markdown = jinja2.Environment(loader=loader, autoescape=False, trim_blocks=True, lstrip_blocks=True)
    markdown.filters["md"] = _markdown_escape
    for env in (html, markdown):
        env.filters["num"] = _fmt
        env.filters["bound"] = _bound
    html.filters["breakable"] = _breakable
    return html, markdown


def _breakable(text: Any) -> Any:
    """A cell label, escaped, that may wrap after each `/` (`clean/g7.5-s50`): long ids keep columns narrow."""
    from markupsafe import Markup, escape

    return Markup("/<wbr>").join(escape(part) for part in str(text).split("/"))


def _markdown_escape(text: Any) -> str:
    """A user string safe in a Markdown table cell: no HTML, no column breaks, one line."""
    text = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("|", "\\|").replace("\n", " ")


def _static(name: str) -> str:
    return importlib.resources.files("sdeval.report").joinpath("static", name).read_text(encoding="utf-8")


def _make_folders(folder: Path, what: str) -> list[Path]:
    """Create `folder` and its missing parents; returns those this call created, outermost first. A folder that
    cannot be created is an SdevalError naming `what` (the folders made so far are removed again)."""
    missing = []
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    created: list[Path] = []
    for candidate in reversed(missing):
        try:
            candidate.mkdir()
        except FileExistsError:  # made meanwhile by someone else: not ours to remove
            continue
        except OSError as err:
            _remove_folders(created)
            raise SdevalError(f"{what} {folder}: cannot be created: {err.strerror or err}") from None
        created.append(candidate)
    return created


def _remove_folders(created: list[Path]) -> None:
    """Undo _make_folders after a failed report. These folders did not exist when the report started, so all
    they hold (thumbnails) is this report's own: remove them whole."""
    for folder in created:
        shutil.rmtree(folder, ignore_errors=True)


def build_report(
    results: list[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    options: ReportOptions | None = None,
    *,
    out_name: str = "report folder",
) -> dict[str, Any]:
    """Write `OUT/index.html`, `OUT/summary.md` and `OUT/thumbs/`; returns what was written and how long each
    step took (seconds). `out_name` names OUT in errors (the CLI passes `--out`). A report that fails removes the
    folders it made."""
    import time

    from markupsafe import Markup

    options = options or ReportOptions()
    if not results:
        raise SdevalError("report: give at least one results file")
    out = Path(out)
    check_output_folder(out, out_name)  # before any work
    # Made before the work too: a folder that cannot be made (where the check above cannot tell) fails at once.
    created = _make_folders(out / "thumbs", out_name)
    try:
        started = time.perf_counter()
        cells, documents = load_cells([Path(p) for p in results], options)
        if not cells:
            raise SdevalError("report: the results files have no cells")
        # One level for the page (marks are significant at 1 - level): the option's, else the first run's record.
        options = dataclasses.replace(options, level=interval_settings(cells[0], options).level)
        columns = metric_columns(cells)
        protocol = protocol_card(cells, columns)
        table, methods = summary_table(cells, columns, options)
        categories = category_table(cells, options)
        robustness = robustness_table(cells)
        grid = image_grid(cells)
        worst = worst_prompts(cells)
        plots = sweep_plots(cells, columns, table)
        footnotes = interval_footnotes(columns, table)
        gate = read_gate(options.gate, documents) if options.gate is not None else None
        prepared = time.perf_counter()
        images = [img for row in grid for img in row["images"] if img] + [
            img for block in worst for prompt in block["prompts"] for img in prompt["images"]
        ]
        thumbs = make_thumbnails(images, out / "thumbs", quiet=options.quiet)
        thumbnailed = time.perf_counter()
        context = {
            "title": options.title,
            "created_at": datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(timespec="seconds"),
            "documents": documents,
            "cells": cells,
            "columns": columns,
            "table": table,
            "footnotes": footnotes,
            "label_columns": label_columns(cells),
            "categories": categories,
            "robustness": robustness,
            "grid": grid,
            "worst": worst,
            "plots": plots,
            "protocol": protocol,
            "gate": gate,
            "level": options.level,
            "alpha": 1.0 - (options.level or DEFAULT_LEVEL),
            "intervals_text": interval_settings(cells[0], options).describe(),
            "n_comparisons": sum(1 for row in table.values() for m in row.values() if m.p_adjusted is not None),
            "methods": methods,
            "several_runs": len(documents) > 1,
        }
        html_env, md_env = _templates()
        html = html_env.get_template("report.html.j2").render(
            **context, css=Markup(_static("report.css")), js=Markup(_static("report.js"))
        )
        summary = md_env.get_template("summary.md.j2").render(**context)
        # Both rendered before either is written; each replaces the old file whole (temp file + rename).
        write_text(out / "index.html", html)
        write_text(out / "summary.md", summary)
    except BaseException:
        _remove_folders(created)
        raise
    finished = time.perf_counter()
    return {
        "index": out / "index.html",
        "summary": out / "summary.md",
        "n_cells": len(cells),
        "thumbnails": thumbs,
        "seconds": {
            "prepare": prepared - started,
            "thumbnails": thumbnailed - prepared,
            "render": finished - thumbnailed,
        },
    }
