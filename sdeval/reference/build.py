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


@dataclass(frozen=True)
class ReferenceNeed:
    """A feature input whose rows the metrics need of the reference: its extractor, and the hint shown when a
    reference file holds none of them (how to rebuild it)."""

    name: str
    extractor: Any
    hint: str


def reference_from_folder(folder: str, inputs: Mapping[str, Any], options: FeatureOptions) -> Reference:
    """A reference made now from a folder, holding what references keep of each feature input in `inputs` (input
    name -> its extractor: a hosted input's is its host's)."""
    return _reference(folder, inputs, extract(folder, _distinct(inputs), options, "reference"))


def reference_share(
    folder: str, inputs: Mapping[str, Any], options: FeatureOptions, shard: tuple[int, int]
) -> ReferenceShare:
    """Share `shard` of a reference folder made now (it may hold no image): one rank's or one array job's part of
    the reference, merged with the others' as their images are."""
    feats = extract(folder, _distinct(inputs), options, "reference", shard)
    reference = _reference(folder, inputs, feats, whole=False)
    return ReferenceShare(reference, shard, feats.n_listed, [s.path for s in feats.skipped])


def _distinct(inputs: Mapping[str, Any]) -> list[Any]:
    """Each extractor once (a host's serves the inputs it hosts; inputs that chose one model share it)."""
    return list({id(extractor): extractor for extractor in inputs.values()}.values())


def _reference(folder: str, inputs: Mapping[str, Any], feats: Any, whole: bool = True) -> Reference:
    """A Reference of extracted features: of each extractor, the outputs references keep of the inputs it serves
    here (sdeval.features.inputs: Inception's pool features, not its logits; sFID's spatial rows where asked), and
    the Fréchet state of each output that declares one (an empty share holds no arrays, a share no state)."""
    features: dict[str, dict[str, np.ndarray]] = {}
    states: dict[str, FrechetState] = {}
    state_rows: dict[str, tuple[str, str]] = {}
    extractors = _distinct(inputs)
    for extractor in extractors:
        served = [name for name, e in inputs.items() if e is extractor]
        arrays = feats.features[extractor.cache_key]
        kept = feature_inputs.reference_outputs(served)
        features[extractor.cache_key] = {o.feature: arrays[o.feature] for o in kept if o.feature in arrays}
        for output in kept:
            if whole and output.frechet and output.feature in arrays:
                states[output.state] = FrechetState.from_features(arrays[output.feature])
                state_rows[output.state] = (extractor.cache_key, output.feature)
    return Reference(
        protocols={e.cache_key: e.protocol() for e in extractors},
        features=features,
        fid_state=states.pop(POOL_STATE, None),
        n=feats.n,
        images_hash=images_hash(feats.paths, feats.hashes),
        source=str(Path(folder)),
        image_hashes=list(feats.hashes),
        image_paths=list(feats.paths),
        frechet=states,
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
    ordered = {name: built[name] for name in always} | built
    reference = reference_from_folder(images, ordered, options)
    # Each input's own outputs (a host is built, so listed, with the inputs it hosts): each rows' radii once.
    knn_rows = [(e.cache_key, o.feature) for name, e in ordered.items()
                for o in feature_inputs.get(name).arrays if o.knn_radii]  # fmt: skip
    store_derived(reference, knn_rows, radii_k)
    save_reference(out, reference)
    return reference


def load_any_reference(
    source: str, needs: list[ReferenceNeed], options: FeatureOptions, route: str | None = None
) -> Reference:
    """A reference from a folder (features extracted now) or a file (each extractor's protocol checked): an sdeval
    reference file, or Fréchet statistics (mu, sigma) whose protocol `route` (--reference-protocol) or their sidecar
    declares (sdeval.reference.stats).

    `needs` names each feature input whose rows the metrics need, with its extractor and the hint shown when a
    reference file holds none of that kind.
    """
    from sdeval.reference.stats import is_stats_file, load_stats_reference  # stats imports this module: at call time

    if Path(source).is_dir():
        return reference_from_folder(source, {need.name: need.extractor for need in needs}, options)
    if route is not None and not is_stats_file(source):
        raise SdevalError(f"--reference-protocol: only for a statistics file (mu, sigma); {source} says its own")
    reference = load_stats_reference(source, route) if is_stats_file(source) else load_reference(source)
    for need in needs:
        require_features(reference, need.extractor.protocol(), need.extractor.cache_key, need.hint)
    return reference
