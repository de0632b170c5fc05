"""A metric declares its inputs (sdeval.features.inputs): a feature input registered by a package that sdeval has never
heard of, with one option, and a metric on it, work through every stage with no other line changed: `score` (its
option in `--help`, its protocol block, `--ci`), `--shard` + `merge`, a torchrun launch, the Evaluator and
`score_folder`, `reference build`, the table, report and gate, and `bench` with the option as a config key.

The package (`meancolour_plugin`: a per-image mean colour, each channel raised to `--meancolour-gamma` first, and
`fd_meancolour`, the Fréchet distance of those 3-d rows to the reference's) is a module and a `*.dist-info` folder
on sys.path, as in test_plugins.py; launched processes get it on PYTHONPATH."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from sdeval.cli import main
from sdeval.score.demo import make_image_set

PLUGIN = '''
from __future__ import annotations

import numpy as np
import torch

from sdeval.features.inputs import FeatureInput, InputOption
from sdeval.metrics.registry import Direction, Jackknife, MetricOutput, MetricSkip, MetricSpec, Need, ResultKey


class MeanColour:
    """Each image's mean R, G, B in [0, 1], each value raised to `gamma` first."""

    def __init__(self, gamma: float) -> None:
        self.gamma = gamma
        self.cache_key = f"meancolour-gamma{gamma!r}"

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((rgb / 255.0) ** self.gamma).mean(axis=(0, 1)))

    def extract(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"rgb_mean": batch.float()}

    def protocol(self) -> dict:
        return {"extractor": "meancolour", "gamma": self.gamma}


INPUT = FeatureInput(
    name="meancolour",
    label="mean colour",
    feature="rgb_mean",
    load=lambda values, device: MeanColour(values["meancolour_gamma"]),
    options=(InputOption("meancolour_gamma", "exponent applied to each channel before the mean", default=1.0,
                         kind=float, minimum=0.1, metavar="GAMMA"),),
    stores="the mean colours fd_meancolour needs",
)


def _side(x, reference, blocks, k, seed):
    from sdeval.metrics.corpus import FidSide

    return FidSide(x, reference, blocks, k, seed)


def _fd(cell):
    from sdeval.metrics.fid import FrechetState, fid_from_features

    rows, ref = cell.features.get("meancolour"), cell.reference.features.get("meancolour")
    if rows is None or ref is None:
        raise MetricSkip("needs mean colours")
    value = fid_from_features(rows, FrechetState.from_features(ref), reference_features=ref)
    return MetricOutput({"fd_meancolour": {"value": value, "n": len(rows), "n_reference": len(ref)}})


