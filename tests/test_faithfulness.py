from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from sdeval.metrics.embeddings import NotEnoughDataError
from sdeval.metrics.faithfulness import clip_image_cosine, edge_map, edge_ssim, faithfulness_rows


def _scene(size: int = 192) -> np.ndarray:
    """An image with clear structure: rectangles, lines and an ellipse on a mid-grey background."""
    image = Image.new("RGB", (size, size), (128, 128, 128))
    draw = ImageDraw.Draw(image)
    draw.rectangle((20, 20, 90, 80), fill=(220, 40, 40))
    draw.rectangle((110, 30, 170, 150), outline=(10, 10, 10), width=4)
    draw.line((10, 180, 180, 100), fill=(250, 250, 250), width=3)
    draw.ellipse((30, 110, 90, 170), fill=(30, 60, 200))
    return np.asarray(image)


def _other_scene(size: int = 192) -> np.ndarray:
    """An unrelated layout: a grid of thin lines and a diagonal bar."""
    image = Image.new("RGB", (size, size), (90, 160, 90))
    draw = ImageDraw.Draw(image)
    for x in range(8, size, 37):
        draw.line((x, 0, x, size), fill=(20, 20, 20), width=2)
    draw.polygon([(0, 150), (150, 0), (185, 0), (0, 185)], fill=(240, 220, 60))
    return np.asarray(image)


def _noisy(image: np.ndarray, sigma: float, noise: np.ndarray) -> np.ndarray:
    return np.clip(image.astype(np.float64) + sigma * noise, 0, 255).round().astype(np.uint8)


def test_identical_pairs_give_one() -> None:
    scene = _scene()
    assert edge_ssim(scene, scene) == pytest.approx(1.0, abs=1e-6)
    flat = np.full((64, 80, 3), 77, dtype=np.uint8)  # no edges at all
    assert edge_ssim(flat, flat) == pytest.approx(1.0, abs=1e-6)
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(5, 16)) * rng.uniform(0.1, 10.0, size=(5, 1))
    np.testing.assert_allclose(clip_image_cosine(embeddings, embeddings), 1.0, atol=1e-6)
    rows = faithfulness_rows([scene, flat], [scene.copy(), flat.copy()], embeddings[:2], 3.0 * embeddings[:2])
    for row in rows:
        assert set(row) == {"edge_ssim", "clip_cosine"}
        assert row["edge_ssim"] == pytest.approx(1.0, abs=1e-6)
        assert row["clip_cosine"] == pytest.approx(1.0, abs=1e-6)


def test_edge_ssim_does_not_rise_with_noise() -> None:
    scene = _scene()
    noise = np.random.default_rng(1).normal(size=scene.shape)
    values = [edge_ssim(scene, _noisy(scene, sigma, noise)) for sigma in (0, 5, 10, 20, 40)]
    assert values[0] == pytest.approx(1.0, abs=1e-6)
    assert all(later <= earlier for earlier, later in itertools.pairwise(values)), values
    assert values[-1] < values[1]  # noise does cost structure


def test_unrelated_image_scores_below_a_blurred_copy() -> None:
    scene = _scene()
    blurred = np.asarray(Image.fromarray(scene).filter(ImageFilter.GaussianBlur(1)))
    close = edge_ssim(scene, blurred)
    far = edge_ssim(scene, _other_scene())
    assert far < close < 1.0
    # The term is symmetric in practice and handles different sizes (both go onto one grid).
    assert edge_ssim(blurred, scene) == pytest.approx(close, abs=1e-9)
    larger = np.asarray(Image.fromarray(scene).resize((384, 384), Image.Resampling.NEAREST))
    assert edge_ssim(scene, larger) > far


def test_edge_map_scale_and_colour_insensitivity() -> None:
    scene = _scene()
    edges = edge_map(scene)
    assert edges.shape == (256, 256) and edges.min() >= 0.0 and edges.max() <= 1.0
    # A vertical black/white step: the edges lie along it, at most 4 / (4 sqrt 2) (a pure x gradient), none far off.
    step = np.zeros((64, 64), dtype=np.uint8)
    step[:, 32:] = 255
    step_edges = edge_map(step, size=64)
    assert set(np.argmax(step_edges, axis=1)) <= {31, 32}
    assert 0.3 < step_edges.max() <= 1 / np.sqrt(2) + 1e-12
    assert np.all(step_edges[:, :24] < 1e-3) and np.all(step_edges[:, 40:] < 1e-3)
    # Colour changes that keep luma keep the edges: a grayscale copy scores 1.
    gray = np.asarray(Image.fromarray(scene).convert("L"))
    assert edge_ssim(scene, np.stack([gray] * 3, axis=-1)) == pytest.approx(1.0, abs=1e-6)


def test_clip_image_cosine_is_row_wise() -> None:
    a = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    b = np.array([[0.0, 1.0], [0.0, -1.0], [2.0, 2.0]])
    np.testing.assert_allclose(clip_image_cosine(a, b), [0.0, -1.0, 1.0], atol=1e-12)


def test_bad_input() -> None:
    scene = _scene()
    with pytest.raises(ValueError, match="uint8"):
        edge_ssim(scene.astype(np.float32), scene)
    with pytest.raises(ValueError, match="HxWx3"):
        edge_ssim(scene[..., :1].repeat(4, axis=-1), scene)
    with pytest.raises(ValueError, match="init images"):
        faithfulness_rows([scene], [scene, scene], np.ones((2, 4)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="embedding rows"):
        faithfulness_rows([scene], [scene], np.ones((2, 4)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="shapes differ"):
        clip_image_cosine(np.ones((2, 4)), np.ones((2, 3)))
    with pytest.raises(NotEnoughDataError):
        faithfulness_rows([], [], np.ones((0, 4)), np.ones((0, 4)))
