"""`sdeval bench CONFIG --dry-run`: the config read and checked as a run reads it, and its plan said: how many images
(checkpoints x settings x prompts x seeds), where each output goes, what is scored and gated. Nothing runs, no model
loads, nothing is written; a file the run will need that is not there yet (a reference to be built) is listed."""

from __future__ import annotations

from typing import Any

from sdeval.bench.config import BenchConfig, planned_cells
from sdeval.options.score import defaults, options_json
from sdeval.suites import load_suite


def plan_lines(config: BenchConfig) -> list[str]:
    """What a run of `config` would do, one line each (what `--dry-run` prints)."""
    gen = config.generate
    suite = load_suite(gen.suite)
    prompts, seeds = len(suite.prompts), gen.seeds_per_prompt
    n_checkpoints, n_settings = len(gen.checkpoints), len(gen.settings)
    total = n_checkpoints * n_settings * prompts * seeds
    lines = [
        f"config: {config.source} (sha256 {gen.sha256[:12]})",
        f"images: {n_checkpoints} checkpoint(s) x {n_settings} setting(s) x {prompts} prompts x {seeds} seed(s) = "
        f"{total} images -> {gen.output_dir}",
        f"suite: {suite.source or suite.path} ({suite.id or 'no id'}, {prompts} prompts, sha256 {suite.sha256[:12]})",
        "checkpoints:",
        *(f"  {c.name}: {c.path} ({c.kind})" for c in gen.checkpoints),
        "settings:",
        *(f"  {_setting(s)}" for s in gen.settings),
        f"cells: {', '.join(planned_cells(gen))}",
        f"seeds: {list(gen.seeds) if gen.seeds is not None else f'{seeds} per prompt from base_seed {gen.base_seed}'}",
    ]
    options = config.score.options
    lines.append(f"metrics: {', '.join(options.requested)}")
    lines.append(f"score options: {_score_options(options)}")
    if options.reference is not None:
        lines.append(f"reference: {options.reference}")
    lines.append(f"results: {config.results_path}")
    if config.gate is not None:
        lines.append(f"gate: {len(config.gate.rules.rules)} rule(s) -> {config.gate_path}")
        lines.extend(f"  {_rule(rule)}" for rule in config.gate.rules.rules)
    if config.pick is not None:
        lines.append(f"pick: -> {config.out / 'pick.json'}")
    if config.report is not None:
        lines.append(f"report: {config.report.output / 'index.html'}")
    lines.extend(f"log: {entry.to}" for entry in config.log)
    for missing in config.missing:
        lines.append(f"missing (needed before a real run): {missing}")
    lines.append("dry run: nothing was generated, scored or written")
    return lines


def _setting(setting: Any) -> str:
    values = {k: v for k, v in setting.to_dict().items() if v is not None}
    latents = values.pop("latents", None)
    text = ", ".join(f"{k} {v!r}" if isinstance(v, str) else f"{k} {v}" for k, v in values.items())
    if latents is not None:
        text += f", latents {setting.latents.written} ({'x'.join(map(str, latents['shape']))}, sha256 "
        text += f"{latents['sha256'][:12]}, the same for every prompt)"
    return text


def _score_options(options: Any) -> str:
    """The score options that differ from their defaults (the device and cache said apart)."""
    record, default = options_json(options), defaults()
    features = record.pop("features")
    changed = {k: v for k, v in {**record, **features}.items() if k in default and v != default[k]}
    for key in ("images", "reference", "metrics", "cache_dir", "progress"):
        changed.pop(key, None)
    return ", ".join(f"{k} {v}" for k, v in sorted(changed.items())) or "defaults"


def _rule(rule: Any) -> str:
    """A rule with its bounds in full (the gate's tables round them to 6 digits)."""
    parts = [rule.metric]
    for key in ("min", "max", "max_increase", "max_decrease"):
        value = getattr(rule, key)
        if value is not None:
            parts.append(f"{key} {value!r}")
    if rule.cell is not None:
        parts.append(f"(cell {rule.cell})")
    return " ".join(parts)
