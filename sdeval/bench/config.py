"""A bench config: the generation config's keys plus `reference`, `metrics`, `score`, `report`, `gate` and `about`,
read and checked against everything knowable before a model loads (docs/bench.md)."""

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from sdeval.core.configfile import config_format, parse_text
from sdeval.core.devices import resolve_device
from sdeval.core.errors import ConfigError, SdevalError
from sdeval.core.suggest import check_keys, did_you_mean
from sdeval.generate.config import TOP_KEYS, parse_config
from sdeval.generate.plan import resolve_dtype, setting_id
from sdeval.metrics import registry
from sdeval.metrics.keys import lookup, value_of
from sdeval.metrics.registry import spec_of_key
from sdeval.options.score import options_from_mapping, options_json
from sdeval.results.document import load_results
from sdeval.suites import load_suite
from sdeval.trackers.options import parse_log_section

#: `sdeval bench builtin:NAME` runs a config shipped in sdeval/bench/examples/.
EXAMPLE_PREFIX = "builtin:"
BENCH_KEYS = ("reference", "metrics", "score", "report", "gate", "pick", "log", "about")
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
        options = options_json(self.options)
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
    #: Trackers to log the results to, after the report (sdeval.trackers.options.LogOptions; docs/trackers.md).
    log: tuple[Any, ...] = ()
    pick: Any = None  # sdeval.gate.pick.PickRule: which checkpoint to ship (None: no rule)
    #: Files the run needs that are not there yet, each with how to make it (read with `missing_ok`: a dry run).
    missing: tuple[str, ...] = ()

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
    """The configs shipped in sdeval/bench/examples/."""
    folder = resources.files("sdeval.bench.examples")
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def read_config_text(source: str) -> tuple[str, str, Path]:
    """(text, format, base folder): `builtin:NAME` is a shipped example, whose relative paths (outputs included)
    are taken from the current folder; a file's relative paths are taken from its own folder, as in generate."""
    if source.startswith(EXAMPLE_PREFIX):
        name = source[len(EXAMPLE_PREFIX) :]
        if name not in example_names():
            raise ConfigError(f"config: no built-in example {name!r} (examples: {', '.join(example_names())})")
        text = (resources.files("sdeval.bench.examples") / f"{name}.yaml").read_text(encoding="utf-8")
        return text, "yaml", Path.cwd()
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"config: no such file: {path} (or a shipped example: builtin:{'|'.join(example_names())})")
    return path.read_text(encoding="utf-8"), config_format(path), path.resolve().parent


def load_bench_config(source: str, missing_ok: bool = False) -> BenchConfig:
    """Read a bench config: the generation config's keys plus `reference`, `metrics`, `score`, `report`, `gate`
    and `about`. Every error names its key. With `missing_ok` (a dry run) a reference file that is not there yet is
    listed in `missing` instead."""
    text, fmt, base_dir = read_config_text(source)
    data = parse_text(text, fmt, Path(source).name)
    if not isinstance(data, Mapping):
        raise ConfigError(f"config: expected a mapping of keys, got {type(data).__name__}")
    data = dict(data)
    check_keys(data, (*TOP_KEYS, *BENCH_KEYS), "")
    bench = {key: data.pop(key) for key in BENCH_KEYS if key in data}
    generate = parse_config(data, base_dir=base_dir)
    stem = Path(source[len(EXAMPLE_PREFIX) :] if source.startswith(EXAMPLE_PREFIX) else source).stem
    missing: list[str] = []
    score = _parse_score(bench, base_dir, generate, missing if missing_ok else None)
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
        log=parse_log_section(bench.get("log"), base_dir),
        pick=_parse_pick(bench.get("pick"), score.options.metrics),
        missing=tuple(missing),
    )


