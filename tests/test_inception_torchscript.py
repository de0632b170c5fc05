"""clean-fid's TorchScript Inception file (`inception-2015-12-05.pt`) read as torch-fidelity weights.

The real file cannot be fetched here: the test scripts a network with that file's module and parameter names and
its computation (as the public ports in sdeval/features/inception_torchscript.py describe it: conv, batch norm
without scale at eps 1e-3, relu; each block's towers concatenated in their order), with random values everywhere,
saves it as TorchScript, and checks that `--inception-weights FILE.pt` gives that network's pool3 features and
unbiased logits.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from sdeval.core.errors import SdevalError
from sdeval.features.inception import LOGITS, POOL, InceptionExtractor
from sdeval.features.inception_torchscript import conv_names, is_torchscript, read_torchscript


class _Conv(nn.Module):
    def __init__(
        self, cin: int, cout: int, k: tuple[int, int] | int, stride: int = 1, padding: int | tuple[int, int] = 0
    ) -> None:
        super().__init__()
        kh, kw = (k, k) if isinstance(k, int) else k
        self.stride, self.padding = stride, [padding, padding] if isinstance(padding, int) else list(padding)
        self.weight = nn.Parameter(torch.randn(cout, cin, kh, kw) * (2.0 / (cin * kh * kw)) ** 0.5)
        self.beta = nn.Parameter(torch.randn(cout) * 0.1)
        self.mean = nn.Parameter(torch.randn(cout) * 0.1)
        self.var = nn.Parameter(torch.rand(cout) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight, None, self.stride, self.padding)
        return F.relu(F.batch_norm(x, self.mean, self.var, None, self.beta, False, 0.0, 1e-3))


def _seq(*convs: tuple[str, nn.Module]) -> nn.Sequential:
    return nn.Sequential(OrderedDict(convs))


def _avg() -> nn.Module:
    return nn.AvgPool2d(3, 1, 1, count_include_pad=False)


class _A(nn.Module):
    def __init__(self, c: int, pool: int) -> None:
        super().__init__()
        self.conv = _Conv(c, 64, 1)
        self.tower = _seq(("conv", _Conv(c, 48, 1)), ("conv_1", _Conv(48, 64, 5, padding=2)))
        self.tower_1 = _seq(("conv", _Conv(c, 64, 1)), ("conv_1", _Conv(64, 96, 3, padding=1)),
                            ("conv_2", _Conv(96, 96, 3, padding=1)))  # fmt: skip
        self.tower_2 = _seq(("pool", _avg()), ("conv", _Conv(c, pool, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class _B(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = _Conv(c, 384, 3, stride=2)
        self.tower = _seq(("conv", _Conv(c, 64, 1)), ("conv_1", _Conv(64, 96, 3, padding=1)),
                          ("conv_2", _Conv(96, 96, 3, stride=2)))  # fmt: skip
        self.pool = nn.MaxPool2d(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.pool(x)], 1)


class _C(nn.Module):
    def __init__(self, c: int, m: int) -> None:
        super().__init__()
        self.conv = _Conv(c, 192, 1)
        self.tower = _seq(("conv", _Conv(c, m, 1)), ("conv_1", _Conv(m, m, (1, 7), padding=(0, 3))),
                          ("conv_2", _Conv(m, 192, (7, 1), padding=(3, 0))))  # fmt: skip
        self.tower_1 = _seq(("conv", _Conv(c, m, 1)), ("conv_1", _Conv(m, m, (7, 1), padding=(3, 0))),
                            ("conv_2", _Conv(m, m, (1, 7), padding=(0, 3))),
                            ("conv_3", _Conv(m, m, (7, 1), padding=(3, 0))),
                            ("conv_4", _Conv(m, 192, (1, 7), padding=(0, 3))))  # fmt: skip
        self.tower_2 = _seq(("pool", _avg()), ("conv", _Conv(c, 192, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class _D(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.tower = _seq(("conv", _Conv(c, 192, 1)), ("conv_1", _Conv(192, 320, 3, stride=2)))
        self.tower_1 = _seq(("conv", _Conv(c, 192, 1)), ("conv_1", _Conv(192, 192, (1, 7), padding=(0, 3))),
                            ("conv_2", _Conv(192, 192, (7, 1), padding=(3, 0))),
                            ("conv_3", _Conv(192, 192, 3, stride=2)))  # fmt: skip
        self.pool = nn.MaxPool2d(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.tower(x), self.tower_1(x), self.pool(x)], 1)


class _E(nn.Module):
    def __init__(self, c: int, average: bool) -> None:
        super().__init__()
        self.conv = _Conv(c, 320, 1)
        self.tower_conv = _Conv(c, 384, 1)
        self.tower_mixed_conv = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.tower_mixed_conv_1 = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.tower_1_conv = _Conv(c, 448, 1)
        self.tower_1_conv_1 = _Conv(448, 384, 3, padding=1)
        self.tower_1_mixed_conv = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.tower_1_mixed_conv_1 = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.tower_2_pool = _avg() if average else nn.MaxPool2d(3, 1, 1)
        self.tower_2_conv = _Conv(c, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.tower_conv(x)
        b = self.tower_1_conv_1(self.tower_1_conv(x))
        towers = [self.conv(x), self.tower_mixed_conv(a), self.tower_mixed_conv_1(a), self.tower_1_mixed_conv(b),
                  self.tower_1_mixed_conv_1(b), self.tower_2_conv(self.tower_2_pool(x))]  # fmt: skip
        return torch.cat(towers, 1)


class _CleanFidInception(nn.Module):
    """The TorchScript file's names and computation after its resize: `layers` on (x - 128) / 128, then `output`."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = _seq(
            ("conv", _Conv(3, 32, 3, stride=2)), ("conv_1", _Conv(32, 32, 3)), ("conv_2", _Conv(32, 64, 3, padding=1)),
            ("pool0", nn.MaxPool2d(3, 2)), ("conv_3", _Conv(64, 80, 1)), ("conv_4", _Conv(80, 192, 3)),
            ("pool1", nn.MaxPool2d(3, 2)), ("mixed", _A(192, 32)), ("mixed_1", _A(256, 64)), ("mixed_2", _A(288, 64)),
            ("mixed_3", _B(288)), ("mixed_4", _C(768, 128)), ("mixed_5", _C(768, 160)), ("mixed_6", _C(768, 160)),
            ("mixed_7", _C(768, 192)), ("mixed_8", _D(768)), ("mixed_9", _E(1280, True)), ("mixed_10", _E(2048, False)),
            ("pool2", nn.AvgPool2d(8)),
        )  # fmt: skip
        self.output = nn.Linear(2048, 1008)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers((x - 128) / 128).reshape(-1, 2048)


pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")  # clean-fid's format is TorchScript


@pytest.fixture(scope="module")
def scripted(tmp_path_factory) -> tuple[Path, nn.Module]:
    """The TorchScript file, and the eager module it was scripted from (run eagerly: no JIT warm-up)."""
    torch.manual_seed(0)
    module = _CleanFidInception().eval()
    path = tmp_path_factory.mktemp("cleanfid") / "inception-2015-12-05.pt"
    torch.jit.script(module).save(str(path))
    return path, module


def test_clean_fids_torchscript_file_reads_as_torch_fidelity_weights(scripted):
    path, module = scripted
    assert is_torchscript(path)
    theirs = module.state_dict()
    ours = read_torchscript(path)
    assert len(conv_names()) == 94  # every conv + batch norm of the file has its place
    for fidelity, torchscript in conv_names():
        assert torch.equal(ours[f"{fidelity}.conv.weight"], theirs[f"{torchscript}.weight"])
        assert torch.equal(ours[f"{fidelity}.bn.bias"], theirs[f"{torchscript}.beta"])
        assert torch.equal(ours[f"{fidelity}.bn.running_var"], theirs[f"{torchscript}.var"])
        assert torch.equal(ours[f"{fidelity}.bn.weight"], torch.ones_like(theirs[f"{torchscript}.beta"]))
    assert torch.equal(ours["fc.bias"], theirs["output.bias"])
    # torch-fidelity's own network takes them as they are: every key, every shape
    nn.Module.load_state_dict(_skeleton(), ours)  # the module's own loader (the skeleton skips an empty dict)


def _skeleton() -> nn.Module:
    from sdeval.features.random_weights import _Skeleton

    return _Skeleton("inception-v3-compat", ["2048"], feature_extractor_weights_path=_empty())


def _empty():
    import io

    buffer = io.BytesIO()
    torch.save({}, buffer)
    buffer.seek(0)
    return buffer


@pytest.mark.slow  # two Inception forwards of the unfolded test network: ~7 s of CPU
def test_clean_fids_torchscript_file_gives_its_networks_features(scripted):
    path, module = scripted
    x = torch.from_numpy(np.random.default_rng(0).uniform(0, 255, (2, 3, 299, 299)).astype(np.float32))
    with torch.inference_mode():
        pool = module(x)
        logits = pool @ module.output.weight.T
    ours = InceptionExtractor(path).extract(x)  # what --inception-weights FILE.pt gives
    assert float((ours[POOL] - pool).norm() / pool.norm()) < 1e-5
    assert float((ours[LOGITS] - logits).norm() / logits.norm()) < 1e-5


def test_a_torchscript_file_of_another_layout_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.jit.script(nn.Linear(3, 2)).save(str(path))
    with pytest.raises(SdevalError, match=r"inception-2015-12-05\.pt"):
        _ = InceptionExtractor(path).network
