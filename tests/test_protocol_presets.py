"""Peer protocols by name: a preset sets what moves the peer's number, an explicit option wins, both are recorded."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from sdeval import score_folder
from sdeval.cli import main
from sdeval.core.errors import ConfigError
from sdeval.options.protocols import PRESETS, apply_preset
from sdeval.options.score import options_from_mapping
from sdeval.results.protocol import differences


def test_a_preset_fills_only_what_was_not_given() -> None:
    options = options_from_mapping({"protocol": "torchmetrics", "kid_subsets": 50}, images="x")
    assert options.features.preprocess == "torchmetrics" and options.clip_aggregation == "mean"
    assert options.kid_subsets == 50  # given explicitly: it wins, and the record says so
    assert options.protocol_preset == {
        "name": "torchmetrics",
        "expansion": {"preprocess": "torchmetrics", "kid_subsets": 100, "clip_aggregation": "mean"},
        "overridden": {"kid_subsets": 50},
        "notes": list(PRESETS["torchmetrics"].notes),
    }
    assert options_from_mapping({}, images="x").protocol_preset is None  # no preset: today's defaults, no block
    with pytest.raises(ConfigError, match=r"score.protocol: expected one of .* \(did you mean 'clean-fid'\?\)"):
        apply_preset({"protocol": "cleanfid"})


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict:
    from sdeval.score.demo import make_image_set

    root = tmp_path_factory.mktemp("preset-sets")
    make_image_set(root / "gen", 12, seed=1, style="blobs")
    make_image_set(root / "ref", 12, seed=2, style="spots")
    return {"gen": str(root / "gen"), "ref": str(root / "ref")}


def test_score_with_a_preset_equals_the_explicit_options_and_records_it(sets, inception_weights) -> None:
    common = {"metrics": ["fid", "kid"], "inception_weights": inception_weights, "workers": 0, "no_cache": True,
              "kid_subset_size": 10}  # fmt: skip
    preset = score_folder(sets["gen"], reference=sets["ref"], protocol="clean-fid", **common)
    explicit = score_folder(sets["gen"], reference=sets["ref"], preprocess="clean", **common)
    a, b = preset["cells"][0], explicit["cells"][0]
    assert a["metrics"]["fid"]["value"] == b["metrics"]["fid"]["value"]
    assert a["metrics"]["kid"]["value"] == b["metrics"]["kid"]["value"]
    assert a["protocol"]["inception"]["preprocess"] == "clean"
    assert a["protocol"]["preset"]["name"] == "clean-fid"
    binding, informative = differences(a["protocol"], b["protocol"])
    assert binding == [] and "preset.name" in informative  # the preset informs; what it set binds where it always did


def test_the_command_line_treats_untouched_defaults_as_not_given(sets, inception_weights, tmp_path) -> None:
    import json

    out = tmp_path / "r.json"
    args = ["score", sets["gen"], "-r", sets["ref"], "--metrics", "fid", "--inception-weights",
            inception_weights, "--workers", "0", "--no-cache", "--protocol", "pytorch-fid", "--seed", "7",
            "-o", str(out)]  # fmt: skip
    ran = CliRunner().invoke(main, args)
    assert ran.exit_code == 0, ran.output
    protocol = json.loads(out.read_text())["cells"][0]["protocol"]
    assert protocol["inception"]["preprocess"] == "pytorch-fid"  # --preprocess left at its default: the preset's
    assert protocol["preset"]["overridden"] == {} and protocol["seed"] == 7
