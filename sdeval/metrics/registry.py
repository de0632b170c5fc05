"""The metric registry: what each metric is, said once.

A registration names the metric (its `--metrics` key), the result keys it fills with their label, direction
(higher or lower is better) and range, what it needs (Inception pool or logits, CLIP image or text
embeddings, prompts, a reference), the feature inputs it reads (sdeval.features.inputs: each with its model, options,
protocol block and reference storage), its per-image columns, and the function that computes it from one cell's
inputs. CLI validation, `sdeval metrics`, the results table, the report and the gate all read it: adding a
metric is its module plus one registration (a built-in's `module:object` line below, `register(...)` in code, or a
third-party package's `sdeval.metrics` entry point).
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

import numpy as np

from sdeval.core.errors import SdevalError
from sdeval.core.registry import Registry
from sdeval.core.suggest import did_you_mean
from sdeval.features import inputs as feature_inputs
from sdeval.metrics import clip_score, density_coverage
from sdeval.metrics.skip import MetricSkip as MetricSkip  # said in skip.py; metrics and plugins raise it from here


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
    PREFERENCE = "preference"  # the metric's own human-preference scorer, one score per image (sdeval.preference)


#: The top-level protocol block where each input records its model or source. A metric's numbers move with the
#: blocks of its needs and of its feature inputs (each named as the input), its own block (named as the metric:
#: `kid`, `pickscore`) and the fields it `binds`.
NEED_BLOCKS: dict[Need, tuple[str, ...]] = {
    Need.INCEPTION_POOL: ("inception",),
    Need.INCEPTION_LOGITS: ("inception",),
    Need.CLIP_IMAGE: ("clip",),
    Need.CLIP_TEXT: ("clip",),
    Need.PROMPTS: ("prompts",),
    Need.CMMD_IMAGE: ("cmmd",),
    Need.REFERENCE: ("reference",),
    Need.JUDGEMENTS: ("judge",),
    Need.INIT_IMAGES: (),
    Need.PREFERENCE: (),  # the scorer records itself in the metric's own block
}


@dataclass(frozen=True)
class Bootstrap:
    """Interval by a bootstrap over prompts of a per-image statistic: all seeds of a prompt move together.

    Each image's value is its per-image row's `column`, or `from_state` of the feature state's rows (the arrays
    named in `state_inputs`, reference arrays whole). The metric is the mean of those values: pooled over images
    (`weight="image"`) or over prompts, each prompt's own mean counting once (`weight="prompt"`); with `by`, the
    mean over the groups of that row column (GenEval's categories) of those means. The prompts resampled are the
    items' prompts, or with `cluster` the values of that row column (diversity groups images by prompt text).
    """

    column: str | None = None
    from_state: Callable[[dict[str, np.ndarray]], np.ndarray] | None = None
    state_inputs: tuple[str, ...] = ()
    by: str | None = None
    by_default: str = "uncategorised"  # the group of a row whose `by` column is empty
    weight: str = "image"  # image | prompt
    cluster: str | None = None  # a row column naming each image's prompt (None: the prompt part of its item)
    #: What two cells are paired on when compared: the same `item` (prompt and seed), or the same prompt (its
    #: images' mean on each side), for scores that are only comparable within a prompt (preference models).
    pair_by: str = "item"
    #: Below this many prompts the percentile bootstrap is not checked (it under-covers): a warning says so.
    min_prompts: int = 30
    name: str = "bootstrap over prompts"


class CorpusSide(Protocol):
    """One side's rows of a corpus statistic under the jackknife: its value on all rows, and with each block out."""

    leave_outs: np.ndarray

    def value(self) -> float: ...


@dataclass(frozen=True)
class Jackknife:
    """Interval by a delete-a-group jackknife over blocks of prompts, the reference fixed: for corpus statistics
    (FID, KID, ...) that a bootstrap would bias by duplicating images.

    `inputs` names the state arrays of the generated rows and of the reference (None for a statistic of the rows
    alone, as the Inception Score); `side(x, reference, blocks, k, seed, **parameters)` builds the statistic's
    CorpusSide over the rows `x` dealt into `k` blocks. Its metric parameters come from the cell's protocol block of
    the metric, where the run recorded them, by `reads` (an interval is drawn from a results file, long after the run's
    options are gone): `(("k", "neighbourhood"),)` hands block["k"] to the side as `neighbourhood=`.
    """

    inputs: tuple[str, str | None]
    # The reference argument is its rows (an ndarray) where `inputs` names them, else None: typed Any so that a
    # side with a reference may declare it an ndarray.
    side: Callable[[np.ndarray, Any, np.ndarray, int, int], CorpusSide]
    #: Below this many prompts the jackknife's coverage was not checked (few, noisy blocks): a warning says so.
    min_prompts: int = 50
    name: str = "jackknife over prompt blocks"
    #: (protocol field, side keyword) pairs: the metric's parameters the side reads from the cell's protocol block.
    reads: tuple[tuple[str, str], ...] = ()

    def parameters(self, block: dict[str, Any] | None) -> dict[str, Any]:
        """The side's keyword arguments from the metric's protocol block (a field the block lacks: the side's
        default, as a results file written before the parameter existed was scored with)."""
        block = block or {}
        return {keyword: block[field] for field, keyword in self.reads if field in block}


IntervalMethod = Bootstrap | Jackknife


@dataclass(frozen=True)
class Parts:
    """Named parts of a result that are values of their own, e.g. adherence per category (`adherence.counting`):
    each part's value is `entry[field][PART][value]`, and its images are the per-image rows whose `column` is PART
    (`default` where the column is empty)."""

    field: str
    value: str
    column: str
    default: str = "uncategorised"


@dataclass(frozen=True)
class ResultKey:
    """One number a metric writes under `metrics.<key>`, and everything the table, report, gate and statistics
    need to know about it."""

    key: str
    label: str
    direction: Direction
    range: tuple[float | None, float | None] = (None, None)  # (min, max) where known; intervals are clipped to it
    interval: IntervalMethod | None = None  # how `--ci`, the report and the gate get its interval (None: none)
    detail: str | None = None  # shown after the value in tables: a format string over the entry's fields
    parts: Parts | None = None  # named parts that rules and reports may address as KEY.PART
    # False where an unbiased estimate may leave `range` (CMMD's MMD² below 0): such values are not refused on load.
    strict_range: bool = True

    def describe(self, entry: dict[str, Any]) -> str:
        """The `detail` line of an entry ("" when it has none or the entry lacks one of its fields)."""
        if self.detail is None:
            return ""
        fields = [name for _, name, _, _ in string.Formatter().parse(self.detail) if name]
        if any(entry.get(name.split(".")[0].split("[")[0]) is None for name in fields):
            return ""
        # A format error past this point is a mistake in the registration: it surfaces rather than hiding the line.
        return self.detail.format_map(entry)

    def clip(self, low: float, high: float) -> tuple[float, float]:
        """An interval cut to the key's declared range."""
        floor, ceiling = self.range
        if floor is not None:
            low, high = max(low, floor), max(high, floor)
        if ceiling is not None:
            low, high = min(low, ceiling), min(high, ceiling)
        return low, high

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "key": self.key,
            "label": self.label,
            "direction": self.direction.value,
            "range": list(self.range),
            "interval": None if self.interval is None else self.interval.name,
        }
        if self.parts is not None:
            out["parts"] = f"{self.key}.{self.parts.column.upper()}"
        return out


