"""The public benchmarks' own scores, by their published formulas, from per-image judgements.

- GenEval overall (djghosh13/geneval `evaluation/summary_scores.py`): per tag, the share of its images judged
  correct; overall = the unweighted mean over the six tags.
- DSG score (j-min/DSG `dsg/vqa_utils.py` calc_vqa_score, `scripts/t2i_eval_dsg1k.py`): per image, the mean over its
  questions, a question counting 0 when a parent was answered otherwise (the parent's own answer); the mean over
  images. The VQA judge's per-image score is exactly this (`judges/questions.score_answers`).
- TIFA score (Yushi-Hu/tifa `tifascore/tifa_score.py`): per image, the share of its questions answered as expected;
  the mean over images; accuracy per element type over all questions.
- DPG-Bench score (TencentQQGYLab/ELLA `dpg_bench/compute_dpg_bench.py`): per crop of the 2x2 grid (one generated
  image each), the mean over questions after its dependency rule, which zeroes a question in qid order when a parent's
  score, already zeroed by this rule, is 0 (so a void carries down a chain, unlike DSG's); per prompt the mean over
  its images; the mean over prompts, x100. Category scores (L1: the tuple's head, `entity`; L2: `entity - whole`) are
  the mean of the answers before the rule, x100.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: GenEval's six tags: its overall score is their mean, so a cell without one of them has no GenEval overall.
GENEVAL_TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")


@dataclass(frozen=True)
class Answer:
    """One question's answer as a benchmark rule reads it: its id, parents, label and whether it was right."""

    qid: str
    parents: tuple[str, ...]
    label: str
    correct: bool


def missing_tags(categories: Sequence[str]) -> tuple[list[str], list[str]]:
    """(GenEval tags no image has, categories that are not GenEval tags)."""
    present = set(categories)
    return [t for t in GENEVAL_TAGS if t not in present], sorted(present - set(GENEVAL_TAGS))


def geneval_overall(categories: Sequence[str], passed: Sequence[bool]) -> tuple[float, dict[str, dict[str, float]]]:
    """GenEval's overall score and its per-tag accuracies; ValueError unless every image is of one of the six tags and
    each tag has an image."""
    absent, foreign = missing_tags(categories)
    if absent or foreign:
        raise ValueError(f"GenEval's tags missing: {absent}; not GenEval's: {foreign}")
    ok = np.asarray(passed, dtype=bool)
    tags = np.asarray(categories)
    per_tag = {
        t: {"accuracy": float(ok[tags == t].mean()), "n": int((tags == t).sum()), "passed": int(ok[tags == t].sum())}
        for t in GENEVAL_TAGS
    }
    return float(np.mean([row["accuracy"] for row in per_tag.values()])), per_tag


def dpg_image_score(answers: Sequence[Answer]) -> float:
    """One image's DPG-Bench score (0-1): ELLA's rule, a question zeroed in qid order when a parent's score (after
    this rule so far) is 0; a parent it does not hold counts as answered (ELLA would fail the image)."""
    scores = {a.qid: float(a.correct) for a in answers}
    for a in answers:
        if any(scores.get(p, 1.0) == 0.0 for p in a.parents):
            scores[a.qid] = 0.0
    return sum(scores.values()) / len(scores) if scores else 0.0


def mean_over_prompts(values: Sequence[float], prompts: Sequence[str]) -> tuple[float, int]:
    """(the mean over prompts of each prompt's mean value, the number of prompts)."""
    groups: dict[str, list[float]] = {}
    for value, prompt in zip(values, prompts, strict=True):
        groups.setdefault(prompt, []).append(value)
    return float(np.mean([np.mean(v) for v in groups.values()])), len(groups)


def label_accuracy(answers: Sequence[Answer], level: int) -> dict[str, float]:
    """DPG-Bench's category scores: each question's answer before the rule, grouped by its label's head (level 1:
    `entity`) or its part before '(' (level 2: `entity - whole`), mean x100."""
    groups: dict[str, list[bool]] = {}
    for a in answers:
        head = a.label.split("(")[0].strip()
        key = head.split("-")[0].strip() if level == 1 else head
        groups.setdefault(key, []).append(a.correct)
    return {k: 100.0 * float(np.mean(v)) for k, v in sorted(groups.items())}


def accuracy_by(kinds: Sequence[str], correct: Sequence[bool]) -> dict[str, float]:
    """TIFA's accuracy per element type: the share of that type's questions answered as expected."""
    groups: dict[str, list[bool]] = {}
    for kind, good in zip(kinds, correct, strict=True):
        groups.setdefault(kind, []).append(good)
    return {k: float(np.mean(v)) for k, v in sorted(groups.items())}
