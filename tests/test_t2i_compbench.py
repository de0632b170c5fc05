"""T2I-CompBench's BLIP-VQA attribute binding by name: the questions the t2i-compbench suite ships (one "{noun
phrase}?" per spaCy noun chunk, as BLIPvqa_eval/BLIP_vqa.py makes them), asked by `--judge vqa` with a tiny random
BLIP, and the metric `t2i_compbench` (per image the product of P(yes), per category the mean over images) equal to
the same formula computed from the judge's own P(yes); its protocol says where it differs from the original."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from test_benchmark_scores import _images, _run, _shipped, _write_suite

from sdeval.suites import benchmarks, load_suite
from sdeval.suites.nounphrases import EXCLUDED, MAX_PHRASES, SPACY_MODEL, kept, pre_question, questions

# Rows of the slice scored end to end: a color, a shape, a texture and a spatial prompt (no questions).
SLICE = ["color_000", "shape_000", "texture_000", "spatial_000"]


def test_the_suite_ships_blip_vqa_questions_for_color_shape_and_texture() -> None:
    suite = load_suite("t2i-compbench")
    assert suite.question_sets["blip_vqa"]["format"] == "t2i-compbench"
    assert "en_core_web_sm 3.8.0" in suite.question_sets["blip_vqa"]["source"]
    assert suite.question_counts() == {"blip_vqa": 2138}
    for prompt in suite.prompts:
        asked = prompt.question_set("blip_vqa")
        if prompt.category not in benchmarks.T2I_BLIP_VQA:
            assert asked is None, prompt.id
            continue
        assert asked and len(asked) <= MAX_PHRASES and "_" not in prompt.prompt, prompt.id
        for q in asked:  # each phrase is a span of the prompt, asked as BLIP reads "{phrase}?"
            assert q.label in prompt.prompt and q.question == pre_question(q.label + "?") and q.kind == "noun phrase"
        assert [int(q.qid) for q in asked] == list(range(1, len(asked) + 1))
    by_id = {p.id: p for p in suite.prompts}

    def phrases(prompt_id: str) -> list[str]:
        return [q.question for q in by_id[prompt_id].question_set("blip_vqa") or ()]

    # What spaCy's noun chunks give on the paper's files: the two-object template, a sentence, BLIP's lower case.
    assert phrases("color_000") == ["a green bench?", "a blue bowl?"]
    # spaCy's parser may take a coordination as one chunk: T2I-CompBench then asks one question, and so does sdeval.
    assert by_id["texture_009"].prompt == "a plastic cutlery and fluffy clouds"
    assert phrases("texture_009") == ["a plastic cutlery and fluffy clouds?"]
    assert phrases("texture_067") == ["a plastic cutlery?", "a glass mirror?"]
    long = next(p for p in suite.prompts if p.prompt.startswith("A restroom features white and white checkered"))
    assert phrases(long.id) == ["a restroom?", "white and white checkered flooring?", "two toilets?", "which?",
                                "a black seat?", "lid?", "the other a black seat?", "lid?"]  # fmt: skip


def test_questions_keep_t2i_compbenchs_exclusions_cap_and_pre_question() -> None:
    assert kept(["a cup", "top", "the left", "the side", "the right", "a table"]) == ["a cup", "a table"]
    assert set(EXCLUDED) == {"top", "the side", "the left", "the right"}
    asked = questions([f"a cup {i}" for i in range(10)])
    assert len(asked) == MAX_PHRASES == 8 and asked[-1] == {"qid": "8", "question": "a cup 7?", "kind": "noun phrase",
                                                            "label": "a cup 7"}  # fmt: skip
    assert pre_question('A "Rubik\'s" cube (big); done.?') == "a rubik's cube big done?"


def test_the_shipped_questions_are_spacys_noun_chunks() -> None:
    # The maintainers' check, where spaCy and the pinned pipeline are installed: the conversion gives the shipped rows.
    spacy = pytest.importorskip("spacy")
    try:
        nlp = spacy.load(SPACY_MODEL[0])
    except OSError:
        pytest.skip(f"spaCy's {SPACY_MODEL[0]} is not installed")
    if nlp.meta.get("version") != SPACY_MODEL[1]:
        pytest.skip(f"{SPACY_MODEL[0]} {nlp.meta.get('version')} is not the pinned {SPACY_MODEL[1]}")
    from sdeval.suites.nounphrases import noun_phrases

    rows = [p for p in load_suite("t2i-compbench").prompts if p.category in benchmarks.T2I_BLIP_VQA]
    got = noun_phrases([p.prompt for p in rows])
    assert [questions(phrases) for phrases in got] == [[q.to_json() for q in p.question_set("blip_vqa") or ()]
                                                       for p in rows]  # fmt: skip


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The slice scored with `--judge vqa` (a tiny random BLIP, the suite's blip_vqa questions), two images a prompt."""
    from test_vqa_judge import _save_blip

    root = tmp_path_factory.mktemp("t2i")
    blip = _save_blip(root)
    header, rows = _shipped("t2i-compbench", ids=SLICE)
    suite = _write_suite(root / "t2i-slice.jsonl", header, rows)
    manifest, _ = _images(root / "images", rows, per_prompt=2)
    out = root / "results.json"
    result = _run("score", root / "images", "--metrics", "t2i_compbench,dsg", "--judge", "vqa", "--vqa-model", blip,
                  "--suite", suite, "--prompts", manifest, "--no-cache", "--workers", 0, "--ci", "-o", out)  # fmt: skip
    assert result.exit_code == 3, result.output  # dsg cannot be computed on these questions: said, not fatal
    return {"root": root, "blip": blip, "rows": rows, "out": out, "output": result.output,
            "cell": json.loads(out.read_text())["cells"][0]}  # fmt: skip


