"""Find image files, decode them to 8-bit RGB by one documented rule, and say why any could not be read.

The rule (documented in README, "Decoding"):
- The first frame of the file is used (multi-page TIFF, animated WebP).
- EXIF orientation is *not* applied, as in torch-fidelity and clean-fid, so numbers stay comparable.
- 16-bit grayscale (PIL modes I;16*, and I with values <= 65535) is scaled to 8 bits with rounding,
  v8 = round(v16 / 257), so that 65535 -> 255. 16-bit RGB PNGs are reduced to their high byte by Pillow.
- Every other mode (1, L, P, RGBA, LA, PA, CMYK, YCbCr, LAB, HSV, RGBX) goes through PIL's
  `convert("RGB")`, as the peer tools do: alpha is dropped, palettes are expanded, grayscale is replicated.
- Floating-point images (mode F) are rejected: their value range is ambiguous.
- Images with more pixels than the limit (default 8192 x 8192) are rejected before decoding
  (decompression-bomb guard).
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from sdeval.core.errors import NoImagesError, SdevalError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
DEFAULT_MAX_PIXELS = 8192 * 8192


@dataclass(frozen=True)
class Skipped:
    """A file that was found but not scored, and why."""

    path: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


class ImageDecodeError(Exception):
    """One file could not be turned into an RGB image; the message is the reason shown to the user."""


def find_images(root: str | os.PathLike[str]) -> list[Path]:
    """All image files under `root` (recursively), sorted by relative path so order never depends on the OS.

    Symlinked sub-folders are followed, as clean-fid does; paths keep the link's name as seen under `root`.
    A folder is walked once only, by its identity on disk, so a link loop or a second link to the same
    folder adds nothing: its images are already listed under the first path. Real sub-folders are walked
    before any link, so an image inside `root` keeps its own path rather than a link's. A broken symlink
    with an image name is listed, so the decoder reports it as unreadable instead of it vanishing.
    """
    root_path = Path(root)
    if not root_path.exists():
        raise SdevalError(f"{root}: no such file or folder")
    if root_path.is_file():
        raise SdevalError(f"{root}: expected a folder of images, got a file")
    found: list[Path] = []
    visited: set[tuple[int, int]] = set()
    pending = [root_path]
    # Breadth-first over link levels: each round walks real folders only and queues the links it meets.
    while pending:
        links: list[Path] = []
        for top in pending:
            if not _first_visit(top, visited):
                continue
            for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
                keep = []
                for name in sorted(d for d in dirnames if not d.startswith(".")):
                    sub = Path(dirpath) / name
                    if sub.is_symlink():
                        links.append(sub)
                    elif _first_visit(sub, visited):
                        keep.append(name)
                dirnames[:] = keep
                for name in filenames:
                    if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                        found.append(Path(dirpath) / name)
        pending = sorted(links, key=lambda p: p.relative_to(root_path).as_posix())
    return sorted(found, key=lambda p: p.relative_to(root_path).as_posix())


def _first_visit(folder: Path, visited: set[tuple[int, int]]) -> bool:
    """Record `folder` (through any link) as walked; False if it was walked already or cannot be read."""
    try:
        st = folder.stat()
    except OSError:
        return False
    key = (st.st_dev, st.st_ino)
    if key in visited:
        return False
    visited.add(key)
    return True


def require_images(root: str | os.PathLike[str]) -> list[Path]:
    """Like `find_images`, but a folder with no image file is an error."""
    paths = find_images(root)
    if not paths:
        raise NoImagesError(f"{root}: no image files found (looked for {', '.join(IMAGE_EXTENSIONS)})")
    return paths


def content_hash(data: bytes) -> str:
    """Content address of a file's bytes (the feature cache key)."""
    return hashlib.sha256(data).hexdigest()


def decode_bytes(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an encoded image to an HxWx3 uint8 array by the module's rule, or raise ImageDecodeError."""
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageDecodeError(
                    f"too large: {width}x{height} = {width * height} pixels exceeds the limit of "
                    f"{max_pixels} (decompression-bomb guard)"
                )
            if width == 0 or height == 0:
                raise ImageDecodeError(f"zero-sized image ({width}x{height})")
            image.seek(0)
            image.load()
            return to_rgb_array(image)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image (unrecognised format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageDecodeError(f"too large (decompression-bomb guard): {err}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        # Pillow reports truncated and corrupt data as OSError/SyntaxError/ValueError.
        raise ImageDecodeError(f"truncated or corrupt: {err}") from None


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """Convert a loaded PIL image to HxWx3 uint8 RGB by the module's rule."""
    mode = image.mode
    if mode == "F":
        raise ImageDecodeError("unsupported mode 'F' (32-bit float): convert to 8 or 16 bits first")
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(image).astype(np.int64)
        if values.min(initial=0) < 0 or values.max(initial=0) > 65535:
            raise ImageDecodeError(f"unsupported mode '{mode}': values outside 0..65535")
        gray = ((values * 255 + 32767) // 65535).astype(np.uint8)  # round(v / 257)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode != "RGB":
        image = image.convert("RGB")
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ImageDecodeError(f"unexpected array shape {array.shape} after RGB conversion")
    return np.ascontiguousarray(array)


def load_rgb(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read and decode one file; raises ImageDecodeError with the reason."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise ImageDecodeError(f"unreadable: {err.strerror or err}") from None
    return decode_bytes(data, max_pixels)