@dataclass
class ScoreParams:
    """Metric parameters a user chooses; part of the protocol."""

    seed: int = 2020  # torch-fidelity's default, so default KID subsets and IS splits match it
    kid_subsets: int = 100
    kid_subset_size: int | None = None  # None: min(1000, n, n_reference)
    rprecision_r: int | None = None  # None: min(100, distinct prompts)
    clip_aggregation: str = clip_score.DEFAULT_AGGREGATION  # clamped (torchmetrics) | mean (MLPerf: 100 cos, no clamp)
    dc_k: int = density_coverage.K  # density/coverage's neighbourhood (the paper's, said with its maths)


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
    #: The rows of each feature input the reference stores, by input name (sdeval.features.inputs).
    features: dict[str, np.ndarray] = field(default_factory=dict)


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
    #: Each feature input's rows [n, d], by input name (sdeval.features.inputs), for the metrics that name it.
    features: dict[str, np.ndarray] = field(default_factory=dict)
    #: Preference scores by metric name: one float per image, NaN where the image was not scored (listed in
    #: `preference_missing` with the reason), and the scorer's protocol.
    preference: dict[str, np.ndarray] = field(default_factory=dict)
    preference_missing: dict[str, list[dict[str, str]]] = field(default_factory=dict)

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


@dataclass(frozen=True)
class MetricSpec:
    """One metric, declared once."""

    name: str  # the --metrics key
    description: str
    results: tuple[ResultKey, ...]
    needs: frozenset[Need]
    compute: Callable[[CellData], MetricOutput]
    #: The feature inputs it reads (registered names, sdeval.features.inputs): `CellData.features[NAME]`, and with
    #: Need.REFERENCE the reference's rows too (`ReferenceData.features[NAME]`).
    inputs: tuple[str, ...] = ()
    per_image: tuple[str, ...] = ()  # per-image columns it fills
    default: bool = False  # in the default --metrics
    #: Its parameters for the protocol record, from the run's parameters and the cell (sizes that depend on n).
    protocol: Callable[[ScoreParams, CellData], dict[str, Any]] | None = None
    #: Top-level protocol fields outside its own block and its inputs' that move its numbers (the scoring seed).
    binds: tuple[str, ...] = ()

    @property
    def protocol_blocks(self) -> frozenset[str]:
        """The top-level protocol keys whose binding fields move this metric's numbers."""
        needs = (block for need in self.needs for block in NEED_BLOCKS[need])
        return frozenset({self.name, *self.binds, *needs, *self.inputs})

    @property
    def needs_reference(self) -> bool:
        return Need.REFERENCE in self.needs

    @property
    def needs_prompts(self) -> bool:
        return bool({Need.PROMPTS, Need.CLIP_TEXT} & self.needs)

    @property
    def need_names(self) -> list[str]:
        """What it needs, by name: its needs and its feature inputs, sorted."""
        return sorted({*(need.value for need in self.needs), *self.inputs})

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "results": [key.to_json() for key in self.results],
            "needs": self.need_names,
            "per_image": list(self.per_image),
            "default": self.default,
        }


