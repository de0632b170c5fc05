"""Command-line entry point: a thin click group; each command parses, calls one function, prints."""

from __future__ import annotations

import sys
import warnings

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


def _feature_options(func):
    """Options shared by every command that turns images into Inception features."""
    options = [
        click.option("--preprocess", type=click.Choice(["legacy", "clean"]), default="legacy", show_default=True,
                     help="legacy: torch-fidelity/TTUR bilinear resize; clean: clean-fid PIL bicubic."),
        click.option("--inception-weights", type=click.Path(dir_okay=False), default=None,
                     help="torch-fidelity-format Inception state dict (.pth or .safetensors); "
                     "default: the standard weights."),
        click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True),
        click.option("--workers", type=click.IntRange(min=0), default=1, show_default=True,
                     help="decoding processes (0: decode in the main process)."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N]."),
        click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
                     help="feature cache folder [default: $SDEVAL_CACHE_DIR or ~/.cache/sdeval]."),
        click.option("--no-cache", is_flag=True, help="neither read nor write the feature cache."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def _make_feature_options(kwargs: dict):
    from sdeval.paths import cache_root
    from sdeval.score import FeatureOptions

    cache_dir = None if kwargs.pop("no_cache") else str(kwargs.pop("cache_dir") or cache_root())
    kwargs.pop("cache_dir", None)
    return FeatureOptions(
        preprocess=kwargs.pop("preprocess"),
        inception_weights=kwargs.pop("inception_weights"),
        batch_size=kwargs.pop("batch_size"),
        workers=kwargs.pop("workers"),
        device=kwargs.pop("device"),
        cache_dir=cache_dir,
    )


def _parse_metrics(text: str) -> tuple[str, ...]:
    names = tuple(part.strip().lower() for part in text.split(",") if part.strip())
    if not names:
        raise SdevalError("--metrics is empty")
    return names


def _clip_options(func):
    """--clip-* (CLIP score, R-precision, diversity) and --cmmd-* (CMMD) model choices."""
    options = [
        click.option("--clip-model", default=None, metavar="NAME",
                     help="open_clip model for clip, rprecision, diversity [default: ViT-L-14]."),
        click.option("--clip-pretrained", default=None, metavar="TAG|PATH",
                     help="its weights: an open_clip tag or a local file (works offline) [default: openai]."),
        click.option("--cmmd-model", default=None, metavar="NAME",
                     help="open_clip model for cmmd [default: the --clip-* model if one was given, "
                     "else the paper's ViT-L-14-336]."),
        click.option("--cmmd-pretrained", default=None, metavar="TAG|PATH",
                     help="its weights, tag or local file [default: openai]."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


@main.command()
@click.argument("images", type=click.Path(exists=True, file_okay=False))
@click.option("--reference", "-r", default=None, help="reference folder, or a file from `sdeval reference build`.")
@click.option("--metrics", default="fid,kid,is,pr", show_default=True,
              help="comma-separated: fid, kid, is, pr, clip, rprecision, cmmd, diversity.")  # fmt: skip
@click.option("--prompts", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="prompt manifest (JSONL or CSV, `file` and `prompt` columns); without it, or for images it "
              "does not list, prompts come from the images' metadata or NAME.txt captions.")  # fmt: skip
@_clip_options
@click.option("--rprecision-r", type=click.IntRange(min=2), default=None,
              help="prompts ranked per image for rprecision [default: min(100, distinct prompts)].")  # fmt: skip
@click.option("--per-image", is_flag=True, help="add per-image rows (prompt, seed, CLIP score, ...) to the results.")
@click.option("--kid-subset-size", type=click.IntRange(min=2), default=None, help="default: min(1000, n).")
@click.option("--kid-subsets", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--seed", type=int, default=2020, show_default=True, help="KID subsets, IS splits, R-precision draws.")
@_feature_options
@click.option("--out", "-o", type=click.Path(dir_okay=False), default=None, help="write the results JSON here.")
def score(images, reference, metrics, prompts, rprecision_r, per_image, kid_subset_size, kid_subsets, seed, out,
          clip_model, clip_pretrained, cmmd_model, cmmd_pretrained, **kwargs) -> None:  # fmt: skip
    """Score a folder of IMAGES: FID, KID, IS, precision/recall; CLIP score, R-precision, CMMD, diversity."""
    from sdeval.results import render_table, write_results
    from sdeval.score import ScoreOptions
    from sdeval.score import score as run_score

    options = ScoreOptions(
        images=images,
        reference=reference,
        metrics=_parse_metrics(metrics),
        kid_subset_size=kid_subset_size,
        kid_subsets=kid_subsets,
        seed=seed,
        features=_make_feature_options(kwargs),
        prompts=prompts,
        clip_model=clip_model,
        clip_pretrained=clip_pretrained,
        cmmd_model=cmmd_model,
        cmmd_pretrained=cmmd_pretrained,
        rprecision_r=rprecision_r,
        per_image=per_image,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the table prints the results' own warnings
        results = run_score(options)
    if out:
        write_results(out, results)
    click.echo(render_table(results, max_listed=20 if out else None))  # the JSON file lists everything
    if out:
        click.echo(f"\nresults: {out}")


@main.group()
def reference() -> None:
    """Build and merge reference statistics."""


@reference.command("build")
@click.argument("images", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "-o", type=click.Path(dir_okay=False), required=True, help="reference file (.npz).")
@click.option("--cmmd", is_flag=True, help="also store the CLIP image embeddings CMMD needs (same decode pass).")
@click.option("--cmmd-model", default=None, metavar="NAME",
              help="open_clip model for those embeddings (implies --cmmd) [default: ViT-L-14-336].")  # fmt: skip
@click.option("--cmmd-pretrained", default=None, metavar="TAG|PATH",
              help="its weights, tag or local file (implies --cmmd) [default: openai].")  # fmt: skip
@_feature_options
def reference_build(images, out, cmmd, cmmd_model, cmmd_pretrained, **kwargs) -> None:
    """Extract the features and Fréchet state of IMAGES (and with --cmmd, CLIP embeddings) into a reference file."""
    from sdeval.features.clip import CMMD_MODEL, ClipModelSpec
    from sdeval.score import build_reference_file

    spec = None
    if cmmd or cmmd_model or cmmd_pretrained:
        spec = ClipModelSpec(cmmd_model or CMMD_MODEL.name, cmmd_pretrained or CMMD_MODEL.pretrained)
    ref = build_reference_file(images, out, _make_feature_options(kwargs), cmmd=spec)
    click.echo(f"reference: {out}  ({ref.n} images, sha256 {ref.images_hash[:16]}...)")


@reference.command("merge")
@click.argument("parts", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "-o", type=click.Path(dir_okay=False), required=True)
def reference_merge(parts, out) -> None:
    """Merge reference files built on disjoint shards of one image set."""
    from sdeval.reference import load_reference, merge_references, save_reference

    merged = merge_references([load_reference(p) for p in parts], source=out)
    save_reference(out, merged)
    click.echo(f"reference: {out}  ({merged.n} images from {len(parts)} parts)")


@main.command()
@click.option("--out", "-o", type=click.Path(file_okay=False), default="reports/demo", show_default=True)
@click.option("--images", "n", type=click.IntRange(min=12), default=48, show_default=True, help="images per set.")
def demo(out, n) -> None:
    """Score a small synthetic folder offline on the CPU, with random Inception weights."""
    from pathlib import Path

    from sdeval.demo import run_demo
    from sdeval.results import render_table

    click.echo("demo: synthetic images and RANDOM Inception weights; the numbers show the pipeline works, "
               "not image quality.", err=True)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        results = run_demo(Path(out), n)
    click.echo(render_table(results))
    click.echo(f"\nresults: {Path(out) / 'results.json'}")


from sdeval.generate.command import generate  # noqa: E402

main.add_command(generate)
