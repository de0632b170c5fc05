"""The last stage of a scoring run: the results document (docs/formats.md, "Results") and the feature state rows
beside it (sdeval/results/state.py)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from sdeval.core.provenance import now, provenance
from sdeval.core.version import __version__
from sdeval.reference.files import images_hash
from sdeval.results.document import RESULTS_FORMAT as FORMAT
from sdeval.results.document import RESULTS_VERSION as FORMAT_VERSION
from sdeval.score.prepare import Prepared


def assemble(prep: Prepared, cells: list[dict[str, Any]]) -> dict[str, Any]:
    """The results document of the scored cells."""
    document: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "sdeval_version": __version__,
        "created_at": now(),
        "source": prep.grouping.source,
        "metrics_requested": [spec.name for spec in prep.specs],
        "images": {
            "root": prep.root,
            "n_scored": prep.n,
            "n_computed": prep.n_computed,
            "images_sha256": images_hash(prep.paths, prep.hashes),
            "skipped": prep.skipped,
        },
        # The document's reference block is closed (schema): a statistics file's declaration is in the protocol's.
        "reference": _identity(prep.reference_identity),
        "prompts": None,
        "cells": cells,
        "warnings": prep.warnings,
        "state": None,
        "provenance": {
            **provenance(prep.device, prep.root, prep.started_at),
            "seconds": round(time.time() - prep.started, 3),
        },
    }
    if prep.prompts is not None:
        computed = prep.texts.n_computed if prep.texts else 0
        document["prompts"] = {**prep.prompts.summary(), "n_text_computed": computed}
    return document


def _identity(reference: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if reference is None else {k: reference[k] for k in ("source", "n", "images_sha256")}


def state_arrays(prep: Prepared, rows: list[int]) -> dict[str, np.ndarray]:
    """One row per per-image row, cell after cell (see sdeval/results/state.py), and the reference's features."""
    index = np.asarray(rows, dtype=np.int64)
    arrays: dict[str, np.ndarray] = {
        "cell": np.asarray([prep.grouping.assignment[i] for i in rows], dtype=np.int32),
        "item": np.asarray([prep.grouping.items[i] for i in rows], dtype=str),
        "sha256": np.asarray([prep.hashes[i] for i in rows], dtype=str),
    }
    arrays.update({name: values[index] for name, values in prep.features.items()})
    arrays.update(prep.reference_arrays)
    return arrays