def test_the_score_is_the_product_of_p_yes_then_the_mean_over_images(scored: dict[str, Any]) -> None:
    from sdeval.judges.vqa import load_vqa_model

    vqa = load_vqa_model(str(scored["blip"]))
    rows = {r["id"]: r for r in scored["rows"]}
    cell = scored["cell"]
    by_category: dict[str, list[float]] = {}
    for image in cell["per_image"]:
        row = rows[image["prompt_id"]]
        if row["category"] not in benchmarks.T2I_BLIP_VQA:
            assert all(image.get(f"t2i_compbench_{c}_score") is None for c in benchmarks.T2I_BLIP_VQA)
            continue
        pixels = np.asarray(Image.open(scored["root"] / "images" / image["path"]).convert("RGB"))
        p_yes = vqa.p_yes(pixels, [q["question"] for q in row["questions"]["blip_vqa"]])
        score = float(np.prod(p_yes))
        # Two phrases or more, each P(yes) strictly inside (0, 1): the product is below every one of them, so a mean
        # or a minimum of the answers would not pass (random weights may give two phrases the same P(yes)).
        assert len(p_yes) >= 2 and all(0 < p < 1 for p in p_yes) and score < min(p_yes)
        assert image[f"t2i_compbench_{row['category']}_score"] == pytest.approx(score, rel=1e-5)
        by_category.setdefault(row["category"], []).append(score)
    assert sorted(by_category) == ["color", "shape", "texture"] and len(by_category["color"]) == 2
    for category, scores in by_category.items():
        entry = cell["metrics"][f"t2i_compbench_{category}"]
        assert entry["value"] == pytest.approx(np.mean(scores), rel=1e-5) and entry["n"] == len(scores)
        assert entry["interval"]["low"] <= entry["value"] <= entry["interval"]["high"]  # --ci: bootstrap over prompts
        assert {s["path"] for s in entry["images_skipped"]} == {"spatial_000-0.png", "spatial_000-1.png"}
    assert "T2I-CompBench color (BLIP-VQA)" in scored["output"] and "(2 images)" in scored["output"]
    assert (
        "dsg needs DSG's questions, and the judge asked t2i-compbench questions" in (cell["metrics"]["dsg"]["skipped"])
    )


def test_the_protocol_names_the_judge_and_how_it_differs(scored: dict[str, Any]) -> None:
    protocol = scored["cell"]["protocol"]["t2i_compbench"]
    assert protocol["benchmark"].startswith("T2I-CompBench attribute binding, BLIP-VQA (Huang et al., NeurIPS 2023)")
    assert "BLIPvqa_eval/BLIP_vqa.py" in protocol["formula"] and "product" in protocol["formula"]
    assert "model_base_vqa_capfilt_large.pth" in protocol["published_judge"]
    assert protocol["judge"].startswith("vqa: folder:blip-vqa, questions blip_vqa")
    assert protocol["as_published"] is False
    differs = " | ".join(protocol["differs"])
    for said in ("en_core_web_sm 3.8.0, where T2I-CompBench pins en_core_web_sm 3.5.0", "images resized to 32x32",
                 "reads 480x480", "[CLS]", "[ENC]", "vqa_prob", "VQA model folder:blip-vqa"):  # fmt: skip
        assert said in differs, said


def test_listed_gated_and_reported_by_name(scored: dict[str, Any]) -> None:
    listed = {m["name"]: m for m in json.loads(_run("metrics", "--json").stdout)}
    keys = [r["key"] for r in listed["t2i_compbench"]["results"]]
    assert keys == ["t2i_compbench_color", "t2i_compbench_shape", "t2i_compbench_texture"]
    assert all(r["direction"] == "higher" and r["range"] == [0.0, 1.0] for r in listed["t2i_compbench"]["results"])
    root: Path = scored["root"]
    rules = root / "rules.yaml"
    rules.write_text("rules:\n  - {metric: t2i_compbench_color, min: 0}\n  - {metric: t2i_compbench_texture, max: 1}\n")
    gate = _run("gate", scored["out"], "--rules", rules, "--json", root / "gate.json")
    assert gate.exit_code == 0, gate.output
    assert "t2i_compbench_texture" in (root / "gate.json").read_text()
    report = _run("report", scored["out"], "-o", root / "report", "--quiet")
    assert report.exit_code == 0, report.output
    assert "T2I-CompBench shape (BLIP-VQA)" in (root / "report" / "summary.md").read_text()
