"""Results documents: write them atomically and render them as a readable table."""

from __future__ import annotations

import os
from typing import Any

from sdeval.atomic import write_json

_LABELS = {
    "fid": "FID",
    "kid": "KID",
    "is": "Inception Score",
    "precision": "Precision (k=3)",
    "recall": "Recall (k=3)",
}


def write_results(path: str | os.PathLike[str], results: dict[str, Any]) -> None:
    write_json(path, results)


def _format_value(entry: dict[str, Any]) -> str:
    if entry.get("value") is None:
        return f"skipped: {entry.get('skipped', 'no value')}"
    text = f"{entry['value']:.6g}"
    if entry.get("std") is not None:
        text += f" ± {entry['std']:.3g}"
    return text


def render_table(results: dict[str, Any]) -> str:
    """A plain-text summary: what was scored, each metric, and anything skipped."""
    images = results["images"]
    lines = [f"images: {images['root']}  ({images['n_scored']} scored, {len(images['skipped'])} skipped)"]
    if results.get("reference"):
        ref = results["reference"]
        lines.append(f"reference: {ref['source']}  ({ref['n']} images)")
    lines.append("")
    rows = [(_LABELS.get(name, name), _format_value(entry)) for name, entry in results["metrics"].items()]
    width = max((len(label) for label, _ in rows), default=0)
    lines += [f"  {label:<{width}}  {value}" for label, value in rows]
    for skipped in images["skipped"]:
        lines.append(f"  skipped {skipped['path']}: {skipped['reason']}")
    for warning in results.get("warnings", []):
        lines.append(f"  warning: {warning}")
    return "\n".join(lines)
