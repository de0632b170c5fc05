"""`sdeval suites list | show NAME|FILE | validate FILE`: the click group; each parses, calls the loader, prints."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from sdeval.core.errors import ExitCode

_JSON = click.option("--json", "as_json", is_flag=True, help="print JSON.")


@click.group("suites")
def suites() -> None:
    """List, show and validate prompt suites (docs/suites.md)."""


def _summary(suite: Any) -> dict[str, Any]:
    return {
        "id": suite.id,
        "version": suite.version,
        "description": suite.description,
        "source": suite.source,
        "sha256": suite.sha256,
        "n_prompts": len(suite.prompts),
        "categories": suite.categories,
    }


def _categories(suite: Any) -> str:
    return ", ".join(f"{name or '(none)'} {n}" for name, n in suite.categories.items())


@suites.command("list")
@_JSON
def list_command(as_json: bool) -> None:
    """The built-in suites: name, version, prompts per category, description."""
    from sdeval.suites import BUILTIN, load_suite

    loaded = [load_suite(f"builtin:{name}") for name in BUILTIN]
    if as_json:
        click.echo(json.dumps([_summary(s) for s in loaded], indent=2, ensure_ascii=False))
        return
    width = max(len(s.id) for s in loaded)
    for suite in loaded:
        click.echo(f"{suite.id:<{width}}  v{suite.version}  {len(suite.prompts):>4} prompts  ({_categories(suite)})")
        click.echo(f"{'':<{width}}  {suite.description}")


@suites.command("show")
@click.argument("suite_arg", metavar="NAME|FILE")
@_JSON
def show_command(suite_arg: str, as_json: bool) -> None:
    """Show a suite (a built-in NAME, builtin:NAME or a FILE) and its prompts."""
    from sdeval.suites import load_suite

    suite = load_suite(suite_arg)
    if as_json:
        document = {**_summary(suite), "prompts": [p.to_json() for p in suite.prompts]}
        click.echo(json.dumps(document, indent=2, ensure_ascii=False))
        return
    version = "unversioned" if suite.version is None else f"version {suite.version}"
    click.echo(f"suite: {suite.id} ({version}, sha256 {suite.sha256[:16]}...)")
    click.echo(f"source: {suite.source}")
    if suite.description:
        click.echo(f"description: {suite.description}")
    click.echo(f"prompts: {len(suite.prompts)} ({_categories(suite)})")
    width = max(len(p.id) for p in suite.prompts)
    cat_width = max(len(p.category or "") for p in suite.prompts)
    for prompt in suite.prompts:
        extra = f"  [init: {prompt.init_image_source}]" if prompt.init_image_source else ""
        click.echo(f"  {prompt.id:<{width}}  {prompt.category or '':<{cat_width}}  {prompt.prompt}{extra}")


@suites.command("validate")
@click.argument("suite_arg", metavar="FILE")
@_JSON
def validate_command(suite_arg: str, as_json: bool) -> None:
    """Check a suite file: every problem with its line and reason (exit code 2 when there is any)."""
    from sdeval.suites import check_suite

    suite, problems = check_suite(suite_arg)
    if as_json:
        document = {
            "file": suite_arg,
            "valid": not problems,
            "problems": [p.to_json() for p in problems],
            "suite": _summary(suite) if not problems else None,
        }
        click.echo(json.dumps(document, indent=2, ensure_ascii=False))
    elif problems:
        for problem in problems:
            click.echo(problem.at(suite_arg))
    else:
        version = "unversioned" if suite.version is None else f"version {suite.version}"
        click.echo(f"{suite_arg}: ok: {suite.id} ({version}), {len(suite.prompts)} prompts ({_categories(suite)})")
    if problems:
        click.echo(f"error: {suite_arg}: {len(problems)} problem(s)", err=True)
        sys.exit(ExitCode.USAGE)
