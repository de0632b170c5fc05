"""The preference scorers and FD_DINOv2 inside `sdeval score`: the per-image scores equal the scorer run on the same
decoded images, the embedding scorers ride the one decode pass, ImageReward's pairs are cached, prompts without a
prompt are listed, comparisons pair by prompt, and the reference carries DINOv2 features."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import warm_copy
from test_preference import (  # the tiny real models of the scorers' own tests
    _head_state,
    _imagereward_state,
    _tiny_clip_model,
    _write_clip_processor,
    _write_imagereward_folder,
)

from sdeval.cli import main
from sdeval.core.images import load_rgb
from sdeval.preference import load_scorer
from sdeval.score.demo import make_image_set

PROMPTS = ["a red cat", "the big blue dog on a tree", "a photo of a small house", "dogs"]


def _run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_name, tiny_clip_weights) -> dict[str, Path]:
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("models")
    ir = _write_imagereward_folder(folder / "imagereward", _imagereward_state(0), "ImageReward.safetensors")
    pick = folder / "pickscore"
    _tiny_clip_model(1).save_pretrained(pick)
    _write_clip_processor(pick)
    save_file(_head_state(32, seed=7), str(folder / "head.safetensors"))
    return {"imagereward": ir, "pickscore": pick, "aesthetic": folder / "head.safetensors",
            "clip": Path(tiny_clip_weights[0])}  # fmt: skip


@pytest.fixture(scope="module")
def prompted(tmp_path_factory) -> Path:
    """Eight images, two seeds per prompt, in a manifest with ids; one image without a prompt."""
    folder = tmp_path_factory.mktemp("prompted")
    paths = make_image_set(folder, 9, seed=4, size=40)
    rows = [
        {"file": p.name, "prompt": PROMPTS[i // 2], "id": f"p{i // 2}", "seed": i % 2} for i, p in enumerate(paths[:8])
    ]
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def _score(folder: Path, models: dict[str, Path], tiny_name: str, out: Path, cache: Path, *extra: object):
    return _run("score", folder, "--metrics", "imagereward,pickscore,aesthetic", "--prompts", folder / "manifest.jsonl",
                "--imagereward-model", models["imagereward"], "--pickscore-model", models["pickscore"],
                "--aesthetic-model", models["aesthetic"], "--clip-model", tiny_name, "--clip-pretrained",
                models["clip"], "--allow-pickle", "--cache-dir", cache, "--workers", 0, "-o", out, *extra)  # fmt: skip


def test_preference_scores_equal_the_scorers_on_the_same_images(prompted, models, tiny_name, tmp_path):
    out = tmp_path / "r.json"
    result = _score(prompted, models, tiny_name, out, tmp_path / "cache")
    assert result.exit_code == 0, result.output
    (cell,) = json.loads(out.read_text())["cells"]
    rows = {row["path"]: row for row in cell["per_image"]}
    scored = sorted(p for p in rows if rows[p]["prompt"] is not None)
    rgbs = [load_rgb(prompted / p) for p in scored]
    prompts = [rows[p]["prompt"] for p in scored]
    direct = {
        "imagereward": load_scorer("imagereward", str(models["imagereward"])),
        "pickscore": load_scorer("pickscore", str(models["pickscore"])),
        "aesthetic": load_scorer(
            "aesthetic", str(models["aesthetic"]), clip_model=tiny_name, clip_pretrained=str(models["clip"])
        ),
    }
    for name, scorer in direct.items():
        expected = scorer.score(torch.stack([scorer.preprocess(rgb) for rgb in rgbs]), prompts)
        got = [rows[p][name] for p in scored]
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, err_msg=name)
        entry = cell["metrics"][name]
        every = [row[name] for row in cell["per_image"] if row[name] is not None]
        assert entry["value"] == pytest.approx(np.mean(every)) and entry["n"] == len(every)
        assert cell["protocol"][name]["weights_sha256"] == scorer.protocol()["weights_sha256"]
    # The prompt-relative scorers list the image without a prompt; the aesthetic head scores it too.
    assert [m["path"] for m in cell["metrics"]["imagereward"]["images_skipped"]] == ["img_008.png"]
    assert rows["img_008.png"]["imagereward"] is None and rows["img_008.png"]["aesthetic"] is not None
    assert cell["metrics"]["imagereward"]["n"] == 8 and cell["metrics"]["aesthetic"]["n"] == 9
    per_prompt = {row["prompt"]: row for row in cell["metrics"]["pickscore"]["per_prompt"]}
    assert set(per_prompt) == set(PROMPTS) and all(row["n_images"] == 2 for row in per_prompt.values())

    again = tmp_path / "again.json"
    assert _score(prompted, models, tiny_name, again, tmp_path / "cache").exit_code == 0  # from the cache
    (cell_again,) = json.loads(again.read_text())["cells"]
    assert [r["imagereward"] for r in cell_again["per_image"]] == [r["imagereward"] for r in cell["per_image"]]


def test_pickle_checkpoints_need_the_flag(prompted, models, tiny_name, tmp_path):
    torch.save(_head_state(32, seed=7), tmp_path / "head.pth")
    head = tmp_path / "head.pth"
    result = _run("score", prompted, "--metrics", "aesthetic", "--aesthetic-model", head, "--clip-model", tiny_name,
                  "--clip-pretrained", models["clip"], "--no-cache", "--workers", 0)  # fmt: skip
    assert result.exit_code == 2 and "--allow-pickle" in result.output and "Traceback" not in result.output


def test_preference_comparisons_pair_by_prompt(prompted, models, tiny_name, tmp_path):
    """Two runs with different seeds share no image but share every prompt: paired by prompt, not unpaired."""
    from sdeval.stats import compare_cells

    out = tmp_path / "r.json"
    assert _score(prompted, models, tiny_name, out, tmp_path / "cache").exit_code == 0
    (cell,) = json.loads(out.read_text())["cells"]
    other = {**cell, "per_image": [{**r, "item": r["item"].replace("#", "@x")} for r in cell["per_image"]]}
    found = compare_cells(cell, None, other, None, keys=["pickscore"], replicates=50)["pickscore"]
    assert found.paired and "paired on shared prompts" in found.method and found.difference == pytest.approx(0.0)


def test_fd_dinov2_from_a_reference_file_equals_the_direct_computation(
    tmp_path, image_sets, inception_weights, image_sets_cache
):
    """`reference build --dinov2` stores the features; `score --metrics fd_dinov2` reads them, equals the Fréchet
    distance of directly extracted features, and gets a jackknife interval with --ci."""
    from test_dinov2 import _save_dinov2, _scipy_fd

    from sdeval.features.dinov2 import Dinov2Extractor

    model = _save_dinov2(tmp_path / "dino", seed=0)
    ref = tmp_path / "ref.npz"
    # Every reference holds Inception's features too: the builds read them from the cache, DINOv2's are extracted.
    cache = warm_copy(image_sets_cache, tmp_path / "cache")
    built = _run("reference", "build", image_sets["ref"], "-o", ref, "--dinov2-model", model, "--cache-dir", cache,
                 "--workers", 0, "--inception-weights", inception_weights)  # fmt: skip
    assert built.exit_code == 0, built.output
    out = tmp_path / "r.json"
    result = _run("score", image_sets["gen"], "--metrics", "fd_dinov2", "-r", ref, "--dinov2-model", model, "--ci",
                  "--no-cache", "--workers", 0, "-o", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    (cell,) = json.loads(out.read_text())["cells"]
    extractor = Dinov2Extractor.load(str(model))

    def features(folder: str) -> np.ndarray:
        paths = sorted(Path(folder).glob("*.png"))
        batch = torch.stack([extractor.preprocess(load_rgb(p)) for p in paths])
        return extractor.extract(batch)["dinov2"].numpy().astype(np.float64)

    entry = cell["metrics"]["fd_dinov2"]
    expected = _scipy_fd(features(image_sets["gen"]), features(image_sets["ref"]))
    assert entry["value"] == pytest.approx(expected, rel=1e-4)
    assert entry["interval"]["low"] >= 0.0 and "jackknife" in entry["interval"]["method"]
    assert cell["protocol"]["dinov2"]["weights_sha256"] == extractor.protocol()["weights_sha256"]
    no_dino = tmp_path / "plain.npz"
    plain = _run("reference", "build", image_sets["ref"], "-o", no_dino, "--cache-dir", cache, "--workers", 0,
                 "--inception-weights", inception_weights)  # fmt: skip
    assert plain.exit_code == 0, plain.output
    refused = _run("score", image_sets["gen"], "--metrics", "fd_dinov2", "-r", no_dino, "--dinov2-model", model,
                   "--no-cache", "--workers", 0)  # fmt: skip
    assert refused.exit_code == 2 and "--dinov2" in refused.output


def test_the_aesthetic_head_gets_weights_with_a_clip_name_alone(monkeypatch):
    """`--clip-model ViT-L-14` alone means OpenAI's weights for the aesthetic head, as for the CLIP metrics; a
    CLIP model without weights is refused (open_clip would score with random weights and only log it)."""
    import sdeval.preference as preference
    from sdeval.core.errors import SdevalError
    from sdeval.features.clip import ClipEmbedder
    from sdeval.options.score import ScoreOptions
    from sdeval.score.models import _load_scorer

    seen: dict[str, object] = {}
    monkeypatch.setattr(preference, "load_scorer", lambda name, model, **kw: seen.update(kw))
    _load_scorer("aesthetic", ScoreOptions(images="x", clip_model="ViT-L-14"), torch.device("cpu"), None)
    assert (seen["clip_model"], seen["clip_pretrained"]) == ("ViT-L-14", "openai")
    with pytest.raises(SdevalError, match="CLIP model 'ViT-L-14' needs weights"):
        ClipEmbedder.load("ViT-L-14", None)
