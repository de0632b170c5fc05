"""Build the report: read results files, compute intervals and significance marks, make thumbnails and plots,
and render `index.html` (self-contained, offline) and `summary.md` from the Jinja2 templates beside this file."""

from __future__ import annotations

import datetime
import hashlib
import importlib.resources
import json
import math
import os
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdeval.errors import SdevalError
from sdeval.metrics import registry
from sdeval.protocol import differences, flatten, is_informative
from sdeval.report.images import make_thumbnails
from sdeval.report.plots import sweep_plots
from sdeval.results import load_results

N_GRID_PROMPTS = 6  # prompts in the side-by-side grid
N_WORST = 5  # worst prompts shown per checkpoint
N_WORST_IMAGES = 4  # images shown per worst prompt


@dataclass
class ReportOptions:
    """What `sdeval report` was asked for."""

    title: str = "sdeval report"
    gate: str | os.PathLike[str] | None = None
    level: float = 0.95
    replicates: int = 200
    seed: int = 0
    quiet: bool = False


@dataclass
class Cell:
    """One cell of one results file, as the report shows it."""

    label: str  # unique across the report
    source: str  # the results file it came from
    data: dict[str, Any]
    state: Any  # sdeval.stats.CellState, or None: no feature state
    checkpoint: str
    setting: str
    values: dict[str, Any]
    images_root: Path | None
    group: int = 0  # its protocol group (cells in one group are comparable)


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
    interval_note: str | None = None  # why there is no interval
    status: str = ""  # best, tie (not significantly different from the best), worse, ncmp, or ""
    p_adjusted: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _stats() -> Any:
    """sdeval.stats, or None where it cannot be imported (the report then shows values without statistics)."""
    try:
        from sdeval import stats
    except ImportError:
        return None
    return stats


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.4g}"


def _resolve_root(root: str, results_path: Path) -> Path | None:
    """The scored images' folder: as recorded, else relative to the results file (a report built elsewhere)."""
    candidates = [Path(root)] if Path(root).is_absolute() else [Path.cwd() / root, results_path.parent / root]
    return next((c for c in candidates if c.is_dir()), None)


def load_cells(paths: list[Path], options: ReportOptions) -> tuple[list[Cell], list[dict[str, Any]]]:
    """Every cell of every results file, labelled uniquely, with its feature state where there is one."""
    stats = _stats()
    documents, cells = [], []
    for path in paths:
        document = load_results(path)
        documents.append({"path": str(path), "name": path.name, "document": document})
        states: dict[str, Any] = {}
        if stats is not None and (document.get("state") or {}).get("path"):
            try:
                states = stats.load_cell_states(path, document)
            except (SdevalError, OSError, ValueError, KeyError) as err:
                print(f"report: {path.name}: feature state not used ({err})", file=sys.stderr)
        root = _resolve_root(document["images"]["root"], path)
        for cell in document["cells"]:
            checkpoint = (cell.get("checkpoint") or {}).get("name") or (cell.get("group") or {}).get("value")
            setting = cell.get("setting") or {}
            cells.append(
                Cell(
                    label=cell["id"],
                    source=path.name,
                    data=cell,
                    state=states.get(cell["id"]),
                    checkpoint=checkpoint or cell["id"],
                    setting=setting.get("id") or "",
                    values=dict(setting.get("values") or {}),
                    images_root=root,
                )
            )
    counts: dict[str, int] = defaultdict(int)
    for cell in cells:
        counts[cell.label] += 1
    for cell in cells:
        if counts[cell.label] > 1:  # the same cell in several runs: name the run
            cell.label = f"{Path(cell.source).stem}: {cell.label}"
    labels = [cell.label for cell in cells]
    if len(set(labels)) < len(labels):
        raise SdevalError("report: the same results file was given twice")
    return cells, documents


# -- protocol ---------------------------------------------------------------------------------------------------


