"""Peer protocols by name: `--protocol torch-fidelity|clean-fid|pytorch-fid|torchmetrics` (`score.protocol` in a
bench config) sets every choice that moves the peer's number, so sdeval's number can be put beside the peer's.

A preset fills the options it names where the user gave none; an option given beside a preset wins and is recorded
as overridden. The results record the preset, its expansion and the overrides in the protocol's `preset` block
(informative: the expanded options are recorded, binding, where they always are). What a preset cannot follow (a
peer's unseeded random draws) is said in its notes. Defaults stay sdeval's own (torch-fidelity's numbers).

Each peer's choices, read from its code:
- torch-fidelity: TF1-compatible bilinear resize of uint8 input (`legacy`), statistics in float64, KID 100 subsets
  of 1000 drawn by `np.random.RandomState(seed)` (seed 2020), IS 10 splits.
- clean-fid: PIL bicubic on float32 channels (`clean`), float64 statistics, KID 100 subsets of min(n, 1000) drawn by
  the unseeded global `np.random`: sdeval draws seeded subsets of the same size.
- pytorch-fid: [0, 1] floats, bilinear `F.interpolate` (`align_corners=False`), 2x - 1 (`pytorch-fid`); FID only,
  float64 statistics (numpy/scipy).
- torchmetrics: antialiased bilinear `F.interpolate` on 0..255 (`torchmetrics`, its default `antialias=True`),
  float64 statistics, KID 100 subsets of 1000 by unseeded `torch.randperm`; CLIPScore is 100 x cosine averaged, the
  mean clamped at 0 (`mean`: equal unless the mean cosine is negative).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sdeval.core.errors import ConfigError
from sdeval.core.suggest import did_you_mean


@dataclass(frozen=True)
class Preset:
    name: str
    values: Mapping[str, Any]  # option key -> value (ScoreOptions / FeatureOptions names)
    notes: tuple[str, ...] = field(default=())


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("torch-fidelity", {"preprocess": "legacy", "kid_subsets": 100, "seed": 2020},
               ("KID subsets of min(1000, n, n_reference); torch-fidelity refuses fewer than 1000 images",)),
        Preset("clean-fid", {"preprocess": "clean", "kid_subsets": 100},
               ("clean-fid draws KID subsets unseeded: sdeval's are seeded, of the same size; compare with "
                "subsets equal to the whole set (kid_subset_size = n)", "clean-fid has no Inception Score")),
        Preset("pytorch-fid", {"preprocess": "pytorch-fid"},
               ("pytorch-fid computes FID only: other metrics follow sdeval's defaults",)),
        Preset("torchmetrics", {"preprocess": "torchmetrics", "kid_subsets": 100, "clip_aggregation": "mean"},
               ("torchmetrics draws KID subsets by unseeded torch.randperm: sdeval's are seeded, of the same size",
                "torchmetrics clamps the mean CLIP score at 0; sdeval's `mean` does not (equal unless the mean "
                "cosine is negative)")),
    )
}  # fmt: skip
NAMES = tuple(PRESETS)


def apply_preset(values: Mapping[str, Any], where: str = "score") -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(the options with the preset's filled in where none was given, the preset's record) for a mapping that may
    name one under `protocol`; (the options, None) when none is named."""
    out = dict(values)
    name = out.pop("protocol", None)
    if name is None:
        return out, None
    if name not in PRESETS:
        raise ConfigError(f"{where}.protocol: expected one of {', '.join(NAMES)}{did_you_mean(str(name), NAMES)}, "
                          f"got {name!r}")  # fmt: skip
    preset = PRESETS[name]
    overridden = {k: out[k] for k, v in preset.values.items() if out.get(k) is not None and out[k] != v}
    for key, value in preset.values.items():
        if out.get(key) is None:
            out[key] = value
    record = {"name": name, "expansion": dict(preset.values), "overridden": overridden, "notes": list(preset.notes)}
    return out, record
