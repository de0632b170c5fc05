"""A full disk (ENOSPC) at every output, and a damaged feature cache: one line naming the file and the errno, exit
2, the results kept (written, or saved where the error says), nothing half-written, generation resumable.

The full disk is a real one where this process may mount a small tmpfs (root on Linux); elsewhere it is a folder
whose files fail with ENOSPC once they hold more than its size (os.fsync patched: every sdeval output is synced
before it counts as written)."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from generate_fixtures import (
    load_images,
    manifest_rows,
    sdeval_cache_fixture,  # noqa: F401  (registers the sdeval_cache fixture)
    write_config,
)

from sdeval.cli import main
from sdeval.features.cache import FeatureCache
from sdeval.score.demo import make_image_set

FILLER = ".filler"
ENOSPC = f"{os.strerror(errno.ENOSPC)} (ENOSPC)"


class SmallDisk:
    """A folder on a filesystem of `size` bytes (see the module's docstring); fill() uses up the rest of it."""

    def __init__(self, folder: Path, size: int, monkeypatch: pytest.MonkeyPatch, mount: bool) -> None:
        self.folder, self.size = folder, size
        self.mounted = mount and _mount_tmpfs(folder, size)
        if not self.mounted:
            if not Path("/proc/self/fd").is_dir():
                pytest.skip("no tmpfs can be mounted and no /proc/self/fd to emulate one")
            real = os.fsync

            def fsync(fd: int) -> None:
                with_name = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else ""
                if with_name.startswith(f"{self.folder}/") and self.used() > self.size:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                real(fd)

            monkeypatch.setattr(os, "fsync", fsync)

    def used(self) -> int:
        return sum(f.stat().st_size for f in self.folder.rglob("*") if f.is_file())

    def fill(self) -> None:
        if not self.mounted:
            self.size = self.used()
            return
        with open(self.folder / FILLER, "wb", buffering=0) as handle:
            for chunk in (65536, 4096, 512, 1):
                try:
                    while True:
                        handle.write(b"\0" * chunk)
                except OSError as err:
                    assert err.errno == errno.ENOSPC

    def free(self) -> None:
        (self.folder / FILLER).unlink(missing_ok=True)
        self.size = 1 << 40

    def files(self) -> list[str]:
        """Every file left in the folder (the filler aside), relative to it."""
        return sorted(p.relative_to(self.folder).as_posix() for p in self.folder.rglob("*")
                      if p.is_file() and p.name != FILLER)  # fmt: skip

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.folder)], check=False, capture_output=True)


def _mount_tmpfs(folder: Path, size: int) -> bool:
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path, monkeypatch, request):
    """make(size): a SmallDisk, a real tmpfs where one can be mounted (emulated with `mount=False`)."""
    made: list[SmallDisk] = []

    def make(size: int, mount: bool = True) -> SmallDisk:
        folder = tmp_path / f"disk{len(made)}"
        folder.mkdir()
        made.append(SmallDisk(folder, size, monkeypatch, mount))
        return made[-1]

    yield make
    for disk in made:
        disk.unmount()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> str:
    """16 images, scored against themselves: a feature state of 16 x (2048 + 1008 + 2048) float32 = 327 KB."""
    folder = tmp_path_factory.mktemp("sixteen") / "images"
    make_image_set(folder, 16, seed=3)
    return str(folder)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def _score(images: str, weights: str, cache: Path, *extra: object):
    args = ["score", images, "--metrics", "kid,pr", "-r", images, "--kid-subset-size", "8", "--inception-weights",
            weights, "--cache-dir", str(cache), "--workers", "0", *map(str, extra)]  # fmt: skip
    return CliRunner().invoke(main, args)


def _last_line(text: str) -> str:
    """The last line, after any progress bar's carriage returns."""
    return text.rstrip("\n").rsplit("\n", 1)[-1].rsplit("\r", 1)[-1]


# -- score: results and feature state --------------------------------------------------------------------------


