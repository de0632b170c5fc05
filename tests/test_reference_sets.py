"""Reference sets: shipped definitions, checking a copy, building, listing, captions to a suite, the wheel."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from sdeval.cli import main
from sdeval.reference import load_reference
from sdeval.reference import sets as refsets
from sdeval.suites.load import load_suite

ROOT = Path(__file__).resolve().parents[1]
POOL_IDS = [11, 25, 42, 57, 63, 78, 90, 104]  # the tiny pool; the set draws 6 of them


def _definition(pinned: str | None = None, files: dict[str, str] | None = None) -> dict:
    data = {
        "format": "sdeval.reference-set",
        "format_version": 1,
        "id": "tiny-6",
        "title": "tiny test set",
        "description": "6 of 8 images, made by the test",
        "source": {"annotations_file": "captions_tiny.json"},
        "images": {
            "count": 6,
            "pool_count": 8,
            "file_pattern": "TINY_{id:06d}.png",
            "selection": {"rule": "seeded-sample", "seed": 7},
        },
        "captions": {"rule": "seeded-choice", "seed": 3},
        "preprocessing": {"policy": "as-is"},
        "file_list_sha256": pinned,
    }
    if files is not None:
        data["files"] = files
    return data


@pytest.fixture()
def tiny(tmp_path, monkeypatch) -> dict:
    """A definition file, a COCO-format captions file, and a folder holding exactly the set's 6 images."""
    monkeypatch.setenv("SDEVAL_CACHE_DIR", str(tmp_path / "cache"))
    captions = {
        "images": [{"id": i, "file_name": f"TINY_{i:06d}.png"} for i in POOL_IDS],
        "annotations": [
            {"id": 1000 + 10 * k + j, "image_id": i, "caption": f"  image {i}\ncaption {j} "}
            for k, i in enumerate(POOL_IDS)
            for j in range(3)
        ],
    }
    (tmp_path / "captions_tiny.json").write_text(json.dumps(captions))
    definition_path = tmp_path / "tiny-6.json"
    definition_path.write_text(json.dumps(_definition()))
    definition = refsets.load_definition(definition_path)
    ids = refsets.select_images(definition, refsets.read_annotations(tmp_path / "captions_tiny.json"))
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for image_id in POOL_IDS:
        pixels = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
        target = images if image_id in ids else tmp_path / "unused"
        target.mkdir(exist_ok=True)
        Image.fromarray(pixels).save(target / f"TINY_{image_id:06d}.png")
    return {
        "root": tmp_path,
        "definition": str(definition_path),
        "captions": str(tmp_path / "captions_tiny.json"),
        "images": images,
        "ids": ids,
    }


def _build(tiny: dict, weights: str, *extra: str):
    args = ["reference", "build", "--definition", tiny["definition"], "--images", str(tiny["images"])]
    args += ["--inception-weights", weights, "--device", "cpu", "--workers", "0", "--no-cache", *extra]
    return CliRunner().invoke(main, args)


def test_shipped_definitions_load_and_state_their_rules():
    shipped = refsets.shipped_definitions()
    assert {"coco2014-val-30k", "coco2017-val-5k"} <= set(shipped)
    coco14 = shipped["coco2014-val-30k"]
    assert (coco14.count, coco14.pool_count, coco14.selection_rule) == (30000, 40504, "seeded-sample")
    assert coco14.file_name(391895) == "COCO_val2014_000000391895.jpg"
    assert coco14.name_regex().match("COCO_val2014_000000391895.jpg")
    assert shipped["coco2017-val-5k"].selection_rule == "all"
    assert all(d.preprocessing["policy"] == "as-is" for d in shipped.values())


def test_selection_and_captions_are_seeded_and_normalised(tiny):
    definition = refsets.load_definition(tiny["definition"])
    annotations = refsets.read_annotations(tiny["captions"])
    ids = refsets.select_images(definition, annotations)
    assert ids == sorted(ids) and len(ids) == 6 and set(ids) <= set(POOL_IDS)
    assert ids == refsets.select_images(definition, annotations)
    captions = refsets.choose_captions(definition, annotations, ids)
    assert captions == refsets.choose_captions(definition, annotations, ids)
    for image_id, caption in captions.items():
        assert caption in {f"image {image_id} caption {j}" for j in range(3)}


