"""Read the results files of a report: each file's run label, its cells, and their feature states."""

from __future__ import annotations

import hashlib
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from sdeval import stats
from sdeval.core.errors import SdevalError
from sdeval.metrics.keys import check_values
from sdeval.report.model import Cell, ReportOptions
from sdeval.results.document import load_results


def _sha256(path: Path) -> str | None:
    """The sha256 of a results file, by which a gate verdict names the file it checked (None: unreadable)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _resolve_root(root: str, results_path: Path) -> Path | None:
    """The scored images' folder: as recorded, else relative to the results file (a report built elsewhere)."""
    candidates = [Path(root)] if Path(root).is_absolute() else [Path.cwd() / root, results_path.parent / root]
    return next((c for c in candidates if c.is_dir()), None)


def run_labels(paths: list[Path]) -> list[str]:
    """A short, unique label per results file: its name without suffix; where those clash, the folders above it
    (as few as make every label unique), alone when every file has the same name (`a/results.json`,
    `b/results.json`: `a`, `b`). The same file given twice is an error."""
    first: dict[str, Path] = {}
    for given in paths:
        real = os.path.realpath(given)
        if real in first:
            raise SdevalError(f"report: the same results file was given twice: {first[real]} and {given}")
        first[real] = given
    # Labels come from the paths as given (made absolute), not from where a link points: `latest/` stays `latest`.
    absolute = [Path(os.path.abspath(p)) for p in paths]
    stems = [p.stem for p in absolute]
    if len(set(stems)) == len(stems):
        return stems
    same_name = len(set(stems)) == 1  # every bench writes results.json: the folders alone tell them apart
    for depth in range(1, max(len(p.parts) for p in absolute)):
        labels = []
        for path in absolute:
            folders = list(path.parent.parts[1:][-depth:])  # without the root
            labels.append("/".join(folders if same_name and folders else [*folders, path.stem]))
        if len(set(labels)) == len(labels):
            return labels
    return [str(p) for p in absolute]  # names that differ only in their suffix


def _given_labels(labels: tuple[str, ...], n_files: int) -> list[str]:
    """--label, checked: one per results file, non-empty, no two the same."""
    if len(labels) != n_files:
        raise SdevalError(
            f"--label: {len(labels)} given for {n_files} results file{'s' if n_files != 1 else ''} "
            "(give one per results file, in order, or none)"
        )
    for label in labels:
        if not label.strip():
            raise SdevalError("--label: a label is empty")
    repeated = [label for label, n in Counter(labels).items() if n > 1]
    if repeated:
        raise SdevalError(f"--label: {repeated[0]!r} is given twice (each run needs its own label)")
    return list(labels)


def load_cells(paths: list[Path], options: ReportOptions) -> tuple[list[Cell], list[dict[str, Any]]]:
    """Every cell of every results file, labelled uniquely, with its feature state where there is one."""
    runs = run_labels(paths)  # refuses the same file twice, with or without --label
    if options.labels:
        runs = _given_labels(options.labels, len(paths))
    documents, cells = [], []
    for path, run in zip(paths, runs, strict=True):
        document = check_values(load_results(path), path)
        documents.append(
            {"path": str(path), "name": path.name, "label": run, "document": document, "sha256": _sha256(path)}
        )
        states: dict[str, Any] = {}
        if (document.get("state") or {}).get("path"):
            try:
                states = stats.load_cell_states(path, document)
            except (SdevalError, OSError) as err:
                print(f"report: {path.name}: feature state not used ({err})", file=sys.stderr)
        root = _resolve_root(document["images"]["root"], path)
        for cell in document["cells"]:
            checkpoint = (cell.get("checkpoint") or {}).get("name") or (cell.get("group") or {}).get("value")
            setting = cell.get("setting") or {}
            cells.append(
                Cell(
                    # With several runs every cell names its run, so a label reads the same in every section.
                    label=f"{run}: {cell['id']}" if len(paths) > 1 else cell["id"],
                    run=run,
                    source=str(path),
                    data=cell,
                    state=states.get(cell["id"]),
                    checkpoint=checkpoint or cell["id"],
                    setting=setting.get("id") or "",
                    values=dict(setting.get("values") or {}),
                    images_root=root,
                )
            )
    repeated = [label for label, n in Counter(c.label for c in cells).items() if n > 1]
    if repeated:
        source = next(c.source for c in cells if c.label == repeated[0])
        raise SdevalError(f"report: {source}: cell {repeated[0]!r} appears twice")
    return cells, documents
