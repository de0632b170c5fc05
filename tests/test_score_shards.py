"""Scoring past one process: array-job shards (`score --shard I/N`, `merge`) and a torchrun launch each give the
results of scoring every image in one process; missing, repeated, overlapping and mismatched shards are refused."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import TINY_CLIP, TINY_CLIP_CONFIG

from sdeval.cli import main
from sdeval.score.demo import make_image_set

PROMPTS = ["a red cube", "a cat", "a blue sphere", "a dog", "a green cone"]
METRICS = "fid,kid,is,pr,clip,rprecision,cmmd,diversity"


def _run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """20 images with prompts (5 prompts x 4 seeds) in a manifest, and a 16-image reference; one broken file."""
    root = tmp_path_factory.mktemp("shards")
    paths = make_image_set(root / "images", 20, seed=5, size=40)
    (root / "images" / "broken.png").write_bytes(b"not a png")
    rows = [{"file": p.name, "prompt": PROMPTS[i % 5], "id": f"p{i % 5}", "seed": i // 5} for i, p in enumerate(paths)]
    (root / "images" / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    make_image_set(root / "ref", 16, seed=6, size=40, style="spots")
    return root


@pytest.fixture(scope="module")
def reference(folder, inception_weights, tiny_name, tiny_clip_weights) -> Path:
    """The reference as a file, built once (Inception features and the CMMD model's embeddings)."""
    out = folder / "ref.npz"
    clip = tiny_clip_weights[0]
    built = _run("reference", "build", folder / "ref", "-o", out, "--cmmd-model", tiny_name, "--cmmd-pretrained", clip,
                 "--inception-weights", inception_weights, "--no-cache", "--workers", 0)  # fmt: skip
    assert built.exit_code == 0, built.output
    return out


def _options(folder: Path, reference: Path, inception_weights: str, tiny_name: str, clip: str) -> list[object]:
    """Batches of one: BLAS results can change in the last bit with a batch's composition, and the shares batch
    their images and prompts differently from one process; one image (one prompt) at a time makes rows identical."""
    manifest = folder / "images" / "manifest.jsonl"
    return [folder / "images", "--metrics", METRICS, "-r", reference, "--prompts", manifest,
            "--inception-weights", inception_weights, "--clip-model", tiny_name, "--clip-pretrained", clip,
            "--cmmd-model", tiny_name, "--cmmd-pretrained", clip, "--kid-subset-size", 10, "--no-cache",
            "--workers", 0, "--batch-size", 1]  # fmt: skip


@pytest.fixture(scope="module")
def whole(folder, reference, inception_weights, tiny_name, tiny_clip_weights, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("whole") / "results.json"
    result = _run("score", *_options(folder, reference, inception_weights, tiny_name, tiny_clip_weights[0]), "-o", out)
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())


def assert_same_results(a: dict, b: dict) -> None:
    """The same cells, metrics (FID to 1e-9) and per-image rows; provenance and timing may differ, and so may how
    many prompt embeddings were computed (each shard embeds the prompts of its own images)."""
    assert a["images"] == b["images"] and a["reference"] == b["reference"]
    assert {**(a["prompts"] or {}), "n_text_computed": 0} == {**(b["prompts"] or {}), "n_text_computed": 0}
    assert [c["id"] for c in a["cells"]] == [c["id"] for c in b["cells"]]
    for ca, cb in zip(a["cells"], b["cells"], strict=True):
        assert ca["per_image"] == cb["per_image"]
        assert ca["protocol"] == cb["protocol"] and ca["warnings"] == cb["warnings"]
        assert set(ca["metrics"]) == set(cb["metrics"])
        for key, ea in ca["metrics"].items():
            eb = cb["metrics"][key]
            assert set(ea) == set(eb), key
            if ea["value"] is None:
                assert ea == eb
            else:
                assert eb["value"] == pytest.approx(ea["value"], rel=1e-9, abs=1e-12), key
                others = {k: v for k, v in ea.items() if k not in ("value", "std", "interval")}
                assert others == {k: v for k, v in eb.items() if k not in ("value", "std", "interval")}, key


def test_array_job_shards_merge_into_the_whole(
    folder, reference, whole, inception_weights, tiny_name, tiny_clip_weights, tmp_path
):
    options = _options(folder, reference, inception_weights, tiny_name, tiny_clip_weights[0])
    parts = []
    for index in (2, 0, 1):  # any order
        part = tmp_path / f"part_{index}.json"
        result = _run("score", *options, "--shard", f"{index}/3", "-o", part)
        assert result.exit_code == 0, result.output
        assert f"part {index}/3:" in result.output and "sdeval merge" in result.output
        parts.append(part)
    out = tmp_path / "merged.json"
    merged = _run("merge", *parts, "-o", out)
    assert merged.exit_code == 0, merged.output
    document = json.loads(out.read_text())
    assert_same_results(whole, document)
    assert (tmp_path / "merged.state.npz").is_file()
    assert [s["path"] for s in document["images"]["skipped"]] == ["broken.png"]

    # Refusals, each naming the shard or the part.
    p0, p1, p2 = (tmp_path / f"part_{i}.json" for i in range(3))
    missing = _run("merge", p0, p2, "-o", tmp_path / "x.json")
    assert missing.exit_code == 2 and "shard(s) 1/3 missing" in missing.output
    twice = _run("merge", p0, p2, p1, p2, "-o", tmp_path / "x.json")
    assert twice.exit_code == 2 and f"shard 2/3 is given twice ({p2} and {p2})" in twice.output
    other_split = _edited(p1, tmp_path / "half.json", shard=[1, 2])
    mixed = _run("merge", p0, other_split, "-o", tmp_path / "x.json")
    assert mixed.exit_code == 2 and "different splits" in mixed.output
    reseeded = _edited(p1, tmp_path / "reseeded.json", options={**json.loads(p1.read_text())["options"], "seed": 7})
    mismatch = _run("merge", p0, reseeded, p2, "-o", tmp_path / "x.json")
    assert mismatch.exit_code == 2 and "different options (seed)" in mismatch.output
    assert not (tmp_path / "x.json").exists()
    not_a_part = _run("merge", out, "-o", tmp_path / "x.json")
    assert not_a_part.exit_code == 2 and "not a part of `sdeval score --shard`" in not_a_part.output
    no_out = _run("score", *options, "--shard", "0/3")
    assert no_out.exit_code == 2 and "give -o part_I.json" in no_out.output


def _edited(part: Path, to: Path, **fields: object) -> Path:
    """A copy of a part file with some fields changed (its arrays are the original's)."""
    document = json.loads(part.read_text())
    document.update(fields, arrays=str(part.with_suffix(".npz")))
    to.write_text(json.dumps(document))
    return to


@pytest.fixture
def reference_folder(folder, tmp_path) -> Path:
    """The 16 reference images as a folder, with one file that does not decode (sorted last: share 1 of 3 has it)."""
    ref = tmp_path / "ref"
    shutil.copytree(folder / "ref", ref)
    (ref / "zz_broken.png").write_bytes(b"not a png")
    return ref


def test_each_shard_extracts_its_share_of_a_reference_folder_and_the_merge_is_the_whole(
    folder, reference_folder, inception_weights, tiny_name, tiny_clip_weights, tmp_path
):
    """A reference folder is split as the images are: every shard extracts only its share of it, and the merged
    reference is the one a single process extracts: the same rows in the same order, the same FID to the bit."""
    clip = tiny_clip_weights[0]
    args = [folder / "images", "--metrics", "fid,kid,pr,cmmd", "-r", reference_folder, "--kid-subset-size", 10,
            "--inception-weights", inception_weights, "--cmmd-model", tiny_name, "--cmmd-pretrained", clip,
            "--no-cache", "--workers", 0, "--batch-size", 1]  # fmt: skip
    whole = tmp_path / "whole.json"
    assert _run("score", *args, "-o", whole).exit_code == 0
    listing = sorted(p.name for p in reference_folder.iterdir())
    parts = []
    for index in (2, 0, 1):
        part = tmp_path / f"part_{index}.json"
        result = _run("score", *args, "--shard", f"{index}/3", "-o", part)
        assert result.exit_code == 0, result.output
        share = json.loads(part.read_text())["reference"]
        mine = listing[index::3]  # every 3rd file of the sorted listing from the index-th, as for the images
        assert share["share"] == [index, 3] and share["n_listed"] == 17
        assert share["paths"] == [p for p in mine if p != "zz_broken.png"] and share["n"] == len(share["paths"])
        assert share["skipped"] == (["zz_broken.png"] if "zz_broken.png" in mine else [])
        parts.append(part)
    merged = tmp_path / "merged.json"
    assert _run("merge", *parts, "-o", merged).exit_code == 0
    a, b = json.loads(whole.read_text()), json.loads(merged.read_text())
    assert_same_results(a, b)
    assert a["reference"] == b["reference"] and b["reference"]["n"] == 16
    assert a["cells"][0]["metrics"]["fid"]["value"] == b["cells"][0]["metrics"]["fid"]["value"]
    with np.load(tmp_path / "whole.state.npz") as one, np.load(tmp_path / "merged.state.npz") as joined:
        for name in ("reference_pool", "reference_cmmd_image"):
            assert np.array_equal(one[name], joined[name]), name  # same rows, same order

    # The shares must cover the folder as it was: a share made from a changed folder is refused.
    p0, p1, p2 = (tmp_path / f"part_{i}.json" for i in range(3))
    changed = json.loads(p1.read_text())["reference"]
    grown = _edited(p1, tmp_path / "grown.json", reference={**changed, "n_listed": 18})
    refused = _run("merge", p0, grown, p2, "-o", tmp_path / "x.json")
    assert refused.exit_code == 2 and "the reference changed between shards" in refused.output


def test_merging_shards_with_intervals(
    folder, reference, whole, inception_weights, tiny_name, tiny_clip_weights, tmp_path
):
    options = _options(folder, reference, inception_weights, tiny_name, tiny_clip_weights[0])
    parts = [tmp_path / f"p{i}.json" for i in range(2)]
    for i, part in enumerate(parts):
        assert _run("score", *options, "--shard", f"{i}/2", "-o", part).exit_code == 0
    out = tmp_path / "ci.json"
    assert _run("merge", *parts, "--ci", "-o", out).exit_code == 0
    cell = json.loads(out.read_text())["cells"][0]
    # Every metric with a value has an interval (README: `--ci` gives one on every metric), IS and diversity too.
    computed = {key for key, entry in cell["metrics"].items() if entry["value"] is not None}
    assert computed == {"fid", "kid", "is", "precision", "recall", "clip", "rprecision", "cmmd", "diversity"}
    assert {key for key, entry in cell["metrics"].items() if "interval" in entry} == computed
    assert "jackknife" in cell["metrics"]["is"]["interval"]["method"]
    assert "bootstrap over prompts" in cell["metrics"]["diversity"]["interval"]["method"]


def _launch(args: list[str], tmp_path: Path, threads: int) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """`sdeval score ARGS` as torchrun launches it (2 processes, gloo on CPU, `threads` threads each): the launch
    script (it registers the tiny open_clip config, as the test fixture does here) and the finished launch."""
    config_folder = tmp_path / "open_clip_configs"
    config_folder.mkdir()
    (config_folder / f"{TINY_CLIP}.json").write_text(json.dumps(TINY_CLIP_CONFIG))
    boot = (
        "import sys, open_clip; open_clip.add_model_config(sys.argv.pop(1)); "
        "from sdeval.cli import main; main(prog_name='sdeval')"
    )
    script = tmp_path / "launch.py"
    script.write_text(boot.replace("; ", "\n"))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           str(config_folder), "score", *args, "-o", str(tmp_path / "results.json")]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return script, proc


