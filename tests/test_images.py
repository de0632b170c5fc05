"""The decoding rule, and a folder of bad inputs that scores its good images and lists each bad one."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from sdeval.images import ImageDecodeError, decode_bytes, find_images


def _encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _png_with_header_size(width: int, height: int) -> bytes:
    """A small valid PNG whose IHDR claims another size (a decompression bomb's header)."""
    data = bytearray(_encode(Image.new("RGB", (4, 4))))
    ihdr = 8 + 8  # signature, then length + b"IHDR"
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12 : ihdr + 13]))
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


def _noise_png() -> bytes:
    return _encode(Image.fromarray(np.random.default_rng(5).integers(0, 256, (64, 64, 3), dtype=np.uint8)))


def test_rgb_passes_through():
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(decode_bytes(_encode(Image.fromarray(rgb))), rgb)


def test_16_bit_grayscale_is_scaled_not_clipped():
    values = np.array([[0, 257, 25700, 65535]], dtype=np.uint16)
    out = decode_bytes(_encode(Image.fromarray(values)))
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 100, 255])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "1", "CMYK", "I;16"])
def test_every_mode_becomes_rgb_uint8(mode):
    base = Image.fromarray(np.random.default_rng(1).integers(0, 256, (6, 6, 3), dtype=np.uint8))
    image = base.convert(mode) if mode != "I;16" else Image.fromarray(np.full((6, 6), 1000, np.uint16))
    fmt = "JPEG" if mode == "CMYK" else "TIFF" if mode in ("I;16",) else "PNG"
    out = decode_bytes(_encode(image, fmt))
    assert out.dtype == np.uint8 and out.shape == (6, 6, 3)


def test_alpha_is_dropped_like_the_peer_tools():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 0  # fully transparent: the colour underneath is kept
    np.testing.assert_array_equal(decode_bytes(_encode(Image.fromarray(rgba)))[..., 0], 200)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"hello, I am text", "not an image"),
        (_noise_png()[:2000], "truncated or corrupt"),
        (_png_with_header_size(30000, 30000), "too large"),
        (_encode(Image.new("F", (4, 4)), "TIFF"), "unsupported mode 'F'"),
    ],
)
def test_bad_bytes_give_a_reason(data, reason):
    with pytest.raises(ImageDecodeError, match=reason):
        decode_bytes(data)


def test_find_images_is_recursive_sorted_and_ignores_other_files(tmp_path):
    (tmp_path / "b").mkdir()
    for name in ["b/2.PNG", "a.jpg", "c.webp", "notes.txt", ".hidden.png", "d.tiff"]:
        (tmp_path / name).write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in find_images(tmp_path)] == [
        "a.jpg",
        "b/2.PNG",
        "c.webp",
        "d.tiff",
    ]


def make_bad_folder(folder, good: int = 12) -> dict[str, str]:
    """A folder with `good` good images and one file of every bad kind; returns bad name -> reason."""
    from sdeval.demo import make_image_set

    make_image_set(folder, good, seed=9)
    bad = {
        "empty.png": (b"", "empty file"),
        "text.png": (b"not an image at all", "not an image"),
        "truncated.png": (_noise_png()[:3000], "truncated or corrupt"),
        "bomb.png": (_png_with_header_size(40000, 40000), "too large"),
        "float.tif": (_encode(Image.new("F", (8, 8)), "TIFF"), "unsupported mode"),
    }
    for name, (data, _) in bad.items():
        (folder / name).write_bytes(data)
    # Odd but valid: they are scored.
    Image.new("P", (50, 70), 3).save(folder / "palette.png")
    Image.fromarray(np.full((40, 40), 40000, np.uint16)).save(folder / "gray16.png")
    Image.new("CMYK", (30, 30), (10, 20, 30, 40)).save(folder / "cmyk.jpg")
    Image.new("RGBA", (33, 33), (1, 2, 3, 4)).save(folder / "alpha.png")
    return {name: reason for name, (_, reason) in bad.items()}


def test_bad_folder_scores_good_images_and_lists_each_bad_one(tmp_path, inception_weights):
    from sdeval.score import FeatureOptions, ScoreOptions, score

    bad = make_bad_folder(tmp_path / "mixed")
    options = FeatureOptions(inception_weights=inception_weights, cache_dir=None, workers=2, progress=False)
    results = score(ScoreOptions(str(tmp_path / "mixed"), metrics=("is",), features=options))
    assert results["images"]["n_scored"] == 12 + 4
    skipped = {entry["path"]: entry["reason"] for entry in results["images"]["skipped"]}
    assert set(skipped) == set(bad)
    for name, reason in bad.items():
        assert reason in skipped[name]
    # IS needs 10 images: it is computed, not skipped.
    assert results["metrics"]["is"]["value"] is not None