@pytest.mark.parametrize("mount", [True, False], ids=["tmpfs", "emulated"])
def test_a_state_too_big_for_the_disk_still_writes_the_results(images, inception_weights, cache, small_disk, mount):
    disk = small_disk(256 * 1024, mount=mount)
    out = disk.folder / "r.json"
    result = _score(images, inception_weights, cache, "-o", out)
    assert result.exit_code == 2, result.output
    assert _last_line(result.stderr) == (
        f"error: cannot write {disk.folder}/r.state.npz: {ENOSPC}; the results were written to {out} without it "
        "(free space and score again to keep it)"
    )
    assert "Traceback" not in result.output and "internal error" not in result.output
    assert "KID" in result.stdout  # the table is still shown
    doc = json.loads(out.read_text())
    assert doc["cells"][0]["metrics"]["kid"]["value"] is not None
    assert doc["state"]["path"] is None
    assert (
        doc["state"]["reason"]
        == f"the feature state could not be written: cannot write {disk.folder}/r.state.npz: {ENOSPC}"
    )
    assert disk.files() == ["r.json"]  # no state, no temp file


def test_a_full_disk_keeps_the_earlier_pair_and_saves_the_results_where_it_says(
    images, inception_weights, cache, small_disk, tmp_path
):
    disk = small_disk(256 * 1024)
    (disk.folder / "r.json").write_text("earlier results")
    (disk.folder / "r.state.npz").write_text("earlier state")
    disk.fill()
    result = _score(images, inception_weights, cache, "-o", disk.folder / "r.json")
    assert result.exit_code == 2, result.output
    line = _last_line(result.stderr)
    saved = re.fullmatch(
        rf"error: cannot write {disk.folder}/r\.json: {re.escape(ENOSPC)}; the results were saved to (\S+)", line
    )
    assert saved, line
    doc = json.loads(Path(saved[1]).read_text())
    assert doc["cells"][0]["metrics"]["kid"]["value"] is not None
    assert doc["state"]["path"] is None and "ENOSPC" in doc["state"]["reason"]  # it names no state file
    assert (disk.folder / "r.json").read_text() == "earlier results"
    assert (disk.folder / "r.state.npz").read_text() == "earlier state"
    assert disk.files() == ["r.json", "r.state.npz"]


def test_results_that_cannot_be_written_leave_the_state_unreplaced(
    images, inception_weights, cache, tmp_path, monkeypatch
):
    """The state goes in only with its results: results failing after the state was written keep the old pair."""
    import sdeval.results.document

    real = sdeval.results.document.write_json

    def results_fail(path, obj):
        if str(path).endswith("r.json"):
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
        real(path, obj)

    monkeypatch.setattr(sdeval.results.document, "write_json", results_fail)
    (tmp_path / "r.state.npz").write_text("earlier state")
    result = _score(images, inception_weights, cache, "-o", tmp_path / "r.json")
    assert result.exit_code == 2, result.output
    line = _last_line(result.stderr)
    assert line.startswith(
        f"error: cannot write {tmp_path}/r.json: {os.strerror(errno.EDQUOT)} (EDQUOT); the results were saved to "
    )
    doc = json.loads(Path(line.rsplit(" ", 1)[1]).read_text())
    assert doc["state"] == {
        "path": None,
        "reason": f"the results could not be written to {tmp_path}/r.json, so their feature state was not kept",
    }
    assert (tmp_path / "r.state.npz").read_text() == "earlier state"
    assert not list(tmp_path.glob(".r.*"))  # no temp file of either


def test_a_part_on_a_full_disk_leaves_the_earlier_part(images, inception_weights, cache, small_disk):
    disk = small_disk(128 * 1024)
    (disk.folder / "p0.json").write_text("earlier part")
    (disk.folder / "p0.npz").write_text("earlier arrays")
    result = _score(images, inception_weights, cache, "--shard", "0/2", "-o", disk.folder / "p0.json")
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == f"error: cannot write {disk.folder}/p0.npz: {ENOSPC}"
    assert (disk.folder / "p0.json").read_text() == "earlier part"
    assert (disk.folder / "p0.npz").read_text() == "earlier arrays"
    assert disk.files() == ["p0.json", "p0.npz"]


