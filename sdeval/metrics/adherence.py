"""Prompt adherence from per-image judgements: per category, per prompt and overall, as GenEval aggregates.

GenEval's overall score is the unweighted mean over categories (tags) of the share of passing images; the
plain share of passing images over all of them is reported beside it, since the two differ whenever the
categories have different sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sdeval.metrics.embeddings import NotEnoughDataError


@dataclass(frozen=True)
class CategoryScore:
    category: str
    accuracy: float
    n: int
    passed: int


@dataclass(frozen=True)
class AdherenceResult:
    overall: float  # GenEval: mean over categories of their accuracy
    pass_rate: float  # share of all judged images that passed
    n: int
    categories: list[CategoryScore]
    prompts: list[dict]  # per prompt id: category, n, passed, pass_rate

    def to_entry(self) -> dict:
        return {
            "value": self.overall,
            "pass_rate": self.pass_rate,
            "n": self.n,
            "categories": {c.category: {"accuracy": c.accuracy, "n": c.n, "passed": c.passed} for c in self.categories},
        }


def adherence(categories: Sequence[str], passed: Sequence[bool], prompt_ids: Sequence[str]) -> AdherenceResult:
    """Aggregate judged images (one entry each: its prompt's category, whether it passed, its prompt id)."""
    if not (len(categories) == len(passed) == len(prompt_ids)):
        raise ValueError("categories, passed and prompt_ids must have one entry per judged image")
    if not passed:
        raise NotEnoughDataError("adherence needs at least one image whose prompt has a spec")
    ok = np.asarray(passed, dtype=bool)
    scores = []
    for category in dict.fromkeys(sorted(categories)):
        members = np.asarray([c == category for c in categories])
        scores.append(CategoryScore(category, float(ok[members].mean()), int(members.sum()), int(ok[members].sum())))
    prompts: dict[str, dict] = {}
    for category, good, pid in zip(categories, passed, prompt_ids, strict=True):
        row = prompts.setdefault(pid, {"prompt_id": pid, "category": category, "n": 0, "passed": 0})
        row["n"] += 1
        row["passed"] += int(good)
    for row in prompts.values():
        row["pass_rate"] = row["passed"] / row["n"]
    return AdherenceResult(
        overall=float(np.mean([c.accuracy for c in scores])),
        pass_rate=float(ok.mean()),
        n=len(ok),
        categories=scores,
        prompts=list(prompts.values()),
    )
