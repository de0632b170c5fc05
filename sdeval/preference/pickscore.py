"""PickScore (Kirstain et al. 2023): a transformers CLIPModel fine-tuned on Pick-a-Pic preferences.

Score, as PickScore's README: model.logit_scale.exp() * cos(image_embeds, text_embeds), with the image through
the CLIP image processor and the prompt through the CLIP tokenizer (padding, truncation at 77 tokens).

The model (`yuvalkirstain/PickScore_v1`) ships without a processor; the README takes it from another repo,
`laion/CLIP-ViT-H-14-laion2B-s32B-b79K`. Where each comes from:
- a hub model id: the model, and the processor (default the laion repo), from the Hugging Face cache, else
  downloaded.
- a local model folder (save_pretrained layout: config.json + model.safetensors): its own processor files
  (preprocessor_config.json + tokenizer files) when it has them; else `processor=` (a folder or hub id); else the
  laion processor when it is in the Hugging Face cache. A local model never causes a download by itself.
The image processor is transformers' PIL one (`CLIPImageProcessorPil` from transformers 5, `CLIPImageProcessor`
before), which resizes as PickScore's published numbers were made.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sdeval.core.errors import SdevalError, first_line
from sdeval.core.hub import cached_hub_file, is_hub_id, model_source
from sdeval.core.offline import require_download
from sdeval.preference.base import (
    check_prompts,
    distinct_rows,
    make_cache_key,
    no_model_error,
    row_dot,
    to_pil,
    vocab_sha256,
)
from sdeval.preference.info import PICKSCORE as INFO
from sdeval.preference.info import PICKSCORE_PROCESSOR, DescribedScorer
from sdeval.preference.weights import (
    ALLOW_PICKLE_HINT,
    files_sha256,
    quiet_transformers,
)

PICKSCORE_MODEL = INFO.default_model
MAX_TOKENS = 77
FEATURE_NAME = "pickscore_image"
TEXT_FEATURE_NAME = "pickscore_text"
# Bump when what extract()/embed_texts()/score returns changes for the same weights.
_SCORER_VERSION = 1
# Buffers that older checkpoints saved and newer transformers no longer keep: not weights.
_BUFFER_SUFFIXES = ("position_ids",)
_PROCESSOR_KEYS = ("do_resize", "size", "resample", "do_center_crop", "crop_size", "do_rescale", "rescale_factor")


class PickScoreTransform:
    """The CLIP image processor on one decoded image; pickles with the processor's config only."""

    def __init__(self, image_processor: Any) -> None:
        self.image_processor = image_processor

    def __call__(self, rgb: np.ndarray) -> torch.Tensor:
        return self.image_processor(images=to_pil(rgb), return_tensors="pt")["pixel_values"][0]

    def describe(self) -> dict[str, Any]:
        config = self.image_processor.to_dict()
        info = {key: config.get(key) for key in _PROCESSOR_KEYS}
        info.update(
            {
                "class": type(self.image_processor).__name__,
                "mean": config.get("image_mean"),
                "std": config.get("image_std"),
                "do_normalize": config.get("do_normalize"),
            }
        )
        return json.loads(json.dumps(info, default=str))


