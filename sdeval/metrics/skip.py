"""MetricSkip: a metric cannot be computed for this input (too few images, no prompts), listed with the reason.

It stands below the registry, which re-exports it, so that the pure modules may raise it (embeddings.py) and the
registry may read their defaults (density_coverage.K) with no circle of imports."""

from __future__ import annotations

from sdeval.core.errors import SdevalError


class MetricSkip(SdevalError):
    """A metric cannot be computed for this input (too few images, no prompts): listed with this reason."""
