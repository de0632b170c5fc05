"""`sdeval bench CONFIG`: generate -> score -> gate -> report as one resumable command (docs/bench.md).

Each stage records a stamp of its inputs in `OUT/bench.json`; a rerun skips a stage whose outputs exist and whose
stamp still matches, so a killed run, run again, finishes with the same images and results.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shlex
import shutil
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import click

from sdeval.configfile import config_format, parse_text
from sdeval.errors import ConfigError, ExitCode, OutputError, Terminated
from sdeval.suggest import check_keys, did_you_mean

#: `sdeval bench builtin:NAME` runs a config shipped in sdeval/examples/.
EXAMPLE_PREFIX = "builtin:"
BENCH_KEYS = ("reference", "metrics", "score", "report", "gate", "about")
REPORT_KEYS = ("output", "title")
GATE_KEYS = ("rules", "pairs", "baseline", "strict")
BASELINE_KEYS = ("checkpoint", "cell")
STAMP_FILE = "bench.json"


@dataclass(frozen=True)
class ScoreSection:
    """What the score stage is asked for: the options of `sdeval score` (read by the one shared reader)."""

    options: Any  # sdeval.score.ScoreOptions, images = the run's output folder

    def stamp(self) -> dict[str, Any]:
        """Everything that moves the results, as JSON (where the cache lives and progress bars do not)."""
        options = dataclasses.asdict(self.options)
        for key in ("cache_dir", "progress"):
            options["features"].pop(key)
        return json.loads(json.dumps(options))  # as read back from bench.json (tuples become lists)


@dataclass(frozen=True)
class ReportSection:
    output: Path
    title: str


@dataclass(frozen=True)
class GateSection:
    """Rules (parsed when the config is read; from inline rules or a file), pairs, and the baseline: a results
    file, or cells of this run."""

    rules: Any  # sdeval.gate.Rules
    rules_file: Path | None = None
    pairs: tuple[tuple[str, str], ...] = ()
    baseline_file: Path | None = None
    baseline_checkpoint: str | None = None
    baseline_cell: str | None = None
    strict: bool = False


@dataclass(frozen=True)
class BenchConfig:
    source: str  # the config as the user named it
    generate: Any  # sdeval.generate.config.GenerateConfig
    score: ScoreSection
    report: ReportSection | None
    gate: GateSection | None
    about: str | None
    #: The bench sections as canonical JSON (paths as written): part of every later stage's stamp.
    sections_json: str

    @property
    def out(self) -> Path:
        return self.generate.output_dir

    @property
    def results_path(self) -> Path:
        return self.out / "results.json"

    @property
    def gate_path(self) -> Path:
        return self.out / "gate.json"


def example_names() -> list[str]:
    """The configs shipped in sdeval/examples/."""
    folder = resources.files("sdeval.examples")
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def read_config_text(source: str) -> tuple[str, str, Path]:
    """(text, format, base folder): `builtin:NAME` is a shipped example, whose relative paths (outputs included)
    are taken from the current folder; a file's relative paths are taken from its own folder, as in generate."""
    if source.startswith(EXAMPLE_PREFIX):
        name = source[len(EXAMPLE_PREFIX) :]
        if name not in example_names():
            raise ConfigError(f"config: no built-in example {name!r} (examples: {', '.join(example_names())})")
        text = (resources.files("sdeval.examples") / f"{name}.yaml").read_text(encoding="utf-8")
        return text, "yaml", Path.cwd()
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"config: no such file: {path} (or a shipped example: builtin:{'|'.join(example_names())})")
    return path.read_text(encoding="utf-8"), config_format(path), path.resolve().parent


def load_bench_config(source: str) -> BenchConfig:
    """Read a bench config: the generation config's keys plus `reference`, `metrics`, `score`, `report`, `gate`
    and `about`. Every error names its key."""
    from sdeval.generate.config import TOP_KEYS, parse_config

    text, fmt, base_dir = read_config_text(source)
    data = parse_text(text, fmt, Path(source).name)
    if not isinstance(data, Mapping):
        raise ConfigError(f"config: expected a mapping of keys, got {type(data).__name__}")
    data = dict(data)
    check_keys(data, (*TOP_KEYS, *BENCH_KEYS), "")
    bench = {key: data.pop(key) for key in BENCH_KEYS if key in data}
    generate = parse_config(data, base_dir=base_dir)
    stem = Path(source[len(EXAMPLE_PREFIX) :] if source.startswith(EXAMPLE_PREFIX) else source).stem
    score = _parse_score(bench, base_dir, generate)
    about = bench.get("about")
    if about is not None and not isinstance(about, str):
        raise ConfigError(f"about: expected text, got {about!r}")
    return BenchConfig(
        source=source,
        generate=generate,
        score=score,
        report=_parse_report(bench.get("report", {}), base_dir, stem),
        gate=_parse_gate(bench.get("gate"), base_dir, Path(source).name, generate, score.options),
        about=about.strip() if about else None,
        sections_json=json.dumps(bench, sort_keys=True, default=str),
    )


