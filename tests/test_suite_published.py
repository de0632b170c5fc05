"""`sdeval suites show` says whether a suite's prompts are a benchmark's published prompt set: the built-ins, a
suite built from the user's copy and GenEval's own file are; a copy with one prompt changed differs (naming the
category); a user's own suite is no known benchmark; T2I-CompBench's color prompts are named by version."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from sdeval.cli import main
from sdeval.suites import benchmarks, load_suite
from sdeval.suites.builtin import BENCHMARKS, GENERATED
from sdeval.suites.published import FINGERPRINTS, VERSIONS, fingerprint, fingerprints, match

GENEVAL_FILE = (
    "djghosh13/geneval prompts/evaluation_metadata.jsonl @ af4902f24d3ca90ebbb446dd9891a59e0f82725f, "
    "sha256 5c48e0813e812e3c373fa5c8ed07a8f0a483be30272b4427b0559c8048e67c13"
)
# The 5 lines of T2I-CompBench's color_val.txt replaced on 2025-09-03 (Karine-Huang/T2I-CompBench commit 3310c2f,
# MIT), by 0-based line: the later file is the pinned one with these.
T2I_COLOR_2025 = {
    227: "a yellow taxi and a red tire",
    228: "a red taxi and a yellow tire",
    271: "A black and white cat sits in a black sink.",
    287: "Bathroom scene, white commode and matching brown sink on light white tone tiled floor.",
    299: "a black bathroom with a black and white shower curtain",
}


def _show(*args: str) -> str:
    result = CliRunner().invoke(main, ["suites", "show", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def _prompt_set(arg: str) -> dict[str, Any]:
    return json.loads(_show(arg, "--json"))["prompt_set"]


def _write(path: Path, name: str, rows: list[dict[str, Any]], header: bool = True) -> Path:
    lines = ([benchmarks.BY_ID[name].header()] if header else []) + rows
    path.write_text("".join(json.dumps(obj, ensure_ascii=False) + "\n" for obj in lines), encoding="utf-8")
    return path


def test_the_recorded_fingerprints_are_the_shipped_prompts() -> None:
    for name in BENCHMARKS:
        suite = load_suite(name)
        assert fingerprints(suite) == FINGERPRINTS[name], name
        found = match(suite)
        assert (found.status, found.benchmark, found.name) == ("published", name, benchmarks.BY_ID[name].name)
    for name in GENERATED:  # compositional has GenEval's templates, not its prompts
        assert match(load_suite(name)).to_json() == {"status": "unknown", "benchmark": None}


def test_show_names_the_published_file() -> None:
    out = _show("geneval")
    assert "prompt set: GenEval (Ghosh et al., NeurIPS 2023 Datasets and Benchmarks): the published prompts\n" in out
    assert f"\n  published file: {GENEVAL_FILE}\n" in out
    tifa = _prompt_set("tifa160")
    assert tifa["status"] == "published" and [f["path"] for f in tifa["files"]] == [
        "human_annotations/human_annotations.json"
    ]
    assert tifa["categories"]["coco"] == {"status": "published", "n": 84, "published_n": 84}


def test_one_prompt_changed_differs_naming_its_category(tmp_path: Path) -> None:
    rows = benchmarks.shipped_rows(benchmarks.BY_ID["geneval"])
    changed = next(i for i, row in enumerate(rows) if row["category"] == "colors")
    rows[changed] = {**rows[changed], "prompt": "a photo of a turquoise giraffe"}
    path = _write(tmp_path / "geneval-edited.jsonl", "geneval", rows)
    out = _show(str(path))
    assert "prompt set: differs from the published file of GenEval (Ghosh et al., NeurIPS 2023" in out
    assert f"\n  published file: {GENEVAL_FILE}\n  prompts: 553 (published 553)\n" in out
    assert (
        f"\n  colors: 94 prompts (published 94): 1 not in the published file (first: id {rows[changed]['id']}), "
        "1 published prompt(s) missing\n" in out
    )
    assert "\n  as published: single_object, two_object, counting, position, color_attr\n" in out
    document = _prompt_set(str(path))
    assert document["status"] == "differs" and document["benchmark"] == "geneval"
    assert [c for c, v in document["categories"].items() if v["status"] != "published"] == ["colors"]
    # A plain file of the same rows with a category left out: still GenEval's prompts, one category missing.
    plain = [{"id": r["id"], "prompt": r["prompt"], "category": r["category"]} for r in rows]
    path = _write(tmp_path / "plain.jsonl", "geneval", [r for r in plain if r["category"] != "counting"], False)
    categories = _prompt_set(str(path))["categories"]
    assert categories["counting"] == {"status": "missing", "n": 0, "published_n": 80}
    assert categories["single_object"]["status"] == "published" and categories["colors"]["status"] == "differs"


def test_a_suite_built_from_the_users_copy_is_recognised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # TIFA160 with TIFA's own questions from the user's copy: another file, the same published prompts.
    ids = [p.id for p in load_suite("tifa160").prompts]
    records = [{"id": i, "question": "is there a cat?", "choices": ["yes", "no"], "answer": "yes"} for i in ids]
    copy = tmp_path / "tifa_v1.0_question_answers.json"
    copy.write_bytes(json.dumps(records).encode())
    bench = benchmarks.BY_ID["tifa160"]
    pinned = dataclasses.replace(bench.source("tifa"), git_object=benchmarks.git_object_id(copy.read_bytes()))
    sources = tuple(pinned if s.key == "tifa" else s for s in bench.sources)
    monkeypatch.setitem(benchmarks.BY_ID, "tifa160", dataclasses.replace(bench, sources=sources))
    out = tmp_path / "tifa160.jsonl.gz"
    result = CliRunner().invoke(main, ["suites", "build", "tifa160", "--from", str(copy), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert load_suite(out).sha256 != load_suite("tifa160").sha256
    shown = _show(str(out))
    assert "prompt set: TIFA160 (the TIFA v1.0 prompts with human judgments; Hu et al., ICCV 2023): the published" in (
        shown
    )
    assert "  published file: Yushi-Hu/tifa human_annotations/human_annotations.json @ 8e37050f44ab4ee681e4" in shown
    # GenEval's own metadata file, loaded as it is (ids from the content): GenEval's published prompts.
    rows = benchmarks.shipped_rows(benchmarks.BY_ID["geneval"])
    metadata = tmp_path / "evaluation_metadata.jsonl"
    metadata.write_text("".join(json.dumps({**r["spec"], "prompt": r["prompt"]}) + "\n" for r in rows))
    assert f"\n  published file: {GENEVAL_FILE}\n" in _show(str(metadata))


def test_a_users_own_suite_is_not_a_known_benchmark(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text('{"id": "a", "prompt": "a red cup", "category": "colors"}\n{"id": "b", "prompt": "a castle"}\n')
    assert "\nprompt set: not a known benchmark\n" in _show(str(path))
    assert _prompt_set(str(path)) == {"status": "unknown", "benchmark": None}
    # A format 2 file that names a benchmark but holds none of its prompts is compared with it.
    rows = [{"id": "x", "prompt": "a castle", "category": "color"}]
    document = _prompt_set(str(_write(tmp_path / "t2i.jsonl", "t2i-compbench", rows)))
    assert document["status"] == "differs" and document["categories"]["color"]["status"] == "differs"
    assert document["categories"]["shape"]["status"] == "missing"


def test_t2i_compbench_color_is_named_by_version(tmp_path: Path) -> None:
    out = _show("t2i-compbench")
    assert "the published prompts (color: before the 2025-09-03 change)\n" in out
    assert (
        "  published file: Karine-Huang/T2I-CompBench examples/dataset/color_val.txt @ "
        "7728deac05e17903b3145befd9b7207c7c019573, "
        "sha256 1e37a12c1861bf6b11623eaffb0bf6d6eeea9702caf45b95d040f1721bba7f4f "
        "(color: before the 2025-09-03 change: the file every number published before then used" in out
    )
    # The later file: the recorded fingerprint is that of the pinned texts with the 5 lines replaced.
    rows = benchmarks.shipped_rows(benchmarks.BY_ID["t2i-compbench"])
    color = [r for r in rows if r["category"] == "color"]
    for i, text in T2I_COLOR_2025.items():
        assert color[i]["id"] == f"color_{i:03d}" and color[i]["prompt"] != text
        color[i]["prompt"] = text
    later = VERSIONS[("t2i-compbench", "color")][1]
    assert fingerprint([r["prompt"] for r in color]) == later.fingerprint and len(set(T2I_COLOR_2025)) == 5
    document = _prompt_set(str(_write(tmp_path / "t2i-later.jsonl", "t2i-compbench", rows)))
    assert document["status"] == "published"
    assert document["categories"]["color"]["version"] == "after the 2025-09-03 change"
    color_file = document["files"][0]
    assert (color_file["commit"], color_file["sha256"]) == (
        "3310c2f1f43cc173505fc40cf6cc70762f090c07",
        "1634259756dbc77d13093d907d414480080ec9790a8c97ad09efaea7b2534f2d",
    )
    assert "numbers published before then used the earlier file" in color_file["note"]
    # Neither version: the color category differs.
    color[0]["prompt"] = "a green bench and a purple bowl"
    document = _prompt_set(str(_write(tmp_path / "t2i-other.jsonl", "t2i-compbench", rows)))
    assert document["status"] == "differs"
    assert document["categories"]["color"]["detail"] == (
        "6 not in the published file (first: id color_000), 6 published prompt(s) missing"
    )
