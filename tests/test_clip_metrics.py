"""CLIP embedder and text-image metrics, on a tiny random open_clip model built by the test (no downloads)."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from sdeval.core.errors import SdevalError
from sdeval.features.clip import (
    CMMD_MODEL,
    FEATURE_NAME,
    ClipEmbedder,
    file_sha256,
    state_dict_sha256,
)
from sdeval.metrics import rprecision
from sdeval.metrics.clip_score import clip_score, clip_scores
from sdeval.metrics.cmmd import cmmd
from sdeval.metrics.diversity import prompt_diversity
from sdeval.metrics.embeddings import NotEnoughDataError
from sdeval.metrics.registry import MetricSkip
from sdeval.metrics.rprecision import clip_r_precision

TINY = "sdeval-test-tiny-clip"  # registered by the tiny_name fixture (conftest.py)
PROMPTS = [
    "a red fox in snow",
    "a teapot on a table",
    "a city at night",
    "a red fox in snow",
    "an empty room",
    "",
]


@pytest.fixture(scope="session")
def tiny(tiny_name: str) -> tuple[torch.nn.Module, object, object]:
    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms(tiny_name, pretrained=None)
    return model.eval(), preprocess, open_clip.get_tokenizer(tiny_name)


@pytest.fixture(scope="session")
def embedder(tiny: tuple[torch.nn.Module, object, object]) -> ClipEmbedder:
    model, preprocess, tokenizer = tiny
    return ClipEmbedder.from_model(model, preprocess, tokenizer, TINY, batch_size=4)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    shapes = [(40, 50), (64, 64), (33, 90), (48, 48), (80, 40), (32, 32)]
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes]


def direct_embeddings(tiny, images, prompts) -> tuple[np.ndarray, np.ndarray]:
    """The model's own embeddings, straight from open_clip, in float64 (the reference path)."""
    model, preprocess, tokenizer = tiny
    with torch.no_grad():
        pixels = torch.stack([preprocess(Image.fromarray(a)) for a in images])
        image = model.encode_image(pixels).double().numpy()
        text = model.encode_text(tokenizer(prompts)).double().numpy()
    return image, text


# -- embedder ------------------------------------------------------------------------------------------


def test_preprocess_is_open_clips_transform_and_pickles_cheaply(embedder, tiny, images) -> None:
    _, preprocess, _ = tiny
    tensor = embedder.preprocess(images[0])
    assert tensor.shape == (3, 32, 32) and tensor.dtype == torch.float32
    assert torch.equal(tensor, preprocess(Image.fromarray(images[0])))
    blob = pickle.dumps(embedder.preprocess)  # the bound method, as a worker pool would send it
    assert len(blob) < 20_000  # no model weights travel
    worker_preprocess = pickle.loads(blob)
    assert torch.equal(worker_preprocess(images[0]), tensor)
    with pytest.raises(RuntimeError, match="holds no model"):
        worker_preprocess.__self__.extract(tensor[None])
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        embedder.preprocess(images[0].astype(np.float32))


def test_extract_returns_normalized_float32_matching_the_model(embedder, tiny, images) -> None:
    batch = torch.stack([embedder.preprocess(a) for a in images])
    features = embedder.extract(batch)[FEATURE_NAME]
    assert features.shape == (len(images), 32) and features.dtype == torch.float32
    np.testing.assert_allclose(features.norm(dim=1).numpy(), 1.0, atol=1e-6)
    reference, _ = direct_embeddings(tiny, images, PROMPTS)
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    np.testing.assert_allclose(features.numpy(), reference, atol=1e-5)
    np.testing.assert_allclose(embedder.embed_images(images), features.numpy(), atol=1e-6)


def test_embed_texts_encodes_each_distinct_prompt_once(embedder, tiny) -> None:
    model, _, _ = tiny
    seen: list[int] = []
    original = model.encode_text

    def counting(tokens, *args, **kwargs):
        seen.append(len(tokens))
        return original(tokens, *args, **kwargs)

    model.encode_text = counting
    try:
        rows = embedder.embed_texts(PROMPTS)
    finally:
        del model.encode_text
    assert sum(seen) == len(set(PROMPTS)) == 5 and max(seen) <= embedder.batch_size
    assert rows.shape == (len(PROMPTS), 32) and rows.dtype == np.float32
    np.testing.assert_array_equal(rows[0], rows[3])  # duplicate prompt, same row
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-6)
    assert embedder.embed_texts([]).shape == (0, 32)


