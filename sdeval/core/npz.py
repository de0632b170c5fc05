"""Deterministic .npz bytes: what np.savez writes, without the wall-clock timestamps it puts in the zip, so the same
arrays always give the same file (reference files, feature states, parts)."""

from __future__ import annotations

import io
import zipfile

import numpy as np

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed, so that saving the same arrays twice gives the same bytes


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """What np.savez writes, minus the wall-clock timestamps it puts in the zip."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, values in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.external_attr = 0o600 << 16
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(values), allow_pickle=False)
    return buffer.getvalue()
