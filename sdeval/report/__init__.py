"""`sdeval report`: one self-contained HTML page (and a Markdown summary) over one or more results files."""

from __future__ import annotations

from sdeval.report.model import ReportOptions
from sdeval.report.render import build_report

__all__ = ["ReportOptions", "build_report"]