def _mapping(data: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    return data


def _check_keys(data: Any, known: tuple[str, ...], where: str) -> Mapping[str, Any]:
    check_keys(_mapping(data, where), known, f"{where}.")
    return data


def _parse_score(bench: Mapping[str, Any], base_dir: Path, generate: Any) -> ScoreSection:
    from sdeval.metrics import registry
    from sdeval.score import options_from_mapping

    raw = bench.get("metrics", "adherence")
    names = [m.strip().lower() for m in raw.split(",")] if isinstance(raw, str) else raw
    if not isinstance(names, list) or not names or not all(isinstance(m, str) and m for m in names):
        raise ConfigError(f"metrics: expected a list of metric names or a comma-separated string, got {raw!r}")
    for name in names:
        if name not in registry.names():
            hint = did_you_mean(name, registry.names()) or f" (known: {', '.join(registry.names())})"
            raise ConfigError(f"metrics: unknown metric {name!r}{hint}")
    reference = None
    if bench.get("reference") is not None:
        if not isinstance(bench["reference"], str):
            raise ConfigError(f"reference: expected a path, got {bench['reference']!r}")
        reference = (base_dir / Path(bench["reference"]).expanduser()).resolve()
        if not reference.exists():
            raise ConfigError(
                f"reference: no such file or folder: {reference} (build one with `sdeval reference build`)"
            )
    needing = [m for m in names if registry.get(m).needs_reference]
    if needing and reference is None:
        raise ConfigError(f"reference: required by metrics {', '.join(needing)}")
    options = options_from_mapping(
        _mapping(bench.get("score") or {}, "score"),
        images=str(generate.output_dir),
        reference=None if reference is None else str(reference),
        metrics=tuple(dict.fromkeys(names)),
        base_dir=base_dir,
    )
    return ScoreSection(options)


def _parse_report(raw: Any, base_dir: Path, stem: str) -> ReportSection | None:
    if raw is False:
        return None
    section = _check_keys(raw or {}, REPORT_KEYS, "report")
    output = section.get("output", f"reports/{stem}")
    if not isinstance(output, str) or not output:
        raise ConfigError(f"report.output: expected a folder path, got {output!r}")
    title = section.get("title", f"sdeval bench: {stem}")
    if not isinstance(title, str):
        raise ConfigError(f"report.title: expected text, got {title!r}")
    return ReportSection(output=base_dir / output, title=title)


def planned_cells(generate: Any) -> list[str]:
    """The cell ids the run will be scored in (CHECKPOINT/SETTING_ID), known before anything is generated."""
    from sdeval.devices import resolve_device
    from sdeval.generate.plan import resolve_dtype, setting_id

    device = resolve_device(generate.device)

    def dtype(setting: Any) -> str:
        try:
            return resolve_dtype(setting.dtype, device)
        except ConfigError:  # fp16 on a CPU: the generate stage says so; the names are checked as configured
            return setting.dtype

    settings = [setting_id(dataclasses.replace(s, dtype=dtype(s))) for s in generate.settings]
    return [f"{checkpoint.name}/{sid}" for checkpoint in generate.checkpoints for sid in settings]


def _cell(value: Any, cells: list[str], where: str, place: str = "this run") -> str:
    if not isinstance(value, str) or value not in cells:
        hint = did_you_mean(value, cells)
        raise ConfigError(f"{where}: no cell {value!r} in {place}{hint} (cells: {', '.join(cells)})")
    return value


def _parse_gate(raw: Any, base_dir: Path, config_name: str, generate: Any, options: Any) -> GateSection | None:
    """The gate section, checked before anything runs: rules parsed (every key, "did you mean"), each rule's
    metric among the run's `metrics` and each KEY.PART among the suite's categories; every cell and checkpoint the
    rules, pairs and baseline name checked against the run's plan, and against a baseline file's own cells and
    metrics when one is given."""
    if raw is None:
        return None
    section = _check_keys(raw, GATE_KEYS, "gate")
    rules, rules_file = _gate_rules(section, base_dir, config_name)
    cells = planned_cells(generate)
    _check_rules(rules, cells, generate, options)
    pairs = section.get("pairs") or {}
    if not isinstance(pairs, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in pairs.items()):
        raise ConfigError(f"gate.pairs: expected a mapping of candidate cell id: baseline cell id, got {pairs!r}")
    strict = section.get("strict", False)
    if not isinstance(strict, bool):
        raise ConfigError(f"gate.strict: expected true or false, got {strict!r}")
    gate = GateSection(rules=rules, rules_file=rules_file, pairs=tuple(pairs.items()), strict=strict)
    all_pairs = {**rules.pairs, **pairs}
    baseline = section.get("baseline")
    if isinstance(baseline, str):
        path = base_dir / baseline
        if not path.is_file():
            raise ConfigError(
                f"gate.baseline: no such results file: {path} (the results.json of an earlier run, e.g. of its "
                "`sdeval bench`, which writes OUT/results.json)"
            )
        _check_baseline_file(rules, all_pairs, cells, path)
        return dataclasses.replace(gate, baseline_file=path)
    for candidate, base in all_pairs.items():
        _cell(candidate, cells, "gate.pairs")
        _cell(base, cells, f"gate.pairs: {candidate}")
    if baseline is None:
        return gate
    baseline = _check_keys(baseline, BASELINE_KEYS, "gate.baseline")
    if len(baseline) != 1 or not all(isinstance(v, str) and v for v in baseline.values()):
        raise ConfigError(
            f"gate.baseline: expected one of {{checkpoint: NAME}} or {{cell: ID}}, got {dict(baseline)!r}"
        )
    if "cell" in baseline:
        _cell(baseline["cell"], cells, "gate.baseline.cell")
    else:
        names = [checkpoint.name for checkpoint in generate.checkpoints]
        if baseline["checkpoint"] not in names:
            raise ConfigError(
                f"gate.baseline.checkpoint: no checkpoint {baseline['checkpoint']!r} in this run"
                f"{did_you_mean(baseline['checkpoint'], names)} (checkpoints: {', '.join(names)})"
            )
    return dataclasses.replace(gate, baseline_checkpoint=baseline.get("checkpoint"), baseline_cell=baseline.get("cell"))


def _gate_rules(section: Mapping[str, Any], base_dir: Path, config_name: str) -> tuple[Any, Path | None]:
    """(the Rules, the rules file or None): inline rules, or a rules file named by `gate.rules`."""
    import yaml

    from sdeval.gate import load_rules, parse_rules

    if "rules" not in section:
        raise ConfigError("gate.rules: required key is missing (a list of rules, or a rules file)")
    if isinstance(section["rules"], str):
        rules_file = base_dir / section["rules"]
        if not rules_file.is_file():
            raise ConfigError(f"gate.rules: no such file: {rules_file}")
        return load_rules(rules_file), rules_file
    if isinstance(section["rules"], list) and section["rules"]:
        text = yaml.safe_dump({"rules": list(section["rules"])}, sort_keys=False)
        return parse_rules(text, source=f"{config_name} gate.rules"), None
    raise ConfigError(f"gate.rules: expected a non-empty list of rules or a file, got {section['rules']!r}")


def _check_rules(rules: Any, cells: list[str], generate: Any, options: Any) -> None:
    """Each rule's metric is computed by this run, a KEY.PART names one of the suite's categories, and a rule's
    cell is one of the plan's."""
    from sdeval.metrics.keys import lookup
    from sdeval.metrics.registry import spec_of_key

    categories = None  # (suite, its categories), read once when a rule names a part
    for rule in rules.rules:
        where = f"gate.rules: rule {rule.index} ({rule.name})"
        ref = lookup(rule.metric)
        spec = spec_of_key(ref.result.key) if ref is not None else None
        if spec is not None and spec.name not in options.requested:
            raise ConfigError(
                f"{where}: {rule.metric} is filled by metric {spec.name!r}, which this run does not compute "
                f"(metrics: {', '.join(options.requested)}): add it to `metrics`"
            )
        parts = ref.result.parts if ref is not None and ref.part is not None else None
        if ref is not None and parts is not None and parts.column == "category":  # adherence.counting
            categories = categories or _suite_categories(generate, options)
            if categories is not None and ref.part not in categories[1]:
                known = sorted(categories[1])
                raise ConfigError(
                    f"{where}: {rule.metric}: no category {ref.part!r} in the suite {categories[0]}"
                    f"{did_you_mean(ref.part, known)} (categories: {', '.join(known) or 'none'})"
                )
        if rule.cell is not None:
            _cell(rule.cell, cells, f"{where}: cell")


def _suite_categories(generate: Any, options: Any) -> tuple[str, set[str]] | None:
    """(the suite that gives the run's prompts their specs, the categories they judge in), as scoring will find
    them: `score.suite` when given, else the run's own suite; None when questions, not specs, give categories."""
    from sdeval.judging import SpecSource
    from sdeval.suites import load_suite

    if options.questions is not None:
        return None
    run_suite = load_suite(generate.suite)
    spec_suite = load_suite(options.suite) if options.suite is not None else run_suite
    specs = SpecSource.from_suite(spec_suite)
    found = [specs.by_id.get(p.id) or specs.by_text.get(p.prompt) for p in run_suite.prompts]
    return spec_suite.source or str(spec_suite.path), {f[1] for f in found if f is not None}


def _check_baseline_file(rules: Any, pairs: Mapping[str, str], cells: list[str], path: Path) -> None:
    """A baseline results file is read now, so that pairs name its cells (checkpoints are often renamed between
    releases), every cell a regression rule compares finds its baseline cell as the gate will pair it (`pairs`,
    else the same id, else the file's only cell), and that cell holds the rule's metric."""
    from sdeval.errors import SdevalError
    from sdeval.metrics.keys import value_of
    from sdeval.results import load_results

    try:
        document = load_results(path)
    except SdevalError as err:
        raise ConfigError(f"gate.baseline: {err}") from None
    base_cells = {cell["id"]: cell for cell in document["cells"]}
    base_ids = list(base_cells)
    place = f"the baseline {path}"
    for candidate, base in pairs.items():
        _cell(candidate, cells, "gate.pairs")
        _cell(base, base_ids, f"gate.pairs: {candidate}", place)
    for rule in rules.rules:
        if not rule.is_regression:
            continue
        for cell in [rule.cell] if rule.cell is not None else cells:
            base = pairs.get(cell) or (cell if cell in base_cells else base_ids[0] if len(base_ids) == 1 else None)
            if base is None:
                raise ConfigError(
                    f"gate.baseline: cell {cell} of this run has no baseline cell: {path} has no cell of that id "
                    f"and {len(base_ids)} cells ({', '.join(base_ids)}); pair it under gate.pairs"
                )
            value, why = value_of(base_cells[base], rule.metric)
            if value is None:
                raise ConfigError(f"gate.rules: rule {rule.index} ({rule.name}): in {place}: {why}")


# --- stamps ---------------------------------------------------------------------------------------------------


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha(path: Path | None) -> str | None:
    if path is None or not path.exists():
        return None
    from sdeval.hashing import path_sha256

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
    from sdeval.atomic import write_json

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
    from sdeval.generate.runner import run_generate

    path = None if config.source.startswith(EXAMPLE_PREFIX) else Path(config.source).resolve()
    result = run_generate(config.generate, progress=progress, config_path=path, shard=shard)
    if result.group and result.record is not None:
        generated, skipped, planned = (
            result.record[k] for k in ("images_generated", "images_skipped", "images_planned")
        )
    else:
        generated, skipped, planned = result.generated, result.skipped, result.assigned
    detail = f"{planned} images in {config.out}, {generated} generated, {skipped} already there"
    return StageLine("generate", generated == 0, detail), result


def parts_folder(config: BenchConfig) -> Path:
    """Where `sdeval bench CONFIG --shard I/N` leaves each shard's scoring part for the final merge."""
    return config.out / ".sdeval" / "score-parts"


def stage_score_shard(config: BenchConfig, result: Any, shard: tuple[int, int], progress: bool) -> StageLine:
    """Score this array job's own images (the share of the plan it generated) into a part for the final merge."""
    from sdeval.score.prepare import prepare_part

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
    from sdeval.score.part import ImagePart, merge_parts
    from sdeval.score.prepare import options_record

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
    from sdeval.results import load_results, write_outputs
    from sdeval.score import score_run
    from sdeval.score.run import score_part

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
    from sdeval.results import incomplete_metrics

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


def gate_exit_code(summary: Mapping[str, int], strict: bool) -> int:
    """The gate's documented exit code from its verdict counts (docs/gate.md)."""
    if summary.get("error"):
        return ExitCode.USAGE
    if summary.get("fail"):
        return ExitCode.VERDICT_FAILED
    if summary.get("inconclusive") and strict:
        return ExitCode.INCONCLUSIVE
    return ExitCode.OK


def stage_gate(config: BenchConfig) -> tuple[StageLine, int, str | None]:
    """Check OUT/results.json against the rules into OUT/gate.json. Returns the line, the exit code and the
    verdict table (None when skipped)."""
    from sdeval.atomic import write_text
    from sdeval.gate import load_side, run_gate
    from sdeval.gate.outputs import json_text, render_table

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
            gate_exit_code(summary, gate.strict),
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
    from sdeval.report import ReportOptions, build_report

    section = config.report
    assert section is not None
    gate_file = config.gate_path if config.gate is not None else None
    stamp = {
        "results": _file_sha(config.results_path),
        "gate": _file_sha(gate_file),
        "output": str(section.output),
        "title": section.title,
    }
    index = section.output / "index.html"
    if index.is_file() and _read_stamps(config.out).get("report") == stamp:
        return StageLine("report", True, str(index))
    options = ReportOptions(title=section.title, gate=gate_file, quiet=not progress)
    written = build_report([config.results_path], section.output, options)
    _write_stamp(config.out, "report", stamp)
    return StageLine("report", False, str(written["index"]))


def _verdict_word(code: int) -> str:
    return {
        ExitCode.OK: "PASS",
        ExitCode.VERDICT_FAILED: "FAIL",
        ExitCode.INCONCLUSIVE: "INCONCLUSIVE",
        ExitCode.USAGE: "ERROR",
    }.get(code, str(code))


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
    from sdeval.atomic import check_output_folder
    from sdeval.models.check import check_run_models

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
        err.sdeval_bench = where  # type: ignore[attr-defined]  # for the command to say what was kept
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
    if config.report is not None:
        where.stage = "report"
        echo(str(stage_report(config, progress)))
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
        echo(f"verdict: {_verdict_word(code)} (exit code {code}; details: {config.gate_path})")
    elif missing:
        names = ", ".join(name for name, _ in missing)
        echo(f"incomplete: {names} could not be computed (exit code {code}; reasons above)")
    return code


@click.command("bench")
@click.argument("config", metavar="CONFIG|builtin:NAME")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--shard", default=None, metavar="I/N",
              help="array jobs: generate and score share I of N (0-based) only; then run `sdeval bench CONFIG` "
              "once to merge the shares, gate and report.")  # fmt: skip
