"""Benchmarks scored by their own rules: a suite's question sets asked by `--judge vqa` without `--questions`, and
the scores under the benchmark's name (GenEval overall, DSG, TIFA, DPG-Bench), each equal to a hand computation on a
small slice of the shipped suite, with a stub VQA model whose answers the test sets."""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from sdeval.cli import main
from sdeval.judges.questions import spec_questions
from sdeval.suites.builtin import builtin_path
from sdeval.suites.spec import parse_spec

SIZE = 32


class StubVqa:
    """A YesNoModel that answers "no" (P(yes) 0.1) to the questions `no[image]` names, "yes" (0.9) to the rest; an
    image is known by its top-left pixel's red value (its index). Multiple choice: the first choice wins unless the
    question is in `no[image]`, then the last."""

    def __init__(self, no: dict[int, set[str]]) -> None:
        self.no = no
        self.asked: list[tuple[int, str]] = []

    def p_yes(self, image: np.ndarray, questions: Sequence[str]) -> list[float]:
        index = int(image[0, 0, 0])
        self.asked.extend((index, q) for q in questions)
        return [0.1 if q in self.no.get(index, set()) else 0.9 for q in questions]

    def choice_probs(self, image: np.ndarray, question: str, choices: Sequence[str]) -> list[float]:
        index = int(image[0, 0, 0])
        self.asked.append((index, question))
        best = len(choices) - 1 if question in self.no.get(index, set()) else 0
        return [0.8 if i == best else 0.2 / (len(choices) - 1) for i in range(len(choices))]


def _run(*args: object) -> Any:
    return CliRunner().invoke(main, [str(a) for a in args])


def _shipped(name: str, ids: Sequence[str] | None = None, n: int | None = None) -> tuple[dict, list[dict]]:
    """The header and rows of a shipped benchmark suite: the rows with `ids`, else its first `n`."""
    lines = gzip.decompress(builtin_path(name).read_bytes()).decode("utf-8").splitlines()
    header, rows = json.loads(lines[0]), [json.loads(line) for line in lines[1:]]
    if ids is not None:
        by_id = {r["id"]: r for r in rows}
        return header, [by_id[i] for i in ids]
    return header, rows[:n]


def _write_suite(path: Path, header: dict, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(obj) + "\n" for obj in [header, *rows]), encoding="utf-8")
    return path


def _images(folder: Path, rows: list[dict], per_prompt: int = 1) -> tuple[Path, list[tuple[int, str]]]:
    """One flat image per (row, seed), image k's top-left red value k; a manifest joining each to its prompt id.
    Returns the manifest and, per image index, its prompt id."""
    folder.mkdir(parents=True, exist_ok=True)
    lines, images = [], []
    for row in rows:
        for seed in range(per_prompt):
            k = len(images)
            pixels = np.full((SIZE, SIZE, 3), 200, np.uint8)
            pixels[0, 0] = (k, 0, 0)
            name = f"{row['id']}-{seed}.png"
            Image.fromarray(pixels).save(folder / name)
            lines.append({"file": f"{folder.name}/{name}", "prompt": row["prompt"], "id": row["id"], "seed": seed})
            images.append((k, row["id"]))
    manifest = folder.parent / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    return manifest, images


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """`--judge vqa` loads the stub instead of a model: set `holder["no"]` before scoring."""
    holder: dict[str, Any] = {"no": {}}

    def load(model: str, **kwargs: Any) -> StubVqa:
        holder["model"] = StubVqa(holder["no"])
        return holder["model"]

    monkeypatch.setattr("sdeval.judges.vqa.load_vqa_model", load)
    return holder


def _score(tmp_path: Path, suite: Path, manifest: Path, metrics: str, *extra: object, code: int = 0) -> dict[str, Any]:
    out = tmp_path / "results.json"
    result = _run("score", tmp_path / "images", "--metrics", metrics, "--judge", "vqa", "--suite", suite,
                  "--prompts", manifest, "--no-cache", "--workers", 0, "-o", out, *extra)  # fmt: skip
    assert result.exit_code == code, result.output
    (cell,) = json.loads(out.read_text())["cells"]
    return cell


