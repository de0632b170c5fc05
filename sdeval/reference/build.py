"""A reference from images: features extracted in one decode pass (a folder now, or a file built before)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sdeval.core.devices import resolve_device
from sdeval.core.errors import SdevalError
from sdeval.features import inputs as feature_inputs
from sdeval.features.inception import POOL, InceptionExtractor
from sdeval.features.inception_input import NAME as INCEPTION
from sdeval.features.options import FeatureOptions, extract
from sdeval.metrics.fid import FrechetState
from sdeval.reference.derived import DEFAULT_RADII_K, compute_eigh, compute_radii
from sdeval.reference.files import (
    POOL_STATE,
    Reference,
    images_hash,
    load_reference,
    require_features,
    save_reference,
)


@dataclass
class ReferenceShare:
    """Share `shard` (I, N) of a reference folder (every N-th image of the sorted listing from the I-th): its decoded
    images as a Reference (no Fréchet state: the whole's is computed from the merged rows), and what a merge checks
    that the shares cover the folder with."""

    reference: Reference
    shard: tuple[int, int]
    n_listed: int  # image files in the whole folder
    skipped: list[str] = field(default_factory=list)  # this share's files that could not be decoded


def reference_from_folder(folder: str, extractors: list, options: FeatureOptions) -> Reference:
    """A reference made now from a folder, holding the features of each of `extractors`."""
    return _reference(folder, extractors, extract(folder, extractors, options, "reference"))


def reference_share(folder: str, extractors: list, options: FeatureOptions, shard: tuple[int, int]) -> ReferenceShare:
    """Share `shard` of a reference folder made now (it may hold no image): one rank's or one array job's part of
    the reference, merged with the others' as their images are."""
    feats = extract(folder, extractors, options, "reference", shard)
    reference = _reference(folder, extractors, feats, whole=False)
    return ReferenceShare(reference, shard, feats.n_listed, [s.path for s in feats.skipped])


def _reference(folder: str, extractors: list, feats: Any, whole: bool = True) -> Reference:
    """A Reference of extracted features (an empty share holds no arrays)."""
    features: dict[str, dict[str, np.ndarray]] = {}
    fid_state = None
    state_rows: dict[str, tuple[str, str]] = {}
    for extractor in extractors:
        arrays = feats.features[extractor.cache_key]
        if isinstance(extractor, InceptionExtractor) and POOL in arrays:
            # Its declared stored outputs (not the logits, which serve IS only: no reference), with the rows of the
            # inputs it hosts where asked (sFID's spatial rows); the pool features' Fréchet state, the file's own.
            arrays = {name: arrays[name] for name in feature_inputs.stored_features(INCEPTION) if name in arrays}
            fid_state = FrechetState.from_features(arrays[POOL]) if whole else None
            state_rows = {POOL_STATE: (extractor.cache_key, POOL)} if whole else {}
        features[extractor.cache_key] = arrays
    return Reference(
        protocols={e.cache_key: e.protocol() for e in extractors},
        features=features,
        fid_state=fid_state,
        n=feats.n,
        images_hash=images_hash(feats.paths, feats.hashes),
        source=str(Path(folder)),
        image_hashes=list(feats.hashes),
        image_paths=list(feats.paths),
        state_rows=state_rows,
    )


def store_derived(reference: Reference, knn_rows: list[tuple[str, str]], radii_k: tuple[int, ...]) -> None:
    """What scoring against `reference` would otherwise compute each run: the k-NN radii of the rows named in
    `knn_rows` at each k of `radii_k` (the exact path), and the eigen-decomposition of each Fréchet state of at
    least as many images as dimensions (compute_eigh)."""
    for features in knn_rows:
        rows = reference.rows(features)
        if rows is not None:
            reference.radii += compute_radii(rows, features, radii_k)
    for name, state in reference.states().items():
        decomposition = compute_eigh(state)
        if decomposition is not None:
            reference.eigh[name] = decomposition


def build_reference_file(
    images: str,
    out: str,
    options: FeatureOptions,
    inputs: tuple[str, ...] = (),
    values: Mapping[str, Any] | None = None,
    radii_k: tuple[int, ...] = DEFAULT_RADII_K,
) -> Reference:
    """`sdeval reference build`: Inception features and Fréchet state of a folder (plus the rows of each feature input
    named in `inputs`, sdeval.features.inputs, its extractor made with the option `values` given, the others taking
    their defaults: `("cmmd",)` stores the CLIP image embeddings CMMD needs, `("dinov2",)` the DINOv2 features
    FD_DINOv2 needs), extracted in one pass and written to `out`, with the pool features' k-NN radii at each k of
    `radii_k` (precision/recall's and density/coverage's) and each state's eigen-decomposition."""
    device = torch.device(resolve_device(options.device))
    # Every reference stores the inputs declared so (Inception's pool features); a hosted input's rows (sFID's,
    # `--inception-spatial`) ride its host's pass: no model is added for it.
    always = tuple(declared.name for declared in feature_inputs.inputs() if declared.always_stored)
    built = feature_inputs.build_all((*always, *inputs), values or {}, device, options)
    # Those first, then the others in registration order (the CMMD model, DINOv2, ...): the file's order.
    extractors = [built[name] for name in always] + [e for name, e in built.items() if name not in always]
    extractors = list({id(extractor): extractor for extractor in extractors}.values())  # a host's extractor once
    reference = reference_from_folder(images, extractors, options)
    store_derived(reference, [(built[INCEPTION].cache_key, POOL)], radii_k)
    save_reference(out, reference)
    return reference


def load_any_reference(
    source: str, needs: list[tuple[Any, str]], options: FeatureOptions, route: str | None = None
) -> Reference:
    """A reference from a folder (features extracted now) or a file (each extractor's protocol checked): an sdeval
    reference file, or Fréchet statistics (mu, sigma) whose protocol `route` (--reference-protocol) or their sidecar
    declares (sdeval.reference.stats).

    `needs` pairs each extractor whose features the metrics need with the hint shown when a reference
    file holds none of that kind.
    """
    from sdeval.reference.stats import is_stats_file, load_stats_reference  # stats imports this module: at call time

    if Path(source).is_dir():
        return reference_from_folder(source, [extractor for extractor, _ in needs], options)
    if route is not None and not is_stats_file(source):
        raise SdevalError(f"--reference-protocol: only for a statistics file (mu, sigma); {source} says its own")
    reference = load_stats_reference(source, route) if is_stats_file(source) else load_reference(source)
    for extractor, hint in needs:
        require_features(reference, extractor.protocol(), extractor.cache_key, hint)
    return reference
