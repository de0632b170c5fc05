"""The generation loop: plan, skip what is done, generate the rest in batches, write, merge, record."""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sdeval.core import atomic
from sdeval.core import distributed as distmod
from sdeval.core.atomic import check_output_folder
from sdeval.core.errors import OutputError, SdevalError
from sdeval.core.provenance import command as provenance_command
from sdeval.core.provenance import device_info, git_commit, versions
from sdeval.core.version import __version__
from sdeval.generate.config import GenerateConfig
from sdeval.generate.pipelines import (
    Loaded,
    LoadOptions,
    checkpoint_identity,
    generate_batch,
    load_init_image,
    resolve_device,
)
from sdeval.generate.pipelines import load_pipeline as _default_loader
from sdeval.generate.plan import Plan, WorkItem, batches, build_plan, metadata_for
from sdeval.generate.schedulers import SCHEDULERS
from sdeval.generate.suite import load_suite
from sdeval.generate.writer import (
    STATE_DIR,
    ImageWriter,
    ManifestShard,
    MergeResult,
    existing_rows,
    identity,
    merge_manifest,
    read_metadata,
    row_from_metadata,
    shard_dir,
)

RUN_RECORD = "run.json"
_HISTORY_KEYS = ("finished_at", "config_sha256", "world_size", "images_generated", "images_skipped", "images_per_s")
_MAX_HISTORY = 100
#: (checkpoint spec, dtype, options) -> Loaded; injectable so benchmarks can hand in prebuilt pipelines.
Loader = Callable[..., Loaded]


@dataclass
class RunResult:
    planned: int  # images in the whole plan
    assigned: int  # images this process owns
    skipped: int  # already on disk and matching
    generated: int
    load_s: float = 0.0
    generate_s: float = 0.0  # wall time of the generation loop, model loads excluded
    peak_gpu_memory_bytes: int | None = None
    manifest: MergeResult | None = None
    out_dir: Path = field(default_factory=Path)
    rank: int = 0
    world_size: int = 1
    group: bool = False  # part of a launch with a process group (accelerate launch / torchrun)
    record: dict[str, Any] | None = None  # the run record, on the process that wrote it
    files: list[str] = field(default_factory=list)  # this process's share of the plan, relative to out_dir

    @property
    def kept(self) -> int:
        """Images of this process's share on disk: done before, plus written now (all of them once the writer
        has closed, as it has when a run stops)."""
        return self.skipped + self.generated

    @property
    def images_per_s(self) -> float | None:
        return self.generated / self.generate_s if self.generated and self.generate_s > 0 else None


def prepare(config: GenerateConfig, shard: tuple[int, int] | None = None) -> tuple[Plan, distmod.DistContext]:
    """Everything before any model loads: process share, device, suite, checkpoint hashes, plan."""
    ctx = distmod.detect(shard, cpu=config.device == "cpu")  # detect() also knows a machine without an accelerator
    device = resolve_device(config.device, ctx.local_rank, ctx.world_size)
    suite = load_suite(config.suite, need_init_images=config.pipeline == "image2image", init_images=config.init_images)
    identities = {c.name: checkpoint_identity(c) for c in config.checkpoints}
    return build_plan(config, suite, device, identities), ctx


def stopped_run(err: BaseException) -> RunResult | None:
    """What a run that `err` stopped (Ctrl-C, SIGTERM, a failure) had done, once run_generate has kept its images
    and merged its manifest; None when it stopped before its plan was made."""
    return getattr(err, "sdeval_run", None)


def kept_summary(result: RunResult | None) -> str:
    """How many images a stopped run leaves, of how many this process was to make, and where (what `generate` and
    `bench` say when stopped)."""
    if result is None:  # stopped before the plan was made: nothing of this run was written
        return "finished images are kept"
    process = f" (process {result.rank} of {result.world_size})" if result.world_size > 1 else ""
    return f"{result.kept} of {result.assigned} images{process} are kept in {result.out_dir}"