def test_a_reference_on_a_full_disk_is_one_line_and_no_file(images, inception_weights, cache, small_disk):
    disk = small_disk(64 * 1024)
    result = CliRunner().invoke(main, ["reference", "build", images, "-o", str(disk.folder / "ref.npz"),
                                       "--inception-weights", inception_weights, "--cache-dir", str(cache),
                                       "--workers", "0"])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert _last_line(result.stderr) == f"error: cannot write {disk.folder}/ref.npz: {ENOSPC}"
    assert disk.files() == []


def test_a_report_on_a_full_disk_is_one_line(images, inception_weights, cache, small_disk, tmp_path):
    results = tmp_path / "r.json"
    assert _score(images, inception_weights, cache, "-o", results).exit_code == 0
    disk = small_disk(64 * 1024)
    disk.fill()
    result = CliRunner().invoke(main, ["report", str(results), "-o", str(disk.folder / "report"), "--quiet"])
    assert result.exit_code == 2, result.output
    line = _last_line(result.stderr)
    assert re.fullmatch(rf"error: cannot write {disk.folder}/report/\S+: {re.escape(ENOSPC)}", line), line
    assert [f for f in disk.files() if f.endswith((".tmp", ".part"))] == []


# -- generate ----------------------------------------------------------------------------------------------------


