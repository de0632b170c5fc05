"""Click options that several commands share, with their defaults read from the options dataclasses (said once)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from sdeval.core.errors import SdevalError
from sdeval.features import inputs as feature_inputs
from sdeval.options.score import PREPROCESS_MODES, defaults

#: Option values that are FeatureOptions fields (besides the cache, which `--no-cache` turns off).
FEATURE_KEYS = ("preprocess", "inception_weights", "batch_size", "workers", "device", "cache_dir", "no_cache")
DEFAULTS = defaults()


def feature_options(func):
    """Options shared by every command that turns images into Inception features."""
    options = [
        click.option("--preprocess", type=click.Choice(PREPROCESS_MODES), default=DEFAULTS["preprocess"],
                     show_default=True,
                     help="legacy: torch-fidelity/TTUR bilinear resize; clean: clean-fid PIL bicubic; pytorch-fid: "
                     "F.interpolate bilinear, inputs 2x/255-1; torchmetrics: antialiased bilinear."),
        click.option("--inception-weights", type=click.Path(dir_okay=False), default=None,
                     help="torch-fidelity-format Inception state dict (.pth or .safetensors); "
                     "default: the standard weights."),
        click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULTS["batch_size"], show_default=True),
        click.option("--workers", type=click.IntRange(min=0), default=DEFAULTS["workers"], show_default=True,
                     help="decoding processes (0: decode in the main process)."),
        click.option("--device", default=DEFAULTS["device"], show_default=True, help="auto, cpu or cuda[:N]."),
        click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
                     help="feature cache folder [default: $SDEVAL_CACHE_DIR or ~/.cache/sdeval]."),
        click.option("--no-cache", is_flag=True, help="neither read nor write the feature cache."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def feature_values(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The feature options' values, taken out of a command's keyword arguments."""
    return {key: kwargs.pop(key) for key in FEATURE_KEYS}


def make_feature_options(kwargs: dict[str, Any]) -> Any:
    """FeatureOptions from a command's feature options (taken out of `kwargs`), through the shared reader."""
    from sdeval.options.score import options_from_mapping  # the metric registry (numpy): when a command runs

    return options_from_mapping(feature_values(kwargs), images="", where="option").features


def clip_options(func):
    """--clip-* (CLIP score, R-precision, diversity) and --cmmd-* (CMMD) model choices, as their feature inputs
    declare them (features/clip_input.py): options that are ScoreOptions fields, placed by the command. Read from
    that module, not the registry: making the command reads no installed package's entry points."""
    from sdeval.features.clip_input import CLIP, CMMD  # the two declarations (light: no torch, no open_clip)

    for option in reversed([*CLIP.options, *CMMD.options]):
        attrs = _input_attrs(option, option.help)
        func = click.option(*attrs.pop("param_decls"), cls=_InputHelp, **attrs)(func)
    return func


def _input_attrs(option: Any, text: str, reference: bool = False) -> dict[str, Any]:
    """A feature input option's click parameter (`_InputHelp`): `--KEY`, None when not given (the declared default,
    named in its help)."""
    return {"param_decls": [option.flag, option.key], "type": _click_type(option), "default": None,
            "metavar": option.metavar, "input_option": option, "text": text, "reference": reference}  # fmt: skip


class InputsCommand(click.Command):
    """A command with options generated from the registered feature inputs (sdeval.features.inputs) each time it
    parses or shows help, so an input registered after the command was made (a plugin, a test) has its options too;
    `make_options()` makes them and they go before the parameter named `inputs_before`."""

    def __init__(self, *args: Any, make_options: Callable[[], list[click.Parameter]], inputs_before: str,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(*args, **kwargs)
        self.make_options = make_options
        self.inputs_before = inputs_before

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)
        at = next((i for i, param in enumerate(params) if param.name == self.inputs_before), len(params))
        return [*params[:at], *self.make_options(), *params[at:]]


class _InputHelp(click.Option):
    """A feature input's option, whose help names its default when shown (reading it may import its module)."""

    def __init__(self, *args: Any, input_option: Any, text: str, reference: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.input_option = input_option
        self.text = text
        self.reference = reference  # `reference build`'s default, where the option declares one of its own

    def get_help_record(self, ctx: click.Context):
        self.help = f"{self.text} [default: {self.input_option.describe_default(self.reference)}]."
        return super().get_help_record(ctx)


def _click_type(option: Any) -> Any:
    if option.kind is int:
        return click.IntRange(min=None if option.minimum is None else int(option.minimum))
    if option.kind is float:
        return click.FloatRange(min=option.minimum)
    return None


def input_options() -> list[click.Parameter]:
    """`sdeval score`'s options of every feature input but those that are ScoreOptions fields (`clip_options`):
    `--KEY`, None when not given (the declared default)."""
    return [_InputHelp(**_input_attrs(option, option.help)) for _, option in feature_inputs.options(score_field=False)]


def reference_input_options() -> list[click.Parameter]:
    """`sdeval reference build`'s options of every feature input that references may store: `--NAME` stores its rows,
    and its options (each implies `--NAME`); one every reference stores has no flag (Inception's options are the
    feature options)."""
    out: list[click.Parameter] = []
    for declared in feature_inputs.inputs():
        if not declared.reference or declared.always_stored:
            continue
        out.append(click.Option([declared.flag, f"store_{declared.name}"], is_flag=True,
                                help=f"also store {declared.stores or f'the {declared.name} features'} (same decode "
                                "pass)."))  # fmt: skip
        for option in declared.options:
            text = f"{option.reference_help or option.help} (implies {declared.flag})"
            out.append(_InputHelp(**_input_attrs(option, text, reference=True)))
    return out


def input_values(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The feature inputs' option values given, taken out of a command's keyword arguments."""
    return {key: kwargs.pop(key) for key in feature_inputs.option_keys() if key in kwargs}


def stored_inputs(kwargs: dict[str, Any], values: dict[str, Any]) -> tuple[str, ...]:
    """The feature inputs `reference build` stores besides those every reference stores: their flag given (taken out
    of `kwargs`), or one of their options given in `values`."""
    return tuple(
        declared.name
        for declared in feature_inputs.inputs()
        if declared.reference
        and not declared.always_stored
        and (
            kwargs.pop(f"store_{declared.name}", False) or any(values.get(o.key) is not None for o in declared.options)
        )
    )


class MetricsHelp(click.Option):
    """--metrics, whose help lists the registered metrics when shown (a test module may have added one)."""

    def get_help_record(self, ctx: click.Context):
        from sdeval.metrics import registry  # numpy and the registrations: when the help is shown, not at start-up

        self.help = f"comma-separated metrics: {', '.join(registry.names())} (see `sdeval metrics`)."
        return super().get_help_record(ctx)


class CiHelp(click.Option):
    """--ci, whose help names the result keys with a jackknife interval, read from their registrations when shown."""

    def get_help_record(self, ctx: click.Context):
        # numpy and the registrations: when the help is shown, not at start-up
        from sdeval.metrics import registry
        from sdeval.metrics.registry import Jackknife

        jackknife = [result.key for result in registry.result_keys() if isinstance(result.interval, Jackknife)]
        self.help = (
            f"add an interval to every metric (bootstrap over prompts; block jackknife for {', '.join(jackknife)}; "
            "docs/statistics.md) at LEVEL [flag alone: 0.95]."
        )
        return super().get_help_record(ctx)


def parse_metrics(text: str) -> tuple[str, ...]:
    names = tuple(part.strip().lower() for part in text.split(",") if part.strip())
    if not names:
        raise SdevalError("--metrics is empty")
    return names
