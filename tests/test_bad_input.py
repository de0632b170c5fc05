"""docs/bad-input.md stays true: every row of its tables is run here, and its text and exit code are checked."""

from __future__ import annotations

import errno
import os
import re
import shutil
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from sdeval.cli import main
from sdeval.score.demo import make_image_set

DOC = Path(__file__).parents[1] / "docs" / "bad-input.md"
ROW = re.compile(r"^\| `(?P<case>[a-z0-9-]+)` \| (?P<input>.+?) \| (?P<answer>.+?) \| (?P<exit>\d+) \|$")


def _documented() -> dict[str, tuple[str, int]]:
    """{case: (the text in backticks of its answer, exit code)} from the doc's tables."""
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            quoted = re.findall(r"`([^`]+)`", match["answer"])
            assert quoted, f"docs/bad-input.md: case {match['case']} quotes no text to check"
            rows[match["case"]] = (quoted[-1], int(match["exit"]))
    return rows


class World:
    """Folders and files the cases are made of, built once per module."""

    def __init__(self, root: Path, weights: str, clip_name: str, clip_weights: str) -> None:
        self.root = root
        self.weights = weights
        self.clip = ["--clip-model", clip_name, "--clip-pretrained", clip_weights]
        self.cache = root / "cache"
        self.good = root / "good"
        make_image_set(self.good, 6, seed=5, size=32)
        self.n = 0

    def folder(self, extra: Callable[[Path], None] | None = None) -> Path:
        """A fresh copy of the 6 good images, plus whatever `extra` adds."""
        self.n += 1
        folder = self.root / f"case{self.n}"
        shutil.copytree(self.good, folder)
        if extra is not None:
            extra(folder)
        return folder

    def run(self, *args: object) -> tuple[int, str]:
        result = CliRunner().invoke(main, [str(a) for a in args])
        return result.exit_code, result.output

    def score(self, images: Path, *extra: object, metrics: str = "kid") -> tuple[int, str]:
        out = self.root / f"results{self.n}.json"
        code, output = self.run(
            "score", images, "--metrics", metrics, "--inception-weights", self.weights, "--cache-dir", self.cache,
            "--workers", 0, "-o", out, *extra,
        )  # fmt: skip
        return code, output + (out.read_text() if out.exists() else "")

    def score_kid(self, images: Path, *extra: object) -> tuple[int, str]:
        return self.score(images, "-r", self.good, "--kid-subset-size", 4, *extra)

    def reference(self, name: str, *extra: object) -> Path:
        out = self.root / f"{name}.npz"
        if not out.exists():
            code, output = self.run("reference", "build", self.good, "-o", out, "--inception-weights", self.weights,
                                    "--cache-dir", self.cache, "--workers", 0, *extra)  # fmt: skip
            assert code == 0, output
        return out

    def manifest(self, name: str, data: bytes) -> Path:
        path = self.root / name
        path.write_bytes(data)
        return path

    def score_on_a_full_disk(self) -> tuple[int, str]:
        """The feature state's write fails with ENOSPC (where the disk fills up, it is the big file)."""
        from unittest import mock

        full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        with mock.patch("sdeval.results.document.sync", side_effect=full):
            return self.score_kid(self.good)

    def score_with_cache(self, damage: Callable[[Path], None]) -> tuple[int, str]:
        """Score with a cache of its own, made by a first run and then damaged by `damage(the cache file)`."""
        self.n += 1
        cache = self.root / f"cache-{self.n}"
        code, output = self.score_kid(self.good, "--cache-dir", cache)
        assert code == 0, output
        damage(cache / "features.sqlite3")
        return self.score_kid(self.good, "--cache-dir", cache)

    def score_prompts(self, manifest: Path) -> tuple[int, str]:
        return self.score(self.good, "--prompts", manifest, *self.clip, metrics="clip")

    def generate(self, config: str, suite: str = '{"id": "p1", "prompt": "a red cube"}\n') -> tuple[int, str]:
        self.n += 1
        folder = self.root / f"gen{self.n}"
        folder.mkdir()
        (folder / "prompts.jsonl").write_text(suite)
        (folder / "a_file").write_text("")
        (folder / "run.yaml").write_text(config)
        return self.run("generate", folder / "run.yaml")