def test_build_checks_the_copy_and_records_the_set(tiny, inception_weights):
    result = _build(tiny, inception_weights, "--captions", tiny["captions"])
    assert result.exit_code == 0, result.output
    out = refsets.default_reference_path("tiny-6")
    reference = load_reference(out)
    assert reference.n == 6
    with np.load(out) as data:  # a loaded reference names its file; the file's metadata names the set
        assert json.loads(str(data["meta"]))["source"] == "refset:tiny-6"
    # Unpinned: the hash to pin is printed, and it is the reference's own images hash.
    assert f'"file_list_sha256": "{reference.images_hash}"' in result.output

    listed = CliRunner().invoke(main, ["reference", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    data = json.loads(listed.output)
    assert {"coco2014-val-30k", "coco2017-val-5k"} <= {s["id"] for s in data["sets"]}
    assert [(b["source"], b["n"], b["images_sha256"]) for b in data["built"]] == [
        ("refset:tiny-6", 6, reference.images_hash)
    ]
    text = CliRunner().invoke(main, ["reference", "list"]).output
    assert "coco2014-val-30k" in text and "not pinned" in text and "refset:tiny-6" in text


def test_without_captions_only_count_and_pattern_are_checked(tiny, inception_weights, tmp_path):
    result = _build(tiny, inception_weights, "-o", str(tmp_path / "ref.npz"))
    assert result.exit_code == 0, result.output
    assert "only the count" in result.output


def test_a_missing_file_is_named(tiny, inception_weights, tmp_path):
    gone = f"TINY_{tiny['ids'][2]:06d}.png"
    (tiny["images"] / gone).unlink()
    result = _build(tiny, inception_weights, "--captions", tiny["captions"], "-o", str(tmp_path / "r.npz"))
    assert result.exit_code == 2
    assert "1 file(s) missing" in result.output and gone in result.output
    assert not (tmp_path / "r.npz").exists()


def test_an_extra_file_is_named(tiny, inception_weights, tmp_path):
    Image.new("RGB", (32, 32)).save(tiny["images"] / "stray.png")
    result = _build(tiny, inception_weights, "--captions", tiny["captions"], "-o", str(tmp_path / "r.npz"))
    assert result.exit_code == 2
    assert "extra file(s)" in result.output and "stray.png" in result.output


def test_without_captions_a_wrong_count_is_an_error(tiny, inception_weights, tmp_path):
    (tiny["images"] / f"TINY_{tiny['ids'][0]:06d}.png").unlink()
    result = _build(tiny, inception_weights, "-o", str(tmp_path / "r.npz"))
    assert result.exit_code == 2 and "5 files, set tiny-6 has 6" in result.output


def test_a_changed_file_against_a_pinned_set_is_named(tiny, inception_weights, tmp_path):
    names = sorted(f"TINY_{i:06d}.png" for i in tiny["ids"])
    files = {n: refsets._sha256_file(tiny["images"] / n) for n in names}
    check = refsets.check_copy(refsets.load_definition(tiny["definition"]), tiny["images"], None)
    Path(tiny["definition"]).write_text(json.dumps(_definition(check.file_list_sha256, files)))
    ok = _build(tiny, inception_weights, "-o", str(tmp_path / "ok.npz"))
    assert ok.exit_code == 0, ok.output
    assert "matches the pinned hash" in ok.output

    changed = names[1]
    Image.new("RGB", (48, 48), (1, 2, 3)).save(tiny["images"] / changed)
    result = _build(tiny, inception_weights, "-o", str(tmp_path / "r.npz"))
    assert result.exit_code == 2
    assert "1 file(s) changed" in result.output and changed in result.output


def test_a_pinned_hash_alone_reports_the_mismatch(tiny, inception_weights, tmp_path):
    Path(tiny["definition"]).write_text(json.dumps(_definition("0" * 64)))
    result = _build(tiny, inception_weights, "-o", str(tmp_path / "r.npz"))
    assert result.exit_code == 2
    assert "0" * 64 in result.output and "file list hash" in result.output


def test_a_copy_of_the_whole_pool_builds_the_set_alone(tiny, inception_weights, tmp_path):
    for path in (tiny["root"] / "unused").iterdir():
        path.rename(tiny["images"] / path.name)
    result = _build(tiny, inception_weights, "--captions", tiny["captions"], "-o", str(tmp_path / "r.npz"))
    assert result.exit_code == 0, result.output
    assert "2 image(s) of the pool are not in set tiny-6" in result.output
    reference = load_reference(tmp_path / "r.npz")
    assert reference.n == 6
    assert sorted(reference.image_paths or []) == sorted(f"TINY_{i:06d}.png" for i in tiny["ids"])


def test_usage_errors_exit_2():
    runner = CliRunner()
    assert runner.invoke(main, ["reference", "build", "--set", "no-such-set", "--images", "."]).exit_code == 2
    assert runner.invoke(main, ["reference", "build", "--set", "coco2017-val-5k"]).exit_code == 2
    assert runner.invoke(main, ["reference", "build", "."]).exit_code == 2  # no --out


def test_captions_become_a_suite(tiny, tmp_path):
    out = tmp_path / "suite.jsonl"
    result = CliRunner().invoke(
        main,
        ["reference", "captions", "--definition", tiny["definition"], "--captions", tiny["captions"], "-o", str(out)],
    )
    assert result.exit_code == 0, result.output
    suite = load_suite(out)
    assert suite.id == "tiny-6"
    assert [p.id for p in suite.prompts] == [f"coco-{i}" for i in tiny["ids"]]
    assert all(p.prompt.startswith(f"image {i} caption") for p, i in zip(suite.prompts, tiny["ids"], strict=True))


def test_the_wheel_ships_definitions_and_package_data(tmp_path):
    """Build a wheel (not the editable tree) and check that it holds the data files sdeval reads at run time."""
    # Built from a copy, so that no build/ or egg-info is written into the working tree, and none left there
    # from an earlier build can add files that the tree no longer has.
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "sdeval", tree / "sdeval", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, tree / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), "."],
        check=True,
        cwd=tree,
    )
    (wheel,) = tmp_path.glob("sdeval-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())

    def expect(folder: str, pattern: str) -> None:
        wanted = {p.relative_to(ROOT).as_posix() for p in (ROOT / folder).glob(pattern)}
        assert wanted, f"nothing matches {folder}/{pattern} in the tree"
        assert not wanted - names, f"missing from the wheel: {sorted(wanted - names)}"

    expect("sdeval/reference_sets", "*.json")
    assert "sdeval/reference_sets/__init__.py" in names
    expect("sdeval/report/templates", "*")
    expect("sdeval/report/static", "*")
    expect("sdeval/results/schemas", "*.json")
    expect("sdeval/suites/data", "*.jsonl")
    if list((ROOT / "sdeval/bench/examples").glob("*.yaml")):
        expect("sdeval/bench/examples", "*.yaml")
