"""Output files: permissions under the user's umask, FIFOs and `-` written through, paths checked before work,
results kept when the final write fails, folders fsynced, and the exit codes every command documents."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from sdeval.cli import main
from sdeval.core import atomic
from sdeval.core.errors import SdevalError
from sdeval.score.demo import make_image_set

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def few(tmp_path_factory) -> str:
    """12 images: enough for every Inception metric at small subset sizes (IS needs 20)."""
    folder = tmp_path_factory.mktemp("few") / "images"
    make_image_set(folder, 24, seed=3)
    return str(folder)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def _score_args(images: str, weights: str, cache: Path, *extra: object) -> list[str]:
    # KID and precision/recall only: FID's 2048x2048 eigen-decomposition would dominate these tests' time.
    return ["score", images, "--metrics", "kid,pr", "-r", images, "--kid-subset-size", "8",
            "--inception-weights", weights, "--cache-dir", str(cache), "--workers", "0", *map(str, extra)]  # fmt: skip


# -- permissions ------------------------------------------------------------------------------------------


_WRITE_ALL_KINDS = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from PIL import Image
    from sdeval.core import atomic
    from sdeval.generate.writer import write_png
    out = Path(sys.argv[1])
    atomic.write_json(out / "results.json", {"a": 1})
    atomic.write_bytes(out / "ref.npz", b"x")
    write_png(out / "img.png", Image.new("RGB", (4, 4)), {"prompt": "p"})
    """
)


