"""`sdeval score` with the text-image metrics, end to end through the CLI, on a tiny random open_clip model.

The model is registered by name (conftest `tiny_name`) and its weights passed as a local file, which is
also the offline path a user takes with `--clip-pretrained PATH`.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import warm_copy

import sdeval.features.extract as extract_module
import sdeval.features.inception as inception_module
from sdeval.cli import main
from sdeval.core.images import load_rgb
from sdeval.features.clip import CLIP_SCORE_MODEL, CMMD_MODEL, ClipEmbedder, ClipModelSpec, file_sha256
from sdeval.features.clip_input import choose_clip_models
from sdeval.metrics.clip_score import clip_score
from sdeval.metrics.cmmd import cmmd
from sdeval.score import FeatureOptions, ScoreOptions, score
from sdeval.score.demo import make_image_set

# 16 images: prompts 0-3 have three seeds each, 4-5 one; img_014 and img_015 have no prompt.
PROMPTS = ["a red fox in snow", "a teapot", "a city at night", "an empty room", "a lighthouse", "two cats"]
ASSIGNED = [p for p in range(4) for _ in range(3)] + [4, 5]


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _run_failing(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def prompted(tmp_path_factory) -> dict:
    """A folder with a JSONL manifest (two images unlisted, two bad lines) and one with sidecar captions."""
    root = tmp_path_factory.mktemp("prompted")
    make_image_set(root / "manifest", 16, seed=3, size=48)
    lines = [
        {"file": f"img_{i:03d}.png", "prompt": PROMPTS[p], "seed": i, "id": f"p{p}"} for i, p in enumerate(ASSIGNED)
    ]
    lines.insert(3, {"file": "img_015.png"})  # no prompt: reported, image stays without one
    lines.append({"file": "ghost.png", "prompt": "never drawn"})  # no such file: reported
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))

    make_image_set(root / "captions", 8, seed=4, size=48)
    for i in range(6):
        (root / "captions" / f"img_{i:03d}.txt").write_text(PROMPTS[i // 3] + "\n")
    return {"manifest_dir": root / "manifest", "manifest": manifest, "captions_dir": root / "captions"}


@pytest.fixture()
def no_inception(monkeypatch):
    """Fails the test if the scoring pipeline builds the Inception network."""

    def refuse(*args, **kwargs):
        raise AssertionError("Inception was built although no Inception metric was asked for")

    monkeypatch.setattr(inception_module, "build", refuse)  # the Inception input's loader (inception_input.py)


def _clip_args(tiny_name, weights):
    return ["--clip-model", tiny_name, "--clip-pretrained", weights]


def test_clip_score_from_the_cli_equals_a_direct_computation(
    tmp_path, prompted, tiny_name, tiny_clip_weights, no_inception
):
    out = tmp_path / "r.json"
    result = _run(
        "score", prompted["manifest_dir"], "--metrics", "clip,rprecision,diversity", "--prompts", prompted["manifest"],
        *_clip_args(tiny_name, tiny_clip_weights[0]), "--per-image", "--workers", 0, "--no-cache", "-o", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "CLIP score" in result.output and "no prompt img_014.png" in result.output
    doc = json.loads(out.read_text())

    embedder = ClipEmbedder.load(tiny_name, tiny_clip_weights[0])
    paths = [prompted["manifest_dir"] / f"img_{i:03d}.png" for i in range(len(ASSIGNED))]
    images = embedder.embed_images([load_rgb(p) for p in paths])
    texts = embedder.embed_texts([PROMPTS[p] for p in ASSIGNED])
    direct = clip_score(images, texts)

    clip = doc["cells"][0]["metrics"]["clip"]
    assert clip["n"] == 14
    assert clip["value"] == pytest.approx(direct.mean, abs=1e-5)
    assert clip["torchmetrics_value"] == pytest.approx(direct.torchmetrics_value, abs=1e-5)
    assert [s["path"] for s in clip["images_skipped"]] == ["img_014.png", "img_015.png"]
    assert all("not in manifest manifest.jsonl" in s["reason"] for s in clip["images_skipped"])

    prompts = doc["prompts"]
    assert prompts["source_counts"] == {"manifest": 14}
    assert (prompts["n_with_prompt"], prompts["n_distinct"], prompts["n_text_computed"]) == (14, 6, 6)
    assert prompts["missing"] == clip["images_skipped"]
    assert any(":4: skipped: missing 'prompt'" in w for w in prompts["warnings"])
    assert any("file 'ghost.png' not found" in w for w in prompts["warnings"])

    rows = doc["cells"][0]["per_image"]
    assert [row["path"] for row in rows] == [f"img_{i:03d}.png" for i in range(16)]
    for i, row in enumerate(rows[:14]):
        assert (row["prompt"], row["seed"], row["prompt_id"]) == (PROMPTS[ASSIGNED[i]], i, f"p{ASSIGNED[i]}")
        assert row["prompt_source"] == "manifest"
        assert row["clip_score"] == pytest.approx(direct.rows[i].score, abs=1e-4)
        assert row["clip_cosine"] == pytest.approx(direct.rows[i].cosine, abs=1e-6)  # nonzero even when clamped
    # The column is in every row, null where it was not computed.
    assert rows[14]["prompt"] is None and rows[14]["clip_score"] is None

    rprecision = doc["cells"][0]["metrics"]["rprecision"]
    assert (rprecision["r"], rprecision["n"], rprecision["n_prompts"]) == (6, 14, 6)
    assert rprecision["value"] == pytest.approx(np.mean([row["rprecision_hit"] for row in rows[:14]]))

    diversity = doc["cells"][0]["metrics"]["diversity"]
    assert (diversity["n_prompts"], diversity["n_prompts_skipped"], diversity["n"]) == (4, 2, 14)
    per_prompt = {row["prompt"]: row for row in doc["cells"][0]["per_prompt"]}
    assert per_prompt["a lighthouse"]["diversity"] is None and per_prompt["a teapot"]["n_images"] == 3
    means = [per_prompt[PROMPTS[p]]["diversity"] for p in range(4)]
    assert diversity["value"] == pytest.approx(np.mean(means))

    protocol = doc["cells"][0]["protocol"]
    assert protocol["inception"] is None and "kid" not in protocol
    assert protocol["clip"]["weights_sha256"] == file_sha256(tiny_clip_weights[0])
    assert protocol["clip"]["pretrained"] == "file:tiny-clip.pt" and protocol["clip"]["model"] == tiny_name
    assert protocol["clip"]["quick_gelu"] is False and protocol["clip"]["preprocess"]["size"] == [32, 32]
    assert protocol["rprecision"]["seed"] == 2020
    assert doc["provenance"]["versions"]["open_clip_torch"]


def test_prompts_from_sidecar_captions(tmp_path, prompted, tiny_name, tiny_clip_weights, no_inception):
    out = tmp_path / "r.json"
    result = _run("score", prompted["captions_dir"], "--metrics", "clip", *_clip_args(tiny_name, tiny_clip_weights[0]),
                  "--workers", 0, "--no-cache", "-o", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["prompts"]["source_counts"] == {"caption": 6} and doc["prompts"]["manifest"] is None
    assert doc["cells"][0]["metrics"]["clip"]["n"] == 6
    missing = doc["prompts"]["missing"]
    assert [m["path"] for m in missing] == ["img_006.png", "img_007.png"]
    assert "no caption file img_006.txt" in missing[0]["reason"]
    assert "per_image" in doc["cells"][0]


def test_one_decode_per_image_feeds_both_models_and_a_warm_run_computes_nothing(
    tmp_path, prompted, tiny_name, tiny_clip_weights, inception_weights, monkeypatch
):
    decoded: list[int] = []
    real_decode = extract_module.decode_bytes

    def counting_decode(data, *args, **kwargs):
        decoded.append(len(data))
        return real_decode(data, *args, **kwargs)

    monkeypatch.setattr(extract_module, "decode_bytes", counting_decode)
    args = [
        "score", prompted["manifest_dir"], "--metrics", "is,clip", "--prompts", prompted["manifest"],
        *_clip_args(tiny_name, tiny_clip_weights[0]), "--inception-weights", inception_weights,
        "--workers", 0, "--cache-dir", tmp_path / "cache",
    ]  # fmt: skip
    cold = _run(*args, "-o", tmp_path / "cold.json")
    assert cold.exit_code == 3, cold.output  # IS needs 20 images: null with its reason, the features still made
    assert "incomplete: is" in cold.output
    assert len(decoded) == 16  # each image decoded once, for Inception and CLIP together

    db = sqlite3.connect(tmp_path / "cache" / "features.sqlite3")
    counts = dict(db.execute("SELECT extractor, COUNT(*) FROM features GROUP BY extractor").fetchall())
    db.close()
    assert sorted(counts.values()) == [6, 16, 16]  # 6 distinct prompts, 16 images for each model
    assert any(key.startswith("inception") for key in counts) and any(key.startswith("clip_image") for key in counts)

    warm = _run(*args, "-o", tmp_path / "warm.json")
    assert warm.exit_code == 3, warm.output
    assert len(decoded) == 16  # nothing decoded again
    first, second = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("cold", "warm"))
    assert (first["images"]["n_computed"], second["images"]["n_computed"]) == (16, 0)
    assert (first["prompts"]["n_text_computed"], second["prompts"]["n_text_computed"]) == (6, 0)
    assert second["cells"][0]["metrics"] == first["cells"][0]["metrics"]
    assert (
        first["cells"][0]["protocol"]["inception"]["weights_sha256"]
        and first["cells"][0]["protocol"]["clip"]["weights_sha256"]
    )


def test_cmmd_against_a_reference_file_equals_the_folder_and_a_direct_computation(
    tmp_path, prompted, image_sets, tiny_name, tiny_clip_weights, inception_weights, image_sets_cache
):
    cache = warm_copy(image_sets_cache, tmp_path / "cache")  # the reference's Inception features, not its CLIP ones
    common = ["--inception-weights", inception_weights, "--workers", 0, "--cache-dir", cache]
    cmmd_model = ["--cmmd-model", tiny_name, "--cmmd-pretrained", tiny_clip_weights[0]]
    ref = tmp_path / "ref.npz"
    built = _run("reference", "build", image_sets["ref"], "-o", ref, *cmmd_model, *common)
    assert built.exit_code == 0, built.output

    docs = []
    for source in (ref, image_sets["ref"]):
        out = tmp_path / f"{len(docs)}.json"
        result = _run("score", prompted["manifest_dir"], "-r", source, "--metrics", "fid,cmmd", *cmmd_model,
                      *common, "--kid-subset-size", 10, "-o", out)  # fmt: skip
        assert result.exit_code == 0, result.output
        docs.append(json.loads(out.read_text()))
    from_file, from_folder = docs
    assert from_file["cells"][0]["metrics"] == from_folder["cells"][0]["metrics"]
    assert from_file["cells"][0]["metrics"]["cmmd"]["n_reference"] == 40
    assert from_file["cells"][0]["protocol"]["cmmd"]["clip"]["weights_sha256"] == file_sha256(tiny_clip_weights[0])
    assert from_file["cells"][0]["protocol"]["cmmd"]["sigma"] == 10.0 and from_file["prompts"] is None

    embedder = ClipEmbedder.load(tiny_name, tiny_clip_weights[0])
    mine = embedder.embed_images([load_rgb(p) for p in sorted(prompted["manifest_dir"].glob("*.png"))])
    theirs = embedder.embed_images([load_rgb(p) for p in sorted(Path(image_sets["ref"]).glob("*.png"))])
    assert from_file["cells"][0]["metrics"]["cmmd"]["value"] == pytest.approx(cmmd(mine, theirs), rel=1e-4, abs=1e-6)


def test_cmmd_reference_made_another_way_names_the_field_or_says_how_to_rebuild(
    tmp_path, prompted, image_sets, tiny_name, tiny_clip_weights, inception_weights, image_sets_cache
):
    # The reference's Inception features come from the cache: what is checked is the CLIP part of the protocol.
    cache = warm_copy(image_sets_cache, tmp_path / "cache")
    common = ["--inception-weights", inception_weights, "--workers", 0, "--cache-dir", cache]
    with_clip, without_clip = tmp_path / "clip.npz", tmp_path / "plain.npz"
    assert _run("reference", "build", image_sets["ref"], "-o", with_clip, "--cmmd-model", tiny_name,
                "--cmmd-pretrained", tiny_clip_weights[0], *common).exit_code == 0  # fmt: skip
    assert _run("reference", "build", image_sets["ref"], "-o", without_clip, *common).exit_code == 0

    other_weights = ["--cmmd-model", tiny_name, "--cmmd-pretrained", tiny_clip_weights[1]]
    result = _run_failing("score", prompted["manifest_dir"], "-r", with_clip, "--metrics", "cmmd", *other_weights,
                          *common)  # fmt: skip
    assert result.exit_code == 2
    assert "different protocol: weights_sha256 is" in result.output and "Traceback" not in result.output

    result = _run_failing("score", prompted["manifest_dir"], "-r", without_clip, "--metrics", "cmmd", *other_weights,
                          *common)  # fmt: skip
    assert result.exit_code == 2
    assert "holds no clip features" in result.output and "--cmmd" in result.output


def test_clip_options_alone_give_cmmd_the_same_model_loaded_once(
    tmp_path, prompted, image_sets, tiny_name, tiny_clip_weights, monkeypatch, no_inception
):
    loads = []
    real_load = ClipEmbedder.load.__func__

    def counting_load(cls, *args, **kwargs):
        loads.append(args)
        return real_load(cls, *args, **kwargs)

    monkeypatch.setattr(ClipEmbedder, "load", classmethod(counting_load))
    options = ScoreOptions(
        str(prompted["manifest_dir"]), image_sets["ref"], metrics=("clip", "cmmd"), prompts=str(prompted["manifest"]),
        clip_model=tiny_name, clip_pretrained=tiny_clip_weights[0],
        features=FeatureOptions(workers=0, progress=False),
    )  # fmt: skip
    doc = score(options)
    assert len(loads) == 1
    assert doc["cells"][0]["protocol"]["cmmd"]["clip"] == doc["cells"][0]["protocol"]["clip"]
    assert any("CMMD uses the --clip-* model" in w for w in doc["warnings"])
    assert doc["cells"][0]["metrics"]["cmmd"]["value"] > 0 and doc["cells"][0]["metrics"]["clip"]["n"] == 14


def test_choosing_clip_models():
    # (wants the prompt metrics' model, wants CMMD's model, then the four options)
    assert choose_clip_models(False, False).prompt is None and choose_clip_models(False, False).cmmd is None
    default = choose_clip_models(True, True)
    assert (default.prompt, default.cmmd, default.warnings) == (CLIP_SCORE_MODEL, CMMD_MODEL, ())
    only_cmmd = choose_clip_models(False, True, cmmd_pretrained="/w.pt")
    assert (only_cmmd.prompt, only_cmmd.cmmd) == (None, ClipModelSpec(CMMD_MODEL.name, "/w.pt"))
    both = choose_clip_models(True, True, "ViT-B-32", None, "ViT-L-14-336", None)
    assert both.cmmd == CMMD_MODEL and both.prompt == ClipModelSpec("ViT-B-32", "openai") and not both.warnings


def test_no_prompt_anywhere_skips_the_prompt_metrics_with_the_reason(
    tmp_path, image_sets, tiny_name, tiny_clip_weights, no_inception
):
    out = tmp_path / "r.json"
    clip = _clip_args(tiny_name, tiny_clip_weights[0])
    result = _run(
        "score", image_sets["gen"], "--metrics", "clip,diversity", *clip, "--workers", 0, "--no-cache", "-o", out
    )
    assert result.exit_code == 3, result.output  # every requested metric null: incomplete
    doc = json.loads(out.read_text())
    assert doc["cells"][0]["metrics"]["clip"]["value"] is None
    assert "no scored image has a prompt" in doc["cells"][0]["metrics"]["clip"]["skipped"]
    assert len(doc["prompts"]["missing"]) == 40


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metrics", "clip", "--prompts", "/nonexistent/m.jsonl"], "cannot read manifest"),
        (["--metrics", "clip", "--prompts", "CSV"], "CSV header has no 'prompt' column"),
        (["--metrics", "cmmd"], "--reference is required for cmmd"),
        (["--metrics", "clip,bleu"], "unknown metric(s) bleu"),
    ],
)
def test_option_and_manifest_errors_are_one_line_and_exit_code_2(tmp_path, prompted, args, message):
    csv = tmp_path / "m.csv"
    csv.write_text("file,caption\nimg_000.png,a fox\n")
    args = [str(csv) if a == "CSV" else a for a in args]
    # The model named here does not exist: each error must come before any model is loaded.
    result = _run_failing("score", prompted["manifest_dir"], *args, "--clip-model", "no-such-model", "--no-cache")
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_extract_folder_runs_extractors_with_one_cache_key_once(prompted, tiny_name, tiny_clip_weights):
    first, second = (ClipEmbedder.load(tiny_name, tiny_clip_weights[0]) for _ in range(2))
    assert first is not second and first.cache_key == second.cache_key
    calls = []
    for embedder in (first, second):
        real = embedder.extract
        embedder.extract = lambda batch, real=real: calls.append(len(batch)) or real(batch)
    feats = extract_module.extract_folder(prompted["captions_dir"], [first, second], workers=0, progress=False)
    assert sum(calls) == 8 and list(feats.features) == [first.cache_key]


def test_prompts_longer_than_the_clip_context_are_counted_and_flagged(tmp_path, tiny_name, tiny_clip_weights):
    embedder = ClipEmbedder.load(tiny_name, tiny_clip_weights[0])
    # "a" is one token; the start and end tokens take 2 of the 77.
    assert embedder.truncated(["a " * 75, "a " * 76, "a teapot"]) == [False, True, False]

    folder = tmp_path / "long"
    make_image_set(folder, 4, seed=5, size=48)
    long_prompt = "a very detailed painting of " + "golden " * 80 + "light"
    for i, text in enumerate([long_prompt, long_prompt, "a teapot", "a teapot"]):
        (folder / f"img_{i:03d}.png").with_suffix(".txt").write_text(text)
    out = tmp_path / "r.json"
    result = _run("score", folder, "--metrics", "clip,rprecision", *_clip_args(tiny_name, tiny_clip_weights[0]),
                  "--per-image", "--workers", 0, "--no-cache", "-o", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["cells"][0]["metrics"]["clip"]["n_prompts_truncated"] == 1
    assert doc["cells"][0]["metrics"]["rprecision"]["n_prompts_truncated"] == 1
    assert [row["prompt_truncated"] for row in doc["cells"][0]["per_image"]] == [True, True, False, False]
    assert any("1 of 2 distinct prompts are longer than the CLIP text context (77 tokens)" in w
               for w in doc["prompts"]["warnings"])  # fmt: skip
    assert "longer than the CLIP text context" in result.output