def test_generation_on_a_disk_that_fills_keeps_its_images_and_resumes(tmp_path, small_disk, sdeval_cache, monkeypatch):
    from sdeval.generate import runner as runner_mod

    disk = small_disk(1024 * 1024)
    out = disk.folder / "out"
    config = write_config(tmp_path, output_dir=str(out))  # 3 prompts x 2 seeds, batches of 2
    real = runner_mod.generate_batch
    calls = {"n": 0}

    def fills_up(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # the first 4 images and their rows are on disk: now it is full
            shards = out / ".sdeval" / "shards"
            deadline = time.monotonic() + 60
            while sum(len(p.read_text().splitlines()) for p in shards.glob("*.jsonl")) < 4:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            disk.fill()
        return real(*args, **kwargs)

    monkeypatch.setattr(runner_mod, "generate_batch", fills_up)
    result = CliRunner().invoke(main, ["generate", str(config), "--quiet"])
    assert result.exit_code == 2, result.output
    line = _last_line(result.stderr)
    pattern = (rf"error: cannot write {out}/\S+\.png: {re.escape(ENOSPC)}; 4 of 6 images are kept in {out}; "
               rf"to resume once there is room, run: sdeval generate {config} --quiet")  # fmt: skip
    assert re.fullmatch(pattern, line), line
    assert len(load_images(out)) == 4
    assert [f for f in disk.files() if f.endswith(".tmp")] == []  # no half-written image
    disk.free()
    monkeypatch.setattr(runner_mod, "generate_batch", real)
    resumed = CliRunner().invoke(main, ["generate", str(config), "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stdout.startswith("generated 2, skipped 4 (already done) of 6")
    assert sorted(r["file"] for r in manifest_rows(out)) == sorted(load_images(out)) and len(load_images(out)) == 6


# -- a damaged feature cache ----------------------------------------------------------------------------------------


def _damage(path: Path, offset: int) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(b"\xff" * 64)


def test_a_cache_damaged_in_the_middle_is_named_and_the_run_goes_on(images, inception_weights, tmp_path):
    cache = tmp_path / "cache"
    first = _score(images, inception_weights, cache, "-o", tmp_path / "first.json")
    assert first.exit_code == 0, first.output
    db = cache / "features.sqlite3"
    _damage(db, 4096)  # a b-tree page's header: `database disk image is malformed`
    damaged = db.read_bytes()
    again = _score(images, inception_weights, cache, "-o", tmp_path / "again.json")
    assert again.exit_code == 0, again.output
    warnings = [line for line in again.stderr.splitlines() if line.startswith("warning: feature cache")]
    assert warnings == [
        f"warning: feature cache {db} is damaged (database disk image is malformed); the run goes on without it, "
        "computing every feature. Delete it (or move it aside) to start a new one, or run with --no-cache"
    ]
    before, after = (json.loads((tmp_path / n).read_text()) for n in ("first.json", "again.json"))
    assert after["images"]["n_computed"] == 16  # every feature computed again
    assert after["cells"][0]["metrics"] == before["cells"][0]["metrics"]
    assert db.read_bytes() == damaged  # left as it was, for a look


def test_a_file_that_is_not_a_database_is_treated_the_same(tmp_path, capsys):
    (tmp_path / "features.sqlite3").write_bytes(b"garbage" * 100)
    cache = FeatureCache(tmp_path)
    cache.put_many([("h", {"pool": np.ones(4, np.float32)})], "key")
    assert cache.get_many(["h"], "key") == {}
    cache.close()
    err = capsys.readouterr().err
    assert f"warning: feature cache {tmp_path}/features.sqlite3 is damaged (file is not a database)" in err
    assert (tmp_path / "features.sqlite3").read_bytes() == b"garbage" * 100


def test_a_damaged_value_is_named_and_not_used(tmp_path, capsys):
    cache = FeatureCache(tmp_path)
    cache.put_many([("a", {"pool": np.ones(4, np.float32)}), ("b", {"pool": np.zeros(4, np.float32)})], "key")
    cache.close()
    db = sqlite3.connect(tmp_path / "features.sqlite3")
    with db:
        db.execute("UPDATE features SET value = substr(value, 1, 20) WHERE content_hash = 'b'")  # cut short
    db.close()
    cache = FeatureCache(tmp_path)
    assert cache.get_many(["a", "b"], "key") == {}
    assert "is damaged (a stored value is corrupt:" in capsys.readouterr().err
    assert FeatureCache(tmp_path).get_many(["a"], "key") == {}  # the rest of this process does without it
    assert capsys.readouterr().err == ""  # said once


def test_a_full_cache_stops_storing_and_the_run_goes_on(tmp_path, capsys):
    cache = FeatureCache(tmp_path)
    cache._db.execute("PRAGMA max_page_count = 3")  # SQLite's own SQLITE_FULL, as on a full disk
    big = {"pool": np.ones(4096, np.float32)}
    cache.put_many([("a", big)], "key")
    cache.put_many([("b", big)], "key")
    assert cache.get_many(["a", "b"], "key") == {}
    err = capsys.readouterr().err
    assert err == (f"warning: feature cache {tmp_path}/features.sqlite3: cannot store new features (database or disk "
                   "is full); the run goes on without storing\n")  # fmt: skip


def test_any_other_cache_failure_is_one_line_with_the_fix(tmp_path):
    from sdeval.core.errors import SdevalError

    cache = FeatureCache(tmp_path)
    cache._db.execute("PRAGMA query_only = 1")  # `attempt to write a readonly database`
    with pytest.raises(SdevalError, match=r"features\.sqlite3: attempt to write a readonly database; use another "
                       r"--cache-dir, or run with --no-cache"):  # fmt: skip
        cache.put_many([("a", {"pool": np.ones(4, np.float32)})], "key")


def test_the_writer_counts_only_images_that_reached_the_disk(tmp_path, monkeypatch):
    from PIL import Image

    from sdeval.core.errors import OutputError
    from sdeval.generate import writer as writer_mod

    real = writer_mod.write_png
    lock, gate = threading.Lock(), threading.Event()
    count = {"n": 0}

    def second_fails(path, *args, **kwargs):
        gate.wait(30)  # no write ends before all are queued: submit() re-raises a failure it finds done
        with lock:
            count["n"] += 1
            n = count["n"]
        if n == 2:
            raise OutputError(path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
        real(path, *args, **kwargs)

    monkeypatch.setattr(writer_mod, "write_png", second_fails)
    writer = writer_mod.ImageWriter(tmp_path, writer_mod.ManifestShard.for_rank(tmp_path, 0, 1), workers=1)
    for i in range(3):
        writer.submit(f"{i}.png", Image.new("RGB", (4, 4)), {"prompt_id": str(i)})
    gate.set()
    with pytest.raises(OutputError, match="ENOSPC"):
        writer.close()
    assert writer.written == 2 and sorted(p.name for p in tmp_path.glob("*.png")) == ["0.png", "2.png"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_standard_output_on_a_full_disk_is_one_line_and_exit_2():
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "sdeval", "metrics"], stdout=full, stderr=subprocess.PIPE,
                              text=True, timeout=120)  # fmt: skip
    assert (done.returncode, done.stderr) == (2, f"error: cannot write standard output: {ENOSPC}\n")
