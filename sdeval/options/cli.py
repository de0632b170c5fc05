"""Click options that several commands share, with their defaults read from the options dataclasses (said once)."""

from __future__ import annotations

from typing import Any

import click

from sdeval.core.errors import SdevalError
from sdeval.options.score import PREPROCESS_MODES, defaults

#: Option values that are FeatureOptions fields (besides the cache, which `--no-cache` turns off).
FEATURE_KEYS = ("preprocess", "inception_weights", "batch_size", "workers", "device", "cache_dir", "no_cache")
DEFAULTS = defaults()


def feature_options(func):
    """Options shared by every command that turns images into Inception features."""
    options = [
        click.option("--preprocess", type=click.Choice(PREPROCESS_MODES), default=DEFAULTS["preprocess"],
                     show_default=True,
                     help="legacy: torch-fidelity/TTUR bilinear resize; clean: clean-fid PIL bicubic."),
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
    from sdeval.options.score import options_from_mapping

    return options_from_mapping(feature_values(kwargs), images="", where="option").features


def clip_options(func):
    """--clip-* (CLIP score, R-precision, diversity) and --cmmd-* (CMMD) model choices."""
    options = [
        click.option("--clip-model", default=None, metavar="NAME",
                     help="open_clip model for clip, rprecision, diversity [default: ViT-L-14]."),
        click.option("--clip-pretrained", default=None, metavar="TAG|PATH",
                     help="its weights: an open_clip tag or a local file (works offline) [default: openai]."),
        click.option("--cmmd-model", default=None, metavar="NAME",
                     help="open_clip model for cmmd [default: the --clip-* model if one was given, "
                     "else the paper's ViT-L-14-336]."),
        click.option("--cmmd-pretrained", default=None, metavar="TAG|PATH",
                     help="its weights, tag or local file [default: openai]."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


class MetricsHelp(click.Option):
    """--metrics, whose help lists the registered metrics when shown (a test module may have added one)."""

    def get_help_record(self, ctx: click.Context):
        from sdeval.metrics import registry

        self.help = f"comma-separated metrics: {', '.join(registry.names())} (see `sdeval metrics`)."
        return super().get_help_record(ctx)


class CiHelp(click.Option):
    """--ci, whose help names the result keys with a jackknife interval, read from their registrations when shown."""

    def get_help_record(self, ctx: click.Context):
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
