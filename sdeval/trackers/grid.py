"""The same-prompt grid as one picture for a tracker: the report's choice of prompts (sdeval.report.gallery), one
row per prompt, one column per cell, each cell's label above its column and each prompt's id before its row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from sdeval.report.gallery import image_grid
from sdeval.report.load import load_cells
from sdeval.report.model import ReportOptions

TILE = 160  # pixels, the longest side of one image
LABEL_HEIGHT = 18  # the row of cell labels
PROMPT_WIDTH = 120  # the column of prompt ids
GAP = 4


def _short(text: str, width: int) -> str:
    """A label cut to about `width` pixels of the default font (6 px a character)."""
    most = max(width // 6, 4)
    return text if len(text) <= most else text[: most - 1] + "…"


def write_grid(results: Path, target: Path) -> dict[str, Any]:
    """Draw the grid of the results file's cells into `target` (PNG). Returns {n_prompts, n_cells, missing}: an
    image whose file is gone is drawn as a grey tile and counted; no prompt at all, or no scored folder (images
    scored in memory), writes nothing (n_prompts 0)."""
    cells, _ = load_cells([results], ReportOptions(quiet=True))
    rows = image_grid(cells) if any(cell.images_root is not None for cell in cells) else []  # no folder, no images
    if not rows:
        return {"n_prompts": 0, "n_cells": len(cells), "missing": 0}
    width = PROMPT_WIDTH + len(cells) * (TILE + GAP)
    height = LABEL_HEIGHT + len(rows) * (TILE + GAP)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for j, cell in enumerate(cells):
        draw.text((PROMPT_WIDTH + j * (TILE + GAP) + 2, 3), _short(cell.label, TILE), fill="black")
    missing = 0
    for i, row in enumerate(rows):
        top = LABEL_HEIGHT + i * (TILE + GAP)
        draw.text((2, top + 2), _short(str(row.get("prompt_id") or ""), PROMPT_WIDTH), fill="black")
        for j, image in enumerate(row["images"]):
            left = PROMPT_WIDTH + j * (TILE + GAP)
            if image is None:  # this cell has no image of the prompt
                continue
            try:
                if image["source"] is None:  # the scored images' folder was not found
                    raise FileNotFoundError(image["sha256"])
                with Image.open(image["source"]) as opened:
                    tile = opened.convert("RGB")
                    tile.thumbnail((TILE, TILE))
            except OSError:
                missing += 1
                draw.rectangle((left, top, left + TILE - 1, top + TILE - 1), fill="lightgrey")
                continue
            canvas.paste(tile, (left, top))
    canvas.save(target, "PNG")
    return {"n_prompts": len(rows), "n_cells": len(cells), "missing": missing}
