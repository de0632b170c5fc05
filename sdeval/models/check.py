"""Every model a run needs, where sdeval looks for it, and whether it is there: `sdeval models` shows it, and
`sdeval bench` checks it before generating, so that a missing model is reported before the work, not after.

Nothing here loads a model or touches the network, except the probe that tells whether a missing model could be
downloaded now (sdeval.core.offline). Options are named by the caller's `name` function: flags on the command line,
config keys (`score.inception_weights`) in a bench config.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sdeval.core.errors import ConfigError
from sdeval.core.hashing import file_sha256, hub_record_key, record_sha256
from sdeval.core.offline import offline_reason
from sdeval.models.locate import Located, locate_slot
from sdeval.models.table import config_key, flag, run_slots
from sdeval.options.score import ScoreOptions


def run_models(options: ScoreOptions, judges: Iterable[str] | None = None) -> list[Located]:
    """Every file and folder the requested metrics need (with `judges`, default the run's --judge): one row per
    distinct model, listing the metrics that use it."""
    rows: dict[tuple[str, str], Located] = {}
    for key, users in run_slots(options.requested, (options.judge,) if judges is None else judges).items():
        for found in locate_slot(key, options):
            row = rows.setdefault(found.identity, found)
            row.used_by.extend(user for user in users if user not in row.used_by)
    return list(rows.values())


def download_reason(found: Located) -> str | None:
    """Why a missing model cannot be downloaded now (None: a run would download it)."""
    if found.source is None:
        return "a local path"
    return found.no_download or offline_reason(found.url)


def problems(
    found: Located, *, allow_pickle: bool, name: Callable[[str], str] = flag, strict: bool = False
) -> list[str]:
    """What stops a run from using `found`, each naming its option and how to put it in place: absent and not
    downloadable now (with `strict`, absent at all), then unreadable, then a pickle that would be refused."""
    option = name(found.slot.option)
    fix = found.fix.replace("{option}", option)
    out = []
    if not found.present and not found.problems:
        reason = download_reason(found)
        if reason is not None or strict:
            why = f"it cannot be downloaded now: {reason}" if reason else f"a run would download it from {found.source}"
            out.append(f"{option}: {found.label} is not on this machine ({why}); to put it in place: {fix}")
    out += [f"{option}: {problem}; to put it in place: {fix}" for problem in found.problems]
    if found.pickle and not allow_pickle:
        allow = name("allow_pickle")
        how = f"pass {allow}" if allow.startswith("--") else f"set {allow}: true"
        out.append(
            f"{option}: {found.pickle} is a pickle file, which can run code when loaded: {how} to load it with "
            "torch.load(weights_only=True), or convert it to .safetensors"
        )
    return out


def verify(found: Located) -> list[str]:
    """Each present hub or URL file's sha256 against the one it had at its first download (or first check): recorded
    now where none is. Returns what differs."""
    out = []
    for path in found.files:
        key = hub_record_key(path) or (f"url:{found.source}" if (found.source or "").startswith("http") else None)
        if key is None:
            continue
        actual = file_sha256(path)
        if found.expected_sha256 is not None and actual != found.expected_sha256:
            out.append(
                f"{path}: sha256 {actual[:12]}... differs from the {found.expected_sha256[:12]}... it had when "
                "first downloaded (damaged or replaced): delete it so it is downloaded again"
            )
        else:
            record_sha256(key, path)
    return out


def check_run_models(options: ScoreOptions, name: Callable[[str], str] = config_key) -> None:
    """ConfigError naming every model of the run that is missing and cannot be downloaded now, unreadable, or a pickle
    that would be refused (each with its option as `name` gives it, and how to put it in place); else nothing."""
    found = [p for row in run_models(options) for p in problems(row, allow_pickle=options.allow_pickle, name=name)]
    if found:
        raise ConfigError("; ".join(found))
