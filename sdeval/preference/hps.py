"""HPS v2 / v2.1 (Wu et al. 2023): an open_clip ViT-H-14 fine-tuned on human preferences, built offline.

HPSv2's own package builds the model with a pretrained tag, which downloads the LAION weights first even with a
local checkpoint (HPSv2#16). Here the architecture is built with `pretrained=None` (never a tag, never online)
and the HPS checkpoint (`HPS_v2_compressed.pt` / `HPS_v2.1_compressed.pt` from hub repo `xswu/HPSv2`: a dict whose
`state_dict` holds the open_clip weights) is loaded strictly.

Score, as HPSv2's img_score.score(): the diagonal of image_features @ text_features.T with both L2-normalised and
no logit scale, i.e. the cosine of image and prompt embeddings, in [-1, 1]. HPSv2 runs it under CUDA autocast
(fp16); here it is float32.

Preprocessing is HPSv2's evaluation transform (`light_augmentation=True` -> `ResizeMaxSize`): tensor, longest side
resized to 224 (bicubic on the tensor, antialiased: torchvision's default since 0.17, which HPSv2 also gets today;
with torchvision < 0.17, as for HPS v2.0's 2023 paper, it was not antialiased and scores differ slightly),
zero-padded to 224x224 (left/top get half of the padding, rounded down), CLIP normalisation. Unlike HPSv2, an image
whose longest side is already 224 is padded too (HPSv2 leaves it non-square, which its ViT cannot take).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sdeval.core.errors import SdevalError, first_line
from sdeval.core.hashing import file_sha256
from sdeval.preference.base import (
    CLIP_MEAN,
    CLIP_STD,
    check_prompts,
    check_rgb,
    distinct_rows,
    make_cache_key,
    no_model_error,
    row_dot,
)
from sdeval.preference.info import HPS as INFO
from sdeval.preference.info import HPS_REPO, DescribedScorer
from sdeval.preference.weights import hub_file, load_strict, read_state_file, resolve_file

#: HPS versions and their checkpoint in HPS_REPO (hpsv2/utils.py hps_version_map).
HPS_FILES = {"v2.0": "HPS_v2_compressed.pt", "v2.1": "HPS_v2.1_compressed.pt"}
#: What users write for a version (the paper says "HPS v2").
HPS_ALIASES = {"v2": "v2.0"}
HPS_ARCH = "ViT-H-14"
FEATURE_NAME = "hps_image"
TEXT_FEATURE_NAME = "hps_text"
# Bump when what extract()/embed_texts()/score returns changes for the same weights.
_SCORER_VERSION = 1


class HpsImageTransform:
    """HPSv2's evaluation transform (ResizeMaxSize): resize the longest side, zero-pad to a square, normalise.

    Holds only numbers, so it pickles cheaply into decode workers.
    """

    def __init__(self, size: int, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD) -> None:
        self.size = size
        self.mean = tuple(mean)
        self.std = tuple(std)

    def __call__(self, rgb: np.ndarray) -> torch.Tensor:
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        image = torch.from_numpy(np.ascontiguousarray(check_rgb(rgb))).permute(2, 0, 1).float().div(255)
        height, width = image.shape[1:]
        scale = self.size / float(max(height, width))
        if scale != 1.0:
            new_size = [round(height * scale), round(width * scale)]
            image = TF.resize(image, new_size, interpolation=InterpolationMode.BICUBIC, antialias=True)
        pad_h, pad_w = self.size - image.shape[1], self.size - image.shape[2]
        if pad_h or pad_w:
            image = TF.pad(image, [pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2], fill=0)
        return TF.normalize(image, list(self.mean), list(self.std))

    def describe(self) -> dict[str, Any]:
        return {
            "resize": f"longest side to {self.size}, bicubic on the tensor, antialias",
            "pad": f"zeros to {self.size}x{self.size}, centred (HPSv2 ResizeMaxSize)",
            "mean": list(self.mean),
            "std": list(self.std),
        }


class HpsScorer(DescribedScorer, info=INFO):
    """HPS v2/v2.1: cosine of the image and prompt embeddings of an HPS-tuned open_clip model."""

    feature_name = FEATURE_NAME

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        arch: str,
        source: str,
        version: str | None,
        weights_sha256: str,
        device: str | torch.device | None = None,
        batch_size: int = 32,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.model: torch.nn.Module | None = model.to(self.device).eval()
        self.tokenizer: Any = tokenizer
        self.arch = arch
        self.source = source
        self.version = version
        self.weights_sha256 = weights_sha256
        self.batch_size = batch_size
        # An open_clip model's attributes and methods, here and below: torch types a Module's as Tensor | Module.
        self.image_transform = HpsImageTransform(_square_size(model.visual.image_size, arch))  # pyright: ignore[reportAttributeAccessIssue]
        self.context_length = int(getattr(tokenizer, "context_length", 77))
        identity = {"arch": arch, "preprocess": self.image_transform.describe(), "normalized": True}
        self.cache_key = make_cache_key(FEATURE_NAME, _SCORER_VERSION, source, weights_sha256, identity)
        text_identity = {"arch": arch, "tokenizer": type(tokenizer).__name__, "context_length": self.context_length}
        self.text_cache_key = make_cache_key(TEXT_FEATURE_NAME, _SCORER_VERSION, source, weights_sha256, text_identity)

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        model: str | None = None,
        *,
        arch: str = HPS_ARCH,
        device: str | torch.device = "cpu",
        allow_pickle: bool = False,
        batch_size: int = 32,
    ) -> HpsScorer:
        """HPS from a version ("v2.0" or "v2", "v2.1": xswu/HPSv2 on the hub), a local checkpoint, or OWNER/REPO/FILE.

        `arch` is the open_clip architecture the checkpoint was trained from (ViT-H-14 for HPS v2/v2.1).
        """
        import open_clip

        path, label, version = _locate(model or cls.default_model, allow_pickle=allow_pickle)
        state = _open_clip_state(read_state_file(path, allow_pickle=allow_pickle, what="HPS checkpoint"), path)
        network = _build(arch)
        load_strict(network, state, what="HPS checkpoint", source=f"{path} (open_clip {arch})")
        return cls(
            network,
            open_clip.get_tokenizer(arch),
            arch=arch,
            source=label,
            version=version,
            weights_sha256=file_sha256(path),
            device=device,
            batch_size=batch_size,
        )

    # -- EmbeddingScorer -------------------------------------------------------------------------

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        """One decoded HxWx3 uint8 image to a [3, 224, 224] tensor (HPSv2's evaluation transform)."""
        return self.image_transform(rgb)

    def extract(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """{'hps_image': L2-normalised float32 [N, D] image embeddings on the CPU}."""
        model = self._require_model()
        if len(batch) == 0:
            return {FEATURE_NAME: torch.zeros((0, _embed_dim(model)), dtype=torch.float32)}
        with torch.inference_mode():
            features = model.encode_image(batch.to(self.device, dtype=torch.float32))  # pyright: ignore[reportCallIssue]
            features = F.normalize(features.float(), dim=-1)
        return {FEATURE_NAME: features.cpu()}

    def embed_texts(self, prompts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 [len(prompts), D] prompt embeddings; each distinct prompt encoded once."""
        model = self._require_model()
        prompts = check_prompts(prompts)
        distinct = list(dict.fromkeys(prompts))
        rows: list[torch.Tensor] = []
        with torch.inference_mode():
            for start in range(0, len(distinct), self.batch_size):
                tokens = self.tokenizer(distinct[start : start + self.batch_size]).to(self.device)
                rows.append(F.normalize(model.encode_text(tokens).float(), dim=-1).cpu())  # pyright: ignore[reportCallIssue]
        if not rows:
            return np.zeros((0, _embed_dim(model)), dtype=np.float32)
        return distinct_rows(prompts, torch.cat(rows).numpy(), distinct)

    def score_embeddings(self, image_emb: np.ndarray, text_emb: np.ndarray | None) -> np.ndarray:
        """float64 [N] cosine of row-aligned (already L2-normalised) image and prompt embeddings."""
        return row_dot(image_emb, text_emb, self.name)

    def score(self, batch: torch.Tensor, prompts: Sequence[str]) -> np.ndarray:
        """float64 [N] HPS of image i against prompts[i]."""
        prompts = check_prompts(prompts, len(batch))
        return self.score_embeddings(self.extract(batch)[FEATURE_NAME].numpy(), self.embed_texts(prompts))

    def truncated(self, prompts: Sequence[str]) -> list[bool]:
        """For each prompt, whether the tokenizer cuts it to its context (77 tokens, start and end included)."""
        if self.tokenizer is None:
            raise no_model_error(self.name)
        encode = self.tokenizer.encode
        return [len(encode(prompt)) + 2 > self.context_length for prompt in check_prompts(prompts)]

    def protocol(self) -> dict[str, Any]:
        """Model, weights sha256, architecture, preprocessing, tokenizer, score formula and library versions."""
        import open_clip
        import torchvision

        return {
            "scorer": self.name,
            "scorer_version": _SCORER_VERSION,
            "model": self.source,
            "hps_version": self.version,
            "weights_sha256": self.weights_sha256,
            "arch": self.arch,
            "preprocess": self.image_transform.describe(),
            "tokenizer": {"class": type(self.tokenizer).__name__, "context_length": self.context_length},
            "score": "cos(image_embedding, text_embedding) (no logit scale)",
            "dtype": "float32",
            "torch_version": torch.__version__,
            "torchvision_version": torchvision.__version__,
            "open_clip_version": open_clip.__version__,
        }

    # -- internals -------------------------------------------------------------------------------

    def _require_model(self) -> torch.nn.Module:
        if self.model is None or self.tokenizer is None:
            raise no_model_error(self.name)
        return self.model

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["model"] = None
        state["tokenizer"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


def _locate(model: str, *, allow_pickle: bool) -> tuple[Path, str, str | None]:
    """(checkpoint path, label, HPS version or None) for a version, a local file or a hub file."""
    hint = f"download {HPS_FILES['v2.1']} from {HPS_REPO} once and pass its path as --hps-model PATH"
    model = HPS_ALIASES.get(model, model)
    if model in HPS_FILES:
        what = f"HPS {model} checkpoint"
        path = hub_file(HPS_REPO, HPS_FILES[model], what=what, hint=hint, allow_pickle=allow_pickle)
        return path, f"{HPS_REPO}/{path.name}", model
    if model.lower().startswith("v") and "/" not in model and not Path(model).expanduser().exists():
        raise SdevalError(f"HPS version {model!r} is unknown (versions: {', '.join(HPS_FILES)}; or give a checkpoint)")
    path, label = resolve_file(model, what="HPS checkpoint", hint=hint, allow_pickle=allow_pickle)
    version = next((v for v, name in HPS_FILES.items() if Path(name).stem == path.stem), None)
    return path, label, version


def _open_clip_state(checkpoint: dict[str, Any], path: Path) -> dict[str, Any]:
    """The open_clip weights of an HPS checkpoint: its `state_dict` entry (or the file itself), without `module.`."""
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, dict):
        raise SdevalError(f"HPS checkpoint {path}: its 'state_dict' entry is a {type(state).__name__}, not a dict")
    keys = list(state)
    if keys and all(key.startswith("module.") for key in keys):  # saved from DistributedDataParallel
        state = {key[len("module.") :]: value for key, value in state.items()}
    return state


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return f"{os.sep}open_clip{os.sep}" not in record.pathname or "initialized randomly" not in record.getMessage()


@contextlib.contextmanager
def _quiet_random_init() -> Iterator[None]:
    """open_clip warns that a model built with pretrained=None is random; here the weights follow at once."""
    drop = _DropRandomInitWarning()
    logging.root.addFilter(drop)
    try:
        yield
    finally:
        logging.root.removeFilter(drop)


def _build(arch: str) -> torch.nn.Module:
    """The open_clip architecture with random weights: pretrained=None never downloads."""
    import open_clip

    if arch not in open_clip.list_models():
        raise SdevalError(f"HPS architecture {arch!r} is not an open_clip model config (e.g. {HPS_ARCH})")
    try:
        with _quiet_random_init():
            return open_clip.create_model(arch, pretrained=None)
    except (RuntimeError, ValueError) as err:
        raise SdevalError(f"cannot build open_clip {arch!r}: {first_line(err)}") from err


def _square_size(size: Any, arch: str) -> int:
    if isinstance(size, (list, tuple)):
        if len(size) != 2 or size[0] != size[1]:
            raise SdevalError(f"HPS architecture {arch!r}: image size {size} is not square")
        return int(size[0])
    return int(size)


def _embed_dim(model: torch.nn.Module) -> int:
    dim = getattr(getattr(model, "visual", None), "output_dim", None)
    return int(dim) if isinstance(dim, int) else 0
