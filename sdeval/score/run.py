"""A scoring run: prepare -> score the cells -> assemble the document (and, with `ci`, every metric's interval)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from sdeval.score.assemble import assemble, state_arrays
from sdeval.score.compute import score_cells
from sdeval.score.options import ScoreOptions
from sdeval.score.prepare import prepare


@dataclass
class ScoreRun:
    """A results document and the feature state of its per-image rows (see sdeval/state.py).

    The state copies every feature row, so it is gathered only when asked for (a results file, --ci), not for
    a run that prints a table.
    """

    document: dict[str, Any]
    make_state: Callable[[], dict[str, np.ndarray]] = dict

    @cached_property
    def state(self) -> dict[str, np.ndarray]:
        return self.make_state()

    @property
    def cell_ids(self) -> list[str]:
        return [cell["id"] for cell in self.document["cells"]]


def score_run(options: ScoreOptions) -> ScoreRun:
    """The results document and the feature state of its rows; with `options.ci`, an interval on every metric
    whose method the registry declares (docs/statistics.md)."""
    prep = prepare(options)
    cells, rows = score_cells(prep)
    run = ScoreRun(assemble(prep, cells), lambda: state_arrays(prep, rows))
    if options.ci is not None:
        from sdeval.stats import annotate_intervals, states_from_arrays

        states = states_from_arrays(run.state, run.cell_ids)
        annotate_intervals(run.document, states, level=options.ci, replicates=options.ci_replicates, seed=options.seed)
    return run


def score(options: ScoreOptions) -> dict[str, Any]:
    """Score a folder or a generation run; returns the results document (docs/formats.md, "Results")."""
    return score_run(options).document