def protocol_card(cells: list[Cell]) -> dict[str, Any]:
    """Group cells by binding protocol; the fields that differ between any two cells, binding ones first."""
    groups: list[Cell] = []  # one representative per group
    for cell in cells:
        for index, first in enumerate(groups):
            if not differences(first.data["protocol"], cell.data["protocol"])[0]:
                cell.group = index
                break
        else:
            cell.group = len(groups)
            groups.append(cell)
    flat = [flatten(cell.data["protocol"]) for cell in cells]
    paths = sorted({p for f in flat for p in f})
    rows = []
    for path in paths:
        values = [f.get(path) for f in flat]
        if all(v == values[0] for v in values):
            continue
        rows.append(
            {
                "field": path,
                "kind": "informative" if is_informative(path) else "binding",
                "cells": [json.dumps(v, default=str) if v is not None else "–" for v in values],
            }
        )
    rows.sort(key=lambda row: (row["kind"] != "binding", row["field"]))
    binding = [row["field"] for row in rows if row["kind"] == "binding"]
    shared = {p: v for p, v in flat[0].items() if all(f.get(p) == v for f in flat[1:])} if flat else {}
    return {
        "n_groups": len(groups),
        "groups": [[c.label for c in cells if c.group == g] for g in range(len(groups))],
        "binding": binding,
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


def _intervals(cells: list[Cell], options: ReportOptions) -> dict[str, dict[str, Any]]:
    """{cell label: {result key: interval dict}}: the document's own intervals, else computed from the state."""
    stats = _stats()
    out: dict[str, dict[str, Any]] = {}
    for cell in cells:
        found = {k: e["interval"] for k, e in cell.data["metrics"].items() if isinstance(e.get("interval"), dict)}
        missing = [k for k, e in cell.data["metrics"].items() if k not in found and e.get("value") is not None]
        if missing and stats is not None:
            try:
                computed = stats.cell_intervals(
                    cell.data, cell.state, level=options.level, replicates=options.replicates, seed=options.seed
                )
            except (SdevalError, ValueError, KeyError) as err:
                print(f"report: {cell.label}: no intervals ({err})", file=sys.stderr)
                computed = {}
            for key, interval in computed.items():
                if key not in found and interval is not None:
                    found[key] = interval.to_json() if hasattr(interval, "to_json") else interval
        out[cell.label] = found
    return out


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
    stats = _stats()
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
        adjusted = stats.holm([p for _, p in tests]) if stats is not None else _holm([p for _, p in tests])
        for (label, _), p in zip(tests, adjusted, strict=True):
            out[label] = ("worse" if p < alpha else "tie", float(p))
    return out


def _holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment (used only where sdeval.stats is not importable)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def summary_table(
    cells: list[Cell], columns: list[Column], options: ReportOptions
) -> tuple[dict[str, dict[str, Mark]], list[str]]:
    """({cell label: {result key: Mark}} with intervals and the significance marks of each column, the test
    methods used)."""
    stats = _stats()
    intervals = _intervals(cells, options)
    alpha = 1.0 - options.level
    comparisons: dict[tuple[str, str], dict[str, Any]] = {}
    methods: set[str] = set()

    def p_value(key: str) -> Any:
        def compute(best: Cell, other: Cell) -> float | None:
            if stats is None:
                return None
            pair = (best.label, other.label)
            if pair not in comparisons:
                try:
                    comparisons[pair] = stats.compare_cells(
                        best.data, best.state, other.data, other.state,
                        keys=[c.key for c in columns], level=options.level,
                        replicates=options.replicates, seed=options.seed,
                    )  # fmt: skip
                except (SdevalError, ValueError, KeyError) as err:
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
        marks = _mark_column(cells, values, column.direction, p_value(column.key), alpha)
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
            else:
                mark.interval_note = "no interval: no feature state" if cell.state is None else "no interval"
            table[cell.label][column.key] = mark
    return table, sorted(methods)


# -- adherence per category, seed robustness ----------------------------------------------------------------------


def _category_p(best: Cell, other: Cell, category: str) -> float | None:
    """Exact two-sided test that two cells pass one category's prompts equally often: McNemar's on the images
    both cells have (paired by item), else Fisher's on the counts."""
    from scipy.stats import binomtest, fisher_exact

    def rows(cell: Cell) -> dict[str, bool]:
        return {
            r["item"]: bool(r["adherence_passed"])
            for r in cell.data["per_image"]
            if r.get("category") == category and r.get("adherence_passed") is not None
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
    """Adherence accuracy per category per cell, with the same marks as the summary table."""
    entries = {c.label: (c.data["metrics"].get("adherence") or {}) for c in cells}
    categories = sorted({k for e in entries.values() for k in (e.get("categories") or {})})
    if not categories:
        return None
    alpha = 1.0 - options.level
    rows: dict[str, dict[str, Mark]] = {c.label: {} for c in cells}
    for category in categories:
        values = {label: (e.get("categories") or {}).get(category, {}).get("accuracy") for label, e in entries.items()}

        def p_value(best: Cell, other: Cell, category: str = category) -> float | None:
            return _category_p(best, other, category)

        marks = _mark_column(cells, values, "higher", p_value, alpha)
        for cell in cells:
            found = (entries[cell.label].get("categories") or {}).get(category)
            if not found:
                rows[cell.label][category] = Mark(None, "")
                continue
            status, p = marks.get(cell.label, ("", None))
            text = f"{_fmt(found['accuracy'])} ({found['passed']}/{found['n']})"
            rows[cell.label][category] = Mark(found["accuracy"], text, status=status, p_adjusted=p)
    return {"categories": categories, "rows": rows}


def robustness_table(cells: list[Cell]) -> dict[str, Any] | None:
    """pass@k per cell (mean over prompts), from the `robustness` entries."""
    rows, ks = {}, set()
    for cell in cells:
        entry = cell.data["metrics"].get("robustness") or {}
        overall = entry.get("overall")
        if not overall:
            continue
        rows[cell.label] = {
            "pass_at": overall.get("pass_at", {}),
            "never_passed": entry.get("never_passed"),
            "expected_seeds": overall.get("expected_seeds"),
            "clip_std": overall.get("clip_std"),
            "n_items": overall.get("n_items"),
        }
        ks.update(overall.get("pass_at", {}))
    if not rows:
        return None
    return {"ks": sorted(ks, key=int), "rows": rows}


# -- images -----------------------------------------------------------------------------------------------------


def _image(cell: Cell, row: dict[str, Any]) -> dict[str, Any]:
    """What the page needs to show one image (its thumbnail is made later)."""
    source = cell.images_root / row["path"] if cell.images_root is not None else None
    return {"sha256": row["sha256"], "source": source, "prompt": row.get("prompt") or "", "cell": cell.label,
            "item": row["item"], "passed": row.get("adherence_passed"), "failed": row.get("adherence_failed") or [],
            "seed": row.get("seed"), "thumb": None}  # fmt: skip


def _stable(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def image_grid(cells: list[Cell]) -> list[dict[str, Any]]:
    """A few prompts (chosen by a hash of their id, so the same each time) at one seed, across every cell."""
    by_prompt: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)  # prompt id -> cell -> row
    for cell in cells:
        for row in cell.data["per_image"]:
            pid = row.get("prompt_id")
            if pid is None:
                continue
            seen = by_prompt[pid].get(cell.label)
            if seen is None or (row.get("seed_index") or 0) < (seen.get("seed_index") or 0):
                by_prompt[pid][cell.label] = row
    # Prompts every cell has come first.
    ordered = sorted(by_prompt, key=lambda pid: (-len(by_prompt[pid]), _stable(pid)))[:N_GRID_PROMPTS]
    grid = []
    for pid in sorted(ordered, key=_stable):
        members = by_prompt[pid]
        first = next(iter(members.values()))
        grid.append(
            {
                "prompt_id": pid,
                "prompt": first.get("prompt") or "",
                "images": [_image(c, members[c.label]) if c.label in members else None for c in cells],
            }
        )
    return grid


def worst_prompts(cells: list[Cell]) -> list[dict[str, Any]]:
    """Per checkpoint, the prompts with the lowest adherence pass rate (else CLIP score), with their images."""
    out = []
    checkpoints = list(dict.fromkeys(c.checkpoint for c in cells))
    for checkpoint in checkpoints:
        members = [c for c in cells if c.checkpoint == checkpoint]
        scores: dict[str, list[float]] = defaultdict(list)
        images: dict[str, list[tuple[Cell, dict[str, Any]]]] = defaultdict(list)
        adherence = any(r.get("adherence_passed") is not None for c in members for r in c.data["per_image"])
        column, label = ("adherence_passed", "pass rate") if adherence else ("clip_score", "mean CLIP score")
        for cell in members:
            for row in cell.data["per_image"]:
                pid, value = row.get("prompt_id"), row.get(column)
                if pid is None or value is None:
                    continue
                scores[pid].append(float(value))
                images[pid].append((cell, row))
        if not scores:
            continue
        ranked = sorted(scores, key=lambda pid: (sum(scores[pid]) / len(scores[pid]), _stable(pid)))[:N_WORST]
        prompts = []
        for pid in ranked:
            shown = sorted(images[pid], key=lambda pair: (pair[1].get(column) or 0, pair[1]["item"]))[:N_WORST_IMAGES]
            first = shown[0][1]
            failed = sorted({f for _, r in images[pid] for f in (r.get("adherence_failed") or [])})
            prompts.append(
                {
                    "prompt_id": pid,
                    "prompt": first.get("prompt") or "",
                    "score": _fmt(sum(scores[pid]) / len(scores[pid])),
                    "n": len(scores[pid]),
                    "failed": failed[:6],
                    "images": [_image(cell, row) for cell, row in shown],
                }
            )
        out.append({"checkpoint": checkpoint, "measure": label, "prompts": prompts})
    return out


# -- gate -------------------------------------------------------------------------------------------------------


def read_gate(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The verdict of `sdeval gate --json`, shown as it is: scalar fields, then each list of rows as a table."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise SdevalError(f"--gate {path}: cannot read the gate verdict ({err})") from None
    if not isinstance(document, dict):
        raise SdevalError(f"--gate {path}: not a gate verdict (a JSON object was expected)")
    fields = [(k, v) for k, v in document.items() if not isinstance(v, dict | list)]
    tables = []
    for key, value in document.items():
        if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
            headers = list(dict.fromkeys(h for r in value for h in r))
            tables.append(
                {
                    "name": key,
                    "headers": headers,
                    "rows": [[_gate_value(r.get(h)) for h in headers] for r in value],
                }
            )
    verdict = document.get("verdict", document.get("passed", document.get("ok")))
    return {"name": Path(path).name, "verdict": verdict, "fields": fields, "tables": tables}


def _gate_value(value: Any) -> str:
    if isinstance(value, float):
        return _fmt(value)
    return value if isinstance(value, str) else json.dumps(value, default=str)


# -- rendering --------------------------------------------------------------------------------------------------


def _templates() -> tuple[Any, Any]:
    """(HTML environment with autoescape on, Markdown environment)."""
    import jinja2

    loader = jinja2.PackageLoader("sdeval.report", "templates")
    html = jinja2.Environment(loader=loader, autoescape=True, trim_blocks=True, lstrip_blocks=True)
    markdown = jinja2.Environment(loader=loader, autoescape=False, trim_blocks=True, lstrip_blocks=True)
    markdown.filters["md"] = _markdown_escape
    return html, markdown


def _markdown_escape(text: Any) -> str:
    """A user string safe in a Markdown table cell: no HTML, no column breaks, one line."""
    text = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("|", "\\|").replace("\n", " ")


def _static(name: str) -> str:
    return importlib.resources.files("sdeval.report").joinpath("static", name).read_text(encoding="utf-8")


def build_report(
    results: list[str | os.PathLike[str]], out: str | os.PathLike[str], options: ReportOptions | None = None
) -> dict[str, Any]:
    """Write `OUT/index.html`, `OUT/summary.md` and `OUT/thumbs/`; returns what was written and how long each
    step took (seconds)."""
    import time

    from markupsafe import Markup

    options = options or ReportOptions()
    if not results:
        raise SdevalError("report: give at least one results file")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    cells, documents = load_cells([Path(p) for p in results], options)
    if not cells:
        raise SdevalError("report: the results files have no cells")
    protocol = protocol_card(cells)
    columns = metric_columns(cells)
    table, methods = summary_table(cells, columns, options)
    categories = category_table(cells, options)
    robustness = robustness_table(cells)
    grid = image_grid(cells)
    worst = worst_prompts(cells)
    plots = sweep_plots(cells, columns, table)
    gate = read_gate(options.gate) if options.gate is not None else None
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
        "categories": categories,
        "robustness": robustness,
        "grid": grid,
        "worst": worst,
        "plots": plots,
        "protocol": protocol,
        "gate": gate,
        "level": options.level,
        "alpha": 1.0 - options.level,
        "n_comparisons": sum(1 for row in table.values() for m in row.values() if m.p_adjusted is not None),
        "statistics": _stats() is not None,
        "methods": methods,
    }
    html_env, md_env = _templates()
    html = html_env.get_template("report.html.j2").render(
        **context, css=Markup(_static("report.css")), js=Markup(_static("report.js"))
    )
    (out / "index.html").write_text(html, encoding="utf-8")
    (out / "summary.md").write_text(md_env.get_template("summary.md.j2").render(**context), encoding="utf-8")
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