FD_MEANCOLOUR = MetricSpec(
    name="fd_meancolour",
    description="Frechet distance of the images' mean colours to the reference's.",
    results=(ResultKey("fd_meancolour", "FD mean colour", Direction.LOWER, (0.0, None),
                       Jackknife(("meancolour", "reference_meancolour"), _side)),),
    needs=frozenset({Need.REFERENCE}),
    inputs=("meancolour",),
    compute=_fd,
)
'''
ENTRY_POINTS = """
[sdeval.inputs]
meancolour = meancolour_plugin:INPUT
[sdeval.metrics]
fd_meancolour = meancolour_plugin:FD_MEANCOLOUR
"""
GAMMA = 2.0


def _run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module", autouse=True)
def site(tmp_path_factory) -> Iterator[Path]:
    """The plugin package as an installed distribution would leave it (module + dist-info) on sys.path while this
    module's tests run; gone afterwards (the registries read their entry points again when sys.path changes)."""
    folder = tmp_path_factory.mktemp("site")
    (folder / "meancolour_plugin.py").write_text(textwrap.dedent(PLUGIN), encoding="utf-8")
    info = folder / "meancolour_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: meancolour-plugin\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(ENTRY_POINTS, encoding="utf-8")
    sys.path.insert(0, str(folder))
    importlib.invalidate_caches()
    yield folder
    sys.path.remove(str(folder))
    sys.modules.pop("meancolour_plugin", None)
    importlib.invalidate_caches()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("meancolour")
    make_image_set(root / "gen", 24, seed=1, size=32)
    make_image_set(root / "ref", 20, seed=2, size=32, style="spots")
    return {"root": root, "gen": root / "gen", "ref": root / "ref"}


@pytest.fixture(scope="module")
def reference(data, inception_weights) -> Path:
    """`reference build --meancolour-gamma 2` (the option implies --meancolour)."""
    out = data["root"] / "ref.npz"
    built = _run("reference", "build", data["ref"], "-o", out, "--meancolour-gamma", GAMMA, "--inception-weights",
                 inception_weights, "--no-cache", "--workers", 0)  # fmt: skip
    assert built.exit_code == 0, built.output
    return out


def _mean_colours(folder: Path, gamma: float = GAMMA) -> np.ndarray:
    paths = sorted(folder.glob("*.png"))
    return np.stack([((np.asarray(Image.open(p).convert("RGB")) / 255.0) ** gamma).mean(axis=(0, 1)) for p in paths])


def _frechet(a: np.ndarray, b: np.ndarray) -> float:
    from scipy import linalg

    a, b = a.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(s1 @ s2).real
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * root))


def _score(data, reference, *extra: object, out: Path | None = None) -> dict:
    out = out or data["root"] / "results.json"
    result = _run("score", data["gen"], "--metrics", "fd_meancolour", "-r", reference, "--meancolour-gamma", GAMMA,
                  "--no-cache", "--workers", 0, "-o", out, *extra)  # fmt: skip
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())


def _help(*command: str) -> str:
    return " ".join(_run(*command, "--help").output.split())  # lines joined as click wrapped them


def test_its_options_are_in_the_help_and_checked() -> None:
    score = _help("score")
    assert "--meancolour-gamma GAMMA exponent applied to each channel before the mean [default: 1.0]." in score
    jackknifed = (
        "fid, kid, is, recall, cmmd, fd_dinov2, fd_clip, fid_inf, vendi_all, vendi_inception_all, density, coverage, "
        "sfid, fd_meancolour"
    )
    assert f"block jackknife for {jackknifed};" in score  # --ci names it
    built = _help("reference", "build")
    assert "--meancolour also store the mean colours fd_meancolour needs (same decode pass)." in built
    assert "(implies --meancolour) [default: 1.0]." in built
    assert "needs: meancolour, reference" in _run("metrics").output
    bad = _run("score", ".", "--metrics", "fd_meancolour", "--meancolour-gamma", "0")
    assert bad.exit_code == 2 and "--meancolour-gamma" in bad.output


def test_reference_build_stores_its_rows(reference, data) -> None:
    from sdeval.reference.files import load_reference

    ref = load_reference(reference)
    (key,) = [k for k, p in ref.protocols.items() if p.get("extractor") == "meancolour"]
    assert ref.protocols[key]["gamma"] == GAMMA
    np.testing.assert_allclose(ref.features[key]["rgb_mean"], _mean_colours(data["ref"]), rtol=1e-6)


def test_score_equals_the_numpy_computation_with_its_protocol_and_interval(reference, data) -> None:
    doc = _score(data, reference, "--ci")
    cell = doc["cells"][0]
    entry = cell["metrics"]["fd_meancolour"]
    expected = _frechet(_mean_colours(data["gen"]), _mean_colours(data["ref"]))
    assert entry["value"] == pytest.approx(expected, rel=1e-5) and entry["n"] == 24 and entry["n_reference"] == 20
    assert cell["protocol"]["meancolour"] == {"extractor": "meancolour", "gamma": GAMMA}
    assert "jackknife" in entry["interval"]["method"] and entry["interval"]["low"] <= entry["value"]
    with np.load(data["root"] / "results.state.npz") as state:  # the rows are kept for intervals later
        assert state["meancolour"].shape == (24, 3) and state["reference_meancolour"].shape == (20, 3)
    # A reference made with another gamma is refused, naming the way out.
    other = _run("score", data["gen"], "--metrics", "fd_meancolour", "-r", reference, "--no-cache", "--workers", 0)
    assert other.exit_code == 2 and "gamma" in other.output, other.output


def test_shards_merge_into_the_whole(reference, data, tmp_path) -> None:
    whole = _score(data, reference)
    for index in (0, 1):
        shard = ["--shard", f"{index}/2", "-o", tmp_path / f"p{index}.json"]
        part = _run("score", data["gen"], "--metrics", "fd_meancolour", "-r", reference, "--meancolour-gamma", GAMMA,
                    "--no-cache", "--workers", 0, *shard)  # fmt: skip
        assert part.exit_code == 0, part.output
    merged = _run("merge", tmp_path / "p1.json", tmp_path / "p0.json", "-o", tmp_path / "merged.json")
    assert merged.exit_code == 0, merged.output
    cell = json.loads((tmp_path / "merged.json").read_text())["cells"][0]
    assert cell["metrics"]["fd_meancolour"] == whole["cells"][0]["metrics"]["fd_meancolour"]
    assert cell["protocol"]["meancolour"]["gamma"] == GAMMA


def test_the_evaluator_and_score_folder_take_its_option(reference, data) -> None:
    from sdeval import Evaluator, score_folder

    whole = _score(data, reference)["cells"][0]["metrics"]["fd_meancolour"]["value"]
    evaluator = Evaluator(metrics=["fd_meancolour"], reference=reference, meancolour_gamma=GAMMA, no_cache=True)
    paths = sorted(data["gen"].glob("*.png"))
    for start in range(0, len(paths), 10):
        evaluator.update([np.asarray(Image.open(p).convert("RGB")) for p in paths[start : start + 10]])
    assert evaluator.compute()["cells"][0]["metrics"]["fd_meancolour"]["value"] == whole
    folder = score_folder(data["gen"], reference=reference, metrics=["fd_meancolour"], meancolour_gamma=GAMMA,
                          no_cache=True, workers=0)  # fmt: skip
    assert folder["cells"][0]["metrics"]["fd_meancolour"]["value"] == whole


def test_table_report_and_gate_name_it(reference, data, tmp_path) -> None:
    out = tmp_path / "results.json"
    scored = _run("score", data["gen"], "--metrics", "fd_meancolour", "-r", reference, "--meancolour-gamma", GAMMA,
                  "--no-cache", "--workers", 0, "-o", out)  # fmt: skip
    assert "FD mean colour" in scored.output
    report = _run("report", out, "-o", tmp_path / "report", "--quiet")
    assert report.exit_code == 0, report.output
    assert "FD mean colour" in (tmp_path / "report" / "summary.md").read_text()
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {metric: fd_meancolour, max: 1000}\n")
    gate = _run("gate", out, "--rules", rules, "--json", tmp_path / "gate.json")
    assert gate.exit_code == 0, gate.output
    # Its protocol block binds it: a baseline scored with another gamma is not compared silently.
    other = tmp_path / "other.json"
    _score(data, reference, out=other)  # same gamma: comparable
    rules.write_text("rules:\n  - {metric: fd_meancolour, max_increase: 1000}\n")
    assert _run("gate", out, "--rules", rules, "--baseline", other).exit_code == 0
    doc = json.loads(other.read_text())
    doc["cells"][0]["protocol"]["meancolour"]["gamma"] = 1.0
    other.write_text(json.dumps(doc))
    mismatch = _run("gate", out, "--rules", rules, "--baseline", other)
    assert mismatch.exit_code == 2 and "meancolour" in mismatch.output, mismatch.output


def test_bench_takes_its_option_as_a_config_key(data, tmp_path) -> None:
    suite = tmp_path / "suite.jsonl"
    from sdeval.suites import load_suite

    prompts = load_suite("builtin:shapes").prompts[::12]
    suite.write_text("".join(json.dumps(p.to_json()) + "\n" for p in prompts))
    config = {
        "checkpoints": [{"name": "clean", "path": "shapes"}],
        "suite": str(suite),
        "seeds_per_prompt": 1,
        "settings": {"width": 64, "height": 64},
        "device": "cpu",
        "output_dir": "out",
        "reference": str(data["ref"]),
        "metrics": ["fd_meancolour"],
        "score": {"meancolour_gamma": GAMMA, "device": "cpu", "workers": 0},
        "gate": {"rules": [{"metric": "fd_meancolour", "max": 1000}]},
    }
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(config))
    result = _run("bench", path, "--quiet")
    assert result.exit_code == 0, result.output
    cell = json.loads((tmp_path / "out" / "results.json").read_text())["cells"][0]
    assert cell["metrics"]["fd_meancolour"]["value"] is not None and cell["protocol"]["meancolour"]["gamma"] == GAMMA
    assert "fd_meancolour" in (tmp_path / "out" / "gate.json").read_text()
    config["score"]["meancolour_gamma"] = "bright"
    path.write_text(yaml.safe_dump(config))
    bad = _run("bench", path, "--quiet")
    assert bad.exit_code == 2 and "score.meancolour_gamma: expected a number >= 0.1" in bad.output, bad.output


def test_ranks_shares_of_images_and_reference_folder_merge_into_the_whole(data) -> None:
    """What each rank of a launch does, in one process: its share of the images and of the reference folder
    (prepare_part with shard (rank, 2)), gathered and merged; the fast twin of the torchrun test below."""
    from sdeval.options.score import options_from_mapping
    from sdeval.score.part import merge_parts
    from sdeval.score.prepare import prepare_part
    from sdeval.score.run import score, score_part

    values = {"meancolour_gamma": GAMMA, "no_cache": True, "workers": 0}
    options = options_from_mapping(values, images=str(data["gen"]), reference=str(data["ref"]),
                                   metrics=("fd_meancolour",), progress=False)  # fmt: skip
    parts = [prepare_part(options, (rank, 2)) for rank in range(2)]
    assert [part.reference.n for part in parts if part.reference is not None] == [10, 10]
    merged = score_part(options, merge_parts(parts)).document["cells"][0]
    single = score(options)["cells"][0]
    assert merged["metrics"]["fd_meancolour"] == single["metrics"]["fd_meancolour"]
    expected = _frechet(_mean_colours(data["gen"]), _mean_colours(data["ref"]))
    assert single["metrics"]["fd_meancolour"]["value"] == pytest.approx(expected, rel=1e-5)


LAUNCH = "from sdeval.cli import main\nmain(prog_name='sdeval')\n"


@pytest.mark.slow  # about 20 s: two processes start torch; the test above is its fast twin
def test_torchrun_two_processes_score_as_one(reference, data, site, tmp_path) -> None:
    """torchrun, 2 processes, gloo on CPU: each rank extracts its share's mean colours; rank 0's results equal one
    process's. The launched processes find the plugin on PYTHONPATH, as an installed package would be found."""
    script = tmp_path / "launch.py"
    script.write_text(LAUNCH)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), str(site)]),
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    args = [str(data["gen"]), "--metrics", "fd_meancolour", "-r", str(data["ref"]), "--meancolour-gamma", str(GAMMA),
            "--no-cache", "--workers", "0", "-o", str(tmp_path / "launched.json")]  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           "score", *args]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("results: ") == 1, proc.stdout
    launched = json.loads((tmp_path / "launched.json").read_text())["cells"][0]
    single = _score(data, data["ref"], out=tmp_path / "single.json")["cells"][0]
    assert launched["metrics"]["fd_meancolour"]["value"] == pytest.approx(
        single["metrics"]["fd_meancolour"]["value"], rel=1e-9
    )
    assert launched["protocol"]["meancolour"] == single["protocol"]["meancolour"]


# -- one extractor, several outputs; an input hosted by another's extractor (Inception and sFID are declared so) --


class _Pair:
    """An extractor with two outputs (as Inception's pool features and logits), and a third when it hosts `triple`."""

    def __init__(self, scale: float, hosted: tuple[str, ...]) -> None:
        self.scale, self.hosted = scale, hosted
        self.cache_key = f"pair-{scale}-{'+'.join(hosted)}"


def test_several_outputs_and_a_hosted_input_are_declared_and_built_once() -> None:
    from sdeval.features import inputs as feature_inputs
    from sdeval.features.inputs import FeatureInput, InputOption, Output
    from sdeval.metrics import registry
    from sdeval.metrics.registry import Direction, MetricOutput, MetricSpec, Need, ResultKey
    from sdeval.options.cli import reference_input_options
    from sdeval.score.part import reference_arrays, role_features

    built: list[_Pair] = []

    def load(values, device, hosted=()):
        built.append(_Pair(values["pair_scale"], hosted))
        return built[-1]

    pair = FeatureInput(
        name="pair", label="pair", feature="first", load=load,
        options=(InputOption("pair_scale", "scale", default=1.0, kind=float),),
        outputs=(Output("first", "pair_first", need="pair_first"), Output("second", "pair_second", reference=False)),
    )  # fmt: skip
    triple = FeatureInput(name="pair_triple", label="third", feature="third", host="pair", stores="the third rows")
    feature_inputs.register(pair)
    feature_inputs.register(triple)
    metric = registry.register(MetricSpec(
        name="pair_metric", description="reads the first output by its need and the hosted rows by name",
        results=(ResultKey("pair_metric", "pair", Direction.LOWER),), needs=frozenset({Need.REFERENCE}),
        inputs=("pair_triple",), compute=lambda cell: MetricOutput({}),
    ))  # fmt: skip
    try:
        assert pair.stored == ("pair_first",) and triple.stored == ("pair_triple",)
        assert role_features("pair") == {"first": "pair_first", "second": "pair_second"}
        assert role_features("pair_triple") == {"third": "pair_triple"}
        stored = set(reference_arrays())
        assert {"pool", "pair_first", "pair_triple"} <= stored and "pair_second" not in stored
        assert feature_inputs.serving({"pair_first"}) == ("pair",)
        assert feature_inputs.serving({Need.INCEPTION_LOGITS.value}) == ("inception",)
        assert registry.inputs_of([metric]) == ("pair_triple",)
        # The host is built once, told what it hosts; the hosted input gets its extractor.
        found = feature_inputs.build_all(["pair_triple"], {"pair_scale": 2.0}, "cpu")
        assert list(found) == ["pair", "pair_triple"] and found["pair"] is found["pair_triple"] is built[0]
        assert len(built) == 1 and built[0].scale == 2.0 and built[0].hosted == ("pair_triple",)
        alone = feature_inputs.build_all(["pair"], {}, "cpu")
        assert alone["pair"].hosted == () and alone["pair"].scale == 1.0
        # `reference build` has a flag for each input a reference may store, none for one every reference stores.
        flags = {flag for option in reference_input_options() for flag in option.opts}
        assert {"--pair", "--pair-triple", "--inception-spatial"} <= flags and "--inception" not in flags
        # Inception is declared so: its pool features stored by every reference, its logits by none.
        inception = feature_inputs.get("inception")
        assert inception.always_stored and inception.stored == ("pool",)
        assert role_features("inception") == {"pool": "pool", "logits_unbiased": "logits"}
        assert feature_inputs.get("inception_spatial").host == "inception"
        with pytest.raises(Exception, match="either its loader or the input that hosts it"):
            feature_inputs.register(FeatureInput(name="orphan", label="orphan", feature="x"))
        with pytest.raises(Exception, match="state array"):
            feature_inputs.register(FeatureInput(name="clash", label="clash", feature="x", load=load,
                                                 outputs=(Output("x", "pair_second"),)))  # fmt: skip
    finally:
        registry.unregister("pair_metric")
        for name in ("pair_triple", "pair", "orphan", "clash"):
            if name in feature_inputs.names():
                feature_inputs.unregister(name)


class _Hue:
    """Each image's mean R, G, B raised to `gamma` (no torch: a plain extractor, as the decode pass feeds it)."""

    def __init__(self, gamma: float, built: list[_Hue]) -> None:
        self.gamma = gamma
        self.cache_key = f"hue-{gamma!r}"
        built.append(self)

    def preprocess(self, rgb: np.ndarray):
        import torch

        return torch.from_numpy(((rgb / 255.0) ** self.gamma).mean(axis=(0, 1)))

    def extract(self, batch) -> dict:
        return {"rgb": batch.float()}

    def protocol(self) -> dict:
        return {"extractor": "hue", "gamma": self.gamma}


def test_an_input_that_follows_another_shares_its_model_and_records_itself_in_a_metric_block(tmp_path) -> None:
    """What the two CLIP models declare (features/clip_input.py), on inputs of a test's own: one input's default
    follows the other's option, with a warning (`choose`); equal choices share one extractor, run once; it is
    recorded inside the metric's block (`protocol_at`) with a block of its own beside it (`protocol_blocks`)."""
    from sdeval.features import inputs as feature_inputs
    from sdeval.features.inputs import Chosen, FeatureInput, InputOption
    from sdeval.metrics import registry
    from sdeval.metrics.registry import Direction, MetricOutput, MetricSpec, ResultKey
    from sdeval.score import FeatureOptions, ScoreOptions, score

    built: list[_Hue] = []

    def echo_choice(given) -> Chosen:
        gamma, warnings = given.get("echo_gamma"), ()
        if gamma is None and given.get("hue_gamma") is not None:
            gamma, warnings = given["hue_gamma"], ("echo follows --hue-gamma",)
        gamma = 1.0 if gamma is None else gamma
        return Chosen({"echo_gamma": gamma}, warnings, ("hue", gamma))

    hue = FeatureInput(
        name="hue", label="hue", feature="rgb", load=lambda values, device: _Hue(values["hue_gamma"], built),
        options=(InputOption("hue_gamma", "exponent", default=1.0, kind=float),), reference=False,
        choose=lambda given: Chosen({"hue_gamma": (g := given.get("hue_gamma", 1.0))}, model=("hue", g)),
    )  # fmt: skip
    echo = FeatureInput(
        name="echo", label="echo", feature="rgb", load=lambda values, device: _Hue(values["echo_gamma"], built),
        options=(InputOption("echo_gamma", "exponent of the echo"),), reference=False, choose=echo_choice,
        protocol_at=("hue_gap", "echo"), protocol_blocks=lambda options: {"echo_note": {"seed": options.seed}},
    )  # fmt: skip

    def gap(cell) -> MetricOutput:
        rows, echoed = cell.features["hue"], cell.features["echo"]
        return MetricOutput({"hue_gap": {"value": float(np.abs(rows - echoed).max()), "n": len(rows)}})

    metric = MetricSpec(
        name="hue_gap", description="the largest difference between the two inputs' rows",
        results=(ResultKey("hue_gap", "hue gap", Direction.LOWER, (0.0, None)),), needs=frozenset(),
        inputs=("hue", "echo"), compute=gap, protocol=lambda params, data: {"hue_gap": {"rule": "max abs"}},
    )  # fmt: skip
    make_image_set(tmp_path / "images", 6, seed=2, size=16)
    feature_inputs.register(hue)
    feature_inputs.register(echo)
    registry.register(metric)
    try:

        def run(**given: float) -> dict:
            built.clear()
            options = ScoreOptions(str(tmp_path / "images"), metrics=("hue_gap",), inputs=given,
                                   features=FeatureOptions(workers=0, progress=False, cache_dir=None))  # fmt: skip
            return score(options)

        shared = run(hue_gamma=2.0)
        assert len(built) == 1 and built[0].gamma == 2.0  # one extractor, run once, for both inputs
        assert "echo follows --hue-gamma" in shared["warnings"]
        protocol = shared["cells"][0]["protocol"]
        assert protocol["hue"] == protocol["hue_gap"]["echo"] == {"extractor": "hue", "gamma": 2.0}
        assert protocol["hue_gap"]["rule"] == "max abs" and protocol["echo_note"] == {"seed": ScoreOptions("x").seed}
        assert "echo" not in protocol
        assert shared["cells"][0]["metrics"]["hue_gap"]["value"] == 0.0

        apart = run(hue_gamma=2.0, echo_gamma=3.0)  # its own option given: its own extractor, no warning
        assert sorted(e.gamma for e in built) == [2.0, 3.0]
        assert not any("echo follows" in w for w in apart["warnings"])
        assert apart["cells"][0]["protocol"]["hue_gap"]["echo"]["gamma"] == 3.0
        assert apart["cells"][0]["metrics"]["hue_gap"]["value"] > 0.0
    finally:
        registry.unregister("hue_gap")
        for name in ("echo", "hue"):
            feature_inputs.unregister(name)


def test_the_clip_models_are_declared_inputs() -> None:
    """CLIP score's and CMMD's models as feature inputs: their needs, arrays, reference flag and options."""
    from sdeval.features import inputs as feature_inputs
    from sdeval.features.clip_specs import CMMD_MODEL
    from sdeval.options.cli import reference_input_options
    from sdeval.score.part import reference_arrays, role_features

    assert feature_inputs.serving({"clip_text"}) == ("clip",) and feature_inputs.serving({"cmmd_image"}) == ("cmmd",)
    assert feature_inputs.serving({"clip_image", "cmmd_image"}, stored=True) == ("cmmd",)
    assert role_features("clip") == {"clip_image": "clip_image"} and role_features("cmmd") == {
        "clip_image": "cmmd_image"
    }
    assert "cmmd_image" in reference_arrays() and "clip_image" not in reference_arrays()
    assert feature_inputs.names()[:3] == ["inception", "clip", "cmmd"]  # the arrays' order in parts and state files
    assert set(feature_inputs.option_keys(score_field=True)) == {"clip_model", "clip_pretrained", "cmmd_model",
                                                                 "cmmd_pretrained"}  # fmt: skip
    # CMMD's default follows the --clip-* model when only that is given, with a warning; one model when equal.
    both = feature_inputs.choices(["clip", "cmmd"], {"clip_model": "ViT-B-32"})
    assert both["clip"].model == both["cmmd"].model and "CMMD uses the --clip-* model" in both["cmmd"].warnings[0]
    alone = feature_inputs.choices(["cmmd"], {})["cmmd"]
    assert alone.model == CMMD_MODEL and alone.values == {"cmmd_model": "ViT-L-14-336", "cmmd_pretrained": "openai"}
    flags = {flag for option in reference_input_options() for flag in option.opts}
    assert {"--cmmd", "--cmmd-model", "--cmmd-pretrained"} <= flags and "--clip" not in flags


def test_a_reference_keeps_the_frechet_state_and_radii_an_output_declares(data, inception_weights, tmp_path) -> None:
    """Inception's pool features are declared so (`Output.frechet`, `.knn_radii`); an input of a test's own declared
    the same way gets its named Fréchet state, with its eigen-decomposition, and its rows' k-NN radii in the file."""
    from sdeval.features import inputs as feature_inputs
    from sdeval.features.inputs import FeatureInput, Output
    from sdeval.features.options import FeatureOptions
    from sdeval.metrics.fid import FrechetState
    from sdeval.reference.build import build_reference_file
    from sdeval.reference.derived import compute_radii
    from sdeval.reference.files import load_reference

    built: list[_Hue] = []
    tone = FeatureInput(
        name="tone", label="tone", feature="rgb", load=lambda values, device: _Hue(1.0, built),
        outputs=(Output("rgb", "tone", frechet=True, knn_radii=True),),
    )  # fmt: skip
    feature_inputs.register(tone)
    try:
        out = tmp_path / "ref.npz"
        options = FeatureOptions(inception_weights=inception_weights, cache_dir=None, workers=0, progress=False)
        build_reference_file(str(data["ref"]), str(out), options, inputs=("tone",), radii_k=(3,))
        ref = load_reference(out)
        key = built[0].cache_key
        rows = ref.features[key]["rgb"]
        np.testing.assert_allclose(rows, _mean_colours(data["ref"], gamma=1.0), rtol=1e-6)
        assert ref.state_rows["tone"] == (key, "rgb") and ref.fid_state is not None  # Inception's, as always
        expected = FrechetState.from_features(rows)
        assert ref.frechet["tone"].n == expected.n == 20
        np.testing.assert_allclose(ref.frechet["tone"].sum, expected.sum, rtol=1e-12)
        np.testing.assert_allclose(ref.frechet["tone"].sum_outer, expected.sum_outer, rtol=1e-12)
        assert "tone" in ref.eigh and "pool" not in ref.eigh  # a state of at least as many images as dimensions
        (radii,) = [r for r in ref.radii if r.features == (key, "rgb")]
        np.testing.assert_array_equal(radii.radii, compute_radii(rows, (key, "rgb"), (3,))[0].radii)
        loose = Output("x", "loose", reference=False, frechet=True)  # a state of rows no reference keeps
        with pytest.raises(Exception, match="kept only of stored outputs"):
            feature_inputs.register(
                FeatureInput(name="loose", label="loose", feature="x", load=lambda v, d: None, outputs=(loose,))
            )
    finally:
        for name in ("loose", "tone"):
            if name in feature_inputs.names():
                feature_inputs.unregister(name)
