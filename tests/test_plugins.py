"""Third-party metrics (and judges, scorers, pipelines) arrive through entry points, as lm-evaluation-harness's do:
a package that declares `[sdeval.metrics] NAME = module:object` in its entry_points.txt is listed and computed
without a line of sdeval changed. The package here is a `*.dist-info` folder on sys.path, never installed."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from sdeval.cli import main
from sdeval.core.errors import SdevalError
from sdeval.core.registry import Registry
from sdeval.score.demo import make_image_set

PLUGIN = """
from sdeval.metrics.registry import Direction, MetricOutput, MetricSpec, ResultKey


def _answer(cell):
    return MetricOutput({"plugin_answer": {"value": 0.42, "n": cell.n}})


ANSWER = MetricSpec(
    name="plugin_answer",
    description="A metric that a plugin package registers: always 0.42.",
    results=(ResultKey("plugin_answer", "Plugin answer", Direction.HIGHER, (0.0, 1.0)),),
    needs=frozenset(),
    compute=_answer,
)
"""


def _install(folder: Path, monkeypatch: pytest.MonkeyPatch, module: str, entry_points: str) -> None:
    """`myplugin` as an installed distribution would leave it: the module and its dist-info folder on sys.path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "myplugin.py").write_text(textwrap.dedent(module), encoding="utf-8")
    info = folder / "myplugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: myplugin\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points), encoding="utf-8")
    monkeypatch.syspath_prepend(str(folder))
    importlib.invalidate_caches()
    monkeypatch.delitem(sys.modules, "myplugin", raising=False)  # imported afresh, and forgotten afterwards


def _run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_a_plugin_metric_is_listed_and_computed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install(tmp_path / "site", monkeypatch, PLUGIN, "[sdeval.metrics]\nplugin_answer = myplugin:ANSWER\n")
    listed = _run("metrics")
    assert listed.exit_code == 0, listed.output
    assert "plugin_answer: A metric that a plugin package registers: always 0.42." in listed.output
    assert "plugin_answer" in [spec["name"] for spec in json.loads(_run("metrics", "--json").output)]

    make_image_set(tmp_path / "images", 6, seed=1, size=32)
    out = tmp_path / "results.json"
    scored = _run("score", tmp_path / "images", "--metrics", "plugin_answer", "--no-cache", "--workers", 0, "-o", out)
    assert scored.exit_code == 0, scored.output
    assert "Plugin answer" in scored.output
    entry = json.loads(out.read_text())["cells"][0]["metrics"]["plugin_answer"]
    assert entry["value"] == 0.42 and entry["n"] == 6


def test_a_plugin_is_gone_with_its_distribution(tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        _install(tmp_path / "site", monkeypatch, PLUGIN, "[sdeval.metrics]\nplugin_answer = myplugin:ANSWER\n")
        assert "plugin_answer" in _run("metrics").output
    importlib.invalidate_caches()
    assert "plugin_answer" not in _run("metrics").output


def test_a_broken_plugin_names_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install(tmp_path / "site", monkeypatch, PLUGIN, "[sdeval.metrics]\nplugin_answer = myplugin:MISSING\n")
    result = _run("metrics")
    assert result.exit_code != 0
    assert "metric 'plugin_answer': cannot load myplugin:MISSING" in result.output


# -- the registry type itself --------------------------------------------------------------------------------


def test_lazy_entries_import_on_first_use_and_unknown_names_get_a_hint() -> None:
    seen: list[str] = []
    things: Registry[object] = Registry("thing", check=lambda name, obj: seen.append(name))
    things.register("join", "os.path:join")
    things.register("now", "datetime:datetime.now")
    assert things.names() == ["join", "now"] and seen == []  # listing imports nothing
    import os.path
    from datetime import datetime

    assert things.get("join") is os.path.join and things.get("now") == datetime.now and seen == ["join", "now"]
    with pytest.raises(SdevalError, match=r"unknown thing 'jion' \(did you mean 'join'\?\); known: join, now"):
        things.get("jion")
    with pytest.raises(ValueError, match="thing 'join' is already registered"):
        things.register("join", "os.path:split")
    things.unregister("join")
    assert things.names() == ["now"] and things.find("join") is None


def test_a_built_in_name_wins_over_a_plugin_of_that_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install(tmp_path / "site", monkeypatch, PLUGIN, "[sdeval.metrics]\nfid = myplugin:ANSWER\n")
    from sdeval.metrics import registry

    with pytest.warns(UserWarning, match="metric 'fid' is built in; the entry point is ignored"):
        assert registry.names().count("fid") == 1
    assert registry.get("fid").description.startswith("Fréchet distance")


JUDGE_PLUGIN = '''
class Lenient:
    """Passes every image."""

    name = "lenient"

    def judge(self, image, spec):
        raise NotImplementedError

    def protocol(self):
        return {"name": "lenient"}


def build(options, device):
    return Lenient()
'''


def test_a_plugin_judge_is_built_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sdeval.judges.registry import build_judge

    _install(tmp_path / "site", monkeypatch, JUDGE_PLUGIN, "[sdeval.judges]\nlenient = myplugin:build\n")
    assert build_judge("lenient").protocol() == {"name": "lenient"}
    with pytest.raises(SdevalError, match=r"--judge must be one of .*vqa, lenient, got 'lenent' \(did you mean"):
        build_judge("lenent")
    # The pre-run model check knows no models of a plugin judge (it loads its own): no lookup error, none listed.
    from sdeval.models.table import run_slots

    assert run_slots(["adherence"], ["lenient"]) == {}
    assert "detector" in run_slots(["adherence"], ["detector"])


PIPELINE_PLUGIN = """
from PIL import Image

from sdeval.generate.pipelines import Loaded


class Grey:
    unused = ("variant",)
    takes_options = False

    def parse_options(self, raw, where):
        raise AssertionError("takes none")

    def identity(self, spec):
        return "0" * 64

    def load(self, spec, dtype, options):
        render = lambda items, kind, init: [Image.new("RGB", (8, 8), (128, 128, 128)) for _ in items]
        return Loaded(pipe=None, base_scheduler=None, render=render, size=(8, 8))


GREY = Grey()
"""


def test_a_plugin_pipeline_is_a_checkpoint_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sdeval.core.errors import ConfigError
    from sdeval.generate.config import parse_config
    from sdeval.generate.pipelines import LoadOptions, checkpoint_identity, generate_batch, load_pipeline

    _install(tmp_path / "site", monkeypatch, PIPELINE_PLUGIN, "[sdeval.pipelines]\ngrey = myplugin:GREY\n")
    (tmp_path / "p.jsonl").write_text('{"id": "a", "prompt": "a photo of a circle"}\n')

    def config(**entry: object):
        data = {"checkpoints": [{"name": "g", "path": "grey", **entry}], "suite": "p.jsonl", "output_dir": "o"}
        return parse_config(data, tmp_path)

    spec = config().checkpoints[0]
    assert (spec.kind, spec.location) == ("builtin", "grey") and checkpoint_identity(spec).sha256 == "0" * 64
    loaded = load_pipeline(spec, "fp32", LoadOptions(pipeline="text2image", device="cpu"))
    assert loaded.native_size == (8, 8)
    assert [im.size for im in generate_batch(loaded, [object()], "text2image")] == [(8, 8)]
    with pytest.raises(ConfigError, match=r"checkpoints\[0\]\.options: only used with path: shapes"):
        config(options={})
    with pytest.raises(ConfigError, match=r"checkpoints\[0\]\.variant: not used by the built-in grey checkpoint"):
        config(variant="fp16")