def test_identity_goes_into_cache_key_and_protocol(embedder, tiny) -> None:
    model, preprocess, tokenizer = tiny
    sha = state_dict_sha256(model)
    assert embedder.weights_sha256 == sha and sha in embedder.cache_key
    assert embedder.cache_key.startswith(f"{FEATURE_NAME}-v1-{TINY}-")
    protocol = embedder.protocol()
    assert protocol["weights_sha256"] == sha
    assert protocol["model"] == TINY and protocol["embed_dim"] == 32 and protocol["normalized"] is True
    assert protocol["preprocess"]["size"] == [32, 32] and protocol["preprocess"]["interpolation"] == "bicubic"
    json.dumps(protocol)  # goes into results.json as is
    other = open_clip.create_model(TINY, pretrained=None)
    assert ClipEmbedder.from_model(other, preprocess, tokenizer, TINY).cache_key != embedder.cache_key


def test_load_from_local_weights_file_hashes_the_file(tiny, tmp_path: Path, images) -> None:
    model, _, _ = tiny
    weights = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), weights)
    loaded = ClipEmbedder.load(TINY, str(weights))
    assert loaded.weights_sha256 == file_sha256(weights)
    assert loaded.protocol()["pretrained"] == "file:tiny.pt"
    assert loaded.protocol()["quick_gelu"] is False
    reference = ClipEmbedder.from_model(model, tiny[1], tiny[2], TINY)
    np.testing.assert_allclose(loaded.embed_images(images[:2]), reference.embed_images(images[:2]), atol=1e-6)
    np.testing.assert_allclose(loaded.embed_texts(PROMPTS), reference.embed_texts(PROMPTS), atol=1e-6)


