"""Feature cache, reference files, protocol checks and shard merging."""

from __future__ import annotations

import hashlib
import multiprocessing
import sqlite3

import numpy as np
import pytest
from conftest import warm_copy

from sdeval.core.errors import ProtocolMismatchError, SdevalError
from sdeval.features.cache import FeatureCache
from sdeval.reference import load_reference, merge_references, save_reference
from sdeval.reference.build import build_reference_file
from sdeval.score import FeatureOptions, ScoreOptions, score


def _features(weights, cache_dir=None, **kwargs):
    return FeatureOptions(inception_weights=weights, cache_dir=cache_dir, workers=0, progress=False, **kwargs)


def test_warm_cache_runs_no_model_and_gives_identical_results(
    tmp_path, inception_weights, image_sets, image_sets_cache
):
    """The cold run is the one that filled the shared cache (the same options); the warm one reads a copy of it."""
    cache = warm_copy(image_sets_cache, tmp_path / "cache")
    options = ScoreOptions(
        image_sets["gen"], image_sets["ref"], kid_subset_size=20, features=_features(inception_weights, cache)
    )
    cold = image_sets_cache["cold"]
    warm = score(options)
    assert cold["images"]["n_computed"] == 40
    assert warm["images"]["n_computed"] == 0
    assert warm["cells"][0]["metrics"] == cold["cells"][0]["metrics"]


_WARM_RUN = """
import sys
from sdeval.score import FeatureOptions, ScoreOptions, score
features = FeatureOptions(inception_weights=sys.argv[3], cache_dir=sys.argv[4], workers=0, progress=False)
result = score(ScoreOptions(sys.argv[1], sys.argv[2], kid_subset_size=20, features=features))
libraries = ("torch_fidelity", "open_clip", "transformers", "diffusers")
print(result["images"]["n_computed"], *[name for name in libraries if name in sys.modules])
"""


def test_a_warm_run_imports_no_model_library(tmp_path, inception_weights, image_sets, image_sets_cache):
    """Every feature cached (the reference's too): no network is built and torch-fidelity is never imported (in a
    fresh process: this one has imported it)."""
    import subprocess
    import sys

    args = [image_sets["gen"], image_sets["ref"], inception_weights, str(warm_copy(image_sets_cache, tmp_path / "c"))]
    done = subprocess.run([sys.executable, "-c", _WARM_RUN, *args], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["0"]


def _writer(directory, worker, count):
    cache = FeatureCache(directory)
    for i in range(count):
        cache.put_many([(f"h{worker}-{i}", {"pool": np.full(2048, worker + i, np.float32)})], "key")
    cache.close()


def test_two_processes_sharing_a_cache_never_corrupt_it(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(tmp_path, w, 60)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    cache = FeatureCache(tmp_path)
    found = cache.get_many([f"h{w}-{i}" for w in range(2) for i in range(60)], "key")
    assert len(found) == 120
    assert all(found[f"h1-{i}"]["pool"][0] == 1 + i for i in range(60))
    assert sqlite3.connect(tmp_path / "features.sqlite3").execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_reference_file_gives_the_same_scores_as_the_folder(tmp_path, inception_weights, image_sets, image_sets_cache):
    cache = warm_copy(image_sets_cache, tmp_path / "cache")
    ref_file = tmp_path / "ref.npz"
    build_reference_file(image_sets["ref"], str(ref_file), _features(inception_weights, cache))
    kwargs = {"kid_subset_size": 20, "features": _features(inception_weights, cache)}
    from_folder = score(ScoreOptions(image_sets["gen"], image_sets["ref"], **kwargs))
    from_file = score(ScoreOptions(image_sets["gen"], str(ref_file), **kwargs))
    assert from_file["cells"][0]["metrics"] == from_folder["cells"][0]["metrics"]
    assert from_file["reference"]["images_sha256"] == from_folder["reference"]["images_sha256"]


def test_reference_with_another_protocol_names_the_field(tmp_path, inception_weights, image_sets):
    ref_file = tmp_path / "clean.npz"
    build_reference_file(image_sets["ref"], str(ref_file), _features(inception_weights, tmp_path, preprocess="clean"))
    with pytest.raises(ProtocolMismatchError, match="preprocess is 'clean' there but 'legacy' here"):
        score(ScoreOptions(image_sets["gen"], str(ref_file), metrics=("fid",), features=_features(inception_weights)))


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 not really a zip", b"\x93NUMPY garbage"])
def test_unreadable_reference_file_is_a_clear_error(tmp_path, content):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(SdevalError, match="reference file"):
        load_reference(path)


def test_merged_shard_references_equal_the_whole(tmp_path, inception_weights, image_sets, image_sets_cache):
    import shutil
    from pathlib import Path

    files = sorted(Path(image_sets["ref"]).glob("*.png"))
    for shard, part in enumerate([files[:13], files[13:29], files[29:]]):
        (tmp_path / f"s{shard}").mkdir()
        for f in part:
            shutil.copy(f, tmp_path / f"s{shard}" / f.name)
    opts = _features(inception_weights, warm_copy(image_sets_cache, tmp_path / "cache"))
    parts = [build_reference_file(str(tmp_path / f"s{s}"), str(tmp_path / f"s{s}.npz"), opts) for s in (2, 0, 1)]
    result = merge_references(parts, "merged")
    assert result.warnings == []
    save_reference(tmp_path / "merged.npz", result.reference)
    kwargs = {"metrics": ("fid", "kid"), "kid_subset_size": 20, "features": opts}
    whole = score(ScoreOptions(image_sets["gen"], image_sets["ref"], **kwargs))
    sharded = score(ScoreOptions(image_sets["gen"], str(tmp_path / "merged.npz"), **kwargs))
    assert sharded["reference"]["n"] == 40
    # The shards are flat, so their relative paths are the folder's: the merge knows the same image set ...
    assert sharded["reference"]["images_sha256"] == whole["reference"]["images_sha256"]
    assert result.reference.image_paths == [f.name for f in files]
    assert result.reference.image_hashes == [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]
    assert sharded["cells"][0]["metrics"]["fid"]["value"] == pytest.approx(
        whole["cells"][0]["metrics"]["fid"]["value"], rel=1e-9
    )
    # ... and holds its rows in the folder's order, so KID draws the same subsets and gives the same value.
    assert sharded["cells"][0]["metrics"]["kid"] == whole["cells"][0]["metrics"]["kid"]
