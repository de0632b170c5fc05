"""End-to-end generation on CPU with the tiny-random checkpoint saved to and loaded from disk."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from generate_fixtures import (
    assert_same_images,
    index_rows,
    load_images,
    manifest_rows,
    sdeval_cache_fixture,  # noqa: F401  (registers the sdeval_cache fixture)
    write_config,
)

from sdeval.cli import main
from sdeval.core.errors import SdevalError, Terminated
from sdeval.generate import runner as runner_mod
from sdeval.generate.config import load_config
from sdeval.generate.runner import run_generate
from sdeval.generate.writer import META_KEY, shard_dir

pytestmark = pytest.mark.usefixtures("sdeval_cache")


def _run(path: Path, **kwargs: object):
    return run_generate(load_config(path), progress=False, **kwargs)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, sdeval_cache: Path) -> dict[str, np.ndarray]:
    """An uninterrupted batch-2 run of the default test config: the images every variant must reproduce."""
    folder = tmp_path_factory.mktemp("reference")
    _run(write_config(folder))
    return load_images(folder / "out")


def test_minimal_config_via_cli(tmp_path: Path) -> None:
    """The config from the issue, as written, through the CLI."""
    (tmp_path / "prompts.jsonl").write_text('{"id": "p1", "prompt": "a cat"}\n{"id": "p2", "prompt": "a dog"}\n')
    (tmp_path / "c.yaml").write_text(
        "checkpoints:\n  - {name: tiny, path: tiny-random}\npipeline: text2image\nsuite: prompts.jsonl\n"
        "seeds_per_prompt: 2\nbase_seed: 0\nsettings: {guidance_scale: [3.0, 7.5], num_inference_steps: 4,"
        " width: 64, height: 64, scheduler: ddim}\nbatch_size: 2\noutput_dir: out\ndevice: cpu\n"
    )
    result = CliRunner().invoke(main, ["generate", str(tmp_path / "c.yaml"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("generated 8, skipped 0 (already done) of 8")
    out = tmp_path / "out"
    images = load_images(out)
    assert len(images) == 8
    assert all(a.shape == (64, 64, 3) for a in images.values())
    assert {Path(f).parts[1] for f in images} == {"g3-s4-ddim-64x64-fp32", "g7.5-s4-ddim-64x64-fp32"}
    rows = manifest_rows(out)
    assert sorted(r["file"] for r in rows) == sorted(images)
    record = json.loads((out / "run.json").read_text())
    assert record["images_generated"] == 8 and record["world_size"] == 1
    assert record["config_sha256"] == load_config(tmp_path / "c.yaml").sha256
    assert record["images_per_s"] > 0 and record["s_per_image"] > 0
    assert record["versions"]["diffusers"] and record["device"]["device"] == "cpu"
    # Second run: nothing to do.
    again = CliRunner().invoke(main, ["generate", str(tmp_path / "c.yaml"), "--quiet"])
    assert again.stdout.startswith("generated 0, skipped 8 (already done) of 8")
    assert len(manifest_rows(out)) == 8
    record = json.loads((out / "run.json").read_text())
    assert record["images_generated"] == 0 and record["images_skipped"] == 8
    assert record["previous_runs"][-1]["images_generated"] == 8  # the first run's figures are kept


def test_png_metadata_and_manifest_follow_the_format(tmp_path: Path, reference: dict[str, np.ndarray]) -> None:
    from PIL import Image

    path = write_config(tmp_path)
    _run(path)
    out = tmp_path / "out"
    rows = {r["file"]: r for r in manifest_rows(out)}
    assert sorted(rows) == sorted(reference)
    row = rows[next(f for f in rows if "/p3__" in f)]
    with Image.open(out / row["file"]) as im:
        meta = json.loads(im.info[META_KEY])
        assert "Negative prompt: blurry" in im.info["parameters"]
    for key in (
        "sdeval_version",
        "prompt",
        "negative_prompt",
        "prompt_id",
        "seed",
        "seed_index",
        "checkpoint",
        "checkpoint_hash",
        "setting_id",
        "settings",
    ):
        assert key in meta, key
    assert meta["prompt"] == "a blue sphere" and meta["negative_prompt"] == "blurry"
    assert meta["settings"]["guidance_scale"] == 7.5 and meta["settings"]["scheduler"] == "ddim"
    assert len(meta["checkpoint_hash"]) == 64
    assert row["id"] == "p3" and row["seed"] == meta["seed"] and row["prompt"] == meta["prompt"]
    assert not row["file"].startswith("/") and ".." not in row["file"]
    assert set(row) == {"file", "id", "prompt", "negative_prompt", "seed", "category", "checkpoint", "settings"}
    cat = rows[next(f for f in rows if "/p2__" in f)]
    assert cat["category"] == "animals"


def test_same_config_twice_gives_the_same_images(tmp_path: Path, reference: dict[str, np.ndarray]) -> None:
    _run(write_config(tmp_path))
    images = load_images(tmp_path / "out")
    assert_same_images(images, reference)
    # The comparison means something: different seeds give different images.
    arrays = list(images.values())
    assert np.abs(arrays[0] - arrays[1]).max() > 10


@pytest.mark.parametrize("batch_size", [1, 3])
def test_batch_size_does_not_change_images(tmp_path: Path, reference: dict[str, np.ndarray], batch_size: int) -> None:
    _run(write_config(tmp_path, batch_size=batch_size))
    assert_same_images(load_images(tmp_path / "out"), reference)


def test_image_matches_a_plain_diffusers_call(tmp_path: Path, reference: dict[str, np.ndarray]) -> None:
    """An image is reproducible outside sdeval: a batch-1 diffusers call with a CPU generator seeded with its seed."""
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from sdeval.generate.tiny import tiny_random_path

    pipe = StableDiffusionPipeline.from_pretrained(tiny_random_path())
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    file = next(f for f in reference if "/p2__" in f)
    seed = int(file.rsplit("__s", 1)[1][:-4])
    image = pipe(
        "a photo of a cat",
        generator=torch.Generator("cpu").manual_seed(seed),
        num_inference_steps=2,
        guidance_scale=7.5,
        width=32,
        height=32,
    ).images[0]
    assert_same_images({file: np.asarray(image, dtype=np.int16)}, {file: reference[file]})


class _Boom(Exception):
    pass


def test_failure_mid_run_then_resume_equals_uninterrupted(
    tmp_path: Path, reference: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path)
    real = runner_mod.generate_batch
    calls = {"n": 0}

    def flaky(*args: object, **kwargs: object):
        calls["n"] += 1
        if calls["n"] == 3:
            raise _Boom("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(runner_mod, "generate_batch", flaky)
    with pytest.raises(_Boom):
        _run(path)
    out = tmp_path / "out"
    partial = load_images(out)
    assert 0 < len(partial) < len(reference)
    # The interrupted run already left a manifest that lists exactly what is on disk.
    assert sorted(r["file"] for r in manifest_rows(out)) == sorted(partial)
    monkeypatch.setattr(runner_mod, "generate_batch", real)
    result = _run(path)
    assert result.skipped == len(partial) and result.generated == len(reference) - len(partial)
    assert_same_images(load_images(out), reference)
    rows = manifest_rows(out)
    assert sorted(r["file"] for r in rows) == sorted(reference)  # no duplicates, none missing


@pytest.mark.parametrize(
    ("raised", "code", "said", "flags"),
    [
        (KeyboardInterrupt, 130, "interrupted", []),
        (Terminated, 143, "terminated (SIGTERM)", ["--overwrite", "--quiet"]),
    ],
)
def test_a_stopped_run_says_what_it_kept_and_the_command_that_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raised: type[BaseException], code: int, said: str, flags: list
) -> None:
    path = write_config(tmp_path)  # 3 prompts x 2 seeds, batches of 2
    real = runner_mod.generate_batch
    calls = {"n": 0}

    def stopped(*args: object, **kwargs: object):
        calls["n"] += 1
        if calls["n"] == 3:
            raise raised()
        return real(*args, **kwargs)

    monkeypatch.setattr(runner_mod, "generate_batch", stopped)
    result = CliRunner().invoke(main, ["generate", str(path), *flags])
    assert result.exit_code == code, result.output
    out = tmp_path / "out"
    assert len(load_images(out)) == 4
    rerun = " ".join(["sdeval", "generate", str(path), *flags])
    last = result.stderr.rstrip("\n").rsplit("\n", 1)[-1]  # after the progress bar's lines
    assert last == f"{said}: 4 of 6 images are kept in {out}; to resume, run: {rerun}"
    if "--quiet" not in flags:
        assert "generate (tiny/g7.5-s2-ddim-32x32-fp32)" in result.stderr  # the bar says what it counts
    monkeypatch.setattr(runner_mod, "generate_batch", real)
    resumed = CliRunner().invoke(main, rerun.split()[1:])
    assert resumed.exit_code == 0 and resumed.stdout.startswith("generated 2, skipped 4 (already done) of 6")


def test_every_progress_bar_says_what_it_counts() -> None:
    import ast

    unlabelled = []
    for module in sorted((Path(__file__).parents[1] / "sdeval").rglob("*.py")):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", None))  # tqdm(...) or tqdm.tqdm(...)
            if name == "tqdm" and not any(k.arg == "desc" for k in node.keywords):
                unlabelled.append(f"{module.name}:{node.lineno}")
    assert unlabelled == []


# The interruption tests' run: 60 images, enough that a signal lands mid-run even on a fast machine (24 could all
# finish in one poll).
SIXTY = {"guidance_scale": [3.0, 7.5], "num_inference_steps": 2, "width": 32, "height": 32, "scheduler": "ddim"}


@pytest.fixture(scope="module")
def sixty(tmp_path_factory: pytest.TempPathFactory, sdeval_cache: Path) -> dict[str, np.ndarray]:
    """The 60-image run uninterrupted (batches of 4), once: what every interrupted and resumed run must equal."""
    folder = tmp_path_factory.mktemp("sixty")
    _run(write_config(folder, settings=SIXTY, seeds_per_prompt=10, batch_size=4))
    return load_images(folder / "out")


# About 13 s (a process that starts torch and diffusers): opt-in. Its fast twin stays in the default run: test_bench's
# SIGKILL mid-generation through the same runner and writer, whose rerun equals the uninterrupted run image for
# image and leaves no temporary file; SIGTERM's resume below runs this pipeline.
@pytest.mark.slow
def test_sigkill_mid_run_then_resume_equals_uninterrupted(tmp_path: Path, sixty: dict[str, np.ndarray]) -> None:
    """A real SIGKILL while images are being written; the resumed run must equal an uninterrupted one."""
    path = write_config(tmp_path / "killed", settings=SIXTY, seeds_per_prompt=10, batch_size=1)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sdeval", "generate", str(path), "--quiet"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    out = tmp_path / "killed" / "out"
    deadline = time.time() + 120
    try:
        while len(list(out.rglob("*.png"))) < 3 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done_before = len(load_images(out))
    assert 3 <= done_before < 60, "the kill should land mid-run"
    _run(path)
    assert_same_images(load_images(out), sixty)
    rows = manifest_rows(out)
    assert len(rows) == 60 and len({r["file"] for r in rows}) == 60
    assert not list(out.rglob("*.tmp"))


def test_ctrl_c_keeps_finished_images_and_a_usable_manifest(tmp_path: Path) -> None:
    settings = {"guidance_scale": [3.0, 7.5], "num_inference_steps": 2, "width": 32, "height": 32, "scheduler": "ddim"}
    # 600 images, so that Ctrl-C lands mid-run even on a fast machine; the run stops at the signal.
    path = write_config(tmp_path, settings=settings, seeds_per_prompt=100, batch_size=1)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sdeval", "generate", str(path), "--quiet"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell that starts the test suite in the background makes SIGINT ignored, and the child
        # would inherit that; give it the default so Python turns Ctrl-C into KeyboardInterrupt.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    out = tmp_path / "out"
    deadline = time.time() + 120
    while len(list(out.rglob("*.png"))) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-2000:]
    on_disk = load_images(out)
    assert 3 <= len(on_disk) < 600
    said = f"interrupted: {len(on_disk)} of 600 images are kept in {out}; to resume, run: sdeval generate"
    assert stderr.strip().splitlines()[-1] == f"{said} {path} --quiet"
    assert sorted(r["file"] for r in manifest_rows(out)) == sorted(on_disk)


def test_sigterm_mid_run_exits_143_and_resume_equals_uninterrupted(
    tmp_path: Path, sixty: dict[str, np.ndarray]
) -> None:
    """SIGTERM (SLURM, Kubernetes) is handled like Ctrl-C: in-flight writes finish, the manifest is merged,
    exit 143; the resumed run equals an uninterrupted one."""
    path = write_config(tmp_path / "termed", settings=SIXTY, seeds_per_prompt=10, batch_size=1)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sdeval", "generate", str(path), "--quiet"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out = tmp_path / "termed" / "out"
    deadline = time.time() + 120
    while len(list(out.rglob("*.png"))) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr[-2000:]
    assert "Traceback" not in stderr
    on_disk = load_images(out)
    assert 3 <= len(on_disk) < 60, "the signal should land mid-run"
    said = f"terminated (SIGTERM): {len(on_disk)} of 60 images are kept in {out}; to resume, run: sdeval generate"
    assert stderr.strip().splitlines()[-1] == f"{said} {path} --quiet"
    assert sorted(r["file"] for r in manifest_rows(out)) == sorted(on_disk)
    assert not list(out.rglob("*.tmp"))
    _run(path)
    assert_same_images(load_images(out), sixty)


def test_kill_between_image_and_manifest_row_is_healed(tmp_path: Path, reference: dict[str, np.ndarray]) -> None:
    """Simulate every crash window: image without row, torn shard line, leftover temp file, lost manifest."""
    path = write_config(tmp_path)
    _run(path)
    out = tmp_path / "out"
    rows = manifest_rows(out)
    full = index_rows(out)
    # Crash after an image's rename but before its row: two images have no row anywhere.
    (out / ".sdeval" / "index.jsonl").write_text("".join(json.dumps(r) + "\n" for r in full[2:]))
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[2:]))
    # Crash mid-append: a torn line in a shard.
    shard_dir(out).mkdir(parents=True, exist_ok=True)
    (shard_dir(out) / "rank00000-of-00001.jsonl").write_text('{"file": "tiny/x.png", "pro')
    # Crash mid-write: a temp file beside the images.
    leftover = out / rows[0]["file"]
    (leftover.parent / f".{leftover.name}.abc.tmp").write_bytes(b"\x89PNG partial")
    result = _run(path)
    assert result.generated == 0 and result.skipped == len(reference)
    fixed = manifest_rows(out)
    assert sorted(r["file"] for r in fixed) == sorted(reference)
    assert {json.dumps(r, sort_keys=True) for r in fixed} == {json.dumps(r, sort_keys=True) for r in rows}
    assert index_rows(out) == full
    assert not list(out.rglob("*.tmp"))
    # And --merge-only rebuilds a deleted manifest and state folder from the images alone.
    (out / "manifest.jsonl").unlink()
    shutil.rmtree(out / ".sdeval")
    merged = CliRunner().invoke(main, ["generate", str(path), "--merge-only"])
    assert merged.exit_code == 0, merged.output
    assert sorted(r["file"] for r in manifest_rows(out)) == sorted(reference)
    assert index_rows(out) == full


def test_changed_inputs_are_detected_not_silently_kept(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    _run(path)
    out = tmp_path / "out"
    before = load_images(out)
    # Same prompt ids, new text: the existing images no longer match their plan entries.
    prompts = [
        {"id": "p1", "prompt": "a green cube"},
        {"id": "p2", "prompt": "a photo of a cat", "category": "animals"},
        {"id": "p3", "prompt": "a blue sphere", "negative_prompt": "blurry"},
    ]
    path = write_config(tmp_path, prompts=prompts)
    with pytest.raises(SdevalError, match=r"output_dir: 2 existing image\(s\) were made with different inputs"):
        _run(path)
    result = _run(path, overwrite=True)
    assert result.generated == 2
    after = load_images(out)
    changed = [f for f in after if np.abs(after[f] - before[f]).max() > 0]
    assert changed and all("/p1__" in f for f in changed)
    rows = manifest_rows(out)
    assert len(rows) == len(before)
    assert {r["prompt"] for r in rows if r["id"] == "p1"} == {"a green cube"}


def test_image2image(tmp_path: Path) -> None:
    from PIL import Image

    (tmp_path / "init").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for pid in ("p1", "p2"):
        Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)).save(tmp_path / "init" / f"{pid}.png")
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(tmp_path / "own.jpg")
    prompts = [
        {"id": "p1", "prompt": "a red cube"},
        {"id": "p2", "prompt": "a cat"},
        {"id": "p3", "prompt": "a grey square", "init_image": "own.jpg"},
    ]
    settings = {
        "num_inference_steps": 4,
        "strength": [0.5, 1.0],
        "width": 32,
        "height": 32,
        "scheduler": "euler_a",
    }
    path = write_config(tmp_path, prompts=prompts, pipeline="image2image", init_images="init", settings=settings)
    _run(path)
    out = tmp_path / "out"
    images = load_images(out)
    assert len(images) == 3 * 2 * 2
    assert all(a.shape == (32, 32, 3) for a in images.values())
    rows = index_rows(out)
    assert {r["settings"]["strength"] for r in rows} == {0.5, 1.0}
    assert all(r["pipeline"] == "image2image" and len(r["init_image_sha256"]) == 64 for r in rows)
    # Batch-independent too (the init latents are sampled from each image's own generator).
    path1 = write_config(
        tmp_path / "b1",
        prompts=prompts,
        pipeline="image2image",
        init_images=str(tmp_path / "init"),
        settings=settings,
        batch_size=1,
    )
    (tmp_path / "b1" / "own.jpg").write_bytes((tmp_path / "own.jpg").read_bytes())
    _run(path1)
    assert_same_images(load_images(tmp_path / "b1" / "out"), images)


@pytest.mark.parametrize("scheduler", ["euler", "dpmpp_2m_karras", "dpmpp_2m_sde", "unipc", "heun", "lms", "pndm"])
def test_schedulers_run_and_stay_batch_independent(tmp_path: Path, scheduler: str) -> None:
    settings = {"num_inference_steps": 3, "width": 32, "height": 32, "scheduler": scheduler}
    prompts = [{"id": "p1", "prompt": "a red cube"}]
    _run(write_config(tmp_path / "a", prompts=prompts, settings=settings, seeds_per_prompt=3, batch_size=3))
    _run(write_config(tmp_path / "b", prompts=prompts, settings=settings, seeds_per_prompt=3, batch_size=1))
    a, b = load_images(tmp_path / "a" / "out"), load_images(tmp_path / "b" / "out")
    assert len(a) == 3
    assert_same_images(a, b)
