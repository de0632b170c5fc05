"""benchmarks/gpu_suite.py cannot rot before a GPU is lent: its --smoke run (tiny sizes, CPU) goes through every
part and writes the JSON and the RESULTS.md section the GPU run will."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SUITE = Path(__file__).parent.parent / "benchmarks" / "gpu_suite.py"


def _suite() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_suite", SUITE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def _check_models(rows: list[dict[str, Any]]) -> None:
    assert [(row["model"], row["part"]) for row in rows] == [
        ("sd15", "unet"), ("sd15", "vae decode"), ("sdxl", "unet"), ("sdxl", "vae decode"),
    ]  # fmt: skip
    for row in rows:
        for key in ("params", "gflop_per_image", "plain_batch1_images_per_s", "sdeval_images_per_s", "speedup"):
            assert _positive(row[key]), (row, key)
        assert row["speedup"] == pytest.approx(row["sdeval_images_per_s"] / row["plain_batch1_images_per_s"])
        assert 0 < row["plain_mfu"] < 1 and 0 < row["sdeval_mfu"] < 1  # a peak was given
        assert row["peak_memory_bytes"] > 0


def test_smoke_models_and_statistics(tmp_path: Path) -> None:
    out = tmp_path / "suite.json"
    report = _suite().main(["--smoke", "--only", "models", "statistics", "--peak-tflops", "1", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert report["format"] == "sdeval-gpu-suite" and report["environment"]["smoke"] is True
    assert report["environment"]["peak_tflops"] == 1.0 and report["environment"]["device"] == "cpu"
    _check_models(report["models"])
    stats = report["statistics"]
    assert stats["intervals"] == ["fid", "kid", "precision", "recall"]
    assert 0 < stats["precision"] < 1 and 0 < stats["recall"] < 1
    assert _positive(stats["pr_seconds"]) and _positive(stats["intervals_seconds"])
    assert report["scoring"] is None


def test_the_configs_are_the_published_architectures() -> None:
    """Parameter counts of the published models: SD 1.5 UNet 859.5M, SDXL UNet 2567.5M, their VAE 83.65M."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel  # pyright: ignore[reportPrivateImportUsage]  # lazy export

    suite = _suite()
    expected = {"sd15_unet.json": 859_520_964, "sdxl_unet.json": 2_567_463_684}
    expected |= {"sd15_vae.json": 83_653_863, "sdxl_vae.json": 83_653_863}
    for name, params in expected.items():
        cls = UNet2DConditionModel if "unet" in name else AutoencoderKL
        with torch.device("meta"):  # shapes only: no memory, no init time
            model = cls(**suite.load_config(name))
        assert sum(p.numel() for p in model.parameters()) == params, name


def test_device_peaks() -> None:
    import torch

    suite = _suite()
    assert suite.device_peak(torch.device("cpu"), None)[1] is None
    assert suite.device_peak(torch.device("cpu"), 2.0)[1] == 2e12


@pytest.mark.slow
def test_smoke_everything(tmp_path: Path) -> None:
    """The whole smoke run, scoring included (torch-fidelity, a CLIP pass and sdeval over 8 PNGs, with decode
    workers: 7 s on two idle cores, over a minute on busy ones); writes the Markdown section."""
    markdown = tmp_path / "section.md"
    report = _suite().main(["--smoke", "--peak-tflops", "1", "--markdown", str(markdown)])
    _check_models(report["models"])
    scoring = report["scoring"]
    assert set(scoring["seconds"]) == {"torch-fidelity inception", "clip pass", "sdeval"}
    assert all(_positive(v) for v in scoring["seconds"].values()) and _positive(scoring["speedup"])
    assert scoring["images"] == 8
    text = markdown.read_text()
    assert text.startswith("## GPU suite") and "| sdxl | vae decode | 64 |" in text and "Precision/recall" in text
