"""`sdeval gate` and `sdeval diff`: parse options, call sdeval.gate, print, exit with the documented code."""

from __future__ import annotations

import json
import sys

import click

from sdeval.core.atomic import check_output_file, write_text
from sdeval.core.errors import ExitCode
from sdeval.gate import load_rules, load_side, run_gate
from sdeval.gate.diff import diff, render_diff
from sdeval.gate.outputs import json_text, junit_xml, render_table
from sdeval.gate.outputs import markdown as markdown_text


@click.command()
@click.argument("results", type=click.Path(dir_okay=False))
@click.option(
    "--rules",
    "rules_path",
    type=click.Path(dir_okay=False),
    required=True,
    metavar="RULES",
    help="rules file (YAML, docs/gate.md).",
)
@click.option(
    "--baseline",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="BASELINE",
    help="baseline results for max_increase / max_decrease rules.",
)
@click.option("--strict", is_flag=True, help="exit 4 when a verdict is inconclusive (default: 0 and a warning).")
@click.option(
    "--allow-protocol-mismatch",
    is_flag=True,
    help="compare cells scored under different protocols, with a warning (default: exit 2).",
)
@click.option(
    "--junit",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="FILE",
    help="write the verdicts as JUnit XML (one testcase per rule and cell).",
)
@click.option(
    "--markdown",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="FILE",
    help="write the verdicts as a Markdown table.",
)
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="FILE",
    help="write the verdicts as JSON.",
)
def gate(results, rules_path, baseline, strict, allow_protocol_mismatch, junit, markdown, json_out) -> None:
    """Check RESULTS against the rules in RULES (absolute thresholds, regressions against --baseline).

    Exit code 0 pass, 1 a rule failed, 2 error (bad rules, missing file or metric, protocol mismatch),
    4 inconclusive with --strict (0 without, with a warning).
    """
    outputs = {"--junit": junit, "--markdown": markdown, "--json": json_out}
    for what, path in outputs.items():
        if path:
            check_output_file(path, what)
    rules = load_rules(rules_path)
    candidate = load_side(results)
    base = load_side(baseline) if baseline else None
    result = run_gate(rules, candidate, base, allow_protocol_mismatch=allow_protocol_mismatch)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(render_table(result))
    for path, render in ((junit, junit_xml), (markdown, markdown_text), (json_out, json_text)):
        if path:
            write_text(path, render(result))
    code = result.exit_code(strict)
    if result.count("inconclusive") and not strict and code == ExitCode.OK:
        click.echo(
            "warning: some verdicts are inconclusive (more images would decide them); --strict makes that exit code 4",
            err=True,
        )
    if code:
        sys.exit(code)


@click.command("diff")
@click.argument("a", type=click.Path(dir_okay=False))
@click.argument("b", type=click.Path(dir_okay=False))
@click.option("--cell", default=None, metavar="ID", help="compare this cell only.")
@click.option("--json", "as_json", is_flag=True, help="print the differences as JSON.")
def diff_command(a, b, cell, as_json) -> None:
    """What differs between results A and B: protocol fields, and each metric's values with the difference
    (B - A) and its interval (paired by image where both scored the same items)."""
    found = diff(load_side(a), load_side(b), cell)
    click.echo(json.dumps(found, indent=2) if as_json else render_diff(found))