def _check(name: str, spec: MetricSpec) -> None:
    """A registry entry is a MetricSpec under its own name whose result keys no other metric fills."""
    if not isinstance(spec, MetricSpec):
        raise SdevalError(f"metric {name!r} is a {type(spec).__name__}, not a MetricSpec")
    if spec.name != name:
        raise SdevalError(f"metric {name!r} is registered under another name than its own ({spec.name!r})")
    taken = {key.key for other in _METRICS.loaded() if other.name != spec.name for key in other.results}
    clash = [key.key for key in spec.results if key.key in taken]
    if clash:
        raise ValueError(f"metric {spec.name!r}: result key(s) {', '.join(clash)} belong to another metric")


#: Every metric: the built-ins by reference, each `FAMILY:NAME` in the package sdeval.metrics.builtin (whose modules
#: import this one, never the other way; a family's module loads on first use of one of its metrics), then those
#: registered in code, then the `sdeval.metrics` entry points of installed packages. This order is the table's and
#: `sdeval metrics`' order.
_METRICS: Registry[MetricSpec] = Registry("metric", group="sdeval.metrics", check=_check)
for _name, _where in (
    ("fid", "inception:FID"),
    ("kid", "inception:KID"),
    ("is", "inception:IS"),
    ("pr", "inception:PR"),
    ("clip", "clip:CLIP"),
    ("rprecision", "clip:RPRECISION"),
    ("cmmd", "clip:CMMD"),
    ("diversity", "clip:DIVERSITY"),
    ("adherence", "adherence:ADHERENCE"),
    ("robustness", "adherence:ROBUSTNESS"),
    ("faithfulness", "adherence:FAITHFULNESS"),
    ("fd_dinov2", "dinov2:FD_DINOV2"),
    ("imagereward", "preference:IMAGEREWARD"),
    ("hps", "preference:HPS"),
    ("pickscore", "preference:PICKSCORE"),
    ("aesthetic", "preference:AESTHETIC"),
    ("geneval", "benchmarks:GENEVAL"),
    ("dsg", "benchmarks:DSG"),
    ("tifa", "benchmarks:TIFA"),
    ("dpg", "benchmarks:DPG"),
    ("t2i_compbench", "benchmarks:T2I_COMPBENCH"),
    ("fd_clip", "clip:FD_CLIP"),
    ("fid_inf", "inception:FID_INF"),
    ("vendi", "vendi:VENDI"),
    ("vendi_inception", "vendi:VENDI_INCEPTION"),
    ("dc", "inception:DC"),
    ("sfid", "inception:SFID"),
):
    _METRICS.register(_name, f"sdeval.metrics.builtin.{_where}")


