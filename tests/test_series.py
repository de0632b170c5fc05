"""Checkpoint series: training runs' checkpoints found by a glob, ordered by step, loaded as what they hold."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from generate_fixtures import load_images, sdeval_cache_fixture, write_config  # noqa: F401  (fixture)

from sdeval.core.errors import ConfigError
from sdeval.generate.config import load_config
from sdeval.generate.runner import run_generate
from sdeval.generate.series import step_of

pytestmark = pytest.mark.usefixtures("sdeval_cache")


def _perturbed_unet(source: Path, target: Path, scale: float) -> None:
    """A copy of `source` (a UNet folder) with every weight moved by `scale` times noise: a later "training step"."""
    import torch
    from safetensors.torch import load_file, save_file

    target.mkdir(parents=True)
    shutil.copy(source / "config.json", target / "config.json")
    weights = load_file(source / "diffusion_pytorch_model.safetensors")
    generator = torch.Generator().manual_seed(int(scale * 1000))
    moved = {k: v + scale * torch.randn(v.shape, generator=generator, dtype=v.dtype) for k, v in weights.items()}
    save_file(moved, target / "diffusion_pytorch_model.safetensors")


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """Two training runs as diffusers' train_text_to_image.py leaves them (optimizer state and logs beside)."""
    from sdeval.generate.tiny import tiny_random_path

    base = tiny_random_path()
    shutil.copytree(base, tmp_path / "base")
    unet = base / "unet"
    lr1 = tmp_path / "runs" / "lr1"
    shutil.copytree(unet, lr1 / "checkpoint-500" / "unet")  # step 500: the base UNet unchanged
    _perturbed_unet(unet, lr1 / "checkpoint-1000" / "unet", 0.5)
    shutil.copytree(unet, lr1 / "checkpoint-1000" / "unet_ema")  # EMA on: its weights are the base's
    (lr1 / "checkpoint-1000" / "optimizer.bin").write_bytes(b"not read")
    (lr1 / "logs").mkdir()  # matched by runs/*/*, no step in its name: not a checkpoint
    _perturbed_unet(unet, tmp_path / "runs" / "lr2" / "checkpoint-500" / "unet", 0.5)
    return tmp_path


def _config(folder: Path, checkpoints: object) -> Path:
    return write_config(folder, prompts=[{"id": "p1", "prompt": "a red cube"}], checkpoints=checkpoints,
                        seeds_per_prompt=1)  # fmt: skip


def test_a_glob_expands_into_checkpoints_ordered_by_run_and_step(runs: Path) -> None:
    config = load_config(_config(runs, {"glob": "runs/*/*", "base": "base"}))
    assert [(c.name, c.run, c.step, c.kind) for c in config.checkpoints] == [
        ("lr1.checkpoint-500", "lr1", 500, "unet"),
        ("lr1.checkpoint-1000", "lr1", 1000, "unet"),  # 1000 after 500: by step, not by name
        ("lr2.checkpoint-500", "lr2", 500, "unet"),
    ]
    assert config.checkpoints[1].location.endswith("checkpoint-1000/unet_ema")  # EMA weights when present
    assert config.checkpoints[0].config == str((runs / "base").resolve())
    recorded = config.to_dict()["checkpoints"]
    assert recorded[1] == {
        "name": "lr1.checkpoint-1000", "path": "runs/lr1/checkpoint-1000", "series": "runs/*/*", "step": 1000,
        "run": "lr1", "form": "unet", "weights": "runs/lr1/checkpoint-1000/unet_ema", "base": "base",
        "lora_scale": 1.0, "allow_pickle": False, "variant": None,
    }  # fmt: skip
    no_ema = load_config(_config(runs, [{"glob": "runs/lr1/checkpoint-*", "base": "base", "ema": False}]))
    assert no_ema.checkpoints[1].location.endswith("checkpoint-1000/unet")


def test_an_explicit_list_takes_steps_and_mixes_with_a_series(runs: Path) -> None:
    config = load_config(_config(runs, [
        {"name": "base", "path": "base", "step": 0},
        {"glob": "runs/lr2/checkpoint-*", "base": "base"},
    ]))  # fmt: skip
    assert [(c.name, c.step) for c in config.checkpoints] == [("base", 0), ("lr2.checkpoint-500", 500)]
    assert config.to_dict()["checkpoints"][0]["step"] == 0
    # Without a step the recorded entry is what it always was, so existing configs keep their hash.
    plain = load_config(_config(runs, [{"name": "base", "path": "base"}]))
    assert "step" not in plain.to_dict()["checkpoints"][0]


