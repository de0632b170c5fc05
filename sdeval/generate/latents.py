"""Initial latents from a file: one fixed latent for every prompt, as MLPerf Inference's text-to-image benchmark
feeds SDXL (its `text_to_image/tools/latents.pt`, 1 x 4 x 128 x 128 float32 for 1024 x 1024).

The file is read when the config is: a .safetensors file holding one tensor, a .npy array (read without pickle),
or, with `allow_pickle: true`, a torch .pt/.pth file (torch.load with weights_only). Its sha256 names it in each
image's metadata and setting id; its shape is checked against the model's latent shape at the setting's size when
the checkpoint has loaded (batch 1, the UNet's input channels, the size over the VAE's scale factor).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sdeval.core.errors import ConfigError, SdevalError
from sdeval.core.hashing import file_sha256
from sdeval.core.suggest import check_keys

#: Latents shipped in sdeval/generate/data/ (README.md there says where each comes from): name -> (file, sha256).
BUILTIN_PREFIX = "builtin:"
BUILTIN_LATENTS = {
    # MLPerf Inference text_to_image/tools/latents.npy (mlcommons/inference b66003e1), equal to its latents.pt.
    "mlperf-sdxl": ("mlperf-sdxl-latents.npy", "78cac10a20ea287f88b5851382e21504a755338d3f8ba8ffd2bcf9e9bf2404f9"),
}
SAFE_SUFFIXES = (".safetensors", ".npy")
PICKLE_SUFFIXES = (".pt", ".pth")
LATENTS_KEYS = ("path", "allow_pickle")


@dataclass(frozen=True)
class LatentsFile:
    """A latent read from a file: where it is, as written and resolved, its content hash and its shape."""

    written: str  # as the config gives it (recorded in the normalized config)
    path: Path
    sha256: str
    shape: tuple[int, ...]
    allow_pickle: bool = False

    def record(self) -> dict[str, Any]:
        """What an image's metadata says of it: the bytes, not the path (a moved file leaves the images current)."""
        return {"sha256": self.sha256, "shape": list(self.shape)}

    def normal(self) -> Any:
        """As the normalized config records it (its hash moves with the file's bytes, not only its name)."""
        return {"path": self.written, "sha256": self.sha256, **({"allow_pickle": True} if self.allow_pickle else {})}

    def array(self) -> np.ndarray:
        """The latent as float32 [1, C, H, W]."""
        return read_array(self.path, self.allow_pickle, str(self.written))


def parse_latents(value: Any, where: str, base_dir: Path) -> LatentsFile:
    """`latents: PATH` or `latents: {path: PATH, allow_pickle: true}`, read and checked now (shape [1, C, H, W])."""
    allow_pickle = False
    if isinstance(value, Mapping):
        check_keys(value, LATENTS_KEYS, where + ".")
        allow_pickle = value.get("allow_pickle", False)
        if not isinstance(allow_pickle, bool):
            raise ConfigError(f"{where}.allow_pickle: expected true or false, got {allow_pickle!r}")
        value = value.get("path")
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: expected a .safetensors or .npy file (or a mapping with path), got {value!r}")
    path = (
        _builtin(value, where) if value.startswith(BUILTIN_PREFIX) else (base_dir / Path(value).expanduser()).resolve()
    )
    if not path.is_file():
        raise ConfigError(f"{where}: no such file: {path}")
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES and not allow_pickle:
        raise ConfigError(
            f"{where}: {path.name} is a pickle file, which can run code when loaded; give it as {{path: {value}, "
            "allow_pickle: true}} if you trust it, or convert it to .safetensors"
        )
    if suffix not in SAFE_SUFFIXES + PICKLE_SUFFIXES:
        raise ConfigError(f"{where}: {path.name}: expected .safetensors or .npy (or, with allow_pickle, .pt/.pth)")
    try:
        array = read_array(path, allow_pickle, value)
    except SdevalError as err:
        raise ConfigError(f"{where}: {err}") from None
    sha256 = file_sha256(path)
    shipped = BUILTIN_LATENTS.get(value[len(BUILTIN_PREFIX) :]) if value.startswith(BUILTIN_PREFIX) else None
    if shipped is not None and sha256 != shipped[1]:
        raise ConfigError(f"{where}: the shipped {path.name} has sha256 {sha256[:12]}..., not {shipped[1][:12]}...")
    return LatentsFile(value, path, sha256, tuple(int(d) for d in array.shape), allow_pickle)


def _builtin(value: str, where: str) -> Path:
    """The shipped latent a `builtin:NAME` names."""
    from importlib import resources

    name = value[len(BUILTIN_PREFIX) :]
    if name not in BUILTIN_LATENTS:
        raise ConfigError(f"{where}: no built-in latent {name!r} (built-in: {', '.join(sorted(BUILTIN_LATENTS))})")
    return Path(str(resources.files("sdeval.generate") / "data" / BUILTIN_LATENTS[name][0]))


def read_array(path: Path, allow_pickle: bool, name: str) -> np.ndarray:
    """The one latent a file holds, as float32 [1, C, H, W]; SdevalError saying what is wrong otherwise."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.numpy import load_file

            tensors = load_file(str(path))
            if len(tensors) != 1:
                raise SdevalError(f"{name}: expected one tensor, found {len(tensors)} ({', '.join(sorted(tensors))})")
            array = next(iter(tensors.values()))
        elif suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        else:
            import torch  # only a torch file needs it

            assert allow_pickle  # parse_latents refused it otherwise
            loaded = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(loaded, torch.Tensor):
                raise SdevalError(f"{name}: expected a tensor, found a {type(loaded).__name__}")
            array = loaded.to(torch.float32).numpy()
    except SdevalError:
        raise
    except Exception as err:  # safetensors, numpy and the unpickler each raise their own types
        raise SdevalError(f"{name}: not a readable latent ({str(err).strip()[:200]})") from None
    if array.ndim != 4 or array.shape[0] != 1:
        raise SdevalError(f"{name}: expected one latent of shape [1, C, H, W], got {list(array.shape)}")
    if not np.issubdtype(array.dtype, np.floating):
        raise SdevalError(f"{name}: expected floats, got {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.float32)


def expected_shape(pipe: Any, width: int | None, height: int | None, native: tuple[int, int]) -> tuple[int, ...]:
    """The latent a diffusers pipeline draws for one image at (width, height) (None: its native size)."""
    w, h = (width, height) if width is not None and height is not None else native
    factor = int(pipe.vae_scale_factor)
    return (1, int(pipe.unet.config.in_channels), h // factor, w // factor)
