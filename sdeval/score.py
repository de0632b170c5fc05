"""`sdeval score` and `sdeval reference build`: folder -> features -> metrics -> results dict."""

from __future__ import annotations

import platform
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sdeval import __version__
from sdeval.errors import SdevalError
from sdeval.features.cache import FeatureCache
from sdeval.features.extract import FolderFeatures, extract_folder
from sdeval.features.inception import LOGITS, POOL, InceptionExtractor
from sdeval.metrics.fid import FrechetState, fid_from_states
from sdeval.metrics.inception_score import inception_score
from sdeval.metrics.kid import kid
from sdeval.metrics.precision_recall import precision_recall
from sdeval.reference import Reference, check_protocol, images_hash, load_reference, save_reference

INCEPTION_METRICS = ("fid", "kid", "is", "pr")
TWO_SET_METRICS = ("fid", "kid", "pr")
DEFAULT_METRICS = ("fid", "kid", "is", "pr")
IS_SPLITS = 10
PR_NEIGHBOURHOOD = 3


@dataclass(frozen=True)
class FeatureOptions:
    """How images become features: everything here is part of the protocol or of the speed."""

    preprocess: str = "legacy"
    inception_weights: str | None = None
    batch_size: int = 32
    workers: int = 1
    device: str = "auto"
    cache_dir: str | None = None  # None: no cache
    progress: bool = True


@dataclass(frozen=True)
class ScoreOptions:
    images: str
    reference: str | None = None
    metrics: tuple[str, ...] = DEFAULT_METRICS
    kid_subset_size: int | None = None  # None: min(1000, n)
    kid_subsets: int = 100
    seed: int = 2020  # torch-fidelity's default, so default KID subsets and IS splits match it
    features: FeatureOptions = FeatureOptions()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SdevalError("--device cuda was asked for, but no CUDA device is available")
    if name != "cpu" and not name.startswith("cuda"):
        raise SdevalError(f"--device must be auto, cpu or cuda[:N], got {name!r}")
    return torch.device(name)


def build_inception(options: FeatureOptions) -> InceptionExtractor:
    return InceptionExtractor(options.inception_weights, options.preprocess, resolve_device(options.device))


def extract(folder: str, extractors: list, options: FeatureOptions, label: str) -> FolderFeatures:
    cache = FeatureCache(options.cache_dir) if options.cache_dir else None
    try:
        return extract_folder(
            folder,
            extractors,
            batch_size=options.batch_size,
            workers=options.workers,
            cache=cache,
            progress=options.progress,
            label=label,
        )
    finally:
        if cache is not None:
            cache.close()


def reference_from_folder(folder: str, inception: InceptionExtractor, options: FeatureOptions) -> Reference:
    feats = extract(folder, [inception], options, "reference")
    pool = feats.features[inception.cache_key][POOL]
    return Reference(
        protocols={inception.cache_key: inception.protocol()},
        features={inception.cache_key: {POOL: pool}},
        fid_state=FrechetState.from_features(pool),
        n=feats.n,
        images_hash=images_hash(feats.paths, feats.hashes),
        source=str(Path(folder)),
    )


def build_reference_file(images: str, out: str, options: FeatureOptions) -> Reference:
    """`sdeval reference build`: features and Fréchet state of a folder, written to `out`."""
    inception = build_inception(options)
    reference = reference_from_folder(images, inception, options)
    save_reference(out, reference)
    return reference


def load_any_reference(source: str, inception: InceptionExtractor, options: FeatureOptions) -> Reference:
    """A reference from a folder (features extracted now) or a file (protocol checked)."""
    if Path(source).is_dir():
        return reference_from_folder(source, inception, options)
    reference = load_reference(source)
    if inception.cache_key not in reference.protocols:
        protocols = list(reference.protocols.values())
        if protocols:
            check_protocol(inception.protocol(), protocols[0], f"reference {source}")
        raise SdevalError(f"reference {source} holds no Inception features")
    return reference


