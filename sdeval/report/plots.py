"""Plots of swept settings (matplotlib, Agg), inlined in the page as PNG data URIs: no script, no request."""

from __future__ import annotations

import base64
import io
from collections import defaultdict
from typing import Any

from sdeval.report.formatting import as_number
from sdeval.report.model import Cell, Column, Mark

MAX_PANELS = 6  # metrics plotted against one swept setting


def swept_keys(cells: list[Cell]) -> list[str]:
    """Setting keys with a numeric value that differs between cells."""
    keys: dict[str, set[float]] = defaultdict(set)
    for cell in cells:
        for key, value in cell.values.items():
            number = as_number(value)
            if number is not None:
                keys[key].add(number)
    return [key for key, seen in keys.items() if len(seen) > 1]


#: Where a point's label may go, nearest first: (dx, dy) in points from the point, and the text's alignment there.
_PLACES = [
    (dx * scale, dy * scale, ha, va)
    for scale in (1, 2, 3)
    for dx, dy, ha, va in (
        (4, 4, "left", "bottom"), (4, -4, "left", "top"), (-4, 4, "right", "bottom"), (-4, -4, "right", "top"),
        (0, 6, "center", "bottom"), (0, -6, "center", "top"), (6, 0, "left", "center"), (-6, 0, "right", "center"),
    )
]  # fmt: skip
_MARKER_PT = 6.0  # matplotlib's default marker size, in points


def _overlap(a: Any, b: Any) -> float:
    """The area two display boxes share."""
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(width, 0.0) * max(height, 0.0)


def label_points(figure: Any, axes: Any, points: list[tuple[float, float, str]], fontsize: float = 8) -> list[Any]:
    """Annotate each (x, y, text) where the text covers no other label and no marker: the first free place of a
    few rings around the point, else the least covered one. Points close together (two checkpoints at one
    setting) get labels that can be read. The axes' limits must be final (every line drawn)."""
    from matplotlib.transforms import Bbox  # matplotlib: only when a plot is drawn, not with the CLI

    axes.autoscale_view()
    renderer = figure.canvas.get_renderer()
    half = _MARKER_PT / 2 * figure.dpi / 72
    centres = axes.transData.transform([(x, y) for x, y, _ in points]) if points else []
    taken = [Bbox.from_extents(cx - half, cy - half, cx + half, cy + half) for cx, cy in centres]
    notes = []
    for x, y, text in points:
        best: tuple[float, Any, Any] | None = None
        for dx, dy, ha, va in _PLACES:
            note = axes.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), ha=ha, va=va,
                                 fontsize=fontsize)  # fmt: skip
            box = note.get_window_extent(renderer)
            covered = sum(_overlap(box, other) for other in taken)
            if best is None or covered < best[0]:
                if best is not None:
                    best[1].remove()
                best = (covered, note, box)
            else:
                note.remove()
            if covered == 0:
                break
        assert best is not None
        taken.append(best[2])
        notes.append(best[1])
    return notes


def figure_png(figure: Any) -> str:
    import matplotlib.pyplot as plt  # matplotlib: only when a plot is drawn

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _lines(cells: list[Cell], key: str) -> dict[str, list[Cell]]:
    """Cells on one line: the same checkpoint and the same other settings, ordered by the swept value."""
    lines: dict[str, list[Cell]] = defaultdict(list)
    for cell in cells:
        if as_number(cell.values.get(key)) is None:
            continue
        others = ", ".join(f"{k}={v}" for k, v in sorted(cell.values.items()) if k != key and k in _varying(cells))
        lines[cell.checkpoint + (f" ({others})" if others else "")].append(cell)
    for members in lines.values():
        members.sort(key=lambda c: float(c.values[key]))
    return lines


def _varying(cells: list[Cell]) -> set[str]:
    seen: dict[str, set[str]] = defaultdict(set)
    for cell in cells:
        for k, v in cell.values.items():
            seen[k].add(repr(v))
    return {k for k, values in seen.items() if len(values) > 1}


def panel_columns(cells: list[Cell], columns: list[Column], table: dict[str, dict[str, Mark]]) -> list[Column]:
    """The columns drawn as panels: those with a value in some cell, at most MAX_PANELS."""
    return [c for c in columns if any(table[cell.label].get(c.key) and table[cell.label][c.key].value is not None
                                      for cell in cells)][:MAX_PANELS]  # fmt: skip


def panel_grid(n: int) -> tuple[Any, Any]:
    """A figure of `n` panels, three to a row."""
    import matplotlib.pyplot as plt  # matplotlib: only when a plot is drawn

    n_cols = min(3, n)
    n_rows = (n + n_cols - 1) // n_cols
    return plt.subplots(n_rows, n_cols, figsize=(4.2 * n_cols, 3.2 * n_rows), squeeze=False)


