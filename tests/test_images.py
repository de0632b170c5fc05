"""The decoding rule, and a folder of bad inputs that scores its good images and lists each bad one."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from sdeval.core.images import ImageDecodeError, decode_bytes, find_images


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


def _rel(root, paths):
    return [p.relative_to(root).as_posix() for p in paths]


def test_find_images_follows_symlinked_folders(tmp_path):
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    for name in ["o.png", "deep/p.png"]:
        (outside / name).write_bytes(b"x")
    root = tmp_path / "images"
    root.mkdir()
    (root / "a.png").write_bytes(b"x")
    (root / "linked").symlink_to(outside, target_is_directory=True)
    (root / "same").symlink_to(outside, target_is_directory=True)  # a second link to a walked folder
    (root / "file_link.png").symlink_to(outside / "o.png")  # symlinked files were always followed
    # The link's name stays in the path; the second link adds nothing already listed.
    assert _rel(root, find_images(root)) == ["a.png", "file_link.png", "linked/deep/p.png", "linked/o.png"]


def test_find_images_symlink_loops_terminate_and_real_paths_win(tmp_path):
    root = tmp_path / "images"
    (root / "sub" / "z").mkdir(parents=True)
    for name in ["a.png", "sub/b.png", "sub/z/c.png"]:
        (root / name).write_bytes(b"x")
    (root / "sub" / "up").symlink_to(root, target_is_directory=True)  # loop to the root
    (root / "sub" / "z" / "self").symlink_to(root / "sub" / "z", target_is_directory=True)  # loop to itself
    (root / "a_link").symlink_to(root / "sub" / "z", target_is_directory=True)  # sorts before the real path
    (root / "loop_a").symlink_to(root / "loop_b", target_is_directory=True)  # links that point at each other
    (root / "loop_b").symlink_to(root / "loop_a", target_is_directory=True)
    # Each image once, under its real path.
    assert _rel(root, find_images(root)) == ["a.png", "sub/b.png", "sub/z/c.png"]


def test_find_images_lists_broken_symlinks_so_they_are_reported(tmp_path):
    from sdeval.core.images import load_rgb

    (tmp_path / "gone.png").symlink_to(tmp_path / "missing.png")
    (tmp_path / "gone_dir").symlink_to(tmp_path / "missing", target_is_directory=True)
    assert _rel(tmp_path, find_images(tmp_path)) == ["gone.png"]
    with pytest.raises(ImageDecodeError, match="unreadable"):
        load_rgb(tmp_path / "gone.png")


def make_bad_folder(folder, good: int = 12) -> dict[str, str]:
    """A folder with `good` good images and one file of every bad kind; returns bad name -> reason."""
    from sdeval.score.demo import make_image_set

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

    bad = make_bad_folder(tmp_path / "mixed", good=16)
    options = FeatureOptions(inception_weights=inception_weights, cache_dir=None, workers=2, progress=False)
    results = score(ScoreOptions(str(tmp_path / "mixed"), metrics=("is",), features=options))
    assert results["images"]["n_scored"] == 16 + 4
    skipped = {entry["path"]: entry["reason"] for entry in results["images"]["skipped"]}
    assert set(skipped) == set(bad)
    for name, reason in bad.items():
        assert reason in skipped[name]
    # IS needs 2 images per split (20 for its 10 splits): it is computed, not skipped.
    assert results["cells"][0]["metrics"]["is"]["value"] is not None