def test_load_errors_are_clear(tiny_name: str, tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(SdevalError, match="neither a file nor a known tag"):
        ClipEmbedder.load(tiny_name, "no-such-tag")

    # A tag whose weights cannot be fetched (offline, not cached) fails with a hint to pass a file.
    # The download is replaced so the test never reaches the network, whatever the environment says.
    def no_network(*args, **kwargs):
        raise OSError("cannot reach the Hugging Face Hub (offline mode)")

    monkeypatch.setattr(open_clip.factory, "download_pretrained", no_network)
    with pytest.raises(SdevalError, match="pass a local weights file"):
        ClipEmbedder.load("ViT-B-32", "openai", cache_dir=str(tmp_path))


@pytest.mark.parametrize(
    ("name", "tag", "expected"),
    [
        (CMMD_MODEL.name, CMMD_MODEL.pretrained, True),
        ("ViT-L-14", "openai", True),
        ("ViT-B-32", "laion2b_s34b_b79k", False),
    ],
)
def test_quick_gelu_follows_the_pretrained_tag(tiny, monkeypatch, name, tag, expected) -> None:
    # OpenAI weights need QuickGELU; open_clip 3 only warns when a plain config meets them.
    model, preprocess, _ = tiny
    calls = []

    def fake_create(model_name, **kwargs):
        calls.append(kwargs)
        return model, preprocess, preprocess

    monkeypatch.setattr(open_clip, "create_model_and_transforms", fake_create)
    loaded = ClipEmbedder.load(name, tag)
    assert calls[0]["force_quick_gelu"] is expected
    assert loaded.protocol()["pretrained"] == tag


def test_protocol_reports_the_activation_the_model_really_uses(tiny_name: str) -> None:
    plain = open_clip.create_model(tiny_name, pretrained=None)
    quick = open_clip.create_model(tiny_name, pretrained=None, force_quick_gelu=True)
    tokenizer = open_clip.get_tokenizer(tiny_name)
    a = ClipEmbedder.from_model(plain, lambda image: image, tokenizer, tiny_name)
    b = ClipEmbedder.from_model(quick, lambda image: image, tokenizer, tiny_name, weights_sha256=a.weights_sha256)
    assert (a.protocol()["quick_gelu"], b.protocol()["quick_gelu"]) == (False, True)
    assert a.cache_key != b.cache_key  # same weights, different activation: different features


# -- CLIP score ----------------------------------------------------------------------------------------


def test_clip_score_matches_direct_float64_computation(embedder, tiny, images) -> None:
    image_direct, text_direct = direct_embeddings(tiny, images, PROMPTS)
    cos = np.sum(image_direct * text_direct, axis=1) / (
        np.linalg.norm(image_direct, axis=1) * np.linalg.norm(text_direct, axis=1)
    )
    expected = 100.0 * np.maximum(cos, 0.0)
    result = clip_score(embedder.embed_images(images), embedder.embed_texts(PROMPTS), [f"img{i}" for i in range(6)])
    np.testing.assert_allclose(result.scores, expected, atol=2e-3)
    assert result.mean == pytest.approx(expected.mean(), abs=2e-3)
    assert result.torchmetrics_value == pytest.approx(max(100.0 * cos.mean(), 0.0), abs=2e-3)
    assert [row.image_id for row in result.rows] == [f"img{i}" for i in range(6)]
    np.testing.assert_allclose(clip_scores(image_direct, text_direct), expected, atol=1e-9)


class _TorchmetricsProcessor:
    """Stands in for transformers' CLIPProcessor so torchmetrics runs our tiny open_clip model."""

    def __init__(self, embedder: ClipEmbedder, tokenizer) -> None:
        self.embedder, self.tokenizer = embedder, tokenizer

    def __call__(self, text=None, images=None, return_tensors="pt", padding=True):
        if images is not None:
            arrays = [img.permute(1, 2, 0).numpy() for img in images]
            return {"pixel_values": torch.stack([self.embedder.preprocess(a) for a in arrays])}
        tokens = self.tokenizer(text)
        return {"input_ids": tokens, "attention_mask": torch.ones_like(tokens)}


class _TorchmetricsModel(torch.nn.Module):
    def __init__(self, clip: torch.nn.Module) -> None:
        super().__init__()
        self.clip = clip
        self.config = SimpleNamespace()

    def get_image_features(self, pixel_values):
        return self.clip.encode_image(pixel_values)

    def get_text_features(self, input_ids, attention_mask=None):
        return self.clip.encode_text(input_ids)


def test_clip_score_agrees_with_torchmetrics(embedder, tiny, images) -> None:
    from torchmetrics.functional.multimodal import clip_score as tm_clip_score
    from torchmetrics.multimodal import CLIPScore

    model, _, tokenizer = tiny
    factory = lambda: (_TorchmetricsModel(model), _TorchmetricsProcessor(embedder, tokenizer))  # noqa: E731
    tensors = [torch.from_numpy(a).permute(2, 0, 1).contiguous() for a in images]
    ours = clip_score(embedder.embed_images(images), embedder.embed_texts(PROMPTS))

    per_image = [tm_clip_score(t, p, model_name_or_path=factory).item() for t, p in zip(tensors, PROMPTS, strict=True)]
    np.testing.assert_allclose(ours.scores, per_image, atol=1e-3)
    assert ours.mean == pytest.approx(np.mean(per_image), abs=1e-3)

    metric = CLIPScore(model_name_or_path=factory)
    metric.update(tensors, PROMPTS)
    assert ours.torchmetrics_value == pytest.approx(metric.compute().item(), abs=1e-3)


def test_clip_score_input_checks() -> None:
    with pytest.raises(ValueError, match="row-aligned"):
        clip_score(np.ones((2, 4)), np.ones((3, 4)))
    with pytest.raises(MetricSkip, match="all-zero"):  # a degenerate embedding: a listed skip, not a bug
        clip_score(np.zeros((1, 4)), np.ones((1, 4)))
    with pytest.raises(NotEnoughDataError):
        clip_score(np.zeros((0, 4)), np.zeros((0, 4)))


# -- CMMD ----------------------------------------------------------------------------------------------


def reference_mmd_loops(x: np.ndarray, y: np.ndarray, unbiased: bool = False) -> float:
    """CMMD written out pair by pair: sigma 10, scale 1000, |a-b|^2 from the difference itself."""
    sigma, scale = 10.0, 1000.0

    def k(a: np.ndarray, b: np.ndarray) -> float:
        d = a - b
        return math.exp(-float(d @ d) / (2.0 * sigma * sigma))

    def mean_k(a: np.ndarray, b: np.ndarray, skip_diagonal: bool) -> float:
        pairs = [(i, j) for i in range(len(a)) for j in range(len(b)) if not (skip_diagonal and i == j)]
        return sum(k(a[i], b[j]) for i, j in pairs) / len(pairs)

    return scale * (mean_k(x, x, unbiased) + mean_k(y, y, unbiased) - 2.0 * mean_k(x, y, False))


def reference_google_formula(x: np.ndarray, y: np.ndarray) -> float:
    """The reference code's full-matrix expression (cmmd/distance.py `mmd`), transcribed to numpy float64."""
    gamma = 1.0 / (2.0 * 10.0**2)
    x_sq, y_sq = np.diag(x @ x.T), np.diag(y @ y.T)
    k_xx = np.mean(np.exp(-gamma * (-2 * x @ x.T + x_sq[:, None] + x_sq[None, :])))
    k_xy = np.mean(np.exp(-gamma * (-2 * x @ y.T + x_sq[:, None] + y_sq[None, :])))
    k_yy = np.mean(np.exp(-gamma * (-2 * y @ y.T + y_sq[:, None] + y_sq[None, :])))
    return float(1000.0 * (k_xx + k_yy - 2 * k_xy))


def unit_rows(rng: np.random.Generator, n: int, d: int, shift: float = 0.0) -> np.ndarray:
    x = rng.normal(size=(n, d)) + shift
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_cmmd_matches_independent_implementations() -> None:
    rng = np.random.default_rng(1)
    x, y = unit_rows(rng, 40, 16), unit_rows(rng, 30, 16, shift=0.3)
    value = cmmd(x, y)
    assert value > 0.1  # clearly different sets, clearly nonzero
    assert value == pytest.approx(reference_mmd_loops(x, y), rel=1e-9, abs=1e-12)
    assert value == pytest.approx(reference_google_formula(x, y), rel=1e-9, abs=1e-12)
    unbiased = cmmd(x, y, estimator="unbiased")
    assert unbiased == pytest.approx(reference_mmd_loops(x, y, unbiased=True), rel=1e-9, abs=1e-12)
    # Chunking is an implementation detail: the value does not move.
    assert cmmd(x, y, chunk_size=7) == pytest.approx(value, rel=1e-12, abs=1e-14)
    assert cmmd(x, y, scale=1.0) * 1000.0 == pytest.approx(value, rel=1e-12)


def test_cmmd_closed_form_for_two_points() -> None:
    a, b = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])  # |a-b|^2 = 2
    assert cmmd(a, b) == pytest.approx(1000.0 * (2.0 - 2.0 * math.exp(-2.0 / 200.0)), rel=1e-12)


