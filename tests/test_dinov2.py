"""FD_DINOv2: the DINOv2 extractor on a tiny random Dinov2Model (the real transformers class, saved and loaded by
path), dgm-eval's preprocessing against torchvision, and the Fréchet distance against a float64 scipy computation."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image

from sdeval.core.errors import SdevalError
from sdeval.features.dinov2 import (
    DEFAULT_MODEL,
    FEATURE_NAME,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INPUT_SIZE,
    Dinov2Extractor,
    preprocess_dgm_eval,
)
from sdeval.metrics.fd_dinov2 import fd_dinov2, small_set_warning
from sdeval.metrics.fid import FrechetState

DIM = 32


def _save_dinov2(folder: Path, seed: int) -> Path:
    from transformers import Dinov2Config, Dinov2Model

    # The real model's layout at toy width: patch 14, position grid trained at 518 px (37 x 37, interpolated to 16 x
    # 16 at 224 px, as for facebook/dinov2-large), layer scale; a wider init so features vary with the image.
    config = Dinov2Config(
        hidden_size=DIM,
        num_hidden_layers=2,
        num_attention_heads=2,
        mlp_ratio=2,
        patch_size=14,
        image_size=518,
        initializer_range=0.2,
    )
    torch.manual_seed(seed)
    target = folder / f"dinov2-{seed}"
    Dinov2Model(config).save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    import transformers

    transformers.utils.logging.disable_progress_bar()
    root = tmp_path_factory.mktemp("dinov2")
    return {seed: _save_dinov2(root, seed) for seed in (0, 1)}


@pytest.fixture(scope="module")
def extractor(folders: dict[int, Path]) -> Dinov2Extractor:
    return Dinov2Extractor.load(str(folders[0]))


def _images(n: int, seed: int, style: str) -> list[np.ndarray]:
    """Images of assorted sizes: uniform noise, or smooth colour ramps (other statistics)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        h, w = int(rng.integers(40, 90)), int(rng.integers(40, 90))
        if style == "noise":
            out.append(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        else:
            y, x = np.mgrid[0:h, 0:w]
            colour = rng.uniform(0, 1, 3)
            ramp = (x / w)[..., None] * colour + (y / h)[..., None] * (1 - colour)
            out.append(np.clip(ramp * 255, 0, 255).astype(np.uint8))
    return out


def _features(extractor: Dinov2Extractor, images: list[np.ndarray], batch: int = 64) -> np.ndarray:
    rows = []
    for start in range(0, len(images), batch):
        tensors = torch.stack([extractor.preprocess(x) for x in images[start : start + batch]])
        rows.append(extractor.extract(tensors)[FEATURE_NAME])
    return torch.cat(rows).numpy()


def _scipy_fd(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formula in float64 with scipy's matrix square root (pytorch-fid's computation)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    diff = a.mean(axis=0) - b.mean(axis=0)
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2).real))


def test_preprocessing_is_dgm_evals_torchvision_transform() -> None:
    import torchvision.transforms as TF

    # dgm-eval's DINOv2Encoder.transform (clean_resize=False), on the PIL image its loader makes.
    reference = TF.Compose(
        [
            TF.Resize((INPUT_SIZE, INPUT_SIZE), TF.InterpolationMode.BICUBIC),
            TF.ToTensor(),
            TF.Normalize(np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)),
        ]
    )
    for image in _images(3, 0, "noise") + _images(2, 1, "ramp") + [np.zeros((300, 500, 3), np.uint8)]:
        ours = preprocess_dgm_eval(image)
        assert ours.dtype == torch.float32 and ours.shape == (3, INPUT_SIZE, INPUT_SIZE)
        assert torch.equal(ours, reference(Image.fromarray(image)))
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        preprocess_dgm_eval(np.zeros((8, 8), np.uint8))


def _hub_position_embeddings(model: torch.nn.Module, size: int) -> torch.Tensor:
    """facebookresearch/dinov2's DinoVisionTransformer.interpolate_pos_encoding (the torch.hub model dgm-eval
    loads: interpolate_offset=0.1, interpolate_antialias=False), on transformers' parameter."""
    pos_embed = model.embeddings.position_embeddings.float()
    n = pos_embed.shape[1] - 1
    m = int(math.sqrt(n))
    w0 = h0 = size // 14
    patch_pos_embed = torch.nn.functional.interpolate(
        pos_embed[:, 1:].reshape(1, m, m, -1).permute(0, 3, 1, 2),
        mode="bicubic",
        antialias=False,
        scale_factor=(float(w0 + 0.1) / m, float(h0 + 0.1) / m),
    )
    assert patch_pos_embed.shape[-2:] == (w0, h0)
    patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).view(1, -1, pos_embed.shape[-1])
    return torch.cat((pos_embed[:, 0].unsqueeze(0), patch_pos_embed), dim=1)


