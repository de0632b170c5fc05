"""Command-line entry point: a thin click group; each command parses, calls one function, prints."""

from __future__ import annotations

import contextlib
import datetime
import errno
import gettext
import importlib
import os
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Iterator, MutableMapping
from typing import Any, NoReturn

import click

from sdeval import __version__
from sdeval.core.errors import ExitCode, SdevalError, Terminated


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


def _usage_error(err: click.UsageError) -> NoReturn:
    """Click's message in one line, `error: ...` and where the command's --help is, instead of its usage block."""
    text = " ".join(err.format_message().split())
    ctx = err.ctx
    if ctx is not None and ctx.command.get_help_option(ctx) is not None:
        text += f" Try '{ctx.command_path} --help' for help."
    click.echo(f"error: {text}", err=True)
    sys.exit(ExitCode.USAGE)


class _Group(click.Group):
    """Every command ends with one of the documented exit codes (README, "Exit codes"), never a traceback:
    SdevalError and click's usage errors are one line and 2, Ctrl-C 130, SIGTERM 143, anything unexpected one
    line and 70 with the traceback saved to a file."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        # The group's own options (`sdeval --bogus`) are parsed here, before invoke.
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise  # bare `sdeval`: the help, as click shows it
        except click.UsageError as err:
            _usage_error(err)

    def invoke(self, ctx: click.Context):
        try:
            with _sigterm_unwinds():
                return super().invoke(ctx)
        except SdevalError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(ExitCode.USAGE)
        except click.exceptions.NoArgsIsHelpError:
            raise  # a bare sub-group (`sdeval suites`): its help
        except click.UsageError as err:  # a command's arguments and options, an unknown command
            _usage_error(err)
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
        except OSError as err:
            if err.errno not in _FULL_ERRNOS:
                _internal_error(err)
            _unwritable(err)
        except Exception as err:
            _internal_error(err)


#: A write that failed for want of room or of a writable mount, outside sdeval's own output files (which raise
#: OutputError): standard output redirected to a full disk, say.
_FULL_ERRNOS = frozenset(getattr(errno, n) for n in ("ENOSPC", "EDQUOT", "EROFS", "EFBIG") if hasattr(errno, n))


def _unwritable(err: OSError) -> NoReturn:
    """One line naming what could not be written (the file, or the stream click.echo was writing) and the errno,
    exit 2."""
    where = err.filename
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    frame = tb.tb_frame if tb is not None else None
    if where is None and frame is not None and frame.f_code.co_name == "echo" and "click" in frame.f_code.co_filename:
        where = "standard error" if frame.f_locals.get("err") else "standard output"
        if where == "standard output":  # what is still buffered must not fail again at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    assert err.errno is not None  # main() sends here only the errnos of _FULL_ERRNOS
    name = errno.errorcode.get(err.errno, str(err.errno))
    click.echo(f"error: cannot write {where or 'an output'}: {err.strerror} ({name})", err=True)
    sys.exit(ExitCode.USAGE)


def _internal_error(err: Exception) -> NoReturn:
    """One line, exit 70, the traceback saved to a file it names (called while `err` is being handled)."""
    path = _save_traceback()
    first = str(err).splitlines()[0] if str(err) else ""
    click.echo(f"internal error: {type(err).__name__}: {first} (a bug: please report it with the "
               f"traceback in {path})", err=True)  # fmt: skip
    sys.exit(ExitCode.INTERNAL)


#: Every command: where it lives ("module:attribute", imported on first use, so that `sdeval --help` and one
#: command's --help load no other command's module and its dependencies) and the first sentence of its help,
#: which the command list of `sdeval --help` shows without the import (tests/test_cli_lazy.py keeps it equal to
#: the command's own).
COMMANDS: dict[str, tuple[str, str]] = {
    "bench": (
        "sdeval.bench.command:bench_command",
        "Generate, score, gate and report from one CONFIG (resumable: each stage skips what is already done).",
    ),
    "demo": (
        "sdeval.score.command:demo",
        "Score a small synthetic folder offline on the CPU, with random Inception weights.",
    ),
    "diff": (
        "sdeval.gate.command:diff_command",
        "What differs between results A and B: protocol fields, and each metric's values with the difference "
        "(B - A) and its interval (paired by image where both scored the same items).",
    ),
    "export": (
        "sdeval.export.command:export",
        "Write results in other tools' formats (a Hugging Face model card's model-index).",
    ),
    "gate": (
        "sdeval.gate.command:gate",
        "Check RESULTS against the rules in RULES (absolute thresholds, regressions against --baseline).",
    ),
    "generate": (
        "sdeval.generate.command:generate",
        "Generate images for every checkpoint x setting x prompt x seed in CONFIG (resumable).",
    ),
    "log": (
        "sdeval.trackers.command:log_command",
        "Log RESULTS to an experiment tracker: every metric (and per-category adherence) with its interval bounds as "
        "series, the protocol as parameters, the results file and the HTML report as artifacts, and a grid of the "
        "same prompts across cells.",
    ),
    "merge": (
        "sdeval.score.command:merge",
        "Merge the parts of `sdeval score --shard I/N` (one per shard, any order) into the results of the whole: "
        "the same document as scoring every image in one process.",
    ),
    "metrics": (
        "sdeval.metrics.command:metrics_command",
        "List the metrics: key, what they fill, direction (higher or lower is better), range, interval method, "
        "needs, per-image columns.",
    ),
    "models": (
        "sdeval.models.command:models_command",
        "List every model a run needs: the option that chooses it (flag and bench config key), its default, where "
        "it is looked for (the file or folder to copy it to from another machine), and whether it is there.",
    ),
    "reference": (
        "sdeval.reference.command:reference",
        "Build, merge and list reference statistics; build the defined reference sets (COCO, ...).",
    ),
    "report": (
        "sdeval.report.command:report_command",
        "One offline HTML page (index.html, thumbnails beside it) and summary.md over RESULTS files.",
    ),
    "score": (
        "sdeval.score.command:score",
        "Score a folder of IMAGES: FID, KID, IS, precision/recall; CLIP score, R-precision, CMMD, diversity; "
        "prompt adherence, seed robustness, faithfulness (`sdeval metrics` lists them all).",
    ),
    "suites": (
        "sdeval.suites.command:suites",
        "List, show and validate prompt suites (docs/suites.md).",
    ),
}


class _LazyCommands(MutableMapping[str, click.Command]):
    """The group's commands by name: every name in COMMANDS is listed, and its module is imported when the
    command is first looked up. Being the group's `commands` mapping, click's own lookup, listing and "did you
    mean" suggestions work unchanged; commands added later (add_command) are kept like in a plain dict."""

    def __init__(self, table: dict[str, tuple[str, str]]) -> None:
        self._paths = {name: path for name, (path, _) in table.items()}
        self._summaries = {name: summary for name, (_, summary) in table.items()}
        self._loaded: dict[str, click.Command] = {}

    def loaded(self, name: str) -> click.Command | None:
        """The command if it was imported already, without importing it."""
        return self._loaded.get(name)

    def peek(self, name: str) -> click.Command:
        """The command if it was imported already, else a stand-in that holds only its summary (for the list)."""
        return self._loaded.get(name) or click.Command(name, help=self._summaries[name])

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._loaded:
            module_name, _, attribute = self._paths[name].partition(":")  # KeyError: no such command
            command = getattr(importlib.import_module(module_name), attribute)
            assert isinstance(command, click.Command), f"{self._paths[name]} is not a click command"
            self._loaded[name] = command
        return self._loaded[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        for held in (self._paths, self._summaries, self._loaded):
            held.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths | dict.fromkeys(self._loaded))

    def __len__(self) -> int:
        return len(self._paths.keys() | self._loaded.keys())

    def __contains__(self, name: object) -> bool:
        return name in self._paths or name in self._loaded


class _LazyGroup(_Group):
    """The top-level group: commands load on first use (click's lazy-group pattern, the table being the group's
    `commands`), and the command list of --help reads each one-line summary from COMMANDS instead of importing."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        assert isinstance(self.commands, _LazyCommands)
        lazy = self.commands
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)  # as click.Group.format_commands
        rows = []
        for name in names:
            command = lazy.peek(name)
            if not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        if rows:
            with formatter.section(gettext.gettext("Commands")):  # click's own words, translated alike
                formatter.write_dl(rows)


@click.group(cls=_LazyGroup, commands=_LazyCommands(COMMANDS))
@click.version_option(__version__, prog_name="sdeval")
def main() -> None:
    """sdeval: generate, score, compare and gate text-to-image models."""
