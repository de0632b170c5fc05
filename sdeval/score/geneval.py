"""GenEval interop: read GenEval's output layout, write GenEval's `results.jsonl`.

GenEval's generation script writes one folder per prompt, `NNNNN/metadata.jsonl` (one JSON object: the
prompt's spec and its text) with the images in `NNNNN/samples/NNNN.png`. Its evaluation writes one JSON line per
image (`filename`, `tag`, `prompt`, `correct`, `reason`, `metadata` as JSON text, `details`) that its
`summary_scores.py` groups by `tag` and `metadata`. sdeval reads the first and writes the second, so either tool
can take over from the other.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdeval.core.atomic import write_text
from sdeval.core.errors import SdevalError
from sdeval.prompts.record import PromptRecord
from sdeval.suites.spec import Spec, SpecError, parse_spec

_PROMPT_DIR = re.compile(r"^\d+$")
_SAMPLE = re.compile(r"^samples/(\d+)\.png$")


def is_geneval_layout(root: str | Path) -> bool:
    """True when `root` holds GenEval's per-prompt folders (`NNNNN/metadata.jsonl`)."""
    root = Path(root)
    try:
        return any(_PROMPT_DIR.match(p.name) and (p / "metadata.jsonl").is_file() for p in root.iterdir())
    except OSError:
        return False


@dataclass(frozen=True)
class GenevalImage:
    prompt_id: str  # the folder name, NNNNN
    sample: int  # the sample number, NNNN
    record: PromptRecord
    spec: Spec
    metadata: dict[str, Any]


def read_layout(root: str | Path, paths: list[str]) -> tuple[list[GenevalImage | None], list[str]]:
    """The GenEval prompt of each scored image (`paths` relative to `root`), and warnings for unreadable
    metadata files; images outside the layout get None."""
    root = Path(root)
    folders: dict[str, tuple[dict[str, Any], Spec] | None] = {}
    warnings: list[str] = []
    out: list[GenevalImage | None] = []
    for rel in paths:
        folder, _, rest = rel.partition("/")
        match = _SAMPLE.match(rest)
        if not _PROMPT_DIR.match(folder) or match is None:
            out.append(None)
            continue
        if folder not in folders:
            folders[folder] = _read_metadata(root / folder / "metadata.jsonl", warnings)
        found = folders[folder]
        if found is None:
            out.append(None)
            continue
        metadata, spec = found
        sample = int(match.group(1))
        record = PromptRecord(
            prompt=metadata["prompt"], source="geneval", id=folder, category=spec.tag, settings={"seed_index": sample}
        )
        out.append(GenevalImage(folder, sample, record, spec, metadata))
    return out, warnings


def _read_metadata(path: Path, warnings: list[str]) -> tuple[dict[str, Any], Spec] | None:
    try:
        metadata = json.loads(path.read_text(encoding="utf-8").strip().splitlines()[0])
        if not isinstance(metadata.get("prompt"), str):
            raise SpecError("no 'prompt' text")
        return metadata, parse_spec(metadata, where=str(path.parent.name))
    except (OSError, ValueError, IndexError, AttributeError) as err:
        warnings.append(f"{path}: not a usable GenEval metadata file ({err}); its images have no spec")
        return None


def write_results_jsonl(path: str | os.PathLike[str], results: dict[str, Any]) -> int:
    """GenEval's `results.jsonl` from sdeval results with adherence per-image rows; returns the row count.

    `metadata` is the spec (with the prompt) as GenEval's JSON text, so its summary groups prompts the same way;
    `reason` is the failed facts, one per line, as GenEval writes its reasons.
    """
    lines = []
    root = Path(results["images"]["root"])
    for cell in results["cells"]:
        entry = cell["metrics"].get("adherence") or {}
        specs = {p["prompt_id"]: p.get("spec") for p in entry.get("prompts") or []}
        for row in cell["per_image"]:
            if row.get("adherence_passed") is None:
                continue
            spec = specs.get(row.get("prompt_id") or row["path"]) or {}
            metadata = {**spec, "prompt": row.get("prompt")}
            lines.append(
                json.dumps(
                    {
                        "filename": str(root / row["path"]),
                        "tag": row.get("category"),
                        "prompt": row.get("prompt"),
                        "correct": bool(row["adherence_passed"]),
                        "reason": "\n".join(row.get("adherence_failed") or []),
                        "metadata": json.dumps(metadata),
                        "details": json.dumps({}),
                    }
                )
            )
    if not lines:
        raise SdevalError("--geneval-results: no image was judged (request --metrics adherence with a suite)")
    write_text(path, "\n".join(lines) + "\n")
    return len(lines)