def run_generate(
    config: GenerateConfig,
    *,
    overwrite: bool = False,
    merge_only: bool = False,
    shard: tuple[int, int] | None = None,
    progress: bool = True,
    loader: Loader | None = None,
    config_path: Path | None = None,
) -> RunResult:
    """Run (or resume) the generation stage for this process's share of the plan."""
    check_output_folder(config.output_dir, "output_dir")
    plan, ctx = prepare(config, shard)
    out = config.output_dir
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    mine = plan.shard(ctx.rank, ctx.world_size)
    result = RunResult(
        planned=len(plan.items),
        assigned=len(mine),
        skipped=0,
        generated=0,
        out_dir=out,
        rank=ctx.rank,
        world_size=ctx.world_size,
        group=ctx.group,
        files=[item.file for item in mine],
    )
    if merge_only:
        if ctx.is_main:
            result.manifest = _final_merge(out, temp_min_age_s=600)
        ctx.barrier()
        return result

    started = time.time()
    shard_file = ManifestShard.for_rank(out, ctx.rank, ctx.world_size)
    pending = _pending(mine, plan, out, overwrite, shard_file)
    result.skipped = len(mine) - len(pending)
    writer = ImageWriter(out, shard_file)
    try:
        _generate(plan, pending, writer, result, loader or _default_loader, progress and ctx.is_main)
        t0 = time.perf_counter()
        writer.close()  # the last images reach the disk: part of the throughput
        result.generate_s += time.perf_counter() - t0
    except BaseException as err:
        # Interrupted or failed: keep what was finished and leave a usable manifest before re-raising.
        try:
            with contextlib.suppress(OutputError):  # a full disk fails the queued writes too: `err` says so
                writer.close()
        finally:
            result.generated = writer.written  # what reached the disk, which a failed write makes fewer
            with contextlib.suppress(OutputError):  # a full disk: the shards keep the rows for the resume's merge
                merge_manifest(out, remove_shards=[shard_file.path] if ctx.world_size > 1 else _all_shards(out))
            if created and ctx.world_size == 1 and result.generated == 0 and result.skipped == 0:
                # A run that failed before its first image leaves nothing behind: the folder is ours, made now.
                shutil.rmtree(out, ignore_errors=True)
        err.sdeval_run = result  # pyright: ignore[reportAttributeAccessIssue]  # a mark for the command to say what was kept
        raise
    _finish(plan, ctx, result, started, config_path)
    return result


def _pending(
    mine: tuple[WorkItem, ...], plan: Plan, out: Path, overwrite: bool, shard: ManifestShard
) -> list[WorkItem]:
    """Items still to generate; an image on disk counts only if its metadata matches the plan exactly."""
    rows = existing_rows(out)
    cfg = plan.config
    pending: list[WorkItem] = []
    stale: list[tuple[WorkItem, str]] = []
    heal: list[dict[str, Any]] = []
    for item in mine:
        path = out / item.file
        if not path.is_file():
            pending.append(item)
            continue
        expected = identity(metadata_for(item, cfg.pipeline, cfg.vae_tiling))
        candidates = rows.get(item.file, [])
        if candidates and all(identity(r) == expected for r in candidates):
            continue
        meta = read_metadata(path)
        if meta is not None and identity(meta) == expected:
            # Image finished but its row is missing or contested (killed between rename and append).
            heal.append(row_from_metadata(meta, item.file))
            continue
        stale.append((item, _difference(expected, identity(meta) if meta else None)))
        pending.append(item)
    if stale and not overwrite:
        item, why = stale[0]
        raise SdevalError(
            f"output_dir: {len(stale)} existing image(s) were made with different inputs (first: {item.file}:"
            f" {why}); pass --overwrite to regenerate them, or use a new output_dir"
        )
    for row in heal:
        shard.append(row)
    pending.sort(key=lambda i: i.index)
    return pending


def _difference(expected: dict[str, Any], found: dict[str, Any] | None) -> str:
    if found is None:
        return "it has no sdeval metadata"
    keys = [k for k in expected if expected.get(k) != found.get(k)]
    return f"{', '.join(keys) or 'metadata'} differ(s)"


