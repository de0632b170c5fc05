"""The command line: tables, results JSON schema, one clear line and exit code 2 on errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import warm_copy

from sdeval.cli import main


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_score_writes_results_json_with_the_documented_schema(
    tmp_path, inception_weights, image_sets, image_sets_cache
):
    out = tmp_path / "results.json"
    cache = warm_copy(image_sets_cache, tmp_path / "cache")  # the features are not what this test checks
    result = _run(
        "score", image_sets["gen"], "--reference", image_sets["ref"], "--inception-weights", inception_weights,
        "--kid-subset-size", 20, "--cache-dir", cache, "--workers", 0, "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "FID" in result.output and "Precision" in result.output
    doc = json.loads(out.read_text())
    assert {"format", "format_version", "sdeval_version", "images", "reference", "cells", "provenance"} <= set(doc)
    assert {"root", "n_scored", "skipped"} <= set(doc["images"])
    assert set(doc["cells"][0]["metrics"]) == {"fid", "kid", "is", "precision", "recall"}
    assert {"value", "std"} <= set(doc["cells"][0]["metrics"]["kid"]) and {"value", "std"} <= set(
        doc["cells"][0]["metrics"]["is"]
    )
    assert doc["cells"][0]["protocol"]["inception"]["weights_sha256"]
    assert doc["cells"][0]["protocol"]["inception"]["preprocess"] == "legacy"


def test_reference_build_then_score_against_the_file(tmp_path, inception_weights, image_sets, image_sets_cache):
    ref = tmp_path / "ref.npz"
    cache = warm_copy(image_sets_cache, tmp_path / "cache")  # both sets' features: none is extracted again
    common = ["--inception-weights", inception_weights, "--cache-dir", cache, "--workers", 0]
    assert _run("reference", "build", image_sets["ref"], "-o", ref, *common).exit_code == 0
    result = _run("score", image_sets["gen"], "-r", ref, "--metrics", "fid,pr", *common, "-o", tmp_path / "file.json")
    assert result.exit_code == 0, result.output
    assert "FID" in result.output and "KID" not in result.output
    # The file gives the numbers the folder gives (its features come from the same cache), and the table prints them.
    folder = _run("score", image_sets["gen"], "-r", image_sets["ref"], "--metrics", "fid,pr", *common,
                  "-o", tmp_path / "folder.json")  # fmt: skip
    assert folder.exit_code == 0, folder.output
    from_file, from_folder = (
        {k: e["value"] for k, e in json.loads((tmp_path / name).read_text())["cells"][0]["metrics"].items()}
        for name in ("file.json", "folder.json")
    )
    assert from_file == from_folder
    assert set(from_file) == {"fid", "precision", "recall"} and from_file["fid"] > 1.0  # the two sets differ
    assert all(0.0 <= from_file[k] <= 1.0 for k in ("precision", "recall"))
    for key, value in from_file.items():
        assert f"{value:.6g}" in result.output, key


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metrics", "fid"], "--reference is required for fid"),
        (["--metrics", "fid,bogus", "-r", "."], "unknown metric(s) bogus"),
        (["--metrics", "fid,kdi", "-r", "."], "unknown metric(s) kdi (did you mean 'kid'?); known: fid, kid,"),
        (["--metrics", "is", "--inception-weights", "/nonexistent.pth"], "no such file"),
        (["--metrics", "is", "--device", "tpu"], "--device must be"),
    ],
)
def test_errors_are_one_line_and_exit_code_2(args, message, image_sets, inception_weights):
    if "--inception-weights" not in args:
        args = [*args, "--inception-weights", inception_weights]
    result = CliRunner().invoke(main, ["score", image_sets["gen"], "--no-cache", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "message", "command"),
    [
        (["score", "/no/such"], "Invalid value for 'IMAGES': Directory '/no/such' does not exist.", "sdeval score"),
        (["score", ".", "--judge", "oracle"], "Invalid value for '--judge': 'oracle' is not one of", "sdeval score"),
        (["score", ".", "--batch-size", "0"], "Invalid value for '--batch-size': 0 is not in", "sdeval score"),
        (["reference", "merge", "pyproject.toml"], "Missing option '--out' / '-o'.", "sdeval reference merge"),
        (["gate"], "Missing argument 'RESULTS'.", "sdeval gate"),
        (["score", ".", "--bogus"], "No such option '--bogus'.", "sdeval score"),
        (["suites", "bogus"], "No such command 'bogus'.", "sdeval suites"),
        (["bogus"], "No such command 'bogus'.", "sdeval"),
        (["--bogus"], "No such option '--bogus'.", "sdeval"),
    ],
)
def test_usage_errors_are_one_line_on_stderr_and_exit_code_2(args, message, command):
    # Click's message, said once as `error: ...` with where its --help is, not click's usage block.
    result = CliRunner().invoke(main, args, prog_name="sdeval")
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"error: {message}"), result.stderr
    assert result.stderr.rstrip().endswith(f" Try '{command} --help' for help."), result.stderr


def test_help_still_works():
    for args in (["--help"], ["score", "--help"], ["suites", "validate", "--help"]):
        result = CliRunner().invoke(main, args, prog_name="sdeval")
        assert result.exit_code == 0 and result.stdout.startswith("Usage: sdeval"), result.output
    assert CliRunner().invoke(main, ["--version"]).stdout.startswith("sdeval, version ")


def test_empty_folder_is_a_clear_error(tmp_path, inception_weights):
    (tmp_path / "readme.txt").write_text("no images here")
    result = CliRunner().invoke(main, ["score", str(tmp_path), "--metrics", "is", "--no-cache",
                                       "--inception-weights", inception_weights])  # fmt: skip
    assert result.exit_code == 2
    assert "no image files found" in result.output


def test_too_few_images_for_a_metric_is_listed_not_fatal(tmp_path, inception_weights):
    from sdeval.score.demo import make_image_set

    make_image_set(tmp_path / "few", 5, seed=0)
    out = tmp_path / "r.json"
    result = _run("score", tmp_path / "few", "--metrics", "is,fid", "-r", tmp_path / "few", "--no-cache",
                  "--inception-weights", inception_weights, "--workers", 0, "-o", out)  # fmt: skip
    assert result.exit_code == 3, result.output  # incomplete: IS could not be computed, FID was
    doc = json.loads(out.read_text())
    assert doc["cells"][0]["metrics"]["is"]["value"] is None
    assert "needs at least 2 images per split (20 for 10 splits), got 5" in doc["cells"][0]["metrics"]["is"]["skipped"]
    assert doc["cells"][0]["metrics"]["fid"]["value"] == pytest.approx(0.0, abs=1e-6)


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "sdeval", "--help"], capture_output=True, text=True, check=True)
    assert "score" in result.stdout and "reference" in result.stdout