# -- (1) a suite's question sets, asked without --questions --------------------------------------------------------


def test_vqa_asks_the_suites_question_set_without_questions(tmp_path: Path, stub: dict[str, Any]) -> None:
    header, rows = _shipped("dsg-1k", n=3)
    suite = _write_suite(tmp_path / "dsg-slice.jsonl", header, rows)
    manifest, _ = _images(tmp_path / "images", rows)
    cell = _score(tmp_path, suite, manifest, "adherence")
    asked = {q for _, q in stub["model"].asked}
    assert asked == {q["question"] for row in rows for q in row["questions"]["dsg"]}
    questions = cell["protocol"]["judge"]["questions"]
    assert questions["set"] == "dsg" and questions["format"] == "dsg" and questions["path"].endswith("#dsg")
    assert questions["n"] == sum(len(row["questions"]["dsg"]) for row in rows)
    # Each image takes its row's category (DSG's dataset category), not the question format.
    per_image = {r["prompt_id"]: r for r in cell["per_image"]}
    assert {pid: per_image[pid]["category"] for pid in per_image} == {r["id"]: r["category"] for r in rows}


def test_questions_picks_another_set_by_name_and_a_file_still_wins(tmp_path: Path, stub: dict[str, Any]) -> None:
    header, rows = _shipped("tifa160", n=2)
    header["suite"]["question_sets"]["mine"] = {"format": "dsg", "description": "a second set"}
    for row in rows:
        row["questions"]["mine"] = [{"qid": "1", "question": f"Is this {row['id']}?"}]
    suite = _write_suite(tmp_path / "tifa-slice.jsonl", header, rows)
    manifest, _ = _images(tmp_path / "images", rows)
    # The default is the first set the header declares that holds questions: dsg.
    assert _score(tmp_path, suite, manifest, "adherence")["protocol"]["judge"]["questions"]["set"] == "dsg"
    cell = _score(tmp_path, suite, manifest, "adherence", "--questions", "mine")
    assert cell["protocol"]["judge"]["questions"]["set"] == "mine"
    assert {q for _, q in stub["model"].asked} == {f"Is this {row['id']}?" for row in rows}
    # A file of that name wins, as a suite file does over a built-in name.
    record = {"item_id": rows[0]["id"], "proposition_id": 1, "question_natural_language": "Is it?"}
    (tmp_path / "mine").write_text(json.dumps([record]))
    with pytest.MonkeyPatch.context() as m:
        m.chdir(tmp_path)
        cell = _score(tmp_path, suite, manifest, "adherence", "--questions", "mine")
    assert "set" not in cell["protocol"]["judge"]["questions"] and stub["model"].asked[-1][1] == "Is it?"
    args = ("score", tmp_path / "images", "--metrics", "adherence", "--judge", "vqa", "--suite", suite, "--prompts",
            manifest, "--no-cache", "--workers", 0, "-o", tmp_path / "x.json")  # fmt: skip
    result = _run(*args, "--questions", "tifa")  # declared, but only `suites build` fills it
    assert result.exit_code != 0
    assert "suite tifa160: question set 'tifa' is empty" in result.output
    result = _run(*args, "--questions", "dgs")
    assert result.exit_code == 2
    assert "--questions dgs: no such file, nor a question set of suite tifa160 (its sets: dsg, tifa, mine)" in (
        result.output
    )


# -- (2) the scores under the benchmark's name, against a hand computation -----------------------------------------


