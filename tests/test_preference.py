"""Human-preference scorers (sdeval.preference) on tiny random models of the real classes, saved in the formats users
have and loaded back by path: each score must equal a direct computation from the model's own outputs.

ImageReward's reference here is written from ImageReward's original code (BLIP's ViT and med.py BERT), reading the
tensors by their ImageReward.pt names, so it checks the key renames and the rebuilt architecture, not only that
sdeval agrees with itself.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file

from sdeval.core.errors import SdevalError
from sdeval.features.clip import ClipEmbedder
from sdeval.preference import (
    SCORERS,
    AestheticScorer,
    EmbeddingScorer,
    HpsScorer,
    ImageRewardScorer,
    PickScoreScorer,
    PreferenceScorer,
    load_scorer,
    scorer_class,
    scorer_info,
)
from sdeval.preference.base import CLIP_MEAN, CLIP_STD
from sdeval.preference.imagereward import REWARD_MEAN, REWARD_STD
from sdeval.preference.info import ScorerInfo
from sdeval.preference.mlp import RewardMLP

PROMPTS = ["a red cat", "the big blue dog on a tree", "a photo of a small house", "dogs", "a red cat"]
# Single-token words of the tiny BERT vocabulary below.
WORDS = ["a", "red", "blue", "cat", "dog", "on", "the", "photo", "of", "green", "tree", "house", "big", "small"]
BERT_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "##s"]
IR_TEXT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 40}
IR_VISION = {
    "hidden_size": 48,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "patch_size": 8,
    "image_size": 32,
}
IR_MAX_POSITIONS = 40


# -- shared inputs ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    """Five small RGB images of different shapes (square, portrait, landscape, odd sizes)."""
    rng = np.random.default_rng(0)
    shapes = [(32, 32), (48, 40), (64, 64), (40, 56), (33, 47)]
    out = []
    for h, w in shapes:
        base = rng.integers(0, 256, size=(h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(base).resize((w, h), Image.BILINEAR))
        noise = rng.integers(-20, 21, size=(h, w, 3))
        out.append(np.clip(smooth.astype(int) + noise, 0, 255).astype(np.uint8))
    return out


def _batch(scorer, images: list[np.ndarray]) -> torch.Tensor:
    return torch.stack([scorer.preprocess(rgb) for rgb in images])


@pytest.fixture
def no_network(monkeypatch) -> list[str]:
    """Every socket connection or name lookup is recorded and refused; the test asserts the record is empty."""
    attempts: list[str] = []

    def refuse(*args, **kwargs):
        attempts.append(repr(args[:2]))
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


@pytest.fixture
def hub_cache(monkeypatch, tmp_path) -> Path:
    """An empty Hugging Face cache for this test (whatever the machine has cached stays out of it)."""
    from huggingface_hub import constants

    root = tmp_path / "hf-cache"
    root.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(root))
    monkeypatch.setenv("SDEVAL_CACHE_DIR", str(tmp_path / "sdeval-cache"))
    return root


def _put_in_hub_cache(cache: Path, repo_id: str, files: dict[str, Path]) -> Path:
    """Lay files out as huggingface_hub caches a download (refs/main -> snapshots/<revision>/)."""
    import shutil

    repo = cache / f"models--{repo_id.replace('/', '--')}"
    revision = hashlib.sha1(repo_id.encode()).hexdigest()
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    for name, source in files.items():
        shutil.copy(source, snapshot / name)
    return snapshot


@pytest.fixture
def online_flags(monkeypatch) -> None:
    """Offline switches off, so that only the code itself keeps local loads off the network."""
    from huggingface_hub import constants

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "DIFFUSERS_OFFLINE", "SDEVAL_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


# -- ImageReward: a tiny checkpoint in ImageReward.pt's own key names -------------------------------------------


def _imagereward_state(seed: int) -> dict[str, torch.Tensor]:
    """Random weights under the names ImageReward.pt uses (BLIP ViT, med.py BERT, MLP, unused projections)."""
    gen = torch.Generator().manual_seed(seed)

    def lin(out: int, inp: int, name: str) -> dict[str, torch.Tensor]:
        return {
            f"{name}.weight": torch.randn(out, inp, generator=gen) / math.sqrt(inp),
            f"{name}.bias": torch.randn(out, generator=gen) * 0.1,
        }

    def norm(dim: int, name: str) -> dict[str, torch.Tensor]:
        return {
            f"{name}.weight": 1 + 0.1 * torch.randn(dim, generator=gen),
            f"{name}.bias": 0.1 * torch.randn(dim, generator=gen),
        }

    d, p, inner = IR_VISION["hidden_size"], IR_VISION["patch_size"], IR_VISION["intermediate_size"]
    tokens = (IR_VISION["image_size"] // p) ** 2 + 1
    v = "blip.visual_encoder"
    sd = {
        f"{v}.cls_token": torch.randn(1, 1, d, generator=gen),
        f"{v}.pos_embed": torch.randn(1, tokens, d, generator=gen) * 0.5,
        f"{v}.patch_embed.proj.weight": torch.randn(d, 3, p, p, generator=gen) / math.sqrt(3 * p * p),
        f"{v}.patch_embed.proj.bias": torch.randn(d, generator=gen) * 0.1,
    }
    for i in range(IR_VISION["num_hidden_layers"]):
        b = f"{v}.blocks.{i}"
        sd |= norm(d, f"{b}.norm1") | lin(3 * d, d, f"{b}.attn.qkv") | lin(d, d, f"{b}.attn.proj")
        sd |= norm(d, f"{b}.norm2") | lin(inner, d, f"{b}.mlp.fc1") | lin(d, inner, f"{b}.mlp.fc2")
    sd |= norm(d, f"{v}.norm")
    h, inner_t, vocab = IR_TEXT["hidden_size"], IR_TEXT["intermediate_size"], len(BERT_VOCAB) + 2
    t = "blip.text_encoder"
    sd[f"{t}.embeddings.word_embeddings.weight"] = torch.randn(vocab, h, generator=gen)
    sd[f"{t}.embeddings.position_embeddings.weight"] = torch.randn(IR_MAX_POSITIONS, h, generator=gen) * 0.5
    sd[f"{t}.embeddings.position_ids"] = torch.arange(IR_MAX_POSITIONS).expand((1, -1)).clone()
    sd |= norm(h, f"{t}.embeddings.LayerNorm")
    for i in range(IR_TEXT["num_hidden_layers"]):
        b = f"{t}.encoder.layer.{i}"
        for kind, width in (("attention", h), ("crossattention", d)):
            sd |= lin(h, h, f"{b}.{kind}.self.query") | lin(h, width, f"{b}.{kind}.self.key")
            sd |= lin(h, width, f"{b}.{kind}.self.value") | lin(h, h, f"{b}.{kind}.output.dense")
            sd |= norm(h, f"{b}.{kind}.output.LayerNorm")
        sd |= lin(inner_t, h, f"{b}.intermediate.dense") | lin(h, inner_t, f"{b}.output.dense")
        sd |= norm(h, f"{b}.output.LayerNorm")
    sd |= lin(256, d, "blip.vision_proj") | lin(256, h, "blip.text_proj")
    for index, (out, inp) in zip((0, 2, 4, 6, 7), ((1024, h), (128, 1024), (64, 128), (16, 64), (1, 16)), strict=True):
        sd |= lin(out, inp, f"mlp.layers.{index}")
    return sd


def _write_imagereward_folder(folder: Path, state: dict[str, torch.Tensor], weights_name: str) -> Path:
    """The layout a user has: the checkpoint, ImageReward's med_config.json, a BERT vocab; plus sdeval's ViT config."""
    folder.mkdir(parents=True, exist_ok=True)
    if weights_name.endswith(".safetensors"):
        save_file({k: v.contiguous() for k, v in state.items()}, str(folder / weights_name))
    else:
        torch.save(state, folder / weights_name)
    med = {
        "architectures": ["BertModel"],
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": IR_MAX_POSITIONS,
        "model_type": "bert",
        "pad_token_id": 0,
        "type_vocab_size": 2,
        "vocab_size": len(BERT_VOCAB) + 2,
        "encoder_width": 768,  # ImageReward's file says 768; BLIP overwrites it with the ViT's width
        "add_cross_attention": True,
        **IR_TEXT,
    }
    (folder / "med_config.json").write_text(json.dumps(med), encoding="utf-8")
    (folder / "vision_config.json").write_text(json.dumps(IR_VISION), encoding="utf-8")
    (folder / "vocab.txt").write_text("\n".join(BERT_VOCAB) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def ir_state() -> dict[str, torch.Tensor]:
    return _imagereward_state(seed=0)


@pytest.fixture(scope="module")
def ir_folder(tmp_path_factory, ir_state) -> Path:
    return _write_imagereward_folder(tmp_path_factory.mktemp("imagereward"), ir_state, "ImageReward.pt")


@pytest.fixture(scope="module")
def imagereward(ir_folder) -> ImageRewardScorer:
    return ImageRewardScorer.load(str(ir_folder), allow_pickle=True)


def _imagereward_pixels(rgb: np.ndarray) -> torch.Tensor:
    """ImageReward.py's _transform(n_px) at the tiny size."""
    from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Normalize, Resize, ToTensor

    size = IR_VISION["image_size"]
    transform = Compose(
        [
            Resize(size, interpolation=InterpolationMode.BICUBIC),
            CenterCrop(size),
            ToTensor(),
            Normalize(CLIP_MEAN, CLIP_STD),
        ]
    )
    return transform(Image.fromarray(rgb).convert("RGB"))


