"""Intervals for adherence, a share of images that pass, from a cell's per-image rows (no feature state needed).

Adjusted Wald intervals: one pseudo-success and one pseudo-failure per share (Agresti-Coull for one share,
Agresti-Caffo for two independent shares, Bonett-Price for paired ones), so a cell where every image passes
still gets an interval of honest width instead of [1, 1]. Overall adherence is the mean over categories of
their accuracy, so its interval combines the categories' (independent) variances with weights 1/C.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

from sdeval.gate.verdicts import Evidence

#: {category: {item: passed}}
Passed = dict[str, dict[str, bool]]


def passed_by_item(cell: dict[str, Any], category: str | None = None) -> Passed:
    """Each judged image's pass/fail by item, per category (only `category` when given)."""
    out: Passed = {}
    for row in cell.get("per_image", []):
        passed = row.get("adherence_passed")
        if passed is None:
            continue
        cat = row.get("category") or "uncategorised"
        if category is not None and cat != category:
            continue
        out.setdefault(cat, {})[row["item"]] = bool(passed)
    return out


def _z(level: float) -> float:
    return NormalDist().inv_cdf(0.5 + level / 2)


def _combine(parts: list[tuple[float, float, float, int]], level: float, paired: bool, method: str) -> Evidence:
    """Mean over categories of (raw estimate, adjusted centre, variance, n)."""
    c = len(parts)
    estimate = sum(p[0] for p in parts) / c
    centre = sum(p[1] for p in parts) / c
    half = _z(level) * math.sqrt(sum(p[2] for p in parts)) / c
    n = min(p[3] for p in parts)  # the smallest category limits how fast the interval narrows
    return Evidence(estimate, centre - half, centre + half, level, n, paired, method)


def proportion(passed: Passed, level: float = 0.95) -> Evidence | None:
    """A cell's adherence (mean over categories of the share passing) with an Agresti-Coull interval."""
    parts = []
    for items in passed.values():
        n, x = len(items), sum(items.values())
        if n == 0:
            continue
        p = (x + 1) / (n + 2)
        parts.append((x / n, p, p * (1 - p) / (n + 2), n))
    return _combine(parts, level, False, "agresti-coull") if parts else None


def difference(base: Passed, cand: Passed, level: float = 0.95) -> Evidence | None:
    """Candidate minus baseline adherence: paired by item (Bonett-Price) where both cells judged the same items,
    else as independent shares (Agresti-Caffo)."""
    categories = sorted(set(base) & set(cand))
    if not categories:
        return None
    shared = {c: sorted(set(base[c]) & set(cand[c])) for c in categories}
    if all(shared[c] for c in categories):
        parts = []
        for c in categories:
            items = shared[c]
            n = len(items)
            lost = sum(base[c][i] and not cand[c][i] for i in items)  # passed before, fails now
            gained = sum(cand[c][i] and not base[c][i] for i in items)
            p_lost, p_gained = (lost + 1) / (n + 2), (gained + 1) / (n + 2)
            variance = max(p_lost + p_gained - (p_gained - p_lost) ** 2, 0.0) / (n + 2)
            parts.append(((gained - lost) / n, p_gained - p_lost, variance, n))
        return _combine(parts, level, True, "bonett-price (paired)")
    parts = []
    for c in categories:
        n_a, x_a, n_b, x_b = len(base[c]), sum(base[c].values()), len(cand[c]), sum(cand[c].values())
        p_a, p_b = (x_a + 1) / (n_a + 2), (x_b + 1) / (n_b + 2)
        variance = p_a * (1 - p_a) / (n_a + 2) + p_b * (1 - p_b) / (n_b + 2)
        parts.append((x_b / n_b - x_a / n_a, p_b - p_a, variance, min(n_a, n_b)))
    return _combine(parts, level, False, "agresti-caffo (unpaired)")
