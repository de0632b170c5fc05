"""ImageReward (Xu et al., NeurIPS 2023) rebuilt from transformers' BLIP classes, so its checkpoint loads offline
and strictly.

The `image-reward` package is not used: its load() fetches med_config.json from the hub even for a local
checkpoint, and it loads with strict=False, so a wrong file scores silently with random layers. Here the same
network is built from `BlipVisionModel` (BLIP's ViT) and `BlipTextModel` (BLIP's BERT with cross-attention) plus
ImageReward's MLP head, and the original checkpoint's keys are renamed onto them (the renames of transformers'
convert_blip_original_pytorch_to_hf.py for the ViT; the text encoder's names are already the same).

Scoring follows ImageReward's `score()`: the prompt through the BERT tokenizer (padding to, and cut at, 35
tokens; the first token stays [CLS], as ImageReward's score() leaves it), the text encoder cross-attending to
every image token, its [CLS] output through the MLP, then (r - 0.16717362830052426) / 1.0333394966054072.

Where the model comes from (`model`):
- the hub id `THUDM/ImageReward`: `ImageReward.pt` (a `.safetensors` twin is preferred) and `med_config.json`,
  from the Hugging Face cache, else downloaded; the `bert-base-uncased` tokenizer likewise.
- a local weights file (`ImageReward.pt` or `.safetensors`, with the original key names), or a folder holding
  one. Read beside it: `med_config.json` (optional; ImageReward v1.0's values otherwise), `vision_config.json`
  (optional, sdeval's own: BlipVisionConfig fields; ImageReward's ViT-L/16 at 224 px otherwise) and the
  bert-base-uncased tokenizer files (`vocab.txt`, in the folder or its `tokenizer/` subfolder). Else the
  tokenizer is taken from the Hugging Face cache when it is there. Local weights never cause a download.
The tokenizer can also be given (`tokenizer=`) as a folder or a hub id.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sdeval.core.errors import SdevalError, first_line
from sdeval.core.hashing import file_sha256
from sdeval.core.hub import cached_hub_file, is_hub_id, model_source
from sdeval.core.suggest import check_keys
from sdeval.preference.base import (
    CLIP_MEAN,
    CLIP_STD,
    check_prompts,
    make_cache_key,
    no_model_error,
    to_pil,
    vocab_sha256,
)
from sdeval.preference.info import IMAGEREWARD as INFO
from sdeval.preference.info import IMAGEREWARD_TOKENIZER_REPO as TOKENIZER_REPO
from sdeval.preference.info import DescribedScorer
from sdeval.preference.mlp import RewardMLP
from sdeval.preference.weights import (
    PICKLE_SUFFIXES,
    SAFETENSORS_SUFFIX,
    check_state,
    hub_file,
    quiet_transformers,
    read_state_file,
)

IMAGEREWARD_REPO = INFO.default_model
WEIGHTS_NAME = "ImageReward.pt"
MED_CONFIG_NAME = "med_config.json"
#: sdeval's own optional file: the ViT's BlipVisionConfig fields, for checkpoints other than ImageReward v1.0.
VISION_CONFIG_NAME = "vision_config.json"
TOKENIZER_VOCAB = "vocab.txt"
TOKENIZER_CONFIG = "tokenizer_config.json"
#: ImageReward's score normalisation (ImageReward.py: self.mean, self.std).
REWARD_MEAN = 0.16717362830052426
REWARD_STD = 1.0333394966054072
#: Prompts are padded to and cut at this many tokens, [CLS] and [SEP] included.
MAX_TOKENS = 35
# Bump when what score() returns changes for the same files (tokenization, normalisation, preprocessing).
_SCORER_VERSION = 1

#: ImageReward's med_config.json (a BertConfig); a local med_config.json overrides these fields.
TEXT_DEFAULTS: dict[str, Any] = {
    "vocab_size": 30524,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "max_position_embeddings": 512,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
    # BertConfig has no bos/eos/sep ids (BlipTextConfig's defaults would point outside a small vocabulary).
    "bos_token_id": None,
    "eos_token_id": None,
    "sep_token_id": None,
}
#: BLIP's create_vit('large', 224): ViT-L/16, 24 blocks, 16 heads, MLP ratio 4, LayerNorm eps 1e-6, exact GELU.
VISION_DEFAULTS: dict[str, Any] = {
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "patch_size": 16,
    "image_size": 224,
    "layer_norm_eps": 1e-6,
    "hidden_act": "gelu",
}

# (original ImageReward.pt prefix, rebuilt model prefix); `{i}` is a block index. Full keys when not ending in ".".
_KEY_PAIRS: tuple[tuple[str, str], ...] = (
    ("blip.visual_encoder.cls_token", "vision.embeddings.class_embedding"),
    ("blip.visual_encoder.pos_embed", "vision.embeddings.position_embedding"),
    ("blip.visual_encoder.patch_embed.proj.", "vision.embeddings.patch_embedding."),
    ("blip.visual_encoder.blocks.{i}.norm1.", "vision.encoder.layers.{i}.layer_norm1."),
    ("blip.visual_encoder.blocks.{i}.attn.qkv.", "vision.encoder.layers.{i}.self_attn.qkv."),
    ("blip.visual_encoder.blocks.{i}.attn.proj.", "vision.encoder.layers.{i}.self_attn.projection."),
    ("blip.visual_encoder.blocks.{i}.norm2.", "vision.encoder.layers.{i}.layer_norm2."),
    ("blip.visual_encoder.blocks.{i}.mlp.", "vision.encoder.layers.{i}.mlp."),
    ("blip.visual_encoder.norm.", "vision.post_layernorm."),
    ("blip.text_encoder.", "text."),
    ("mlp.", "mlp."),
)
#: Entries of ImageReward.pt that its score() never reads: BLIP's contrastive projections and a position-id buffer.
UNUSED_KEYS = frozenset(
    {
        "blip.vision_proj.weight",
        "blip.vision_proj.bias",
        "blip.text_proj.weight",
        "blip.text_proj.bias",
        "blip.text_encoder.embeddings.position_ids",
    }
)


def _pattern(template: str) -> re.Pattern[str]:
    body = re.escape(template).replace(re.escape("{i}"), r"(?P<i>\d+)")
    return re.compile(f"^{body}" if template.endswith(".") else f"^{body}$")


_TO_MODEL = tuple((_pattern(src), dst) for src, dst in _KEY_PAIRS)
_TO_ORIGINAL = tuple((_pattern(dst), src) for src, dst in _KEY_PAIRS)


def _rename(key: str, table: tuple[tuple[re.Pattern[str], str], ...]) -> str | None:
    for pattern, target in table:
        match = pattern.match(key)
        if match:
            index = match.groupdict().get("i")
            return target.replace("{i}", index or "") + key[match.end() :]
    return None


def to_model_key(original: str) -> str | None:
    """The rebuilt model's name for an ImageReward.pt key (None: not a key of ImageReward's network)."""
    return _rename(original, _TO_MODEL)


def to_original_key(key: str) -> str:
    """The ImageReward.pt name of a rebuilt model key."""
    original = _rename(key, _TO_ORIGINAL)
    if original is None:
        raise KeyError(f"no ImageReward.pt name for model key {key!r}")
    return original


class ImageRewardModel(nn.Module):
    """BLIP's ViT over the image, BLIP's BERT over the prompt cross-attending to every image token, the MLP head."""

    def __init__(self, vision_config: Any, text_config: Any) -> None:
        super().__init__()
        from transformers import BlipTextModel, BlipVisionModel

        self.vision = BlipVisionModel(vision_config)
        self.text = BlipTextModel(text_config, add_pooling_layer=False)
        self.mlp = RewardMLP(text_config.hidden_size)

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Raw (unnormalised) rewards [N] of image i with prompt i."""
        image_embeds = self.vision(pixel_values=pixel_values).last_hidden_state
        image_atts = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        text = self.text(
            input_ids=input_ids,
            attention_mask=mask,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=image_atts,
        )
        return self.mlp(text.last_hidden_state[:, 0, :].float())