@pytest.mark.parametrize(("umask", "expected"), [("022", 0o644), ("077", 0o600), ("002", 0o664)])
def test_outputs_get_the_mode_open_would_give_under_the_umask(tmp_path, umask, expected):
    # A real process per umask: the module reads the umask once at start-up, as a user's run would.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(["sh", "-c", f'umask {umask} && exec "$0" -c "$1" "$2"', sys.executable, _WRITE_ALL_KINDS,
                    str(tmp_path)], check=True, env=env)  # fmt: skip
    for name in ("results.json", "ref.npz", "img.png"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == expected, name


def test_a_rewrite_keeps_the_existing_files_mode(tmp_path):
    target = tmp_path / "results.json"
    atomic.write_text(target, "old")
    os.chmod(target, 0o640)
    atomic.write_text(target, "new")
    assert target.read_text() == "new"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640


def test_a_symlink_is_followed_and_kept(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    atomic.write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "new"


def test_the_folder_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    synced: list[str] = []
    monkeypatch.setattr(atomic, "fsync_folder", lambda folder: synced.append(str(folder)))
    atomic.write_text(tmp_path / "sub" / "r.json", "x")
    assert synced == [str(tmp_path / "sub")]


# -- where the results go -----------------------------------------------------------------------------------


def test_dash_writes_json_to_stdout_and_the_table_to_stderr(tmp_path, few, inception_weights, cache):
    result = CliRunner().invoke(main, _score_args(few, inception_weights, cache, "-o", "-"))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["cells"][0]["metrics"]["kid"]["value"] is not None
    assert "KID" in result.stderr and not (tmp_path / "-").exists()


def test_a_fifo_is_written_through_never_renamed_over(tmp_path, few, inception_weights, cache):
    fifo = tmp_path / "results.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    result = CliRunner().invoke(main, _score_args(few, inception_weights, cache, "-o", fifo))
    reader.join(timeout=60)
    assert result.exit_code == 0, result.output
    assert stat.S_ISFIFO(os.stat(fifo).st_mode), "the FIFO was replaced by a regular file"
    assert json.loads(received[0])["cells"][0]["metrics"]["kid"]["value"] is not None


def test_dev_null_stays_a_device(tmp_path):
    atomic.write_text("/dev/null", "discarded")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.fixture
def no_work(monkeypatch):
    """Fails the test if any image is decoded: the command must stop before the work."""
    import sdeval.score.prepare

    def refuse(*args, **kwargs):
        raise AssertionError("work started before the output path was checked")

    monkeypatch.setattr(sdeval.score.prepare, "extract", refuse)


def test_an_unwritable_results_path_fails_before_any_work(tmp_path, few, inception_weights, cache, no_work):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    result = CliRunner().invoke(main, _score_args(few, inception_weights, cache, "-o",
                                                  blocker / "r.json"))  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "is a file, not a folder" in result.output and "Traceback" not in result.output


def test_reference_build_checks_its_output_before_work(tmp_path, few, inception_weights, cache, no_work):
    (tmp_path / "a_file").write_text("")
    result = CliRunner().invoke(main, ["reference", "build", few, "-o", str(tmp_path / "a_file" / "ref.npz"),
                                       "--inception-weights", inception_weights, "--no-cache"])  # fmt: skip
    assert result.exit_code == 2 and "is a file, not a folder" in result.output


@pytest.mark.parametrize("target", ["/proc/sdeval-results.json", "/proc/sdeval/deeper/r.json"])
def test_a_path_under_proc_fails_before_any_work(target, few, inception_weights, cache, no_work):
    # root passes os.access on /proc, yet nothing can be created there: the check must try.
    result = CliRunner().invoke(main, _score_args(few, inception_weights, cache, "-o", target))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: --out {target}: cannot be written") and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1


@pytest.fixture
def read_only(tmp_path):
    """A folder nothing can be created in: mode 0555, made immutable where root ignores the mode."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = False
    if os.access(folder, os.W_OK):  # root: the mode does not stop it
        immutable = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
        if not immutable:
            folder.chmod(0o755)
            pytest.skip("running as root without chattr: no folder here is read-only")
    yield folder
    if immutable:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    folder.chmod(0o755)


def test_output_checks_really_try_to_create(read_only, tmp_path):
    for check, path in [
        (atomic.check_output_file, "/proc/x.json"),
        (atomic.check_output_file, "/proc/a/b/x.json"),
        (atomic.check_output_folder, "/proc/sdeval-out"),
        (atomic.check_output_folder, "/proc/self"),
        (atomic.check_output_file, read_only / "r.json"),
        (atomic.check_output_file, read_only / "new" / "r.json"),
        (atomic.check_output_folder, read_only),
        (atomic.check_output_folder, read_only / "new" / "deeper"),
    ]:
        with pytest.raises(
            SdevalError, match=rf"^--out {re.escape(str(path))}: cannot be written: cannot create a (file|folder) in "
        ):
            check(path, "--out")
    # What can be written passes, and the checks leave nothing behind.
    writable = tmp_path / "writable"
    writable.mkdir()
    atomic.check_output_file(writable / "r.json", "--out")
    atomic.check_output_file(writable / "a" / "b" / "r.json", "--out")
    atomic.check_output_folder(writable, "--out")
    atomic.check_output_folder(writable / "c" / "d", "--out")
    assert list(writable.iterdir()) == []
    for stream in ("-", "/dev/stdout", "/dev/null"):
        atomic.check_output_file(stream, "--out")  # streams are written through


def test_generate_output_dir_in_a_read_only_folder_fails_before_loading(read_only, tmp_path):
    config = tmp_path / "run.yaml"
    (tmp_path / "prompts.jsonl").write_text('{"id": "p1", "prompt": "a cube"}\n')
    config.write_text(
        f"checkpoints: [{{name: tiny, path: tiny-random}}]\nsuite: prompts.jsonl\noutput_dir: {read_only / 'out'}\n"
    )
    result = CliRunner().invoke(main, ["generate", str(config)])
    assert result.exit_code == 2, result.output
    expected = f"error: output_dir {read_only / 'out'}: cannot be written: cannot create a folder in {read_only} ("
    assert result.stderr.startswith(expected) and len(result.stderr.splitlines()) == 1


def test_a_failed_final_write_keeps_the_results_and_names_where(tmp_path, few, inception_weights, cache, monkeypatch):
    import sdeval.results.document

    def disk_full(path, obj):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sdeval.results.document, "write_json", disk_full)
    result = CliRunner().invoke(main, _score_args(few, inception_weights, cache, "-o",
                                                  tmp_path / "r.json"))  # fmt: skip
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1]
    prefix = f"error: cannot write {tmp_path / 'r.json'}: No space left on device (ENOSPC); the results were saved to "
    assert line.startswith(prefix), line
    saved = Path(line[len(prefix) :])
    try:
        assert json.loads(saved.read_text())["cells"][0]["metrics"]["kid"]["value"] is not None
    finally:
        saved.unlink()


# -- exit codes ---------------------------------------------------------------------------------------------


def test_every_metric_null_exits_3_with_results_written(tmp_path, inception_weights, cache):
    make_image_set(tmp_path / "five", 5, seed=0)
    out = tmp_path / "r.json"
    result = CliRunner().invoke(main, ["score", str(tmp_path / "five"), "--metrics", "is,kid", "-r",
                                       str(tmp_path / "five"), "--kid-subset-size", "10", "--inception-weights",
                                       inception_weights, "--no-cache", "--workers", "0", "-o", str(out)])  # fmt: skip
    assert result.exit_code == 3, result.output
    assert "incomplete: is, kid could not be computed" in result.output
    doc = json.loads(out.read_text())
    assert (
        doc["cells"][0]["metrics"]["is"]["value"] is None
        and "at least 2 images per split" in doc["cells"][0]["metrics"]["is"]["skipped"]
    )


def test_some_metric_null_exits_3(tmp_path, few, inception_weights, cache):
    result = CliRunner().invoke(main, _score_args(few, inception_weights, cache, "--kid-subset-size",
                                                  500))  # fmt: skip
    assert result.exit_code == 3, result.output
    assert "incomplete: kid" in result.output


def test_an_unexpected_error_is_one_line_exit_70_and_a_saved_traceback(few, inception_weights, cache, monkeypatch):
    import sdeval.score.prepare

    def bug(*args, **kwargs):
        raise RuntimeError("something that should never happen\nsecond line")

    monkeypatch.setattr(sdeval.score.prepare, "extract", bug)
    result = CliRunner().invoke(main, _score_args(few, inception_weights, cache))
    assert result.exit_code == 70
    assert len(result.output.strip().splitlines()) == 1
    assert "RuntimeError: something that should never happen" in result.output and "Traceback" not in result.output
    saved = Path(result.output.split("traceback in ")[1].split(")")[0])
    try:
        assert "Traceback" in saved.read_text() and "second line" in saved.read_text()
    finally:
        saved.unlink()


@pytest.mark.parametrize(("raised", "code"), [("KeyboardInterrupt", 130), ("Terminated", 143)])
def test_interrupt_and_terminate_exit_codes(tmp_path, few, inception_weights, cache, monkeypatch, raised, code):
    import sdeval.score.prepare
    from sdeval.core.errors import Terminated

    exc = {"KeyboardInterrupt": KeyboardInterrupt, "Terminated": Terminated}[raised]

    def stop(*args, **kwargs):
        raise exc()

    monkeypatch.setattr(sdeval.score.prepare, "extract", stop)
    result = CliRunner().invoke(main, _score_args(few, inception_weights, cache))
    assert result.exit_code == code and "Traceback" not in result.output


def test_sigterm_handler_is_restored_after_a_command(tmp_path, few, inception_weights, cache):
    import signal

    before = signal.getsignal(signal.SIGTERM)
    CliRunner().invoke(main, _score_args(few, inception_weights, cache))
    assert signal.getsignal(signal.SIGTERM) is before


# -- honest edge cases ------------------------------------------------------------------------------------------


def test_kid_with_one_possible_subset_reports_no_spread(tmp_path, few, inception_weights, cache):
    out = tmp_path / "r.json"
    result = CliRunner().invoke(main, _score_args(few, inception_weights, cache, "--kid-subset-size",
                                                  24, "-o", out))  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["cells"][0]["metrics"]["kid"]["value"] is not None and doc["cells"][0]["metrics"]["kid"]["std"] is None
    assert any("KID: no spread" in w for w in doc["cells"][0]["warnings"])
    assert "±" not in next(line for line in result.output.splitlines() if "KID" in line)


def test_a_skipped_fid_carries_no_fid_warning(tmp_path, inception_weights, cache):
    make_image_set(tmp_path / "one", 1, seed=0)
    out = tmp_path / "r.json"
    result = CliRunner().invoke(main, ["score", str(tmp_path / "one"), "--metrics", "fid", "-r",
                                       str(tmp_path / "one"), "--inception-weights", inception_weights,
                                       "--no-cache", "--workers", "0", "-o", str(out)])  # fmt: skip
    doc = json.loads(out.read_text())
    assert result.exit_code == 3 and doc["cells"][0]["metrics"]["fid"]["value"] is None
    assert not any(w.startswith("FID") for w in doc["warnings"] + doc["cells"][0]["warnings"])


def test_generate_output_dir_under_a_file_fails_before_loading(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    config = tmp_path / "run.yaml"
    (tmp_path / "prompts.jsonl").write_text('{"id": "p1", "prompt": "a cube"}\n')
    config.write_text(
        f"checkpoints: [{{name: tiny, path: tiny-random}}]\nsuite: prompts.jsonl\noutput_dir: {blocker / 'out'}\n"
    )
    result = CliRunner().invoke(main, ["generate", str(config)])
    assert result.exit_code == 2, result.output
    assert "output_dir" in result.output and "Traceback" not in result.output
