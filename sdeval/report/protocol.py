"""Which cells are comparable on which metric (protocol groups, per column), and the protocol card that says why."""

from __future__ import annotations

import json
from collections import defaultdict
from functools import cache
from typing import Any

from sdeval.report.model import Cell, Column
from sdeval.results.protocol import binds, flatten, is_informative
from sdeval.suites.builtin import BENCHMARKS
from sdeval.suites.load import Suite, load_suite


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


@cache
def _shipped(benchmark: str) -> Suite:
    return load_suite(f"builtin:{benchmark}")


def _suite_line(suite: dict[str, Any], labels: list[str]) -> dict[str, Any]:
    """A benchmark suite the cells were scored on: its name in the literature, and whether the file is the one sdeval
    ships (its sha256, as results record it, is the shipped file's)."""
    shipped = _shipped(suite["id"])
    published = suite.get("sha256") == shipped.sha256
    return {
        "id": suite["id"],
        "name": shipped.name,
        "version": suite.get("version"),
        "sha256": suite.get("sha256"),
        "published": published,
        "status": "the published suite as sdeval ships it (sha256 matches)"
        if published
        else f"not the shipped file (sha256 {str(suite.get('sha256'))[:12]}..., shipped {shipped.sha256[:12]}...): a "
        "slice or an edit of it, another sdeval version's, or one built by sdeval suites build; compare with "
        "the paper's numbers only knowing that",
        "cells": labels,
    }


def benchmark_card(cells: list[Cell]) -> dict[str, list[dict[str, Any]]]:
    """The public benchmarks behind the cells, so their numbers can be set beside a paper's: each benchmark suite
    (by name, and whether it is the published file), and each benchmark score's protocol block (as published, or
    every way it differs), with the cells that share it."""
    suites: dict[str, tuple[dict[str, Any], list[str]]] = {}
    scores: dict[str, tuple[str, dict[str, Any], list[str]]] = {}
    for cell in cells:
        protocol = cell.data.get("protocol") or {}
        suite = protocol.get("suite")
        if isinstance(suite, dict) and suite.get("id") in BENCHMARKS:
            suites.setdefault(json.dumps(suite, sort_keys=True), (suite, []))[1].append(cell.label)
        for key, block in protocol.items():
            if isinstance(block, dict) and "as_published" in block:  # a benchmark score (metrics/builtin/benchmarks.py)
                scores.setdefault(json.dumps([key, block], sort_keys=True), (key, block, []))[2].append(cell.label)
    ids = dict.fromkeys(suite["id"] for suite, _ in suites.values())
    return {
        "suites": [_suite_line(suite, labels) for suite, labels in suites.values()],
        "notes": [{"name": _shipped(i).name, "notes": list(_shipped(i).notes)} for i in ids if _shipped(i).notes],
        "scores": [
            {
                "metric": key,
                "benchmark": block.get("benchmark"),
                "as_published": bool(block.get("as_published")),
                "differs": list(block.get("differs") or []),
                "published_judge": block.get("published_judge"),
                "judge": block.get("judge"),
                "cells": labels,
            }
            for key, block, labels in scores.values()
        ],
    }


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
        "benchmarks": benchmark_card(cells),
    }
