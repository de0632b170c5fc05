"""`sdeval score`: images -> features (one decode pass) -> cells -> metrics -> results document.

options.py says what a run is asked for (shared by the command line and `sdeval bench`); prepare.py gathers what
the cells are scored from (models, reference, features, prompts, cells, judgements); compute.py scores each cell;
assemble.py writes the results document and the feature state; run.py chains them; command.py is the command.
"""

from typing import TYPE_CHECKING, Any

from sdeval.features.options import FeatureOptions
from sdeval.options.score import ScoreOptions, defaults, options_from_mapping

if TYPE_CHECKING:  # for type checkers only: at run time __getattr__ imports them on first use
    from sdeval.score.run import ScoreRun, score, score_run

_RUN = ("ScoreRun", "score", "score_run")


def __getattr__(name: str) -> Any:
    """The run itself loads torch and the models' libraries: only when it is used, not when options are read."""
    if name in _RUN:
        from sdeval.score import run  # torch: when a run is made, not when options are read

        return getattr(run, name)
    raise AttributeError(f"module 'sdeval.score' has no attribute {name!r}")


__all__ = ["FeatureOptions", "ScoreOptions", "ScoreRun", "defaults", "options_from_mapping", "score", "score_run"]
