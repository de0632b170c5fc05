"""Which cell each scored image belongs to, and its item key.

A cell is what one number is computed over: one (checkpoint, setting) of a `sdeval generate` run, one group
of `--group-by`, or a whole plain folder. An item key names an image across runs and cells, so that two
results can be paired image by image: `PROMPT_ID#SEED_INDEX` (or `PROMPT_ID@SEED` when only the seed is
known), else `path:RELATIVE_PATH`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdeval.core.errors import SdevalError
from sdeval.generate.writer import existing_rows, read_metadata, row_from_metadata
from sdeval.prompts.record import PromptRecord

RUN_RECORD = "run.json"
RUN_INDEX = ".sdeval/index.jsonl"
#: --group-by values that are not a manifest or metadata column.
GROUP_BY_FOLDER = "folder"
UNASSIGNED = "(unassigned)"


@dataclass(frozen=True)
class Cell:
    """One cell of a results document (see docs/formats.md, "Results")."""

    id: str
    checkpoint: dict[str, Any] | None = None  # {"name", "sha256"} for a generation run
    setting: dict[str, Any] | None = None  # {"id", "values"} for a generation run
    group: dict[str, Any] | None = None  # {"by", "value"} for --group-by

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "checkpoint": self.checkpoint, "setting": self.setting, "group": self.group}


@dataclass
class ImageInfo:
    """What is known of one scored image beyond its pixels: where it came from and how to pair it."""

    prompt_id: str | None = None
    seed: int | None = None
    seed_index: int | None = None
    row: dict[str, Any] | None = None  # its generation-run row, if any


@dataclass
class Grouping:
    """The cells of a scoring run and, per scored image (in FolderFeatures order), its cell and item key."""

    cells: list[Cell]
    assignment: list[int]
    items: list[str]
    infos: list[ImageInfo]
    source: dict[str, Any]  # the results document's `source` block
    manifest: Path | None = None  # the prompt manifest a generation run brings
    warnings: list[str] = field(default_factory=list)

    def members(self, cell: int) -> list[int]:
        return [i for i, c in enumerate(self.assignment) if c == cell]


def item_key(prompt_id: str | None, seed_index: int | None, seed: int | None, path: str) -> str:
    if prompt_id is not None and seed_index is not None:
        return f"{prompt_id}#{seed_index}"
    if prompt_id is not None and seed is not None:
        return f"{prompt_id}@{seed}"
    return f"path:{path}"


def is_generation_run(root: str | Path) -> bool:
    root = Path(root)
    return (root / RUN_RECORD).is_file() or (root / RUN_INDEX).is_file()


def _run_rows(root: Path) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for file, candidates in existing_rows(root).items():
        if candidates:
            rows[file] = candidates[-1]
    return rows


def run_source(root: str | Path) -> dict[str, Any]:
    """The `source` block of a generation run: its config and suite identity, seeds and checkpoints."""
    root = Path(root)
    record: dict[str, Any] = {}
    path = root / RUN_RECORD
    if path.is_file():
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise SdevalError(f"{path}: not a readable run record ({err})") from None
    config = record.get("config") or {}
    return {
        "kind": "generation_run",
        "root": str(root),
        "group_by": None,
        "run": {
            "record": RUN_RECORD if record else None,
            "config_sha256": record.get("config_sha256"),
            "suite": record.get("suite"),
            "seeds": {k: config.get(k) for k in ("seeds", "seeds_per_prompt", "base_seed") if k in config},
            "pipeline": config.get("pipeline"),
            "init_images": config.get("init_images"),
            "checkpoints": record.get("checkpoints"),
            "finished_at": record.get("finished_at"),
        },
    }


def generation_rows(root: str | Path, paths: list[str]) -> list[dict[str, Any] | None]:
    """Each image's row of a generation run: its index row, else one made from the PNG's `sdeval` metadata."""
    root = Path(root)
    rows = _run_rows(root)
    out: list[dict[str, Any] | None] = []
    for rel in paths:
        row = rows.get(rel)
        if row is None:
            meta = read_metadata(root / rel)
            row = row_from_metadata(meta, rel) if meta is not None else None
        out.append(row)
    return out


def group_generation_rows(
    root: str | Path, paths: list[str], rows: list[dict[str, Any] | None], source: dict[str, Any]
) -> Grouping:
    """Cells of a generation run from each image's row (`generation_rows`): cells in the order their first image
    comes in `paths`."""
    root = Path(root)
    # A series checkpoint's step and run, from the run record, so results and reports can order by training step.
    steps = {
        c["name"]: {k: c[k] for k in ("step", "run") if c.get(k) is not None}
        for c in (source.get("run") or {}).get("checkpoints") or []
        if isinstance(c, dict) and c.get("name") is not None
    }
    cells: dict[str, Cell] = {}
    assignment: list[int] = []
    infos: list[ImageInfo] = []
    unassigned = 0
    for row in rows:
        if row is None or row.get("checkpoint") is None or row.get("setting_id") is None:
            unassigned += 1
            cell = Cell(UNASSIGNED)
            infos.append(ImageInfo())
        else:
            cell = Cell(
                f"{row['checkpoint']}/{row['setting_id']}",
                checkpoint={
                    "name": row["checkpoint"],
                    "sha256": row.get("checkpoint_hash"),
                    **steps.get(row["checkpoint"], {}),
                },
                setting={"id": row["setting_id"], "values": row.get("settings")},
            )
            infos.append(ImageInfo(row.get("id"), row.get("seed"), row.get("seed_index"), row))
        index = list(cells).index(cell.id) if cell.id in cells else len(cells)
        cells.setdefault(cell.id, cell)
        assignment.append(index)
    warnings = []
    if unassigned:
        warnings.append(
            f"{unassigned} image(s) in the generation run have neither an index row nor sdeval metadata: "
            f"scored in the cell {UNASSIGNED!r}"
        )
    manifest = root / "manifest.jsonl"
    return Grouping(
        cells=list(cells.values()),
        assignment=assignment,
        items=[
            item_key(info.prompt_id, info.seed_index, info.seed, rel) for info, rel in zip(infos, paths, strict=True)
        ],
        infos=infos,
        source=source,
        manifest=manifest if manifest.is_file() else None,
        warnings=warnings,
    )


def group_folder(
    root: str | Path, paths: list[str], records: list[PromptRecord | None] | None, group_by: str | None
) -> Grouping:
    """Cells of a plain folder: one (named after the folder), or one per `group_by` value: `folder` (first
    sub-folder of each image) or a prompt column (`checkpoint`, `category`, or a key of `settings`)."""
    root = Path(root)
    infos = [
        ImageInfo(record.id, record.seed, _seed_index(record)) if record is not None else ImageInfo()
        for record in (records or [None] * len(paths))
    ]
    source = {"kind": "folder", "root": str(root), "group_by": group_by, "run": None}
    items = [item_key(info.prompt_id, info.seed_index, info.seed, rel) for info, rel in zip(infos, paths, strict=True)]
    if group_by is None:
        return Grouping([Cell(root.resolve().name or str(root))], [0] * len(paths), items, infos, source)
    values = [
        _group_value(group_by, rel, record) for rel, record in zip(paths, records or [None] * len(paths), strict=True)
    ]
    order: list[str | None] = list(dict.fromkeys(sorted(v for v in values if v is not None)))
    if any(v is None for v in values):
        order.append(None)
    cells = [Cell(str(v) if v is not None else UNASSIGNED, group={"by": group_by, "value": v}) for v in order]
    assignment = [order.index(v) for v in values]
    warnings = []
    missing = sum(v is None for v in values)
    if missing:
        warnings.append(f"--group-by {group_by}: {missing} image(s) have no value: scored in the cell {UNASSIGNED!r}")
    return Grouping(cells, assignment, items, infos, source, warnings=warnings)


def _seed_index(record: PromptRecord) -> int | None:
    """sdeval's own PNG metadata carries the seed index (in the record's settings): a generated image keeps its
    item key when its folder is scored on its own."""
    value = record.settings.get("seed_index")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _group_value(group_by: str, rel: str, record: PromptRecord | None) -> str | None:
    if group_by == GROUP_BY_FOLDER:
        parts = rel.split("/")
        return parts[0] if len(parts) > 1 else "."
    if record is None:
        return None
    if group_by in ("checkpoint", "category", "id", "negative_prompt"):
        value = getattr(record, group_by if group_by != "id" else "id")
    else:
        value = record.settings.get(group_by)
    return None if value is None else str(value)
