"""The generation benchmark: its SD 1.5 architecture is the real size, and its smoke mode runs on CPU."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from generate_fixtures import sdeval_cache_fixture  # noqa: F401  (registers the sdeval_cache fixture)

_PATH = Path(__file__).parents[1] / "benchmarks" / "bench_generate.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_generate", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sd15_unet_config_has_the_published_size_and_cost() -> None:
    """Built on the meta device (no memory, no compute): 859.5M parameters, ~0.8 TFLOP per call at 512x512."""
    import torch
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    bench = _bench()
    with torch.device("meta"):
        unet = UNet2DConditionModel(**bench.SD15_UNET)
    assert sum(p.numel() for p in unet.parameters()) == pytest.approx(859.52e6, rel=1e-3)
    x = torch.empty(1, 4, 64, 64, device="meta")
    ctx = torch.empty(1, 77, 768, device="meta")
    with FlopCounterMode(display=False) as counter:
        unet(x, torch.tensor([10], device="meta"), ctx)
    assert counter.get_total_flops() / 1e12 == pytest.approx(0.80, rel=0.02)


def test_smoke_mode_runs_on_cpu(sdeval_cache: Path, tmp_path: Path) -> None:
    report = _bench().main(["--smoke", "--batch-sizes", "1,2", "--images", "2", "--json", str(tmp_path / "r.json")])
    assert report["mode"] == "smoke" and report["size"] == 64 and report["steps"] == 2
    assert [(r["runner"], r["batch"]) for r in report["rows"]] == [
        ("diffusers loop", 1),
        ("sdeval", 1),
        ("sdeval", 2),
    ]
    assert all(r["images_per_s"] > 0 and 0 < r["flop_utilisation"] < 1 for r in report["rows"])
    assert (tmp_path / "r.json").is_file()
