"""`sdeval export model-index`: the Hugging Face model card metadata of a results file, read back with
huggingface_hub's own model card parser: task, dataset (suite or reference set), each metric's name, value and
protocol."""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from conftest import generate_and_judge, write_shapes_run

from sdeval.cli import main
from sdeval.export.model_index import model_index


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two shapes checkpoints (the first with colour mistakes), adherence with intervals."""
    folder = tmp_path_factory.mktemp("card")
    text = importlib.resources.files("sdeval.suites.data").joinpath("shapes.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines()[1:] if line.strip()]
    chosen = [row for row in rows if row["category"] == "colors"][:3] + [
        r for r in rows if r["category"] == "counting"
    ][:3]
    checkpoints = [
        {"name": "sd-colours", "path": "shapes", "options": {"mistakes": {"colors": 0.5}}},
        {"name": "sd-clean", "path": "shapes"},
    ]
    config = write_shapes_run(folder, chosen, checkpoints=checkpoints, seeds_per_prompt=2)
    return generate_and_judge(config, folder / "results.json", ci=True)


def _export(*args: str) -> str:
    outcome = CliRunner().invoke(main, ["export", "model-index", *args])
    assert outcome.exit_code == 0, outcome.output
    return outcome.output


def _cell(results: Path, checkpoint: str) -> dict[str, Any]:
    document = json.loads(results.read_text(encoding="utf-8"))
    return next(c for c in document["cells"] if c["checkpoint"]["name"] == checkpoint)


def test_card_read_back_by_huggingface_hub(results: Path, tmp_path: Path) -> None:
    from huggingface_hub import ModelCard

    card_path = tmp_path / "README.md"
    _export(str(results), "--checkpoint", "sd-colours", "-o", str(card_path))
    card = ModelCard.load(card_path)
    cell = _cell(results, "sd-colours")
    entry = cell["metrics"]["adherence"]
    assert card.data.model_name == "sd-colours"
    judge = cell["protocol"]["judge"]
    judge = {**judge, "specs": {k: v for k, v in judge["specs"].items() if k != "path"}}  # where it lies: informative
    found = {r.metric_type: r for r in card.data.eval_results}
    assert set(found) == {"adherence", "adherence.colors", "adherence.counting"}
    for result in found.values():
        assert result.task_type == "text-to-image"
        assert result.dataset_type == cell["protocol"]["suite"]["id"]
        assert result.dataset_revision == cell["protocol"]["suite"]["sha256"]
        assert result.dataset_config == cell["setting"]["id"]
        assert result.metric_args["protocol"]["judge"] == judge
        assert "device" not in result.metric_args["protocol"]  # informative fields do not move the number
    assert found["adherence"].metric_value == entry["value"]
    assert found["adherence"].metric_name == "Adherence"
    assert found["adherence"].metric_args["interval"]["low"] == entry["interval"]["low"]
    assert found["adherence"].metric_args["interval"]["high"] == entry["interval"]["high"]
    assert found["adherence.colors"].metric_value == entry["categories"]["colors"]["accuracy"] < 1.0
    assert card.text.startswith("# sd-colours")


def test_existing_card_keeps_its_metadata_and_text(results: Path, tmp_path: Path) -> None:
    from huggingface_hub import metadata_load
    from huggingface_hub.repocard_data import model_index_to_eval_results

    card_path = tmp_path / "README.md"
    body = "# My model\n\nTrained on shapes.\n"
    old = [{"name": "old", "results": [{"task": {"type": "x"}, "dataset": {"type": "d", "name": "d"}, "metrics": []}]}]
    card_path.write_text("---\nlicense: mit\ntags: [shapes]\nmodel-index: " + json.dumps(old) + "\n---\n" + body)
    _export(str(results), "--checkpoint", "sd-clean", "--model-name", "mine", "-o", str(card_path))
    metadata = metadata_load(card_path)
    assert metadata is not None
    assert metadata["license"] == "mit" and metadata["tags"] == ["shapes"]
    name, found = model_index_to_eval_results(metadata["model-index"])
    assert name == "mine" and {r.metric_value for r in found if r.metric_type == "adherence"} == {1.0}
    assert card_path.read_text(encoding="utf-8").endswith("---\n" + body)


def test_printed_front_matter_is_the_same(results: Path, tmp_path: Path) -> None:
    printed = _export(str(results), "--checkpoint", "sd-clean")
    assert printed.startswith("---\n") and printed.endswith("---\n") and "&id" not in printed  # no YAML anchors
    _export(str(results), "--checkpoint", "sd-clean", "-o", str(tmp_path / "README.md"))
    assert printed == (tmp_path / "README.md").read_text(encoding="utf-8").split("# sd-clean")[0].rstrip("\n") + "\n"
    assert yaml.safe_load(printed.strip("-\n"))["model-index"][0]["name"] == "sd-clean"


def test_several_checkpoints_need_a_choice(results: Path) -> None:
    outcome = CliRunner().invoke(main, ["export", "model-index", str(results)])
    assert outcome.exit_code == 2
    assert outcome.output == (
        "error: the results hold several checkpoints (sd-clean, sd-colours); a model card describes one model: "
        "choose one with --checkpoint NAME (or cells with --cell ID)\n"
    )
    outcome = CliRunner().invoke(main, ["export", "model-index", str(results), "--checkpoint", "sd-1"])
    assert outcome.exit_code == 2
    assert (
        outcome.output == "error: --checkpoint 'sd-1': no cell of that checkpoint (checkpoints: sd-clean, sd-colours)\n"
    )


def test_reference_metrics_name_the_reference_set() -> None:
    protocol = {
        "inception": {"extractor": "pt_inception-2015-12-05", "weights_sha256": "ab"},
        "reference": {"source": "refset:coco2014-val-30k", "n": 30000, "images_sha256": "cd"},
        "judge": {"judge": "shapes"},
        "seed": 2020,
        "device": "cpu",
    }
    cell = {
        "id": "whole",
        "checkpoint": None,
        "setting": None,
        "group": None,
        "n_images": 100,
        "images_sha256": "ef",
        "metrics": {"fid": {"value": 12.5, "n": 100, "n_reference": 30000}},
        "protocol": protocol,
    }
    document = {
        "sdeval_version": "0",
        "images": {"root": "/x/images"},
        "reference": None,
        "source": {},
        "cells": [cell],
    }
    (entry,) = model_index(document, "m")[0]["results"]
    assert entry["dataset"] == {"type": "coco2014-val-30k", "name": "reference coco2014-val-30k (30000 images)",
                                "revision": "cd"}  # fmt: skip
    (metric,) = entry["metrics"]
    assert metric["type"] == "fid" and metric["value"] == 12.5
    # FID's own blocks: not the seed (KID binds it), not the judge's, not the device (informative).
    assert set(metric["args"]["protocol"]) == {"inception", "reference"}
