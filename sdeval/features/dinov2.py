"""DINOv2 ViT features for FD_DINOv2 (Stein et al. 2023, "Exposing flaws of generative model evaluation metrics"),
computed as their dgm-eval does, with transformers' `Dinov2Model`, as a FeatureExtractor the scoring pipeline batches.

dgm-eval (layer6ai-labs/dgm-eval, `models/dinov2.py`, default `clean_resize=False`): the RGB image resized to
224 x 224 by torchvision's `Resize(BICUBIC)` on a PIL image (PIL's bicubic on 8-bit pixels), scaled to [0, 1]
(`ToTensor`), normalised with ImageNet's mean and std; the feature is the torch.hub model's output, the CLS token
after the final layer norm (`x_norm_clstoken`, its head being the identity). In transformers that is
`Dinov2Model(...).pooler_output` (`layernorm(encoder output)[:, 0]`). ViT-L/14 (`facebook/dinov2-large`) gives
1024-d float32 features.

The position embeddings, trained on a 37 x 37 grid (518 px), are resized to the 16 x 16 grid of 224 px as the
torch.hub model does (bicubic with scale factor (16 + 0.1) / 37, no antialias), not as recent transformers does
(output size 16 x 16): the two sample the grid at different points, up to a fifth of a cell apart.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from functools import partial
from typing import Any

import numpy as np
import torch
from PIL import Image

from sdeval.core.errors import SdevalError, first_line
from sdeval.core.hub import load_pretrained
from sdeval.features.dinov2_input import DEFAULT_MODEL, FEATURE_NAME

INPUT_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: What preprocessing does, for the protocol and the cache key.
PREPROCESS = {
    "resize": f"PIL bicubic on 8-bit RGB to {INPUT_SIZE}x{INPUT_SIZE} (aspect not kept, no crop)",
    "scale": "1/255",
    "normalize": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
    "reference": "dgm-eval DINOv2Encoder.transform, clean_resize=False",
}
# Bump when what extract() returns changes for the same weights: it is part of the cache key.
_FEATURE_VERSION = 2  # 2: the torch.hub model's position-embedding resize
# Config fields that do not move the features (they would make one model hash two ways).
_VOLATILE_CONFIG = ("transformers_version", "_name_or_path", "dtype", "torch_dtype", "architectures")


def preprocess_dgm_eval(rgb: np.ndarray) -> torch.Tensor:
    """One HxWx3 uint8 RGB image to dgm-eval's float32 [3, 224, 224] input (module docstring)."""
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        got = f"{rgb.dtype} {rgb.shape}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise ValueError(f"expected an HxWx3 uint8 RGB array, got {got}")
    resized = Image.fromarray(rgb).resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BICUBIC)
    # The operations and their order are torchvision's ToTensor and Normalize, so the floats match bit for bit.
    x = torch.from_numpy(np.array(resized, dtype=np.uint8)).permute(2, 0, 1).contiguous()
    x = x.to(torch.float32).div(255)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(-1, 1, 1)
    return x.sub(mean).div(std)


