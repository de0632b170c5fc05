"""The scored set's feature state, kept beside a results file so intervals and paired comparisons can be
computed later without the images or the models.

`RESULTS.state.npz` (read with allow_pickle=False) holds one row per scored image, in the order of the
results' per-image rows (cell after cell): `cell` (int32, the cell's position), `item` and `sha256`
(strings), and each feature the run computed, float32: `pool` [N, 2048] and `logits` [N, 1008] (Inception),
`clip_image` [N, D] and `cmmd_image` [N, D'] (CLIP), and each feature input's rows under its name
(sdeval.features.inputs: `dinov2` [N, 1024] for FD_DINOv2). The reference's features go in too, `reference_pool`,
`reference_cmmd_image` and `reference_NAME` of each input it stores, so a statistic can resample both sides. Rows
are not keyed by content hash: identical outputs (all-black images) must each count. `meta` is JSON text: format,
version, n_rows, the results' cell ids.

Size per 10k images: 82 MB of pool features, 40 MB of logits, 31 MB of ViT-L/14 embeddings (768-d), float32.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from sdeval.core.atomic import STDOUT, write_bytes
from sdeval.core.errors import SdevalError
from sdeval.core.npz import npz_bytes

FORMAT = "sdeval.state"
FORMAT_VERSION = 1


def state_path(results_path: str | os.PathLike[str]) -> Path | None:
    """Where the state of a results file goes: `r.json` -> `r.state.npz` (None for `-` or a non-file)."""
    text = str(results_path)
    if text == STDOUT or text.startswith(("/dev/", "/proc/")):
        return None
    path = Path(text)
    return path.with_name(f"{path.stem if path.suffix == '.json' else path.name}.state.npz")


def save_state(path: str | os.PathLike[str], arrays: dict[str, np.ndarray], cell_ids: list[str]) -> None:
    write_bytes(path, state_bytes(arrays, cell_ids))


def state_bytes(arrays: dict[str, np.ndarray], cell_ids: list[str]) -> bytes:
    """The state file's content (an .npz) for `arrays`, one row per scored image, and the results' cell ids."""
    n = len(arrays["cell"])
    for name, values in arrays.items():
        if not name.startswith("reference_") and len(values) != n:
            raise ValueError(f"state array {name} has {len(values)} rows, expected {n}")
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "n_rows": n, "cells": cell_ids}
    out: dict[str, np.ndarray] = {"meta": np.array(json.dumps(meta))}
    for name, values in arrays.items():
        if name in ("item", "sha256"):
            out[name] = np.asarray(values, dtype=str)
        elif name == "cell":
            out[name] = np.asarray(values, dtype=np.int32)
        else:
            out[name] = np.asarray(values, dtype=np.float32)
    return npz_bytes(out)


def load_state(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(meta, arrays) of a state file, with a clear error for anything that is not one."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        meta = json.loads(str(arrays.pop("meta")))
    except FileNotFoundError:
        raise SdevalError(f"{path}: no such state file") from None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as err:
        raise SdevalError(f"{path}: not a readable sdeval state file ({err})") from None
    if meta.get("format") != FORMAT:
        raise SdevalError(f"{path}: not an sdeval state file")
    if meta.get("format_version") != FORMAT_VERSION:
        raise SdevalError(f"{path}: state format version {meta.get('format_version')} is not {FORMAT_VERSION}")
    return meta, arrays
