"""`sdeval export`: parse options, call sdeval.export, write or print."""

from __future__ import annotations

import click

from sdeval.core.atomic import check_output_file
from sdeval.core.errors import SdevalError
from sdeval.export.card import front_matter, write_model_index


@click.group("export")
def export() -> None:
    """Write results in other tools' formats (a Hugging Face model card's model-index)."""


@export.command("model-index")
@click.argument("results", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--out",
    "-o",
    default="-",
    show_default=True,
    help="the model card (README.md) to write `model-index` into, keeping its other metadata and text (made when "
    "there is none); - prints the front matter block.",
)
@click.option("--model-name", default=None, help="the model's name [default: the checkpoint's, else the results'].")
@click.option("--checkpoint", default=None, metavar="NAME", help="the checkpoint whose cells to export.")
@click.option("--cell", "cells", multiple=True, metavar="ID", help="a cell to export (repeat for several).")
def model_index_command(
    results: str, out: str, model_name: str | None, checkpoint: str | None, cells: tuple[str, ...]
) -> None:
    """Write the Hugging Face model card `model-index` of RESULTS: task text-to-image, the suite or reference set as
    dataset, each metric with its name, value and protocol (under `args`), so a published number carries how it
    was measured."""
    # numpy (the metric registry, the results document) loads when exporting, not with --help (+0.3 s)
    from sdeval.export.model_index import default_model_name, model_index, select_cells
    from sdeval.results.document import load_results  # numpy: when exporting

    if checkpoint is not None and cells:
        raise SdevalError("--checkpoint and --cell: give one")
    if out != "-":
        check_output_file(out, "--out")
    document = load_results(results)
    name = model_name or default_model_name(results, select_cells(document, checkpoint, cells))
    index = model_index(document, name, checkpoint, cells)
    if out == "-":
        click.echo(front_matter({"model-index": index}), nl=False)
        return
    source = click.format_filename(results)
    note = f"# {name}\n\nEvaluation results written by `sdeval export model-index` from {source}.\n"
    existed = write_model_index(out, index, note)
    click.echo(f"model-index: {out} ({'updated' if existed else 'new card'}, {len(index[0]['results'])} results)")