def score(options: ScoreOptions) -> dict[str, Any]:
    """Score a folder; returns the results document (see README, "Results JSON")."""
    started = time.time()
    unknown = [m for m in options.metrics if m not in INCEPTION_METRICS]
    if unknown:
        raise SdevalError(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(INCEPTION_METRICS)}")
    needs_reference = [m for m in options.metrics if m in TWO_SET_METRICS]
    if needs_reference and options.reference is None:
        raise SdevalError(f"--reference is required for {', '.join(needs_reference)}")
    inception = build_inception(options.features)
    reference = load_any_reference(options.reference, inception, options.features) if options.reference else None
    generated = extract(options.images, [inception], options.features, "images")
    gen = generated.features[inception.cache_key]

    metrics: dict[str, Any] = {}
    warns: list[str] = []
    for name in options.metrics:
        try:
            metrics.update(_compute(name, gen, reference, inception.cache_key, options, warns))
        except SdevalError as err:  # too few images and the like: listed, not fatal
            for key in _result_keys(name):
                metrics[key] = {"value": None, "skipped": str(err)}

    protocol = {
        "inception": inception.protocol(),
        "metrics": list(options.metrics),
        "kid": {"subsets": options.kid_subsets, "subset_size": _kid_subset_size(options, gen, reference)},
        "is": {"splits": IS_SPLITS},
        "pr": {"k": PR_NEIGHBOURHOOD},
        "seed": options.seed,
        "decode": "8-bit RGB, first frame, no EXIF rotation, alpha dropped, 16-bit scaled by 1/257",
    }
    return {
        "sdeval_version": __version__,
        "images": {
            "root": generated.root,
            "n_scored": generated.n,
            "n_computed": generated.n_computed,
            "images_sha256": images_hash(generated.paths, generated.hashes),
            "skipped": [s.to_json() for s in generated.skipped],
        },
        "reference": reference.identity() if reference else None,
        "metrics": metrics,
        "warnings": warns,
        "protocol": protocol,
        "environment": environment(inception.device, time.time() - started),
    }


def _result_keys(name: str) -> tuple[str, ...]:
    return ("precision", "recall") if name == "pr" else (name,)


def _kid_subset_size(options: ScoreOptions, gen: dict, reference: Reference | None) -> int | None:
    if options.kid_subset_size is not None:
        return options.kid_subset_size
    if reference is None:
        return None
    return min(1000, len(gen[POOL]), reference.n)


def _compute(name, gen, reference, key, options, warns) -> dict[str, Any]:
    if name == "is":
        mean, std = inception_score(gen[LOGITS], IS_SPLITS, options.seed)
        return {"is": {"value": mean, "std": std}}
    real = reference.features[key][POOL]
    if name == "fid":
        state = FrechetState.from_features(gen[POOL])
        ref_state = reference.fid_state or FrechetState.from_features(real)
        small = min(state.n, ref_state.n)
        if small < state.dim:
            warns.append(
                f"FID: {small} images is fewer than the {state.dim} feature dimensions; the covariance is "
                "rank-deficient and FID is biased upward. Use at least 2048 images per set (10k+ to compare)."
            )
            warnings.warn(warns[-1], stacklevel=2)
        return {"fid": {"value": fid_from_states(state, ref_state), "n": state.n, "n_reference": ref_state.n}}
    if name == "kid":
        size = _kid_subset_size(options, gen, reference)
        mean, std = kid(gen[POOL], real, options.kid_subsets, size, options.seed)
        return {"kid": {"value": mean, "std": std, "subset_size": size, "subsets": options.kid_subsets}}
    if name == "pr":
        precision, recall = precision_recall(gen[POOL], real, PR_NEIGHBOURHOOD)
        return {"precision": {"value": precision}, "recall": {"value": recall}}
    raise SdevalError(f"unknown metric {name!r}")


def environment(device: torch.device, seconds: float) -> dict[str, Any]:
    import torch_fidelity

    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_fidelity": torch_fidelity.__version__,
        "numpy": np.__version__,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "seconds": round(seconds, 3),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env
