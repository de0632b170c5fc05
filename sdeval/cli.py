"""Command-line entry point: a thin click group; each command parses, calls one function, prints."""

from __future__ import annotations

import sys

import click

from sdeval import __version__
from sdeval.errors import SdevalError


class _Group(click.Group):
    """Turns SdevalError into one clear line on stderr and exit code 2, never a traceback."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except SdevalError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="sdeval")
def main() -> None:
    """sdeval: generate, score, compare and gate text-to-image models."""


from sdeval.generate.command import generate  # noqa: E402

main.add_command(generate)