def _generate(
    plan: Plan,
    pending: list[WorkItem],
    writer: ImageWriter,
    result: RunResult,
    loader: Loader,
    show_progress: bool,
) -> None:
    from tqdm import tqdm

    cfg = plan.config
    options = LoadOptions(
        pipeline=cfg.pipeline,
        device=plan.device,
        compile=cfg.compile,
        channels_last=cfg.channels_last,
        vae_slicing=cfg.vae_slicing,
        vae_tiling=cfg.vae_tiling,
    )
    # One model load per (checkpoint, dtype), in plan order.
    loads: dict[tuple[str, str], list[WorkItem]] = {}
    for item in pending:
        loads.setdefault((item.checkpoint.name, item.setting.dtype), []).append(item)
    per_call = frozenset(name for name, spec in SCHEDULERS.items() if spec.per_call_noise)
    cuda = plan.device.startswith("cuda")
    if cuda:
        import torch

        torch.cuda.reset_peak_memory_stats(plan.device)
    bar = tqdm(
        total=len(pending),
        desc="generate",
        unit="img",
        file=sys.stderr,
        disable=not show_progress or not pending,
        dynamic_ncols=True,
    )
    try:
        for (_, dtype), items in loads.items():
            t0 = time.perf_counter()
            loaded = loader(items[0].checkpoint, dtype, options)
            result.load_s += time.perf_counter() - t0
            t0 = time.perf_counter()
            for batch in batches(items, cfg.batch_size, per_call):
                bar.set_description_str(f"generate ({batch[0].checkpoint.name}/{batch[0].setting_id})", refresh=False)
                init = None
                if cfg.pipeline == "image2image":
                    size = _size(batch[0], loaded)
                    init = [load_init_image(item.prompt.init_image, size) for item in batch]  # pyright: ignore[reportArgumentType]  # load_suite required one per row for image2image
                images = generate_batch(loaded, batch, cfg.pipeline, init)
                for item, image in zip(batch, images, strict=True):
                    meta = metadata_for(item, cfg.pipeline, cfg.vae_tiling)
                    writer.submit(item.file, image, meta, _a1111_parameters(item, image.size))
                result.generated += len(batch)
                bar.update(len(batch))
            result.generate_s += time.perf_counter() - t0
            del loaded
            if cuda:
                import torch

                result.peak_gpu_memory_bytes = max(
                    result.peak_gpu_memory_bytes or 0, torch.cuda.max_memory_allocated(plan.device)
                )
                torch.cuda.empty_cache()
    finally:
        bar.close()


def _size(item: WorkItem, loaded: Loaded) -> tuple[int, int]:
    if item.setting.width is None or item.setting.height is None:
        return loaded.native_size
    return item.setting.width, item.setting.height


def _a1111_parameters(item: WorkItem, size: tuple[int, int]) -> str:
    """A1111-style `parameters` text so other tools (and image viewers) show the prompt and settings."""
    s = item.setting
    spec = SCHEDULERS.find(s.scheduler)
    fields = [
        f"Steps: {s.num_inference_steps}",
        f"Sampler: {spec.a1111 if spec else s.scheduler}",
        f"CFG scale: {s.guidance_scale:g}",
        f"Seed: {item.seed}",
        f"Size: {size[0]}x{size[1]}",
        f"Model: {item.checkpoint.name}",
    ]
    if item.identity.sha256:
        fields.append(f"Model hash: {item.identity.sha256[:10]}")
    if s.strength is not None:
        fields.append(f"Denoising strength: {s.strength:g}")
    text = item.prompt.prompt
    if item.negative_prompt:
        text += f"\nNegative prompt: {item.negative_prompt}"
    return text + "\n" + ", ".join(fields)


def _all_shards(out: Path) -> list[Path]:
    return sorted(shard_dir(out).glob("*.jsonl"))


def _final_merge(out: Path, temp_min_age_s: float = 0.0) -> MergeResult:
    """Merge every shard (all writers are done) and sweep temp files that killed writers left behind.

    `temp_min_age_s` spares young temp files: `--merge-only` may run beside a live run whose writes are
    in flight, whereas the end of a run knows its own writes are done.
    """
    merged = merge_manifest(out, remove_shards=_all_shards(out))
    now = time.time()
    for tmp in out.rglob(".*.tmp"):
        if tmp.relative_to(out).parts[0] == STATE_DIR:
            continue
        with contextlib.suppress(FileNotFoundError):
            if now - tmp.stat().st_mtime >= temp_min_age_s:
                tmp.unlink()
    return merged


def _stats_path(out: Path, rank: int, world: int) -> Path:
    return out / STATE_DIR / "stats" / f"rank{rank:05d}-of-{world:05d}.json"


