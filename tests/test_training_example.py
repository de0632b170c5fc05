"""docs/examples/train_and_evaluate.py runs as documented: a few training steps of the tiny UNet with accelerate,
the Evaluator's FID logged to TensorBoard at each evaluation step, and the saved checkpoints evaluated afterwards
by `sdeval bench` as a series with a pick rule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from click.testing import CliRunner
from generate_fixtures import sdeval_cache_fixture  # noqa: F401  (registers the sdeval_cache fixture)

from sdeval.cli import main

EXAMPLE = Path(__file__).parents[1] / "docs" / "examples" / "train_and_evaluate.py"


def _scalars(logdir: Path, tag: str) -> dict[int, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found: dict[int, float] = {}
    for events in sorted(logdir.rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        if tag in accumulator.Tags()["scalars"]:
            found.update({e.step: e.value for e in accumulator.Scalars(tag)})
    return found


def test_train_evaluate_log_then_bench_the_checkpoints(tmp_path: Path, sdeval_cache: Path, inception_weights: str):
    from sdeval.generate.tiny import tiny_random_path

    out = tmp_path / "train"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SDEVAL_CACHE_DIR": str(sdeval_cache), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(EXAMPLE), "--out", str(out), "--steps", "4", "--eval-every", "2",
               "--inception-weights", inception_weights]  # fmt: skip
    ran = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "step 4: evaluated" in ran.stdout
    fid = _scalars(out / "tensorboard", "fid")
    assert sorted(fid) == [2, 4] and all(v > 0 for v in fid.values())  # one FID per evaluation, at its step
    assert (out / "checkpoint-2" / "unet" / "diffusion_pytorch_model.safetensors").is_file()

    config = {
        "checkpoints": {"glob": str(out / "checkpoint-*"), "base": str(tiny_random_path())},
        "suite": "builtin:smoke", "seeds_per_prompt": 1, "device": "cpu", "output_dir": str(tmp_path / "bench"),
        "settings": {"width": 32, "height": 32, "num_inference_steps": 2},
        "metrics": ["fid"], "reference": str(out / "data"),
        "score": {"inception_weights": inception_weights, "device": "cpu"}, "report": False,
        "pick": {"minimize": "fid"},
    }  # fmt: skip
    path = tmp_path / "series.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    benched = CliRunner().invoke(main, ["bench", str(path), "--quiet"])
    assert benched.exit_code == 0, benched.output
    results = json.loads((tmp_path / "bench" / "results.json").read_text())
    assert [(c["checkpoint"]["name"], c["checkpoint"]["step"]) for c in results["cells"]] == [
        ("train.checkpoint-2", 2), ("train.checkpoint-4", 4)
    ]  # fmt: skip
    picked = json.loads((tmp_path / "bench" / "pick.json").read_text())
    values = {c["step"]: c["value"] for c in picked["candidates"]}
    assert picked["chosen"].startswith(f"train.checkpoint-{min(values, key=values.get)}/")
