"""`sdeval report`: parse options, call sdeval.report.build_report, print where the report is."""

from __future__ import annotations

import click

from sdeval.report import ReportOptions, build_report


@click.command("report")
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "-o", type=click.Path(file_okay=False), required=True, help="report folder (reports/NAME/).")
@click.option(
    "--label",
    "labels",
    multiple=True,
    metavar="NAME",
    help="name of a run in the report: one per RESULTS file, in order [default: from the paths: the file name, "
    "else as many folders above it as tell the files apart].",
)
@click.option(
    "--gate",
    "gate_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    metavar="FILE",
    help="a verdict from `sdeval gate --json`, shown in the report.",
)
@click.option("--title", default="sdeval report", show_default=True)
@click.option(
    "--level",
    type=click.FloatRange(0.5, 0.999),
    default=None,
    help="interval level; differences are significant at 1 - LEVEL after Holm's adjustment "
    "[default: the level `score --ci` recorded in the first results file, else 0.95].",
)
@click.option(
    "--replicates",
    type=click.IntRange(min=50),
    default=None,
    help="bootstrap replicates for intervals and comparisons [default: as each results file records, else 200].",
)
@click.option("--quiet", is_flag=True, help="no progress bar.")
def report_command(
    results: tuple[str, ...],
    out: str,
    labels: tuple[str, ...],
    gate_file: str | None,
    title: str,
    level: float | None,
    replicates: int | None,
    quiet: bool,
) -> None:
    """One offline HTML page (index.html, thumbnails beside it) and summary.md over RESULTS files."""
    options = ReportOptions(
        title=title, gate=gate_file, level=level, replicates=replicates, quiet=quiet, labels=tuple(labels)
    )
    # build_report checks --out before any work, and names it in its errors.
    written = build_report(list(results), out, options, out_name="--out")
    click.echo(f"report: {written['index']}  (summary: {written['summary']})")
