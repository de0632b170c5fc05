"""`sdeval bench CONFIG`: generate -> score -> gate -> report as one resumable run (docs/bench.md).

Each stage records a stamp of its inputs in `OUT/bench.json`; a rerun skips a stage whose outputs exist and whose
stamp still matches, so a killed run, run again, finishes with the same images and results.
"""

import dataclasses
import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from sdeval.bench.config import EXAMPLE_PREFIX, STAMP_FILE, BenchConfig, load_bench_config
from sdeval.core.atomic import check_output_folder, write_json, write_text
from sdeval.core.errors import ConfigError, ExitCode, OutputError, Terminated
from sdeval.core.hashing import path_sha256
from sdeval.generate.config import suite_defaults_line
from sdeval.results.document import incomplete_metrics, load_results, write_outputs

# --- stamps ---------------------------------------------------------------------------------------------------


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha(path: Path | None) -> str | None:
    if path is None or not path.exists():
        return None
    return path_sha256(path)


def images_fingerprint(out: Path) -> str:
    """sha256 over (file, sha256 of its bytes) of every image in the run's manifest: changes when any image does."""
    digest = hashlib.sha256()
    manifest = out / "manifest.jsonl"
    files = sorted(json.loads(line)["file"] for line in manifest.read_text(encoding="utf-8").splitlines() if line)
    for name in files:
        digest.update(name.encode("utf-8") + b"\0" + bytes.fromhex(_file_sha(out / name) or "") + b"\n")
    return digest.hexdigest()


def _read_stamps(out: Path) -> dict[str, Any]:
    try:
        return json.loads((out / STAMP_FILE).read_text(encoding="utf-8")).get("stages", {})
    except (OSError, ValueError, AttributeError):
        return {}  # no stamps, or a torn one: every stage runs again


def _write_stamp(out: Path, stage: str, stamp: dict[str, Any]) -> None:
    stamps = _read_stamps(out)
    stamps[stage] = stamp
    write_json(out / STAMP_FILE, {"format": "sdeval.bench", "format_version": 1, "stages": stamps})


# --- stages -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageLine:
    stage: str
    skipped: bool
    detail: str

    def __str__(self) -> str:
        return f"{self.stage + ':':<10}{'skipped (already done)' if self.skipped else 'done'}: {self.detail}"


def stage_generate(config: BenchConfig, progress: bool, shard: tuple[int, int] | None = None) -> tuple[StageLine, Any]:
    from sdeval.generate.runner import run_generate  # the pipelines' modules: when generating, not with --help

    path = None if config.source.startswith(EXAMPLE_PREFIX) else Path(config.source).resolve()
    result = run_generate(config.generate, progress=progress, config_path=path, shard=shard)
    if result.group and result.record is not None:
        generated, skipped, planned = (
            result.record[k] for k in ("images_generated", "images_skipped", "images_planned")
        )
    else:
        generated, skipped, planned = result.generated, result.skipped, result.assigned
    detail = f"{planned} images in {config.out}, {generated} generated, {skipped} already there"
    if (rules := suite_defaults_line(config.generate)) is not None:
        detail += f"; {rules}"
    return StageLine("generate", generated == 0, detail), result


def parts_folder(config: BenchConfig) -> Path:
    """Where `sdeval bench CONFIG --shard I/N` leaves each shard's scoring part for the final merge."""
    return config.out / ".sdeval" / "score-parts"


