"""`sdeval score --metrics adherence,robustness`: specs joined from a suite by prompt id or text, GenEval's own
layout read and its results.jsonl written, seed robustness from the same verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from sdeval.calibration.render import render
from sdeval.calibration.world import MistakeRates
from sdeval.cli import main
from sdeval.metrics.seed_robustness import pass_at_k
from sdeval.suites.spec import parse_spec

SPECS = {
    "red": {"tag": "colors", "include": [{"class": "circle", "count": 1, "color": "red"}]},
    "two": {
        "tag": "counting",
        "include": [{"class": "square", "count": 2}],
        "exclude": [{"class": "square", "count": 3}],
    },
    "left": {
        "tag": "position",
        "include": [{"class": "triangle", "count": 1}, {"class": "circle", "count": 1, "position": ["left of", 0]}],
    },
}
TEXT = {
    "red": "a photo of a red circle",
    "two": "a photo of two squares",
    "left": "a photo of a circle left of a triangle",
}


def _run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def _suite(path: Path) -> Path:
    rows = [{"id": key, "prompt": TEXT[key], "category": spec["tag"], "spec": spec} for key, spec in SPECS.items()]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _draw(folder: Path, name: str, key: str, seed: int, colour_mistakes: float = 0.0) -> bool:
    """Write one calibration image of `key`'s spec; returns whether it was drawn correctly."""
    drawn = render(parse_spec(SPECS[key]), seed, 128, MistakeRates(colors=colour_mistakes))
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(drawn.image).save(folder / name)
    return drawn.mistake is None


