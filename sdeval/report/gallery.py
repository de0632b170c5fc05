"""The images the page shows: a grid of a few prompts across every cell, and each checkpoint's worst prompts."""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from typing import Any

from sdeval.report.formatting import fmt
from sdeval.report.model import Cell

N_GRID_PROMPTS = 6  # prompts in the side-by-side grid
N_WORST = 5  # worst prompts shown per checkpoint
N_WORST_IMAGES = 4  # images shown per worst prompt


def _image(cell: Cell, row: dict[str, Any]) -> dict[str, Any]:
    """What the page needs to show one image (its thumbnail is made later)."""
    source = cell.images_root / row["path"] if cell.images_root is not None else None
    return {"sha256": row["sha256"], "source": source, "prompt": row.get("prompt") or "", "cell": cell.label,
            "item": row["item"], "passed": row.get("adherence_passed"), "failed": row.get("adherence_failed") or [],
            "seed": row.get("seed"), "thumb": None}  # fmt: skip


def _stable(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _prompt_key(row: dict[str, Any]) -> str:
    """What gathers the images of one prompt: its prompt id, else its prompt text (a manifest without ids), else
    the image's own path (nothing is known of its prompt)."""
    if row.get("prompt_id") is not None:
        return f"id:{row['prompt_id']}"
    if row.get("prompt"):
        return f"text:{row['prompt']}"
    return f"path:{row.get('path') or row['item']}"


def _prompt_view(row: dict[str, Any]) -> dict[str, Any]:
    """How a prompt is named on the page: its id (or, with neither id nor text, the image path) and its text."""
    named = row.get("prompt_id")
    if named is None and not row.get("prompt"):
        named = row.get("path") or row["item"]
    return {"prompt_id": named, "prompt": row.get("prompt") or ""}


def _seed_order(row: dict[str, Any]) -> tuple[float, float, str]:
    """Sort key putting a prompt's first seed first."""
    index, seed = row.get("seed_index"), row.get("seed")
    return (index if index is not None else math.inf, seed if seed is not None else math.inf, row["item"])


def _contrast(rows: list[dict[str, Any]]) -> tuple[int, float]:
    """How much the cells differ on one prompt's shown images: (1 when adherence passes in some and fails in
    others, else 0; the spread of their CLIP scores)."""
    passes = {bool(r["adherence_passed"]) for r in rows if r.get("adherence_passed") is not None}
    clips = [float(r["clip_score"]) for r in rows if isinstance(r.get("clip_score"), int | float)]
    return int(len(passes) > 1), (max(clips) - min(clips)) if len(clips) > 1 else 0.0


def image_grid(cells: list[Cell]) -> list[dict[str, Any]]:
    """A few prompts at their first seed, across every cell: prompts every cell has, then those where the cells
    differ most (adherence passes in some and not others, then the widest CLIP score spread), then by a hash of
    the prompt, so the same prompts are chosen each time."""
    by_prompt: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)  # prompt key -> cell -> row
    for cell in cells:
        for row in cell.data["per_image"]:
            key = _prompt_key(row)
            seen = by_prompt[key].get(cell.label)
            if seen is None or _seed_order(row) < _seed_order(seen):
                by_prompt[key][cell.label] = row

    def rank(key: str) -> tuple[int, int, float, str]:
        differs, spread = _contrast(list(by_prompt[key].values()))
        return (-len(by_prompt[key]), -differs, -spread, _stable(key))

    grid = []
    for key in sorted(by_prompt, key=rank)[:N_GRID_PROMPTS]:
        members = by_prompt[key]
        first = next(iter(members.values()))
        grid.append(
            {
                **_prompt_view(first),
                "images": [_image(c, members[c.label]) if c.label in members else None for c in cells],
            }
        )
    return grid


def worst_prompts(cells: list[Cell]) -> list[dict[str, Any]]:
    """Per checkpoint (of each run), the prompts with the lowest adherence pass rate (else mean CLIP score), with
    their images. A prompt whose every image passed is no failure and is not listed."""
    out = []
    several_runs = len({c.run for c in cells}) > 1
    for run, checkpoint in dict.fromkeys((c.run, c.checkpoint) for c in cells):
        members = [c for c in cells if c.run == run and c.checkpoint == checkpoint]
        scores: dict[str, list[float]] = defaultdict(list)
        images: dict[str, list[tuple[Cell, dict[str, Any]]]] = defaultdict(list)
        adherence = any(r.get("adherence_passed") is not None for c in members for r in c.data["per_image"])
        column, label = ("adherence_passed", "pass rate") if adherence else ("clip_score", "mean CLIP score")
        for cell in members:
            for row in cell.data["per_image"]:
                value = row.get(column)
                if value is None:
                    continue
                key = _prompt_key(row)
                scores[key].append(float(value))
                images[key].append((cell, row))
        if not scores:
            continue
        mean = {key: sum(found) / len(found) for key, found in scores.items()}
        candidates = [key for key in scores if not adherence or mean[key] < 1.0]
        ranked = sorted(candidates, key=lambda key: (mean[key], _stable(key)))[:N_WORST]
        prompts = []
        for key in ranked:
            shown = sorted(images[key], key=lambda pair: (pair[1].get(column) or 0, pair[1]["item"]))[:N_WORST_IMAGES]
            failed = sorted({f for _, r in images[key] for f in (r.get("adherence_failed") or [])})
            prompts.append(
                {
                    **_prompt_view(shown[0][1]),
                    "score": fmt(mean[key]),
                    "n": len(scores[key]),
                    "failed": failed[:6],
                    "images": [_image(cell, row) for cell, row in shown],
                }
            )
        out.append(
            {
                "checkpoint": f"{run}: {checkpoint}" if several_runs else checkpoint,
                "measure": label,
                "prompts": prompts,
                "show_failed": any(p["failed"] for p in prompts),  # no column of facts where none failed
                "n_prompts": len(scores),
            }
        )
    return out


def shown_images(grid: list[dict[str, Any]], worst: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every image the grid and the worst prompts show, each needing a thumbnail."""
    return [img for row in grid for img in row["images"] if img] + [
        img for block in worst for prompt in block["prompts"] for img in prompt["images"]
    ]
