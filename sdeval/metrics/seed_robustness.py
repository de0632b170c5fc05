"""Seed robustness: how reliably a prompt passes its judge across several seeds.

Per prompt, from one pass/fail judgement per seed (and optionally one CLIP score per seed): the pass rate,
the unbiased pass@k of Chen et al. (2021), "Evaluating Large Language Models Trained on Code" (Codex), the
spread of the CLIP score across seeds, and the expected number of seeds tried, in a random order without
replacement, until the first pass. The statistics are aggregated per category and overall as unweighted
means over prompts, so a prompt with more seeds does not count more; beside the overall mean over prompts is
the GenEval-style mean over categories, which differs from it whenever categories have different sizes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from sdeval.metrics.embeddings import NotEnoughDataError

DEFAULT_KS: tuple[int, ...] = (1, 4, 10)

#: Why `expected_seeds` is None for a prompt: the expectation is only defined when some seed passed.
NO_PASS = "no pass in n seeds"


def _check_counts(n: int, c: int) -> None:
    for name, value in (("n", n), ("c", c)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not 0 <= c <= n:
        raise ValueError(f"c must be in [0, n={n}], got {c}")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n seeds of which c passed: 1 - C(n-c, k) / C(n, k).

    The chance that at least one of k seeds drawn without replacement from the n passes. Raises ValueError
    when n < k, where no k distinct seeds exist. Computed in exact rational arithmetic and rounded once, so it
    matches enumeration exactly and, unlike the float product 1 - prod_{i=n-c+1}^{n} (1 - k/i) of the Codex
    paper, loses no precision to cancellation when the result is tiny; Python's integers make it cheap for
    any realistic number of seeds.
    """
    _check_counts(n, c)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if n < k:
        raise ValueError(f"pass@{k} needs at least {k} seeds, got n={n}")
    n, c, k = int(n), int(c), int(k)
    total = math.comb(n, k)
    # math.comb(n - c, k) is 0 when n - c < k: every k-subset then holds a pass.
    return float(Fraction(total - math.comb(n - c, k), total))


def expected_seeds_to_first_pass(n: int, c: int) -> float | None:
    """Expected number of seeds tried, in a uniformly random order without replacement, until the first pass.

    Equals (n + 1) / (c + 1) for c >= 1. Why: the first pass comes after each of the n - c failing seeds that
    precede all c passing ones, and a given failing seed precedes all passing seeds with probability
    1 / (c + 1) (each of those c + 1 seeds is equally likely to come first in a random order), so the
    expectation is 1 + (n - c) / (c + 1). The same follows from the negative hypergeometric distribution: the
    number of failures drawn before the first pass has mean r K / (N - K + 1) with N = n, K = n - c failures and
    r = 1 stopping pass. Returns None when c == 0: no pass in n seeds, so the number of seeds needed is unknown
    rather than infinite (a further seed might pass).
    """
    _check_counts(n, c)
    if c == 0:
        return None
    return (n + 1) / (c + 1)


@dataclass(frozen=True)
class PromptRobustness:
    """One prompt's statistics over its seeds."""

    prompt_id: str
    category: str | None
    n: int  # seeds (judged images)
    passes: int
    pass_rate: float
    pass_at: dict[int, float]  # unbiased pass@k, only for the requested k with k <= n
    clip_n: int  # seeds with a CLIP score
    clip_mean: float | None  # None without CLIP scores
    clip_std: float | None  # sample std (ddof=1) across seeds; None with fewer than 2 scores
    expected_seeds: float | None  # None: no pass in n seeds (see NO_PASS)

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt_id": self.prompt_id,
            "category": self.category,
            "n": self.n,
            "passes": self.passes,
            "pass_rate": self.pass_rate,
            "pass_at": {str(k): v for k, v in self.pass_at.items()},
            "clip_n": self.clip_n,
            "clip_mean": self.clip_mean,
            "clip_std": self.clip_std,
            "expected_seeds": self.expected_seeds,
            "expected_seeds_note": NO_PASS if self.expected_seeds is None else None,
        }


