"""The second stage of a scoring run: each cell's metrics, per-image rows and protocol, from the prepared inputs.

A metric that cannot be computed on its input (too few images, no prompts: MetricSkip, or a singular matrix) is
listed with its reason and the other metrics still run; any other exception is a bug and propagates.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sdeval.features import inputs as feature_inputs
from sdeval.metrics.registry import CellData, MetricSkip, MetricSpec, PromptData
from sdeval.reference.files import images_hash
from sdeval.reference.stats import DECLARED_BLOCK
from sdeval.score.prepare import Prepared

#: What a metric may raise for a degenerate input; each becomes a listed skip with its reason.
METRIC_SKIPS = (MetricSkip, np.linalg.LinAlgError)
#: The state arrays of the models that are CellData fields; every other array is a feature input's.
_MODEL_ARRAYS = ("pool", "logits", "clip_image", "cmmd_image")
#: How each image is decoded before any model sees it (part of every cell's protocol).
DECODE_RULE = "8-bit RGB, first frame, no EXIF rotation, alpha dropped, 16-bit scaled by 1/257"


def score_cells(prep: Prepared) -> tuple[list[dict[str, Any]], list[int]]:
    """Each cell's results entry, and the images' positions in the order of the cells' per-image rows."""
    cells, state_rows = [], []
    for c, cell in enumerate(prep.grouping.cells):
        members = prep.grouping.members(c)
        data = cell_data(prep, members)
        entry = _score_cell(prep, data, cell.to_json(), members)
        entry["protocol"] = _protocol(prep, data)
        cells.append(entry)
        state_rows.extend(members)
    return cells, state_rows


def cell_data(prep: Prepared, members: list[int]) -> CellData:
    """What a metric may read about the cell of images `members`."""
    rows = np.asarray(members, dtype=np.int64)
    data = CellData(paths=[prep.paths[i] for i in members], params=prep.options.params, reference=prep.reference_data)
    for name, values in prep.features.items():
        if name in _MODEL_ARRAYS:
            setattr(data, name, values[rows])
        else:  # a feature input's rows (sdeval.features.inputs)
            data.features[name] = values[rows]
    if prep.prompts is not None:
        data.prompts = _prompt_data(prep, members, set(data.paths))
    if prep.faithful is not None:
        columns, missing = prep.faithful
        data.faithfulness = {name: [values[i] for i in members] for name, values in columns.items()}
        data.faithfulness_missing = [{"path": prep.paths[i], "reason": missing[i]} for i in members if i in missing]
    if prep.judged is not None:
        data.judged = prep.judged.for_cell(members, prep.paths, prep.judge_protocol or {})
    if prep.preference is not None:
        for name, scores in prep.preference.scores.items():
            missing = prep.preference.missing[name]
            data.preference[name] = scores[rows]
            data.preference_missing[name] = [
                {"path": prep.paths[i], "reason": missing[i]} for i in members if i in missing
            ]
    return data


def _prompt_data(prep: Prepared, members: list[int], member_paths: set[str]) -> PromptData:
    assert prep.prompts is not None
    records = [prep.prompts.records[i] for i in members]
    texts = prep.texts
    if texts is not None:
        distinct, position = texts.distinct, texts.position
    else:  # prompts without a text model (diversity): group by the prompt text
        distinct = list(dict.fromkeys(r.prompt for r in records if r is not None))
        position = {text: j for j, text in enumerate(distinct)}
    return PromptData(
        index=np.array([position[r.prompt] if r is not None else -1 for r in records], dtype=np.int64),
        texts=texts.embeddings if texts is not None else None,
        distinct=distinct,
        truncated=texts.truncated if texts is not None else None,
        missing=[m for m in prep.prompts.missing if m["path"] in member_paths],
    )


def compute_metrics(
    specs: list[MetricSpec], data: CellData
) -> tuple[dict[str, Any], dict[str, list[Any]], list[str], list[dict[str, Any]] | None]:
    """(metric entries, per-image columns, warnings, per-prompt rows) of one cell."""
    metrics: dict[str, Any] = {}
    columns: dict[str, list[Any]] = {}
    warnings: list[str] = []
    per_prompt = None
    for spec in specs:
        try:
            output = spec.compute(data)
        except METRIC_SKIPS as err:  # too few images, no prompts, a degenerate input: listed, not fatal
            for result in spec.results:
                metrics[result.key] = {"value": None, "skipped": str(err) or type(err).__name__}
            continue
        metrics.update(output.entries)
        columns.update(output.per_image)
        warnings.extend(output.warnings)
        if output.per_prompt is not None:
            per_prompt = output.per_prompt
    return metrics, columns, warnings, per_prompt