def register(spec: MetricSpec) -> MetricSpec:
    """Add a metric; its name and result keys must be new."""
    _METRICS.values()  # its result keys are checked against every other metric's
    _METRICS.register(spec.name, spec)
    return spec


def unregister(name: str) -> None:
    """Remove a metric (tests that register their own)."""
    _METRICS.unregister(name)


def metrics() -> Iterator[MetricSpec]:
    """Every registered metric, in registration order."""
    return iter(_METRICS.values())


def get(name: str) -> MetricSpec:
    return _METRICS.get(name)


def names() -> list[str]:
    return _METRICS.names()


def default_names() -> tuple[str, ...]:
    return tuple(spec.name for spec in metrics() if spec.default)


def result_key(key: str) -> ResultKey | None:
    """The declaration of a result key (`precision`, `fid`, ...), whichever metric fills it."""
    for spec in metrics():
        for result in spec.results:
            if result.key == key:
                return result
    return None


def result_keys() -> list[ResultKey]:
    """Every declared result key, in registration order."""
    return [result for spec in metrics() for result in spec.results]


def claimed_blocks() -> frozenset[str]:
    """The top-level protocol keys some metric declares (MetricSpec.protocol_blocks); a binding field outside them
    moves every metric."""
    return frozenset(block for spec in metrics() for block in spec.protocol_blocks)


def spec_of_key(key: str) -> MetricSpec | None:
    """The metric that fills result key `key`."""
    return next((spec for spec in metrics() if any(r.key == key for r in spec.results)), None)


def check_names(requested: tuple[str, ...]) -> list[MetricSpec]:
    """The specs of `requested`, or SdevalError naming every unknown one (with the closest known name)."""
    known = names()
    unknown = [f"{name}{did_you_mean(name, known)}" for name in requested if name not in known]
    if unknown:
        raise SdevalError(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(known)}")
    specs = [get(name) for name in dict.fromkeys(requested)]
    declared = feature_inputs.names()
    for spec in specs:
        for name in spec.inputs:
            if name not in declared:
                raise SdevalError(
                    f"metric {spec.name!r} reads feature input {name!r}{did_you_mean(name, declared)}, which is not "
                    f"registered; registered: {', '.join(declared)}"
                )
    return specs


def inputs_of(specs: list[MetricSpec], reference: bool = False) -> tuple[str, ...]:
    """The feature inputs `specs` read, by name or by a need one of their outputs serves (Need.INCEPTION_POOL: the
    Inception input), in registration order. With `reference`, those whose rows the reference must hold: named by
    the metrics that compare with a reference, or with an output references store serving any metric's need (the
    reference holds Inception's pool features whenever a metric reads them)."""
    wanted = {name for spec in specs if spec.needs_reference or not reference for name in spec.inputs}
    wanted.update(feature_inputs.serving({need.value for spec in specs for need in spec.needs}, stored=reference))
    return tuple(name for name in feature_inputs.names() if name in wanted)
