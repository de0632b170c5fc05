"""Results format version 1: the schema describes what `sdeval score` writes, `load_results` reads it back,
and a document that departs from it is refused naming the field (docs/formats.md, "Results")."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner
from PIL import Image

from sdeval.cli import main
from sdeval.core.errors import SdevalError
from sdeval.generate.writer import write_png
from sdeval.results.document import (
    RESULTS_FORMAT,
    RESULTS_SCHEMA,
    RESULTS_VERSION,
    InvalidResultsError,
    load_results,
    schema_problem,
    validate_results,
    write_results,
)
from sdeval.score.demo import make_image_set, run_demo

PROMPTS = {"p1": "a red cube on a table", "p2": "a photo of a cat", "p3": "a blue sphere"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """What `sdeval demo` writes (FID, KID, IS, precision/recall on one folder), on fewer images."""
    out = tmp_path_factory.mktemp("demo")
    run_demo(out, n=24, workers=0)
    return out / "results.json"


@pytest.fixture(scope="module")
def generation_run(tmp_path_factory) -> Path:
    """A folder laid out as `sdeval generate` leaves it: a run record, and PNGs whose metadata give each
    image's prompt, seed, checkpoint and setting (two checkpoints, so two cells)."""
    root = tmp_path_factory.mktemp("run") / "out"
    plain = make_image_set(root / "plain", 12, seed=5, size=48)
    settings = {"guidance_scale": 7.5, "num_inference_steps": 2}
    for n, path in enumerate(plain):
        checkpoint, prompt_id, seed_index = ("a", "b")[n % 2], f"p{n // 2 % 3 + 1}", n // 6
        meta = {
            "prompt": PROMPTS[prompt_id], "prompt_id": prompt_id, "seed": 100 + n, "seed_index": seed_index,
            "checkpoint": checkpoint, "checkpoint_hash": None, "setting_id": "g7.5-s2", "settings": settings,
        }  # fmt: skip
        with Image.open(path) as image:
            write_png(root / checkpoint / f"{prompt_id}-{seed_index}.png", image.convert("RGB"), meta)
        path.unlink()
    (root / "plain").rmdir()
    record = {
        "stage": "generate",
        "finished_at": "2025-01-01T00:00:00+00:00",
        "config_sha256": "0" * 64,
        "config": {"seeds_per_prompt": 2, "base_seed": 0},
        "suite": {"path": "prompts.jsonl", "sha256": "1" * 64, "prompts": 3},
        "checkpoints": [{"name": "a", "sha256": None}, {"name": "b", "sha256": None}],
    }
    (root / "run.json").write_text(json.dumps(record))
    return root


def _score(*args: object) -> Any:
    return CliRunner().invoke(main, ["score", *map(str, args)])


