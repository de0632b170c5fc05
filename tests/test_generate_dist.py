"""Multi-process generation: shards are disjoint and together make exactly the single-process output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from generate_fixtures import (
    assert_same_images,
    load_images,
    manifest_rows,
    sdeval_cache_fixture,  # noqa: F401  (registers the sdeval_cache fixture)
    write_config,
)

from sdeval.generate.config import load_config
from sdeval.generate.runner import run_generate

pytestmark = pytest.mark.usefixtures("sdeval_cache")
SETTINGS = {
    "guidance_scale": [3.0, 7.5],
    "num_inference_steps": 2,
    "width": 32,
    "height": 32,
    "scheduler": "ddim",
}


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory, sdeval_cache: Path) -> Path:
    folder = tmp_path_factory.mktemp("single")
    run_generate(load_config(write_config(folder, settings=SETTINGS)), progress=False)
    return folder / "out"


def _rows_without_version(out: Path) -> list[str]:
    return sorted(
        json.dumps({k: v for k, v in r.items() if k != "sdeval_version"}, sort_keys=True) for r in manifest_rows(out)
    )


def test_independent_shards_add_up_to_the_single_process_run(tmp_path: Path, single: Path) -> None:
    """`--shard I/N` (array jobs, no process group): each shard merges; the last one completes the manifest."""
    cfg = load_config(write_config(tmp_path, settings=SETTINGS, batch_size=3))
    first = run_generate(cfg, shard=(0, 2), progress=False)
    assert 0 < first.generated < first.planned
    assert len(manifest_rows(tmp_path / "out")) == first.generated
    second = run_generate(cfg, shard=(1, 2), progress=False)
    assert first.generated + second.generated == first.planned
    out = tmp_path / "out"
    assert_same_images(load_images(out), load_images(single))
    assert _rows_without_version(out) == _rows_without_version(single)
    record = json.loads((out / "run.json").read_text())
    assert record["world_size"] == 2 and record["images_generated"] == first.planned
    assert len(record["processes"]) == 2


# About 15-19 s: three processes start torch and diffusers. Its fast twin is the --shard test above (the same
# shares, merged into the same manifest and run record); a real launch stays in the default run through
# tests/test_bench.py's torchrun test, whose ranks generate (and score) in one process group.
@pytest.mark.slow
def test_torchrun_two_processes_match_one_process(tmp_path: Path, single: Path, sdeval_cache: Path) -> None:
    """A real 2-process launch (torchrun, gloo on CPU): same images, one merged manifest, one run record."""
    path = write_config(tmp_path, settings=SETTINGS)
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).parents[1]),
        "OMP_NUM_THREADS": "1",
        "SDEVAL_CACHE_DIR": str(sdeval_cache),
    }
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "sdeval", "generate", str(path), "--quiet"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "out"
    assert_same_images(load_images(out), load_images(single))
    assert _rows_without_version(out) == _rows_without_version(single)
    record = json.loads((out / "run.json").read_text())
    assert record["world_size"] == 2
    assert sorted(p["rank"] for p in record["processes"]) == [0, 1]
    assert record["images_generated"] == len(load_images(single))
    assert not list((out / ".sdeval" / "shards").glob("*.jsonl"))  # merged and cleaned by the main process


def test_a_launch_whose_group_does_not_come_up_is_refused(monkeypatch) -> None:
    """Were accelerate to set up fewer processes than the launcher started, every rank would do the whole job and
    all of them would write: refused, naming both counts."""
    import accelerate

    from sdeval.core import distributed
    from sdeval.core.errors import ConfigError

    class NoGroup:
        num_processes, distributed_type = 1, "NO"

        def __init__(self, cpu: bool, timeout) -> None:
            pass

    monkeypatch.setattr(accelerate, "PartialState", NoGroup)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("MASTER_ADDR", "localhost")
    with pytest.raises(ConfigError, match=r"launched as 2 processes \(WORLD_SIZE\) but accelerate set up 1"):
        distributed.detect()