def _parse_pick(raw: Any, metrics: tuple[str, ...]) -> Any:
    """The pick rule, its metrics checked against what the run computes (before anything runs)."""
    if raw is None:
        return None
    from sdeval.gate.pick import parse_pick  # the gate's modules: when a config has a pick rule, not with --help

    rule = parse_pick(raw)
    computed = [key.key for name in metrics for key in registry.get(name).results]
    for key in rule.metrics:
        if key not in computed:
            raise ConfigError(f"pick: {key} is not computed by this run (metrics: {', '.join(metrics)})")
    return rule


def _mapping(data: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    return data


def _check_keys(data: Any, known: tuple[str, ...], where: str) -> Mapping[str, Any]:
    check_keys(_mapping(data, where), known, f"{where}.")
    return data


def _parse_score(bench: Mapping[str, Any], base_dir: Path, generate: Any, missing: list[str] | None) -> ScoreSection:
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
            why = f"no such file or folder: {reference} (build one with `sdeval reference build`)"
            if missing is None:
                raise ConfigError(f"reference: {why}")
            missing.append(f"reference: {why}")
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
    if reference is not None and reference.exists():
        _check_statistics(reference, names, options)
    return ScoreSection(options)


def _check_statistics(reference: Path, names: list[str], options: Any) -> None:
    """A reference of Fréchet statistics, checked before anything is generated: FID only, its Inception route declared
    (score.reference_protocol or its sidecar) and the run's own (sdeval.reference.stats)."""
    from sdeval.reference.stats import declared_protocol, is_stats_file, refuse_other_metrics  # torch: Inception's

    if not is_stats_file(reference):
        if options.reference_protocol is not None:
            raise ConfigError(
                f"score.reference_protocol: only for a statistics file (mu, sigma); {reference} is not one"
            )
        return
    try:
        refuse_other_metrics(reference, [name for name in names if _needs_reference(name)])
        declared = declared_protocol(reference, options.reference_protocol)
    except SdevalError as err:
        raise ConfigError(f"reference: {err}") from None
    if declared["preprocess"] != options.features.preprocess:
        raise ConfigError(
            f"score.preprocess: {options.features.preprocess!r}, but the statistics in {reference.name} were made with "
            f"{declared['preprocess']!r} ({declared['declared_by']}): FID would compare features made two ways; set "
            f"score.preprocess: {declared['preprocess']}"
        )


def _needs_reference(name: str) -> bool:
    return registry.get(name).needs_reference


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
    import yaml  # with the gate's modules: when a config has a gate, not with `sdeval bench --help`

    from sdeval.gate import load_rules, parse_rules  # the gate's modules (+80 ms): when a config has a gate

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
    them (sdeval.score.judging): `score.suite` when given, else the run's own suite; under `--judge vqa` the suite's
    question set, whose rows give their categories (DSG-1k's); None when a question file gives them."""
    # the judges' modules (PIL, tqdm) load when a rule names a category, not with `sdeval bench --help` (+65 ms)
    from sdeval.score.judging import SpecSource, question_category, vqa_questions

    run_suite = load_suite(generate.suite)
    spec_suite = load_suite(options.suite) if options.suite is not None else run_suite
    specs = SpecSource.from_suite(spec_suite)
    questions = vqa_questions(options.judge, options.questions, specs)
    if isinstance(questions, str):  # a question file (or questions no judge asks): read when scoring
        return None
    categories = set()
    for prompt in run_suite.prompts:
        found = specs.by_id.get(prompt.id) or specs.by_text.get(prompt.prompt)
        if questions is not None and questions.lookup(prompt.id, prompt.prompt) is not None:
            categories.add(question_category(questions, prompt.id, prompt.prompt, found))
        elif found is not None:
            categories.add(found[1])
    return spec_suite.source or str(spec_suite.path), categories


def _check_baseline_file(rules: Any, pairs: Mapping[str, str], cells: list[str], path: Path) -> None:
    """A baseline results file is read now, so that pairs name its cells (checkpoints are often renamed between
    releases), every cell a regression rule compares finds its baseline cell as the gate will pair it (`pairs`,
    else the same id, else the file's only cell), and that cell holds the rule's metric."""
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