def _write(tmp_path: Path, doc: Any, name: str = "results.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc, indent=2))
    return path


# -- what sdeval writes matches the schema ------------------------------------------------------------------


def test_the_schema_is_valid_draft_2020_12_and_ships_with_the_package():
    from sdeval.score import assemble as score

    jsonschema.Draft202012Validator.check_schema(RESULTS_SCHEMA)
    assert RESULTS_SCHEMA["$schema"].endswith("/draft/2020-12/schema")
    # The reader keeps its own copy of the format's name and version (it must not import torch): they must agree.
    assert (RESULTS_FORMAT, RESULTS_VERSION) == (score.FORMAT, score.FORMAT_VERSION)
    assert RESULTS_SCHEMA["properties"]["format_version"]["const"] == RESULTS_VERSION


def test_the_demo_results_match_the_schema_and_load_back_unchanged(demo):
    doc = json.loads(demo.read_text())
    validate_results(doc)
    assert load_results(demo) == doc
    assert set(doc["cells"][0]["metrics"]) == {"fid", "kid", "is", "precision", "recall"}
    assert doc["state"]["path"] == "results.state.npz"


def test_a_generation_run_with_the_text_metrics_matches_the_schema(
    tmp_path, generation_run, tiny_name, tiny_clip_weights
):
    out = tmp_path / "r.json"
    result = _score(generation_run, "--metrics", "clip,rprecision,diversity,cmmd", "-r", generation_run,
                    "--clip-model", tiny_name, "--clip-pretrained", tiny_clip_weights[0], "--workers", 0,
                    "--no-cache", "-o", out)  # fmt: skip
    assert result.exit_code in (0, 3), result.output
    doc = load_results(out)
    assert doc["source"]["kind"] == "generation_run" and doc["source"]["run"]["config_sha256"] == "0" * 64
    assert [cell["id"] for cell in doc["cells"]] == ["a/g7.5-s2", "b/g7.5-s2"]
    row = doc["cells"][0]["per_image"][0]
    assert row["item"] == f"{row['prompt_id']}#{row['seed_index']}" and row["prompt_source"] == "sdeval"
    assert {"clip_score", "clip_cosine", "rprecision_hit", "prompt_truncated"} <= set(row)
    assert {"clip", "rprecision", "diversity", "cmmd"} == set(doc["cells"][0]["metrics"])
    assert doc["prompts"]["n_with_prompt"] == 12


def test_stdout_results_and_skipped_metrics_match_the_schema(tmp_path, inception_weights):
    # Five images: IS and KID cannot be computed, so both entries are {value: null, skipped: why}.
    make_image_set(tmp_path / "five", 5, seed=0)
    result = _score(tmp_path / "five", "--metrics", "is,kid", "-r", tmp_path / "five", "--kid-subset-size", 10,
                    "--inception-weights", inception_weights, "--no-cache", "--workers", 0, "-o", "-")  # fmt: skip
    assert result.exit_code == 3, result.output
    doc = json.loads(result.stdout)
    validate_results(doc)
    assert doc["state"]["path"] is None and doc["state"]["reason"]
    assert all(entry["value"] is None and entry["skipped"] for entry in doc["cells"][0]["metrics"].values())


# -- what departs from it is refused, naming the field ------------------------------------------------------


def _cell(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["cells"][0]


def _value_as_text(doc):
    _cell(doc)["metrics"]["kid"]["value"] = "abc"


def _null_value_without_reason(doc):
    _cell(doc)["metrics"]["fid"] = {"value": None}


def _std_as_text(doc):
    _cell(doc)["metrics"]["is"]["std"] = "0.1"


def _cell_without_id(doc):
    del _cell(doc)["id"]


def _row_without_item(doc):
    del _cell(doc)["per_image"][3]["item"]


def _row_with_a_text_seed(doc):
    _cell(doc)["per_image"][2]["seed"] = "7"


def _user_metric_without_value(doc):
    _cell(doc)["metrics"]["my_metric"] = {"score": 1.0}


def _misspelt_top_level_key(doc):
    doc["warning"] = doc.pop("warnings")


def _misspelt_images_key(doc):
    doc["images"]["n_scord"] = doc["images"].pop("n_scored")


def _state_without_reason(doc):
    doc["state"] = {"path": None}


def _unknown_source_kind(doc):
    doc["source"]["kind"] = "folders"


BROKEN = [
    (_value_as_text, "cells[0].metrics.kid.value: 'abc' is not of type 'number', 'null'"),
    (_null_value_without_reason, "cells[0].metrics.fid: 'skipped' is a required property"),
    (_std_as_text, "cells[0].metrics.is.std: '0.1' is not of type 'number', 'null'"),
    (_cell_without_id, "cells[0]: 'id' is a required property"),
    (_row_without_item, "cells[0].per_image[3]: 'item' is a required property"),
    (_row_with_a_text_seed, "cells[0].per_image[2].seed: '7' is not of type 'integer', 'null'"),
    (_user_metric_without_value, "cells[0].metrics.my_metric: 'value' is a required property"),
    (_misspelt_top_level_key, "<document>: 'warnings' is a required property"),
    (_misspelt_images_key, "images: 'n_scored' is a required property"),
    (_state_without_reason, "state: 'reason' is a required property"),
    (_unknown_source_kind, "source.kind: 'folders' is not one of ['folder', 'generation_run']"),
]


@pytest.mark.parametrize(("breaks", "message"), BROKEN, ids=[b.__name__.strip("_") for b, _ in BROKEN])
def test_a_wrong_field_is_named(tmp_path, demo, breaks, message):
    doc = json.loads(demo.read_text())
    breaks(doc)
    with pytest.raises(SdevalError) as err:
        validate_results(doc)
    assert str(err.value) == f"results.json: {message}"
    path = _write(tmp_path, doc, "broken.json")
    with pytest.raises(SdevalError, match=r"broken\.json: "):
        load_results(path)


def test_the_first_error_in_document_order_is_named(demo):
    doc = json.loads(demo.read_text())
    cells = [copy.deepcopy(_cell(doc)) for _ in range(3)]
    for n, cell in enumerate(cells):
        cell["id"] = f"c{n}"
    cells[1]["per_image"][5]["sha256"] = "not a hash"
    cells[2]["metrics"]["kid"]["value"] = "abc"
    cells[1]["protocol"]["seed"] = None
    doc["cells"] = cells
    assert schema_problem(doc) == "cells[1].per_image[5].sha256: 'not a hash' does not match '^[0-9a-f]{64}$'"
    cells[1]["metrics"]["kid"]["value"] = []
    assert schema_problem(doc) == "cells[1].metrics.kid.value: [] is not of type 'number', 'null'"


def test_additions_are_allowed_where_version_1_may_grow(demo):
    doc = json.loads(demo.read_text())
    cell = _cell(doc)
    cell["adherence"] = {"categories": {"counting": 0.5}}
    cell["metrics"]["fid"]["interval"] = {"low": 1.0, "high": 2.0, "level": 0.95}
    cell["metrics"]["my_metric"] = {"value": 0.25, "anything": [1, 2]}
    cell["per_image"][0]["my_metric_score"] = 0.3
    cell["protocol"]["my_metric"] = {"k": 3}
    doc["provenance"]["hostname_hash"] = "x"
    validate_results(doc)


def test_values_json_allows_but_a_quick_check_would_not_are_still_accepted(demo):
    # The per-image rows are checked by a fast predicate first; whatever it is unsure of goes to the validator.
    doc = json.loads(demo.read_text())
    rows = _cell(doc)["per_image"]
    rows[0].update(seed=3.0, seed_index=1.0)  # integral floats are integers in JSON Schema
    rows[1]["clip_score"] = float("nan")
    validate_results(doc)


def test_a_huge_wrong_value_is_shortened_in_the_message(demo):
    doc = json.loads(demo.read_text())
    _cell(doc)["per_image"] = {str(n): n for n in range(1000)}
    message = schema_problem(doc)
    assert message is not None and message.startswith("cells[0].per_image: {") and len(message) < 200


# -- load_results: the file itself ---------------------------------------------------------------------------


def test_a_newer_format_version_asks_for_an_upgrade(tmp_path, demo):
    doc = json.loads(demo.read_text())
    doc["format_version"] = 2
    doc["cells"] = "whatever version 2 holds"
    path = _write(tmp_path, doc)
    with pytest.raises(SdevalError) as err:
        load_results(path)
    assert str(err.value) == (f"{path}: written by a newer sdeval (format version 2; this one reads 1): upgrade sdeval")


@pytest.mark.parametrize("version", [None, 0, "1", True, 1.5])
def test_a_missing_or_unknown_format_version_is_refused(tmp_path, demo, version):
    doc = json.loads(demo.read_text())
    if version is None:
        del doc["format_version"]
    else:
        doc["format_version"] = version
    with pytest.raises(SdevalError, match="unknown results format version"):
        load_results(_write(tmp_path, doc))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            {"format": "sdeval.state", "format_version": 1},
            "not an sdeval results file (format 'sdeval.state'",
        ),
        ({"fid": 3.2}, "not an sdeval results file (no `format` field"),
        ([1, 2], "not an sdeval results file (a JSON array, not an object)"),
    ],
)
def test_json_that_is_not_a_results_file_is_refused(tmp_path, content, message):
    path = _write(tmp_path, content, "other.json")
    with pytest.raises(SdevalError) as err:
        load_results(path)
    assert str(err.value).startswith(f"{path}: {message}")