class ImageRewardTransform:
    """ImageReward's `_transform(224)`: PIL bicubic resize of the short side, centre crop, CLIP normalisation.

    Holds only torchvision transforms, so it pickles cheaply into decode workers.
    """

    def __init__(self, size: int) -> None:
        from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Normalize, Resize, ToTensor

        self.size = size
        self.transform = Compose(
            [
                Resize(size, interpolation=InterpolationMode.BICUBIC),
                CenterCrop(size),
                ToTensor(),
                Normalize(CLIP_MEAN, CLIP_STD),
            ]
        )

    def __call__(self, rgb: np.ndarray) -> torch.Tensor:
        # ToTensor and Normalize end the Compose, so a tensor; its type is inferred as its input's (an image).
        return self.transform(to_pil(rgb))  # pyright: ignore[reportReturnType]

    def describe(self) -> dict[str, Any]:
        return {
            "resize": self.size,
            "interpolation": "bicubic (PIL, short side)",
            "center_crop": self.size,
            "mean": list(CLIP_MEAN),
            "std": list(CLIP_STD),
        }


@dataclass(frozen=True)
class ImageRewardFiles:
    """Where each part of an ImageReward model comes from."""

    weights: Path
    label: str  # the hub id, or file:NAME
    med_config: Path | None  # None: ImageReward v1.0's values
    vision_config: Path | None  # None: ViT-L/16 at 224 px
    tokenizer: str  # a folder or a hub id
    tokenizer_local_only: bool  # True: never download it (the user gave local weights)


