"""Commands load on first use: `sdeval --help` and a command's --help import no heavy library, and the lazy
command list says exactly what the commands themselves say."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from sdeval.cli import COMMANDS, _LazyCommands, _LazyGroup, main

HEAVY = ("torch", "torchvision", "torch_fidelity", "diffusers", "transformers", "open_clip", "scipy")

#: Runs the CLI in a fresh interpreter and prints which heavy libraries it imported.
_PROBE = """
import json, sys
from sdeval.cli import main
try:
    main(sys.argv[1:], prog_name="sdeval")
except SystemExit:
    pass
sys.stderr.write(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def _heavy_imports(*args: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE.format(heavy=HEAVY), *args], capture_output=True, text=True, timeout=120
    )
    assert "Usage: sdeval" in proc.stdout, proc.stdout + proc.stderr
    return json.loads(proc.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [("--help",), ("report", "--help"), ("gate", "--help"), ("bench", "--help")])
def test_help_imports_no_heavy_library(args: tuple[str, ...]) -> None:
    assert _heavy_imports(*args) == []


#: Shows the --help of every command and subcommand in one fresh interpreter (one start-up for all: a process each
#: would take ~0.5 s per command), and prints, per command in order, the heavy libraries imported so far.
_EVERY_HELP = """
import json, sys
import click
from click.testing import CliRunner
from sdeval.cli import COMMANDS, main

def walk(command, path):
    paths = [path]
    for name, sub in (command.commands.items() if isinstance(command, click.Group) else ()):
        paths += walk(sub, (*path, name))
    return paths

shown = {{}}
for name in COMMANDS:
    for path in walk(main.commands[name], (name,)):
        result = CliRunner().invoke(main, [*path, "--help"], prog_name="sdeval")
        usage = result.output.startswith("Usage: sdeval " + " ".join(path) + " ")
        shown[" ".join(path)] = [result.exit_code, usage, sorted(m for m in {heavy!r} if m in sys.modules)]
print(json.dumps(shown))
"""


def test_every_commands_help_imports_no_heavy_library() -> None:
    """`sdeval COMMAND --help` of each command and subcommand (`models` included, whose help names every model's
    default) renders without torch, torchvision, torch-fidelity, diffusers, transformers, open_clip or scipy."""
    proc = subprocess.run(
        [sys.executable, "-c", _EVERY_HELP.format(heavy=HEAVY)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {path.split()[0] for path in shown} == set(COMMANDS)
    assert {"models", "reference build", "suites show", "export model-index"} <= set(shown)
    assert {path: code for path, (code, usage, _) in shown.items() if code != 0 or not usage} == {}
    # Heavy libraries imported so far, after each help in turn: the first path listed is the one that loaded them.
    assert {path: heavy for path, (_, _, heavy) in shown.items() if heavy} == {}


@pytest.fixture(scope="module")
def score_help_imports() -> list[str]:
    return _heavy_imports("score", "--help")


def test_score_help_imports_no_diffusers(score_help_imports: list[str]) -> None:
    assert "diffusers" not in score_help_imports and "transformers" not in score_help_imports


def test_score_help_imports_no_torch(score_help_imports: list[str]) -> None:
    assert "torch" not in score_help_imports


def _walk(command: click.Command, path: tuple[str, ...]) -> list[tuple[str, ...]]:
    """`path` and the paths of every subcommand below it."""
    paths = [path]
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            paths += _walk(sub, (*path, name))
    return paths


def test_every_command_resolves_and_its_help_renders() -> None:
    assert list(main.commands) == list(COMMANDS)
    paths = []
    for name in COMMANDS:
        command = main.commands[name]
        assert isinstance(command, click.Command) and command.name == name
        paths += _walk(command, (name,))
    for path in paths:
        result = CliRunner().invoke(main, [*path, "--help"], prog_name="sdeval", catch_exceptions=False)
        assert result.exit_code == 0, (path, result.output)
        assert result.output.startswith(f"Usage: sdeval {' '.join(path)} "), result.output


@pytest.mark.parametrize("width", [40, 80, 120, 300])
def test_command_list_is_what_the_commands_say(width: int) -> None:
    """The summaries in COMMANDS give, at any terminal width, the command list click makes from the commands."""

    def help_text(group: click.Group) -> str:
        return group.get_help(click.Context(group, info_name="sdeval", terminal_width=width, max_content_width=width))

    # A group of its own, whose commands are not imported yet: the list comes from the summaries alone.
    commands = _LazyCommands(COMMANDS)
    lazy_help = help_text(_LazyGroup("sdeval", commands=commands, params=main.params, help=main.help))
    assert all(commands.loaded(name) is None for name in COMMANDS)
    eager = click.Group(
        "sdeval", commands=[main.commands[name] for name in COMMANDS], params=main.params, help=main.help
    )
    assert lazy_help == help_text(eager) == help_text(main)
    for name, (_, summary) in COMMANDS.items():
        assert main.commands[name].get_short_help_str(10**6) == summary


def test_an_unknown_command_still_suggests_the_nearest() -> None:
    result = CliRunner().invoke(main, ["scroe"])
    assert result.exit_code == 2
    assert "No such command 'scroe'. Did you mean 'score'?" in result.output