def test_invalid_json_names_the_line_and_column(tmp_path, demo):
    lines = demo.read_text().splitlines()
    lines[2] = lines[2].rstrip(",")  # the third line loses its comma
    path = tmp_path / "torn.json"
    path.write_text("\n".join(lines))
    with pytest.raises(SdevalError) as err:
        load_results(path)
    assert str(err.value) == f"{path}: not valid JSON: Expecting ',' delimiter at line 4, column 3"


def test_json_errors_that_end_in_at_do_not_double_it(tmp_path):
    """Python's "Unterminated string starting at" takes the place without a second "at", wherever sdeval quotes a
    JSON error: results files, gate verdicts (sdeval report --gate), manifests."""
    from sdeval.prompts.manifest import load_manifest
    from sdeval.report.gate import read_gate

    path = tmp_path / "torn.json"
    path.write_text('{"format": "sdeval.results", "cells": "unterminated', encoding="utf-8")
    with pytest.raises(SdevalError) as err:
        load_results(path)
    assert str(err.value) == f"{path}: not valid JSON: Unterminated string starting at line 1, column 39"
    with pytest.raises(SdevalError) as err:
        read_gate(path)
    assert str(err.value).endswith("(not valid JSON: Unterminated string starting at line 1, column 39)")
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text('{"file": "a.png", "prompt": "a cat}\n', encoding="utf-8")
    problems = {p.line: p.reason for p in load_manifest(manifest, tmp_path).problems}
    assert problems[1] == "not valid JSON: Unterminated string starting at column 29"


