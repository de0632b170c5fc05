"""Inception-v3 features through torch-fidelity's FeatureExtractorInceptionV3, by one of four input routes.

Every route resizes in the decode workers and feeds the network a float [N, 3, 299, 299] batch on its 0..255
scale (the network maps it to [-1, 1] as (x - 128) / 128):
- legacy: torch-fidelity's TF1-compatible bilinear resize, the function its forward applies, bit for bit
  (per image, so batching images of different sizes is possible; at 299x299 its in-network resize is
  the identity, which a test checks against the library's uint8 forward); torchmetrics' FID takes this route;
- clean: clean-fid's clean mode, PIL bicubic on each float32 channel, clipped to 0..255;
- pytorch-fid: pytorch-fid's (and MLPerf's): the image as floats in [0, 1], `F.interpolate` bilinear to 299 with
  `align_corners=False`, then 2x - 1. Given to the network as 256x, whose (x - 128) / 128 is that 2x - 1;
- torchmetrics: torchmetrics' FID/KID/IS since 1.4 (`antialias=True`, its default): `F.interpolate` bilinear with
  antialiasing on the 0..255 floats (a downscale averages over the source pixels; an upscale equals plain bilinear).
  With `antialias=False` torchmetrics takes the legacy route.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.error import HTTPError
from urllib.parse import urlsplit

import numpy as np
import safetensors.torch
import torch
from PIL import Image

from sdeval.core.errors import SdevalError
from sdeval.core.hashing import file_sha256
from sdeval.core.offline import require_download
from sdeval.features import inception_input
from sdeval.features import inception_spatial as spatial_input
from sdeval.features.inception_torchscript import is_torchscript, read_torchscript
from sdeval.features.inception_weights import (
    STANDARD_WEIGHTS_NAMES,
    STANDARD_WEIGHTS_SHA256,
    STANDARD_WEIGHTS_SIZE,
    URL_INCEPTION_V3,
)

if TYPE_CHECKING:
    from sdeval.features.inception_network import InceptionNetwork

EXTRACTOR_NAME = "inception-v3-compat (torch-fidelity)"
INPUT_SIZE = 299
POOL = inception_input.POOL  # 2048-d pool3 features (FID, KID, precision/recall)
LOGITS = inception_input.LOGITS  # 1008-d logits without bias (Inception Score, as torch-fidelity)
SPATIAL = spatial_input.FEATURE  # 2023-d mixed_6/conv spatial features (sFID; features/inception_spatial.py)
PREPROCESS_MODES = ("legacy", "clean", "pytorch-fid", "torchmetrics")


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors, from a torch file through the safe (weights_only) unpickler, or from clean-fid's
    TorchScript file (its tensors under torch-fidelity's names: features/inception_torchscript.py)."""
    if is_torchscript(path):
        return read_torchscript(path)
    try:
        if path.suffix == ".safetensors":
            return safetensors.torch.load_file(str(path))
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise SdevalError(f"{path}: not a readable state dict ({str(err)[:200]})") from None
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise SdevalError(f"{path}: expected a dict of tensors (a state dict)")
    return state_dict


# The standard weights' names, size, sha256 and URL: features/inception_weights.py, where `sdeval models` reads
# them without torch.


def standard_weights_path() -> Path:
    """Where torch.hub keeps torch-fidelity's standard Inception weights (downloaded there on first use)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / STANDARD_WEIGHTS_NAMES[0]


def find_standard_weights() -> Path | None:
    """The standard weights in torch.hub's folder under either name (a copy of pytorch-fid's file counts), or None."""
    folder = standard_weights_path().parent
    return next((folder / name for name in STANDARD_WEIGHTS_NAMES if (folder / name).is_file()), None)


def standard_weights_problem(path: Path, sha256: str | None = None) -> str | None:
    """Why the file at `path` is not the standard weights (its size, else its sha256), or None when it is."""
    size = path.stat().st_size
    if size != STANDARD_WEIGHTS_SIZE:
        return f"{size:,} bytes, not the standard weights' {STANDARD_WEIGHTS_SIZE:,}"
    sha256 = sha256 or file_sha256(path)
    if sha256 != STANDARD_WEIGHTS_SHA256:
        return f"sha256 {sha256[:12]}..., not the standard weights' {STANDARD_WEIGHTS_SHA256[:12]}..."
    return None


def _tf1_axis(size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source index below and above each of the 299 output positions of one axis and the weight of the one above, as
    TensorFlow 1's bilinear resize places them (no half-pixel offset; torch-fidelity's `resample_manually`)."""
    grid = torch.arange(0, INPUT_SIZE, 1, dtype=torch.float32) * torch.tensor(size / INPUT_SIZE, dtype=torch.float32)
    low = grid.long()
    return low, (low + 1).clamp_max(size - 1), grid - low.float()


