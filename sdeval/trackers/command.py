"""`sdeval log`: parse options, call sdeval.trackers.log_results, print where the run is."""

from __future__ import annotations

import click

from sdeval.core.errors import SdevalError
from sdeval.trackers.options import STEP_SOURCES, TRACKERS, LogOptions


@click.command("log")
@click.argument("results", type=click.Path(exists=True, dir_okay=False))
@click.option("--to", "to", type=click.Choice(list(TRACKERS)), required=True, help="the experiment tracker.")
@click.option(
    "--step-from",
    type=click.Choice(STEP_SOURCES),
    default=None,
    help="log each cell at the training step in its checkpoint label (checkpoint-1500 -> 1500), so the cells of "
    "one setting form one series over steps [default: every cell at step 0, as a series of its own].",
)
@click.option("--run-name", default=None, help="the run's name [default: the results file's name, or its folder's].")
@click.option("--experiment", default=None, metavar="NAME", help="MLflow experiment or W&B project [default: sdeval].")
@click.option(
    "--tracking-uri",
    default=None,
    metavar="URI",
    help="MLflow tracking store, e.g. sqlite:///mlflow.db or http://host:5000 [default: MLFLOW_TRACKING_URI].",
)
@click.option(
    "--logdir",
    type=click.Path(file_okay=False),
    default=None,
    help="TensorBoard folder of runs; the run goes in LOGDIR/RUN_NAME [default: runs].",
)
@click.option(
    "--report",
    "report",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="attach this `sdeval report` folder [default: make one for the run].",
)
@click.option("--no-report", is_flag=True, help="attach no HTML report.")
@click.option("--no-grid", is_flag=True, help="log no same-prompt image grid.")
@click.option("--quiet", is_flag=True, help="no notes on stderr.")
def log_command(
    results: str,
    to: str,
    step_from: str | None,
    run_name: str | None,
    experiment: str | None,
    tracking_uri: str | None,
    logdir: str | None,
    report: str | None,
    no_report: bool,
    no_grid: bool,
    quiet: bool,
) -> None:
    """Log RESULTS to an experiment tracker: every metric (and per-category adherence) with its interval bounds
    as series, the protocol as parameters, the results file and the HTML report as artifacts, and a grid of the
    same prompts across cells. Each tracker is an extra: pip install 'sdeval[mlflow]' (or wandb, tensorboard)."""
    from sdeval.trackers.log import log_results  # the report and the statistics: only when the command runs

    if report is not None and no_report:
        raise SdevalError("--report and --no-report: give one")
    options = LogOptions(
        to=to,
        step_from=step_from,
        run_name=run_name,
        experiment=experiment,
        tracking_uri=tracking_uri,
        logdir=logdir,
        report=report,
        make_report=not no_report,
        grid=not no_grid,
        quiet=quiet,
    )
    click.echo(f"logged: {log_results(results, options)}")
