"""MLflow: one run in an experiment, through MlflowClient (no global active run is touched). Series are metrics at
their steps, the protocol is parameters, the results file, the report folder and the grid are artifacts."""

from __future__ import annotations

import time

from sdeval.trackers.base import Attachments, Destination, require, safe_name
from sdeval.trackers.series import Plan

#: MLflow's limits on one log_batch call and on a parameter's value (mlflow.utils.validation).
_METRICS_PER_BATCH = 1000
_PARAMS_PER_BATCH = 100
_PARAM_LENGTH = 6000


def _param(value: str) -> str:
    cut = " ... (cut: the whole value is in the results artifact)"
    return value if len(value) <= _PARAM_LENGTH else value[: _PARAM_LENGTH - len(cut)] + cut


def log(plan: Plan, attachments: Attachments, destination: Destination) -> str:
    """Log `plan` as a new run, or into the active run (`mlflow.start_run()` of a training script) when there is
    one and no tracking URI is given; returns the run's id, experiment and tracking URI in words."""
    mlflow = require("mlflow", "mlflow")
    from mlflow.entities import Metric, Param  # the library, only once require() found it installed
    from mlflow.tracking import MlflowClient  # the library, only once require() found it installed

    active = mlflow.active_run() if destination.tracking_uri is None else None
    client = MlflowClient(tracking_uri=destination.tracking_uri)
    if active is not None:
        run_id, experiment_id = active.info.run_id, active.info.experiment_id
        name = client.get_experiment(experiment_id).name
        logged = dict(client.get_run(run_id).data.params)  # MLflow refuses to change a parameter: keep the first
    else:
        name = destination.experiment or "sdeval"
        experiment = client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment is not None else client.create_experiment(name)
        tags = {"sdeval.results": attachments.results.name}
        run_id = client.create_run(experiment_id, run_name=plan.run_name, tags=tags).info.run_id
        logged = {}
    try:
        named = {safe_name(key): _param(value) for key, value in plan.params.items()}
        params = [Param(key, value) for key, value in named.items() if key not in logged]
        for start in range(0, len(params), _PARAMS_PER_BATCH):
            client.log_batch(run_id, params=params[start : start + _PARAMS_PER_BATCH])
        now = int(time.time() * 1000)
        metrics = [
            Metric(safe_name(series), value, now, step)
            for step, values in plan.ordered()
            for series, value in values.items()
        ]
        for start in range(0, len(metrics), _METRICS_PER_BATCH):
            client.log_batch(run_id, metrics=metrics[start : start + _METRICS_PER_BATCH])
        client.log_artifact(run_id, str(attachments.results))
        if attachments.report is not None:
            client.log_artifacts(run_id, str(attachments.report), "report")
        if attachments.grid is not None:
            client.log_artifact(run_id, str(attachments.grid), "images")
    except BaseException:
        if active is None:
            client.set_terminated(run_id, "FAILED")
        raise
    if active is None:  # the training script ends its own run
        client.set_terminated(run_id, "FINISHED")
    return f"mlflow run {run_id} in experiment {name!r} ({client.tracking_uri})"
