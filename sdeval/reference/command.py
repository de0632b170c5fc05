"""`sdeval reference`: build (from a folder, or a defined set checked first), list, captions, merge."""

from __future__ import annotations

import os

import click

from sdeval.core.atomic import check_output_file
from sdeval.core.errors import SdevalError
from sdeval.options.cli import (
    InputsCommand,
    feature_options,
    input_values,
    make_feature_options,
    reference_input_options,
    stored_inputs,
)


@click.group()
def reference() -> None:
    """Build, merge and list reference statistics; build the defined reference sets (COCO, ...)."""


@reference.command("build", cls=InputsCommand, make_options=reference_input_options, inputs_before="preprocess")
@click.argument("images", required=False, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "-o", type=click.Path(dir_okay=False), default=None,
              help="reference file (.npz); required without --set [default with --set: the cache's "
              "references/NAME.npz].")  # fmt: skip
@click.option("--set", "set_name", default=None, metavar="NAME",
              help="build a defined reference set (`sdeval reference list`), checking --images first.")  # fmt: skip
@click.option("--images", "set_images", type=click.Path(exists=True, file_okay=False), default=None, metavar="DIR",
              help="with --set: your copy of the set's images.")  # fmt: skip
@click.option("--captions", type=click.Path(exists=True, dir_okay=False), default=None, metavar="FILE",
              help="with --set: the set's caption annotation file (COCO format); it gives the exact file names, "
              "without it only the count and name pattern are checked.")  # fmt: skip
@click.option("--definition", type=click.Path(exists=True, dir_okay=False), default=None, metavar="FILE",
              help="a reference set definition file not shipped with sdeval (instead of --set).")  # fmt: skip
@click.option("--radii-k", "radii_k", default="3,5", show_default=True, metavar="K,K,...",
              help="store the Inception features' k-NN radii at these k (precision/recall: 3, density/coverage: 5), "
              "so scoring never computes them; 'none' stores none.")  # fmt: skip
@feature_options
def reference_build(images, out, set_name, set_images, captions, definition, radii_k, **kwargs) -> None:
    """Extract the features and Fréchet state of IMAGES (with --cmmd also CLIP embeddings, with --dinov2 DINOv2
    features) into a reference file.

    With --set NAME --images DIR: check DIR against the set's definition (missing, extra, changed files are an
    error that names them), then build it.
    """
    from sdeval.reference.build import build_reference_file  # torch, the extractors: not with the --help

    by_set = set_name is not None or definition is not None
    if by_set and images is not None:
        raise SdevalError("with --set, give the images as --images DIR, not as an argument")
    if not by_set and (set_images or captions):
        raise SdevalError("--images and --captions go with --set NAME (or --definition FILE)")
    if not by_set and images is None:
        raise SdevalError("give IMAGES, or --set NAME --images DIR")
    if by_set and set_images is None:
        raise SdevalError("--set needs --images DIR: your copy of the set's images")
    if not by_set and out is None:
        raise SdevalError("--out is required without --set")
    values = input_values(kwargs)
    stored = stored_inputs(kwargs, values)
    ks = _radii_k(radii_k)
    if not by_set:
        assert images is not None  # refused above without --set
        check_output_file(out, "--out")
        ref = build_reference_file(images, out, make_feature_options(kwargs), inputs=stored, values=values,
                                   radii_k=ks)  # fmt: skip
        click.echo(f"reference: {out}  ({ref.n} images, sha256 {ref.images_hash[:16]}...)")
        return

    from sdeval.reference import sets as refsets  # the reference package (numpy): when the command runs

    found = refsets.resolve_definition(set_name, definition)
    if out is None:
        out = str(refsets.default_reference_path(found.id))
        os.makedirs(os.path.dirname(out), exist_ok=True)
    check_output_file(out, "--out")
    annotations = refsets.read_annotations(captions) if captions else None
    check = refsets.check_copy(found, set_images, annotations)
    if not check.exact_names:
        click.echo(f"note: no --captions: only the count ({found.count}) and the name pattern "
                   f"({found.file_pattern}) of set {found.id} were checked, not the exact names", err=True)  # fmt: skip
    if check.unused:
        click.echo(f"note: {len(check.unused)} image(s) of the pool are not in set {found.id}: left out", err=True)
    built = refsets.build_set_reference(check, out, make_feature_options(kwargs), inputs=stored,
                                        values=values, radii_k=ks)  # fmt: skip
    ref = built.reference
    click.echo(f"reference: {out}  (set {found.id}, {ref.n} images, sha256 {ref.images_hash[:16]}...)")
    if found.pinned:
        click.echo(f"file list matches the pinned hash of {found.id}")
    else:
        click.echo(f"set {found.id} has no pinned file list hash yet; once this copy is verified, pin it in "
                   f"{found.path.name}: \"file_list_sha256\": \"{check.file_list_sha256}\"")  # fmt: skip


