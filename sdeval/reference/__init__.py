"""Reference statistics: the reference file format and merging (files.py), building one from images (build.py),
the defined reference sets such as COCO (sets.py), and `sdeval reference` (command.py)."""

from sdeval.reference.files import (
    FORMAT,
    FORMAT_VERSION,
    MergeResult,
    Reference,
    check_protocol,
    first_difference,
    images_hash,
    load_reference,
    merge_references,
    npz_bytes,
    require_features,
    save_reference,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MergeResult",
    "Reference",
    "check_protocol",
    "first_difference",
    "images_hash",
    "load_reference",
    "merge_references",
    "npz_bytes",
    "require_features",
    "save_reference",
]
