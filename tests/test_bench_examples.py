"""The shipped benchmark examples for a GPU (`sdeval bench builtin:geneval-sd15`, `geneval-sdxl`, `dsg1k-vqa`): each
one's dry run on the real config (the full prompt count, the hub ids), and each one run end to end on the CPU on a
slice of its suite, with tiny random pipelines and tiny random judges put in where the config names hub models."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from generate_fixtures import (
    build_tiny_sdxl,
    sdeval_cache_fixture,  # noqa: F401  (registers the sdeval_cache fixture)
)

from sdeval.bench.config import read_config_text

# The examples' own suites, as `sdeval bench --dry-run` prints them.
DRY_RUNS = {
    "geneval-sd15": (
        "1 checkpoint(s) x 1 setting(s) x 553 prompts x 4 seed(s) = 2212 images",
        "sd15: stable-diffusion-v1-5/stable-diffusion-v1-5 (hub)",
        "guidance_scale 9.0, num_inference_steps 50, scheduler 'default'",
        "metrics: geneval, adherence",
    ),
    "geneval-sdxl": (
        "1 checkpoint(s) x 1 setting(s) x 553 prompts x 4 seed(s) = 2212 images",
        "sdxl: stabilityai/stable-diffusion-xl-base-1.0 (hub)",
        "guidance_scale 9.0, num_inference_steps 50, scheduler 'default'",
        "metrics: geneval, adherence",
    ),
    "dsg1k-vqa": (
        "1 checkpoint(s) x 1 setting(s) x 1060 prompts x 1 seed(s) = 1060 images",
        "sd15: stable-diffusion-v1-5/stable-diffusion-v1-5 (hub)",
        "guidance_scale 7.5, num_inference_steps 50, scheduler 'default'",
        "metrics: dsg",
        "judge vqa, questions dsg, vqa_model Salesforce/blip-vqa-base",
    ),
}


@pytest.mark.parametrize("name", sorted(DRY_RUNS))
def test_dry_run_prints_the_whole_plan_and_writes_nothing(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from sdeval.cli import main

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["bench", f"builtin:{name}", "--dry-run"])
    assert result.exit_code == 0, result.output
    for line in DRY_RUNS[name]:
        assert line in result.output
    assert f"report: {tmp_path / 'reports' / name / 'index.html'}" in result.output
    assert "missing" not in result.output  # no reference file: nothing to put in place beforehand
    assert list(tmp_path.iterdir()) == []


def test_the_geneval_examples_differ_only_in_the_checkpoint() -> None:
    sd15, sdxl = (yaml.safe_load(read_config_text(f"builtin:geneval-{m}")[0]) for m in ("sd15", "sdxl"))
    assert sd15["checkpoints"] == [{"name": "sd15", "path": "stable-diffusion-v1-5/stable-diffusion-v1-5"}]
    assert sdxl["checkpoints"] == [{"name": "sdxl", "path": "stabilityai/stable-diffusion-xl-base-1.0",
                                    "variant": "fp16"}]  # fmt: skip
    for config in (sd15, sdxl):
        del config["checkpoints"], config["output_dir"], config["report"], config["about"]
    assert sd15 == sdxl
    assert sd15["suite"] == "builtin:geneval" and "settings" not in sd15  # the suite's generation defaults
    assert sd15["metrics"] == ["geneval", "adherence"] and sd15["score"]["judge"] == "detector"


# -- end to end on the CPU, on a slice of each suite ---------------------------------------------------------------


def _suite_slice(folder: Path, builtin: str, rows: int, key: str) -> Path:
    """The built-in suite's header (format 2: its generation defaults and question sets) with its first row of each
    of `rows` values of `key`, as a suite file."""
    from sdeval.suites.builtin import builtin_path

    lines = gzip.decompress(builtin_path(builtin).read_bytes()).decode("utf-8").splitlines()
    chosen: dict[str, str] = {}
    for line in lines[1:]:
        value = json.loads(line)[key]
        if value not in chosen and len(chosen) < rows:
            chosen[value] = line
    path = folder / f"{builtin}-slice.jsonl"
    path.write_text("\n".join([lines[0], *chosen.values()]) + "\n", encoding="utf-8")
    return path


def _example(name: str, folder: Path, **changes: Any) -> Path:
    """The shipped example with `changes` made, as a config file in `folder` (outputs under it)."""
    config = yaml.safe_load(read_config_text(f"builtin:{name}")[0])
    config.update(device="cpu", output_dir="out", report={**config["report"], "output": "report"})
    score = {**config["score"], "device": "cpu", **changes.pop("score", {})}
    config.update(changes, score=score)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny_judges(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random OWLv2 and BLIP VQA folders, built as the judge tests build them."""
    import transformers
    from test_judges import _save_owlv2
    from test_vqa_judge import _save_blip

    transformers.utils.logging.disable_progress_bar()
    root = tmp_path_factory.mktemp("judges")
    return {"owlv2": _save_owlv2(root), "blip": _save_blip(root)}


SMALL = {"width": 32, "height": 32, "num_inference_steps": 2}


def _run(path: Path) -> tuple[int, list[str], dict[str, Any]]:
    from sdeval.bench.stages import run_bench
    from sdeval.results.document import load_results

    lines: list[str] = []
    code = run_bench(str(path), progress=False, echo=lines.append)
    return code, lines, load_results(path.parent / "out" / "results.json")


