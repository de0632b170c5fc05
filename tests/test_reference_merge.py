"""`sdeval reference merge`: overlap checks, order invariance, per-image identity, old files, protocol errors."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import warm_copy

from sdeval.cli import main
from sdeval.core.errors import ProtocolMismatchError, SdevalError
from sdeval.metrics.fid import FrechetState
from sdeval.metrics.kid import kid
from sdeval.reference import (
    FORMAT_VERSION,
    Reference,
    images_hash,
    load_reference,
    merge_references,
    save_reference,
)
from sdeval.reference.build import build_reference_file
from sdeval.score import FeatureOptions

SPLIT = 17  # images in the first shard; the other 23 go to the second


def _options(weights: str, cache: Path, **kwargs) -> FeatureOptions:
    return FeatureOptions(inception_weights=weights, cache_dir=str(cache), workers=0, progress=False, **kwargs)


@pytest.fixture(scope="module")
def built(tmp_path_factory, inception_weights, image_sets, image_sets_cache) -> dict:
    """Reference files of the whole reference folder and of two flat shards of it (one feature cache, which holds
    the folder's features from the start)."""
    root = tmp_path_factory.mktemp("merge")
    files = sorted(Path(image_sets["ref"]).glob("*.png"))
    options = _options(inception_weights, warm_copy(image_sets_cache, root / "cache"))
    out = {"root": root, "options": options, "files": files, "whole": root / "whole.npz"}
    build_reference_file(image_sets["ref"], str(out["whole"]), options)
    for name, part in (("a", files[:SPLIT]), ("b", files[SPLIT:])):
        (root / name).mkdir()
        for f in part:
            shutil.copy(f, root / name / f.name)
        out[name] = root / f"{name}.npz"
        build_reference_file(str(root / name), str(out[name]), options)
    return out


def _merge(*args):
    return CliRunner().invoke(main, ["reference", "merge", *[str(a) for a in args]])


def _error_line(result) -> str:
    """The single line a failed command prints: exit code 2, no traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_merge_is_order_invariant_and_equals_the_whole(built):
    ab, ba = built["root"] / "ab.npz", built["root"] / "ba.npz"
    assert _merge(built["a"], built["b"], "-o", ab).exit_code == 0
    assert _merge(built["b"], built["a"], "-o", ba).exit_code == 0
    # Same bytes whatever the order (the file names its own path as source, so compare with the same one).
    again = built["root"] / "again.npz"
    assert _merge(built["b"], built["a"], "-o", again).exit_code == 0
    first = again.read_bytes()
    assert _merge(built["a"], built["b"], "-o", again).exit_code == 0
    assert again.read_bytes() == first

    whole, merged, reverse = load_reference(built["whole"]), load_reference(ab), load_reference(ba)
    assert merged.n == reverse.n == whole.n == 40
    assert merged.image_paths == reverse.image_paths == whole.image_paths
    assert merged.image_hashes == reverse.image_hashes == whole.image_hashes
    assert merged.images_hash == reverse.images_hash == whole.images_hash
    (key,) = whole.features
    for name in whole.features[key]:
        np.testing.assert_array_equal(merged.features[key][name], whole.features[key][name])
        np.testing.assert_array_equal(reverse.features[key][name], whole.features[key][name])
    assert merged.fid_state.n == whole.fid_state.n == 40
    np.testing.assert_array_equal(merged.fid_state.sum, reverse.fid_state.sum)
    np.testing.assert_array_equal(merged.fid_state.sum_outer, reverse.fid_state.sum_outer)
    np.testing.assert_allclose(merged.fid_state.sum, whole.fid_state.sum, rtol=1e-9)
    np.testing.assert_allclose(merged.fid_state.sum_outer, whole.fid_state.sum_outer, rtol=1e-9, atol=1e-9)

    # KID against the merged file, in either order, is KID against the whole folder (same rows, same subsets).
    (name,) = whole.features[key]
    probe = load_reference(built["a"]).features[key][name]
    values = [kid(probe, ref.features[key][name], subsets=20, subset_size=15) for ref in (whole, merged, reverse)]
    assert values[0] == values[1] == values[2]


def test_merging_a_file_with_itself_names_it_and_the_count(built):
    out = built["root"] / "twice.npz"
    line = _error_line(_merge(built["a"], built["a"], "-o", out))
    assert f"{built['a']} (part 1) and {built['a']} (part 2) share {SPLIT} images" in line
    assert "--allow-duplicates" in line
    assert not out.exists()


def test_merging_a_merged_file_with_one_of_its_parts_fails(built):
    merged, out = built["root"] / "ab-for-overlap.npz", built["root"] / "abb.npz"
    assert _merge(built["a"], built["b"], "-o", merged).exit_code == 0
    line = _error_line(_merge(merged, built["b"], "-o", out))
    assert f"{merged} (part 1) and {built['b']} (part 2) share {40 - SPLIT} images" in line
    assert not out.exists()


def test_allow_duplicates_keeps_every_copy(built):
    out = built["root"] / "aa.npz"
    result = _merge(built["a"], built["a"], "--allow-duplicates", "-o", out)
    assert result.exit_code == 0, result.output
    assert f"({2 * SPLIT} images from 2 parts)" in result.stdout
    assert "warning:" in result.stderr and f"share {SPLIT} images" in result.stderr
    doubled, single = load_reference(out), load_reference(built["a"])
    assert doubled.n == doubled.fid_state.n == 2 * SPLIT
    np.testing.assert_array_equal(doubled.fid_state.sum, 2 * single.fid_state.sum)
    assert sorted(doubled.image_hashes) == sorted(single.image_hashes * 2)


def _write_version_1(path: Path, reference: Reference) -> None:
    """A reference file as sdeval wrote it before per-image identity (format version 1)."""
    meta = {
        "format": "sdeval-reference",
        "format_version": 1,
        "sdeval_version": "0.1.0",
        "n": reference.n,
        "images_sha256": reference.images_hash,
        "source": reference.source,
        "extractors": [{"cache_key": k, "protocol": p} for k, p in reference.protocols.items()],
    }
    arrays = {"meta": np.array(json.dumps(meta))}
    arrays |= {"fid_n": np.array(reference.fid_state.n, np.int64), "fid_sum": reference.fid_state.sum}
    arrays["fid_sum_outer"] = reference.fid_state.sum_outer
    for index, key in enumerate(reference.features):
        for name, values in reference.features[key].items():
            arrays[f"feat__{index}__{name}"] = values
    np.savez(path, **arrays)


def test_version_1_file_loads_and_merging_it_warns_that_overlap_cannot_be_checked(built):
    old = built["root"] / "a-v1.npz"
    _write_version_1(old, load_reference(built["a"]))
    loaded = load_reference(old)
    assert loaded.image_hashes is None and loaded.image_paths is None
    assert loaded.n == SPLIT and loaded.images_hash == load_reference(built["a"]).images_hash

    out = built["root"] / "v1-merged.npz"
    result = _merge(old, built["b"], "-o", out)
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr and str(old) in result.stderr and "cannot be checked" in result.stderr
    merged = load_reference(out)
    assert merged.n == 40 and merged.image_hashes is None  # identity of the whole is unknown
    # A version-1 file named twice is still caught: the same images hash means the same image set.
    line = _error_line(_merge(old, old, "-o", built["root"] / "v1-twice.npz"))
    assert f"share {SPLIT} images" in line


def test_a_newer_format_version_is_a_clear_error(built, tmp_path):
    with np.load(built["a"], allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    meta = json.loads(str(arrays["meta"]))
    newer = FORMAT_VERSION + 1
    arrays["meta"] = np.array(json.dumps(meta | {"format_version": newer}))
    np.savez(tmp_path / "future.npz", **arrays)
    with pytest.raises(SdevalError, match=f"format version {newer} was written by a newer sdeval"):
        load_reference(tmp_path / "future.npz")


def test_mismatched_protocols_name_the_field_and_both_files(built, tmp_path):
    clean = tmp_path / "b-clean.npz"
    folder = tmp_path / "few"
    folder.mkdir()
    for f in built["files"][SPLIT : SPLIT + 3]:  # a few images: the clean protocol extracts them anew
        shutil.copy(f, folder / f.name)
    options = built["options"]
    build_reference_file(
        str(folder), str(clean), _options(options.inception_weights, options.cache_dir, preprocess="clean")
    )
    line = _error_line(_merge(built["a"], clean, "-o", tmp_path / "out.npz"))
    assert "preprocess is 'clean' in " + str(clean) + " but 'legacy' in " + str(built["a"]) in line


def test_missing_and_extra_extractors_are_named(built, tmp_path):
    part = load_reference(built["b"])
    part.protocols["clip-image-test"] = {"extractor": "clip-image", "model": "tiny"}
    part.features["clip-image-test"] = {"embedding": np.zeros((part.n, 4), np.float32)}
    extra = tmp_path / "b-clip.npz"
    save_reference(extra, part)
    line = _error_line(_merge(built["a"], extra, "-o", tmp_path / "out.npz"))
    assert f"{extra} holds clip-image features (cache key clip-image-test) that {built['a']} lacks" in line
    line = _error_line(_merge(extra, built["a"], "-o", tmp_path / "out.npz"))
    assert f"{built['a']} lacks the clip-image features (cache key clip-image-test) of {extra}" in line


# Library-level cases on small hand-made references: no model needed.


def _fake(contents: list[str], source: str, dim: int = 3) -> Reference:
    """A reference whose image i has path `<content>.png`, the sha256 of `content` and features seeded by it."""
    hashes = [hashlib.sha256(c.encode()).hexdigest() for c in contents]
    paths = [f"{c}.png" for c in contents]
    pool = np.stack([np.random.default_rng(int(h[:8], 16)).normal(size=dim) for h in hashes]).astype(np.float32)
    protocol = {"extractor": "inception", "preprocess": "legacy"}
    return Reference(
        {"inception": protocol},
        {"inception": {"pool": pool}},
        FrechetState.from_features(pool),
        len(contents),
        images_hash(paths, hashes),
        source,
        hashes,
        paths,
    )


def test_a_repeat_inside_one_part_is_allowed():
    result = merge_references([_fake(["x", "x", "y"], "p1"), _fake(["z"], "p2")], "out")
    assert result.warnings == [] and result.reference.n == 4


def test_three_parts_merge_the_same_in_every_order_and_grouping():
    parts = [_fake(["c", "a"], "p1"), _fake(["e", "b", "f"], "p2"), _fake(["d"], "p3")]
    results = [merge_references([parts[i] for i in order], "out").reference for order in ([0, 1, 2], [2, 0, 1])]
    nested = merge_references([merge_references(parts[:2], "p12").reference, parts[2]], "out").reference
    for merged in [*results[1:], nested]:
        np.testing.assert_array_equal(merged.features["inception"]["pool"], results[0].features["inception"]["pool"])
        assert merged.image_paths == ["a.png", "b.png", "c.png", "d.png", "e.png", "f.png"]
        assert merged.images_hash == results[0].images_hash
    np.testing.assert_array_equal(results[0].fid_state.sum_outer, results[1].fid_state.sum_outer)
    assert results[0].images_hash == _fake(["a", "b", "c", "d", "e", "f"], "whole").images_hash


def test_overlap_names_every_pair_of_parts_that_share_images():
    parts = [_fake(["a", "b"], "p1"), _fake(["c"], "p2"), _fake(["b", "c", "a"], "p3")]
    with pytest.raises(SdevalError, match=r"p1 \(part 1\) and p3 \(part 3\) share 2 images; p2 \(part 2\) and p3"):
        merge_references(parts, "out")


def test_protocol_field_mismatch_without_a_cache_key_change():
    other = _fake(["b"], "p2")
    other.protocols["inception"] = other.protocols["inception"] | {"input_size": 224}
    with pytest.raises(ProtocolMismatchError, match="inception input_size is 224 in p2 but None in p1"):
        merge_references([_fake(["a"], "p1"), other], "out")