class PickScoreScorer(DescribedScorer, info=INFO):
    """PickScore: logit_scale.exp() times the cosine of CLIP image and prompt embeddings."""

    feature_name = FEATURE_NAME

    def __init__(
        self,
        model: Any,
        image_processor: Any,
        tokenizer: Any,
        *,
        source: str,
        processor_source: str,
        weights_sha256: str,
        device: str | torch.device | None = None,
        batch_size: int = 32,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.model: Any = model.to(self.device).eval()
        self.tokenizer: Any = tokenizer
        self.image_transform = PickScoreTransform(image_processor)
        self.source = source
        self.processor_source = processor_source
        self.weights_sha256 = weights_sha256
        self.batch_size = batch_size
        # As PickScore: the float32 parameter's exp(), read once.
        self.logit_scale = float(model.logit_scale.detach().float().exp())
        self._tokenizer_info = {
            "source": processor_source,
            "class": type(tokenizer).__name__,
            "vocab_sha256": vocab_sha256(tokenizer),
            "max_length": MAX_TOKENS,
            "padding": True,
            "truncation": True,
        }
        identity = {"preprocess": self.image_transform.describe(), "normalized": True}
        self.cache_key = make_cache_key(FEATURE_NAME, _SCORER_VERSION, source, weights_sha256, identity)
        self.text_cache_key = make_cache_key(
            TEXT_FEATURE_NAME, _SCORER_VERSION, source, weights_sha256, {"tokenizer": self._tokenizer_info}
        )

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        model: str | None = None,
        *,
        processor: str | None = None,
        device: str | torch.device = "cpu",
        allow_pickle: bool = False,
        batch_size: int = 32,
    ) -> PickScoreScorer:
        """PickScore from a hub id (default yuvalkirstain/PickScore_v1) or a local model folder (module doc)."""
        model = model or PICKSCORE_MODEL
        network, folder, label, is_local = _load_model(model, allow_pickle=allow_pickle)
        location, local_only = _processor_location(processor, folder, is_local)
        image_processor, tokenizer = _load_processor(location, local_only=local_only)
        vocab = int(network.config.text_config.vocab_size)
        if len(tokenizer) > vocab:
            raise SdevalError(
                f"PickScore processor {location}: its tokenizer has {len(tokenizer)} tokens, the model's text encoder "
                f"{vocab}; is it a CLIP tokenizer?"
            )
        return cls(
            network,
            image_processor,
            tokenizer,
            source=label,
            processor_source=model_source(location),
            weights_sha256=files_sha256(_weight_files(folder, allow_pickle=allow_pickle, what=model)),
            device=device,
            batch_size=batch_size,
        )

    # -- EmbeddingScorer -------------------------------------------------------------------------

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        """One decoded HxWx3 uint8 image to the CLIP image processor's [3, S, S] pixel values."""
        return self.image_transform(rgb)

    def extract(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """{'pickscore_image': L2-normalised float32 [N, D] image embeddings on the CPU}."""
        model = self._require_model()
        if len(batch) == 0:
            return {FEATURE_NAME: torch.zeros((0, int(model.config.projection_dim)), dtype=torch.float32)}
        with torch.inference_mode():
            output = model.get_image_features(pixel_values=batch.to(self.device, dtype=torch.float32))
            features = F.normalize(_embeddings(output).float(), dim=-1)
        return {FEATURE_NAME: features.cpu()}

    def embed_texts(self, prompts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 [len(prompts), D] prompt embeddings; each distinct prompt encoded once."""
        model = self._require_model()
        prompts = check_prompts(prompts)
        distinct = list(dict.fromkeys(prompts))
        rows: list[torch.Tensor] = []
        with torch.inference_mode():
            for start in range(0, len(distinct), self.batch_size):
                tokens = self.tokenizer(
                    distinct[start : start + self.batch_size],
                    padding=True,
                    truncation=True,
                    max_length=MAX_TOKENS,
                    return_tensors="pt",
                )
                output = model.get_text_features(
                    input_ids=tokens["input_ids"].to(self.device),
                    attention_mask=tokens["attention_mask"].to(self.device),
                )
                rows.append(F.normalize(_embeddings(output).float(), dim=-1).cpu())
        if not rows:
            return np.zeros((0, int(model.config.projection_dim)), dtype=np.float32)
        return distinct_rows(prompts, torch.cat(rows).numpy(), distinct)

    def score_embeddings(self, image_emb: np.ndarray, text_emb: np.ndarray | None) -> np.ndarray:
        """float64 [N] logit_scale.exp() * cosine of row-aligned L2-normalised embeddings."""
        return self.logit_scale * row_dot(image_emb, text_emb, self.name)

    def score(self, batch: torch.Tensor, prompts: Sequence[str]) -> np.ndarray:
        """float64 [N] PickScore of image i against prompts[i]."""
        prompts = check_prompts(prompts, len(batch))
        return self.score_embeddings(self.extract(batch)[FEATURE_NAME].numpy(), self.embed_texts(prompts))

    def truncated(self, prompts: Sequence[str]) -> list[bool]:
        """For each prompt, whether it is cut to fit 77 tokens (start and end tokens included)."""
        if self.tokenizer is None:
            raise no_model_error(self.name)
        return [len(self.tokenizer(prompt)["input_ids"]) > MAX_TOKENS for prompt in check_prompts(prompts)]

    def protocol(self) -> dict[str, Any]:
        """Model, weights sha256, processor, tokenizer, logit scale, score formula and library versions."""
        import transformers

        return {
            "scorer": self.name,
            "scorer_version": _SCORER_VERSION,
            "model": self.source,
            "weights_sha256": self.weights_sha256,
            "processor": self.processor_source,
            "preprocess": self.image_transform.describe(),
            "tokenizer": self._tokenizer_info,
            "logit_scale": self.logit_scale,
            "score": "logit_scale.exp() * cos(image_embeds, text_embeds)",
            "dtype": "float32",
            "torch_version": torch.__version__,
            "transformers_version": transformers.__version__,
        }

    # -- internals -------------------------------------------------------------------------------

    def _require_model(self) -> Any:
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


def _embeddings(output: Any) -> torch.Tensor:
    """get_*_features returns a tensor before transformers 5, an output whose pooler_output is projected after."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _load_model(model: str, *, allow_pickle: bool) -> tuple[Any, Path, str, bool]:
    """(CLIPModel, the folder its files are in, label, is_local), loaded strictly."""
    local = Path(model).expanduser()
    if local.exists():
        return _load_folder(local, model, allow_pickle=allow_pickle), local, model_source(model), True
    if not is_hub_id(model):
        raise SdevalError(f"PickScore model {model}: no such folder (nor a hub id OWNER/NAME)")
    snapshot = _cached_snapshot(model, "config.json")
    if snapshot is not None and _has_weights(snapshot, allow_pickle=allow_pickle):
        return _load_folder(snapshot, model, allow_pickle=allow_pickle), snapshot, model, False
    hint = "pass a local model folder (save_pretrained layout) as --pickscore-model PATH"
    require_download(f"PickScore model {model!r}", hint)
    network = _from_pretrained(model, model, local_only=False, allow_pickle=allow_pickle)
    snapshot = _cached_snapshot(model, "config.json")
    if snapshot is None:
        raise SdevalError(f"PickScore model {model}: loaded, but its files are not in the Hugging Face cache")
    return network, snapshot, model, False


def _load_folder(folder: Path, model: str, *, allow_pickle: bool) -> Any:
    """A CLIPModel from a save_pretrained folder (never a network call)."""
    if not (folder.is_dir() and (folder / "config.json").is_file()):
        raise SdevalError(f"PickScore model {model}: not a model folder (no config.json in it)")
    _check_config(folder / "config.json", model)
    _weight_files(folder, allow_pickle=allow_pickle, what=model)  # refuse a pickle before reading it
    return _from_pretrained(str(folder), model, local_only=True, allow_pickle=allow_pickle)


def _cached_snapshot(repo_id: str, filename: str) -> Path | None:
    """The cache folder holding a hub repo's file, found on disk only.

    Asking transformers with local_files_only=True is not enough: on a cache miss, huggingface_hub still calls
    the hub (to build its user-agent header) unless HF_HUB_OFFLINE is set.
    """
    cached = cached_hub_file(repo_id, filename)
    return cached.parent if cached is not None else None


def _has_weights(folder: Path, *, allow_pickle: bool) -> bool:
    try:
        _weight_files(folder, allow_pickle=allow_pickle, what=str(folder))
    except SdevalError:
        return False
    return True


def _check_config(path: Path, model: str) -> None:
    try:
        model_type = json.loads(path.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError) as err:
        raise SdevalError(f"PickScore model {model}: cannot read {path.name}: {first_line(err)}") from err
    if model_type != "clip":
        raise SdevalError(f"PickScore model {model}: a {model_type!r} model; PickScore is a CLIP model")


def _from_pretrained(location: str, model: str, *, local_only: bool, allow_pickle: bool) -> Any:
    """CLIPModel.from_pretrained with every weight accounted for (transformers would fill gaps at random)."""
    from transformers import CLIPModel

    try:
        with quiet_transformers():
            # With output_loading_info, a (model, info) pair; transformers annotates only the model.
            network, info = CLIPModel.from_pretrained(  # pyright: ignore[reportGeneralTypeIssues]
                location,
                local_files_only=local_only,
                use_safetensors=None if allow_pickle else True,
                output_loading_info=True,
            )
    except OSError as err:
        hint = "" if allow_pickle else f" (if it only has pytorch_model.bin: {ALLOW_PICKLE_HINT})"
        raise SdevalError(f"PickScore model {model}: cannot load it: {first_line(err)}{hint}") from err
    except (ValueError, RuntimeError) as err:
        raise SdevalError(f"PickScore model {model}: cannot load it: {first_line(err)}") from err
    _check_loading(info, model)
    if getattr(network.config, "model_type", None) != "clip":
        raise SdevalError(f"PickScore model {model}: a {network.config.model_type!r} model; PickScore is a CLIP model")
    return network


def _check_loading(info: dict[str, Any], model: str) -> None:
    """SdevalError naming missing, unexpected or mis-shaped weights (obsolete position-id buffers aside)."""
    problems = []
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        keys = sorted(str(k) for k in info.get(kind) or () if not str(k).endswith(_BUFFER_SUFFIXES))
        if keys:
            shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
            problems.append(f"{len(keys)} {kind.replace('_', ' ')}: {shown}")
    if problems:
        raise SdevalError(f"PickScore model {model}: weights do not fit the CLIP model ({'; '.join(problems)})")


def _weight_files(folder: Path, *, allow_pickle: bool, what: str) -> list[Path]:
    """The weight files transformers reads from a model folder: safetensors first, pytorch_model*.bin if allowed."""
    safe = sorted(p for p in folder.glob("model*.safetensors") if p.is_file())
    if safe:
        return safe
    pickles = sorted(p for p in folder.glob("pytorch_model*.bin") if p.is_file())
    if pickles:
        if not allow_pickle:
            raise SdevalError(
                f"PickScore model {what}: {pickles[0].name} is a pickle file, which can run code when loaded; "
                f"{ALLOW_PICKLE_HINT}"
            )
        return pickles
    raise SdevalError(f"PickScore model {what}: no model.safetensors (or pytorch_model.bin) in {folder}")


def _processor_location(processor: str | None, folder: Path, is_local: bool) -> tuple[str, bool]:
    """(where the processor is, whether only the cache may be used) for the rules in the module doc."""
    if processor is not None:
        return processor, False
    if is_local and (folder / "preprocessor_config.json").is_file():
        return str(folder), True
    return PICKSCORE_PROCESSOR, is_local


def _load_processor(location: str, *, local_only: bool) -> tuple[Any, Any]:
    """(PIL-based CLIP image processor, CLIP tokenizer) from a folder, the cache, or (allowed) the hub."""
    import transformers

    image_cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    what = f"PickScore processor {location!r}"
    hint = "put preprocessor_config.json and the CLIP tokenizer files in the --pickscore-model folder"
    local = Path(location).expanduser()
    try:
        with quiet_transformers():
            if local.exists():
                return _processor_parts(image_cls, str(local), local_only=True)
            snapshot = _cached_snapshot(location, "preprocessor_config.json")
            if snapshot is not None:
                return _processor_parts(image_cls, str(snapshot), local_only=True)
            if local_only:
                raise SdevalError(f"{what} is not in the Hugging Face cache, and a local model never downloads: {hint}")
            require_download(what, hint)
            return _processor_parts(image_cls, location, local_only=False)
    except (OSError, ValueError) as err:
        raise SdevalError(f"{what}: cannot load it: {first_line(err)} ({hint})") from err


def _processor_parts(image_cls: Any, location: str, *, local_only: bool) -> tuple[Any, Any]:
    from transformers import AutoTokenizer

    image_processor = image_cls.from_pretrained(location, local_files_only=local_only)
    tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=local_only)
    return image_processor, tokenizer
