"""The last stage of a scoring run: the results document (docs/formats.md, "Results") and the feature state rows
beside it (sdeval/state.py)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from sdeval import __version__
from sdeval.features.clip import FEATURE_NAME as CLIP_FEATURE
from sdeval.features.dinov2 import FEATURE_NAME as DINOV2_FEATURE
from sdeval.features.inception import LOGITS, POOL
from sdeval.provenance import now, provenance
from sdeval.reference.files import images_hash
from sdeval.score.prepare import Prepared

FORMAT = "sdeval.results"
FORMAT_VERSION = 1


def assemble(prep: Prepared, cells: list[dict[str, Any]]) -> dict[str, Any]:
    """The results document of the scored cells."""
    generated = prep.generated
    document: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "sdeval_version": __version__,
        "created_at": now(),
        "source": prep.grouping.source,
        "metrics_requested": [spec.name for spec in prep.specs],
        "images": {
            "root": generated.root,
            "n_scored": generated.n,
            "n_computed": generated.n_computed,
            "images_sha256": images_hash(generated.paths, generated.hashes),
            "skipped": [s.to_json() for s in generated.skipped],
        },
        "reference": prep.reference.identity() if prep.reference else None,
        "prompts": None,
        "cells": cells,
        "warnings": prep.warnings,
        "state": None,
        "provenance": {
            **provenance(str(prep.device), generated.root, prep.started_at),
            "seconds": round(time.time() - prep.started, 3),
        },
    }
    if prep.prompts is not None:
        computed = prep.texts.n_computed if prep.texts else 0
        document["prompts"] = {**prep.prompts.summary(), "n_text_computed": computed}
    return document


def state_arrays(prep: Prepared, rows: list[int]) -> dict[str, np.ndarray]:
    """One row per per-image row, cell after cell (see sdeval/state.py), and the reference's features."""
    generated, models, reference = prep.generated, prep.models, prep.reference
    index = np.asarray(rows, dtype=np.int64)
    arrays: dict[str, np.ndarray] = {
        "cell": np.asarray([prep.grouping.assignment[i] for i in rows], dtype=np.int32),
        "item": np.asarray([prep.grouping.items[i] for i in rows], dtype=str),
        "sha256": np.asarray([generated.hashes[i] for i in rows], dtype=str),
    }
    if models.inception is not None:
        features = generated.features[models.inception.cache_key]
        arrays["pool"], arrays["logits"] = features[POOL][index], features[LOGITS][index]
        if reference is not None and models.inception.cache_key in reference.features:
            arrays["reference_pool"] = reference.features[models.inception.cache_key][POOL]
    if models.clip is not None and models.clip.prompt is not None:
        arrays["clip_image"] = generated.features[models.clip.prompt.cache_key][CLIP_FEATURE][index]
    if models.clip is not None and models.clip.cmmd is not None:
        arrays["cmmd_image"] = generated.features[models.clip.cmmd.cache_key][CLIP_FEATURE][index]
        if reference is not None and models.clip.cmmd.cache_key in reference.features:
            arrays["reference_cmmd_image"] = reference.features[models.clip.cmmd.cache_key][CLIP_FEATURE]
    if models.dinov2 is not None:
        arrays["dinov2"] = generated.features[models.dinov2.cache_key][DINOV2_FEATURE][index]
        if reference is not None and models.dinov2.cache_key in reference.features:
            arrays["reference_dinov2"] = reference.features[models.dinov2.cache_key][DINOV2_FEATURE]
    return arrays
