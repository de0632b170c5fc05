"""The writer: PNG metadata round trip, torn shard lines, and the rebuild-never-edit manifest merge."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from sdeval.generate.writer import (
    INDEX,
    MANIFEST,
    MANIFEST_COLUMNS,
    ManifestShard,
    existing_rows,
    merge_manifest,
    read_metadata,
    row_from_metadata,
    shard_dir,
    write_png,
)


def _meta(prompt: str, seed: int = 1) -> dict:
    return {"sdeval_version": "0.1.0", "prompt": prompt, "negative_prompt": None, "prompt_id": "p1", "seed": seed}


def _image() -> Image.Image:
    return Image.new("RGB", (8, 8), (10, 20, 30))


def test_png_metadata_round_trips_any_unicode(tmp_path: Path) -> None:
    meta = _meta('一只猫 🐱 — «quoted» \\ "x"')
    write_png(tmp_path / "a" / "x.png", _image(), meta, parameters="prompt\nSteps: 2")
    assert read_metadata(tmp_path / "a" / "x.png") == meta
    assert not list((tmp_path / "a").glob(".*"))  # no temp file left behind


def test_foreign_or_broken_pngs_have_no_metadata(tmp_path: Path) -> None:
    _image().save(tmp_path / "plain.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert read_metadata(tmp_path / "plain.png") is None
    assert read_metadata(tmp_path / "broken.png") is None


def test_torn_shard_line_is_skipped_and_never_glued_to_the_next_row(tmp_path: Path) -> None:
    shard = ManifestShard.for_rank(tmp_path, 0, 1)
    shard.path.parent.mkdir(parents=True)
    shard.path.write_text('{"file": "a.png", "prompt": "x"}\n{"file": "b.png", "pro')  # killed mid-append
    shard.append({"file": "c.png", "prompt": "z"})
    rows = existing_rows(tmp_path)
    assert sorted(rows) == ["a.png", "c.png"]


def test_merge_rebuilds_rows_from_pngs_and_resolves_conflicts(tmp_path: Path) -> None:
    for name, prompt in (("k/a.png", "alpha"), ("k/b.png", "beta"), ("k/c.png", "gamma")):
        write_png(tmp_path / name, _image(), _meta(prompt))
    _image().save(tmp_path / "k" / "foreign.png")  # not an sdeval image: never gets a row
    # a: a consistent row; b: two rows that disagree (regenerated); c: no row at all (kill before append);
    # gone: a row whose image was deleted; escape: a row that points outside the folder.
    (tmp_path / INDEX).parent.mkdir(parents=True)
    (tmp_path / INDEX).write_text(
        json.dumps(row_from_metadata(_meta("alpha"), "k/a.png")) + "\n"
        + json.dumps(row_from_metadata(_meta("old beta"), "k/b.png")) + "\n"
        + json.dumps(row_from_metadata(_meta("gone"), "k/gone.png")) + "\n"
        + json.dumps({"file": "../escape.png", "prompt": "x"}) + "\n"
    )  # fmt: skip
    shard = ManifestShard.for_rank(tmp_path, 1, 2)
    shard.append(row_from_metadata(_meta("beta"), "k/b.png"))
    result = merge_manifest(tmp_path, remove_shards=[shard.path])
    rows = {r["file"]: r for r in map(json.loads, (tmp_path / MANIFEST).read_text().splitlines())}
    assert sorted(rows) == ["k/a.png", "k/b.png", "k/c.png"]
    assert rows["k/b.png"]["prompt"] == "beta" and rows["k/c.png"]["prompt"] == "gamma"
    assert rows["k/a.png"]["id"] == "p1"
    # The manifest keeps to the documented columns; the index keeps every metadata field.
    assert all(set(r) == set(MANIFEST_COLUMNS) for r in rows.values())
    full = {r["file"]: r for r in map(json.loads, (tmp_path / INDEX).read_text().splitlines())}
    assert sorted(full) == sorted(rows) and full["k/a.png"]["sdeval_version"] == "0.1.0"
    assert (result.rows, result.rebuilt, result.dropped) == (3, 2, 2)
    assert not shard.path.exists() and shard_dir(tmp_path).is_dir()
    # Merging is idempotent.
    before = (tmp_path / MANIFEST).read_text(), (tmp_path / INDEX).read_text()
    merge_manifest(tmp_path)
    assert ((tmp_path / MANIFEST).read_text(), (tmp_path / INDEX).read_text()) == before