def test_extract_equals_a_direct_forward(folders: dict[int, Path], extractor: Dinov2Extractor) -> None:
    """The features are the CLS token after the final norm of a forward pass whose position embeddings are resized
    as the torch.hub model resizes them (transformers' own resize samples the grid elsewhere)."""
    from transformers import Dinov2Model

    images = _images(4, 2, "noise")
    batch = torch.stack([preprocess_dgm_eval(x) for x in images])
    model = Dinov2Model.from_pretrained(folders[0]).eval()
    hub = _hub_position_embeddings(model, INPUT_SIZE)
    with torch.inference_mode():
        tokens = torch.zeros(1, (INPUT_SIZE // 14) ** 2 + 1, DIM)
        assert not torch.allclose(model.embeddings.interpolate_pos_encoding(tokens, INPUT_SIZE, INPUT_SIZE), hub)
        model.embeddings.interpolate_pos_encoding = lambda embeddings, height, width: hub
        out = model(pixel_values=batch, output_hidden_states=True)
        # pooler_output is the CLS token after the final layer norm (dgm-eval's x_norm_clstoken).
        cls_after_norm = model.layernorm(out.hidden_states[-1])[:, 0]
    torch.testing.assert_close(out.pooler_output, cls_after_norm)
    ours = extractor.extract(batch)[FEATURE_NAME]
    assert ours.dtype == torch.float32 and ours.shape == (4, DIM)
    torch.testing.assert_close(ours, out.pooler_output, rtol=0, atol=0)
    assert ours.std(dim=0).min() > 1e-3, "features must vary with the image for the FD checks to mean anything"


def test_batch_size_does_not_move_features(extractor: Dinov2Extractor) -> None:
    images = _images(7, 3, "ramp")
    whole = _features(extractor, images)
    for batch in (1, 3):
        np.testing.assert_allclose(_features(extractor, images, batch), whole, rtol=1e-5, atol=1e-5)


def test_fd_of_a_set_with_itself_is_zero_and_matches_scipy(extractor: Dinov2Extractor) -> None:
    noise = _features(extractor, _images(48, 4, "noise"))
    ramps = _features(extractor, _images(48, 5, "ramp"))
    small = noise[:12]  # fewer images than dimensions: fid_from_features takes the n x n route
    for x in (noise, small):
        assert fd_dinov2(x, x) == pytest.approx(0.0, abs=1e-6 * np.trace(np.cov(x, rowvar=False)))
        assert fd_dinov2(x, FrechetState.from_features(x)) == pytest.approx(0.0, abs=1e-6 * np.trace(np.cov(x.T)))
    value = fd_dinov2(noise, ramps)
    assert value > 0
    assert value == pytest.approx(_scipy_fd(noise, ramps), rel=1e-6)
    # The reference as a (mergeable) state, as rows, or as two merged shards: one number.
    shards = FrechetState.from_features(ramps[:20]).merge(FrechetState.from_features(ramps[20:]))
    assert fd_dinov2(noise, shards) == pytest.approx(value, rel=1e-9)
    assert fd_dinov2(noise, FrechetState.from_features(ramps)) == pytest.approx(value, rel=1e-9)
    assert small_set_warning(12, DIM) is not None and small_set_warning(48, DIM) is None
    with pytest.raises(SdevalError, match=r"shape \[n, d\]"):
        fd_dinov2(noise, ramps[0])


def test_the_extractor_pickles_without_its_model(extractor: Dinov2Extractor) -> None:
    data = pickle.dumps(extractor)
    assert len(data) < 10_000
    clone = pickle.loads(data)
    assert clone.model is None and clone.cache_key == extractor.cache_key
    image = _images(1, 6, "noise")[0]
    assert torch.equal(clone.preprocess(image), extractor.preprocess(image))
    with pytest.raises(RuntimeError, match="holds no model"):
        clone.extract(torch.stack([clone.preprocess(image)]))


def test_cache_key_and_protocol(folders: dict[int, Path], extractor: Dinov2Extractor) -> None:
    again = Dinov2Extractor.load(str(folders[0]))
    other = Dinov2Extractor.load(str(folders[1]))
    assert again.cache_key == extractor.cache_key
    assert other.cache_key != extractor.cache_key  # other weights
    assert extractor.cache_key.startswith(f"{FEATURE_NAME}-v2-folder_dinov2-0-{extractor.weights_sha256}-")
    protocol = extractor.protocol()
    json.dumps(protocol)
    assert protocol["model"] == "folder:dinov2-0"
    assert len(protocol["weights_sha256"]) == 64 and protocol["embed_dim"] == DIM
    assert protocol["input_size"] == 224 and protocol["preprocess"]["normalize"]["std"] == list(IMAGENET_STD)
    assert "pooler_output" in protocol["output"]
    assert "+ 0.1" in protocol["position_embeddings"]  # the torch.hub model's resize
    assert DEFAULT_MODEL == "facebook/dinov2-large"


def test_one_decode_pass_and_the_cache(tmp_path: Path, extractor: Dinov2Extractor) -> None:
    """Through the scoring pipeline's decode workers (the extractor is pickled into them) and the feature cache."""
    from sdeval.features.cache import FeatureCache
    from sdeval.features.extract import extract_folder

    images = _images(5, 7, "noise")
    root = tmp_path / "images"
    root.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(root / f"{i}.png")
    cache = FeatureCache(tmp_path / "cache")
    first = extract_folder(root, [extractor], batch_size=2, workers=1, cache=cache, progress=False)
    expected = _features(extractor, images)
    np.testing.assert_allclose(first.features[extractor.cache_key][FEATURE_NAME], expected, rtol=1e-5, atol=1e-5)
    assert first.n_computed == 5
    second = extract_folder(root, [extractor], batch_size=2, workers=0, cache=cache, progress=False)
    assert second.n_computed == 0
    np.testing.assert_array_equal(
        second.features[extractor.cache_key][FEATURE_NAME], first.features[extractor.cache_key][FEATURE_NAME]
    )


def test_loading_errors(tmp_path: Path) -> None:
    with pytest.raises(SdevalError, match=r"no config\.json"):
        Dinov2Extractor.load(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(SdevalError, match="not dinov2"):
        Dinov2Extractor.load(str(tmp_path))
    # A hub id that is not cached, offline (tests set HF_HUB_OFFLINE): one line naming the way out.
    with pytest.raises(SdevalError, match="--dinov2-model PATH"):
        Dinov2Extractor.load("sdeval-test/no-such-dinov2")