def test_cmmd_of_identical_sets() -> None:
    """Biased (paper) estimator: exactly 0, since k_xx, k_yy and k_xy are the same sum computed the same way.

    Unbiased estimator: not 0 but -2 (m^2 - S) / (m^2 (m - 1)) * 1000 < 0, with S the full kernel sum:
    dropping the diagonal (k = 1) from the x-x and y-y terms but not from the cross term biases it down.
    """
    rng = np.random.default_rng(2)
    x = unit_rows(rng, 25, 8)
    assert abs(cmmd(x, x.copy())) < 1e-12
    m = len(x)
    d2 = np.sum((x[:, None, :] - x[None, :, :]) ** 2, axis=-1)
    s = np.exp(-d2 / 200.0).sum()
    expected = -2.0 * (m * m - s) / (m * m * (m - 1)) * 1000.0
    unbiased = cmmd(x, x.copy(), estimator="unbiased")
    assert unbiased < 0
    assert unbiased == pytest.approx(expected, rel=1e-8)


def test_cmmd_input_checks() -> None:
    with pytest.raises(ValueError, match="sizes differ"):
        cmmd(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(NotEnoughDataError):
        cmmd(np.ones((1, 3)), np.ones((3, 3)), estimator="unbiased")
    with pytest.raises(ValueError, match="estimator"):
        cmmd(np.ones((2, 3)), np.ones((2, 3)), estimator="mean")  # type: ignore[arg-type]


# -- R-precision ---------------------------------------------------------------------------------------


def test_r_precision_is_one_for_an_oracle(embedder) -> None:
    prompts = [f"a photo of object number {i}" for i in range(120)]
    text = embedder.embed_texts(prompts)
    index = np.array(list(range(120)) + list(range(30)))  # some prompts have two images
    result = clip_r_precision(text[index], text, index, seed=3)
    assert (result.value, result.r, result.n) == (1.0, 100, 150)


@pytest.mark.parametrize(("n_prompts", "expected_r"), [(300, 100), (20, 20)])
def test_r_precision_is_at_chance_for_noise(n_prompts: int, expected_r: int) -> None:
    rng = np.random.default_rng(4)
    n = 4000
    index = rng.integers(0, n_prompts, n)
    result = clip_r_precision(rng.normal(size=(n, 32)), rng.normal(size=(n_prompts, 32)), index, seed=5)
    assert result.r == expected_r
    sd = math.sqrt(result.chance * (1 - result.chance) / n)
    assert abs(result.value - result.chance) < 4 * sd


def test_r_precision_is_seeded_and_independent_of_chunking(monkeypatch) -> None:
    rng = np.random.default_rng(6)
    images, prompts = rng.normal(size=(500, 16)), rng.normal(size=(150, 16))
    index = rng.integers(0, 150, 500)
    first = clip_r_precision(images, prompts, index, seed=11)
    np.testing.assert_array_equal(clip_r_precision(images, prompts, index, seed=11).hits, first.hits)
    assert not np.array_equal(clip_r_precision(images, prompts, index, seed=12).hits, first.hits)
    monkeypatch.setattr(rprecision, "_MAX_CHUNK_ELEMENTS", 150 * 7)  # 7 images per step
    np.testing.assert_array_equal(clip_r_precision(images, prompts, index, seed=11).hits, first.hits)


def test_r_precision_ties_count_as_misses_and_input_checks() -> None:
    prompts = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # prompts 0 and 1 embed identically
    result = clip_r_precision(np.array([[1.0, 0.0]]), prompts, np.array([0]), r=3)
    assert result.value == 0.0
    with pytest.raises(NotEnoughDataError, match="at least 2 distinct prompts"):
        clip_r_precision(np.ones((3, 2)), np.ones((1, 2)), np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="R must be"):
        clip_r_precision(np.ones((3, 2)), np.eye(2), np.zeros(3, dtype=int), r=5)
    with pytest.raises(ValueError, match="prompt_index"):
        clip_r_precision(np.ones((3, 2)), np.eye(2), np.array([0, 1, 2]))


# -- diversity -----------------------------------------------------------------------------------------


def test_diversity_identical_is_zero_and_orthogonal_is_one(embedder, images) -> None:
    same = embedder.embed_images([images[0]] * 4)
    orthogonal = np.eye(5, 32)
    embeddings = np.vstack([same, orthogonal, embedder.embed_images(images[1:2])])
    groups = ["collapsed"] * 4 + ["varied"] * 5 + ["single"]
    result = prompt_diversity(embeddings, groups)
    by_prompt = {item.prompt: item for item in result.per_prompt}
    assert by_prompt["collapsed"].mean_distance == pytest.approx(0.0, abs=1e-6)
    assert by_prompt["varied"].mean_distance == pytest.approx(1.0, abs=1e-12)
    assert by_prompt["varied"].n_images == 5
    assert result.overall == pytest.approx(0.5, abs=1e-6) and result.n_prompts == 2
    assert [(s.prompt, s.reason) for s in result.skipped] == [("single", "only one image: no pairs to compare")]


def test_diversity_matches_explicit_pairwise_mean() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(6, 10))
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    pairs = [1.0 - unit[i] @ unit[j] for i in range(6) for j in range(6) if i < j]
    result = prompt_diversity(x, ["p"] * 6)
    assert result.overall == pytest.approx(np.mean(pairs), rel=1e-12)
    with pytest.raises(NotEnoughDataError):
        prompt_diversity(x[:2], ["a", "b"])
