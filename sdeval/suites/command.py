"""`sdeval suites list | show NAME|FILE | validate FILE | build NAME --from FILE`: the click group; each parses, calls
the loader (or the benchmark converter), prints."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from sdeval.core.atomic import check_output_file, write_bytes
from sdeval.core.errors import ConfigError, ExitCode
from sdeval.suites import BUILTIN, check_suite, load_suite, parse_suite

_JSON = click.option("--json", "as_json", is_flag=True, help="print JSON.")


@click.group("suites")
def suites() -> None:
    """List, show and validate prompt suites (docs/suites.md)."""


def _summary(suite: Any) -> dict[str, Any]:
    out = {
        "id": suite.id,
        "version": suite.version,
        "description": suite.description,
        "source": suite.source,
        "sha256": suite.sha256,
        "n_prompts": len(suite.prompts),
        "categories": suite.categories,
    }
    if suite.format == 2:  # a benchmark: how the literature names it, where its files came from
        out.update(format=2, name=suite.name, sources=list(suite.sources), notes=list(suite.notes))
        if suite.challenges:
            out["challenges"] = suite.challenges
        if suite.question_sets:
            out["question_sets"] = {
                name: {**spec, "n": suite.question_counts()[name]} for name, spec in suite.question_sets.items()
            }
    return out


def _source_line(source: dict[str, Any]) -> str:
    sha = f"sha256 {source['sha256']}" if source.get("sha256") else f"git object {source.get('git_object')}"
    return f"{source['repo']}@{source['commit'][:12]} {source['path']} ({source.get('license')}; {sha})"


def _question_sets(suite: Any) -> str:
    counts = suite.question_counts()
    return ", ".join(f"{name} {counts[name]} ({spec['format']})" for name, spec in suite.question_sets.items())


def _categories(suite: Any) -> str:
    return ", ".join(f"{name or '(none)'} {n}" for name, n in suite.categories.items())


@suites.command("list")
@_JSON
def list_command(as_json: bool) -> None:
    """The built-in suites: name, version, prompts per category, description."""
    loaded = [load_suite(f"builtin:{name}") for name in BUILTIN]
    if as_json:
        click.echo(json.dumps([_summary(s) for s in loaded], indent=2, ensure_ascii=False))
        return
    widths = {f: max(len(s.id) for s in loaded if s.format == f) for f in {s.format for s in loaded}}
    for suite in loaded:
        width = widths[suite.format]  # the generated suites and the benchmarks align each among their own
        click.echo(f"{suite.id:<{width}}  v{suite.version}  {len(suite.prompts):>4} prompts  ({_categories(suite)})")
        click.echo(f"{'':<{width}}  {suite.description}")
        if suite.format == 2:
            click.echo(f"{'':<{width}}  {suite.name}")
            for source in suite.sources:
                click.echo(f"{'':<{width}}  {_source_line(source)}")


@suites.command("show")
@click.argument("suite_arg", metavar="NAME|FILE")
@_JSON
def show_command(suite_arg: str, as_json: bool) -> None:
    """Show a suite (a built-in NAME, builtin:NAME or a FILE), whether its prompts are a benchmark's published set,
    and its prompts."""
    from sdeval.suites.published import match  # the benchmarks' converters (+60-80 ms): not with --help

    suite = load_suite(suite_arg)
    published = match(suite)  # whether the prompts are a benchmark's published set: compared, not the file's sha256
    if as_json:
        document = {**_summary(suite), "prompt_set": published.to_json()}
        document["prompts"] = [p.to_json() for p in suite.prompts]
        click.echo(json.dumps(document, indent=2, ensure_ascii=False))
        return
    version = "unversioned" if suite.version is None else f"version {suite.version}"
    click.echo(f"suite: {suite.id} ({version}, sha256 {suite.sha256[:16]}...)")
    click.echo(f"source: {suite.source}")
    if suite.description:
        click.echo(f"description: {suite.description}")
    click.echo(f"prompts: {len(suite.prompts)} ({_categories(suite)})")
    first, *more = published.lines()
    click.echo(f"prompt set: {first}")
    for line in more:
        click.echo(line)
    if suite.format == 2:
        click.echo(f"benchmark: {suite.name}")
        if suite.challenges:
            click.echo("challenges: " + ", ".join(f"{name} {n}" for name, n in suite.challenges.items()))
        if suite.question_sets:
            click.echo(f"question sets: {_question_sets(suite)}")
        click.echo("sources:")
        for source in suite.sources:
            click.echo(f"  {_source_line(source)}")
            click.echo(f"    prompts: {source.get('prompts_license')}")
            if source.get("note"):
                click.echo(f"    {source['note']}")
        click.echo("notes:")
        for note in suite.notes:
            click.echo(f"  - {note}")
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


@suites.command("build")
@click.argument("name", metavar="NAME")
@click.option(
    "--from",
    "from_file",
    required=True,
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="your copy of the benchmark's file (its sha256 or git object id is checked).",
)
@click.option(
    "-o",
    "--out",
    default=None,
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="the suite file to write (default NAME.jsonl; .jsonl.gz is compressed).",
)
def build_command(name: str, from_file: str, out: str | None) -> None:
    """Build a benchmark suite from your copy of a file sdeval does not ship (docs/suites.md)."""
    from sdeval.suites.benchmarks import build_from_copy, gzip_bytes  # +60-80 ms: when building, not with --help

    target = Path(out or f"{name}.jsonl")
    check_output_file(target, "--out")
    try:
        data = Path(from_file).read_bytes()
    except OSError as err:
        raise ConfigError(f"--from: cannot read {from_file}: {err.strerror or err}") from err
    text = build_from_copy(name, data, from_file)
    suite, problems = parse_suite(text.encode("utf-8"), target.with_name(target.name.removesuffix(".gz")))
    if problems:  # a conversion that the loader refuses is a bug, not the user's input
        raise RuntimeError(f"suites build {name}: {problems[0].at(target.name)}")
    write_bytes(target, gzip_bytes(text) if target.name.endswith(".gz") else text.encode("utf-8"))
    sets = f"; question sets: {_question_sets(suite)}" if suite.question_sets else ""
    click.echo(f"{target}: {suite.id} ({len(suite.prompts)} prompts{sets})")
