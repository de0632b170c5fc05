"""Weights & Biases: one run in a project. Series are history at their steps (logged in increasing order: W&B drops
a step lower than the last), the protocol is the run's config, the results file and the report folder are one
artifact, the grid an image at the last step. Offline runs (WANDB_MODE=offline) sync later with `wandb sync`."""

from __future__ import annotations

import re

from sdeval.trackers.base import Attachments, Destination, require, safe_name
from sdeval.trackers.series import Plan

_ARTIFACT_UNSAFE = re.compile(r"[^\w.-]")  # artifact names: letters, digits, `_ - .`


def log(plan: Plan, attachments: Attachments, destination: Destination) -> str:
    """Log `plan` as a new run, or into the active run (`wandb.init()` of a training script) when there is one;
    returns the run's id, project and folder in words."""
    wandb = require("wandb", "wandb")
    active = wandb.run
    if active is not None:
        run, project = active, active.project
        run.config.update(dict(plan.params), allow_val_change=True)
    else:
        project = destination.experiment or "sdeval"
        run = wandb.init(project=project, name=plan.run_name, config=dict(plan.params), job_type="sdeval-results")
    try:
        steps = plan.ordered()
        for step, values in steps:
            run.log({safe_name(series): value for series, value in values.items()}, step=step)
        if attachments.grid is not None:
            last = steps[-1][0] if steps else 0
            run.log({"images/grid": wandb.Image(str(attachments.grid), caption="same prompt across cells")}, step=last)
        artifact = wandb.Artifact(_ARTIFACT_UNSAFE.sub("-", f"{plan.run_name}-results"), type="sdeval-results")
        artifact.add_file(str(attachments.results))
        if attachments.report is not None:
            artifact.add_dir(str(attachments.report), name="report")
        run.log_artifact(artifact)
    except BaseException:
        if active is None:
            run.finish(exit_code=1)
        raise
    where = run.url or run.dir
    run_id = run.id
    if active is None:  # the training script ends its own run
        run.finish()
    return f"wandb run {run_id} in project {project!r} ({where})"