def _ref_vit(sd: dict[str, torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
    """BLIP's VisionTransformer.forward (vit.py), float64, from ImageReward.pt tensors."""
    v, d, heads = "blip.visual_encoder", IR_VISION["hidden_size"], IR_VISION["num_attention_heads"]
    x = F.conv2d(
        pixels, sd[f"{v}.patch_embed.proj.weight"], sd[f"{v}.patch_embed.proj.bias"], stride=IR_VISION["patch_size"]
    )
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([sd[f"{v}.cls_token"].expand(len(x), -1, -1), x], dim=1) + sd[f"{v}.pos_embed"]
    n, t, _ = x.shape
    for i in range(IR_VISION["num_hidden_layers"]):
        b = f"{v}.blocks.{i}"
        h = F.layer_norm(x, (d,), sd[f"{b}.norm1.weight"], sd[f"{b}.norm1.bias"], eps=1e-6)
        qkv = F.linear(h, sd[f"{b}.attn.qkv.weight"], sd[f"{b}.attn.qkv.bias"])
        q, k, val = qkv.reshape(n, t, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * (d // heads) ** -0.5).softmax(dim=-1)
        x = x + F.linear(
            (attn @ val).transpose(1, 2).reshape(n, t, d), sd[f"{b}.attn.proj.weight"], sd[f"{b}.attn.proj.bias"]
        )
        h = F.layer_norm(x, (d,), sd[f"{b}.norm2.weight"], sd[f"{b}.norm2.bias"], eps=1e-6)
        h = F.gelu(F.linear(h, sd[f"{b}.mlp.fc1.weight"], sd[f"{b}.mlp.fc1.bias"]))
        x = x + F.linear(h, sd[f"{b}.mlp.fc2.weight"], sd[f"{b}.mlp.fc2.bias"])
    return F.layer_norm(x, (d,), sd[f"{v}.norm.weight"], sd[f"{v}.norm.bias"], eps=1e-6)


def _ref_attention(sd, prefix: str, x: torch.Tensor, context: torch.Tensor, mask_add: torch.Tensor) -> torch.Tensor:
    """med.py BertAttention: self- or cross-attention, output dense, residual LayerNorm."""
    heads, h = IR_TEXT["num_attention_heads"], IR_TEXT["hidden_size"]

    def split(y: torch.Tensor) -> torch.Tensor:
        return y.reshape(y.shape[0], y.shape[1], heads, h // heads).transpose(1, 2)

    q = split(F.linear(x, sd[f"{prefix}.self.query.weight"], sd[f"{prefix}.self.query.bias"]))
    k = split(F.linear(context, sd[f"{prefix}.self.key.weight"], sd[f"{prefix}.self.key.bias"]))
    v = split(F.linear(context, sd[f"{prefix}.self.value.weight"], sd[f"{prefix}.self.value.bias"]))
    probs = (q @ k.transpose(-1, -2) / math.sqrt(h // heads) + mask_add).softmax(dim=-1)
    out = (probs @ v).transpose(1, 2).reshape(x.shape)
    out = F.linear(out, sd[f"{prefix}.output.dense.weight"], sd[f"{prefix}.output.dense.bias"])
    return F.layer_norm(
        out + x, (h,), sd[f"{prefix}.output.LayerNorm.weight"], sd[f"{prefix}.output.LayerNorm.bias"], eps=1e-12
    )


def _ref_imagereward(sd: dict[str, torch.Tensor], rgbs: list[np.ndarray], prompts: list[str], tokenizer) -> np.ndarray:
    """ImageReward.score(): BLIP's BERT over the prompt cross-attending to the ViT tokens, [CLS] -> MLP, normalised."""
    sd = {k: v.double() for k, v in sd.items()}
    image_embeds = _ref_vit(sd, torch.stack([_imagereward_pixels(rgb) for rgb in rgbs]).double())
    tokens = tokenizer(prompts, padding="max_length", truncation=True, max_length=35, return_tensors="pt")
    ids, mask = tokens["input_ids"], tokens["attention_mask"].double()
    t, h = "blip.text_encoder", IR_TEXT["hidden_size"]
    x = (
        sd[f"{t}.embeddings.word_embeddings.weight"][ids]
        + sd[f"{t}.embeddings.position_embeddings.weight"][: ids.shape[1]]
    )
    x = F.layer_norm(x, (h,), sd[f"{t}.embeddings.LayerNorm.weight"], sd[f"{t}.embeddings.LayerNorm.bias"], eps=1e-12)
    pad_mask = (1.0 - mask[:, None, None, :]) * -10000.0  # med.py get_extended_attention_mask
    for i in range(IR_TEXT["num_hidden_layers"]):
        b = f"{t}.encoder.layer.{i}"
        x = _ref_attention(sd, f"{b}.attention", x, x, pad_mask)
        x = _ref_attention(sd, f"{b}.crossattention", x, image_embeds, torch.zeros(()))
        inner = F.gelu(F.linear(x, sd[f"{b}.intermediate.dense.weight"], sd[f"{b}.intermediate.dense.bias"]))
        out = F.linear(inner, sd[f"{b}.output.dense.weight"], sd[f"{b}.output.dense.bias"]) + x
        x = F.layer_norm(out, (h,), sd[f"{b}.output.LayerNorm.weight"], sd[f"{b}.output.LayerNorm.bias"], eps=1e-12)
    r = x[:, 0]
    for index in (0, 2, 4, 6, 7):
        r = F.linear(r, sd[f"mlp.layers.{index}.weight"], sd[f"mlp.layers.{index}.bias"])
    return ((r.squeeze(-1) - REWARD_MEAN) / REWARD_STD).numpy()


def _bert_tokenizer(folder: Path):
    """BLIP's init_tokenizer() on the tiny vocabulary."""
    from transformers import BertTokenizer

    tokenizer = BertTokenizer.from_pretrained(str(folder), local_files_only=True)
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return tokenizer


def test_imagereward_equals_original_computation(imagereward, ir_state, ir_folder, images):
    batch = _batch(imagereward, images)
    for rgb, tensor in zip(images, batch, strict=True):
        assert torch.equal(tensor, _imagereward_pixels(rgb))
    scores = imagereward.score(batch, PROMPTS)
    expected = _ref_imagereward(ir_state, images, PROMPTS, _bert_tokenizer(ir_folder))
    assert scores.dtype == np.float64 and scores.shape == (len(images),)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
    # The text cross-attends to the image: the same prompt scores images differently, and vice versa.
    same_prompt = imagereward.score(batch[:2], [PROMPTS[0]] * 2)
    same_image = imagereward.score(batch[[0, 0]], PROMPTS[:2])
    assert abs(same_prompt[0] - same_prompt[1]) > 1e-3 and abs(same_image[0] - same_image[1]) > 1e-3


def test_imagereward_cuts_prompts_at_35_tokens(imagereward, images):
    words = [WORDS[i % len(WORDS)] for i in range(40)]  # one token each; [CLS] and [SEP] take two of the 35
    long, kept, shorter = " ".join(words), " ".join(words[:33]), " ".join(words[:32])
    batch = _batch(imagereward, images[:1]).repeat(3, 1, 1, 1)
    scores = imagereward.score(batch, [long, kept, shorter])
    assert scores[0] == pytest.approx(scores[1], abs=1e-6)
    assert abs(scores[0] - scores[2]) > 1e-4
    assert imagereward.truncated([long, kept, shorter]) == [True, False, False]


def test_imagereward_safetensors_loads_without_pickle_and_is_preferred(tmp_path, ir_state, imagereward, images):
    folder = _write_imagereward_folder(tmp_path / "ir", ir_state, "ImageReward.safetensors")
    torch.save({"not": "used"}, folder / "ImageReward.pt")  # the .safetensors twin wins; the pickle is never read
    scorer = ImageRewardScorer.load(str(folder))
    assert scorer.protocol()["model"] == "file:ImageReward.safetensors"
    batch = _batch(scorer, images)
    np.testing.assert_allclose(scorer.score(batch, PROMPTS), imagereward.score(batch, PROMPTS), rtol=0, atol=1e-6)


def test_imagereward_tokenizer_can_live_elsewhere(hub_cache, tmp_path, ir_state, imagereward, images):
    folder = _write_imagereward_folder(tmp_path / "ir", ir_state, "ImageReward.safetensors")
    tokenizer = tmp_path / "bert-base-uncased"
    tokenizer.mkdir()
    (folder / "vocab.txt").rename(tokenizer / "vocab.txt")
    with pytest.raises(SdevalError, match="tokenizer"):
        ImageRewardScorer.load(str(folder / "ImageReward.safetensors"))
    scorer = ImageRewardScorer.load(str(folder / "ImageReward.safetensors"), tokenizer=str(tokenizer))
    batch = _batch(scorer, images[:2])
    np.testing.assert_allclose(scorer.score(batch, PROMPTS[:2]), imagereward.score(batch, PROMPTS[:2]), atol=1e-6)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("drop", r"1 missing key\(s\): blip\.text_encoder\.encoder\.layer\.1\.crossattention\.self\.key\.weight"),
        ("extra", r"1 unexpected key\(s\): blip\.itm_head\.weight"),
        ("shape", r"wrong shape .*blip\.visual_encoder\.blocks\.0\.mlp\.fc1\.weight"),
    ],
)
def test_imagereward_loads_strictly(tmp_path, ir_state, change, message):
    state = dict(ir_state)
    if change == "drop":
        del state["blip.text_encoder.encoder.layer.1.crossattention.self.key.weight"]
    elif change == "extra":
        state["blip.itm_head.weight"] = torch.zeros(2, IR_TEXT["hidden_size"])
    else:
        state["blip.visual_encoder.blocks.0.mlp.fc1.weight"] = torch.zeros(65, IR_VISION["hidden_size"])
    folder = _write_imagereward_folder(tmp_path / "ir", state, "ImageReward.safetensors")
    with pytest.raises(SdevalError, match=message) as info:
        ImageRewardScorer.load(str(folder))
    assert "\n" not in str(info.value)


# -- HPS: the open_clip weights in {"state_dict": ...}, as HPS_v2*_compressed.pt ---------------------------------


@pytest.fixture(scope="module")
def hps_file(tiny_name, tmp_path_factory) -> Path:
    import open_clip

    torch.manual_seed(3)
    model = open_clip.create_model(tiny_name, pretrained=None)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100.0))
    path = tmp_path_factory.mktemp("hps") / "HPS_v2.1_compressed.pt"
    torch.save({"epoch": 1, "name": "tiny", "state_dict": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def hps(hps_file, tiny_name) -> HpsScorer:
    return HpsScorer.load(str(hps_file), arch=tiny_name, allow_pickle=True)


def _hps_pixels(rgb: np.ndarray, size: int) -> torch.Tensor:
    """HPSv2's preprocess_val: ToTensor, ResizeMaxSize(size, fill=0), MaskAwareNormalize (RGB)."""
    from torchvision.transforms import InterpolationMode, Normalize, ToTensor
    from torchvision.transforms import functional as TF

    img = ToTensor()(Image.fromarray(rgb).convert("RGB"))
    height, width = img.shape[1:]
    scale = size / float(max(height, width))
    new_size = tuple(round(dim * scale) for dim in (height, width))
    img = TF.resize(img, new_size, InterpolationMode.BICUBIC)
    pad_h, pad_w = size - new_size[0], size - new_size[1]
    img = TF.pad(img, padding=[pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2], fill=0)
    return Normalize(CLIP_MEAN, CLIP_STD)(img)


def test_hps_equals_open_clip_cosine(hps, hps_file, tiny_name, images):
    import open_clip

    reference = open_clip.create_model(tiny_name, pretrained=None).eval()
    reference.load_state_dict(torch.load(hps_file, weights_only=True)["state_dict"])
    pixels = torch.stack([_hps_pixels(rgb, 32) for rgb in images])
    batch = _batch(hps, images)
    np.testing.assert_allclose(batch.numpy(), pixels.numpy(), atol=1e-6)
    with torch.no_grad():
        image_features = F.normalize(reference.encode_image(pixels), dim=-1)
        text_features = F.normalize(reference.encode_text(open_clip.get_tokenizer(tiny_name)(PROMPTS)), dim=-1)
    expected = torch.diagonal(image_features.double() @ text_features.double().T).numpy()
    scores = hps.score(batch, PROMPTS)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
    assert np.all(np.abs(scores) <= 1.0)
    # The factored route: cached image features and prompt embeddings give the same numbers.
    features = hps.extract(batch)["hps_image"]
    assert features.dtype == torch.float32 and features.shape == (len(images), 32)
    np.testing.assert_allclose(hps.score_embeddings(features.numpy(), hps.embed_texts(PROMPTS)), scores, atol=1e-7)
    assert hps.protocol()["hps_version"] == "v2.1"


def test_hps_pads_non_square_images(hps):
    tall = np.full((40, 20, 3), 255, dtype=np.uint8)
    tensor = hps.preprocess(tall)
    assert tensor.shape == (3, 32, 32)
    black = (torch.zeros(3) - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    torch.testing.assert_close(tensor[:, :, 0], black[:, None].expand(3, 32), atol=1e-6, rtol=0)
    white = (torch.ones(3) - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    torch.testing.assert_close(tensor[:, 16, 16], white, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def wide_tiny_name(tmp_path_factory, tiny_name) -> str:
    import open_clip

    name = "sdeval-test-tiny-clip-wide"
    config = json.loads(json.dumps(open_clip.get_model_config(tiny_name)))
    config["vision_cfg"]["width"] = 96
    folder = tmp_path_factory.mktemp("open_clip_wide")
    (folder / f"{name}.json").write_text(json.dumps(config))
    open_clip.add_model_config(folder)
    return name


def test_hps_loads_strictly(tmp_path, hps_file, tiny_name, wide_tiny_name):
    state = torch.load(hps_file, weights_only=True)["state_dict"]
    with pytest.raises(SdevalError, match=r"wrong shape .*visual\."):
        HpsScorer.load(str(hps_file), arch=wide_tiny_name, allow_pickle=True)
    del state["logit_scale"]
    path = tmp_path / "hps-missing.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(SdevalError, match=r"1 missing key\(s\): logit_scale"):
        HpsScorer.load(str(path), arch=tiny_name)
    with pytest.raises(SdevalError, match="not an open_clip model config"):
        HpsScorer.load(str(path), arch="no-such-arch")


# -- PickScore: a transformers CLIPModel folder, processor files beside it or elsewhere ------------------------


def _write_clip_processor(folder: Path) -> None:
    """CLIP tokenizer files (from open_clip's BPE) and the laion processor's preprocessor_config.json, at 32 px."""
    from transformers import CLIPTokenizer

    from sdeval.generate.tiny import clip_vocab_and_merges

    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = clip_vocab_and_merges()
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77}), encoding="utf-8")
    CLIPTokenizer.from_pretrained(str(folder)).save_pretrained(str(folder))
    processor = {
        "crop_size": 32,
        "do_center_crop": True,
        "do_normalize": True,
        "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor",
        "image_mean": list(CLIP_MEAN),
        "image_std": list(CLIP_STD),
        "resample": 3,
        "size": 32,
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(processor), encoding="utf-8")


@pytest.fixture(scope="module")
def pick_processor(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pick-processor")
    _write_clip_processor(folder)
    return folder


def _tiny_clip_model(seed: int):
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig(
        text_config={
            "vocab_size": 49408,
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "max_position_embeddings": 77,
            "bos_token_id": 49406,
            "eos_token_id": 49407,
            "pad_token_id": 49407,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100.0))  # PickScore's trained scale sits at CLIP's cap
    return model


@pytest.fixture(scope="module")
def pick_model_only(tmp_path_factory) -> Path:
    """A PickScore_v1-like folder: config.json + model.safetensors, no processor (as on the hub)."""
    folder = tmp_path_factory.mktemp("pick-model")
    _tiny_clip_model(seed=5).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def pick_folder(tmp_path_factory, pick_model_only, pick_processor) -> Path:
    """A self-contained folder: the model and its processor files."""
    import shutil

    folder = tmp_path_factory.mktemp("pick-full")
    for source in (pick_model_only, pick_processor):
        for item in source.iterdir():
            shutil.copy(item, folder / item.name)
    return folder


@pytest.fixture(scope="module")
def pickscore(pick_folder) -> PickScoreScorer:
    return PickScoreScorer.load(str(pick_folder))


def test_pickscore_equals_readme_computation(pickscore, pick_folder, images):
    from transformers import CLIPImageProcessorPil, CLIPModel, CLIPTokenizer

    model = CLIPModel.from_pretrained(str(pick_folder), local_files_only=True).eval()
    processor = CLIPImageProcessorPil.from_pretrained(str(pick_folder))
    tokenizer = CLIPTokenizer.from_pretrained(str(pick_folder))
    pixels = processor(images=[Image.fromarray(rgb) for rgb in images], return_tensors="pt")["pixel_values"]
    text = tokenizer(PROMPTS, padding=True, truncation=True, max_length=77, return_tensors="pt")
    with torch.no_grad():
        image_embs = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
        text_embs = model.text_projection(model.text_model(**text).pooler_output)
    image_embs = image_embs / image_embs.norm(dim=-1, keepdim=True)
    text_embs = text_embs / text_embs.norm(dim=-1, keepdim=True)
    expected = (model.logit_scale.exp() * (image_embs * text_embs).sum(-1)).detach().double().numpy()
    batch = _batch(pickscore, images)
    torch.testing.assert_close(batch, pixels, atol=1e-6, rtol=0)
    scores = pickscore.score(batch, PROMPTS)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
    assert pickscore.protocol()["logit_scale"] == pytest.approx(100.0, rel=1e-5)
    assert np.ptp(scores) > 1e-2


def test_pickscore_processor_from_another_folder(pick_model_only, pick_processor, pickscore, images):
    scorer = PickScoreScorer.load(str(pick_model_only), processor=str(pick_processor))
    batch = _batch(scorer, images)
    np.testing.assert_allclose(scorer.score(batch, PROMPTS), pickscore.score(batch, PROMPTS), atol=1e-6)
    assert scorer.weights_sha256 == hashlib.sha256((pick_model_only / "model.safetensors").read_bytes()).hexdigest()


def test_pickscore_loads_strictly(tmp_path, pick_folder):
    import shutil

    folder = tmp_path / "pick"
    shutil.copytree(pick_folder, folder)
    state = load_file(str(folder / "model.safetensors"))
    state["visual_projection.extra"] = torch.zeros(3)
    del state["text_projection.weight"]
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(SdevalError, match=r"missing keys: text_projection\.weight.*unexpected keys: visual_projection"):
        PickScoreScorer.load(str(folder))


def test_pickscore_bin_needs_allow_pickle(tmp_path, pick_folder, pickscore, images):
    import shutil

    folder = tmp_path / "pick-bin"
    shutil.copytree(pick_folder, folder)
    state = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(SdevalError, match=r"pytorch_model\.bin is a pickle file.*--allow-pickle"):
        PickScoreScorer.load(str(folder))
    scorer = PickScoreScorer.load(str(folder), allow_pickle=True)
    batch = _batch(scorer, images[:2])
    np.testing.assert_allclose(scorer.score(batch, PROMPTS[:2]), pickscore.score(batch, PROMPTS[:2]), atol=1e-6)


# -- aesthetic: the MLP head file on a (tiny) CLIP ---------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_embedder(tiny_name, tiny_clip_weights) -> ClipEmbedder:
    return ClipEmbedder.load(tiny_name, tiny_clip_weights[0])


def _head_state(in_features: int, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    head = RewardMLP(in_features)
    with torch.no_grad():
        for layer in head.layers:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.normal_(0, 1 / math.sqrt(layer.in_features))
                layer.bias.normal_(0, 0.5)
    return {k: v.clone() for k, v in head.state_dict().items()}


@pytest.fixture(scope="module")
def head_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("aesthetic")
    state = _head_state(32, seed=7)
    save_file(state, str(folder / "head.safetensors"))
    torch.save(state, folder / "sac+logos+ava1-l14-linearMSE.pth")
    return {"safetensors": folder / "head.safetensors", "pth": folder / "sac+logos+ava1-l14-linearMSE.pth"}


@pytest.fixture(scope="module")
def aesthetic(head_files, tiny_embedder) -> AestheticScorer:
    return AestheticScorer.load(str(head_files["safetensors"]), embedder=tiny_embedder)


def test_aesthetic_equals_mlp_on_normalised_clip_embedding(aesthetic, head_files, tiny_embedder, images):
    embeddings = torch.from_numpy(tiny_embedder.embed_images(images)).double()
    x = embeddings / embeddings.norm(dim=-1, keepdim=True)  # simple_inference.py's normalized()
    state = {k: v.double() for k, v in load_file(str(head_files["safetensors"])).items()}
    for index in (0, 2, 4, 6, 7):
        x = F.linear(x, state[f"layers.{index}.weight"], state[f"layers.{index}.bias"])
    expected = x.squeeze(-1).numpy()
    batch = _batch(aesthetic, images)
    scores = aesthetic.score(batch, PROMPTS)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
    assert np.ptp(scores) > 1e-2
    # It shares the CLIP embedder's features (and cache key): the CLIP metrics' pass can feed it.
    assert aesthetic.cache_key == tiny_embedder.cache_key
    np.testing.assert_array_equal(aesthetic.score(batch), scores)  # prompts are ignored
    np.testing.assert_allclose(aesthetic.score_embeddings(tiny_embedder.embed_images(images)), scores, atol=1e-7)
    assert aesthetic.embed_texts(PROMPTS).shape == (len(PROMPTS), 0)


def test_aesthetic_pth_and_clip_by_name(head_files, tiny_name, tiny_clip_weights, aesthetic, images):
    scorer = AestheticScorer.load(
        str(head_files["pth"]), clip_model=tiny_name, clip_pretrained=tiny_clip_weights[0], allow_pickle=True
    )
    batch = _batch(scorer, images)
    np.testing.assert_allclose(scorer.score(batch), aesthetic.score(batch), atol=1e-6)
    assert scorer.protocol()["model"] == "file:sac+logos+ava1-l14-linearMSE.pth"


def test_aesthetic_head_must_fit_the_clip_model(tmp_path, tiny_embedder):
    path = tmp_path / "vit-l-head.safetensors"
    save_file(_head_state(768, seed=1), str(path))
    with pytest.raises(SdevalError, match=r"takes 768-d CLIP embeddings.*gives 32-d"):
        AestheticScorer.load(str(path), embedder=tiny_embedder)
    state = _head_state(32, seed=1)
    state["layers.1.weight"] = torch.zeros(1)
    save_file(state, str(path))
    with pytest.raises(SdevalError, match=r"1 unexpected key\(s\): layers\.1\.weight"):
        AestheticScorer.load(str(path), embedder=tiny_embedder)


# -- all scorers ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scorers(imagereward, hps, pickscore, aesthetic) -> dict[str, PreferenceScorer]:
    return {"imagereward": imagereward, "hps": hps, "pickscore": pickscore, "aesthetic": aesthetic}


@pytest.mark.parametrize("name", list(SCORERS))
def test_scores_do_not_depend_on_batching(scorers, name, images):
    scorer = scorers[name]
    batch = _batch(scorer, images)
    together = scorer.score(batch, PROMPTS)
    one_by_one = np.concatenate([scorer.score(batch[i : i + 1], PROMPTS[i : i + 1]) for i in range(len(images))])
    in_pairs = np.concatenate([scorer.score(batch[i : i + 2], PROMPTS[i : i + 2]) for i in range(0, len(images), 2)])
    # Float32 matrix products may differ in the last bits with the batch size; scores here are of order 10.
    np.testing.assert_allclose(one_by_one, together, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(in_pairs, together, rtol=1e-5, atol=1e-5)
    assert scorer.score(batch[:0], []).shape == (0,)


@pytest.mark.parametrize("name", list(SCORERS))
def test_metadata_without_the_model_module_is_the_class_metadata(name):
    """metrics/builtin/ and the help read a scorer's metadata from info.py (no torch); the class reads it there."""
    assert ScorerInfo.of(scorer_class(name)) == scorer_info(name)
    assert scorer_info(name).name == name


@pytest.mark.parametrize("name", list(SCORERS))
def test_interface_protocol_and_pickling(scorers, name, images):
    scorer = scorers[name]
    cls = scorer_class(name)
    assert isinstance(scorer, PreferenceScorer)
    assert isinstance(scorer, EmbeddingScorer) == (name != "imagereward")
    assert cls.direction == "higher" and cls.prompt_relative == (name != "aesthetic")
    assert cls.range == ((-1.0, 1.0) if name == "hps" else (None, None))
    protocol = scorer.protocol()
    json.dumps(protocol)
    assert len(protocol["weights_sha256"]) == 64
    # The cache key names the weights it was made with (aesthetic's is its CLIP embedder's: it extracts CLIP features).
    weights = protocol["clip"]["weights_sha256"] if name == "aesthetic" else protocol["weights_sha256"]
    assert weights in scorer.cache_key
    # Decode workers get a light copy: preprocess works there, the model does not travel.
    data = pickle.dumps(scorer)
    assert len(data) < 2_000_000
    copy = pickle.loads(data)
    torch.testing.assert_close(copy.preprocess(images[1]), scorer.preprocess(images[1]))
    with pytest.raises(RuntimeError, match=r"(has|holds) no model"):
        copy.score(_batch(scorer, images[:1]), PROMPTS[:1])


def test_weights_sha256_is_the_file_hash(imagereward, ir_folder, hps, hps_file, aesthetic, head_files):
    def sha(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    assert imagereward.protocol()["weights_sha256"] == sha(ir_folder / "ImageReward.pt")
    assert hps.protocol()["weights_sha256"] == sha(hps_file)
    assert aesthetic.protocol()["weights_sha256"] == sha(head_files["safetensors"])


@pytest.mark.parametrize("name", ["imagereward", "hps", "aesthetic"])
def test_pickle_checkpoints_need_allow_pickle(name, ir_folder, hps_file, head_files, tiny_name, tiny_embedder):
    path = {"imagereward": ir_folder / "ImageReward.pt", "hps": hps_file, "aesthetic": head_files["pth"]}[name]
    options = {"hps": {"arch": tiny_name}, "aesthetic": {"embedder": tiny_embedder}}.get(name, {})
    with pytest.raises(SdevalError) as info:
        load_scorer(name, str(path), **options)
    message = str(info.value)
    assert path.name in message and "--allow-pickle" in message and ".safetensors" in message and "\n" not in message


def test_local_paths_make_no_network_call(
    hub_cache,
    online_flags,
    no_network,
    tmp_path,
    ir_state,
    ir_folder,
    hps_file,
    tiny_name,
    pick_model_only,
    pick_folder,
    head_files,
    tiny_clip_weights,
):
    load_scorer("imagereward", str(ir_folder), allow_pickle=True)
    load_scorer("hps", str(hps_file), arch=tiny_name, allow_pickle=True)
    load_scorer("pickscore", str(pick_folder))
    load_scorer("aesthetic", str(head_files["safetensors"]), clip_model=tiny_name, clip_pretrained=tiny_clip_weights[0])
    # Missing pieces of a local model are looked up in the cache only, never on the hub: PickScore's processor, and
    # ImageReward's bert-base-uncased tokenizer.
    with pytest.raises(SdevalError, match=r"processor .*not in the Hugging Face cache"):
        load_scorer("pickscore", str(pick_model_only))
    bare = _write_imagereward_folder(tmp_path / "ir", ir_state, "ImageReward.safetensors")
    (bare / "vocab.txt").unlink()
    with pytest.raises(SdevalError, match=r"tokenizer 'bert-base-uncased' is not in the Hugging Face cache"):
        load_scorer("imagereward", str(bare))
    assert no_network == []


@pytest.mark.parametrize(
    ("name", "what"),
    [
        ("imagereward", "THUDM/ImageReward"),
        ("hps", "xswu/HPSv2"),
        ("pickscore", "yuvalkirstain/PickScore_v1"),
        ("aesthetic", "github.com/christophschuhmann"),
    ],
)
def test_hub_defaults_fail_fast_offline(name, what, hub_cache, no_network):
    with pytest.raises(SdevalError, match="not available offline") as info:
        load_scorer(name, allow_pickle=True)
    assert what in str(info.value) and "\n" not in str(info.value)
    assert no_network == []


@pytest.mark.parametrize("version", ["v2", "v2.0"])
def test_hps_v2_is_a_version(version, hub_cache, no_network):
    """`--hps-model v2` (as the paper names it) is HPS v2.0, not an unknown version."""
    with pytest.raises(SdevalError, match=r"HPS v2\.0 checkpoint.*not available offline"):
        load_scorer("hps", version, allow_pickle=True)
    with pytest.raises(SdevalError, match=r"HPS version 'v3' is unknown \(versions: v2\.0, v2\.1"):
        load_scorer("hps", "v3", allow_pickle=True)


def test_load_scorer_rejects_unknown_names_and_options():
    with pytest.raises(SdevalError, match="unknown preference scorer 'nope'"):
        load_scorer("nope")
    with pytest.raises(SdevalError, match=r"has no option\(s\) processor \(its options: tokenizer\)"):
        load_scorer("imagereward", processor="x")


def test_hub_ids_load_from_the_cache_offline(
    hub_cache,
    no_network,
    tmp_path,
    ir_state,
    imagereward,
    hps,
    hps_file,
    tiny_name,
    pick_model_only,
    pick_processor,
    pickscore,
    images,
):
    """Hub ids resolve to cached files with no call out (HF_HUB_OFFLINE is set); .safetensors twins win."""
    ir = _write_imagereward_folder(tmp_path / "ir", ir_state, "ImageReward.safetensors")
    _put_in_hub_cache(
        hub_cache,
        "THUDM/ImageReward",
        {n: ir / n for n in ("ImageReward.safetensors", "med_config.json", "vision_config.json")},
    )
    _put_in_hub_cache(hub_cache, "bert-base-uncased", {"vocab.txt": ir / "vocab.txt"})
    scorer = load_scorer("imagereward", "THUDM/ImageReward")
    batch = _batch(scorer, images)
    np.testing.assert_allclose(scorer.score(batch, PROMPTS), imagereward.score(batch, PROMPTS), atol=1e-6)
    assert scorer.protocol()["model"] == "THUDM/ImageReward"
    assert scorer.protocol()["tokenizer"]["source"] == "bert-base-uncased"

    state = torch.load(hps_file, weights_only=True)["state_dict"]
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "HPS_v2.1_compressed.safetensors"))
    cached = _put_in_hub_cache(
        hub_cache, "xswu/HPSv2", {"HPS_v2.1_compressed.safetensors": tmp_path / "HPS_v2.1_compressed.safetensors"}
    )
    scorer = load_scorer("hps", "v2.1", arch=tiny_name)  # no allow_pickle: the twin is a .safetensors
    batch = _batch(scorer, images)
    np.testing.assert_allclose(scorer.score(batch, PROMPTS), hps.score(batch, PROMPTS), atol=1e-6)
    protocol = scorer.protocol()
    assert protocol["model"] == "xswu/HPSv2/HPS_v2.1_compressed.safetensors" and protocol["hps_version"] == "v2.1"
    assert (
        protocol["weights_sha256"]
        == hashlib.sha256((cached / "HPS_v2.1_compressed.safetensors").read_bytes()).hexdigest()
    )

    _put_in_hub_cache(hub_cache, "yuvalkirstain/PickScore_v1", {p.name: p for p in pick_model_only.iterdir()})
    _put_in_hub_cache(hub_cache, "laion/CLIP-ViT-H-14-laion2B-s32B-b79K", {p.name: p for p in pick_processor.iterdir()})
    scorer = load_scorer("pickscore")
    batch = _batch(scorer, images)
    np.testing.assert_allclose(scorer.score(batch, PROMPTS), pickscore.score(batch, PROMPTS), atol=1e-6)
    assert scorer.protocol()["processor"] == "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
    assert no_network == []
