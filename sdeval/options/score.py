"""What `sdeval score` (and the score stage of `sdeval bench`) is asked for: one set of options, one set of
defaults, one validating reader for both the command line and config files."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdeval.core.errors import ConfigError
from sdeval.core.paths import cache_root
from sdeval.core.suggest import check_keys, did_you_mean
from sdeval.features import inputs as feature_inputs
from sdeval.features.options import FeatureOptions
from sdeval.metrics import registry
from sdeval.metrics.clip_score import AGGREGATIONS as CLIP_AGGREGATIONS
from sdeval.metrics.registry import ScoreParams
from sdeval.options.protocols import NAMES as PROTOCOL_NAMES
from sdeval.options.protocols import apply_preset
from sdeval.suites.builtin import resolve_suite_path

#: The adherence judges `--judge` takes (sdeval.judges.registry builds them).
PREPROCESS_MODES = ("legacy", "clean", "pytorch-fid", "torchmetrics")  # sdeval.features.inception says each route


def _judges() -> tuple[str, ...]:
    from sdeval.judges.registry import JUDGES  # the judges' base (numpy): when options are checked, not at start-up

    return JUDGES


@dataclass(frozen=True)
class ScoreOptions:
    images: str
    reference: str | None = None
    #: The Inception route a statistics reference (mu, sigma) was made with, as its maker declares it (reference/stats)
    reference_protocol: str | None = None
    metrics: tuple[str, ...] | None = None  # None: the registry's defaults
    # The metric parameters' defaults are the registry's (ScoreParams), said once.
    kid_subset_size: int | None = ScoreParams.kid_subset_size  # None: min(1000, n, n_reference)
    kid_subsets: int = ScoreParams.kid_subsets
    seed: int = ScoreParams.seed
    features: FeatureOptions = field(default_factory=FeatureOptions)
    prompts: str | None = None  # manifest (JSONL/CSV); prompts also come from image metadata and captions
    # The CLIP models' options, declared with their feature inputs (features/clip_input.py); fields here because the
    # judges, the aesthetic head and `sdeval models` read them too.
    clip_model: str | None = None  # None: ViT-L-14
    clip_pretrained: str | None = None  # tag or local file; None: openai
    cmmd_model: str | None = None  # None: the --clip-* model if one was given, else ViT-L-14-336
    cmmd_pretrained: str | None = None
    rprecision_r: int | None = ScoreParams.rprecision_r  # None: min(100, distinct prompts of the cell)
    clip_aggregation: str = ScoreParams.clip_aggregation  # clamped (torchmetrics) | mean (MLPerf: 100 cos, no clamp)
    dc_k: int = ScoreParams.dc_k  # density/coverage's neighbourhood
    group_by: str | None = None  # plain folders: `folder` or a prompt/metadata column
    suite: str | None = None  # specs for adherence (a built-in suite name or a file); a run's own by default
    judge: str = "detector"  # adherence judge: detector, clip or shapes
    detector_model: str | None = None  # hub id or local folder (judge `detector`)
    ci: float | None = None  # add an interval at this level to every metric that declares a method
    ci_replicates: int = 200
    imagereward_model: str | None = None  # hub id, file or folder; None: THUDM/ImageReward
    hps_model: str | None = None  # v2.0 (or v2) | v2.1 | a file; None: v2.1
    pickscore_model: str | None = None  # hub id or folder; None: yuvalkirstain/PickScore_v1
    aesthetic_model: str | None = None  # the LAION v2 head: file or URL; None: its published .pth
    allow_pickle: bool = False  # load .pt/.pth/.bin checkpoints (pickles; torch.load with weights_only=True)
    vqa_model: str | None = None  # --judge vqa: hub id or folder; None: Salesforce/blip-vqa-base
    vqa_template: str | None = None  # --judge vqa: prompt of an image-text-to-text model, with {question}
    vqa_threshold: float | None = None  # --judge vqa: a question holds when P(yes) >= this; None: 0.5
    questions: str | None = None  # --judge vqa: a TIFA or DSG question file (default: questions from the specs)
    #: The feature inputs' option values given (sdeval.features.inputs), by key (`dinov2_model`); the others take
    #: their declared defaults.
    inputs: Mapping[str, Any] = field(default_factory=dict)
    #: A peer protocol by name (`protocol: clean-fid`; sdeval.options.protocols): its name, expansion, overrides.
    protocol_preset: Mapping[str, Any] | None = None

    @property
    def requested(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.metrics)) if self.metrics else registry.default_names()

    @property
    def params(self) -> ScoreParams:
        return ScoreParams(
            self.seed,
            self.kid_subsets,
            self.kid_subset_size,
            self.rprecision_r,
            clip_aggregation=self.clip_aggregation,
            dc_k=self.dc_k,
        )

    def input_values(self) -> dict[str, Any]:
        """Every registered feature input's option values by key: the one given, else the declared default (the
        ScoreOptions field of an option that is one)."""
        return {
            option.key: getattr(self, option.key) if option.score_field else self.inputs.get(option.key, option.default)
            for _, option in feature_inputs.options()
        }


def options_json(options: ScoreOptions) -> dict[str, Any]:
    """The options as JSON-ready values, each feature input's option beside the others (`dinov2_model`), as a part
    file and a bench stamp record them."""
    record = dataclasses.asdict(options)
    record.pop("inputs")
    record.update(options.input_values())
    return record


def defaults() -> dict[str, Any]:
    """Every option's default by name (ScoreOptions and FeatureOptions fields): the CLI shows these."""
    out = {}
    for cls in (ScoreOptions, FeatureOptions):
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
    return out


