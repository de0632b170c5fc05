"""The work plan: stable seeds, setting ids, deterministic disjoint shards, batching rules."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from generate_fixtures import write_config

from sdeval.core.errors import ConfigError
from sdeval.generate.config import load_config
from sdeval.generate.plan import (
    CheckpointIdentity,
    batches,
    build_plan,
    derive_seed,
    prompt_seeds,
    setting_id,
)
from sdeval.generate.suite import load_suite


def _plan(tmp_path: Path, **overrides: object):
    cfg = load_config(write_config(tmp_path, **overrides))
    suite = load_suite(cfg.suite)
    ids = {c.name: CheckpointIdentity(sha256="0" * 64) for c in cfg.checkpoints}
    return build_plan(cfg, suite, "cpu", ids)


def test_seed_is_a_pinned_function_of_base_prompt_and_index() -> None:
    # Pinned: changing the derivation silently would change every image of every past run.
    assert derive_seed(0, "p1", 0) == 1879710212
    assert derive_seed(0, "p1", 1) == 315673148
    assert derive_seed(1, "p1", 0) != derive_seed(0, "p1", 0)
    assert derive_seed(0, "p2", 0) != derive_seed(0, "p1", 0)


def test_seed_does_not_depend_on_python_hash_randomization() -> None:
    code = "from sdeval.generate.plan import derive_seed; print(derive_seed(7, 'abc', 3))"
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={"PYTHONHASHSEED": str(h), "PYTHONPATH": str(Path(__file__).parents[1])},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for h in (1, 2)
    }
    assert outs == {f"{derive_seed(7, 'abc', 3)}\n"}


def test_explicit_seeds_are_used_as_given(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, seeds_per_prompt=None, seeds=[42, 7]))
    assert prompt_seeds(cfg, "p1") == [42, 7] == prompt_seeds(cfg, "p2")


def test_seed_list_grows_without_changing_earlier_seeds(tmp_path: Path) -> None:
    small = prompt_seeds(load_config(write_config(tmp_path / "a", seeds_per_prompt=3)), "p1")
    large = prompt_seeds(load_config(write_config(tmp_path / "b", seeds_per_prompt=50)), "p1")
    assert large[:3] == small
    assert len(set(large)) == 50


def test_setting_ids_are_readable_and_distinct(tmp_path: Path) -> None:
    plan = _plan(
        tmp_path,
        settings={
            "guidance_scale": [3.0, 7.5],
            "num_inference_steps": 2,
            "width": 32,
            "height": 32,
            "negative_prompt": [None, "ugly"],
        },
    )
    ids = sorted({i.setting_id for i in plan.items})
    assert ids[0] == "g3-s2-default-32x32-fp32"
    assert len(ids) == 4
    assert any("-neg" in i for i in ids)


def test_colliding_setting_ids_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="settings: two grid points share the id"):
        _plan(tmp_path, settings={"guidance_scale": [7.5, 7.5000001]})


def test_fp16_on_cpu_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"settings\.dtype: fp16 needs a GPU"):
        _plan(tmp_path, settings={"dtype": "fp16"})


def test_plan_order_and_files(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    assert len(plan.items) == 3 * 2
    assert [i.index for i in plan.items] == list(range(6))
    first = plan.items[0]
    assert first.file == f"tiny/{first.setting_id}/p1__s{first.seed}.png"
    assert len({i.file for i in plan.items}) == len(plan.items)


@pytest.mark.parametrize("world", [1, 2, 3, 4, 7])
def test_shards_partition_the_plan(tmp_path: Path, world: int) -> None:
    plan = _plan(tmp_path, settings={"guidance_scale": [1.0, 2.0, 3.0]})
    shards = [plan.shard(r, world) for r in range(world)]
    files = [i.file for s in shards for i in s]
    assert sorted(files) == sorted(i.file for i in plan.items)
    assert len(files) == len(set(files))
    assert max(len(s) for s in shards) - min(len(s) for s in shards) <= 1


def test_batches_never_mix_settings_or_negative_kinds(tmp_path: Path) -> None:
    plan = _plan(tmp_path, settings={"guidance_scale": [1.0, 2.0]}, seeds_per_prompt=3)
    got = list(batches(plan.items, 4))
    assert sorted(i.file for b in got for i in b) == sorted(i.file for i in plan.items)
    for batch in got:
        assert len(batch) <= 4
        assert len({i.batch_key for i in batch}) == 1
    # p3 carries its own negative prompt, so it never shares a batch with p1/p2 (no negative prompt).
    assert any(all(i.prompt.id == "p3" for i in b) for b in got)


def test_per_call_noise_schedulers_go_one_per_batch(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    items = [replace(i, setting=replace(i.setting, scheduler="dpmpp_sde")) for i in plan.items]
    assert all(len(b) == 1 for b in batches(items, 4, frozenset({"dpmpp_sde"})))


def test_setting_id_format() -> None:
    from sdeval.generate.config import Setting

    s = Setting(7.5, 30, "ddim", 512, 512, None, None, "fp16")
    assert setting_id(s) == "g7.5-s30-ddim-512x512-fp16"
    s2 = Setting(7.5, 30, "ddim", None, None, None, 0.6, "fp32")
    assert setting_id(s2) == "g7.5-s30-ddim-native-str0.6-fp32"
