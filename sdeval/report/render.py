"""Render the report: `index.html` (self-contained, offline) and `summary.md` from the Jinja2 templates beside this
file, over what load, tables, gallery, plots and gate prepared; build_report writes them."""

from __future__ import annotations

import dataclasses
import datetime
import importlib.resources
import os
import shutil
import time
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

from sdeval.core.atomic import check_output_folder, write_text
from sdeval.core.errors import SdevalError
from sdeval.gate.pick import pick
from sdeval.report.formatting import fmt, fmt_bound
from sdeval.report.gallery import image_grid, shown_images, worst_prompts
from sdeval.report.gate import read_gate
from sdeval.report.images import make_thumbnails
from sdeval.report.load import load_cells
from sdeval.report.model import Cell, ReportOptions
from sdeval.report.plots import sweep_plots
from sdeval.report.protocol import protocol_card
from sdeval.report.series import series_section
from sdeval.report.tables import (
    category_table,
    interval_footnotes,
    interval_settings,
    label_columns,
    metric_columns,
    robustness_table,
    summary_table,
)
from sdeval.stats.settings import DEFAULT_LEVEL


def _templates() -> tuple[Any, Any]:
    """(HTML environment with autoescape on, Markdown environment)."""
    import jinja2  # loaded when a page is rendered, not with every command of the CLI

    loader = jinja2.PackageLoader("sdeval.report", "templates")
    html = jinja2.Environment(loader=loader, autoescape=True, trim_blocks=True, lstrip_blocks=True)
    markdown = jinja2.Environment(loader=loader, autoescape=False, trim_blocks=True, lstrip_blocks=True)
    markdown.filters["md"] = _markdown_escape
    for env in (html, markdown):
        env.filters["num"] = fmt
        env.filters["bound"] = fmt_bound
    html.filters["breakable"] = _breakable
    return html, markdown


def _breakable(text: Any) -> Any:
    """A cell label, escaped, that may wrap after each `/` (`clean/g7.5-s50`): long ids keep columns narrow."""
    return Markup("/<wbr>").join(escape(part) for part in str(text).split("/"))


def _markdown_escape(text: Any) -> str:
    """A user string safe in a Markdown table cell: no HTML, no column breaks, one line."""
    text = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("|", "\\|").replace("\n", " ")


def _static(name: str) -> str:
    # One part per joinpath: Traversable.joinpath takes several only from Python 3.11.
    return importlib.resources.files("sdeval.report").joinpath("static").joinpath(name).read_text(encoding="utf-8")


def _make_folders(folder: Path, what: str) -> list[Path]:
    """Create `folder` and its missing parents; returns those this call created, outermost first. A folder that
    cannot be created is an SdevalError naming `what` (the folders made so far are removed again)."""
    missing = []
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    created: list[Path] = []
    for candidate in reversed(missing):
        try:
            candidate.mkdir()
        except FileExistsError:  # made meanwhile by someone else: not ours to remove
            continue
        except OSError as err:
            _remove_folders(created)
            raise SdevalError(f"{what} {folder}: cannot be created: {err.strerror or err}") from None
        created.append(candidate)
    return created


def _remove_folders(created: list[Path]) -> None:
    """Undo _make_folders after a failed report. These folders did not exist when the report started, so all
    they hold (thumbnails) is this report's own: remove them whole."""
    for folder in created:
        shutil.rmtree(folder, ignore_errors=True)


def _pick(options: ReportOptions, cells: list[Cell], documents: list[dict[str, Any]], table: Any) -> Any:
    """The pick rule applied to a one-run report, with the intervals the page shows (None: no rule)."""
    if options.pick is None:
        return None
    if len(documents) != 1:
        raise SdevalError("report: a pick rule applies to one results file")
    intervals = {
        cell.data["id"]: {key: {"low": m.low, "high": m.high} for key, m in table[cell.label].items()} for cell in cells
    }
    return pick(documents[0]["document"], options.pick, intervals)


def build_report(
    results: list[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    options: ReportOptions | None = None,
    *,
    out_name: str = "report folder",
) -> dict[str, Any]:
    """Write `OUT/index.html`, `OUT/summary.md` and `OUT/thumbs/`; returns what was written and how long each
    step took (seconds). `out_name` names OUT in errors (the CLI passes `--out`). A report that fails removes the
    folders it made."""
    options = options or ReportOptions()
    if not results:
        raise SdevalError("report: give at least one results file")
    out = Path(out)
    check_output_folder(out, out_name)  # before any work
    # Made before the work too: a folder that cannot be made (where the check above cannot tell) fails at once.
    created = _make_folders(out / "thumbs", out_name)
    try:
        started = time.perf_counter()
        cells, documents = load_cells([Path(p) for p in results], options)
        if not cells:
            raise SdevalError("report: the results files have no cells")
        # One level for the page (marks are significant at 1 - level): the option's, else the first run's record.
        options = dataclasses.replace(options, level=interval_settings(cells[0], options).level)
        columns = metric_columns(cells)
        protocol = protocol_card(cells, columns)
        table, methods = summary_table(cells, columns, options)
        categories = category_table(cells, options)
        robustness = robustness_table(cells)
        grid = image_grid(cells)
        worst = worst_prompts(cells)
        plots = sweep_plots(cells, columns, table)
        series = series_section(cells, columns, table, _pick(options, cells, documents, table))
        footnotes = interval_footnotes(columns, table)
        gate = read_gate(options.gate, documents) if options.gate is not None else None
        prepared = time.perf_counter()
        thumbs = make_thumbnails(shown_images(grid, worst), out / "thumbs", quiet=options.quiet)
        thumbnailed = time.perf_counter()
        context = {
            "title": options.title,
            "created_at": datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(timespec="seconds"),
            "documents": documents,
            "cells": cells,
            "columns": columns,
            "table": table,
            "footnotes": footnotes,
            "label_columns": label_columns(cells),
            "categories": categories,
            "robustness": robustness,
            "grid": grid,
            "worst": worst,
            "plots": plots,
            "series": series,
            "protocol": protocol,
            "gate": gate,
            "level": options.level,
            "alpha": 1.0 - (options.level or DEFAULT_LEVEL),
            "intervals_text": interval_settings(cells[0], options).describe(),
            "n_comparisons": sum(1 for row in table.values() for m in row.values() if m.p_adjusted is not None),
            "methods": methods,
            "several_runs": len(documents) > 1,
        }
        html_env, md_env = _templates()
        html = html_env.get_template("report.html.j2").render(
            **context, css=Markup(_static("report.css")), js=Markup(_static("report.js"))
        )
        summary = md_env.get_template("summary.md.j2").render(**context)
        # Both rendered before either is written; each replaces the old file whole (temp file + rename).
        write_text(out / "index.html", html)
        write_text(out / "summary.md", summary)
    except BaseException:
        _remove_folders(created)
        raise
    finished = time.perf_counter()
    return {
        "index": out / "index.html",
        "summary": out / "summary.md",
        "n_cells": len(cells),
        "thumbnails": thumbs,
        "seconds": {
            "prepare": prepared - started,
            "thumbnails": thumbnailed - prepared,
            "render": finished - thumbnailed,
        },
    }