def resize_legacy(rgb: np.ndarray) -> torch.Tensor:
    """torch-fidelity's TF1-compatible bilinear resize (`interpolate_bilinear_2d_like_tensorflow1x`, its exact "slow"
    method) of one HxWx3 uint8 image to float 3x299x299, bit for bit (tests/test_peer_agreement.py): the same
    per-element formulas, but each source row is interpolated along x once and the rows are then gathered, instead of
    gathering four 299x299 corner grids (2-5x faster on a CPU core)."""
    x = torch.tensor(rgb).permute(2, 0, 1).to(torch.float32)
    y_low, y_high, dy = _tf1_axis(x.shape[1])
    x_low, x_high, dx = _tf1_axis(x.shape[2])
    left, right = x[:, :, x_low], x[:, :, x_high]
    rows = left + (right - left) * dx.view(1, 1, INPUT_SIZE)
    top, bottom = rows[:, y_low, :], rows[:, y_high, :]
    return top + (bottom - top) * dy.view(1, INPUT_SIZE, 1)


def resize_clean(rgb: np.ndarray) -> torch.Tensor:
    """clean-fid's clean mode: PIL bicubic on each float32 channel, clipped to 0..255 (no quantisation)."""
    channels = []
    for c in range(3):
        plane = Image.fromarray(rgb[:, :, c].astype(np.float32), mode="F")
        plane = plane.resize((INPUT_SIZE, INPUT_SIZE), resample=Image.Resampling.BICUBIC)
        channels.append(np.asarray(plane).clip(0, 255))
    return torch.from_numpy(np.stack(channels).astype(np.float32))


def resize_pytorch_fid(rgb: np.ndarray) -> torch.Tensor:
    """pytorch-fid's route: [0, 1] floats, bilinear `F.interpolate` to 299 (align_corners=False), on the 0..255 scale
    the network expects such that its (x - 128) / 128 equals pytorch-fid's 2x - 1 (x * 256 is exact in float32)."""
    x = torch.tensor(rgb).permute(2, 0, 1).unsqueeze(0).to(torch.float32) / 255
    x = torch.nn.functional.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    return x[0] * 256


def resize_torchmetrics(rgb: np.ndarray) -> torch.Tensor:
    """torchmetrics' route (NoTrainInceptionV3 with antialias=True): antialiased bilinear on 0..255 floats."""
    x = torch.tensor(rgb).permute(2, 0, 1).unsqueeze(0).to(torch.float32)
    size = (INPUT_SIZE, INPUT_SIZE)
    return torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)[0]


_RESIZE = {
    "legacy": resize_legacy,
    "clean": resize_clean,
    "pytorch-fid": resize_pytorch_fid,
    "torchmetrics": resize_torchmetrics,
}


def spatial_rows(feature_map: torch.Tensor) -> torch.Tensor:
    """sFID's 2023 values per image from `mixed_6/conv`'s [N, 192, 17, 17] output: the first 7 channels, in
    guided-diffusion's order (its numpy reshape of the NHWC tensor: row, column, channel)."""
    first = feature_map[:, : spatial_input.CHANNELS].permute(0, 2, 3, 1)
    return first.reshape(len(feature_map), -1).to(torch.float32)


#: Built networks by (weights sha256, device), the most recently used last: a process that scores several times
#: (the Evaluator at each evaluation step, score_folder in a loop, the tests) builds each network once; reading the
#: weights, unpickling them into torch-fidelity's module and folding its batch norms takes about 0.7 s on a CPU.
#: Networks are only read (inference mode; the sFID hook is removed after each batch), so sharing one is safe.
_BUILT: dict[tuple[str, str], InceptionNetwork] = {}
_KEEP_BUILT = 2  # the networks kept (about 95 MB each), e.g. two devices or two weights files in one process


def forget_built_networks() -> None:
    """Drop the networks kept for reuse (their memory, a GPU's included, is freed with the last extractor)."""
    _BUILT.clear()


