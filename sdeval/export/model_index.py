"""The Hugging Face model card's `model-index` from a results file, so that a published number carries its protocol.

One model per card: the cells of one checkpoint (each setting a result entry of its own, `dataset.config`). Each
metric (and each adherence category, `adherence.colors`) is listed with its registry label, its value and, under
`args`, every binding protocol field that moves it (sdeval.results.protocol), its interval and its number of
images. The dataset is what the number was measured against: the reference set for a metric that needs one
(FID, KID, ...), else the prompt suite (id, version, sha256), else the scored images themselves.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sdeval.core.errors import SdevalError
from sdeval.metrics import registry
from sdeval.metrics.keys import lookup, value_of, with_parts
from sdeval.results.protocol import binds, flatten, is_informative

TASK = {"type": "text-to-image", "name": "Text-to-Image"}
REFSET_PREFIX = "refset:"  # a reference built from a defined set records its source as `refset:ID`


def _checkpoint(cell: dict[str, Any]) -> str | None:
    named = (cell.get("checkpoint") or {}).get("name")
    group = cell.get("group") or {}
    if named is None and group.get("by") == "checkpoint":
        named = group.get("value")
    return None if named is None else str(named)


def select_cells(
    document: dict[str, Any], checkpoint: str | None, cell_ids: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """The cells a card describes: those named, else those of `checkpoint`, else all cells when they are of one
    checkpoint (or name none). Cells of several checkpoints are several models: an error that lists them."""
    cells = document["cells"]
    if cell_ids:
        known = {cell["id"]: cell for cell in cells}
        missing = [cid for cid in cell_ids if cid not in known]
        if missing:
            raise SdevalError(f"--cell {missing[0]!r}: no such cell (cells: {', '.join(known)})")
        return [known[cid] for cid in dict.fromkeys(cell_ids)]
    labels = list(dict.fromkeys(_checkpoint(cell) for cell in cells))
    if checkpoint is not None:
        chosen = [cell for cell in cells if _checkpoint(cell) == checkpoint]
        if not chosen:
            named = ", ".join(str(label) for label in labels if label is not None) or "none"
            raise SdevalError(f"--checkpoint {checkpoint!r}: no cell of that checkpoint (checkpoints: {named})")
        return chosen
    if len(labels) > 1:
        named = ", ".join(str(label) for label in labels)
        raise SdevalError(
            f"the results hold several checkpoints ({named}); a model card describes one model: choose one with "
            "--checkpoint NAME (or cells with --cell ID)"
        )
    return list(cells)


def _head(name: str) -> str:
    """The result key of `name` (`adherence` for `adherence.colors`)."""
    ref = lookup(name)
    return ref.result.key if ref is not None else name


def _nested(flat: dict[str, Any]) -> dict[str, Any]:
    """{`a.b`: v} back to {a: {b: v}}."""
    out: dict[str, Any] = {}
    for path, value in flat.items():
        node = out
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def protocol_args(protocol: dict[str, Any], key: str) -> dict[str, Any]:
    """The binding protocol fields that move result key `key` (the part's key for KEY.PART), nested as recorded."""
    head = _head(key)
    return _nested(
        {path: value for path, value in flatten(protocol).items() if not is_informative(path) and binds(path, head)}
    )


def _dataset(document: dict[str, Any], cell: dict[str, Any], key: str) -> dict[str, Any]:
    """What `key` was measured against, as a model-index dataset (the setting as `config`)."""
    protocol = cell.get("protocol") or {}
    spec = registry.spec_of_key(key)
    reference = protocol.get("reference") or document.get("reference")
    suite = protocol.get("suite") or ((document.get("source") or {}).get("run") or {}).get("suite")
    if spec is not None and spec.needs_reference and reference:
        source = str(reference.get("source") or "reference")
        kind = source[len(REFSET_PREFIX) :] if source.startswith(REFSET_PREFIX) else Path(source).name or source
        dataset = {"type": kind, "name": f"reference {kind} ({reference.get('n')} images)"}
        dataset["revision"] = reference.get("images_sha256")
    elif suite and suite.get("id"):
        version = f" version {suite['version']}" if suite.get("version") is not None else ""
        dataset = {"type": str(suite["id"]), "name": f"prompt suite {suite['id']}{version}"}
        dataset["revision"] = suite.get("sha256")
    else:
        root = Path(str(document["images"]["root"])).name or "images"
        dataset = {"type": "sdeval-images", "name": f"scored images {root}", "revision": cell.get("images_sha256")}
    setting = (cell.get("setting") or {}).get("id")
    group = cell.get("group") or {}
    config = setting or (group.get("value") if group.get("by") not in (None, "checkpoint") else None)
    if config is not None:
        dataset["config"] = str(config)
    return {k: v for k, v in dataset.items() if v is not None}


def _metric(document: dict[str, Any], cell: dict[str, Any], name: str, value: float) -> dict[str, Any]:
    ref = lookup(name)
    args: dict[str, Any] = {"protocol": protocol_args(cell.get("protocol") or {}, name), "n_images": cell["n_images"]}
    interval = (cell["metrics"].get(name) or {}).get("interval")
    if interval:
        args["interval"] = {k: interval[k] for k in ("low", "high", "level", "method") if interval.get(k) is not None}
    args["sdeval_version"] = document["sdeval_version"]
    return {"type": name, "name": ref.label if ref is not None else name, "value": value, "args": args}


def model_index(
    document: dict[str, Any],
    model_name: str,
    checkpoint: str | None = None,
    cell_ids: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """The `model-index` list (one model) of a loaded results document."""
    entries: dict[str, dict[str, Any]] = {}  # one result entry per (dataset, config), in the order met
    owner: dict[str, str] = {}
    for cell in select_cells(document, checkpoint, cell_ids):
        for name in with_parts([cell]):
            value, _ = value_of(cell, name)
            if value is None:  # skipped: no number to publish
                continue
            dataset = _dataset(document, cell, _head(name))
            where = repr(sorted(dataset.items()))
            if owner.setdefault(f"{where}|{name}", cell["id"]) != cell["id"]:
                raise SdevalError(
                    f"cells {owner[f'{where}|{name}']!r} and {cell['id']!r} give {name} for the same dataset and "
                    "setting: choose the cells with --cell ID"
                )
            entry = entries.setdefault(where, {"task": dict(TASK), "dataset": dataset, "metrics": []})
            entry["metrics"].append(_metric(document, cell, name, value))
    if not entries:
        raise SdevalError("the results hold no metric value to export (every metric was skipped)")
    return [{"name": model_name, "results": list(entries.values())}]


def default_model_name(results: str | os.PathLike[str], cells: list[dict[str, Any]]) -> str:
    """The checkpoint's name, else the results file's folder (for results.json) or name."""
    labels = {_checkpoint(cell) for cell in cells} - {None}
    if len(labels) == 1:
        return str(labels.pop())
    path = Path(os.path.abspath(results))
    return path.parent.name if path.stem == "results" and path.parent.name else path.stem