def finish_panels(figure: Any, grid: Any, panels: list[Column], xlabel: str) -> None:
    """Each panel titled by its metric and direction, unused panels hidden, one legend below them all."""
    for axes, column in zip(grid.flat, panels, strict=False):
        better = {"higher": " ↑", "lower": " ↓"}.get(column.direction or "", "")
        axes.set_title(column.label + better, fontsize=10)
        axes.set_xlabel(xlabel)
        axes.grid(alpha=0.3)
    for axes in list(grid.flat)[len(panels) :]:
        axes.set_visible(False)
    handles, names = grid.flat[0].get_legend_handles_labels()
    if handles:
        figure.legend(handles, names, loc="lower center", ncol=min(4, len(names)), fontsize=8,
                      bbox_to_anchor=(0.5, -0.02 - 0.03 * (len(names) // 4)))  # fmt: skip
    figure.tight_layout(rect=(0, 0.06, 1, 1))


def _plotted(cells: list[Cell], columns: list[Column], table: dict[str, dict[str, Mark]]) -> list[Column]:
    """The columns the plots draw: the trade-off's pair and the panels (those with a value, at most MAX_PANELS)."""
    by_key = {c.key: c for c in columns}
    lower = by_key.get("fid") or next((c for c in columns if c.direction == "lower"), None)
    higher = by_key.get("clip") or next((c for c in columns if c.direction == "higher"), None)
    panels = panel_columns(cells, columns, table)
    return list({c.key: c for c in [*([lower, higher] if lower and higher else []), *panels]}.values())


def sweep_plots(cells: list[Cell], columns: list[Column], table: dict[str, dict[str, Mark]]) -> list[dict[str, Any]]:
    """The plots of swept settings, drawn separately for each run and each set of cells comparable on every metric
    plotted: cells whose protocols differ in a field that moves a plotted metric never share an axis, and cells of
    different runs (even of the same checkpoint) are never one line. A title names the page's protocol groups of
    its cells where the plotted metrics split them."""
    keys = [c.key for c in _plotted(cells, columns, table)]
    parts: dict[tuple[str, tuple[int, ...]], list[Cell]] = defaultdict(list)
    for cell in cells:
        parts[(cell.run, tuple(cell.groups.get(key, cell.group) for key in keys))].append(cell)
    several_runs = len({run for run, _ in parts}) > 1
    several_groups = len({groups for _, groups in parts}) > 1
    plots = []
    for (run, _), members in parts.items():
        where = [f"run {run}"] if several_runs else []
        if several_groups:
            numbers = sorted({c.group + 1 for c in members})
            where.append(("protocol group " if len(numbers) == 1 else "protocol groups ") + "+".join(map(str, numbers)))
        plots += _part_plots(members, columns, table, f" ({', '.join(where)})" if where else "")
    return plots


def _part_plots(
    cells: list[Cell], columns: list[Column], table: dict[str, dict[str, Mark]], suffix: str
) -> list[dict[str, Any]]:
    """Per swept setting of comparable cells of one run: the trade-off of a lower-is-better and a higher-is-better
    metric (FID against CLIP score where both exist), one line per checkpoint; and each metric against the
    setting, with intervals. `suffix` names the run and group in the titles."""
    # matplotlib: only when a plot is drawn, not with the CLI; its headless backend before pyplot loads
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # matplotlib: when a plot is drawn

    plots = []
    by_key = {c.key: c for c in columns}
    labels = [c.label for c in cells]
    for key in swept_keys(cells):
        lines = _lines(cells, key)
        lower = by_key.get("fid") or next((c for c in columns if c.direction == "lower"), None)
        higher = by_key.get("clip") or next((c for c in columns if c.direction == "higher"), None)
        if lower is not None and higher is not None:
            figure, axes = plt.subplots(figsize=(6.4, 4.4))
            annotations: list[tuple[float, float, str]] = []  # each point's setting value, placed once all are drawn
            for name, members in lines.items():
                points = [
                    (table[c.label][higher.key].value, table[c.label][lower.key].value, c.values[key])
                    for c in members
                    if higher.key in table[c.label] and lower.key in table[c.label]
                ]
                points = [(x, y, value) for x, y, value in points if x is not None and y is not None]
                if not points:
                    continue
                axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
                annotations += [(x, y, f"{value:g}") for x, y, value in points]
            label_points(figure, axes, annotations)
            axes.set_xlabel(f"{higher.label} (higher is better)")
            axes.set_ylabel(f"{lower.label} (lower is better)")
            axes.set_title(f"{lower.label} against {higher.label} over {key}{suffix}")
            axes.grid(alpha=0.3)
            if axes.lines:
                axes.legend(fontsize=8)
                title = f"Trade-off over {key}{suffix}"
                plots.append({"key": key, "title": title, "cells": labels, "src": figure_png(figure)})
            else:
                plt.close(figure)
        panels = panel_columns(cells, columns, table)
        if not panels:
            continue
        figure, grid = panel_grid(len(panels))
        for axes, column in zip(grid.flat, panels, strict=False):
            for name, members in lines.items():
                marks = [(float(c.values[key]), table[c.label].get(column.key)) for c in members]
                found = [(x, m.value, m) for x, m in marks if m is not None and m.value is not None]
                if not found:
                    continue
                xs, ys = [x for x, _, _ in found], [y for _, y, _ in found]
                low = [y - m.low if m.low is not None else 0.0 for _, y, m in found]
                high = [m.high - y if m.high is not None else 0.0 for _, y, m in found]
                axes.errorbar(xs, ys, yerr=[low, high], marker="o", capsize=3, label=name)
        finish_panels(figure, grid, panels, key)
        title = ("Image-to-image strength sweep" if key == "strength" else f"Metrics over {key}") + suffix
        plots.append({"key": key, "title": title, "cells": labels, "src": figure_png(figure)})
    return plots