class ImageRewardScorer(DescribedScorer, info=INFO):
    """ImageReward's score of each image against its prompt (not factorable: text cross-attends to the image)."""

    def __init__(
        self,
        model: ImageRewardModel,
        tokenizer: Any,
        *,
        source: str,
        weights_sha256: str,
        tokenizer_source: str,
        device: str | torch.device | None = None,
        batch_size: int = 32,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.model: ImageRewardModel | None = model.to(self.device).eval()
        self.tokenizer: Any = tokenizer
        self.source = source
        self.weights_sha256 = weights_sha256
        self.tokenizer_source = tokenizer_source
        self.batch_size = batch_size
        self.image_transform = ImageRewardTransform(_image_size(model.vision.config.image_size))
        self._architecture = _architecture(model)
        self._tokenizer_info = {
            "source": tokenizer_source,
            "class": type(tokenizer).__name__,
            "vocab_sha256": vocab_sha256(tokenizer),
            "do_lower_case": getattr(tokenizer, "do_lower_case", None),
            "max_length": MAX_TOKENS,
            "padding": "max_length",
            "truncation": True,
            "first_token": "[CLS]",
        }
        identity = {
            "architecture": self._architecture,
            "tokenizer": self._tokenizer_info,
            "preprocess": self.image_transform.describe(),
            "normalisation": [REWARD_MEAN, REWARD_STD],
        }
        self.cache_key = make_cache_key(self.name, _SCORER_VERSION, source, weights_sha256, identity)

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        model: str | None = None,
        *,
        tokenizer: str | None = None,
        device: str | torch.device = "cpu",
        allow_pickle: bool = False,
        batch_size: int = 32,
    ) -> ImageRewardScorer:
        """ImageReward from the hub id (default THUDM/ImageReward) or a local weights file or folder (module doc)."""
        files = locate_files(model or IMAGEREWARD_REPO, tokenizer=tokenizer, allow_pickle=allow_pickle)
        network = build_model(files, allow_pickle=allow_pickle)
        bert = load_tokenizer(files.tokenizer, local_only=files.tokenizer_local_only)
        vocab = network.text.config.vocab_size
        if len(bert) > vocab:
            raise SdevalError(
                f"ImageReward tokenizer {files.tokenizer}: {len(bert)} tokens with [DEC] and [ENC], but the text "
                f"encoder has {vocab} embeddings; is it the bert-base-uncased tokenizer?"
            )
        return cls(
            network,
            bert,
            source=files.label,
            weights_sha256=file_sha256(files.weights),
            tokenizer_source=model_source(files.tokenizer),
            device=device,
            batch_size=batch_size,
        )

    # -- scoring ----------------------------------------------------------------------------------

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        """One decoded HxWx3 uint8 image to a [3, 224, 224] tensor (ImageReward's transform)."""
        return self.image_transform(rgb)

    def score(self, batch: torch.Tensor, prompts: Sequence[str]) -> np.ndarray:
        """float64 [N] normalised ImageReward scores of image i against prompts[i]."""
        model = self._require_model()
        prompts = check_prompts(prompts, len(batch))
        rewards: list[torch.Tensor] = []
        with torch.inference_mode():
            for start in range(0, len(prompts), self.batch_size):
                stop = start + self.batch_size
                tokens = self.tokenizer(
                    prompts[start:stop],
                    padding="max_length",
                    truncation=True,
                    max_length=MAX_TOKENS,
                    return_tensors="pt",
                )
                pixels = batch[start:stop].to(self.device, dtype=torch.float32)
                raw = model(pixels, tokens["input_ids"].to(self.device), tokens["attention_mask"].to(self.device))
                rewards.append(raw.float().cpu())
        if not rewards:
            return np.zeros(0, dtype=np.float64)
        raw_all = torch.cat(rewards).numpy().astype(np.float64)
        return (raw_all - REWARD_MEAN) / REWARD_STD

    def truncated(self, prompts: Sequence[str]) -> list[bool]:
        """For each prompt, whether it is cut to fit 35 tokens ([CLS] and [SEP] included)."""
        if self.tokenizer is None:
            raise no_model_error(self.name)
        return [len(self.tokenizer(prompt)["input_ids"]) > MAX_TOKENS for prompt in check_prompts(prompts)]

    def protocol(self) -> dict[str, Any]:
        """Model, weights sha256, architecture, tokenizer, preprocessing, normalisation and library versions."""
        import torchvision
        import transformers

        return {
            "scorer": self.name,
            "scorer_version": _SCORER_VERSION,
            "model": self.source,
            "weights_sha256": self.weights_sha256,
            "architecture": self._architecture,
            "tokenizer": self._tokenizer_info,
            "preprocess": self.image_transform.describe(),
            "normalisation": {"mean": REWARD_MEAN, "std": REWARD_STD},
            "score": "(mlp(text_encoder(prompt x-attn image tokens)[CLS]) - mean) / std",
            "dtype": "float32",
            "torch_version": torch.__version__,
            "torchvision_version": torchvision.__version__,
            "transformers_version": transformers.__version__,
        }

    # -- internals -------------------------------------------------------------------------------

    def _require_model(self) -> ImageRewardModel:
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


