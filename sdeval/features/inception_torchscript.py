"""clean-fid's Inception weights, `inception-2015-12-05.pt`: a TorchScript file (NVlabs' StyleGAN2-ADA metrics
file, which clean-fid downloads and runs through `torch.jit.load` in `cleanfid/inception_torchscript.py`), read
into torch-fidelity's state dict layout, so `--inception-weights inception-2015-12-05.pt` serves every route.

The file holds the same TF 2015-12-05 Inception graph as torch-fidelity's and pytorch-fid's weights, under other
names. Each convolution with its batch norm is one module with `weight`, `beta`, `mean` and `var` (no scale: it is 1;
eps 1e-3, as torch-fidelity's), under `layers.{conv, conv_1, ..., mixed, mixed_1, ..., mixed_10}` with towers
`tower`, `tower_1`, `tower_2` (sequentials of `conv`, `conv_1`, ...) and, in the last two blocks, `tower_conv`,
`tower_mixed_conv`, ...; the classifier is `output.weight` / `output.bias`. The names and the order in which each
block concatenates its towers come from two public ports of that file:
- openai/consistency_models `evaluations/inception_v3.py` (commit 3d86141), a PyTorch module with those parameter
  names, ported from NVlabs/stylegan3 `metrics/frechet_inception_distance.py`;
- miemie2013/ppgan `convert_weights/inception_convert_weights.py` (commit 9d99cb3), which copies the file's state
  dict onto a torchvision-style network (`.conv.weight` <- `.weight`, `.bn.bias` <- `.beta`, `.bn.running_mean` <-
  `.mean`, `.bn.running_var` <- `.var`, `output.*`) and `ppgan/metrics/inception_paddle.py` (commit 8aa6481).

The file is read with `torch.jit.load` (TorchScript: no Python object is unpickled) and only its tensors are kept:
its code is never run.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch

from sdeval.core.errors import SdevalError

#: torch-fidelity's block -> the TorchScript block, and each of the block's convolutions by their names in both.
_STEM = [("Conv2d_1a_3x3", "conv"), ("Conv2d_2a_3x3", "conv_1"), ("Conv2d_2b_3x3", "conv_2"),
         ("Conv2d_3b_1x1", "conv_3"), ("Conv2d_4a_3x3", "conv_4")]  # fmt: skip
_A = [("branch1x1", "conv"), ("branch5x5_1", "tower.conv"), ("branch5x5_2", "tower.conv_1"),
      ("branch3x3dbl_1", "tower_1.conv"), ("branch3x3dbl_2", "tower_1.conv_1"), ("branch3x3dbl_3", "tower_1.conv_2"),
      ("branch_pool", "tower_2.conv")]  # fmt: skip
_B = [("branch3x3", "conv"), ("branch3x3dbl_1", "tower.conv"), ("branch3x3dbl_2", "tower.conv_1"),
      ("branch3x3dbl_3", "tower.conv_2")]  # fmt: skip
_C = [("branch1x1", "conv"), ("branch7x7_1", "tower.conv"), ("branch7x7_2", "tower.conv_1"),
      ("branch7x7_3", "tower.conv_2"), ("branch7x7dbl_1", "tower_1.conv"), ("branch7x7dbl_2", "tower_1.conv_1"),
      ("branch7x7dbl_3", "tower_1.conv_2"), ("branch7x7dbl_4", "tower_1.conv_3"), ("branch7x7dbl_5", "tower_1.conv_4"),
      ("branch_pool", "tower_2.conv")]  # fmt: skip
_D = [("branch3x3_1", "tower.conv"), ("branch3x3_2", "tower.conv_1"), ("branch7x7x3_1", "tower_1.conv"),
      ("branch7x7x3_2", "tower_1.conv_1"), ("branch7x7x3_3", "tower_1.conv_2"),
      ("branch7x7x3_4", "tower_1.conv_3")]  # fmt: skip
_E = [("branch1x1", "conv"), ("branch3x3_1", "tower_conv"), ("branch3x3_2a", "tower_mixed_conv"),
      ("branch3x3_2b", "tower_mixed_conv_1"), ("branch3x3dbl_1", "tower_1_conv"), ("branch3x3dbl_2", "tower_1_conv_1"),
      ("branch3x3dbl_3a", "tower_1_mixed_conv"), ("branch3x3dbl_3b", "tower_1_mixed_conv_1"),
      ("branch_pool", "tower_2_conv")]  # fmt: skip
_BLOCKS = [("Mixed_5b", "mixed", _A), ("Mixed_5c", "mixed_1", _A), ("Mixed_5d", "mixed_2", _A),
           ("Mixed_6a", "mixed_3", _B), ("Mixed_6b", "mixed_4", _C), ("Mixed_6c", "mixed_5", _C),
           ("Mixed_6d", "mixed_6", _C), ("Mixed_6e", "mixed_7", _C), ("Mixed_7a", "mixed_8", _D),
           ("Mixed_7b", "mixed_9", _E), ("Mixed_7c", "mixed_10", _E)]  # fmt: skip


def conv_names() -> list[tuple[str, str]]:
    """(torch-fidelity's BasicConv2d path, the TorchScript file's conv+bn module path), for all 94 of them."""
    names = [(ours, f"layers.{theirs}") for ours, theirs in _STEM]
    for ours, theirs, convs in _BLOCKS:
        names += [(f"{ours}.{a}", f"layers.{theirs}.{b}") for a, b in convs]
    return names


def is_torchscript(path: Path) -> bool:
    """Whether `path` is a TorchScript archive (a zip with code/ and constants.pkl), not a torch.save state dict."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        entries = archive.namelist()
    return any(e.endswith("/constants.pkl") for e in entries) and any("/code/" in e for e in entries)


def convert(tensors: dict[str, torch.Tensor], where: str = "TorchScript Inception") -> dict[str, torch.Tensor]:
    """The file's tensors by torch-fidelity's state dict names (batch norm scales 1, batches tracked 0)."""
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(name: str) -> torch.Tensor:
        if name not in tensors:
            raise SdevalError(f"{where}: no tensor {name!r}; not clean-fid's inception-2015-12-05.pt layout")
        used.add(name)
        return tensors[name]

    for ours, theirs in conv_names():
        out[f"{ours}.conv.weight"] = take(f"{theirs}.weight")
        beta = take(f"{theirs}.beta")
        out[f"{ours}.bn.weight"] = torch.ones_like(beta)
        out[f"{ours}.bn.bias"] = beta
        out[f"{ours}.bn.running_mean"] = take(f"{theirs}.mean")
        out[f"{ours}.bn.running_var"] = take(f"{theirs}.var")
        out[f"{ours}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    out["fc.weight"], out["fc.bias"] = take("output.weight"), take("output.bias")
    extra = sorted(set(tensors) - used)
    if extra:
        raise SdevalError(f"{where}: unexpected tensors {', '.join(extra[:5])}; not clean-fid's layout")
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def read_torchscript(path: Path) -> dict[str, torch.Tensor]:
    """torch-fidelity's state dict from clean-fid's TorchScript Inception file."""
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as err:
        raise SdevalError(f"{path}: not a readable TorchScript file ({str(err)[:200]})") from None
    return convert(dict(module.state_dict()), str(path))