def _png_claiming(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header claims another size (the bomb guard must refuse it before decoding)."""
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _odd_modes(folder: Path) -> None:
    gray16 = (np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 60).astype(np.uint16)
    Image.fromarray(gray16).save(folder / "gray16.png")
    Image.new("RGB", (32, 32), (200, 30, 30)).convert("P").save(folder / "palette.png")
    Image.new("RGBA", (32, 32), (10, 200, 30, 128)).save(folder / "rgba.png")
    Image.new("CMYK", (32, 32), (10, 200, 30, 5)).save(folder / "cmyk.jpg")
    Image.new("1", (32, 32), 1).save(folder / "bilevel.png")


def _overwrite_a_page(path: Path) -> None:
    with open(path, "r+b") as handle:
        handle.seek(4096)  # the header of the database's second page
        handle.write(b"\xff" * 64)


def _truncated(folder: Path) -> None:
    data = (folder / "img_000.png").read_bytes()
    (folder / "cut.png").write_bytes(data[: len(data) // 2])


CASES: dict[str, Callable[[World], tuple[int, str]]] = {
    # images
    "empty-folder": lambda w: w.score_kid(w.folder(lambda f: [p.unlink() for p in f.glob("*.png")])),
    "nothing-decodable": lambda w: w.score_kid(
        w.folder(lambda f: ([p.unlink() for p in f.glob("*.png")], (f / "bad.png").write_text("no image")))
    ),
    "empty-file": lambda w: w.score_kid(w.folder(lambda f: (f / "empty.png").write_bytes(b""))),
    "truncated": lambda w: w.score_kid(w.folder(_truncated)),
    "not-an-image": lambda w: w.score_kid(w.folder(lambda f: (f / "notes.png").write_text("hello"))),
    "huge": lambda w: w.score_kid(w.folder(lambda f: (f / "bomb.png").write_bytes(_png_claiming(100000, 100000)))),
    "float-mode": lambda w: w.score_kid(
        w.folder(lambda f: Image.fromarray(np.zeros((8, 8), np.float32), mode="F").save(f / "float.tiff"))
    ),
    "odd-modes": lambda w: w.score_kid(w.folder(_odd_modes)),
    "symlink-loop": lambda w: w.score_kid(w.folder(lambda f: (f / "loop").symlink_to(f, target_is_directory=True))),
    # options and metrics
    "unknown-metric": lambda w: w.score(w.good, metrics="kid,bogus"),
    "no-reference": lambda w: w.score(w.good),
    "bad-device": lambda w: w.score_kid(w.good, "--device", "tpu"),
    "missing-weights": lambda w: w.run("score", w.good, "--metrics", "is", "--inception-weights", w.root / "none.pth"),
    "too-few-for-is": lambda w: w.score(w.good, metrics="is"),
    "kid-subset-too-large": lambda w: w.score(w.good, "-r", w.good, "--kid-subset-size", 50),
    "output-under-a-file": lambda w: w.run("score", w.good, "--metrics", "is", "-o", w.weights + "/r.json"),
    "output-unwritable": lambda w: w.run("score", w.good, "--metrics", "is", "-o", "/proc/sdeval/r.json"),
    "no-such-folder": lambda w: w.run("score", "/no/such/folder"),
    "bad-choice": lambda w: w.run("score", w.good, "--judge", "oracle"),
    "adherence-no-suite": lambda w: w.score(w.good, "--judge", "shapes", metrics="adherence"),
    # prompt manifests
    "manifest-missing": lambda w: w.score_prompts(w.root / "no-such-manifest.jsonl"),
    "manifest-utf16": lambda w: w.score_prompts(
        w.manifest("prompts16.csv", "file,prompt\nimg_000.png,a red cube\n".encode("utf-16"))
    ),
    "manifest-no-columns": lambda w: w.score_prompts(w.manifest("cols.csv", b"name,caption\nimg_000.png,a cube\n")),
    "manifest-bad-line": lambda w: w.score_prompts(
        w.manifest("prompts.jsonl", b'{"file": "img_000.png", "prompt": "a red cube"}\nnot json\n')
    ),
    "manifest-empty": lambda w: w.score_prompts(w.manifest("empty.jsonl", b"")),
    # prompt suites
    "suite-unknown-tag": lambda w: w.run(
        "suites",
        "validate",
        w.manifest(
            "vocab.jsonl", b'{"id": "a", "prompt": "x", "spec": {"tag": "colours", "include": [{"class": "cat"}]}}\n'
        ),
    ),
    "suite-impossible-spec": lambda w: w.run(
        "suites",
        "validate",
        w.manifest(
            "impossible.jsonl",
            b'{"id": "a", "prompt": "x", "tag": "counting", "include": [{"class": "clock", "count": 2}], '
            b'"exclude": [{"class": "clock", "count": 2}]}\n',
        ),
    ),
    "suite-unknown-colour": lambda w: w.generate(
        "checkpoints: [{name: s, path: shapes}]\nsuite: prompts.jsonl\noutput_dir: out\ndevice: cpu\n",
        '{"id": "a", "prompt": "x", "spec": {"tag": "colors", "include": [{"class": "cat", "color": "turquoise"}]}}\n',
    ),
    # references
    "reference-garbage": lambda w: w.score(w.good, "-r", w.manifest("garbage.npz", b"not a zip file")),
    "reference-other-protocol": lambda w: w.score(w.good, "-r", w.reference("clean", "--preprocess", "clean")),
    "merge-same-part-twice": lambda w: w.run(
        "reference", "merge", w.reference("legacy"), w.reference("legacy"), "-o", w.root / "merged.npz"
    ),
    "merge-other-protocol": lambda w: w.run(
        "reference",
        "merge",
        w.reference("legacy"),
        w.reference("clean", "--preprocess", "clean"),
        "-o",
        w.root / "m.npz",
    ),
    # outputs and the feature cache
    "output-disk-full": lambda w: w.score_on_a_full_disk(),
    "cache-not-a-database": lambda w: w.score_with_cache(lambda db: db.write_bytes(b"garbage" * 100)),
    "cache-malformed": lambda w: w.score_with_cache(_overwrite_a_page),
    # generation configs
    "config-yaml-syntax": lambda w: w.generate("checkpoints: [{name: tiny, path: tiny-random}]\nsuite: [oops\n"),
    "config-unknown-key": lambda w: w.generate(
        "checkpoints: [{name: tiny, path: tiny-random}]\nsuite: prompts.jsonl\noutput_dir: out\nseed_per_prompt: 2\n"
    ),
    "config-output-under-a-file": lambda w: w.generate(
        "checkpoints: [{name: tiny, path: tiny-random}]\nsuite: prompts.jsonl\noutput_dir: a_file/out\n"
    ),
    "config-hub-offline": lambda w: w.generate(
        "checkpoints: [{name: hub, path: someone-offline/not-cached-model}]\nsuite: prompts.jsonl\n"
        "output_dir: out\ndevice: cpu\n"
    ),
}


def test_every_documented_case_is_tested_and_every_test_documented():
    assert set(_documented()) == set(CASES)


@pytest.fixture(scope="module")
def world(tmp_path_factory, inception_weights, tiny_name, tiny_clip_weights) -> World:
    return World(tmp_path_factory.mktemp("bad-input"), inception_weights, tiny_name, tiny_clip_weights[0])


@pytest.mark.parametrize("case", sorted(_documented()))
def test_documented_answer_and_exit_code(world: World, case: str, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    text, code = _documented()[case]
    got_code, output = CASES[case](world)
    assert "Traceback" not in output
    assert text in output, output[-3000:]
    assert got_code == code, output[-3000:]
