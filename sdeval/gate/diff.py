"""`sdeval diff A B`: what differs between two results: protocol fields, and each metric's values with the
difference (b - a) and its interval where one can be computed."""

from __future__ import annotations

from typing import Any

from sdeval.core.errors import SdevalError
from sdeval.gate.evaluate import Side, compare
from sdeval.gate.verdicts import Evidence, fmt, signed, span
from sdeval.metrics.keys import value_of, with_parts
from sdeval.results.protocol import describe, differences
from sdeval.stats.settings import for_pair


def cell_pairs(a: Side, b: Side, cell: str | None = None) -> list[tuple[str, str]]:
    """(a cell id, b cell id): `cell` in both, else the shared ids, else the only cell of each."""
    if cell is not None:
        for side in (a, b):
            if cell not in side.cells:
                raise SdevalError(f"--cell {cell}: no such cell in {side.path} (cells: {', '.join(side.cells)})")
        return [(cell, cell)]
    shared = [c for c in a.cells if c in b.cells]
    if shared:
        return [(c, c) for c in shared]
    if len(a.cells) == 1 and len(b.cells) == 1:
        return [(next(iter(a.cells)), next(iter(b.cells)))]
    raise SdevalError(
        f"{a.path} and {b.path} share no cell id and are not single cells: name one with --cell "
        f"(cells: {', '.join(a.cells)} | {', '.join(b.cells)})"
    )


def diff(a: Side, b: Side, cell: str | None = None) -> dict[str, Any]:
    """The differences as a JSON-able dict: per cell pair, protocol (binding, informative) and metrics; intervals
    of differences drawn as the gate draws them (b's recorded settings, else a's, else the defaults)."""
    settings, mismatch = for_pair(a.settings, b.settings)
    problem = b.state_problem or a.state_problem
    out = []
    for id_a, id_b in cell_pairs(a, b, cell):
        cell_a, cell_b = a.cells[id_a], b.cells[id_b]
        pa, pb = cell_a["protocol"], cell_b["protocol"]
        binding, informative = differences(pa, pb)
        metrics = []
        for key in with_parts([cell_a, cell_b]):
            va, _ = value_of(cell_a, key)
            vb, _ = value_of(cell_b, key)
            row: dict[str, Any] = {"key": key, "a": va, "b": vb}
            if va is not None and vb is not None:
                row["difference"] = vb - va
                found = compare(cell_a, a.states.get(id_a), cell_b, b.states.get(id_b), key, settings, problem)
                if isinstance(found, Evidence):
                    row.update(
                        difference=found.estimate,
                        interval=[found.low, found.high],
                        paired=found.paired,
                        n=found.n,
                        method=found.method,
                    )
                else:
                    row["no_interval"] = found
            metrics.append(row)
        out.append(
            {
                "a": id_a,
                "b": id_b,
                "binding": [describe(pa, pb, p) for p in binding],
                "informative": [describe(pa, pb, p) for p in informative],
                "metrics": metrics,
            }
        )
    return {
        "a": a.path,
        "b": b.path,
        "cells": out,
        "intervals": {**settings.to_json(), "source": settings.source, "text": settings.describe()},
        "warnings": [mismatch] if mismatch else [],
    }


def render_diff(found: dict[str, Any]) -> str:
    lines = [f"a: {found['a']}", f"b: {found['b']}"]
    for pair in found["cells"]:
        title = pair["a"] if pair["a"] == pair["b"] else f"{pair['a']} vs {pair['b']}"
        lines += ["", f"cell {title}"]
        if pair["binding"]:
            lines.append("  protocol differs (binding: the numbers are not comparable):")
            lines += [f"    {d}" for d in pair["binding"]]
        if pair["informative"]:
            lines.append("  protocol differs (informative only):")
            lines += [f"    {d}" for d in pair["informative"]]
        if not pair["binding"] and not pair["informative"]:
            lines.append("  protocol: same")
        for row in pair["metrics"]:
            a = "-" if row["a"] is None else fmt(row["a"])
            b = "-" if row["b"] is None else fmt(row["b"])
            text = f"  {row['key']}: {a} -> {b}"
            if "interval" in row:
                kind = "paired" if row["paired"] else "unpaired"
                text += f"  {signed(row['difference'])} {span(*row['interval'])} ({kind}, n={row['n']})"
            elif "difference" in row:
                text += f"  {signed(row['difference'])} (no interval: {row['no_interval']})"
            else:
                text += "  (in one side only)"
            lines.append(text)
    if any("interval" in row for pair in found["cells"] for row in pair["metrics"]):
        lines += ["", f"intervals: {found['intervals']['text']}"]
    lines += [f"warning: {w}" for w in found.get("warnings", [])]
    return "\n".join(lines)
