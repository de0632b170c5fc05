"""The `sdeval bench` command: run the stages, and what a stopped run says (the images kept, how to resume)."""

import shlex
import sys

import click

from sdeval.bench.config import load_bench_config
from sdeval.bench.plan import plan_lines
from sdeval.bench.stages import BenchProgress, run_bench
from sdeval.core.distributed import parse_shard
from sdeval.core.errors import ExitCode, OutputError, Terminated


@click.command("bench")
@click.argument("config", metavar="CONFIG|builtin:NAME")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--dry-run", is_flag=True,
              help="read and check the config, print the plan (images, outputs, metrics, gate rules); run nothing, "
              "write nothing.")  # fmt: skip
@click.option("--shard", default=None, metavar="I/N",
              help="array jobs: generate and score share I of N (0-based) only; then run `sdeval bench CONFIG` "
              "once to merge the shares, gate and report.")  # fmt: skip
def bench_command(config: str, quiet: bool, shard: str | None, dry_run: bool) -> None:
    """Generate, score, gate and report from one CONFIG (resumable: each stage skips what is already done).

    builtin:calibration runs offline on the CPU in about a minute (docs/bench.md). Exit code: the gate's
    (0 pass, 1 fail, 4 inconclusive with gate.strict), 0 without a gate (3 if a metric could not be computed).
    """
    if dry_run:
        for line in plan_lines(load_bench_config(config, missing_ok=True)):
            click.echo(line)
        return
    try:
        code = run_bench(config, progress=not quiet, shard=parse_shard(shard) if shard else None)
    except (KeyboardInterrupt, Terminated) as err:
        click.echo(stopped_line(err, config, quiet, shard), err=True)
        sys.exit(ExitCode.TERMINATED if isinstance(err, Terminated) else ExitCode.INTERRUPTED)
    except OutputError as err:  # a full disk, a quota, a read-only mount: what was kept, and how to go on
        where = getattr(err, "sdeval_bench", None)
        if where is None or where.stage != "generate":
            raise  # not while generating: the plain one-line error (file, errno, what was kept) says it all
        click.echo(f"error: {err}; {stopped_line(err, config, quiet, shard, once_there_is_room=True)}", err=True)
        sys.exit(ExitCode.USAGE)
    if code:
        sys.exit(code)


def stopped_line(
    err: BaseException, source: str, quiet: bool, shard: str | None, *, once_there_is_room: bool = False
) -> str:
    """What `sdeval generate` says when stopped, for a bench run: the stage it stopped in, the images kept and where,
    and the command that resumes (the same one; a launcher such as `accelerate launch` goes in front again)."""
    from sdeval.generate.runner import kept_summary, stopped_run  # the pipelines' modules: not with --help

    said = "terminated (SIGTERM)" if isinstance(err, Terminated) else "interrupted"
    said = "stopped" if once_there_is_room else said
    where: BenchProgress | None = getattr(err, "sdeval_bench", None)
    stage = f" during {where.stage}" if where is not None else ""
    run = stopped_run(err) or (where.generated if where is not None else None)
    words = ["sdeval", "bench", source, *(["--shard", shard] if shard else []), *(["--quiet"] if quiet else [])]
    when = " once there is room" if once_there_is_room else ""
    return f"{said}{stage}: {kept_summary(run)}; to resume{when}, run: {shlex.join(words)}"