def test_dsg_score_is_dsgs_rule_averaged_over_images(tmp_path: Path, stub: dict[str, Any]) -> None:
    header, rows = _shipped("dsg-1k", ids=["whoops_5", "localized_narratives_95"])
    suite = _write_suite(tmp_path / "dsg-slice.jsonl", header, rows)
    manifest, _ = _images(tmp_path / "images", rows, per_prompt=2)
    # Images 0, 1: whoops_5 (q1 cube, q2 purple <- 1, q3 ten squares <- 1); 2, 3: localized_narratives_95 (q1 rocks,
    # q2 <- 1, q3 <- 1, q4 ground, q5 <- 1, 4).
    stub["no"].update({
        0: {"Is there a rubix cube?"},  # q1 no: q2, q3 void -> 0/3
        1: {"Is the rubix cube purple?"},  # 2/3
        2: {"Is there a ground?"},  # q4 no: q5 void -> 3/5
        3: set(),  # 5/5
    })  # fmt: skip
    cell = _score(tmp_path, suite, manifest, "dsg,adherence")
    expected = [0.0, 2 / 3, 3 / 5, 1.0]
    dsg = cell["metrics"]["dsg"]
    assert dsg["value"] == pytest.approx(np.mean(expected)) and dsg["n"] == 4 and dsg["n_prompts"] == 2
    by_path = {r["path"]: r["dsg_score"] for r in cell["per_image"]}
    names = ["whoops_5-0.png", "whoops_5-1.png", "localized_narratives_95-0.png", "localized_narratives_95-1.png"]
    assert [by_path[n] for n in names] == pytest.approx(expected)
    assert dsg["categories"]["defying"]["score"] == pytest.approx(1 / 3)  # whoops_5's category
    protocol = cell["protocol"]["dsg"]
    assert protocol["benchmark"].startswith("DSG score") and protocol["as_published"] is False
    assert "StubVqa" in protocol["judge"] and "questions dsg" in protocol["judge"]
    assert any("P(yes) >= 0.5" in d for d in protocol["differs"])
    # TIFA's score needs TIFA's questions: said, not computed on DSG's.
    cell = _score(tmp_path, suite, manifest, "tifa", code=3)  # incomplete: the reason is in the results
    assert cell["metrics"]["tifa"]["value"] is None
    assert "tifa needs TIFA's questions, and the judge asked dsg questions" in cell["metrics"]["tifa"]["skipped"]


def test_tifa_score_and_accuracy_by_element_type(tmp_path: Path, stub: dict[str, Any]) -> None:
    header, rows = _shipped("tifa160", n=2)
    for row in rows:
        row["questions"]["tifa"] = [
            {"qid": "1", "question": f"Is there a thing in {row['id']}?", "kind": "object"},
            {"qid": "2", "question": f"What color is {row['id']}?", "answer": "red", "choices": ["red", "blue"],
             "kind": "color"},
            {"qid": "3", "question": f"How many in {row['id']}?", "answer": "2", "choices": ["2", "1", "3"],
             "kind": "counting"},
        ]  # fmt: skip
    suite = _write_suite(tmp_path / "tifa-slice.jsonl", header, rows)
    manifest, _ = _images(tmp_path / "images", rows)
    first, second = rows[0]["id"], rows[1]["id"]
    stub["no"].update({0: {f"What color is {first}?"}, 1: {f"Is there a thing in {second}?", f"How many in {second}?"}})
    cell = _score(tmp_path, suite, manifest, "tifa", "--questions", "tifa")
    tifa = cell["metrics"]["tifa"]
    assert tifa["value"] == pytest.approx(np.mean([2 / 3, 1 / 3]))
    assert tifa["accuracy_by_type"] == pytest.approx({"object": 0.5, "color": 0.5, "counting": 0.5})
    assert cell["protocol"]["tifa"]["benchmark"].startswith("TIFA score")


