"""A scoring run: prepare (in this process, or in every rank of a torch.distributed launch, each on its share of
the images) -> score the cells -> assemble the document (and, with `ci`, every metric's interval)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sdeval.core.distributed import DistContext, detect
from sdeval.core.provenance import now
from sdeval.options.score import ScoreOptions
from sdeval.score.assemble import assemble, state_arrays
from sdeval.score.compute import score_cells
from sdeval.score.part import ImagePart, merge_parts
from sdeval.score.prepare import finish, prepare_part
from sdeval.stats import annotate_intervals, states_from_arrays
from sdeval.stats.settings import IntervalSettings


@dataclass
class ScoreRun:
    """A results document and the feature state of its per-image rows (see sdeval/results/state.py).

    The state copies every feature row, so it is gathered only when asked for (a results file, --ci), not for
    a run that prints a table.
    """

    document: dict[str, Any]
    make_state: Callable[[], dict[str, np.ndarray]] = dict
    # Cached here rather than by functools.cached_property: type checkers read a cached_property as an object of
    # its own class, not as the property results' Scored protocol asks for.
    _state: dict[str, np.ndarray] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def state(self) -> dict[str, np.ndarray]:
        if self._state is None:
            self._state = self.make_state()
        return self._state

    @property
    def cell_ids(self) -> list[str]:
        return [cell["id"] for cell in self.document["cells"]]


def score_run(options: ScoreOptions, dist: DistContext | None = None) -> ScoreRun | None:
    """The results document and the feature state of its rows; with `options.ci`, an interval on every metric
    whose method the registry declares (docs/statistics.md).

    Under `torchrun` or `accelerate launch` (a process group is up) every rank extracts, judges and scores its
    share of the images, and extracts its share of a reference folder; the shares are gathered exactly (no padding,
    no duplicates) on rank 0, which scores the cells and returns the run; the other ranks return None. Only rank 0
    shows progress.
    """
    started_at, started = now(), time.time()
    ctx = dist if dist is not None else detect(cpu=options.features.device == "cpu")
    if ctx.group and ctx.world_size > 1:
        quiet = dataclasses.replace(options.features, progress=options.features.progress and ctx.is_main)
        shard = (ctx.rank, ctx.world_size)
        part = prepare_part(dataclasses.replace(options, features=quiet), shard, local_rank=ctx.local_rank)
        parts = ctx.gather(part)
        if not ctx.is_main:
            return None
        assert parts is not None
        part = merge_parts(parts)
    else:
        part = prepare_part(options)
    return score_part(options, part, started_at, started)


def score_part(
    options: ScoreOptions, part: ImagePart, started_at: str | None = None, started: float | None = None
) -> ScoreRun:
    """Score the cells of a whole set's part (one process's, or merged shares) and assemble the document."""
    prep = finish(options, part, started_at, started)
    cells, rows = score_cells(prep)
    run = ScoreRun(assemble(prep, cells), lambda: state_arrays(prep, rows))
    if options.ci is not None:
        # Recorded so that every interval computed later from this file (gate, report, diff) draws the same way.
        settings = IntervalSettings(level=options.ci, replicates=options.ci_replicates, seed=options.seed)
        for cell in run.document["cells"]:
            cell["intervals"] = settings.to_json()
        states = states_from_arrays(run.state, run.cell_ids)
        annotate_intervals(run.document, states, **settings.kwargs)
    return run


def score(options: ScoreOptions) -> dict[str, Any]:
    """Score a folder or a generation run; returns the results document (docs/formats.md, "Results")."""
    run = score_run(options)
    assert run is not None  # only the main rank of a launch gets a run, and this is the single-process call
    return run.document