def _geneval_copy(folder: Path, checkpoint: dict[str, Any], tiny_judges: dict[str, Path], clip: tuple[str, str],
                  name: str) -> Path:  # fmt: skip
    suite = _suite_slice(folder, "geneval", 6, "category")  # one prompt of each of GenEval's six tags
    detector = {"detector_model": str(tiny_judges["owlv2"]), "clip_model": clip[0], "clip_pretrained": clip[1]}
    return _example(name, folder, checkpoints=[checkpoint], suite=suite.name, settings=SMALL, score=detector)


def _check_geneval(code: int, lines: list[str], results: dict[str, Any], folder: Path) -> None:
    assert code == 0, "\n".join(lines)  # no gate: the exit code says every metric was computed
    cell = results["cells"][0]
    assert cell["id"].split("/")[1].startswith("g9-s2-")  # guidance 9 from the suite's header, steps from the copy
    geneval = cell["metrics"]["geneval"]
    assert geneval["n"] == 24  # 6 prompts x 4 images: GenEval's generation defaults, from the suite's header
    assert sorted(geneval["categories"]) == ["color_attr", "colors", "counting", "position", "single_object",
                                             "two_object"]  # fmt: skip
    assert 0.0 <= geneval["value"] <= 1.0 and "interval" in json.dumps(geneval)
    assert cell["metrics"]["adherence"]["n"] == 24
    protocol = cell["protocol"]["geneval"]
    assert not protocol["as_published"] and "instead of Mask2Former's masks" in protocol["differs"][0]
    assert protocol["judge"].startswith("detector")
    assert (folder / "report" / "index.html").is_file()


def test_geneval_sd15_runs_end_to_end_on_a_slice(
    tmp_path: Path, sdeval_cache: Path, tiny_judges: dict[str, Path], tiny_name: str,
    tiny_clip_weights: dict[int, str],
) -> None:  # fmt: skip
    checkpoint = {"name": "sd15", "path": "tiny-random"}
    path = _geneval_copy(tmp_path, checkpoint, tiny_judges, (tiny_name, tiny_clip_weights[0]), "geneval-sd15")
    _check_geneval(*_run(path), tmp_path)


def test_geneval_sdxl_runs_end_to_end_on_a_slice(
    tmp_path: Path, sdeval_cache: Path, tiny_judges: dict[str, Path], tiny_name: str,
    tiny_clip_weights: dict[int, str],
) -> None:  # fmt: skip
    checkpoint = {"name": "sdxl", "path": str(build_tiny_sdxl(tmp_path / "tiny-sdxl"))}
    path = _geneval_copy(tmp_path, checkpoint, tiny_judges, (tiny_name, tiny_clip_weights[0]), "geneval-sdxl")
    _check_geneval(*_run(path), tmp_path)


def test_dsg1k_vqa_runs_end_to_end_on_a_slice(tmp_path: Path, sdeval_cache: Path, tiny_judges: dict[str, Path]) -> None:
    suite = _suite_slice(tmp_path, "dsg-1k", 4, "category")  # one prompt of each of four DSG categories
    path = _example("dsg1k-vqa", tmp_path, checkpoints=[{"name": "sd15", "path": "tiny-random"}], suite=suite.name,
                    settings=SMALL, score={"vqa_model": str(tiny_judges["blip"])})  # fmt: skip
    code, lines, results = _run(path)
    assert code == 0, "\n".join(lines)
    cell = results["cells"][0]
    dsg = cell["metrics"]["dsg"]
    assert dsg["n"] == 4 and dsg["n_prompts"] == 4 and len(dsg["categories"]) == 4
    assert dsg["images_skipped"] == [] and 0.0 <= dsg["value"] <= 1.0
    protocol = cell["protocol"]["dsg"]
    assert not protocol["as_published"] and "P(yes) >= 0.5" in protocol["differs"][0]
    assert "questions dsg" in protocol["judge"]
    assert (tmp_path / "report" / "index.html").is_file()


def test_a_local_model_folder_saved_by_transformers_5_is_found(tmp_path: Path) -> None:
    """`processor.save_pretrained` writes the image processor inside processor_config.json since transformers 5 (no
    preprocessor_config.json): such a folder is a valid local copy for `score.detector_model` and `score.vqa_model`."""
    import numpy as np
    from safetensors.numpy import save_file

    from sdeval.core.errors import ConfigError
    from sdeval.models.check import check_run_models
    from sdeval.options.score import options_from_mapping

    folder = tmp_path / "owlv2"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "owlv2"}))
    save_file({"w": np.zeros(2, np.float32)}, str(folder / "model.safetensors"))
    options = options_from_mapping(
        {
            "judge": "detector",
            "detector_model": str(folder),
            "clip_model": "ViT-B-32",
            "clip_pretrained": str(tmp_path / "clip.pt"),
        },
        images=".",
        metrics=("adherence",),
    )
    with pytest.raises(ConfigError, match=r"no preprocessor_config\.json in it"):
        check_run_models(options)
    (folder / "processor_config.json").write_text(json.dumps({"image_processor": {"size": {"height": 64}}}))
    with pytest.raises(ConfigError) as caught:
        check_run_models(options)  # only the colour model's file is missing now
    assert "preprocessor_config" not in str(caught.value) and "score.clip_pretrained" in str(caught.value)
