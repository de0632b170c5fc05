"""Speed options: torch.compile (slow), CUDA fp16 with channels_last and peak memory (needs a GPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from generate_fixtures import (
    assert_same_images,
    load_images,
    sdeval_cache_fixture,  # noqa: F401  (registers the sdeval_cache fixture)
    write_config,
)

from sdeval.generate.config import load_config
from sdeval.generate.runner import run_generate

pytestmark = pytest.mark.usefixtures("sdeval_cache")


def _run(folder: Path, **overrides: object) -> dict:
    run_generate(load_config(write_config(folder, **overrides)), progress=False)
    return load_images(folder / "out")


@pytest.mark.slow
def test_compile_gives_the_same_images(tmp_path: Path) -> None:
    plain = _run(tmp_path / "plain")
    compiled = _run(tmp_path / "compiled", compile=True)
    assert_same_images(compiled, plain, atol=3)


@pytest.mark.gpu
def test_cuda_fp16_run_records_peak_memory_and_is_batch_independent(tmp_path: Path) -> None:
    settings = {"num_inference_steps": 4, "width": 64, "height": 64, "scheduler": "euler_a"}
    batched = _run(tmp_path / "b4", device="cuda", settings=settings, batch_size=4)
    single = _run(tmp_path / "b1", device="cuda", settings=settings, batch_size=1)
    assert all("-fp16/" in f for f in batched)  # dtype auto -> fp16 on CUDA
    assert_same_images(batched, single, atol=4)  # fp16 kernels may pick other algorithms per batch size
    record = json.loads((tmp_path / "b4" / "out" / "run.json").read_text())
    assert record["peak_gpu_memory_bytes"] > 0 and record["device"]["gpu"]