# -- reading options from a mapping (a config's `score:` section, or the command line's values) ----------------


class _Invalid(ValueError):
    """A value an option does not take; the message says what it expects."""


def _int(low: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool) and value >= low:
            return value
        raise _Invalid(f"an integer >= {low}")

    return check


def _text(value: Any) -> str:
    if isinstance(value, str) and value:
        return value
    raise _Invalid("text")


def _choice(choices: Callable[[], tuple[str, ...]]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value in choices():
            return value
        raise _Invalid(f"one of {', '.join(choices())}{did_you_mean(value, choices())}")

    return check


def _level(value: Any) -> float:
    if value is True:
        return 0.95
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0.5 <= value <= 0.999:
        return float(value)
    raise _Invalid("true or a level in [0.5, 0.999]")


def _unit(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0:
        return float(value)
    raise _Invalid("a number in [0, 1]")


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise _Invalid("true or false")


#: Each option a mapping may set, and its check (the value to use, or _Invalid saying what it expects).
_CHECKS: dict[str, Callable[[Any], Any]] = {
    "kid_subset_size": _int(2),
    "kid_subsets": _int(1),
    "seed": _int(0),
    "prompts": _text,
    "rprecision_r": _int(2),
    "clip_aggregation": _choice(lambda: CLIP_AGGREGATIONS),
    "dc_k": _int(1),
    "reference_protocol": _choice(lambda: PREPROCESS_MODES),
    "group_by": _text,
    "suite": _text,
    "judge": _choice(_judges),
    "detector_model": _text,
    "ci": _level,
    "ci_replicates": _int(20),
    "preprocess": _choice(lambda: PREPROCESS_MODES),
    "inception_weights": _text,
    "batch_size": _int(1),
    "workers": _int(0),
    "device": _text,
    "cache_dir": _text,  # default: the user's cache ($SDEVAL_CACHE_DIR or ~/.cache/sdeval)
    "no_cache": _flag,
    "imagereward_model": _text,
    "hps_model": _text,
    "pickscore_model": _text,
    "aesthetic_model": _text,
    "allow_pickle": _flag,
    "vqa_model": _text,
    "vqa_template": _text,
    "vqa_threshold": _unit,
    "questions": _text,
    "protocol": _choice(lambda: PROTOCOL_NAMES),  # expanded before the others are read (apply_preset)
}
#: Options naming a local file or folder where one exists (else a tag or hub id): taken from the config's folder.
_PATHS = (
    "prompts",
    "suite",
    "inception_weights",
    "detector_model",
    "cache_dir",
    "imagereward_model",
    "hps_model",
    "pickscore_model",
    "aesthetic_model",
    "vqa_model",
    "questions",
)
OPTION_KEYS = tuple(_CHECKS)


def option_keys() -> tuple[str, ...]:
    """Every option a mapping may set: the fixed ones, then the registered feature inputs' (a test or plugin may have
    added one; the CLIP models' are ScoreOptions fields all the same)."""
    return (*OPTION_KEYS, *feature_inputs.option_keys())


def _check(key: str, value: Any) -> Any:
    if key in _CHECKS:
        return _CHECKS[key](value)
    declared = {option.key: option for _, option in feature_inputs.options()}[key]
    try:
        return declared.check(value)
    except ValueError as err:
        raise _Invalid(str(err)) from None


def _is_path(key: str) -> bool:
    return key in _PATHS or any(option.key == key and option.path for _, option in feature_inputs.options())


def options_from_mapping(
    values: Mapping[str, Any],
    *,
    images: str,
    reference: str | None = None,
    metrics: tuple[str, ...] | None = None,
    where: str = "score",
    base_dir: Path | None = None,
    progress: bool = True,
) -> ScoreOptions:
    """ScoreOptions from option names and values (None: the default; the feature cache is the user's unless
    `no_cache`). Every key and value is checked, and each problem is a ConfigError naming `where.KEY`, with "did you
    mean" for unknown keys and choices. With `base_dir`, path-like options that exist relative to it are taken from
    there (a config file's own folder)."""
    check_keys(values, option_keys(), f"{where}.")
    values, preset = apply_preset(values, where)  # a peer protocol fills the options it names that were not given
    chosen: dict[str, Any] = {} if preset is None else {"protocol_preset": preset}
    for key, value in values.items():
        if value is None:
            continue
        try:
            checked = _check(key, value)
        except _Invalid as err:
            raise ConfigError(f"{where}.{key}: expected {err}, got {value!r}") from None
        if key == "suite":
            checked = str(resolve_suite_path(checked, base_dir or Path.cwd()))
        elif base_dir is not None and _is_path(key) and (base_dir / checked).exists():
            checked = str((base_dir / checked).resolve())
        chosen[key] = checked
    if chosen.pop("no_cache", False):
        chosen["cache_dir"] = None
    elif "cache_dir" not in chosen:
        chosen["cache_dir"] = str(cache_root())
    feature_keys = {f.name for f in dataclasses.fields(FeatureOptions)}
    input_keys = set(feature_inputs.option_keys(score_field=False))
    features = FeatureOptions(**{k: v for k, v in chosen.items() if k in feature_keys}, progress=progress)
    given = {k: v for k, v in chosen.items() if k in input_keys}
    score = {k: v for k, v in chosen.items() if k not in feature_keys and k not in input_keys}
    return ScoreOptions(images=images, reference=reference, metrics=metrics, features=features, inputs=given, **score)


def options_from_record(record: dict[str, Any], images: str, **runtime: Any) -> ScoreOptions:
    """The options a part was made with (`prepare.options_record`), with `runtime` ones set anew (ci, features'
    device or progress): what `sdeval merge` scores the merged parts with. Keys that are no ScoreOptions field are
    feature inputs' option values (`options_json` puts them beside the others)."""
    record = dict(record)
    features = dict(record.pop("features"))
    feature_runtime = {k: runtime.pop(k) for k in ("device", "progress") if k in runtime}
    metrics = tuple(record.pop("metrics"))
    fields = {f.name for f in dataclasses.fields(ScoreOptions)}
    given = {k: record.pop(k) for k in list(record) if k not in fields}
    return ScoreOptions(
        images=images,
        metrics=metrics,
        features=FeatureOptions(**features, **feature_runtime),
        **record,
        inputs={k: v for k, v in given.items() if v is not None},
        **runtime,
    )
