"""Thumbnails: one JPEG per image content, named by its sha256, so a second report over the same images (or
another report into the same folder) makes none again."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from sdeval.core.atomic import output_errors

THUMB_SIZE = 256  # longest side; the page shows them smaller and full size on click
QUALITY = 85


def make_thumbnails(images: list[dict[str, Any]], folder: Path, *, quiet: bool = False) -> dict[str, int]:
    """Set each image's `thumb` (a path relative to the report) and make the missing thumbnails, with a progress
    bar on stderr. An image that cannot be read keeps `thumb` None and gets `error`. Returns counts."""
    # PIL and tqdm load when thumbnails are made, not with `sdeval report --help` (+0.1 s)
    from PIL import Image
    from tqdm import tqdm  # tqdm: when thumbnails are made

    folder.mkdir(parents=True, exist_ok=True)
    todo: dict[str, Path | None] = {}
    for image in images:
        name = f"{image['sha256']}.jpg"
        if (folder / name).is_file():
            image["thumb"] = f"{folder.name}/{name}"
        else:
            todo.setdefault(image["sha256"], image["source"])
    failed: dict[str, str] = {}
    for sha256, source in tqdm(todo.items(), desc="thumbnails", unit="img", file=sys.stderr, disable=quiet):
        if source is None:
            failed[sha256] = "the scored images' folder was not found"
            continue
        target = folder / f"{sha256}.jpg"
        partial = target.with_suffix(".part")
        try:
            with Image.open(source) as im:
                im = im.convert("RGB")
                im.thumbnail((THUMB_SIZE, THUMB_SIZE))
        except OSError as err:
            failed[sha256] = f"cannot read {Path(source).name} ({err.__class__.__name__})"
            continue
        try:
            with output_errors(target):  # a full disk is the report's failure (OutputError), not this image's
                im.save(partial, "JPEG", quality=QUALITY)
                partial.replace(target)  # a run cut short leaves no half-written thumbnail under the final name
        finally:
            partial.unlink(missing_ok=True)  # nothing of a thumbnail that was not finished stays behind
    for image in images:
        if image["thumb"] is None:
            if image["sha256"] in failed:
                image["error"] = failed[image["sha256"]]
            else:
                image["thumb"] = f"{folder.name}/{image['sha256']}.jpg"
    distinct = {image["sha256"] for image in images}
    return {"made": len(todo) - len(failed), "reused": len(distinct) - len(todo), "failed": len(failed)}