# -- files --------------------------------------------------------------------------------------


def locate_files(model: str, *, tokenizer: str | None, allow_pickle: bool) -> ImageRewardFiles:
    """Where the weights, configs and tokenizer are: a local file or folder, else a hub repo."""
    local = Path(model).expanduser()
    if local.exists():
        return _local_files(local, tokenizer)
    if not is_hub_id(model):
        raise SdevalError(f"ImageReward model {model}: no such file or folder (nor a hub id OWNER/NAME)")
    hint = (
        "pass the folder holding ImageReward.pt (or .safetensors), med_config.json and vocab.txt as "
        "--imagereward-model PATH"
    )
    weights = hub_file(model, WEIGHTS_NAME, what="ImageReward weights", hint=hint, allow_pickle=allow_pickle)
    med = hub_file(model, MED_CONFIG_NAME, what="ImageReward config", hint=hint, allow_pickle=False)
    vision = cached_hub_file(model, VISION_CONFIG_NAME)  # sdeval's own file: read when present, never fetched
    return ImageRewardFiles(weights, model, med, vision, tokenizer or TOKENIZER_REPO, tokenizer_local_only=False)


def _local_files(local: Path, tokenizer: str | None) -> ImageRewardFiles:
    folder = local if local.is_dir() else local.parent
    weights = _weights_in(local) if local.is_dir() else local
    med = folder / MED_CONFIG_NAME
    vision = folder / VISION_CONFIG_NAME
    # A tokenizer the user names may be downloaded; the default one for local weights comes from the cache only.
    tok, local_only = tokenizer, False
    if tok is None:
        found = next((f for f in (folder, folder / "tokenizer") if (f / TOKENIZER_VOCAB).is_file()), None)
        tok, local_only = (str(found) if found is not None else TOKENIZER_REPO), True
    return ImageRewardFiles(
        weights,
        f"file:{weights.name}",
        med if med.is_file() else None,
        vision if vision.is_file() else None,
        tok,
        tokenizer_local_only=local_only,
    )


def _weights_in(folder: Path) -> Path:
    """ImageReward.safetensors, else ImageReward.pt, else the folder's only weights file."""
    for name in (Path(WEIGHTS_NAME).with_suffix(SAFETENSORS_SUFFIX).name, WEIGHTS_NAME):
        if (folder / name).is_file():
            return folder / name
    for suffixes in ((SAFETENSORS_SUFFIX,), PICKLE_SUFFIXES):
        found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            raise SdevalError(f"ImageReward model folder {folder} holds several weights files ({names}); give one")
    raise SdevalError(f"ImageReward model folder {folder} holds no weights file ({WEIGHTS_NAME} or .safetensors)")


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise SdevalError(f"{what} {path}: cannot read it as JSON: {first_line(err)}") from err
    if not isinstance(data, dict):
        raise SdevalError(f"{what} {path}: expected a JSON object")
    return data