def test_dpg_score_follows_ellas_rule_per_prompt_times_100(tmp_path: Path, stub: dict[str, Any]) -> None:
    header, rows = _shipped("dpg-bench", n=2)
    for row in rows:
        row["questions"] = {"dpg": [
            {"qid": "1", "question": f"Is there a field {row['id']}?", "label": "entity - whole (field)"},
            {"qid": "2", "question": f"Is the field green {row['id']}?", "parents": ["1"],
             "label": "attribute - color (field, green)"},
            {"qid": "3", "question": f"Is the field wet {row['id']}?", "parents": ["2"],
             "label": "attribute - texture (field, wet)"},
        ]}  # fmt: skip
    suite = _write_suite(tmp_path / "dpg-slice.jsonl", header, rows)
    manifest, _ = _images(tmp_path / "images", rows, per_prompt=4)
    a, b = rows[0]["id"], rows[1]["id"]
    stub["no"].update({
        0: {f"Is there a field {a}?"},  # 1 no -> 2 zeroed -> 3 zeroed (DSG's rule would keep 3): 0
        1: {f"Is the field green {a}?"},  # 2 no -> 3 zeroed: 1/3
        2: set(),  # 1
        3: {f"Is the field wet {a}?"},  # 2/3
        4: {f"Is there a field {b}?", f"Is the field green {b}?", f"Is the field wet {b}?"},  # 0
    })  # fmt: skip
    cell = _score(tmp_path, suite, manifest, "dpg,dsg")
    dpg = cell["metrics"]["dpg"]
    first, second = np.mean([0, 1 / 3, 1, 2 / 3]), np.mean([0, 1, 1, 1])
    assert dpg["value"] == pytest.approx(100 * np.mean([first, second])) and dpg["n_prompts"] == 2
    image = next(r for r in cell["per_image"] if r["path"] == f"{a}-0.png")
    assert image["dpg_score"] == 0.0 and image["dsg_score"] == pytest.approx(1 / 3)  # the chain: ELLA's rule, DSG's
    # Categories: answers before the rule, every image: entity 6 of 8 yes; attribute 12 of 16.
    assert dpg["l1"] == pytest.approx({"attribute": 100 * 12 / 16, "entity": 100 * 6 / 8})
    assert dpg["l2"]["attribute - color"] == pytest.approx(100 * 6 / 8)
    protocol = cell["protocol"]["dpg"]
    assert protocol["benchmark"].startswith("DPG-Bench score") and not protocol["as_published"]
    assert any("first row" in d for d in protocol["differs"])


def test_geneval_overall_is_the_mean_of_its_six_tags(tmp_path: Path, stub: dict[str, Any]) -> None:
    header, rows = _shipped("geneval")
    picked: list[dict] = []
    for tag in ("single_object", "two_object", "counting", "colors", "position", "color_attr"):
        picked += [r for r in rows if r["category"] == tag][: 1 if tag != "counting" else 3]
    suite = _write_suite(tmp_path / "geneval-slice.jsonl", header, picked)
    manifest, _ = _images(tmp_path / "images", picked)
    # Truthful answers (an exclude's question expects "no"), then the two_object image and two of the three counting
    # ones fail their first question: tags 1, 0, 1/3, 1, 1, 1.
    questions = [spec_questions(parse_spec(row["spec"])) for row in picked]
    for k, asked in enumerate(questions):
        stub["no"][k] = {q.text for q in asked if q.answer == "no"} | ({asked[0].text} if k in (1, 3, 4) else set())
    cell = _score(tmp_path, suite, manifest, "geneval,adherence")
    per_image = {r["prompt_id"]: r["adherence_passed"] for r in cell["per_image"]}
    tags = {r["id"]: r["category"] for r in picked}
    by_tag = {t: np.mean([per_image[i] for i in per_image if tags[i] == t]) for t in set(tags.values())}
    geneval = cell["metrics"]["geneval"]
    assert geneval["value"] == pytest.approx(np.mean(list(by_tag.values()))) == pytest.approx((4 + 1 / 3) / 6)
    assert geneval["categories"]["counting"]["accuracy"] == pytest.approx(1 / 3)
    assert geneval["value"] == pytest.approx(cell["metrics"]["adherence"]["value"])  # GenEval's formula, as adherence
    assert cell["protocol"]["geneval"]["benchmark"].startswith("GenEval overall")
    assert any("judged by the vqa judge" in d for d in cell["protocol"]["geneval"]["differs"])
    # Without one of the six tags there is no GenEval overall.
    suite = _write_suite(tmp_path / "five.jsonl", header, [r for r in picked if r["category"] != "position"])
    (tmp_path / "images" / f"{next(r['id'] for r in picked if r['category'] == 'position')}-0.png").unlink()
    cell = _score(tmp_path, suite, manifest, "geneval", code=3)
    assert "no image of position" in cell["metrics"]["geneval"]["skipped"]