@dataclass(frozen=True)
class RobustnessSummary:
    """Unweighted means of per-item statistics, each over the items where it is defined, with those counts.

    Items are prompts for a category or overall, and categories for the GenEval-style mean over categories.
    """

    n_items: int
    pass_rate: float
    pass_at: dict[int, float]  # k -> mean over items with pass@k defined (n >= k)
    pass_at_n: dict[int, int]  # k -> how many items that mean is over
    clip_std: float | None
    clip_std_n: int
    expected_seeds: float | None  # over items with at least one pass
    expected_seeds_n: int

    def to_json(self) -> dict[str, Any]:
        return {
            "n_items": self.n_items,
            "pass_rate": self.pass_rate,
            "pass_at": {str(k): v for k, v in self.pass_at.items()},
            "pass_at_n": {str(k): v for k, v in self.pass_at_n.items()},
            "clip_std": self.clip_std,
            "clip_std_n": self.clip_std_n,
            "expected_seeds": self.expected_seeds,
            "expected_seeds_n": self.expected_seeds_n,
        }


@dataclass(frozen=True)
class CategoryRobustness:
    """Means over one category's prompts; `never_passed` counts prompts left out of `expected_seeds`."""

    category: str | None
    n_images: int
    never_passed: int
    summary: RobustnessSummary

    def to_json(self) -> dict[str, Any]:
        head = {"category": self.category, "n_images": self.n_images, "never_passed": self.never_passed}
        return head | self.summary.to_json()


@dataclass(frozen=True)
class RobustnessResult:
    """Per-prompt rows, per-category means, the overall mean over prompts and the mean over categories."""

    ks: tuple[int, ...]
    n_images: int
    never_passed: int  # prompts with no pass in their seeds
    overall: RobustnessSummary  # mean over all prompts
    by_category: RobustnessSummary  # GenEval-style: mean over categories of the category means
    categories: list[CategoryRobustness]
    prompts: list[PromptRobustness]

    def to_json(self) -> dict[str, Any]:
        return {
            "ks": list(self.ks),
            "n_images": self.n_images,
            "never_passed": self.never_passed,
            "overall": self.overall.to_json(),
            "by_category": self.by_category.to_json(),
            "categories": [c.to_json() for c in self.categories],
            "prompts": [p.to_json() for p in self.prompts],
        }


def _mean(values: Iterable[float | None]) -> tuple[float | None, int]:
    """Mean of the values that are not None, and how many there were (None, 0 when none)."""
    present = [v for v in values if v is not None]
    return (float(np.mean(present)), len(present)) if present else (None, 0)


def _summarize(
    pass_rates: Sequence[float],
    pass_ats: Sequence[dict[int, float]],
    clip_stds: Sequence[float | None],
    expected: Sequence[float | None],
    ks: Sequence[int],
) -> RobustnessSummary:
    pass_at: dict[int, float] = {}
    pass_at_n: dict[int, int] = {}
    for k in ks:
        mean, count = _mean(item.get(k) for item in pass_ats)
        if mean is not None:
            pass_at[k], pass_at_n[k] = mean, count
    clip_std, clip_std_n = _mean(clip_stds)
    expected_seeds, expected_n = _mean(expected)
    return RobustnessSummary(
        n_items=len(pass_rates),
        pass_rate=float(np.mean(pass_rates)),
        pass_at=pass_at,
        pass_at_n=pass_at_n,
        clip_std=clip_std,
        clip_std_n=clip_std_n,
        expected_seeds=expected_seeds,
        expected_seeds_n=expected_n,
    )


def _summarize_prompts(rows: Sequence[PromptRobustness], ks: Sequence[int]) -> RobustnessSummary:
    return _summarize(
        [r.pass_rate for r in rows],
        [r.pass_at for r in rows],
        [r.clip_std for r in rows],
        [r.expected_seeds for r in rows],
        ks,
    )


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"ks must be positive ints, got {k!r}")
    if not ks:
        raise ValueError("ks must name at least one k")
    return tuple(sorted({int(k) for k in ks}))


