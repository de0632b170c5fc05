"""A results document as plain text: what was scored, each cell's metrics, and anything skipped."""

from __future__ import annotations

from typing import Any

from sdeval.metrics import registry


def _label(key: str) -> str:
    declared = registry.result_key(key)
    return declared.label if declared is not None else key


def format_value(key: str, entry: dict[str, Any]) -> str:
    """A metric entry as one line: value, spread, interval (and its note), then the key's declared detail."""
    if entry.get("value") is None:
        return f"skipped: {entry.get('skipped', 'no value')}"
    text = f"{entry['value']:.6g}"
    if entry.get("std") is not None:
        text += f" ± {entry['std']:.3g}"
    if entry.get("interval"):
        interval = entry["interval"]
        text += f"  [{interval['low']:.4g}, {interval['high']:.4g}] ({interval['level']:.0%})"
    declared = registry.result_key(key)
    detail = declared.describe(entry) if declared is not None else ""
    return f"{text}  {detail}" if detail else text


def _listed(lines: list[str], items: list[str], max_listed: int | None) -> None:
    shown = items if max_listed is None else items[:max_listed]
    lines.extend(shown)
    if len(shown) < len(items):
        lines.append(f"  ... and {len(items) - len(shown)} more (see the results JSON)")


def _cell_lines(cell: dict[str, Any], indent: str) -> list[str]:
    rows = [(_label(key), format_value(key, entry)) for key, entry in cell["metrics"].items()]
    width = max((len(label) for label, _ in rows), default=0)
    return [f"{indent}{label:<{width}}  {value}" for label, value in rows]


def render_table(results: dict[str, Any], max_listed: int | None = None) -> str:
    """A plain-text summary. Lists of skipped images, images without a prompt and warnings stop after
    `max_listed` lines each (None: no limit)."""
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
    cells = results["cells"]
    warnings = list(results.get("warnings", []))
    for cell in cells:
        lines.append("")
        indent = "  "
        if len(cells) > 1:
            lines.append(f"cell {cell['id']}  ({cell['n_images']} images)")
            indent = "    "
        lines += _cell_lines(cell, indent)
        prefix = f"{cell['id']}: " if len(cells) > 1 else ""
        warnings += [prefix + w for w in cell.get("warnings", [])]
    _listed(lines, [f"  skipped {s['path']}: {s['reason']}" for s in images["skipped"]], max_listed)
    if prompts:
        _listed(lines, [f"  no prompt {m['path']}: {m['reason']}" for m in prompts["missing"]], max_listed)
        _listed(lines, [f"  prompt warning: {w}" for w in prompts["warnings"]], max_listed)
    _listed(lines, [f"  warning: {w}" for w in warnings], max_listed)
    state = results.get("state") or {}
    if state.get("path") is None and state.get("reason"):
        lines.append(f"  note: {state['reason']}")
    return "\n".join(lines)