class Dinov2Extractor:
    """FeatureExtractor (see features/base.py) for DINOv2 CLS features.

    Pickling drops the model, so sending the extractor (or its bound `preprocess`) to a decode worker is cheap.
    """

    def __init__(
        self, model: torch.nn.Module, *, source: str, weights_sha256: str, device: str | torch.device = "cpu"
    ) -> None:
        # A transformers Dinov2Model: torch types a Module's attributes as Tensor | Module, so its config and
        # embeddings are taken as what they are, untyped.
        config: Any = model.config
        if getattr(config, "model_type", None) != "dinov2":
            raise SdevalError(f"{source}: a {getattr(config, 'model_type', None)!r} model, not DINOv2")
        self.model: torch.nn.Module | None = model.to(device=device, dtype=torch.float32).eval()
        embeddings: Any = model.embeddings
        embeddings.interpolate_pos_encoding = _hub_interpolate_pos_encoding.__get__(embeddings)
        self.source = source
        self.weights_sha256 = weights_sha256
        self.device = torch.device(device)
        self.embed_dim = int(config.hidden_size)
        self.patch_size = int(config.patch_size)
        self.trained_size = int(config.image_size)  # the position-embedding grid, interpolated to 224 / patch
        self.config_sha256 = _config_sha256(config)
        self.cache_key = self._make_cache_key()

    @classmethod
    def load(cls, model: str = DEFAULT_MODEL, *, device: str | torch.device = "cpu") -> Dinov2Extractor:
        """A Dinov2Model from a local folder (save_pretrained layout) or a hub id; offline, an uncached hub id fails
        at once with the way out."""
        import transformers

        transformers.utils.logging.disable_progress_bar()  # its bars would interleave with sdeval's
        load = partial(_load_model, model)
        network, source = load_pretrained(model, load, option="--dinov2-model", what="DINOv2 model")
        from sdeval.features.clip import state_dict_sha256  # open_clip's module: only when a DINOv2 model loads

        return cls(network, source=source, weights_sha256=state_dict_sha256(network), device=device)

    # -- FeatureExtractor ------------------------------------------------------------------------

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        """One decoded HxWx3 uint8 image to the [3, 224, 224] float32 input (runs in decode workers)."""
        return preprocess_dgm_eval(rgb)

    def extract(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """{'dinov2': float32 [N, D] CLS tokens after the final layer norm, on the CPU}."""
        if self.model is None:
            raise RuntimeError("this Dinov2Extractor was unpickled in a worker and holds no model; only preprocess()")
        with torch.inference_mode():
            out = self.model(pixel_values=batch.to(self.device, dtype=torch.float32))
        return {FEATURE_NAME: out.pooler_output.float().cpu()}

    def protocol(self) -> dict[str, Any]:
        """Everything that moves the features."""
        import transformers

        return {
            "extractor": "dinov2",
            "feature": FEATURE_NAME,
            "feature_version": _FEATURE_VERSION,
            "model": self.source,
            "weights_sha256": self.weights_sha256,
            "config_sha256": self.config_sha256,
            "embed_dim": self.embed_dim,
            "patch_size": self.patch_size,
            "input_size": INPUT_SIZE,
            "position_embeddings": (
                f"trained at {self.trained_size} px, resized bicubically to the {INPUT_SIZE // self.patch_size}"
                "-patch grid as the torch.hub model dgm-eval loads (scale factor (grid + 0.1) / trained grid)"
            ),
            "output": "CLS token after the final layer norm (Dinov2Model pooler_output)",
            "preprocess": PREPROCESS,
            "dtype": "float32",
            "transformers_version": transformers.__version__,
        }

    # -- internals -------------------------------------------------------------------------------

    def _make_cache_key(self) -> str:
        identity = {"config": self.config_sha256, "preprocess": PREPROCESS, "output": "pooler_output"}
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
        safe_name = re.sub(r"[^A-Za-z0-9._-]+", "_", self.source)
        return f"{FEATURE_NAME}-v{_FEATURE_VERSION}-{safe_name}-{self.weights_sha256}-{digest}"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["model"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


def _load_model(model: str, location: str, local_files_only: bool) -> torch.nn.Module:
    """The Dinov2Model; OSError when files are missing (for the offline check), else SdevalError."""
    from transformers import AutoConfig, Dinov2Model

    try:
        config = AutoConfig.from_pretrained(location, local_files_only=local_files_only)
    except ValueError as err:
        raise SdevalError(f"--dinov2-model {model}: {first_line(err)}") from err
    if getattr(config, "model_type", None) != "dinov2":
        raise SdevalError(f"--dinov2-model {model}: a {getattr(config, 'model_type', None)!r} model, not dinov2")
    try:
        # With output_loading_info, a (model, info) pair; transformers annotates only the model.
        network, info = Dinov2Model.from_pretrained(  # pyright: ignore[reportGeneralTypeIssues]
            location, local_files_only=local_files_only, dtype=torch.float32, output_loading_info=True
        )
    except ValueError as err:
        raise SdevalError(f"--dinov2-model {model}: {first_line(err)}") from err
    # mask_token is used only for masked-image training; every other missing weight would be random.
    missing = sorted(k for k in info.get("missing_keys") or [] if not k.endswith("mask_token"))
    if missing:
        raise SdevalError(
            f"--dinov2-model {model}: its weights lack {len(missing)} parameters of Dinov2Model (e.g. {missing[0]})"
        )
    return network


def _config_sha256(config: Any) -> str:
    """sha256 of the architecture (the config without fields that do not move features)."""
    data = {k: v for k, v in config.to_dict().items() if k not in _VOLATILE_CONFIG}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _hub_interpolate_pos_encoding(self: Any, embeddings: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """`Dinov2Embeddings.interpolate_pos_encoding` as the torch.hub model computes it (facebookresearch/dinov2,
    `DinoVisionTransformer.interpolate_pos_encoding` with `interpolate_offset=0.1`, `interpolate_antialias=False`):
    the size is reached through a scale factor of (patches + 0.1) / trained patches, in float32."""
    position = self.position_embeddings
    n_patches, n_positions = embeddings.shape[1] - 1, position.shape[1] - 1
    if n_patches == n_positions and height == width:
        return position
    patch_height, patch_width = self.patch_embeddings.patch_size
    grid = int(math.sqrt(n_positions))
    rows, cols = height // patch_height, width // patch_width
    patch = position[:, 1:].float().reshape(1, grid, grid, -1).permute(0, 3, 1, 2)
    scale = ((rows + 0.1) / grid, (cols + 0.1) / grid)
    patch = torch.nn.functional.interpolate(patch, scale_factor=scale, mode="bicubic", antialias=False)
    patch = patch.permute(0, 2, 3, 1).reshape(1, -1, position.shape[-1])
    return torch.cat((position[:, :1].float(), patch), dim=1).to(position.dtype)


def build(values: Mapping[str, Any], device: Any) -> Dinov2Extractor:
    """The extractor of FD_DINOv2's feature input (sdeval.features.dinov2_input) from its option values."""
    return Dinov2Extractor.load(values["dinov2_model"] or DEFAULT_MODEL, device=device)
