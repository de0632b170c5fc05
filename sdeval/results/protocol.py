"""Which protocol fields make two results incomparable, and which only inform: declared once, used by every
comparison (the report, the gate, paired statistics).

A cell's protocol is a nested dict (see docs/formats.md, "Results"). Fields are named by dotted paths; a
pattern's `*` matches one path segment. A field that moves the numbers (the extractor, its weights, the
preprocessing, the reference, the suite, the judge and its thresholds, metric parameters) is *binding*:
two cells that differ in one are never compared silently. A field that records where or with what the
numbers were made (device, library versions, thread count, timing) is *informative*: a difference is
shown, never an error. Every other field is binding: new fields are safe by default.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from sdeval.metrics import registry

#: Fields that only inform; everything else in a protocol is binding.
INFORMATIVE: tuple[str, ...] = (
    "*.open_clip_version",
    "*.*.open_clip_version",
    "device",
    "versions.*",
    "torch_threads",
    "seconds",
    "decode",
    "metrics",
    "reference.source",
    "suite.path",
    "suite.prompts",
    "judge.specs.path",  # where the suite file lies; its id, version and sha256 stay binding
    "prompts.*",
    "preset.*",  # a peer protocol's name and expansion: the options it set are recorded, binding, where they belong
    "preset.*.*",
)

#: Binding fields, listed so the docs can name them (the rule above already makes them binding).
BINDING: tuple[str, ...] = (
    "inception.extractor",
    "inception.weights_sha256",
    "inception.preprocess",
    "inception.input_size",
    "clip.model",
    "clip.pretrained",
    "clip.weights_sha256",
    "clip.quick_gelu",
    "clip.preprocess",
    "cmmd.clip.*",
    "cmmd.sigma",
    "cmmd.scale",
    "cmmd.estimator",
    "reference.images_sha256",
    "suite.id",
    "suite.version",
    "judge.*",
    "kid.subsets",
    "kid.subset_size",
    "is.splits",
    "pr.k",
    "rprecision.r",
    "seed",
)


def flatten(protocol: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{dotted path: leaf value} of a nested protocol dict (lists are leaves)."""
    out: dict[str, Any] = {}
    for key, value in protocol.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{path}."))
        else:
            out[path] = value
    return out


def is_informative(path: str) -> bool:
    return any(fnmatchcase(path, pattern) and pattern.count(".") == path.count(".") for pattern in INFORMATIVE)


def differences(a: dict[str, Any], b: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(binding, informative) dotted paths whose values differ between two protocols, sorted."""
    flat_a, flat_b = flatten(a), flatten(b)
    binding, informative = [], []
    for path in sorted(set(flat_a) | set(flat_b)):
        if flat_a.get(path) != flat_b.get(path):
            (informative if is_informative(path) else binding).append(path)
    return binding, informative


def binds(path: str, key: str) -> bool:
    """Whether binding field `path` moves the numbers of result key `key`. A field in a protocol block that the key's
    metric declares (its own block, its inputs', the fields it `binds`: sdeval.metrics.registry) does; a field in
    blocks only other metrics declare does not (two runs that differ only in the FID reference stay comparable for
    adherence); a field in no metric's block binds every key, and every field binds a key the registry does not
    know, so new fields stay safe."""
    spec = registry.spec_of_key(key)
    if spec is None:
        return True
    block = path.split(".", 1)[0]
    return block in spec.protocol_blocks or block not in registry.claimed_blocks()


def describe(a: dict[str, Any], b: dict[str, Any], path: str) -> str:
    """`path: X vs Y` for a message that names what differs."""
    return f"{path}: {flatten(a).get(path)!r} vs {flatten(b).get(path)!r}"