def _assert_launched_as_one(single: Path, launched: Path, proc: subprocess.CompletedProcess[str]) -> None:
    """The launch's results are one process's; rank 0 alone wrote them and showed progress, over its share."""
    # A group really came up: only rank 0 writes (without one, both ranks would score everything and both write).
    assert proc.stdout.count("results: ") == 1, proc.stdout
    one, both = json.loads(single.read_text()), json.loads(launched.read_text())
    assert_same_results(one, both)
    assert one["reference"] == both["reference"] and both["reference"]["n"] == 16
    assert one["cells"][0]["metrics"]["fid"]["value"] == both["cells"][0]["metrics"]["fid"]["value"]
    with np.load(single.with_suffix(".state.npz")) as a, np.load(launched.with_suffix(".state.npz")) as b:
        assert np.array_equal(a["reference_pool"], b["reference_pool"])  # the same reference rows, in the same order
    # One progress display, rank 0's, over its share: 9 of the 17 reference files, 11 of the 21 images.
    started = r"features \(%s\):\s+0%%\|[^|]*\| 0/(\d+) "
    assert re.findall(started % "reference", proc.stderr) == ["9"], proc.stderr[-3000:]
    assert re.findall(started % "images", proc.stderr) == ["11"], proc.stderr[-3000:]