def test_a_missing_or_unreadable_file_is_one_clear_error(tmp_path):
    with pytest.raises(SdevalError, match="no such results file"):
        load_results(tmp_path / "nope.json")
    with pytest.raises(SdevalError, match="is a folder, not a results file"):
        load_results(tmp_path)
    (tmp_path / "latin1.json").write_bytes(b'{"prompt": "caf\xe9"}')
    with pytest.raises(SdevalError, match="not UTF-8"):
        load_results(tmp_path / "latin1.json")


# -- write_results refuses to write a document that breaks the format ---------------------------------------


def test_write_results_refuses_an_invalid_document_and_keeps_it_aside(tmp_path, demo):
    doc = json.loads(demo.read_text())
    _cell(doc)["metrics"]["kid"]["value"] = "abc"
    target = tmp_path / "r.json"
    with pytest.raises(InvalidResultsError) as err:
        write_results(target, doc)
    assert "cells[0].metrics.kid.value: 'abc' is not of type" in str(err.value)
    assert not target.exists()
    saved = Path(str(err.value).rsplit("saved to ", 1)[1].rstrip(")"))
    try:
        assert json.loads(saved.read_text()) == doc
    finally:
        saved.unlink()


def test_an_invalid_document_is_an_internal_error_in_the_cli(tmp_path, inception_weights, monkeypatch):
    import sdeval.score.compute

    monkeypatch.setattr(sdeval.score.compute, "DECODE_RULE", 8)  # a bug in the producer: a number where text belongs
    make_image_set(tmp_path / "images", 12, seed=0)
    out = tmp_path / "r.json"
    result = _score(tmp_path / "images", "--metrics", "kid", "-r", tmp_path / "images", "--kid-subset-size", 6,
                    "--inception-weights", inception_weights, "--no-cache", "--workers", 0, "-o", out)  # fmt: skip
    assert result.exit_code == 70, result.output
    line = result.output.strip().splitlines()[-1]
    assert "InvalidResultsError" in line and "cells[0].protocol.decode: 8 is not of type 'string'" in line
    assert not out.exists()
    saved = Path(line.split("saved to ", 1)[1].split(")", 1)[0])
    traceback = Path(line.split("traceback in ", 1)[1].split(")", 1)[0])
    try:
        assert json.loads(saved.read_text())["cells"][0]["protocol"]["decode"] == 8
    finally:
        saved.unlink()
        traceback.unlink()
