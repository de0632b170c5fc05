"""CLIP image and text embeddings from open_clip, as a FeatureExtractor the scoring pipeline can batch."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from sdeval.core.errors import SdevalError
from sdeval.core.hashing import file_sha256
from sdeval.core.offline import hub_url, require_download
from sdeval.features.clip_input import FEATURE
from sdeval.features.clip_specs import CLIP_SCORE_MODEL
from sdeval.features.clip_specs import CMMD_MODEL as CMMD_MODEL
from sdeval.features.clip_specs import ClipModelSpec as ClipModelSpec

#: Name of the feature `extract` returns: L2-normalized float32 [N, D] image embeddings.
FEATURE_NAME = FEATURE
#: Name under which text embeddings of prompts are cached (keyed by the sha256 of the prompt text).
TEXT_FEATURE_NAME = "clip_text"
# Bump when what extract() returns changes for the same weights (normalization, dtype): it is
# part of the cache key, so stale cached features are never reused.
_FEATURE_VERSION = 1


# ClipModelSpec and the defaults (CLIP_SCORE_MODEL, CMMD_MODEL): features/clip_specs.py, where `sdeval models` reads
# them without open_clip; importable from here too.


class ClipImageTransform:
    """Turns a decoded HxWx3 uint8 RGB array into the model's input with open_clip's own eval transform.

    Holds only the transform, so it pickles cheaply into decode worker processes.
    """

    def __init__(self, transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.transform = transform

    def __call__(self, rgb: np.ndarray) -> torch.Tensor:
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            got = f"{rgb.dtype} {rgb.shape}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
            raise ValueError(f"expected an HxWx3 uint8 RGB array, got {got}")
        return self.transform(Image.fromarray(rgb, mode="RGB"))


class ClipEmbedder:
    """An open_clip model: `preprocess`/`extract` embed images (FeatureExtractor), `embed_texts` prompts.

    Pickling keeps only what `preprocess` needs (the model and tokenizer are dropped), so sending
    the embedder or its bound `preprocess` to a worker process is cheap.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        transform: Callable[[Image.Image], torch.Tensor],
        tokenizer: Callable[[list[str]], torch.Tensor],
        *,
        name: str,
        pretrained: str | None,
        weights_sha256: str,
        device: str | torch.device | None = None,
        batch_size: int = 64,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if device is not None:
            model = model.to(device)
        self.model: torch.nn.Module | None = model.eval()
        self.tokenizer: Callable[[list[str]], torch.Tensor] | None = tokenizer
        self.image_transform = ClipImageTransform(transform)
        self.name = name
        self.pretrained = pretrained
        self.weights_sha256 = weights_sha256
        # Read off the built model rather than trusted from arguments: it is what moves the numbers.
        self.quick_gelu = _uses_quick_gelu(model)
        self.device = torch.device(device) if device is not None else _model_device(model)
        self.batch_size = batch_size
        self.embed_dim = _embed_dim(model)
        self._preprocess_info = _preprocess_info(model, transform)
        self.cache_key = self._make_cache_key()
        self.text_cache_key = self._make_text_cache_key(tokenizer)

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        name: str = CLIP_SCORE_MODEL.name,
        pretrained: str | None = CLIP_SCORE_MODEL.pretrained,
        *,
        device: str | torch.device = "cpu",
        cache_dir: str | None = None,
        quick_gelu: bool | None = None,
        batch_size: int = 64,
    ) -> ClipEmbedder:
        """Build an open_clip model by name with weights from a tag (e.g. 'openai') or a local file.

        `quick_gelu=None` follows the pretrained tag: OpenAI weights were trained with QuickGELU, and
        open_clip 3 only warns (instead of switching) when a plain config such as `ViT-L-14` meets
        them, which silently changes every embedding. For OpenAI weights from a local file, pass
        quick_gelu=True or use the `-quickgelu` model name.
        """
        import open_clip

        if pretrained is None:  # open_clip would build random weights and only log it: every score meaningless
            raise SdevalError(f"CLIP model {name!r} needs weights: a pretrained tag (e.g. 'openai') or a local file")
        is_file = os.path.isfile(pretrained)
        tag_cfg: dict[str, Any] = {}
        if not is_file:
            tag_cfg = open_clip.get_pretrained_cfg(name, pretrained) or {}
            if not tag_cfg:
                known = ", ".join(open_clip.list_pretrained_tags_by_model(name)) or "none"
                raise SdevalError(
                    f"CLIP weights {pretrained!r} are neither a file nor a known tag for {name!r} (tags: {known})"
                )
        if quick_gelu is None:
            quick_gelu = bool(tag_cfg.get("quick_gelu", False))
        download = _weights_download(tag_cfg, cache_dir) if tag_cfg else None
        what = f"CLIP model {name!r} with weights {pretrained!r}"
        hint = "pass a local weights file as --clip-pretrained PATH (or --cmmd-pretrained PATH)"
        # Offline, open_clip would retry the host for most of a minute. The hub client under its own offline
        # flag refuses at once instead, so that case is left to it and its error replaced below.
        if download is not None and not (download.via_hub and _hub_client_offline()):
            require_download(what, hint, url=download.url)
        try:
            with _quiet_open_clip_errors():
                model, _, transform = open_clip.create_model_and_transforms(
                    name,
                    pretrained=pretrained,
                    device=device,
                    cache_dir=cache_dir,
                    force_quick_gelu=quick_gelu,
                )
            tokenizer = open_clip.get_tokenizer(name)
        except (RuntimeError, OSError, ValueError) as err:
            if download is not None:
                require_download(what, hint, url=download.url)
            hint = "" if is_file else " (offline? pass a local weights file as the pretrained value)"
            raise SdevalError(f"cannot load CLIP model {name!r} with weights {pretrained!r}: {err}{hint}") from err
        if is_file:
            sha = file_sha256(pretrained)
            label = f"file:{Path(pretrained).name}"
        else:
            sha = state_dict_sha256(model)
            label = pretrained
        return cls(
            model,
            # The eval transform (a Compose of torchvision transforms ending in a tensor); open_clip's inferred
            # return type also has the training transforms' tuple.
            transform,  # pyright: ignore[reportArgumentType]
            tokenizer,
            name=name,
            pretrained=label,
            weights_sha256=sha,
            device=device,
            batch_size=batch_size,
        )

    @classmethod
    def from_model(
        cls,
        model: torch.nn.Module,
        preprocess: Callable[[Image.Image], torch.Tensor],
        tokenizer: Callable[[list[str]], torch.Tensor],
        name: str,
        *,
        pretrained: str | None = None,
        weights_sha256: str | None = None,
        device: str | torch.device | None = None,
        batch_size: int = 64,
    ) -> ClipEmbedder:
        """Wrap an already-built open_clip model; the weights hash is computed from its state dict."""
        return cls(
            model,
            preprocess,
            tokenizer,
            name=name,
            pretrained=pretrained,
            weights_sha256=weights_sha256 or state_dict_sha256(model),
            device=device,
            batch_size=batch_size,
        )

    # -- FeatureExtractor ------------------------------------------------------------------------

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        """One decoded HxWx3 uint8 image to a [3, S, S] float tensor (open_clip's eval transform)."""
        return self.image_transform(rgb)

    def extract(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """Image embeddings of a preprocessed batch: {'clip_image': L2-normalized float32 [N, D] on CPU}."""
        model = self._require_model()
        with torch.inference_mode():
            # An open_clip model's method: torch types a Module's attributes as Tensor | Module.
            features = model.encode_image(batch.to(self.device, dtype=torch.float32))  # pyright: ignore[reportCallIssue]
            features = F.normalize(features.float(), dim=-1)
        return {FEATURE_NAME: features.cpu()}

    def protocol(self) -> dict[str, Any]:
        """Everything that moves the embeddings: model, weights sha256, activation, preprocessing."""
        import open_clip

        return {
            "extractor": "clip",
            "feature": FEATURE_NAME,
            "feature_version": _FEATURE_VERSION,
            "model": self.name,
            "pretrained": self.pretrained,
            "weights_sha256": self.weights_sha256,
            "quick_gelu": self.quick_gelu,
            "embed_dim": self.embed_dim,
            "normalized": True,
            "dtype": "float32",
            "preprocess": self._preprocess_info,
            "open_clip_version": open_clip.__version__,
        }

    # -- convenience -----------------------------------------------------------------------------

    def embed_images(self, images: Iterable[np.ndarray]) -> np.ndarray:
        """Embed decoded uint8 RGB arrays in batches (for callers outside the pipeline); float32 [N, D]."""
        out: list[torch.Tensor] = []
        pending: list[torch.Tensor] = []
        for rgb in images:
            pending.append(self.preprocess(rgb))
            if len(pending) == self.batch_size:
                out.append(self.extract(torch.stack(pending))[FEATURE_NAME])
                pending = []
        if pending:
            out.append(self.extract(torch.stack(pending))[FEATURE_NAME])
        if not out:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        return torch.cat(out).numpy()

    def embed_texts(self, prompts: Sequence[str]) -> np.ndarray:
        """L2-normalized float32 [len(prompts), D] text embeddings, one row per prompt in order.

        Each distinct prompt is encoded once. Prompts longer than the model's context (77 tokens for
        CLIP) are truncated by the tokenizer, as in CLIP's own evaluation.
        """
        model = self._require_model()
        tokenizer = self.tokenizer
        assert tokenizer is not None  # set together with the model
        for index, prompt in enumerate(prompts):
            if not isinstance(prompt, str):
                raise TypeError(f"prompt {index} is {type(prompt).__name__}, not str")
        distinct = list(dict.fromkeys(prompts))
        rows: list[torch.Tensor] = []
        with torch.inference_mode():
            for start in range(0, len(distinct), self.batch_size):
                tokens = tokenizer(distinct[start : start + self.batch_size])
                features = model.encode_text(tokens.to(self.device))  # pyright: ignore[reportCallIssue]  # as in extract
                rows.append(F.normalize(features.float(), dim=-1).cpu())
        if not rows:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        table = torch.cat(rows).numpy()
        position = {prompt: i for i, prompt in enumerate(distinct)}
        return table[[position[p] for p in prompts]]

    def truncated(self, prompts: Sequence[str]) -> list[bool] | None:
        """For each prompt, whether the tokenizer cuts it to fit the context (77 tokens for CLIP).

        None when the tokenizer cannot say (it has no `encode` or no `context_length`, as open_clip's
        Hugging Face tokenizers); the start and end tokens count against the context.
        """
        encode = getattr(self.tokenizer, "encode", None)
        context = getattr(self.tokenizer, "context_length", None)
        if encode is None or not isinstance(context, int) or getattr(self.tokenizer, "reduction_fn", None):
            return None
        return [len(encode(prompt)) + 2 > context for prompt in prompts]

    # -- internals -------------------------------------------------------------------------------

    def _require_model(self) -> torch.nn.Module:
        if self.model is None:
            raise RuntimeError(
                "this ClipEmbedder was unpickled in a worker and holds no model; only preprocess() works here"
            )
        return self.model

    def _make_cache_key(self) -> str:
        # Architecture and preprocessing change features without changing weights, so they are hashed in.
        identity = {"model": self.name, "quick_gelu": self.quick_gelu, "preprocess": self._preprocess_info}
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
        safe_name = re.sub(r"[^A-Za-z0-9._-]+", "_", self.name)
        return f"{FEATURE_NAME}-v{_FEATURE_VERSION}-{safe_name}-{self.weights_sha256}-{digest}"

    def _make_text_cache_key(self, tokenizer: Any) -> str:
        # Text embeddings depend on the weights, the activation and how prompts are tokenized.
        identity = {
            "model": self.name,
            "quick_gelu": self.quick_gelu,
            "tokenizer": type(tokenizer).__name__,
            "context_length": getattr(tokenizer, "context_length", None),
        }
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
        safe_name = re.sub(r"[^A-Za-z0-9._-]+", "_", self.name)
        return f"{TEXT_FEATURE_NAME}-v{_FEATURE_VERSION}-{safe_name}-{self.weights_sha256}-{digest}"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["model"] = None
        state["tokenizer"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


def build_clip(values: Mapping[str, Any], device: Any) -> ClipEmbedder:
    """The prompt metrics' embedder (feature input `clip`, features/clip_input.py) from its chosen values."""
    return ClipEmbedder.load(values["clip_model"], values["clip_pretrained"], device=device,
                             batch_size=values["batch_size"])  # fmt: skip


def build_cmmd(values: Mapping[str, Any], device: Any) -> ClipEmbedder:
    """CMMD's embedder (feature input `cmmd`) from its chosen values."""
    return ClipEmbedder.load(values["cmmd_model"], values["cmmd_pretrained"], device=device,
                             batch_size=values["batch_size"])  # fmt: skip


@dataclass(frozen=True)
class _Download:
    """Where a pretrained tag's weights would come from: a URL on the host, and whether the hub client fetches it."""

    url: str
    via_hub: bool


@dataclass(frozen=True)
class TagWeights:
    """Where open_clip keeps a pretrained tag's weights: `cached` when they are on disk, else where they would go."""

    cached: Path | None  # the file on disk, None when not there
    target: Path  # the cached file, else a hub repo's cache folder or the file a URL download writes
    source: str  # what a download fetches: `hub REPO (FILE)` or the URL
    url: str  # where a download would come from (the hub's endpoint, or the tag's URL)
    via_hub: bool


def tag_weights(cfg: dict[str, Any], cache_dir: str | None = None) -> TagWeights | None:
    """Where a tag's weights are or would be downloaded to; None when open_clip names a file itself or the layout is
    not one sdeval knows (it then loads as before, without the early check).

    Mirrors open_clip's download_pretrained: the hub when the tag names a hub repo (a .safetensors twin of the file
    counts), else the tag's URL into ~/.cache/clip. Only looks at files, never at the network.
    """
    try:
        from huggingface_hub import constants, try_to_load_from_cache
        from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
        from open_clip.pretrained import has_hf_hub
    except ImportError:  # another open_clip layout
        return None
    if cfg.get("file"):
        return None
    if cfg.get("hf_hub") and has_hf_hub():
        repo_id, filename = os.path.split(cfg["hf_hub"])
        filename = filename or HF_WEIGHTS_NAME
        candidates = [filename]
        if filename == HF_WEIGHTS_NAME:
            candidates.append(HF_SAFE_WEIGHTS_NAME)
        elif filename.endswith((".bin", ".pth")):
            candidates.append(filename[:-4] + ".safetensors")
        try:
            found = [try_to_load_from_cache(repo_id, f, cache_dir=cache_dir) for f in candidates]
        except ValueError:  # not a valid repo id: open_clip reports that itself
            return None
        cached = next((Path(f) for f in found if isinstance(f, str)), None)
        folder = Path(cache_dir or constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"
        return TagWeights(cached, cached or folder, f"hub {repo_id} ({filename})", hub_url(), via_hub=True)
    url = cfg.get("url")
    if url:
        target = Path(cache_dir or Path.home() / ".cache" / "clip") / os.path.basename(url)
        return TagWeights(target if target.is_file() else None, target, url, url, via_hub=False)
    return None


def _weights_download(cfg: dict[str, Any], cache_dir: str | None) -> _Download | None:
    """Where open_clip would download a tag's weights from, or None when they are cached (or it cannot tell)."""
    found = tag_weights(cfg, cache_dir)
    if found is None or found.cached is not None:
        return None
    return _Download(found.url, via_hub=found.via_hub)


class _DropOpenClipErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR or f"{os.sep}open_clip{os.sep}" not in record.pathname


@contextlib.contextmanager
def _quiet_open_clip_errors() -> Iterator[None]:
    """open_clip logs each failure to the root logger before raising it; sdeval reports the raised error once."""
    drop = _DropOpenClipErrors()
    logging.root.addFilter(drop)
    try:
        yield
    finally:
        logging.root.removeFilter(drop)


def _hub_client_offline() -> bool:
    """Whether huggingface_hub itself is in offline mode (it then fails at once on a file it has not cached)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def state_dict_sha256(model: torch.nn.Module) -> str:
    """sha256 over the state dict: for each key in sorted order, its name, dtype, shape and raw bytes.

    Independent of how the weights were stored on disk, so the same weights from a tag or a file
    converted to another format hash the same.
    """
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{key}\0{flat.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(flat.view(torch.uint8).numpy())
    return digest.hexdigest()


def _uses_quick_gelu(model: torch.nn.Module) -> bool:
    return any(type(module).__name__ == "QuickGELU" for module in model.modules())


def _model_device(model: torch.nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _embed_dim(model: torch.nn.Module) -> int:
    visual = getattr(model, "visual", None)
    dim = getattr(visual, "output_dim", None)
    if isinstance(dim, int):
        return dim
    projection = getattr(model, "text_projection", None)
    if isinstance(projection, torch.Tensor):
        return int(projection.shape[-1])
    raise ValueError("cannot tell the embedding size of this model (no visual.output_dim)")


def _preprocess_info(model: torch.nn.Module, transform: Any) -> dict[str, Any]:
    """The preprocessing that moves embeddings: open_clip's config when present, and the transform's repr."""
    info: dict[str, Any] = {}
    cfg = getattr(getattr(model, "visual", model), "preprocess_cfg", None)
    if isinstance(cfg, dict):
        info = {key: list(value) if isinstance(value, tuple) else value for key, value in cfg.items()}
    # Memory addresses in a repr (custom callables) would make the cache key differ run to run.
    info["transform"] = re.sub(r" at 0x[0-9a-fA-F]+", "", repr(transform))
    return info
