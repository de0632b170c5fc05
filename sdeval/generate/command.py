"""`sdeval generate CONFIG`: the click command; parses options, calls the runner, prints one summary line."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from sdeval.core.atomic import check_output_folder
from sdeval.core.distributed import parse_shard
from sdeval.core.errors import ExitCode, OutputError, Terminated


@click.command("generate")
@click.argument("config_path", metavar="CONFIG", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--overwrite", is_flag=True, help="Regenerate existing images whose inputs changed.")
@click.option("--merge-only", is_flag=True, help="Only merge manifest shards (and heal rows) into OUT/manifest.jsonl.")
@click.option("--shard", metavar="I/N", default=None, help="Generate only shard I of N (0-based): one job of an array.")
@click.option("--dry-run", is_flag=True, help="Print the plan size and exit without loading any model.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def generate(
    config_path: Path, overwrite: bool, merge_only: bool, shard: str | None, dry_run: bool, quiet: bool
) -> None:
    """Generate images for every checkpoint x setting x prompt x seed in CONFIG (resumable)."""
    # numpy and the pipeline modules load when generating, not with --help (+0.2 s)
    from sdeval.generate.config import load_config, suite_defaults_line
    from sdeval.generate.runner import kept_summary, prepare, run_generate, stopped_run  # as above

    config = load_config(config_path)
    check_output_folder(config.output_dir, "output_dir")  # before any model loads
    if (rules := suite_defaults_line(config)) is not None:
        click.echo(rules, err=True)
    shard_tuple = parse_shard(shard) if shard else None
    if dry_run:
        plan, ctx = prepare(config, shard_tuple)
        mine = plan.shard(ctx.rank, ctx.world_size)
        settings = len({i.setting_id for i in plan.items})
        click.echo(
            f"plan: {len(plan.items)} images = {len(config.checkpoints)} checkpoint(s)"
            f" x {settings} setting(s)"
            f" x {len(plan.suite.prompts)} prompt(s) x {config.seeds_per_prompt} seed(s); this process:"
            f" {len(mine)} on {plan.device}; output: {config.output_dir}"
        )
        return
    try:
        result = run_generate(
            config,
            overwrite=overwrite,
            merge_only=merge_only,
            shard=shard_tuple,
            progress=not quiet,
            config_path=config_path.resolve(),
        )
    except (KeyboardInterrupt, Terminated) as err:
        terminated = isinstance(err, Terminated)
        said = "terminated (SIGTERM)" if terminated else "interrupted"
        resume = _rerun(config_path, overwrite, shard, quiet)
        click.echo(f"{said}: {kept_summary(stopped_run(err))}; to resume, run: {resume}", err=True)
        sys.exit(ExitCode.TERMINATED if terminated else ExitCode.INTERRUPTED)
    except OutputError as err:  # a full disk, a quota, a read-only mount: what was kept, and how to go on
        resume = _rerun(config_path, overwrite, shard, quiet)
        kept = kept_summary(stopped_run(err))
        click.echo(f"error: {err}; {kept}; to resume once there is room, run: {resume}", err=True)
        sys.exit(ExitCode.USAGE)
    manifest = result.out_dir / "manifest.jsonl"
    if merge_only:
        if result.manifest is not None:
            click.echo(f"merged: {result.manifest.rows} rows in {manifest}")
        return
    if result.group and result.record is not None:
        # The main process of a launch speaks for all processes.
        rec = result.record
        rate = f", {rec['images_per_s']:.2f} img/s" if rec.get("images_per_s") else ""
        click.echo(
            f"generated {rec['images_generated']}, skipped {rec['images_skipped']} (already done) of"
            f" {rec['images_planned']} on {result.world_size} processes{rate}; manifest: {manifest}"
        )
        return
    if result.group:
        return
    rate = f", {result.images_per_s:.2f} img/s" if result.images_per_s else ""
    shard = f" (shard {result.rank}/{result.world_size})" if result.world_size > 1 else ""
    click.echo(
        f"generated {result.generated}, skipped {result.skipped} (already done) of {result.assigned}{shard}"
        f" in {result.generate_s:.1f}s{rate}; manifest: {manifest}"
    )


def _rerun(config_path: Path, overwrite: bool, shard: str | None, quiet: bool) -> str:
    """The command that resumes: the same one (a launcher such as `accelerate launch` goes in front again)."""
    words = ["sdeval", "generate", str(config_path)]
    if overwrite:
        words.append("--overwrite")
    if shard:
        words += ["--shard", shard]
    if quiet:
        words.append("--quiet")
    return shlex.join(words)
