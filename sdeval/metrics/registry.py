"""The metric registry: what each metric is, said once.

A registration names the metric (its `--metrics` key), the result keys it fills with their label, direction
(higher or lower is better) and range, what it needs (Inception pool or logits, CLIP image or text
embeddings, prompts, a reference), its per-image columns, and the function that computes it from one cell's
inputs. CLI validation, `sdeval metrics`, the results table, the report and the gate all read it: adding a
metric is its module plus one `register(...)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from sdeval.errors import SdevalError


class Direction(str, Enum):
    HIGHER = "higher"  # higher is better
    LOWER = "lower"  # lower is better


class Need(str, Enum):
    """Inputs a metric can need; the scorer builds only the models that the requested metrics need."""

    INCEPTION_POOL = "inception_pool"  # Inception pool3 features [n, 2048]
    INCEPTION_LOGITS = "inception_logits"  # Inception unbiased logits [n, 1008]
    CLIP_IMAGE = "clip_image"  # image embeddings of the --clip-* model
    CLIP_TEXT = "clip_text"  # embeddings of each image's prompt, same model (implies prompts)
    PROMPTS = "prompts"  # each image's prompt record
    CMMD_IMAGE = "cmmd_image"  # image embeddings of the --cmmd-* model
    REFERENCE = "reference"  # a reference set (its features of the same kinds)
    JUDGEMENTS = "judgements"  # each image judged against its prompt's spec (--judge; needs a suite)
    INIT_IMAGES = "init_images"  # image-to-image: each output's init image, compared with the output


@dataclass(frozen=True)
class ResultKey:
    """One number a metric writes under `metrics.<key>`."""

    key: str
    label: str
    direction: Direction
    range: tuple[float | None, float | None] = (None, None)  # (min, max) where known

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "direction": self.direction.value, "range": list(self.range)}


@dataclass
class ScoreParams:
    """Metric parameters a user chooses; part of the protocol."""

    seed: int = 2020  # torch-fidelity's default, so default KID subsets and IS splits match it
    kid_subsets: int = 100
    kid_subset_size: int | None = None  # None: min(1000, n, n_reference)
    rprecision_r: int | None = None  # None: min(100, distinct prompts)


@dataclass
class PromptData:
    """The prompts of one cell's images: `index[i]` is the row of `texts` for image i, -1 where it has none."""

    index: np.ndarray  # [n] int64
    texts: np.ndarray | None  # [P, D] embeddings of the distinct prompts (None: no CLIP text model)
    distinct: list[str]
    truncated: list[bool] | None  # per distinct prompt: cut to the tokenizer's context (None: unknown)
    missing: list[dict[str, str]]  # {"path", "reason"} of the cell's images without a prompt

    @property
    def with_prompt(self) -> np.ndarray:
        return np.flatnonzero(self.index >= 0)


@dataclass
class ReferenceData:
    """The reference's features of each kind the metrics use."""

    pool: np.ndarray | None = None
    fid_state: Any = None  # FrechetState
    cmmd_image: np.ndarray | None = None
    n: int = 0


@dataclass
class JudgedData:
    """Each image's judgement against its prompt's spec (None: no spec, listed in `missing` with the reason)."""

    judgements: list[Any]  # sdeval.judges.base.Judgement | None, one per image
    categories: list[str | None]
    prompt_ids: list[str | None]
    specs: list[dict[str, Any] | None]  # each image's spec as GenEval metadata (None: none)

    def prompt_key(self, i: int, path: str) -> str:
        """What groups image i's seeds: its prompt id, else its path (one image, one group)."""
        return self.prompt_ids[i] or path

    missing: list[dict[str, str]]
    protocol: dict[str, Any]


@dataclass
class CellData:
    """Everything a metric may read about one cell: its images' features, prompts, the reference, parameters."""

    paths: list[str]
    params: ScoreParams
    pool: np.ndarray | None = None
    logits: np.ndarray | None = None
    clip_image: np.ndarray | None = None
    cmmd_image: np.ndarray | None = None
    prompts: PromptData | None = None
    reference: ReferenceData | None = None
    judged: JudgedData | None = None
    faithfulness: dict[str, list[float | None]] | None = None  # per image: edge_ssim, clip_cosine (None: no init)
    faithfulness_missing: list[dict[str, str]] = field(default_factory=list)  # {"path", "reason"}: no init image

    @property
    def n(self) -> int:
        return len(self.paths)


@dataclass
class MetricOutput:
    """What one metric computed for one cell."""

    entries: dict[str, dict[str, Any]]  # result key -> {"value": ..., ...}
    per_image: dict[str, list[Any]] = field(default_factory=dict)  # column -> one value per image (None: none)
    warnings: list[str] = field(default_factory=list)
    per_prompt: list[dict[str, Any]] | None = None


class MetricSkip(SdevalError):
    """A metric cannot be computed for this input (too few images, no prompts): listed with this reason."""


@dataclass(frozen=True)
class MetricSpec:
    """One metric, declared once."""

    name: str  # the --metrics key
    description: str
    results: tuple[ResultKey, ...]
    needs: frozenset[Need]
    compute: Callable[[CellData], MetricOutput]
    per_image: tuple[str, ...] = ()  # per-image columns it fills
    default: bool = False  # in the default --metrics
    protocol: Callable[[ScoreParams], dict[str, Any]] | None = None  # its parameters, for the protocol record

    @property
    def needs_reference(self) -> bool:
        return Need.REFERENCE in self.needs

    @property
    def needs_prompts(self) -> bool:
        return bool({Need.PROMPTS, Need.CLIP_TEXT} & self.needs)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "results": [key.to_json() for key in self.results],
            "needs": sorted(need.value for need in self.needs),
            "per_image": list(self.per_image),
            "default": self.default,
        }


_REGISTRY: dict[str, MetricSpec] = {}
_BUILTINS_LOADED = False


def register(spec: MetricSpec) -> MetricSpec:
    """Add a metric; its name and result keys must be new."""
    if spec.name in _REGISTRY and _REGISTRY[spec.name] is not spec:
        raise ValueError(f"metric {spec.name!r} is already registered")
    taken = {key.key for other in _REGISTRY.values() if other.name != spec.name for key in other.results}
    clash = [key.key for key in spec.results if key.key in taken]
    if clash:
        raise ValueError(f"metric {spec.name!r}: result key(s) {', '.join(clash)} belong to another metric")
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a metric (tests that register their own)."""
    _REGISTRY.pop(name, None)


def _load_builtins() -> None:
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        _BUILTINS_LOADED = True
        import sdeval.metrics.builtin  # noqa: F401  (registers the built-in metrics)


def metrics() -> Iterator[MetricSpec]:
    """Every registered metric, in registration order."""
    _load_builtins()
    return iter(list(_REGISTRY.values()))


def get(name: str) -> MetricSpec:
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise SdevalError(f"unknown metric {name!r}; known: {', '.join(_REGISTRY)}") from None


def names() -> list[str]:
    _load_builtins()
    return list(_REGISTRY)


def default_names() -> tuple[str, ...]:
    return tuple(spec.name for spec in metrics() if spec.default)


def result_key(key: str) -> ResultKey | None:
    """The declaration of a result key (`precision`, `fid`, ...), whichever metric fills it."""
    for spec in metrics():
        for result in spec.results:
            if result.key == key:
                return result
    return None


def check_names(requested: tuple[str, ...]) -> list[MetricSpec]:
    """The specs of `requested`, or SdevalError naming every unknown one."""
    known = names()
    unknown = [name for name in requested if name not in known]
    if unknown:
        raise SdevalError(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [get(name) for name in dict.fromkeys(requested)]
