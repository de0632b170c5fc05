"""Errors that sdeval raises at its boundaries; the CLI prints them as one line."""

from __future__ import annotations

import errno


class SdevalError(Exception):
    """A problem the user can fix (bad input, bad config, mismatched protocol)."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (library errors run over many lines), else its type's name."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class ConfigError(SdevalError):
    """A config file or option is invalid; the message names the key."""


class ProtocolMismatchError(SdevalError):
    """Two results or states were made under different protocols; the message names the field."""


class NoImagesError(SdevalError):
    """A folder holds no image that could be decoded."""


class OutputError(SdevalError, OSError):
    """An output file could not be written (disk full, quota, read-only file system, folder removed): the message
    names the file and the errno, plus `note` (what was kept, and where). An OSError too, so code that tolerates a
    failed write (`except OSError`) still does."""

    def __init__(self, path: object, err: OSError, note: str = "") -> None:
        super().__init__(err.errno, err.strerror or str(err), str(path))
        self.note = note

    def __str__(self) -> str:
        name = errno.errorcode.get(self.errno, f"errno {self.errno}") if self.errno is not None else "no errno"
        text = f"cannot write {self.filename}: {self.strerror} ({name})"
        return f"{text}; {self.note}" if self.note else text


class Terminated(BaseException):
    """SIGTERM arrived (SLURM, Kubernetes, `kill`): unwinds like Ctrl-C so in-flight work is finished and kept."""


class ExitCode:
    """The exit codes of every sdeval command (README, "Exit codes"); a CI can branch on them."""

    OK = 0
    VERDICT_FAILED = 1  # the gate's verdict is a failure
    USAGE = 2  # bad option, bad input, unwritable output: one line on stderr, never a traceback
    INCOMPLETE = 3  # results written, but some requested metric could not be computed (reasons listed)
    INCONCLUSIVE = 4  # the gate with --strict could not decide
    INTERNAL = 70  # a bug: one line on stderr, the traceback in a file it names
    INTERRUPTED = 130  # SIGINT (Ctrl-C)
    BROKEN_PIPE = 141  # the reader of standard output went away (`| head`), as a shell reports SIGPIPE
    TERMINATED = 143  # SIGTERM