def bench_command(config: str, quiet: bool, shard: str | None) -> None:
    """Generate, score, gate and report from one CONFIG (resumable: each stage skips what is already done).

    builtin:calibration runs offline on the CPU in about a minute (docs/bench.md). Exit code: the gate's
    (0 pass, 1 fail, 4 inconclusive with gate.strict), 0 without a gate (3 if a metric could not be computed).
    """
    from sdeval.distributed import parse_shard

    try:
        code = run_bench(config, progress=not quiet, shard=parse_shard(shard) if shard else None)
    except (KeyboardInterrupt, Terminated) as err:
        click.echo(stopped_line(err, config, quiet, shard), err=True)
        sys.exit(ExitCode.TERMINATED if isinstance(err, Terminated) else ExitCode.INTERRUPTED)
    except OutputError as err:  # a full disk, a quota, a read-only mount: what was kept, and how to go on
        where = getattr(err, "sdeval_bench", None)
        if where is None or where.stage != "generate":
            raise  # not while generating: the plain one-line error (file, errno, what was kept) says it all
        click.echo(f"error: {err}; {stopped_line(err, config, quiet, shard, once_there_is_room=True)}", err=True)
        sys.exit(ExitCode.USAGE)
    if code:
        sys.exit(code)


def stopped_line(
    err: BaseException, source: str, quiet: bool, shard: str | None, *, once_there_is_room: bool = False
) -> str:
    """What `sdeval generate` says when stopped, for a bench run: the stage it stopped in, the images kept and where,
    and the command that resumes (the same one; a launcher such as `accelerate launch` goes in front again)."""
    from sdeval.generate.runner import kept_summary, stopped_run

    said = "terminated (SIGTERM)" if isinstance(err, Terminated) else "interrupted"
    said = "stopped" if once_there_is_room else said
    where: BenchProgress | None = getattr(err, "sdeval_bench", None)
    stage = f" during {where.stage}" if where is not None else ""
    run = stopped_run(err) or (where.generated if where is not None else None)
    words = ["sdeval", "bench", source, *(["--shard", shard] if shard else []), *(["--quiet"] if quiet else [])]
    when = " once there is room" if once_there_is_room else ""
    return f"{said}{stage}: {kept_summary(run)}; to resume{when}, run: {shlex.join(words)}"