# About 25 s: three processes start torch. Its fast twins are the --shard tests above (each share's images and
# reference rows, merged into the whole) and tests/test_feature_inputs.py's ranks test; a real launch stays in
# the default run through tests/test_bench.py's torchrun test, whose ranks score in one process group.
@pytest.mark.slow
def test_torchrun_two_processes_score_as_one_process_here(
    folder, reference_folder, inception_weights, tiny_name, tiny_clip_weights, tmp_path
):
    """A real launch (torchrun, 2 processes, gloo on CPU) against one process's run of the same options in this
    process, with the launch given this process's thread count (BLAS results change in the last bits with it); the
    test below runs the single process fresh as well."""
    import torch

    args = [str(a) for a in _options(folder, reference_folder, inception_weights, tiny_name, tiny_clip_weights[0])]
    single = tmp_path / "single.json"
    result = _run("score", *args, "-o", single)
    assert result.exit_code == 0, result.output
    _, proc = _launch(args, tmp_path, torch.get_num_threads())
    _assert_launched_as_one(single, tmp_path / "results.json", proc)


@pytest.mark.slow  # about 40 s: three fresh processes start torch
def test_torchrun_two_processes_score_as_one(
    folder, reference_folder, inception_weights, tiny_name, tiny_clip_weights, tmp_path
):
    """A real launch (torchrun, 2 processes, gloo on CPU): each rank decodes and extracts its share of the images and
    of the reference folder, rank 0 shows the only progress and writes the results of the whole."""
    args = [str(a) for a in _options(folder, reference_folder, inception_weights, tiny_name, tiny_clip_weights[0])]
    # Both runs in fresh processes with the same threads: BLAS results change in the last bits with the thread count
    # (and a test process's earlier tests may have left other state behind).
    script, proc = _launch(args, tmp_path, 2)
    single = tmp_path / "single.json"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "OMP_NUM_THREADS": "2"}
    one = [sys.executable, str(script), str(tmp_path / "open_clip_configs"), "score", *args, "-o", str(single)]
    done = subprocess.run(one, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_launched_as_one(single, tmp_path / "results.json", proc)
