"""Real photographs for agreement tests: the sample images scikit-image, scikit-learn and matplotlib ship (no
download), cut into square crops and saved as PNG or as JPEG at a few qualities, so peers and sdeval are compared on
natural image statistics, not only on noise.

Sources (all in the installed packages):
- scikit-image `skimage.data`: astronaut (NASA, public domain), coffee, chelsea (the cat), rocket (SpaceX, CC0),
  hubble_deep_field (NASA/ESA, public domain), immunohistochemistry, stereo_motorcycle (left view), colorwheel;
- scikit-learn `load_sample_images`: china.jpg, flower.jpg;
- matplotlib `cbook.get_sample_data("grace_hopper.jpg")`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def photographs() -> dict[str, np.ndarray]:
    """Each shipped photograph as HxWx3 uint8, by a name saying where it comes from."""
    import matplotlib.cbook
    import skimage.data
    from sklearn.datasets import load_sample_images

    names = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "colorwheel")
    out = {f"skimage.{name}": getattr(skimage.data, name)() for name in names}
    out["skimage.stereo_motorcycle"] = skimage.data.stereo_motorcycle()[0]
    sklearn = load_sample_images()
    for name, image in zip(sklearn.filenames, sklearn.images, strict=True):
        out[f"sklearn.{Path(name).name}"] = image
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
        out["matplotlib.grace_hopper"] = np.asarray(Image.open(handle).convert("RGB"))
    return {name: np.ascontiguousarray(image[..., :3]) for name, image in out.items()}


def write_crops(folder: Path, n: int, size: int, seed: int, jpeg_quality: int | None = None) -> list[Path]:
    """`n` random `size` x `size` crops (a random scale first, so crops differ in content and sharpness) of the
    photographs, cycling through them, written to `folder` as PNG, or JPEG at `jpeg_quality`."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    photos = list(photographs().items())
    paths = []
    for i in range(n):
        name, image = photos[i % len(photos)]
        h, w = image.shape[:2]
        side = int(rng.integers(min(size, h, w), min(h, w) + 1))  # a photograph smaller than `size` is upscaled
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = Image.fromarray(image[y : y + side, x : x + side]).resize((size, size), Image.Resampling.LANCZOS)
        suffix = "png" if jpeg_quality is None else "jpg"
        path = folder / f"{i:04d}-{name}.{suffix}"
        if jpeg_quality is None:
            crop.save(path)
        else:
            crop.save(path, quality=jpeg_quality)
        paths.append(path)
    return paths
