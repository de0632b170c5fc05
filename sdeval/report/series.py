"""A training run in the report: each metric against training step with its interval band, the best checkpoint per
metric and those not significantly different from it (the summary table's Holm-corrected tests), and the pick."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sdeval.report.model import Cell, Column, Mark
from sdeval.report.plots import figure_png, finish_panels, panel_columns, panel_grid

# How a point shows its column mark: the best, not significantly different from it, worse, not tested.
_MARKERS = {"best": ("*", 13, True), "tie": ("o", 6, True), "worse": ("o", 6, False)}


def step_of(cell: Cell) -> int | None:
    step = (cell.data.get("checkpoint") or {}).get("step")
    return step if isinstance(step, int) else None


def _lines(cells: list[Cell]) -> dict[str, list[Cell]]:
    """Cells of one training run at one setting, ordered by step (a run label is added when there are several)."""
    lines: dict[str, list[Cell]] = defaultdict(list)
    several = len({c.run for c in cells}) > 1
    settings = {c.setting for c in cells}
    for cell in cells:
        if step_of(cell) is None:
            continue
        training = (cell.data.get("checkpoint") or {}).get("run") or "run"
        name = training + (f" {cell.setting}" if len(settings) > 1 else "") + (f" ({cell.run})" if several else "")
        lines[name].append(cell)
    for members in lines.values():
        members.sort(key=lambda c: step_of(c) or 0)
    return lines


def series_section(
    cells: list[Cell], columns: list[Column], table: dict[str, dict[str, Mark]], pick: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """{plot, best: [{key, label, best, ties}], pick} for the cells that carry a training step (None: under two)."""
    stepped = [c for c in cells if step_of(c) is not None]
    if len(stepped) < 2:
        return None
    panels = panel_columns(stepped, columns, table)
    best = []
    for column in panels:
        marks = {c.label: table[c.label].get(column.key) for c in stepped}
        winners = [label for label, m in marks.items() if m is not None and m.status == "best"]
        ties = [label for label, m in marks.items() if m is not None and m.status == "tie"]
        if winners:
            best.append({"key": column.key, "label": column.label, "best": winners, "ties": ties})
    return {"plot": _plot(stepped, panels, table) if panels else None, "best": best, "pick": pick}


def _plot(cells: list[Cell], panels: list[Column], table: dict[str, dict[str, Mark]]) -> dict[str, Any]:
    import matplotlib  # matplotlib: only when a series is plotted, not with the CLI

    matplotlib.use("Agg")

    lines = _lines(cells)
    figure, grid = panel_grid(len(panels))
    for axes, column in zip(grid.flat, panels, strict=False):
        for index, (name, members) in enumerate(lines.items()):
            found = [(step_of(c), table[c.label].get(column.key)) for c in members]
            points = [(x, m) for x, m in found if x is not None and m is not None and m.value is not None]
            if not points:
                continue
            colour = f"C{index % 10}"
            xs = [x for x, _ in points]
            axes.plot(xs, [m.value for _, m in points], color=colour, label=name)
            if all(m.low is not None and m.high is not None for _, m in points):
                axes.fill_between(xs, [m.low for _, m in points], [m.high for _, m in points], color=colour,
                                  alpha=0.18, linewidth=0)  # fmt: skip
            for x, mark in points:
                marker, size, filled = _MARKERS.get(mark.status, ("x", 6, True))
                axes.plot([x], [mark.value], marker=marker, markersize=size, color=colour,
                          markerfacecolor=colour if filled else "white")  # fmt: skip
    finish_panels(figure, grid, panels, "training step")
    title = "Metrics over training step (band: interval; star: best; filled: not significantly different from it)"
    return {"title": title, "cells": [c.label for c in cells], "src": figure_png(figure)}
