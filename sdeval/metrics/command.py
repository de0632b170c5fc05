"""`sdeval metrics`: the registry as a person or a script reads it."""

from __future__ import annotations

import json

import click

from sdeval.metrics import registry


@click.command("metrics")
@click.option("--json", "as_json", is_flag=True, help="print the registry as JSON.")
def metrics_command(as_json: bool) -> None:
    """List the metrics: key, what they fill, direction (higher or lower is better), range, interval method,
    needs, per-image columns."""
    specs = list(registry.metrics())
    if as_json:
        click.echo(json.dumps([spec.to_json() for spec in specs], indent=2))
        return
    for spec in specs:
        default = " (default)" if spec.default else ""
        click.echo(f"{spec.name}{default}: {spec.description}")
        for key in spec.results:
            low, high = ("" if bound is None else bound for bound in key.range)
            span = f", range [{low}, {high}]" if key.range != (None, None) else ""
            interval = f", interval: {key.interval.name}" if key.interval is not None else ""
            click.echo(f"  {key.key}: {key.label}, {key.direction.value} is better{span}{interval}")
            if key.parts is not None:
                click.echo(f"  {key.key}.{key.parts.column.upper()}: one {key.parts.column}'s value, as a rule key")
        click.echo(f"  needs: {', '.join(spec.need_names)}")
        if spec.per_image:
            click.echo(f"  per image: {', '.join(spec.per_image)}")
