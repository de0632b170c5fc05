"""`sdeval models`: every model a run needs, where sdeval looks for it, and whether it is there."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from sdeval.core.errors import SdevalError
from sdeval.judges.registry import JUDGES
from sdeval.metrics import registry
from sdeval.models.table import SLOTS, config_key, flag
from sdeval.options.cli import DEFAULTS, InputsCommand, MetricsHelp, parse_metrics
from sdeval.options.score import options_from_mapping

if TYPE_CHECKING:
    from sdeval.models.locate import Located


def model_options() -> tuple[str, ...]:
    """The options that choose a model, from the table (each slot's options), in table order."""
    return tuple(dict.fromkeys(option for slot in SLOTS.values() for option in slot.options))


class _ModelHelp(click.Option):
    """A model option, whose help names its default when shown (read from the table: no model library loads)."""

    def get_help_record(self, ctx: click.Context):
        slot = next(slot for slot in SLOTS.values() if self.name in slot.options)
        self.help = f"as in `sdeval score` ({slot.label}) [default: {slot.default}]."
        return super().get_help_record(ctx)


def _model_options() -> list[click.Parameter]:
    """One --OPTION per option of the table, so `sdeval models` looks where `sdeval score` with them would (made when
    the command parses or shows help: a feature input registered since has its slot)."""
    return [_ModelHelp([flag(option), option], default=None, metavar="VALUE") for option in model_options()]


@click.command("models", cls=InputsCommand, make_options=_model_options, inputs_before="allow_pickle")
@click.option("--metrics", cls=MetricsHelp, default=None, help="comma-separated metrics [default: fid,kid,is,pr].")
@click.option("--judge", type=click.Choice(JUDGES), default=DEFAULTS["judge"], show_default=True,
              help="the adherence judge whose models adherence and robustness need.")  # fmt: skip
@click.option("--all", "every", is_flag=True, help="the models of every metric and every judge.")
@click.option("--allow-pickle", is_flag=True, help="as in `sdeval score`: pickle checkpoints are allowed.")
@click.option("--check", is_flag=True,
              help="also compare each hub or URL file's sha256 with the one it had at its first download, and exit 2 "
              "when anything is not on this machine, unreadable, changed or would be refused.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="print the table as JSON.")
def models_command(metrics, judge, every, allow_pickle, check, as_json, **values) -> None:
    """List every model a run needs: the option that chooses it (flag and bench config key), its default, where it
    is looked for (the file or folder to copy it to from another machine), and whether it is there.

    Nothing is loaded or downloaded. Exit code 0; with --check, 2 when anything is missing or wrong.
    """
    # torch (the models' modules, via locate.py): when the table is made, not when the command loads
    from sdeval.models.check import problems, run_models, verify

    names = tuple(registry.names()) if every else parse_metrics(metrics) if metrics else None
    chosen = {key: value for key, value in values.items() if value is not None}
    options = options_from_mapping(
        {**chosen, "judge": judge, "allow_pickle": allow_pickle}, images="", metrics=names, where="option"
    )
    rows = run_models(options, JUDGES if every else None)
    report = []
    for row in rows:
        changed = verify(row) if check else []
        report.append((row, problems(row, allow_pickle=allow_pickle, strict=check) + changed, changed))
    if as_json:
        click.echo(json.dumps([_as_json(row, wrong) for row, wrong, _ in report], indent=2))
    else:
        text = "\n".join(_describe(row, changed, allow_pickle, check) for row, _, changed in report)
        click.echo(text or "no models: the requested metrics need none")
    found = [text for _, wrong, _ in report for text in wrong]
    if check and found:
        raise SdevalError(f"{len(found)} problem(s) with the models this run needs: " + "; ".join(found))


def _status(row: Located, trouble: list[str], check: bool) -> str:
    from sdeval.models.check import download_reason  # torch, via locate.py: when a row is shown

    if not row.present and not row.problems:  # what is missing comes before what would be refused
        reason = download_reason(row)
        return f"MISSING, cannot be downloaded now ({reason})" if reason else "missing, downloaded on first use"
    if trouble:
        return "PROBLEM"
    return "present, sha256 checked" if check and row.files else "present"


def _describe(row: Located, changed: list[str], allow_pickle: bool, check: bool) -> str:
    """One model as a block of lines: status, users, options, where; what is wrong and how to put it in place."""
    options = row.slot.options
    refused = (
        [f"{row.pickle} is a pickle file: pass --allow-pickle to load it"] if row.pickle and not allow_pickle else []
    )
    trouble = row.problems + changed + refused
    lines = [
        f"{row.label}: {_status(row, trouble, check)}",
        f"  for:     {', '.join(row.used_by)}",
        f"  option:  {'/'.join(map(flag, options))} (config: {'/'.join(map(config_key, options))})",
        f"  default: {row.slot.default}",
    ]
    if row.value not in row.label and row.value not in row.slot.default:
        lines.append(f"  chosen:  {row.value}")
    lines.append(f"  where:   {row.where if row.where is not None else '(open_clip resolves it)'}")
    if row.source is not None and not row.present:
        lines.append(f"  source:  {row.source}")
    lines += [f"  problem: {text}" for text in trouble]
    if not row.present or row.problems or changed:
        lines.append(f"  to put it in place: {row.fix.replace('{option}', flag(row.slot.option))}")
    return "\n".join(lines)


def _as_json(row: Located, wrong: list[str]) -> dict[str, Any]:
    from sdeval.models.check import download_reason  # torch, via locate.py: when a row is shown

    return {
        "model": row.label,
        "value": row.value,
        "used_by": row.used_by,
        "options": [flag(o) for o in row.slot.options],
        "config_keys": [config_key(o) for o in row.slot.options],
        "default": row.slot.default,
        "where": None if row.where is None else str(row.where),
        "present": row.present,
        "source": row.source,
        "download": None if row.present else download_reason(row) or "allowed",
        "problems": wrong,
        "fix": row.fix.replace("{option}", flag(row.slot.option)),
    }