@pytest.mark.parametrize(
    ("series", "message"),
    [
        ({"glob": "runs/none-*", "base": "base"}, "checkpoints.glob: 'runs/none-*' matches nothing"),
        ({"glob": "runs/*/*", "base": "base", "step": "checkpoint-\\d+"}, "expected one group capturing the step"),
        ({"glob": "runs/*/*"}, "checkpoints.base: required: checkpoint-500 holds a UNet"),
        ({"glob": "runs/lr2/*", "base": "base", "ema": True}, "checkpoints.ema: true, but"),
        ({"glob": "runs/*/*", "base": "base", "emma": "auto"}, "checkpoints.emma: unknown key (did you mean 'ema'?)"),
        ({"glob": "runs/*/*", "base": "nope"}, "checkpoints.base: no such file or folder"),
    ],
)
def test_series_mistakes_are_named_before_anything_loads(runs: Path, series: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(_config(runs, series))


def test_a_folder_that_holds_no_known_checkpoint_is_named(runs: Path) -> None:
    (runs / "runs" / "lr3" / "checkpoint-9").mkdir(parents=True)
    with pytest.raises(ConfigError, match="checkpoint-9 is not a checkpoint sdeval knows: expected unet/"):
        load_config(_config(runs, {"glob": "runs/lr3/*", "base": "base"}))


def test_each_checkpoint_generates_with_its_own_unet_and_a_rerun_adds_new_ones(runs: Path) -> None:
    config = _config(runs, [{"name": "base", "path": "base", "step": 0}, {"glob": "runs/*/*", "base": "base"}])
    first = run_generate(load_config(config), progress=False)
    assert first.generated == 4
    images = load_images(runs / "out")
    by_checkpoint = {path.split("/")[0]: image for path, image in images.items()}
    # Step 500 of lr1 is the base UNet, step 1000 its EMA (the base's weights): both equal the base pipeline's image.
    assert np.array_equal(by_checkpoint["lr1.checkpoint-500"], by_checkpoint["base"])
    assert np.array_equal(by_checkpoint["lr1.checkpoint-1000"], by_checkpoint["base"])
    # lr2's UNet moved: another image (the UNet really is swapped in).
    assert not np.array_equal(by_checkpoint["lr2.checkpoint-500"], by_checkpoint["base"])
    record = json.loads((runs / "out" / "run.json").read_text())
    steps = {c["name"]: (c.get("run"), c.get("step"), c["kind"]) for c in record["checkpoints"]}
    assert steps["lr1.checkpoint-1000"] == ("lr1", 1000, "unet") and steps["base"] == (None, 0, "folder")

    # Training went on: a new checkpoint is picked up, the finished ones are not generated again.
    shutil.copytree(runs / "runs" / "lr2" / "checkpoint-500", runs / "runs" / "lr2" / "checkpoint-1500")
    second = run_generate(load_config(config), progress=False)
    assert (second.generated, second.skipped) == (1, 4)


def test_scored_cells_carry_step_and_run(runs: Path) -> None:
    from sdeval.score.grouping import group_generation_rows, run_source

    config = _config(runs, {"glob": "runs/lr1/*", "base": "base"})
    run_generate(load_config(config), progress=False)
    out = runs / "out"
    paths = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    from sdeval.score.grouping import generation_rows

    grouping = group_generation_rows(out, paths, generation_rows(out, paths), run_source(out))
    found = sorted((c.checkpoint["name"], c.checkpoint.get("step"), c.checkpoint.get("run")) for c in grouping.cells
                   if c.checkpoint)  # fmt: skip
    assert found == [("lr1.checkpoint-1000", 1000, "lr1"), ("lr1.checkpoint-500", 500, "lr1")]


def test_step_of_a_name() -> None:
    assert step_of("lr1e-4.checkpoint-1500") == 1500
    assert step_of("final") is None


def test_trackers_read_the_recorded_step_and_keep_two_runs_apart() -> None:
    from sdeval.trackers.series import plan

    def cell(run: str, step: int, value: float) -> dict:
        name = f"{run}.checkpoint-{step}"
        return {"id": f"{name}/s", "checkpoint": {"name": name, "sha256": None, "step": step, "run": run},
                "setting": {"id": "s", "values": {}}, "metrics": {"fid": {"value": value}}}  # fmt: skip

    document = {
        "sdeval_version": "0",
        "cells": [cell("lr1", 500, 30.0), cell("lr1", 1000, 25.0), cell("lr2", 500, 28.0)],
    }
    steps = plan(document, "r", step_from="checkpoint").steps
    # The two runs' step 500 are two series, not a clash; the step is the recorded one, not the name's last number.
    assert steps == {500: {"lr1/s/fid": 30.0, "lr2/s/fid": 28.0}, 1000: {"lr1/s/fid": 25.0}}
