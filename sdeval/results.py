"""Results documents: write them atomically and render them as a readable table."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from sdeval.atomic import write_json
from sdeval.errors import SdevalError

_LABELS = {
    "fid": "FID",
    "kid": "KID",
    "is": "Inception Score",
    "precision": "Precision (k=3)",
    "recall": "Recall (k=3)",
    "clip": "CLIP score",
    "rprecision": "CLIP R-precision",
    "cmmd": "CMMD",
    "diversity": "Diversity",
}


def write_results(path: str | os.PathLike[str], results: dict[str, Any]) -> None:
    """Write atomically; if that fails (disk full, folder removed meanwhile), keep the computed results in a
    temp file and raise SdevalError naming both paths, so a long run is never lost to a write error."""
    try:
        write_json(path, results)
    except OSError as err:
        fd, fallback = tempfile.mkstemp(prefix="sdeval-results-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
        raise SdevalError(
            f"could not write the results to {path} ({err.strerror or err}); they were saved to {fallback}"
        ) from None


def incomplete_metrics(results: dict[str, Any]) -> list[str]:
    """Result keys of the requested metrics that have no value (each carries its `skipped` reason)."""
    return [name for name, entry in results["metrics"].items() if entry.get("value") is None]


def _format_value(name: str, entry: dict[str, Any]) -> str:
    if entry.get("value") is None:
        return f"skipped: {entry.get('skipped', 'no value')}"
    text = f"{entry['value']:.6g}"
    if entry.get("std") is not None:
        text += f" ± {entry['std']:.3g}"
    if name == "rprecision":
        text += f"  (R={entry['r']}, chance {entry['chance']:.3g}, {entry['n']} images)"
    elif name == "diversity":
        text += f"  ({entry['n_prompts']} prompts with 2+ images)"
    elif name in ("clip", "cmmd") and "n" in entry:
        text += f"  ({entry['n']} images)"
    return text


def _listed(lines: list[str], items: list[str], max_listed: int | None) -> None:
    shown = items if max_listed is None else items[:max_listed]
    lines.extend(shown)
    if len(shown) < len(items):
        lines.append(f"  ... and {len(items) - len(shown)} more (see the results JSON)")


def render_table(results: dict[str, Any], max_listed: int | None = None) -> str:
    """A plain-text summary: what was scored, each metric, and anything skipped.

    Lists of skipped images, images without a prompt and warnings stop after `max_listed` lines each
    (None: no limit).
    """
    images = results["images"]
    lines = [f"images: {images['root']}  ({images['n_scored']} scored, {len(images['skipped'])} skipped)"]
    if results.get("reference"):
        ref = results["reference"]
        lines.append(f"reference: {ref['source']}  ({ref['n']} images)")
    prompts = results.get("prompts")
    if prompts:
        sources = ", ".join(f"{source} {count}" for source, count in prompts["source_counts"].items())
        lines.append(
            f"prompts: {prompts['n_with_prompt']} of {images['n_scored']} images ({sources or 'none found'}), "
            f"{prompts['n_distinct']} distinct"
        )
    lines.append("")
    rows = [(_LABELS.get(name, name), _format_value(name, entry)) for name, entry in results["metrics"].items()]
    width = max((len(label) for label, _ in rows), default=0)
    lines += [f"  {label:<{width}}  {value}" for label, value in rows]
    _listed(lines, [f"  skipped {s['path']}: {s['reason']}" for s in images["skipped"]], max_listed)
    if prompts:
        _listed(lines, [f"  no prompt {m['path']}: {m['reason']}" for m in prompts["missing"]], max_listed)
        _listed(lines, [f"  prompt warning: {w}" for w in prompts["warnings"]], max_listed)
    _listed(lines, [f"  warning: {w}" for w in results.get("warnings", [])], max_listed)
    return "\n".join(lines)
