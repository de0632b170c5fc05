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
from sdeval.suites.builtin import builtin_path

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
            lines.append({"file": name, "prompt": row["prompt"], "id": row["id"], "seed": seed})
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


def _score(tmp_path: Path, suite: Path, manifest: Path, metrics: str, *extra: object) -> dict[str, Any]:
    out = tmp_path / "results.json"
    result = _run("score", tmp_path / "images", "--metrics", metrics, "--judge", "vqa", "--suite", suite,
                  "--prompts", manifest, "--no-cache", "--workers", 0, "-o", out, *extra)  # fmt: skip
    assert result.exit_code == 0, result.output
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
