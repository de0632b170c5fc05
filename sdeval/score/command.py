"""`sdeval score` and `sdeval demo`: parse options, score, print the table, write the results, exit with the
documented code."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import click
from click.core import ParameterSource

from sdeval.core.atomic import STDOUT, check_output_file, check_output_folder
from sdeval.core.distributed import detect, parse_shard
from sdeval.core.errors import ExitCode, OutputError, SdevalError
from sdeval.judges.registry import JUDGES
from sdeval.metrics.clip_score import AGGREGATIONS as CLIP_AGGREGATIONS
from sdeval.options.cli import (
    DEFAULTS,
    CiHelp,
    InputsCommand,
    MetricsHelp,
    clip_options,
    feature_options,
    feature_values,
    input_options,
    input_values,
    parse_metrics,
)
from sdeval.options.protocols import NAMES as PROTOCOL_NAMES
from sdeval.options.score import PREPROCESS_MODES, options_from_mapping, options_from_record

#: The command-line options that are ScoreOptions fields (the feature inputs' come by `input_values`, the CLIP
#: models' among them; the rest say what to write where).
_SCORE_KEYS = ("prompts", "group_by", "suite", "judge", "detector_model", "rprecision_r", "kid_subset_size",
               "kid_subsets", "seed", "ci", "ci_replicates", "clip_aggregation", "dc_k", "reference_protocol",
               "imagereward_model", "hps_model", "pickscore_model", "aesthetic_model", "allow_pickle", "vqa_model",
               "vqa_template", "vqa_threshold", "questions", "protocol")  # fmt: skip


def _model_options(func):
    """The models of the preference scorers and the VQA judge: hub ids or local paths (the feature inputs' options,
    FD_DINOv2's model among them, come before them: InputsCommand)."""
    options = [
        click.option("--imagereward-model", default=None, metavar="ID|PATH",
                     help="ImageReward checkpoint (ImageReward.pt/.safetensors, or a folder with it, med_config.json "
                     "and vocab.txt) [default: THUDM/ImageReward]."),
        click.option("--hps-model", default=None, metavar="v2.0|v2.1|PATH",
                     help="HPS checkpoint (open_clip ViT-H-14 weights) [default: v2.1 from xswu/HPSv2]."),
        click.option("--pickscore-model", default=None, metavar="ID|PATH",
                     help="PickScore CLIPModel folder (with its processor files) "
                     "[default: yuvalkirstain/PickScore_v1]."),
        click.option("--aesthetic-model", default=None, metavar="PATH|URL",
                     help="LAION aesthetic v2 head (.pth or .safetensors); it reads the --clip-* model's embeddings "
                     "[default: sac+logos+ava1-l14-linearMSE.pth, with OpenAI ViT-L/14]."),
        click.option("--allow-pickle", is_flag=True,
                     help="load .pt/.pth/.bin checkpoints (pickles, read with torch.load(weights_only=True)); "
                     "without it only .safetensors load."),
        click.option("--vqa-model", default=None, metavar="ID|PATH",
                     help="--judge vqa: BLIP VQA or an image-text-to-text model [default: Salesforce/blip-vqa-base]."),
        click.option("--vqa-template", default=None, metavar="TEXT",
                     help="--judge vqa: prompt with {question} for an image-text-to-text model [default: its chat "
                     "template]."),
        click.option("--vqa-threshold", type=click.FloatRange(0.0, 1.0), default=None,
                     help="--judge vqa: a question holds when P(yes) >= this [default: 0.5]."),
        click.option("--questions", type=click.Path(dir_okay=False), default=None, metavar="FILE|SET",
                     help="--judge vqa: TIFA or DSG questions per prompt (joined by prompt id, else text) instead of "
                     "questions from the suite's specs: a question file, or one of the suite's question sets "
                     "[default: the suite's first set that holds questions, if any]."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


@click.command(cls=InputsCommand, make_options=input_options, inputs_before="imagereward_model")
@click.argument("images", type=click.Path(exists=True, file_okay=False))
@click.option("--reference", "-r", default=None, help="reference folder, or a file from `sdeval reference build`.")
@click.option("--reference-protocol", type=click.Choice(PREPROCESS_MODES), default=None, metavar="ROUTE",
              help="with --reference STATS.npz (mu, sigma: pytorch-fid's, clean-fid's, MLPerf's; FID only): the "
              "Inception route it was made with (or STATS.npz.json says so); FID is refused where this run's "
              "differs.")  # fmt: skip
@click.option("--metrics", cls=MetricsHelp, default=None, help="comma-separated metrics [default: fid,kid,is,pr].")
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
@click.option("--judge", type=click.Choice(JUDGES), default=DEFAULTS["judge"], show_default=True,
              help="adherence judge: an open-vocabulary detector, CLIP contrast, or the calibration world's "
              "exact shapes detector (docs/adherence.md).")  # fmt: skip
@click.option("--detector-model", default=None, metavar="ID|PATH",
              help="the detector judge's model: a hub id or a local folder (OWLv2 or Grounding DINO) "
              "[default: google/owlv2-base-patch16-ensemble].")  # fmt: skip
@click.option("--geneval-results", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="also write the adherence verdicts as GenEval's results.jsonl (read by its "
              "summary_scores.py).")  # fmt: skip
@clip_options
@click.option("--rprecision-r", type=click.IntRange(min=2), default=None,
              help="prompts ranked per image for rprecision [default: min(100, distinct prompts)].")  # fmt: skip
@click.option("--clip-aggregation", type=click.Choice(CLIP_AGGREGATIONS), default=DEFAULTS["clip_aggregation"],
              show_default=True, help="clip: mean of 100·max(cos, 0) per image (clamped: torchmetrics' scale), or "
              "of 100·cos (mean: MLPerf's, no clamp).")  # fmt: skip
@click.option("--protocol", type=click.Choice(PROTOCOL_NAMES), default=None,
              help="a peer's protocol by name: sets every choice that moves its numbers (route, KID subsets, CLIP "
              "aggregation) that is not given explicitly; recorded in the results.")  # fmt: skip
@click.option("--per-image", is_flag=True, hidden=True, help="kept for compatibility: per-image rows are always there.")
@click.option("--kid-subset-size", type=click.IntRange(min=2), default=None, help="default: min(1000, n).")
@click.option("--kid-subsets", type=click.IntRange(min=1), default=DEFAULTS["kid_subsets"], show_default=True)
@click.option("--dc-k", type=click.IntRange(min=1), default=DEFAULTS["dc_k"], show_default=True,
              help="dc: the neighbourhood of density and coverage (Naeem et al.'s 5).")  # fmt: skip
@click.option("--seed", type=click.IntRange(min=0), default=DEFAULTS["seed"], show_default=True,
              help="KID subsets, IS splits, R-precision draws, interval resampling.")  # fmt: skip
@click.option("--ci", cls=CiHelp, type=click.FloatRange(0.5, 0.999), default=None, is_flag=False, flag_value=0.95,
              metavar="LEVEL")  # fmt: skip
@click.option("--ci-replicates", type=click.IntRange(min=20), default=DEFAULTS["ci_replicates"], show_default=True,
              help="bootstrap replicates for --ci.")  # fmt: skip
@_model_options
@feature_options
@click.option("--shard", default=None, metavar="I/N",
              help="array jobs: do the per-image work of every N-th image from the I-th (0-based) and write it as a "
              "part to --out; `sdeval merge` turns all N parts into the results of the whole.")  # fmt: skip
@click.option("--out", "-o", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="write the results JSON here, and the feature state beside it (NAME.state.npz); "
              "`-`: JSON to standard output, the table to stderr, no state.")  # fmt: skip
def score(images, reference, metrics, geneval_results, per_image, shard, out, **values) -> None:
    """Score a folder of IMAGES: FID, KID, IS, precision/recall; CLIP score, R-precision, CMMD, diversity;
    prompt adherence, seed robustness, faithfulness (`sdeval metrics` lists them all).

    Exit code 0 when every requested metric was computed, 3 when some could not be (results are still
    written, each missing metric with its reason), 2 for a usage or input error.
    """
    from sdeval.score import score_run  # torch: when scoring

    if shard is not None and (not out or out == STDOUT):
        raise SdevalError("--shard writes a part file: give -o part_I.json (then `sdeval merge part_*.json -o ...`)")
    if out:
        check_output_file(out, "--out")  # before any work: an unwritable path must not cost the whole run
    if geneval_results:
        check_output_file(geneval_results, "--geneval-results")
    chosen = {**feature_values(values), **input_values(values), **{key: values.pop(key) for key in _SCORE_KEYS}}
    if chosen.get("protocol") is not None:
        # Options left at their defaults are not "given": the preset fills them (an explicit one wins, recorded).
        context = click.get_current_context()
        chosen = {k: (None if context.get_parameter_source(k) is ParameterSource.DEFAULT and k != "protocol" else v)
                  for k, v in chosen.items()}  # fmt: skip
    options = options_from_mapping(
        chosen, images=images, reference=reference, metrics=parse_metrics(metrics) if metrics else None, where="option"
    )
    if shard is not None:
        _write_part(options, shard, out, geneval_results)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the table prints the results' own warnings
        run = score_run(options)
    if run is None:
        return  # a rank of a launch other than the main one: rank 0 writes the results
    _finish(run, out, geneval_results)


def _finish(run, out: str | None, geneval_results: str | None) -> None:
    """Write the results (and the state), print the table, exit 0, or 3 when some metric could not be computed."""
    # the results document and its schemas (+10-20 ms): when a run is written, not with `sdeval score --help`
    from sdeval.results.document import incomplete_metrics, write_outputs
    from sdeval.results.table import render_table  # with the results document, above

    to_stdout = out == STDOUT  # JSON on stdout, so the table goes to stderr
    failed = None
    if out:
        try:
            write_outputs(out, run)
        except OutputError as err:  # a full disk: the numbers are still shown, then the error says what was kept
            failed = err
    else:
        run.document["state"] = {"path": None, "reason": "no --out: no results file, so no feature state was kept"}
    results = run.document
    click.echo(render_table(results, max_listed=20 if out else None), err=to_stdout)  # the JSON lists everything
    if failed is not None:
        raise failed
    if out and not to_stdout:
        click.echo(f"\nresults: {out}")
    if geneval_results:
        from sdeval.score.geneval import write_results_jsonl  # PIL and the prompt readers (+0.1 s): when asked for

        rows = write_results_jsonl(geneval_results, results)
        click.echo(f"GenEval results: {geneval_results} ({rows} images)", err=to_stdout)
    missing = incomplete_metrics(results)
    if missing:
        click.echo(f"incomplete: {', '.join(missing)} could not be computed (reasons above)", err=True)
        sys.exit(ExitCode.INCOMPLETE)


def _write_part(options, shard: str, out: str, geneval_results: str | None) -> None:
    from sdeval.score.prepare import prepare_part  # torch: when scoring

    if geneval_results:
        raise SdevalError("--geneval-results goes with `sdeval merge`, which has every image's verdict")
    if detect().group:
        raise SdevalError(
            "--shard is for separate jobs; under torchrun or accelerate launch every rank takes its share"
        )
    index, count = parse_shard(shard)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        part = prepare_part(options, (index, count))
    arrays = part.save(out)
    done = f"part {index}/{count}: {part.n} images ({len(part.skipped)} skipped) of {part.n_listed} -> {out}"
    click.echo(f"{done} (+ {arrays.name}); when all {count} parts are done: sdeval merge PARTS... -o results.json")


@click.command("merge")
@click.argument("parts", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--ci", cls=CiHelp, type=click.FloatRange(0.5, 0.999), default=None, is_flag=False, flag_value=0.95,
              metavar="LEVEL")  # fmt: skip
@click.option("--ci-replicates", type=click.IntRange(min=20), default=DEFAULTS["ci_replicates"], show_default=True)
@click.option("--geneval-results", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="also write the adherence verdicts as GenEval's results.jsonl.")  # fmt: skip
@click.option("--out", "-o", type=click.Path(dir_okay=False, allow_dash=True), required=True,
              help="the results JSON (and NAME.state.npz beside it); `-`: JSON to standard output.")  # fmt: skip
def merge(parts, ci, ci_replicates, geneval_results, out) -> None:
    """Merge the parts of `sdeval score --shard I/N` (one per shard, any order) into the results of the whole: the
    same document as scoring every image in one process. Missing, repeated or overlapping shards, and parts made
    with different options, models or references, are refused naming the part."""
    from sdeval.score.part import ImagePart, merge_parts  # torch (Inception's module): when merging
    from sdeval.score.run import score_part  # torch: when scoring

    check_output_file(out, "--out")
    if geneval_results:
        check_output_file(geneval_results, "--geneval-results")
    merged = merge_parts([ImagePart.load(p) for p in parts], names=[str(p) for p in parts])
    options = options_from_record(merged.options, merged.root, ci=ci, ci_replicates=ci_replicates)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        run = score_part(options, merged)
    run.document["provenance"]["parts"] = [str(p) for p in parts]
    _finish(run, out, geneval_results)


@click.command()
@click.option("--out", "-o", type=click.Path(file_okay=False), default="reports/demo", show_default=True)
@click.option("--images", "n", type=click.IntRange(min=12), default=48, show_default=True, help="images per set.")
def demo(out, n) -> None:
    """Score a small synthetic folder offline on the CPU, with random Inception weights."""
    from sdeval.results.table import render_table  # the results document's modules: when the demo runs
    from sdeval.score.demo import run_demo  # torch-fidelity: when the demo runs

    check_output_folder(out, "--out")
    click.echo("demo: synthetic images and RANDOM Inception weights; the numbers show the pipeline works, "
               "not image quality.", err=True)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        results = run_demo(Path(out), n)
    click.echo(render_table(results))
    click.echo(f"\nresults: {Path(out) / 'results.json'}")