def stage_score_shard(config: BenchConfig, result: Any, shard: tuple[int, int], progress: bool) -> StageLine:
    """Score this array job's own images (the share of the plan it generated) into a part for the final merge."""
    from sdeval.score.prepare import prepare_part  # torch: when scoring

    options = dataclasses.replace(
        config.score.options, features=dataclasses.replace(config.score.options.features, progress=progress)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        part = prepare_part(options, shard, files=result.files, n_total=result.planned)
    path = parts_folder(config) / f"part-{shard[0]:05d}-of-{shard[1]:05d}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    part.save(path)
    return StageLine("score", False, f"shard {shard[0]}/{shard[1]}: {part.n} images -> {path}")


def _merged_parts(config: BenchConfig) -> Any:
    """The shards' parts merged (None when no shard left one); refused when they do not make up this run."""
    from sdeval.score.part import ImagePart, merge_parts  # torch: when scoring
    from sdeval.score.prepare import options_record  # torch: when scoring

    found = sorted(parts_folder(config).glob("part-*.json")) if parts_folder(config).is_dir() else []
    if not found:
        return None
    parts = [ImagePart.load(p) for p in found]
    merged = merge_parts(parts, names=[p.name for p in found])
    if merged.options != options_record(config.score.options):
        raise ConfigError(
            f"score: the parts in {parts_folder(config)} were scored with other score options than this config's: "
            "run each `sdeval bench CONFIG --shard I/N` again, or delete that folder to score here"
        )
    manifest = config.out / "manifest.jsonl"
    files = sorted(json.loads(line)["file"] for line in manifest.read_text(encoding="utf-8").splitlines() if line)
    scored = sorted([*merged.paths, *(s["path"] for s in merged.skipped)])
    if scored != files:
        raise ConfigError(
            f"score: the parts in {parts_folder(config)} hold {len(scored)} images, the run has {len(files)}: run each "
            "shard again (`sdeval bench CONFIG --shard I/N`), or delete that folder to score here"
        )
    return merged


def stage_score(config: BenchConfig, progress: bool) -> tuple[StageLine, list[tuple[str, str]]]:
    """Score the run into OUT/results.json, unless its stamp (images, options, reference) still matches: from the
    shards' parts when array jobs left them, else here (each rank its share under a launcher). Returns the line and
    each metric that could not be computed, with why (`not_computed`; a rank other than the main one writes
    nothing)."""
    from sdeval.score import score_run  # torch: when scoring (looked up at call time: a test replaces it)
    from sdeval.score.run import score_part  # torch: when scoring

    options = config.score.options
    stamp = {
        "images": images_fingerprint(config.out),
        "score": config.score.stamp(),
        "reference": _file_sha(None if options.reference is None else Path(options.reference)),
    }
    path = config.results_path
    if path.is_file() and _read_stamps(config.out).get("score") == stamp:
        results = load_results(path)
        return StageLine("score", True, _score_detail(results, path)), not_computed(results)
    options = dataclasses.replace(options, features=dataclasses.replace(options.features, progress=progress))
    merged = _merged_parts(config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the results carry their own warnings
        run = score_part(options, merged) if merged is not None else score_run(options)
    if run is None:
        return StageLine("score", False, "this rank's share was gathered by the main process"), []
    write_outputs(path, run)
    _write_stamp(config.out, "score", stamp)  # after the results: a kill in between only means scoring again
    how = ""
    if merged is not None:  # merged into the results: a later run with other options must not find them
        n_parts = len(list(parts_folder(config).glob("part-*.json")))
        shutil.rmtree(parts_folder(config))
        how = f" (merged from the {n_parts} shards' parts)"
    return StageLine("score", False, _score_detail(run.document, path) + how), not_computed(run.document)


def _score_detail(results: dict[str, Any], path: Path) -> str:
    return f"{', '.join(results['metrics_requested'])} over {len(results['cells'])} cells -> {path}"


def not_computed(results: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, why) for each requested metric that has no value in a cell (what makes exit code 3), named as
    `sdeval score` names them (`results.incomplete_metrics`: KEY, or CELL: KEY with several cells)."""
    reasons = [entry.get("skipped") or "no value" for cell in results["cells"]
               for entry in cell["metrics"].values() if entry.get("value") is None]  # fmt: skip
    return list(zip(incomplete_metrics(results), reasons, strict=True))


def _rules(config: BenchConfig, cell_ids: list[str]) -> Any:
    """The gate's Rules with this config's pairs, and `baseline: {checkpoint|cell}` turned into pairs (the names
    were checked against the plan when the config was read)."""
    gate = config.gate
    assert gate is not None
    rules = gate.rules
    pairs = {**rules.pairs, **dict(gate.pairs)}
    if gate.baseline_cell is not None:
        pairs = {cell: pairs.get(cell, gate.baseline_cell) for cell in cell_ids}
    elif gate.baseline_checkpoint is not None:
        for cell in cell_ids:
            twin = f"{gate.baseline_checkpoint}/{cell.split('/', 1)[-1]}"  # the same setting, on the baseline
            if cell not in pairs and twin in cell_ids:
                pairs[cell] = twin
    return dataclasses.replace(rules, pairs=pairs)


def stage_gate(config: BenchConfig) -> tuple[StageLine, int, str | None]:
    """Check OUT/results.json against the rules into OUT/gate.json. Returns the line, the exit code and the
    verdict table (None when skipped)."""
    # the gate's modules (statistics, YAML: +80 ms) load when a gate runs, not with `sdeval bench --help`
    from sdeval.gate import load_side, run_gate
    from sdeval.gate.outputs import json_text, render_table  # the gate's modules: when a gate runs
    from sdeval.gate.verdicts import exit_code  # the gate's modules: when a gate runs

    gate = config.gate
    assert gate is not None
    stamp = {
        "results": _file_sha(config.results_path),
        "sections": config.sections_json,
        "rules_file": _file_sha(gate.rules_file),
        "baseline_file": _file_sha(gate.baseline_file),
    }
    if config.gate_path.is_file() and _read_stamps(config.out).get("gate") == stamp:
        summary = json.loads(config.gate_path.read_text(encoding="utf-8"))["summary"]
        return (
            StageLine("gate", True, _gate_detail(summary, config.gate_path)),
            exit_code(summary, gate.strict),
            None,
        )
    candidate = load_side(config.results_path)
    rules = _rules(config, list(candidate.cells))
    baseline = None
    if gate.baseline_file is not None:
        baseline = load_side(gate.baseline_file)
    elif rules.needs_baseline:
        baseline = candidate  # regression rules compare cells of this run: `pairs:` or `baseline: {checkpoint}`
    result = run_gate(rules, candidate, baseline)
    write_text(config.gate_path, json_text(result))
    _write_stamp(config.out, "gate", stamp)
    summary = result.to_json()["summary"]
    table = render_table(result) + "".join(f"\nwarning: {w}" for w in result.warnings)
    return StageLine("gate", False, _gate_detail(summary, config.gate_path)), result.exit_code(gate.strict), table


def _gate_detail(summary: Mapping[str, int], path: Path) -> str:
    counts = ", ".join(f"{summary.get(k, 0)} {k}" for k in ("pass", "fail", "inconclusive", "error"))
    return f"{counts} -> {path}"


def stage_report(config: BenchConfig, progress: bool) -> StageLine:
    from sdeval.report import ReportOptions, build_report  # the report's modules: when a report is made (+80 ms)

    section = config.report
    assert section is not None
    gate_file = config.gate_path if config.gate is not None else None
    stamp = {
        "results": _file_sha(config.results_path),
        "gate": _file_sha(gate_file),
        "output": str(section.output),
        "title": section.title,
        **({"pick": config.pick.raw} if config.pick is not None else {}),
    }
    index = section.output / "index.html"
    if index.is_file() and _read_stamps(config.out).get("report") == stamp:
        return StageLine("report", True, str(index))
    options = ReportOptions(title=section.title, gate=gate_file, quiet=not progress, pick=config.pick)
    written = build_report([config.results_path], section.output, options)
    _write_stamp(config.out, "report", stamp)
    return StageLine("report", False, str(written["index"]))


def stage_pick(config: BenchConfig) -> StageLine:
    """Apply the pick rule to OUT/results.json into OUT/pick.json: the checkpoint chosen and the reason."""
    # the gate's modules (statistics, YAML: +80 ms) load when a pick runs, not with `sdeval bench --help`
    from sdeval.gate import load_side
    from sdeval.gate.pick import document_intervals, pick  # the gate's modules: when a pick runs

    side = load_side(config.results_path)
    found = pick(side.document, config.pick, document_intervals(side.document, side.states))
    write_json(config.out / "pick.json", found)
    return StageLine("pick", False, f"{found['chosen'] or 'none'}: {found['reason']}")


def stage_log(config: BenchConfig, number: int, options: Any) -> StageLine:
    """Log OUT/results.json, with the bench's report, to the tracker of `log:` entry `number` (LogOptions). A rerun
    whose results, report and entry are unchanged logs nothing: the tracker gets no second run."""
    from sdeval.trackers.log import log_results  # the tracker and its library: when a log runs

    report = config.report.output if config.report is not None else None
    stamp = {
        "results": _file_sha(config.results_path),
        "report": _file_sha(report / "summary.md") if report is not None else None,
        "options": dataclasses.asdict(options),
    }
    if _read_stamps(config.out).get(f"log[{number}]") == stamp:
        return StageLine("log", True, f"{options.to}: these results were logged")
    options = dataclasses.replace(options, report=report, make_report=False)  # the report the stage above made
    where = log_results(config.results_path, options)  # "mlflow run ID ...", "tensorboard run FOLDER ..."
    _write_stamp(config.out, f"log[{number}]", stamp)
    return StageLine("log", False, where)


@dataclass
class BenchProgress:
    """Where a bench run is, for the line an interrupted run ends with: the stage, and once generation is done,
    its result (how many images it kept, and where)."""

    stage: str = "generate"
    generated: Any = None  # the generate stage's RunResult


def run_bench(source: str, progress: bool = True, echo: Any = click.echo, shard: tuple[int, int] | None = None) -> int:
    """Run every stage of the bench config `source` (a file or builtin:NAME); returns the exit code.

    With `shard=(I, N)` (array jobs) generate and score only share I of N, leaving a part for the final run,
    which merges the parts, gates and reports."""
    from sdeval.models.check import check_run_models  # torch (the models' modules): when a run starts

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and "MASTER_ADDR" not in os.environ and shard is None:
        # Independent shards cannot wait for each other: the main one would score a partial run.
        raise ConfigError(
            "bench: RANK/WORLD_SIZE without a launcher (no MASTER_ADDR): run `sdeval bench CONFIG --shard I/N` per "
            "job, then `sdeval bench CONFIG` once to merge, gate and report; or launch with accelerate or torchrun"
        )
    config = load_bench_config(source)
    check_output_folder(config.out, "output_dir")  # before any model loads
    if config.report is not None:
        check_output_folder(config.report.output, "report.output")
    # Every model and file the score stage will load, before an image is generated: a missing one costs no run.
    check_run_models(config.score.options, name=lambda option: f"score.{option}")
    where = BenchProgress()
    try:
        return _run_stages(config, progress, echo, shard, where)
    except (KeyboardInterrupt, Terminated, OutputError) as err:
        err.sdeval_bench = where  # pyright: ignore[reportAttributeAccessIssue]  # a mark for the command to say what was kept
        raise


def _run_stages(
    config: BenchConfig, progress: bool, echo: Any, shard: tuple[int, int] | None, where: BenchProgress
) -> int:
    """generate -> score -> gate -> report, and what to print; `where` follows the stage that runs."""
    source = config.source
    line, result = stage_generate(config, progress, shard)
    where.stage, where.generated = "score", result
    if shard is not None:
        echo(str(line))
        echo(str(stage_score_shard(config, result, shard, progress)))
        echo(f"when every shard of {shard[1]} is done: sdeval bench {source}   (merges the parts, gates, reports)")
        return ExitCode.OK
    if result.world_size > 1 and result.rank != 0:
        stage_score(config, progress)  # this rank scores its share; the main process gathers and writes
        return ExitCode.OK  # gate and report run on the main process only
    echo(str(line))
    score_line, missing = stage_score(config, progress)
    echo(str(score_line))
    code = ExitCode.INCOMPLETE if missing else ExitCode.OK
    table = None
    if config.gate is not None:
        where.stage = "gate"
        gate_line, code, table = stage_gate(config)
        echo(str(gate_line))
    if config.pick is not None:
        where.stage = "pick"
        echo(str(stage_pick(config)))
    if config.report is not None:
        where.stage = "report"
        echo(str(stage_report(config, progress)))
    for number, options in enumerate(config.log):
        where.stage = "log"
        echo(str(stage_log(config, number, options)))
    echo("")
    if table:
        echo(table)
        echo("")
    if config.report is not None:
        echo(
            f"report: {config.report.output / 'index.html'} (open it in a browser: the summary table with intervals, "
            "adherence per category, seed robustness, images side by side"
            + (", the gate's verdicts)" if config.gate is not None else ")")
        )
    echo(f"results: {config.results_path}")
    if missing:  # as `sdeval score` lists them: each metric that has no value, and why
        echo("not computed:")
        for name, why in missing:
            echo(f"  {name}: {why}")
    if config.about:
        echo("")
        echo(config.about)
    if config.gate is not None:
        echo("")
        from sdeval.gate.verdicts import exit_word  # the gate's modules load when a gate runs

        echo(f"verdict: {exit_word(code)} (exit code {code}; details: {config.gate_path})")
    elif missing:
        names = ", ".join(name for name, _ in missing)
        echo(f"incomplete: {names} could not be computed (exit code {code}; reasons above)")
    return code