def text_config(path: Path | None, encoder_width: int) -> Any:
    """BLIP's BERT from med_config.json; its cross-attention reads the ViT's width, as ImageReward sets it."""
    from transformers import BlipTextConfig

    values = dict(TEXT_DEFAULTS)
    if path is not None:
        raw = _read_json(path, "ImageReward med_config")
        if raw.get("add_cross_attention") is False:
            raise SdevalError(f"ImageReward med_config {path}: add_cross_attention is false; ImageReward needs it")
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise SdevalError(f"ImageReward med_config {path}: only absolute position embeddings are supported")
        values.update({key: raw[key] for key in TEXT_DEFAULTS if key in raw})
    # is_decoder builds the cross-attention layers; the forward pass still masks bidirectionally (BERT encoder).
    return BlipTextConfig(
        **values,
        encoder_hidden_size=encoder_width,
        is_decoder=True,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


def vision_config(path: Path | None) -> Any:
    """BLIP's ViT: ImageReward's ViT-L/16 at 224 px, or the fields of an sdeval vision_config.json."""
    from transformers import BlipVisionConfig

    values = dict(VISION_DEFAULTS)
    if path is not None:
        raw = _read_json(path, "ImageReward vision_config")
        check_keys(raw, tuple(VISION_DEFAULTS), f"ImageReward vision_config {path}: ")
        values.update(raw)
    return BlipVisionConfig(**values, attention_dropout=0.0)


def build_model(files: ImageRewardFiles, *, allow_pickle: bool) -> ImageRewardModel:
    """The rebuilt network with the checkpoint loaded strictly (in ImageReward.pt's key names)."""
    state = read_state_file(files.weights, allow_pickle=allow_pickle, what="ImageReward weights")
    vision = vision_config(files.vision_config)
    with quiet_transformers():
        network = ImageRewardModel(vision, text_config(files.med_config, vision.hidden_size))
    expected = {to_original_key(key): tuple(value.shape) for key, value in network.state_dict().items()}
    check_state(expected, state, what="ImageReward weights", source=str(files.weights), ignored=UNUSED_KEYS)
    renamed: dict[str, Any] = {}
    for key, value in state.items():
        if key in expected:
            name = to_model_key(key)
            assert name is not None  # `expected` holds the ImageReward.pt names of model keys only
            renamed[name] = value
    network.load_state_dict(renamed, strict=True)
    return network.eval()


def load_tokenizer(location: str, *, local_only: bool) -> Any:
    """BLIP's init_tokenizer(): bert-base-uncased with [DEC] as bos token and [ENC] as an extra special token."""
    from transformers import BertTokenizer

    folder = _tokenizer_folder(location, local_only=local_only)
    try:
        with quiet_transformers():
            tokenizer = BertTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as err:
        raise SdevalError(f"ImageReward tokenizer {location!r}: cannot load it: {first_line(err)}") from err
    vocab = tokenizer.get_vocab()
    if "[CLS]" not in vocab or "[SEP]" not in vocab:
        raise SdevalError(f"ImageReward tokenizer {location!r}: not a BERT vocabulary (no [CLS]/[SEP] in vocab.txt)")
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return tokenizer


def _tokenizer_folder(location: str, *, local_only: bool) -> Path:
    """The folder holding the tokenizer's vocab.txt: a local folder, or the hub repo's cached (or fetched) files.

    The files are found here, not by transformers: given no files, BertTokenizer.from_pretrained builds an empty
    tokenizer without a word of warning.
    """
    what = f"ImageReward tokenizer {location!r}"
    hint = "put bert-base-uncased's vocab.txt beside the ImageReward weights, or give a tokenizer folder"
    local = Path(location).expanduser()
    if local.exists():
        if not (local.is_dir() and (local / TOKENIZER_VOCAB).is_file()):
            raise SdevalError(f"{what}: no {TOKENIZER_VOCAB} in it ({hint})")
        return local
    vocab = cached_hub_file(location, TOKENIZER_VOCAB)
    if vocab is None:
        if local_only:
            raise SdevalError(f"{what} is not in the Hugging Face cache, and local weights never download: {hint}")
        vocab = hub_file(location, TOKENIZER_VOCAB, what=what, hint=hint, allow_pickle=False)
    if cached_hub_file(location, TOKENIZER_CONFIG) is None and not local_only:
        # Optional: it says do_lower_case (BertTokenizer's default is lower case too).
        with contextlib.suppress(SdevalError):
            hub_file(location, TOKENIZER_CONFIG, what=what, hint=hint, allow_pickle=False)
    return vocab.parent


def _image_size(size: Any) -> int:
    if isinstance(size, (list, tuple)):
        if len(size) != 2 or size[0] != size[1]:
            raise SdevalError(f"ImageReward vision image_size must be square, got {size}")
        return int(size[0])
    return int(size)


def _architecture(model: ImageRewardModel) -> dict[str, Any]:
    vision, text = model.vision.config, model.text.config
    return {
        "vision": {key: getattr(vision, key) for key in VISION_DEFAULTS},
        "text": {key: getattr(text, key) for key in TEXT_DEFAULTS} | {"encoder_hidden_size": text.encoder_hidden_size},
        "mlp_in": model.mlp.in_features,
    }