def _finish(plan: Plan, ctx: distmod.DistContext, result: RunResult, started: float, config_path: Path | None) -> None:
    out = plan.config.output_dir
    stats = {
        "rank": ctx.rank,
        "world_size": ctx.world_size,
        "config_sha256": plan.config.sha256,
        "device": plan.device,
        "assigned": result.assigned,
        "skipped": result.skipped,
        "generated": result.generated,
        "load_s": round(result.load_s, 3),
        "generate_s": round(result.generate_s, 3),
        "wall_s": round(time.time() - started, 3),
        "images_per_s": result.images_per_s,
        "peak_gpu_memory_bytes": result.peak_gpu_memory_bytes,
        "finished_at": _now(),
    }
    atomic.write_json(_stats_path(out, ctx.rank, ctx.world_size), stats)
    if ctx.world_size == 1:
        result.manifest = _final_merge(out)
        result.record = _write_run_record(plan, ctx, [stats], config_path)
    elif ctx.group:
        ctx.barrier()  # every rank has written its images, rows and stats
        if ctx.is_main:
            result.manifest = _final_merge(out)
            per_rank = [json.loads(_stats_path(out, r, ctx.world_size).read_text()) for r in range(ctx.world_size)]
            result.record = _write_run_record(plan, ctx, per_rank, config_path)
        ctx.barrier()
    else:
        # Independent shards (array jobs): each merges its own rows; the last one to finish completes it.
        result.manifest = merge_manifest(
            out, remove_shards=[ManifestShard.for_rank(out, ctx.rank, ctx.world_size).path]
        )
        per_rank = []
        for r in range(ctx.world_size):
            path = _stats_path(out, r, ctx.world_size)
            if path.is_file():
                data = json.loads(path.read_text())
                if data.get("config_sha256") == plan.config.sha256:
                    per_rank.append(data)
        result.record = _write_run_record(plan, ctx, per_rank, config_path)


def _write_run_record(
    plan: Plan, ctx: distmod.DistContext, per_rank: list[dict[str, Any]], config_path: Path | None
) -> dict[str, Any]:
    cfg = plan.config
    generated = sum(s["generated"] for s in per_rank)
    # Aggregate throughput: the processes ran side by side, so their rates add up.
    rates = [s["images_per_s"] for s in per_rank if s.get("images_per_s")]
    rate = sum(rates) if rates else None
    peaks = [s["peak_gpu_memory_bytes"] for s in per_rank if s.get("peak_gpu_memory_bytes")]
    record = {
        "sdeval_version": __version__,
        "stage": "generate",
        "finished_at": _now(),
        "config_path": None if config_path is None else str(config_path),
        "config_sha256": cfg.sha256,
        "config": cfg.to_dict(),
        "suite": {
            "path": plan.suite.source or str(cfg.suite),
            **plan.suite.identity.to_json(),
            "prompts": len(plan.suite.prompts),
        },
        "checkpoints": [
            {
                "name": c.name,
                "path": c.path,
                "kind": c.kind,
                "sha256": plan.identities[c.name].sha256,
                "lora_sha256": plan.identities[c.name].lora_sha256,
                # A series checkpoint's place in its training run (sdeval.generate.series).
                **({"step": c.step} if c.step is not None else {}),
                **({"run": c.run} if c.run is not None else {}),
            }
            for c in cfg.checkpoints
        ],
        "versions": versions(),
        "device": device_info(plan.device),
        "command": provenance_command(),
        "git": git_commit(cfg.output_dir),
        "world_size": ctx.world_size,
        "images_planned": len(plan.items),
        "images_generated": generated,
        "images_skipped": sum(s["skipped"] for s in per_rank),
        "images_per_s": rate,
        "s_per_image": (1.0 / rate) if rate else None,
        "peak_gpu_memory_bytes": max(peaks) if peaks else None,
        "processes": per_rank,
    }
    # Earlier runs into the same folder (e.g. the one a resume continues) keep their throughput figures.
    previous: list[dict[str, Any]] = []
    with contextlib.suppress(OSError, ValueError, AttributeError):
        old = json.loads((cfg.output_dir / RUN_RECORD).read_text(encoding="utf-8"))
        previous = list(old.get("previous_runs", []))
        previous.append({k: old.get(k) for k in _HISTORY_KEYS})
    record["previous_runs"] = previous[-_MAX_HISTORY:]
    atomic.write_json(cfg.output_dir / RUN_RECORD, record)
    return record


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
