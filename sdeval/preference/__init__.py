"""Human-preference scorers: ImageReward, HPS v2/v2.1, PickScore and the LAION aesthetic predictor v2.

Each is a per-image metric (higher is better) built from the real model classes, loaded strictly from a hub id
or a local path; local paths never touch the network, and pickle checkpoints load only with allow_pickle=True.
`scorer_info(name)` gives a scorer's metadata (direction, range, prompt_relative, default_model) without importing
it (info.py, no torch); `scorer_class(name)` imports its class; `load_scorer(name, model, ...)` builds it. This
package imports no scorer module until one is used, so the help and the metric registrations stay light.
"""

from __future__ import annotations

import importlib
import inspect
from typing import TYPE_CHECKING, Any

from sdeval.core.errors import SdevalError
from sdeval.core.registry import Registry
from sdeval.preference.info import BUILTIN, ScorerInfo

if TYPE_CHECKING:
    import torch

    from sdeval.preference.aesthetic import AestheticScorer
    from sdeval.preference.base import EmbeddingScorer, PreferenceScorer
    from sdeval.preference.hps import HpsScorer
    from sdeval.preference.imagereward import ImageRewardScorer
    from sdeval.preference.pickscore import PickScoreScorer

__all__ = [
    "SCORERS",
    "AestheticScorer",
    "EmbeddingScorer",
    "HpsScorer",
    "ImageRewardScorer",
    "PickScoreScorer",
    "PreferenceScorer",
    "load_scorer",
    "scorer_class",
    "scorer_info",
    "scorer_options",
]

#: The classes this package names, imported on first access (their modules import torch).
_LAZY = {
    "AestheticScorer": "sdeval.preference.aesthetic",
    "EmbeddingScorer": "sdeval.preference.base",
    "HpsScorer": "sdeval.preference.hps",
    "ImageRewardScorer": "sdeval.preference.imagereward",
    "PickScoreScorer": "sdeval.preference.pickscore",
    "PreferenceScorer": "sdeval.preference.base",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _check(name: str, cls: type[Any]) -> None:
    if getattr(cls, "name", None) != name or not callable(getattr(cls, "load", None)):
        raise SdevalError(f"preference scorer {name!r}: {cls!r} is no scorer class named {name!r} with a load()")


#: Every preference scorer by its metric name: the built-ins (lazy references), then the `sdeval.scorers` entry
#: points of installed packages (each a scorer class, as the built-ins are).
SCORERS: Registry[type[Any]] = Registry("preference scorer", group="sdeval.scorers", check=_check)
for _name, (_, _target) in BUILTIN.items():
    SCORERS.register(_name, _target)
_COMMON = ("model", "device", "allow_pickle", "batch_size")


def scorer_info(name: str) -> ScorerInfo:
    """A scorer's metadata: a built-in's from info.py (nothing imported), a plugin's from its class."""
    builtin = BUILTIN.get(name)
    return builtin[0] if builtin is not None else ScorerInfo.of(scorer_class(name))


def scorer_class(name: str) -> type[Any]:
    """The class of a scorer, imported (its metadata is on the class: no model is loaded)."""
    return SCORERS.get(name)


def scorer_options(name: str) -> tuple[str, ...]:
    """The scorer-specific keyword options of `load_scorer(name, ...)` (e.g. `tokenizer` for imagereward)."""
    parameters = inspect.signature(scorer_class(name).load).parameters
    return tuple(p for p in parameters if p not in _COMMON and p != "cls")


def load_scorer(
    name: str,
    model: str | None = None,
    *,
    device: str | torch.device = "cpu",
    allow_pickle: bool = False,
    batch_size: int = 32,
    **options: Any,
) -> PreferenceScorer:
    """Build scorer `name` from `model` (a hub id, version, URL or local path; None: the scorer's default).

    `options` are the scorer's own (see `scorer_options`): imagereward `tokenizer`; hps `arch`; pickscore
    `processor`; aesthetic `clip_model`, `clip_pretrained`, `embedder`.
    """
    cls = scorer_class(name)
    unknown = sorted(set(options) - set(scorer_options(name)))
    if unknown:
        known = ", ".join(scorer_options(name)) or "none"
        raise SdevalError(f"preference scorer {name!r} has no option(s) {', '.join(unknown)} (its options: {known})")
    return cls.load(model, device=device, allow_pickle=allow_pickle, batch_size=batch_size, **options)
