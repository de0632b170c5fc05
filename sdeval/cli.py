"""Command-line entry point: a thin click group; each command parses, calls one function, prints."""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import sys
import tempfile
import threading
import traceback
import warnings
from collections.abc import Iterator

import click

from sdeval import __version__
from sdeval.errors import ExitCode, SdevalError, Terminated


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """While a command runs, SIGTERM raises Terminated in the main thread, so it unwinds like Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _save_traceback() -> str:
    """Write the current exception's traceback to a file for the bug report; returns its path."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    fd, path = tempfile.mkstemp(prefix=f"sdeval-error-{stamp}-", suffix=".txt")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(f"sdeval {__version__}: {' '.join(sys.argv)}\n\n")
        traceback.print_exc(file=handle)
    return path


class _Group(click.Group):
    """Every command ends with one of the documented exit codes (README, "Exit codes"), never a traceback:
    SdevalError is one line and 2, Ctrl-C 130, SIGTERM 143, anything unexpected one line and 70 with the
    traceback saved to a file."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            with _sigterm_unwinds():
                return super().invoke(ctx)
        except SdevalError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(ExitCode.USAGE)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BrokenPipeError:
            # The reader of our output went away (`sdeval ... | head`): not an error of ours. Point stdout at
            # /dev/null so the interpreter's final flush does not raise again, and exit as a shell would.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(ExitCode.BROKEN_PIPE)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(ExitCode.INTERRUPTED)
        except Terminated:
            click.echo("terminated (SIGTERM)", err=True)
            sys.exit(ExitCode.TERMINATED)
        except Exception as err:
            path = _save_traceback()
            first = str(err).splitlines()[0] if str(err) else ""
            click.echo(f"internal error: {type(err).__name__}: {first} (a bug: please report it with the "
                       f"traceback in {path})", err=True)  # fmt: skip
            sys.exit(ExitCode.INTERNAL)


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


class _MetricsHelp(click.Option):
    """--metrics, whose help lists the registered metrics when shown (a test module may have added one)."""

    def get_help_record(self, ctx: click.Context):  # type: ignore[override]
        from sdeval.metrics import registry

        self.help = f"comma-separated metrics: {', '.join(registry.names())} (see `sdeval metrics`)."
        return super().get_help_record(ctx)


@main.command()
@click.argument("images", type=click.Path(exists=True, file_okay=False))
@click.option("--reference", "-r", default=None, help="reference folder, or a file from `sdeval reference build`.")
@click.option("--metrics", cls=_MetricsHelp, default=None, help="comma-separated metrics [default: fid,kid,is,pr].")
@click.option("--prompts", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="prompt manifest (JSONL or CSV, `file` and `prompt` columns, `file` relative to the manifest's "
              "folder); without it, or for images it does not list, prompts come from the images' metadata or "
              "NAME.txt captions. A generation run's own manifest is used by default.")  # fmt: skip
@click.option("--group-by", default=None, metavar="folder|COLUMN",
              help="score a plain folder in cells: by first sub-folder (`folder`) or by a prompt column "
              "(`checkpoint`, `category`, or a settings key). A generation run is scored per checkpoint x "
              "setting without it.")  # fmt: skip
@click.option("--suite", default=None, metavar="NAME|FILE",
              help="prompt suite with specs for adherence (a built-in name or a file); joined to images by prompt "
              "id, else by prompt text [default: the suite a generation run was made from].")  # fmt: skip
@click.option("--judge", type=click.Choice(["detector", "clip", "shapes"]), default="detector", show_default=True,
              help="adherence judge: an open-vocabulary detector, CLIP contrast, or the calibration world's "
              "exact shapes detector (docs/adherence.md).")  # fmt: skip
@click.option("--detector-model", default=None, metavar="ID|PATH",
              help="the detector judge's model: a hub id or a local folder (OWLv2 or Grounding DINO) "
              "[default: google/owlv2-base-patch16-ensemble].")  # fmt: skip
@click.option("--geneval-results", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="also write the adherence verdicts as GenEval's results.jsonl (read by its "
              "summary_scores.py).")  # fmt: skip
@_clip_options
@click.option("--rprecision-r", type=click.IntRange(min=2), default=None,
              help="prompts ranked per image for rprecision [default: min(100, distinct prompts)].")  # fmt: skip
@click.option("--per-image", is_flag=True, hidden=True, help="kept for compatibility: per-image rows are always there.")
@click.option("--kid-subset-size", type=click.IntRange(min=2), default=None, help="default: min(1000, n).")
@click.option("--kid-subsets", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--seed", type=int, default=2020, show_default=True, help="KID subsets, IS splits, R-precision draws.")
@click.option("--ci", "ci_level", type=click.FloatRange(0.5, 0.999), default=None, is_flag=False, flag_value=0.95,
              metavar="LEVEL", help="add an interval to every metric (bootstrap over prompts; block jackknife for "
              "FID, KID, CMMD, recall; docs/statistics.md) at LEVEL [flag alone: 0.95].")  # fmt: skip
@click.option("--ci-replicates", type=click.IntRange(min=20), default=200, show_default=True,
              help="bootstrap replicates for --ci.")  # fmt: skip
@_feature_options
@click.option("--out", "-o", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="write the results JSON here, and the feature state beside it (NAME.state.npz); "
              "`-`: JSON to standard output, the table to stderr, no state.")  # fmt: skip
def score(images, reference, metrics, prompts, group_by, suite, judge, detector_model, geneval_results, rprecision_r,
          per_image, kid_subset_size, kid_subsets, seed, ci_level, ci_replicates, out, clip_model, clip_pretrained,
          cmmd_model, cmmd_pretrained, **kwargs) -> None:  # fmt: skip
    """Score a folder of IMAGES: FID, KID, IS, precision/recall; CLIP score, R-precision, CMMD, diversity.

    Exit code 0 when every requested metric was computed, 3 when some could not be (results are still
    written, each missing metric with its reason), 2 for a usage or input error.
    """
    from sdeval.atomic import STDOUT, check_output_file
    from sdeval.results import incomplete_metrics, write_outputs
    from sdeval.score import ScoreOptions, score_run
    from sdeval.table import render_table

    if out:
        check_output_file(out, "--out")  # before any work: an unwritable path must not cost the whole run
    if geneval_results:
        check_output_file(geneval_results, "--geneval-results")
    options = ScoreOptions(
        images=images,
        reference=reference,
        metrics=_parse_metrics(metrics) if metrics is not None else None,
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
        group_by=group_by,
        suite=suite,
        judge=judge,
        detector_model=detector_model,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the table prints the results' own warnings
        run = score_run(options)
    if ci_level is not None:
        from sdeval.stats import annotate_intervals, states_from_arrays

        states = states_from_arrays(run.state, run.cell_ids)
        annotate_intervals(run.document, states, level=ci_level, replicates=ci_replicates, seed=seed)
    to_stdout = out == STDOUT  # JSON on stdout, so the table goes to stderr
    if out:
        write_outputs(out, run)
    else:
        run.document["state"] = {"path": None, "reason": "no --out: no results file, so no feature state was kept"}
    results = run.document
    click.echo(render_table(results, max_listed=20 if out else None), err=to_stdout)  # the JSON lists everything
    if out and not to_stdout:
        click.echo(f"\nresults: {out}")
    if geneval_results:
        from sdeval.geneval import write_results_jsonl

        rows = write_results_jsonl(geneval_results, results)
        click.echo(f"GenEval results: {geneval_results} ({rows} images)", err=to_stdout)
    missing = incomplete_metrics(results)
    if missing:
        click.echo(f"incomplete: {', '.join(missing)} could not be computed (reasons above)", err=True)
        sys.exit(ExitCode.INCOMPLETE)


@main.command("metrics")
@click.option("--json", "as_json", is_flag=True, help="print the registry as JSON.")
def metrics_command(as_json: bool) -> None:
    """List the metrics: key, what they fill, direction (higher or lower is better), needs, per-image columns."""
    import json

    from sdeval.metrics import registry

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
            click.echo(f"  {key.key}: {key.label}, {key.direction.value} is better{span}")
        click.echo(f"  needs: {', '.join(sorted(n.value for n in spec.needs))}")
        if spec.per_image:
            click.echo(f"  per image: {', '.join(spec.per_image)}")


@main.group()
def reference() -> None:
    """Build, merge and list reference statistics; build the defined reference sets (COCO, ...)."""


@reference.command("build")
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
@click.option("--cmmd", is_flag=True, help="also store the CLIP image embeddings CMMD needs (same decode pass).")
@click.option("--cmmd-model", default=None, metavar="NAME",
              help="open_clip model for those embeddings (implies --cmmd) [default: ViT-L-14-336].")  # fmt: skip
@click.option("--cmmd-pretrained", default=None, metavar="TAG|PATH",
              help="its weights, tag or local file (implies --cmmd) [default: openai].")  # fmt: skip
@_feature_options
def reference_build(images, out, set_name, set_images, captions, definition, cmmd, cmmd_model, cmmd_pretrained,
                    **kwargs) -> None:  # fmt: skip
    """Extract the features and Fréchet state of IMAGES (and with --cmmd, CLIP embeddings) into a reference file.

    With --set NAME --images DIR: check DIR against the set's definition (missing, extra, changed files are an
    error that names them), then build it.
    """
    from sdeval.atomic import check_output_file
    from sdeval.features.clip import CMMD_MODEL, ClipModelSpec
    from sdeval.score import build_reference_file

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
    spec = None
    if cmmd or cmmd_model or cmmd_pretrained:
        spec = ClipModelSpec(cmmd_model or CMMD_MODEL.name, cmmd_pretrained or CMMD_MODEL.pretrained)
    if not by_set:
        check_output_file(out, "--out")
        ref = build_reference_file(images, out, _make_feature_options(kwargs), cmmd=spec)
        click.echo(f"reference: {out}  ({ref.n} images, sha256 {ref.images_hash[:16]}...)")
        return

    from sdeval import refsets

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
    built = refsets.build_set_reference(check, out, _make_feature_options(kwargs), cmmd=spec)
    ref = built.reference
    click.echo(f"reference: {out}  (set {found.id}, {ref.n} images, sha256 {ref.images_hash[:16]}...)")
    if found.pinned:
        click.echo(f"file list matches the pinned hash of {found.id}")
    else:
        click.echo(f"set {found.id} has no pinned file list hash yet; once this copy is verified, pin it in "
                   f"{found.path.name}: \"file_list_sha256\": \"{check.file_list_sha256}\"")  # fmt: skip


@reference.command("list")
@click.option("--json", "as_json", is_flag=True, help="print definitions and built references as JSON.")
def reference_list(as_json: bool) -> None:
    """The defined reference sets (count, file list hash pinned or not) and the references built in the cache."""
    import json

    from sdeval import refsets

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
    from sdeval import refsets
    from sdeval.atomic import check_output_file

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
    from sdeval.reference import load_reference, merge_references, save_reference

    result = merge_references([load_reference(p) for p in parts], source=out, allow_duplicates=allow_duplicates)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    save_reference(out, result.reference)
    click.echo(f"reference: {out}  ({result.reference.n} images from {len(parts)} parts)")


@main.command()
@click.option("--out", "-o", type=click.Path(file_okay=False), default="reports/demo", show_default=True)
@click.option("--images", "n", type=click.IntRange(min=12), default=48, show_default=True, help="images per set.")
def demo(out, n) -> None:
    """Score a small synthetic folder offline on the CPU, with random Inception weights."""
    from pathlib import Path

    from sdeval.atomic import check_output_folder
    from sdeval.demo import run_demo
    from sdeval.table import render_table

    check_output_folder(out, "--out")
    click.echo("demo: synthetic images and RANDOM Inception weights; the numbers show the pipeline works, "
               "not image quality.", err=True)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        results = run_demo(Path(out), n)
    click.echo(render_table(results))
    click.echo(f"\nresults: {Path(out) / 'results.json'}")


from sdeval.generate.command import generate  # noqa: E402

main.add_command(generate)

from sdeval.suites.command import suites  # noqa: E402

main.add_command(suites)

from sdeval.gate.command import diff_command, gate  # noqa: E402

main.add_command(gate)
main.add_command(diff_command)


@main.command("report")
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "-o", type=click.Path(file_okay=False), required=True, help="report folder (reports/NAME/).")
@click.option(
    "--gate",
    "gate_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    metavar="FILE",
    help="a verdict from `sdeval gate --json`, shown in the report.",
)
@click.option("--title", default="sdeval report", show_default=True)
@click.option(
    "--level",
    type=click.FloatRange(0.5, 0.999),
    default=0.95,
    show_default=True,
    help="interval level; differences are significant at 1 - LEVEL after Holm's adjustment.",
)
@click.option(
    "--replicates",
    type=click.IntRange(min=50),
    default=200,
    show_default=True,
    help="bootstrap replicates for intervals and comparisons.",
)
@click.option("--quiet", is_flag=True, help="no progress bar.")
def report_command(results, out, gate_file, title, level, replicates, quiet) -> None:
    """One offline HTML page (index.html, thumbnails beside it) and summary.md over RESULTS files."""
    from sdeval.report import ReportOptions, build_report

    options = ReportOptions(title=title, gate=gate_file, level=level, replicates=replicates, quiet=quiet)
    written = build_report(list(results), out, options)
    click.echo(f"report: {written['index']}  (summary: {written['summary']})")


from sdeval.bench import bench_command  # noqa: E402

main.add_command(bench_command)