def test_a_plain_folder_joins_specs_by_prompt_id_then_by_text_and_lists_the_rest(tmp_path):
    images = tmp_path / "images"
    _draw(images, "a.png", "red", 1)
    _draw(images, "b.png", "two", 2)
    _draw(images, "c.png", "left", 3)
    _draw(images, "d.png", "red", 4)
    manifest = tmp_path / "prompts.jsonl"
    rows = [
        {"file": "a.png", "prompt": "whatever the text", "id": "red"},  # joined by id
        {"file": "b.png", "prompt": TEXT["two"]},  # joined by exact text
        {"file": "c.png", "prompt": "a circle somewhere", "id": "nope"},  # neither
    ]  # d.png: no prompt at all
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "r.json"
    suite = _suite(tmp_path / "s.jsonl")
    result = _run("score", images, "--metrics", "adherence", "--judge", "shapes", "--suite", suite,
                  "--prompts", manifest, "-o", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    (cell,) = json.loads(out.read_text())["cells"]
    entry = cell["metrics"]["adherence"]
    assert entry["n"] == 2 and entry["value"] == 1.0 and set(entry["categories"]) == {"colors", "counting"}
    skipped = {s["path"]: s["reason"] for s in entry["images_skipped"]}
    assert set(skipped) == {"c.png", "d.png"}
    assert "prompt id 'nope' is not in the suite" in skipped["c.png"]
    rows = {row["path"]: row for row in cell["per_image"]}
    assert rows["a.png"]["adherence_passed"] is True and rows["a.png"]["category"] == "colors"
    assert rows["c.png"]["adherence_passed"] is None
    assert cell["protocol"]["judge"]["judge"] == "shapes" and cell["protocol"]["judge"]["specs"]["id"] == "s"


def test_without_a_suite_adherence_is_a_listed_skip(tmp_path):
    _draw(tmp_path / "images", "a.png", "red", 1)
    _draw(tmp_path / "images", "b.png", "two", 2)
    out = tmp_path / "r.json"
    result = _run("score", tmp_path / "images", "--metrics", "adherence,robustness", "--judge", "shapes", "-o", out)
    assert result.exit_code == 3, result.output
    metrics = json.loads(out.read_text())["cells"][0]["metrics"]
    for key in ("adherence", "robustness"):
        entry = metrics[key]
        # No spec source at all: the reason names the fix, and every image is listed with its own reason.
        assert entry["value"] is None and "no scored image has a prompt with a spec" in entry["skipped"]
        assert "pass --suite NAME|FILE" in entry["skipped"] and "sdeval suites list" in entry["skipped"]
        assert [s["path"] for s in entry["images_skipped"]] == ["a.png", "b.png"]
        assert all("--suite NAME|FILE" in s["reason"] for s in entry["images_skipped"])
    assert "pass --suite NAME|FILE (e.g. builtin:shapes" in result.output  # the table says it too


def test_a_generation_run_without_its_record_names_the_fix_too(tmp_path):
    # A run stopped before its end has images and a manifest but no run.json, so no suite is recorded.
    suite = _suite(tmp_path / "s.jsonl")
    (tmp_path / "c.yaml").write_text(
        f"checkpoints: [{{name: shapes, path: shapes}}]\nsuite: {suite}\nsettings: {{width: 128, height: 128}}\n"
        "output_dir: out\ndevice: cpu\n"
    )
    assert _run("generate", tmp_path / "c.yaml", "--quiet").exit_code == 0
    (tmp_path / "out" / "run.json").unlink()
    out = tmp_path / "r.json"
    result = _run("score", tmp_path / "out", "--metrics", "adherence", "--judge", "shapes", "-o", out)
    assert result.exit_code == 3, result.output
    (cell,) = json.loads(out.read_text())["cells"]
    entry = cell["metrics"]["adherence"]
    assert "pass --suite NAME|FILE (e.g. builtin:shapes" in entry["skipped"] and len(entry["images_skipped"]) == 3
    with_suite = _run("score", tmp_path / "out", "--metrics", "adherence", "--judge", "shapes", "--suite", suite)
    assert with_suite.exit_code == 0, with_suite.output


def test_specs_missing_for_different_reasons_point_to_the_list(tmp_path):
    images = tmp_path / "images"
    _draw(images, "a.png", "red", 1)
    _draw(images, "b.png", "two", 2)
    manifest = tmp_path / "prompts.jsonl"
    manifest.write_text(json.dumps({"file": "a.png", "prompt": "a cat", "id": "nope"}) + "\n")
    out = tmp_path / "r.json"
    suite = _suite(tmp_path / "s.jsonl")
    result = _run("score", images, "--metrics", "adherence", "--judge", "shapes", "--suite", suite,
                  "--prompts", manifest, "-o", out)  # fmt: skip
    assert result.exit_code == 3, result.output
    entry = json.loads(out.read_text())["cells"][0]["metrics"]["adherence"]
    assert "each image's reason is listed under `images_skipped`" in entry["skipped"]
    reasons = {s["path"]: s["reason"] for s in entry["images_skipped"]}
    assert "prompt id 'nope' is not in the suite" in reasons["a.png"] and "no prompt text" in reasons["b.png"]


@pytest.fixture
def geneval_folder(tmp_path) -> tuple[Path, dict[str, list[bool]]]:
    """GenEval's output layout: NNNNN/metadata.jsonl + NNNNN/samples/NNNN.png, 4 samples per prompt, colour
    mistakes at 0.5 so some fail."""
    root = tmp_path / "geneval"
    truth: dict[str, list[bool]] = {}
    for p, key in enumerate(SPECS):
        folder = root / f"{p:05d}"
        folder.mkdir(parents=True)
        (folder / "metadata.jsonl").write_text(json.dumps({**SPECS[key], "prompt": TEXT[key]}) + "\n")
        truth[f"{p:05d}"] = [_draw(folder / "samples", f"{s:04d}.png", key, 10 * p + s, 0.5) for s in range(4)]
    return root, truth


def test_geneval_layout_is_read_and_results_jsonl_written_as_geneval_summarises_it(tmp_path, geneval_folder):
    root, truth = geneval_folder
    out, geneval_out = tmp_path / "r.json", tmp_path / "results.jsonl"
    result = _run("score", root, "--metrics", "adherence,robustness", "--judge", "shapes", "-o", out,
                  "--geneval-results", geneval_out)  # fmt: skip
    assert result.exit_code == 0, result.output
    (cell,) = json.loads(out.read_text())["cells"]
    rows = {row["path"]: row for row in cell["per_image"]}
    for pid, samples in truth.items():
        for s, correct in enumerate(samples):
            row = rows[f"{pid}/samples/{s:04d}.png"]
            assert row["adherence_passed"] == correct and row["item"] == f"{pid}#{s}"
    lines = [json.loads(line) for line in geneval_out.read_text().splitlines()]
    assert len(lines) == 12 and {"filename", "tag", "prompt", "correct", "reason", "metadata"} <= set(lines[0])
    # GenEval's summary: mean over tags of the share of correct images.
    tags: dict[str, list[bool]] = {}
    for line in lines:
        tags.setdefault(line["tag"], []).append(line["correct"])
        assert json.loads(line["metadata"])["tag"] == line["tag"]
    assert cell["metrics"]["adherence"]["value"] == pytest.approx(np.mean([np.mean(v) for v in tags.values()]))

    robustness = cell["metrics"]["robustness"]
    per_prompt = {p["prompt_id"]: p for p in robustness["prompts"]}
    for pid, samples in truth.items():
        c = sum(samples)
        assert per_prompt[pid]["pass_at"]["4"] == pytest.approx(pass_at_k(4, c, 4))
        assert per_prompt[pid]["passes"] == c
    assert robustness["value"] == pytest.approx(np.mean([np.mean(s) for s in truth.values()]))


def test_geneval_results_without_adherence_is_a_clear_error(tmp_path, geneval_folder, inception_weights):
    root, _ = geneval_folder
    result = _run("score", root, "--metrics", "pr", "-r", root, "--inception-weights", inception_weights,
                  "--no-cache", "--workers", 0, "--geneval-results", tmp_path / "g.jsonl")  # fmt: skip
    assert result.exit_code == 2 and "no image was judged" in result.output


def test_faithfulness_lists_the_images_without_an_init_image():
    from sdeval.metrics.builtin.adherence import _faithfulness
    from sdeval.metrics.registry import CellData, ScoreParams

    cell = CellData(paths=["a.png", "b.png"], params=ScoreParams())
    cell.faithfulness = {"init_edge_ssim": [0.5, None], "init_clip_cosine": [0.9, None]}
    cell.faithfulness_missing = [{"path": "b.png", "reason": "no init image: ..."}]
    entries = _faithfulness(cell).entries
    assert entries["faithfulness_edge"]["value"] == 0.5 and entries["faithfulness_edge"]["n"] == 1
    assert entries["faithfulness_edge"]["images_skipped"] == [{"path": "b.png", "reason": "no init image: ..."}]
    assert entries["faithfulness_clip"]["images_skipped"] == entries["faithfulness_edge"]["images_skipped"]


def test_vqa_judge_through_score_with_spec_questions_and_a_dsg_file(tmp_path):
    """`--judge vqa` with a tiny random BLIP VQA model loaded by path: spec questions for prompts of the suite,
    a DSG file's questions where it has the prompt (they win), the VQA score per image, the model in the protocol."""
    from test_vqa_judge import _save_blip

    model = _save_blip(tmp_path)
    images = tmp_path / "images"
    _draw(images, "a.png", "red", 1)
    _draw(images, "b.png", "two", 2)
    manifest = tmp_path / "prompts.jsonl"
    rows = [
        {"file": "a.png", "prompt": TEXT["red"], "id": "red"},
        {"file": "b.png", "prompt": TEXT["two"], "id": "two"},
    ]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dsg = tmp_path / "dsg.csv"
    header = "item_id,text,proposition_id,dependency,category_broad,tuple,question_natural_language"
    dsg.write_text(f"{header}\ntwo,x,1,0,entity,entity - whole (x),Is there a dog?\n"
                   "two,x,2,1,count,other - count (x),Are there two dogs?\n")  # fmt: skip
    out = tmp_path / "r.json"
    suite = _suite(tmp_path / "s.jsonl")
    result = _run("score", images, "--metrics", "adherence", "--judge", "vqa", "--vqa-model", model,
                  "--questions", dsg, "--suite", suite, "--prompts", manifest, "-o", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    (cell,) = json.loads(out.read_text())["cells"]
    rows = {row["path"]: row for row in cell["per_image"]}
    assert rows["a.png"]["category"] == "colors" and rows["b.png"]["category"] == "counting"
    assert all(0.0 <= rows[p]["adherence_score"] <= 1.0 for p in rows)
    # b.png was asked the DSG file's questions (labelled by their tuples), a.png its spec's.
    assert {f.split(":")[0] for f in rows["b.png"]["adherence_failed"]} <= {"entity - whole (x)", "other - count (x)"}
    judge = cell["protocol"]["judge"]
    assert judge["judge"] == "vqa" and judge["questions"]["format"] == "dsg"
    assert judge["model"]["weights_sha256"]
