"""How an interval is drawn (level, bootstrap replicates, seed, jackknife blocks), said once per results file.

`score --ci` records its settings in each results cell (`intervals`); every interval computed later from that file (the
gate's, the report's, `sdeval diff`'s, differences between two cells) uses them, so one (cell, metric, level) has one
interval whoever shows it. A file without a record gets the defaults, which are `score --ci`'s own defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from sdeval.metrics.estimators import DEFAULT_BLOCKS
from sdeval.metrics.registry import ScoreParams

DEFAULT_LEVEL = 0.95
DEFAULT_REPLICATES = 200
DEFAULT_SEED = ScoreParams.seed  # score's --seed default, which score --ci draws its intervals with


@dataclass(frozen=True)
class IntervalSettings:
    level: float = DEFAULT_LEVEL
    replicates: int = DEFAULT_REPLICATES
    seed: int = DEFAULT_SEED
    blocks: int = DEFAULT_BLOCKS
    source: str = "defaults"  # "results" (recorded by score --ci), "defaults", or the option that set them

    @classmethod
    def of(cls, results: dict[str, Any] | None) -> IntervalSettings:
        """The settings a results cell records (`intervals`; a whole document: its first cell that records them),
        else the defaults."""
        results = results or {}
        recorded = results.get("intervals")
        if recorded is None and "cells" in results:
            recorded = next((c["intervals"] for c in results["cells"] if isinstance(c.get("intervals"), dict)), None)
        if not isinstance(recorded, dict):
            return cls()
        return cls(
            level=float(recorded["level"]),
            replicates=int(recorded["replicates"]),
            seed=int(recorded["seed"]),
            blocks=int(recorded.get("blocks", DEFAULT_BLOCKS)),
            source="results",
        )

    def with_level(
        self, level: float | None, replicates: int | None = None, source: str = "options"
    ) -> IntervalSettings:
        """These settings with a level (and replicates) asked for explicitly; unchanged when neither differs."""
        if level in (None, self.level) and replicates in (None, self.replicates):
            return self  # nothing changes: the settings keep saying where they came from
        return replace(
            self,
            level=self.level if level is None else float(level),
            replicates=self.replicates if replicates is None else int(replicates),
            source=source,
        )

    @property
    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of sdeval.stats.cell_intervals and compare_cells."""
        return {"level": self.level, "replicates": self.replicates, "seed": self.seed, "blocks": self.blocks}

    def to_json(self) -> dict[str, Any]:
        return {"level": self.level, "replicates": self.replicates, "seed": self.seed, "blocks": self.blocks}

    def same_draws(self, other: IntervalSettings) -> bool:
        return self.to_json() == other.to_json()

    def describe(self) -> str:
        where = {"results": "as recorded in the results", "defaults": "defaults: the results record none"}.get(
            self.source, f"from {self.source}"
        )
        return (
            f"level {self.level:g}, {self.replicates} bootstrap replicates, {self.blocks} jackknife blocks, "
            f"seed {self.seed} ({where})"
        )


def for_pair(baseline: IntervalSettings, candidate: IntervalSettings) -> tuple[IntervalSettings, str | None]:
    """The settings of a difference between two results (the candidate's when it records them, else the
    baseline's), and a warning when both record different ones."""
    chosen = candidate if candidate.source == "results" or baseline.source != "results" else baseline
    warning = None
    if candidate.source == baseline.source == "results" and not candidate.same_draws(baseline):
        warning = (
            f"the two results record different interval settings ({baseline.to_json()} vs {candidate.to_json()}): "
            f"differences use the candidate's ({candidate.describe()})"
        )
    return chosen, warning