def _score_cell(prep: Prepared, data: CellData, cell: dict[str, Any], members: list[int]) -> dict[str, Any]:
    metrics, columns, warnings, per_prompt = compute_metrics(prep.specs, data)
    rows = [_per_image_row(prep, i, j, columns) for j, i in enumerate(members)]
    entry = {**cell, "n_images": len(members), "images_sha256": images_hash(data.paths, [r["sha256"] for r in rows])}
    entry.update(metrics=metrics, per_image=rows, warnings=warnings)
    if per_prompt is not None:
        entry["per_prompt"] = per_prompt
    return entry


def _per_image_row(prep: Prepared, i: int, j: int, columns: dict[str, list[Any]]) -> dict[str, Any]:
    info = prep.grouping.infos[i]
    record = prep.prompts.records[i] if prep.prompts is not None else None
    row: dict[str, Any] = {
        "item": prep.grouping.items[i],
        "path": prep.paths[i],
        "sha256": prep.hashes[i],
        "prompt": record.prompt if record else (info.row or {}).get("prompt"),
        "prompt_id": info.prompt_id if info.prompt_id is not None else (record.id if record else None),
        "seed": info.seed if info.seed is not None else (record.seed if record else None),
        "seed_index": info.seed_index,
        "prompt_source": record.source if record else None,
    }
    texts = prep.texts
    if record is not None and texts is not None and texts.truncated is not None:
        row["prompt_truncated"] = texts.truncated[texts.position[record.prompt]]
    for name, values in columns.items():
        row[name] = values[j]
    return row


def _reference_identity(reference: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if reference is None else {k: v for k, v in reference.items() if k != "declared"}


def _protocol(prep: Prepared, data: CellData) -> dict[str, Any]:
    options, models = prep.options, prep.models
    protocol: dict[str, Any] = {
        "metrics": [spec.name for spec in prep.specs],
        "inception": models.protocol("inception"),
        "reference": _reference_identity(prep.reference_identity),
        "suite": (prep.grouping.source.get("run") or {}).get("suite"),
        "seed": options.seed,
        "decode": DECODE_RULE,
    }
    if prep.reference_identity is not None and "declared" in prep.reference_identity:
        # What the user declared a statistics reference was made with (reference/stats.py): a block of its own, since
        # the reference block is closed (the results schema); FID, the one metric such a reference serves, binds it.
        protocol[DECLARED_BLOCK] = prep.reference_identity["declared"]
    for spec in prep.specs:
        if spec.protocol is not None:
            protocol.update(spec.protocol(options.params, data))
    for role, (_, record) in models.roles.items():  # each feature input's extractor where it declares
        _record_input(protocol, feature_inputs.get(role), record, options)
    protocol.update(models.preference)
    if options.protocol_preset is not None:  # the peer protocol asked for: what it set (the fields above bind)
        protocol["preset"] = dict(options.protocol_preset)
    if prep.judge_protocol is not None:
        protocol["judge"] = prep.judge_protocol
        if protocol["suite"] is None and isinstance(prep.judge_protocol["specs"], dict):
            protocol["suite"] = prep.judge_protocol["specs"]  # --suite on a plain folder
    return protocol


def _record_input(protocol: dict[str, Any], declared: Any, record: dict[str, Any], options: Any) -> None:
    """Record a feature input's extractor in `protocol`: in a top-level block of its name, or at its declared place
    inside a metric's block where that block is (CMMD's model, `protocol["cmmd"]["clip"]`); and the blocks it adds
    beside it (the prompts the CLIP text model embeds)."""
    if not declared.protocol_at:
        protocol[declared.name] = record
    else:
        *path, key = declared.protocol_at
        block = protocol
        for name in path:
            block = block.get(name) if isinstance(block, dict) else None
        if isinstance(block, dict):
            block[key] = record
    protocol.update(declared.blocks(options))