class InceptionExtractor:
    """FeatureExtractor (see features/base.py) for Inception pool3 features and logits, and with `spatial` sFID's
    spatial features from the same forward pass (a hook on `mixed_6/conv`: no second run of the network)."""

    def __init__(
        self,
        weights: str | os.PathLike[str] | None = None,
        preprocess: str = "legacy",
        device: str | torch.device = "cpu",
        spatial: bool = False,
    ) -> None:
        if preprocess not in PREPROCESS_MODES:
            raise SdevalError(f"--preprocess must be one of {', '.join(PREPROCESS_MODES)}, got {preprocess!r}")
        path = Path(weights) if weights is not None else find_standard_weights() or standard_weights_path()
        if weights is not None and not path.is_file():
            raise SdevalError(f"--inception-weights {weights}: no such file")
        downloaded = weights is None and not path.is_file()
        if downloaded:
            self._download_standard_weights(path)
        self.weights_path = path
        self.weights_sha256 = file_sha256(path)
        if weights is None:
            # A file at the standard place that is not the standard weights would give FIDs nobody can compare.
            problem = standard_weights_problem(path, self.weights_sha256)
            if problem is not None and downloaded:
                path.unlink()
                raise SdevalError(f"downloaded {path.name}, but it is not the standard weights ({problem}); removed")
            if problem is not None:
                raise SdevalError(
                    f"{path}: {problem}: delete it (it is downloaded again) or copy the standard file there "
                    "(`sdeval models` says where), or pass --inception-weights PATH"
                )
        self.mode = preprocess
        self.device = torch.device(device)
        # The key names the network and its route, not which outputs a run keeps: a reference's Inception features
        # are found by it whether or not they hold the spatial rows. The cache takes a row lacking one of
        # `outputs` as a miss (features/extract.py).
        self.cache_key = f"inception-v3-compat:{self.weights_sha256}:{preprocess}"
        self.spatial = spatial
        self.outputs = (POOL, LOGITS, SPATIAL) if spatial else (POOL, LOGITS)
        self._network: InceptionNetwork | None = None

    @staticmethod
    def _download_standard_weights(path: Path) -> None:
        what = f"Inception weights file {path.name}"
        # Offline, the download would wait on the network and then fail with a message about a temporary file.
        require_download(what, "pass --inception-weights PATH", url=URL_INCEPTION_V3)
        try:
            # torch.hub writes to a temporary file next to `path` but does not create the folder itself; it
            # removes that file when the download fails, so nothing half-written is left behind.
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(URL_INCEPTION_V3, str(path), progress=True)
        except Exception as err:  # network errors come in many types
            host = urlsplit(URL_INCEPTION_V3).hostname
            raise SdevalError(
                f"could not download {what} from {host} into {path.parent}: {_reason(err)}; "
                "pass --inception-weights PATH"
            ) from None

    @property
    def network(self) -> InceptionNetwork:
        """The network, built on first use so that workers that only preprocess never load it, and shared by every
        extractor of the process with the same weights (by sha256) and device (`_BUILT`)."""
        if self._network is None:
            key = (self.weights_sha256, str(self.device))
            network = _BUILT.pop(key, None)
            self._network = network if network is not None else self._build_network()
            _BUILT[key] = self._network  # the most recently used last
            while len(_BUILT) > _KEEP_BUILT:
                _BUILT.pop(next(iter(_BUILT)))
        return self._network

    def _build_network(self) -> InceptionNetwork:
        # torch-fidelity's network: imported when it first runs (a run whose features are all cached never does).
        from sdeval.features.inception_network import InceptionNetwork, fold_batch_norms

        state_dict = load_state_dict(self.weights_path)
        # torch-fidelity's constructor unpickles with weights_only=False; hand it a buffer we wrote
        # ourselves from tensors only, so an untrusted weights file is never unpickled unsafely.
        buffer = io.BytesIO()
        torch.save(state_dict, buffer)
        buffer.seek(0)
        try:
            network = InceptionNetwork(
                "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=buffer
            )
        except RuntimeError as err:
            raise SdevalError(f"{self.weights_path}: not torch-fidelity Inception weights ({str(err)[:200]})") from None
        fold_batch_norms(network.eval())
        # In place (Module.to returns the module itself); torch's overloads of Module.to omit memory_format.
        network.to(self.device, memory_format=torch.channels_last)  # pyright: ignore[reportCallIssue]
        return network

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        return _RESIZE[self.mode](rgb)

    @torch.inference_mode()
    def extract(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        # channels_last runs oneDNN/cuDNN convolutions about 1.3x faster; values agree to float rounding.
        batch = batch.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        if not self.spatial:  # FID-only runs register no hook and keep nothing more
            pool, logits = self.network.forward_resized(batch)
            return {POOL: pool.cpu(), LOGITS: logits.cpu()}
        captured: list[torch.Tensor] = []
        layer = self.network.get_submodule(spatial_input.MODULE)
        handle = layer.register_forward_hook(lambda module, args, output: captured.append(spatial_rows(output)))
        try:
            pool, logits = self.network.forward_resized(batch)
        finally:
            handle.remove()
        return {POOL: pool.cpu(), LOGITS: logits.cpu(), SPATIAL: captured[0].cpu()}

    def protocol(self) -> dict[str, Any]:
        return {
            "extractor": EXTRACTOR_NAME,
            "weights_sha256": self.weights_sha256,
            "preprocess": self.mode,
            "input_size": INPUT_SIZE,
        }

    def __getstate__(self) -> dict[str, Any]:
        # Decode workers only need `preprocess`; never ship the network to them.
        state = dict(self.__dict__)
        state["_network"] = None
        return state


def build(values: Mapping[str, Any], device: Any, hosted: tuple[str, ...] = ()) -> InceptionExtractor:
    """The Inception input's extractor (features/inception_input.py) from the run's `inception_weights` and
    `preprocess` on `device`; hosting sFID's input, it gives that input's spatial rows from the same pass."""
    spatial = spatial_input.NAME in hosted
    return InceptionExtractor(values["inception_weights"], values["preprocess"], device, spatial=spatial)


def _reason(err: BaseException) -> str:
    """A download error in one line, without the temporary file's name that OS errors carry."""
    if isinstance(err, HTTPError):
        return f"HTTP {err.code} {err.reason}"
    reason = getattr(err, "reason", None)  # urllib's URLError wraps the socket error
    if isinstance(reason, BaseException):
        err = reason
    elif isinstance(reason, str) and reason:
        return reason
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