def _as_pass(value: Any, index: int) -> bool:
    # Reject anything but a boolean or 0/1: bool(float("nan")) is True, which would count a missing verdict as a pass.
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, (int, np.integer)) and value in (0, 1)):
        return bool(value)
    raise ValueError(f"passed[{index}] must be a bool, got {value!r}")


def robustness(
    prompt_ids: Sequence[str],
    categories: Sequence[str | None],
    passed: Sequence[bool],
    clip_scores: Sequence[float | None] | None = None,
    ks: Sequence[int] = DEFAULT_KS,
) -> RobustnessResult:
    """Seed robustness of judged images, one entry per image (seed): its prompt id, category, verdict, CLIP score.

    A prompt's seeds are the entries with its id; all must carry the same category (None: uncategorised,
    aggregated as a category of its own). `clip_scores` may hold None for an image without a score. pass@k is
    reported for each k in `ks` with k <= the prompt's seed count, and each mean over prompts or categories is
    over those where the statistic is defined, with the count beside it.
    """
    ks = _check_ks(ks)
    n_images = len(prompt_ids)
    if not (len(categories) == len(passed) == n_images):
        raise ValueError("prompt_ids, categories and passed must have one entry per judged image")
    if clip_scores is not None and len(clip_scores) != n_images:
        raise ValueError(f"got {len(clip_scores)} CLIP scores for {n_images} judged images")
    if n_images == 0:
        raise NotEnoughDataError("seed robustness needs at least one judged image")

    groups: dict[str, list[int]] = {}
    category_of: dict[str, str | None] = {}
    for i, (pid, category) in enumerate(zip(prompt_ids, categories, strict=True)):
        if category_of.setdefault(pid, category) != category:
            raise ValueError(f"prompt {pid!r} has images in categories {category_of[pid]!r} and {category!r}")
        groups.setdefault(pid, []).append(i)
    verdicts = [_as_pass(value, i) for i, value in enumerate(passed)]

    rows: list[PromptRobustness] = []
    for pid, members in groups.items():
        n = len(members)
        c = sum(verdicts[i] for i in members)
        scores = [] if clip_scores is None else [clip_scores[i] for i in members if clip_scores[i] is not None]
        clip = np.asarray(scores, dtype=np.float64)
        if not np.all(np.isfinite(clip)):
            raise ValueError(f"prompt {pid!r} has a NaN or infinite CLIP score")
        rows.append(
            PromptRobustness(
                prompt_id=pid,
                category=category_of[pid],
                n=n,
                passes=c,
                pass_rate=c / n,
                pass_at={k: pass_at_k(n, c, k) for k in ks if k <= n},
                clip_n=len(clip),
                clip_mean=float(clip.mean()) if len(clip) else None,
                clip_std=float(clip.std(ddof=1)) if len(clip) >= 2 else None,
                expected_seeds=expected_seeds_to_first_pass(n, c),
            )
        )

    # Sorted with the uncategorised group last, so reports list categories in a stable order.
    names = sorted({r.category for r in rows}, key=lambda name: (name is None, name or ""))
    category_rows: list[CategoryRobustness] = []
    for name in names:
        members = [r for r in rows if r.category == name]
        category_rows.append(
            CategoryRobustness(
                category=name,
                n_images=sum(r.n for r in members),
                never_passed=sum(r.passes == 0 for r in members),
                summary=_summarize_prompts(members, ks),
            )
        )
    summaries = [c.summary for c in category_rows]
    return RobustnessResult(
        ks=ks,
        n_images=n_images,
        never_passed=sum(r.passes == 0 for r in rows),
        overall=_summarize_prompts(rows, ks),
        by_category=_summarize(
            [s.pass_rate for s in summaries],
            [s.pass_at for s in summaries],
            [s.clip_std for s in summaries],
            [s.expected_seeds for s in summaries],
            ks,
        ),
        categories=category_rows,
        prompts=rows,
    )