def _radii_k(text: str) -> tuple[int, ...]:
    """--radii-k: positive integers separated by commas, or 'none'."""
    if text.strip().lower() == "none":
        return ()
    try:
        ks = tuple(sorted({int(part) for part in text.split(",")}))
    except ValueError:
        ks = ()
    if not ks or min(ks) < 1:
        raise SdevalError(f"--radii-k: expected positive integers separated by commas (e.g. 3,5) or none, got {text!r}")
    return ks


@reference.command("list")
@click.option("--json", "as_json", is_flag=True, help="print definitions and built references as JSON.")
def reference_list(as_json: bool) -> None:
    """The defined reference sets (count, file list hash pinned or not) and the references built in the cache."""
    import json

    from sdeval.reference import sets as refsets  # the reference package (numpy): when the command runs

    defined = refsets.shipped_definitions()
    built = refsets.built_references()
    if as_json:
        click.echo(json.dumps({"sets": [d.to_json() for d in defined.values()], "built": built}, indent=2))
        return
    click.echo("reference sets:")
    for d in defined.values():
        pinned = "file list pinned" if d.pinned else "file list not pinned yet"
        click.echo(f"  {d.id}: {d.title} ({d.count} images, {pinned})")
    click.echo(f"built ({refsets.default_reference_path('x').parent}):")
    if not built:
        click.echo("  none")
    for row in built:
        if "error" in row:
            click.echo(f"  {row['path']}: {row['error']}")
        else:
            click.echo(f"  {row['path']}: {row['source']}, n={row['n']}, images sha256 {row['images_sha256'][:16]}...")


@reference.command("captions")
@click.option("--set", "set_name", default=None, metavar="NAME", help="a defined reference set.")
@click.option("--definition", type=click.Path(exists=True, dir_okay=False), default=None, metavar="FILE",
              help="a definition file not shipped with sdeval.")  # fmt: skip
@click.option("--captions", type=click.Path(exists=True, dir_okay=False), required=True, metavar="FILE",
              help="the set's caption annotation file (COCO format).")  # fmt: skip
@click.option("--out", "-o", type=click.Path(dir_okay=False), required=True, help="suite file (.jsonl).")
def reference_captions(set_name, definition, captions, out) -> None:
    """Write a set's captions (one per image, chosen by its seeded rule) as a prompt suite for `sdeval generate`."""
    from sdeval.reference import sets as refsets  # the reference package (numpy): when the command runs

    found = refsets.resolve_definition(set_name, definition)
    check_output_file(out, "--out")
    rows = refsets.captions_suite(found, captions, out)
    click.echo(f"suite: {out}  ({rows} prompts of set {found.id})")


@reference.command("merge")
@click.argument("parts", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "-o", type=click.Path(dir_okay=False), required=True)
@click.option("--allow-duplicates", is_flag=True,
              help="merge parts that share images, counting every copy (default: an error).")  # fmt: skip
def reference_merge(parts, out, allow_duplicates) -> None:
    """Merge reference files built on disjoint shards of one image set; the order of PARTS does not matter."""
    from sdeval.reference.files import load_reference, merge_references, save_reference  # numpy: when it runs

    check_output_file(out, "--out")  # before reading the parts: an unwritable path must not cost the merge

    result = merge_references([load_reference(p) for p in parts], source=out, allow_duplicates=allow_duplicates)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    save_reference(out, result.reference)
    click.echo(f"reference: {out}  ({result.reference.n} images from {len(parts)} parts)")
