"""Built-in suites: data files shipped in the package, named `builtin:NAME` (or plain NAME where no file is).

Two kinds: the suites sdeval generates (`DATA_DIR/NAME.jsonl`, written by `python -m sdeval.suites.build`) and the
public benchmarks converted from their pinned upstream files (`DATA_DIR/NAME.jsonl.gz`, format 2, written by
`python -m sdeval.suites.benchmarks`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdeval.core.errors import ConfigError

DATA_DIR = Path(__file__).resolve().parent / "data"
PREFIX = "builtin:"
#: The suites sdeval generates (each is DATA_DIR/NAME.jsonl).
GENERATED = ("compositional", "shapes", "creative", "sketch2image", "smoke")
#: The public benchmarks, as the literature names them in sdeval/suites/benchmarks.py (each DATA_DIR/NAME.jsonl.gz).
BENCHMARKS = ("geneval", "partiprompts", "t2i-compbench", "dsg-1k", "tifa160", "dpg-bench", "mlperf-coco2014")
#: The built-in suites, in the order `sdeval suites list` shows them.
BUILTIN = GENERATED + BENCHMARKS
_SUFFIXES = (".jsonl.gz", ".jsonl")


def builtin_path(name: str) -> Path:
    """The data file of a built-in suite; ConfigError lists the names when there is none."""
    if name not in BUILTIN:
        raise ConfigError(f"suite: no built-in suite {name!r} (built-in: {', '.join(BUILTIN)})")
    return DATA_DIR / (f"{name}.jsonl.gz" if name in BENCHMARKS else f"{name}.jsonl")


def builtin_name(path: Path) -> str | None:
    """The built-in name of a suite file, or None when it is the user's own."""
    try:
        resolved = path.resolve()
    except OSError:
        return None
    if resolved.parent != DATA_DIR:
        return None
    for suffix in _SUFFIXES:
        name = resolved.name[: -len(suffix)]
        if resolved.name.endswith(suffix) and name in BUILTIN and resolved == builtin_path(name):
            return name
    return None


def resolve_suite_path(source: Any, base_dir: Path | None = None) -> Path:
    """The file a suite value names: `builtin:NAME`; else a path (relative to `base_dir`, default the working
    folder); else, when no such file exists, a built-in suite of that name. A local file wins over a built-in."""
    if isinstance(source, Path):
        path = source if base_dir is None else base_dir / source
        if not path.is_file():
            raise ConfigError(f"suite: no such file: {path}")
        return path
    if not isinstance(source, str) or not source.strip():
        raise ConfigError(f"suite: expected a file or a built-in suite name, got {source!r}")
    if source.startswith(PREFIX):
        return builtin_path(source[len(PREFIX) :])
    path = ((base_dir or Path.cwd()) / Path(source).expanduser()).resolve()
    if path.is_file():
        return path
    if source in BUILTIN:
        return builtin_path(source)
    raise ConfigError(f"suite: no such file: {path} (nor a built-in suite: {', '.join(BUILTIN)})")
