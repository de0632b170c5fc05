"""Command-line entry point: a thin click group; each command parses, calls one function, prints."""

from __future__ import annotations

import contextlib
import datetime
import errno
import os
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Iterator
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


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="sdeval")
def main() -> None:
    """sdeval: generate, score, compare and gate text-to-image models."""


from sdeval.score.command import demo, merge, score  # noqa: E402

main.add_command(score)
main.add_command(merge)
main.add_command(demo)

from sdeval.metrics.command import metrics_command  # noqa: E402

main.add_command(metrics_command)

from sdeval.models.command import models_command  # noqa: E402

main.add_command(models_command)

from sdeval.reference.command import reference  # noqa: E402

main.add_command(reference)

from sdeval.generate.command import generate  # noqa: E402

main.add_command(generate)

from sdeval.suites.command import suites  # noqa: E402

main.add_command(suites)

from sdeval.gate.command import diff_command, gate  # noqa: E402

main.add_command(gate)
main.add_command(diff_command)


from sdeval.report.command import report_command  # noqa: E402

main.add_command(report_command)

from sdeval.bench.command import bench_command  # noqa: E402

main.add_command(bench_command)
