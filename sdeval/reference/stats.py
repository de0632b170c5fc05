"""References given as Fréchet statistics: an .npz of `mu` [d] and `sigma` [d, d], as pytorch-fid writes them
(`--save-stats`), as clean-fid keeps its reference statistics, and as MLPerf Inference ships COCO-2014's
(`text_to_image/tools/val2014.npz`).

Such a file holds neither images nor features: only FID can be computed against it (KID, precision/recall, CMMD
and the other reference metrics need per-image features), and nothing in it says how the features were made. So the
protocol is what the user declares, by `--reference-protocol ROUTE` (score.reference_protocol in a bench config) or
by a sidecar JSON beside the file, `STATS.npz.json`: `{"preprocess": ROUTE, "weights_sha256": ..., "n": ...}`
(`weights_sha256` defaults to the standard Inception weights', `n`, the number of reference images, to unknown).
The declaration is recorded with the results (`protocol.reference_declared`, which FID binds), and the run's
Inception extractor must match it, or FID is refused as incomparable.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from sdeval.core.errors import SdevalError
from sdeval.core.hashing import file_sha256
from sdeval.features.inception import EXTRACTOR_NAME, INPUT_SIZE, PREPROCESS_MODES, STANDARD_WEIGHTS_SHA256
from sdeval.metrics.fid import FrechetState
from sdeval.reference.files import Reference

#: The metrics a statistics file can serve.
STATS_METRICS = ("fid",)
#: The protocol block the declaration is recorded in (the `reference` block is closed by the results schema).
DECLARED_BLOCK = "reference_declared"
SIDECAR_SUFFIX = ".json"
DECLARED_KEYS = ("preprocess", "weights_sha256", "n", "source")
#: The Fréchet state needs a count; FID does not depend on it. Where the declaration gives none, this nominal one is
#: used for the arithmetic and the reference's n is recorded as 0 (unknown).
_NOMINAL_N = 2**20


def sidecar_path(path: str | Path) -> Path:
    return Path(f"{path}{SIDECAR_SUFFIX}")


def is_stats_file(path: str | Path) -> bool:
    """Whether `path` is an .npz of Fréchet statistics (`mu` and `sigma`, no sdeval `meta`)."""
    file = Path(path)
    if not file.is_file() or file.suffix.lower() != ".npz":
        return False
    try:
        with np.load(file, allow_pickle=False) as data:
            names = set(data.files)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return False
    return "meta" not in names and {"mu", "sigma"} <= names


def refuse_other_metrics(path: str | Path, names: list[str]) -> None:
    """SdevalError naming each requested metric that needs more of a reference than its Fréchet statistics."""
    others = [name for name in names if name not in STATS_METRICS]
    if others:
        raise SdevalError(
            f"--reference {path} holds Fréchet statistics (mu, sigma) only, which give FID alone: "
            f"{', '.join(others)} need{'s' if len(others) == 1 else ''} the reference's per-image features; build a "
            "reference from its images with `sdeval reference build`, or ask for fid only"
        )


def declared_protocol(path: str | Path, route: str | None) -> dict[str, Any]:
    """What the user declares the statistics were made with: `route` (--reference-protocol) and/or the sidecar JSON;
    both given, they must agree. Returns {preprocess, weights_sha256, n, source, declared_by}."""
    sidecar = sidecar_path(path)
    declared: dict[str, Any] = {}
    if sidecar.is_file():
        try:
            declared = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise SdevalError(f"{sidecar}: not readable JSON ({err})") from None
        if not isinstance(declared, dict):
            raise SdevalError(f"{sidecar}: expected a JSON object with {', '.join(DECLARED_KEYS)}")
        unknown = sorted(set(declared) - set(DECLARED_KEYS))
        if unknown:
            raise SdevalError(f"{sidecar}: unknown key {unknown[0]!r} (known: {', '.join(DECLARED_KEYS)})")
    if route is not None and declared.get("preprocess") not in (None, route):
        raise SdevalError(
            f"--reference-protocol {route} disagrees with {sidecar.name}, which declares preprocess "
            f"{declared['preprocess']!r}"
        )
    preprocess = route if route is not None else declared.get("preprocess")
    if preprocess is None:
        raise SdevalError(
            f"--reference {path} holds Fréchet statistics, which do not say how their features were made: declare the "
            f"Inception route with --reference-protocol ({' | '.join(PREPROCESS_MODES)}; score.reference_protocol in "
            f"a bench config) or in {sidecar.name} beside it"
        )
    if preprocess not in PREPROCESS_MODES:
        raise SdevalError(f"{path}: declared preprocess {preprocess!r} is not one of {', '.join(PREPROCESS_MODES)}")
    weights = declared.get("weights_sha256", STANDARD_WEIGHTS_SHA256)
    n = declared.get("n")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 2):
        raise SdevalError(f"{sidecar}: n: expected the number of reference images (an integer >= 2), got {n!r}")
    by = [*(["--reference-protocol"] if route is not None else []), *([sidecar.name] if sidecar.is_file() else [])]
    return {
        "preprocess": preprocess,
        "weights_sha256": weights,
        "n": n,
        "source": declared.get("source"),
        "declared_by": " and ".join(by),
    }


def inception_protocol(declared: dict[str, Any]) -> dict[str, Any]:
    """The Inception extractor protocol the declaration stands for (InceptionExtractor.protocol's fields)."""
    return {
        "extractor": EXTRACTOR_NAME,
        "weights_sha256": declared["weights_sha256"],
        "preprocess": declared["preprocess"],
        "input_size": INPUT_SIZE,
    }


def load_stats_reference(path: str | Path, route: str | None) -> Reference:
    """A Reference from a statistics file: its Fréchet state rebuilt from mu and sigma (sigma as numpy.cov makes it,
    n - 1 in the denominator), the declared protocol under the Inception cache key it stands for, no features."""
    declared = declared_protocol(path, route)
    try:
        with np.load(path, allow_pickle=False) as data:
            mu = np.asarray(data["mu"], np.float64)
            sigma = np.asarray(data["sigma"], np.float64)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as err:
        raise SdevalError(f"{path}: not a readable statistics file ({err})") from None
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
        raise SdevalError(f"{path}: expected mu [d] and sigma [d, d], got {list(mu.shape)} and {list(sigma.shape)}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise SdevalError(f"{path}: mu or sigma holds NaN or infinite values")
    n = declared["n"] or _NOMINAL_N
    state = FrechetState(n, n * mu, (n - 1) * sigma + n * np.outer(mu, mu))
    protocol = inception_protocol(declared)
    key = f"inception-v3-compat:{protocol['weights_sha256']}:{protocol['preprocess']}"
    return Reference(
        protocols={key: protocol},
        features={key: {}},
        fid_state=state,
        n=declared["n"] or 0,
        images_hash=file_sha256(path),  # the statistics are all there is to identify the set by
        source=str(path),
        declared={"kind": "frechet-statistics", **{k: v for k, v in declared.items() if k != "n"}},
    )
