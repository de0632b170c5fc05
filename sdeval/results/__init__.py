"""Results as data: the document (write, validate, load: document.py), the feature state beside it (state.py), which
protocol fields bind (protocol.py), the plain-text table (table.py) and the JSON schemas (schemas/)."""

from __future__ import annotations

from sdeval.results.document import incomplete_metrics, load_results, validate_results, write_outputs, write_results

__all__ = ["incomplete_metrics", "load_results", "validate_results", "write_outputs", "write_results"]
