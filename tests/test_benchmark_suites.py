"""The public benchmarks as built-in suites: exact counts, the pinned originals (repository, commit, sha256) each
shipped file records, the format 2 fields, and `sdeval suites build NAME --from FILE` for the files not shipped."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from sdeval.cli import main
from sdeval.core.errors import ConfigError
from sdeval.suites import benchmarks, load_suite
from sdeval.suites.builtin import BENCHMARKS, BUILTIN, GENERATED, builtin_path
from sdeval.suites.load import parse_suite

# (repository, path, commit, sha256 of the original bytes) of every shipped original.
SHIPPED = {
    "geneval": [("djghosh13/geneval", "prompts/evaluation_metadata.jsonl", "af4902f24d3ca90ebbb446dd9891a59e0f82725f",
                 "5c48e0813e812e3c373fa5c8ed07a8f0a483be30272b4427b0559c8048e67c13")],
    "partiprompts": [("google-research/parti", "PartiPrompts.tsv", "5a657978134374ce28973948331b319adef164bd",
                      "fab29e41bb512a169b56acab4cf2a41dcb675e285df2efcde6640c7dd3c440eb")],
    "dsg-1k": [("j-min/DSG", "dsg/data/dsg-1k-anns.csv", "7330119a39f76ff90e619a8bd3ff321e71aa986b",
                "b7ce06ea8a0478ccfd8fba105ecd26d7d301eb99d5c412987546c4cc8e08917a")],
    "tifa160": [("Yushi-Hu/tifa", "human_annotations/human_annotations.json",
                 "8e37050f44ab4ee681e4251f3c8a9d4cc86e901e",
                 "1e41c66e78b7f1e74e8a5e86251f813498def7dd8bc3019c24ae8d56c57b349f"),
                ("j-min/DSG", "dsg/data/tifa160-dev-anns.csv", "7330119a39f76ff90e619a8bd3ff321e71aa986b",
                 "5f79461a24112992084b8e785209b0c7c6fba14a9cd3a0d5437316e3f44da886")],
    "dpg-bench": [("TencentQQGYLab/ELLA", "dpg_bench/prompts", "3c228f1dc6c4d3cad0a47493816151a419f14db3",
                   "317085a5cddf9620595bb38cba7b9fa25ecfb081846bc91b840c98366d46f56e")],
    "mlperf-coco2014": [("mlcommons/inference", "text_to_image/coco2014/captions/captions_source.tsv",
                         "b66003e10e2db4b8c36a448b0545ec90fcc6e9e9",
                         "2eeb95637b30fe5af26dd644bafa7affe4e5472ad0bda32d0feb1bd261280d5e")],
    "t2i-compbench": [("Karine-Huang/T2I-CompBench", f"examples/dataset/{c}_val.txt",
                       "7728deac05e17903b3145befd9b7207c7c019573", sha) for c, sha in [
        ("color", "1e37a12c1861bf6b11623eaffb0bf6d6eeea9702caf45b95d040f1721bba7f4f"),
        ("shape", "37e1a276906c7ea9516cbd7ac8501be896006c0c17ca7344f260562834455bae"),
        ("texture", "fbb5363515b4a28009e360afaaaf389d2dd2289e50dbb0c6ef4ea0c7fe4f3d4f"),
        ("spatial", "8707a1d7e42ce3002d95363cf55f74bd043c843ae27108f5125aaaa7840ca988"),
        ("non_spatial", "04c56cc9ac441dc9ea6c5157652058bd1635b5308526dd31bb29a1caab9a758d"),
        ("complex", "1b808018b8d9916db3d47d5aa2ef18377a3549a56901a474156f799824cdf3b4"),
        ("3d_spatial", "c9953597315f36a5fcb41291bb19bdc6ab5f64a0fa760d691b4854a73f5d1fe9"),
        ("numeracy", "dad8df141604b70ba7554bec724e3db0a80023680769b5c514854ea2d2527bbe"),
    ]],
}  # fmt: skip
# The files the public snapshots lack: the user's copy, checked by git's object id.
NOT_SHIPPED = {
    "tifa160": ("Yushi-Hu/tifa", "tifa_v1.0/tifa_v1.0_question_answers.json",
                "6a563f9c157e5b2a24b9f4936edd3934a8a70add"),
    "dpg-bench": ("TencentQQGYLab/ELLA", "dpg_bench/dpg_bench.csv", "98457fc9901943f51ff9a30367250fc292533bed"),
}  # fmt: skip


def test_every_benchmark_is_built_in_after_the_generated_suites() -> None:
    assert BUILTIN == GENERATED + BENCHMARKS
    assert tuple(benchmarks.BY_ID) == BENCHMARKS
    for name in BENCHMARKS:
        assert builtin_path(name).name == f"{name}.jsonl.gz" and builtin_path(name).is_file()
        assert load_suite(name).source == f"builtin:{name}"


@pytest.mark.parametrize("name", BENCHMARKS)
def test_each_shipped_file_records_its_pinned_originals(name: str) -> None:
    suite = load_suite(name)
    assert suite.format == 2 and suite.id == name and suite.version == "1" and suite.name and suite.notes
    shipped = [(s["repo"], s["path"], s["commit"], s["sha256"]) for s in suite.sources if s["shipped"]]
    assert shipped == SHIPPED[name]
    for source in suite.sources:
        assert source["license"] in ("MIT", "Apache-2.0") and source["prompts_license"]
        assert len(source["git_object"]) == 40
    missing = [(s["repo"], s["path"], s["git_object"]) for s in suite.sources if not s["shipped"]]
    assert missing == ([NOT_SHIPPED[name]] if name in NOT_SHIPPED else [])
    # The header is the module's record, byte for byte.
    assert suite.sources == tuple(s.to_json() for s in benchmarks.BY_ID[name].sources)


def test_exact_counts() -> None:
    geneval = load_suite("geneval")
    assert len(geneval.prompts) == 553
    assert geneval.categories == {"single_object": 80, "two_object": 99, "counting": 80, "colors": 94,
                                  "position": 100, "color_attr": 100}  # fmt: skip
    assert all(p.spec is not None and p.spec.tag == p.category for p in geneval.prompts)
    assert [p.id for p in geneval.prompts[:2]] == ["00000", "00001"] and geneval.prompts[-1].id == "00552"

    parti = load_suite("partiprompts")
    assert len(parti.prompts) == 1632 and len(parti.categories) == 12 and len(parti.challenges) == 11
    assert parti.categories["Animals"] == 314 and parti.challenges["Fine-grained Detail"] == 312
    assert sum(1 for p in parti.prompts if dict(p.meta).get("note")) == 190

    t2i = load_suite("t2i-compbench")
    assert t2i.categories == dict.fromkeys(benchmarks.T2I_CATEGORIES, 300)
    color = [p.prompt for p in t2i.prompts if p.category == "color"]
    assert len(set(color)) == 295  # the version the papers used: 5 texts repeat
    assert not any(p.prompt.endswith(("\r", "\n")) for p in t2i.prompts)

    dsg = load_suite("dsg-1k")
    assert len(dsg.prompts) == 1060 and len({p.prompt for p in dsg.prompts}) == 1059
    assert dsg.question_counts() == {"dsg": 8182}
    assert dsg.categories == {"defying": 100, "paragraph": 200, "pose": 100, "relation": 100, "count": 100,
                              "real_user": 200, "tifa": 160, "text": 100}  # fmt: skip
    whoops = next(p for p in dsg.prompts if p.id == "whoops_5")
    questions = whoops.question_set("dsg")
    assert questions is not None and questions[1].parents == ("1",) and questions[1].kind == "attribute"

    tifa = load_suite("tifa160")
    assert len(tifa.prompts) == 160 and tifa.question_counts() == {"dsg": 841, "tifa": 0}
    assert tifa.categories == {"coco": 84, "paintskill": 15, "partiprompt": 51, "drawbench": 10}

    dpg = load_suite("dpg-bench")
    assert len(dpg.prompts) == 1065 and len({p.prompt for p in dpg.prompts}) == 1065
    assert dpg.question_counts() == {"dpg": 0}

    coco = load_suite("mlperf-coco2014")
    assert [p.id for p in coco.prompts] == [str(i) for i in range(5000)]
    assert len({p.prompt for p in coco.prompts}) == 4965
    assert dict(coco.prompts[0].meta) == {"caption_id": 70, "image_id": 227049,
                                          "file_name": "COCO_val2014_000000227049.jpg"}  # fmt: skip


def test_t2i_compbench_records_both_versions_of_color_val() -> None:
    color = benchmarks.BY_ID["t2i-compbench"].source("color")
    assert color.sha256 == "1e37a12c1861bf6b11623eaffb0bf6d6eeea9702caf45b95d040f1721bba7f4f"
    assert "1634259756dbc77d13093d907d414480080ec9790a8c97ad09efaea7b2534f2d" in color.note
    assert "2025-09-03" in color.note and any("before 2025-09-03" in n for n in load_suite("t2i-compbench").notes)


def test_conversions_keep_the_text_and_line_ends() -> None:
    # Lines as T2I-CompBench writes them: CRLF with a final newline, or LF with none.
    assert benchmarks._lines(b"a red cup\r\na blue cup\r\n") == ["a red cup", "a blue cup"]
    assert benchmarks._lines(b"a red cup\na blue cup") == ["a red cup", "a blue cup"]
    rows = benchmarks.partiprompts({"tsv": b'Prompt\tCategory\tChallenge\tNote\nA "quoted" sign\tArts\tBasic\t\n'})
    assert rows == [{"id": "0000", "prompt": 'A "quoted" sign', "category": "Arts", "challenge": "Basic"}]


def _dsg_csv(rows: list[tuple[str, str, str, str, str]]) -> bytes:
    head = "item_id,text,keywords,proposition_id,dependency,category_broad,category_detailed,tuple"
    head += ",question_natural_language"
    body = [f'{item},{text},k,{qid},"{dep}",entity,whole,t,{question}' for item, text, qid, dep, question in rows]
    return ("\n".join([head, *body]) + "\n").encode()


def test_dsg_questions_read_as_dsgs_own_code_reads_them() -> None:
    items = benchmarks.dsg_questions(_dsg_csv([
        ("a", "a cat", "1", "0", "Is there a cat?"),
        ("a", "a cat", "2", "1,2", "Is the cat black?"),  # depends on itself: that parent goes
        ("a", "a cat", "3", "9", "Is it night?"),  # a parent the item lacks goes
        ("b", "a dog", "1", "0", "Is there a dog?"),
        ("b", "a dog", "2", "1, right", "Is the dog right?"),  # not ids: DSG keeps no dependency for item b
        ("b", "a dog", "3", "1", "Is the dog brown?"),
        ("b", "a dog", "4", "1", " "),  # blank: left out
    ]))  # fmt: skip
    assert [q.get("parents") for q in items["a"][1]] == [None, ["1"], None]
    assert [q.get("parents") for q in items["b"][1]] == [None, None, None]


def _pin(monkeypatch: pytest.MonkeyPatch, name: str, key: str, data: bytes) -> None:
    """Make `data` the pinned original `key` of benchmark `name`, for this test only."""
    bench = benchmarks.BY_ID[name]
    pinned = {"git_object": benchmarks.git_object_id(data)}
    if bench.source(key).sha256 is not None:
        pinned["sha256"] = hashlib.sha256(data).hexdigest()
    sources = tuple(dataclasses.replace(s, **pinned) if s.key == key else s for s in bench.sources)
    monkeypatch.setitem(benchmarks.BY_ID, name, dataclasses.replace(bench, sources=sources))


def _tifa_copy(ids: list[str]) -> bytes:
    records = [{"id": i, "caption": "c", "question": "is there a cat?", "choices": ["yes", "no"], "answer": "yes",
                "element_type": "animal/human", "element": "cat"} for i in ids]  # fmt: skip
    return json.dumps(records).encode()


def test_build_checks_the_copy_and_adds_its_questions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [p.id for p in load_suite("tifa160").prompts]
    copy = tmp_path / "tifa_v1.0_question_answers.json"
    copy.write_bytes(_tifa_copy([*ids, "coco_1"]))
    sha256 = hashlib.sha256(copy.read_bytes()).hexdigest()
    # Not the pinned file: one line naming the file, what was expected and what it is; exit code 2; nothing written.
    result = CliRunner().invoke(
        main, ["suites", "build", "tifa160", "--from", str(copy), "-o", str(tmp_path / "t.jsonl")]
    )
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1
    assert "not Yushi-Hu/tifa@8e37050f44ab tifa_v1.0/tifa_v1.0_question_answers.json" in result.stderr
    assert f"git object 6a563f9c157e5b2a24b9f4936edd3934a8a70add); this file has sha256 {sha256}" in result.stderr
    assert not (tmp_path / "t.jsonl").exists()
    # With the pinned id made this file's, the conversion runs: TIFA's questions join each prompt by id.
    _pin(monkeypatch, "tifa160", "tifa", copy.read_bytes())
    out = tmp_path / "tifa160.jsonl.gz"
    result = CliRunner().invoke(main, ["suites", "build", "tifa160", "--from", str(copy), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"{out}: tifa160 (160 prompts; question sets: dsg 841 (dsg), tifa 160 (tifa))"
    suite = load_suite(out)
    assert suite.question_counts() == {"dsg": 841, "tifa": 160}
    built = next(s for s in suite.sources if not s["shipped"])
    assert built["sha256"] == sha256  # recorded once the copy is the pinned file
    question = suite.prompts[0].question_set("tifa")
    assert question is not None and question[0].choices == ("yes", "no") and question[0].kind == "animal/human"
    # Prompts the copy lacks: one line saying how many.
    copy.write_bytes(_tifa_copy(ids[1:]))
    _pin(monkeypatch, "tifa160", "tifa", copy.read_bytes())
    with pytest.raises(ConfigError, match=r"^no TIFA questions for 1 prompt\(s\), e\.g\. 'coco_669925'$"):
        benchmarks.build_from_copy("tifa160", copy.read_bytes(), str(copy))


def test_build_dpg_bench_from_a_dsg_style_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [p.id for p in load_suite("dpg-bench").prompts]
    data = _dsg_csv([(i, "x", "1", "0", "Is there a cat?") for i in ids] + [(ids[0], "x", "2", "1", "Is it red?")])
    csv_path = tmp_path / "dpg_bench.csv"
    csv_path.write_bytes(data)
    with pytest.raises(ConfigError, match=r"not TencentQQGYLab/ELLA@3c228f1dc6c4 dpg_bench/dpg_bench.csv"):
        benchmarks.build_from_copy("dpg-bench", data, str(csv_path))
    _pin(monkeypatch, "dpg-bench", "csv", data)
    text = benchmarks.build_from_copy("dpg-bench", data, str(csv_path))
    suite, problems = parse_suite(text.encode(), tmp_path / "dpg-bench.jsonl")
    assert problems == [] and suite.question_counts() == {"dpg": len(ids) + 1}
    first = suite.prompts[0].question_set("dpg")
    assert first is not None and first[1].parents == ("1",)


def test_build_refuses_what_it_cannot_build(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^suites build: no benchmark 'smoke' \(benchmarks: geneval, "):
        benchmarks.build_from_copy("smoke", b"", "x")
    with pytest.raises(ConfigError, match=r"^suites build: t2i-compbench is made from 8 files and ships with sdeval$"):
        benchmarks.build_from_copy("t2i-compbench", b"", "x")
    with pytest.raises(ConfigError, match=r"^x: not djghosh13/geneval@af4902f24d3c prompts/evaluation_metadata"):
        benchmarks.build_from_copy("geneval", b"{}\n", "x")


def test_rebuilding_from_a_shipped_original_gives_the_shipped_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    # GenEval's original is its rows less the ids: rebuilt from it, the suite is the shipped one.
    rows = benchmarks.shipped_rows(benchmarks.BY_ID["geneval"])
    original = "".join(json.dumps({**r["spec"], "prompt": r["prompt"]}) + "\n" for r in rows).encode()
    _pin(monkeypatch, "geneval", "metadata", original)
    text = benchmarks.build_from_copy("geneval", original, "evaluation_metadata.jsonl")
    assert [json.loads(line) for line in text.splitlines()[1:]] == rows


def test_show_and_list_name_each_benchmark_as_the_literature_does() -> None:
    result = CliRunner().invoke(main, ["suites", "show", "t2i-compbench"])
    assert result.exit_code == 0, result.output
    assert "benchmark: T2I-CompBench (Huang et al., NeurIPS 2023) validation split" in result.stdout
    assert "  Karine-Huang/T2I-CompBench@7728deac05e1 examples/dataset/color_val.txt (MIT; sha256 1e37a12c" in (
        result.stdout
    )
    document = json.loads(CliRunner().invoke(main, ["suites", "show", "partiprompts", "--json"]).stdout)
    assert document["format"] == 2 and len(document["challenges"]) == 11
    assert document["prompts"][0] == {"id": "0000", "prompt": "bond", "category": "Abstract", "challenge": "Basic",
                                      "meta": {"note": "Biology-inspired concepts with multiple meanings"}}  # fmt: skip
    listed = CliRunner().invoke(main, ["suites", "list", "--json"])
    by_id: dict[str, Any] = {s["id"]: s for s in json.loads(listed.stdout)}
    assert by_id["dsg-1k"]["question_sets"] == {"dsg": {"format": "dsg", "description": by_id["dsg-1k"][
        "question_sets"]["dsg"]["description"], "n": 8182}}  # fmt: skip
    assert "format" not in by_id["smoke"]  # format 1 suites list as before


def test_format_2_keys_need_the_header_to_say_format_2(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text('{"suite": {"id": "s", "version": "1"}}\n{"id": "a", "prompt": "x", "challenge": "Basic"}\n')
    with pytest.raises(ConfigError, match=r"""s\.jsonl:2: unknown key 'challenge' \(a format 2 key: add "format": 2"""):
        load_suite(path)
    path.write_text(
        '{"suite": {"id": "s", "version": "1", "format": 2, "question_sets": {"q": {"format": "dsg"}}}}\n'
        '{"id": "a", "prompt": "x", "questions": {"q": [{"qid": "1", "question": "Is there x?", "parents": ["2"]}]}}\n'
        '{"id": "b", "prompt": "y", "questions": {"z": [{"qid": "1", "question": "Is there y?"}]}}\n'
    )
    suite, problems = parse_suite(path.read_bytes(), path)
    assert [p.at("s.jsonl") for p in problems] == [
        "s.jsonl:2: questions.q[0].parents: no question '2' in this set",
        "s.jsonl:3: questions.z: not a question set of the header's question_sets (q)",
    ]
    gz = tmp_path / "s.jsonl.gz"
    gz.write_bytes(gzip.compress(b'{"id": "a", "prompt": "x"}\n'))
    suite = load_suite(gz)
    assert suite.id == "s" and suite.sha256 == hashlib.sha256(b'{"id": "a", "prompt": "x"}\n').hexdigest()


def test_a_suites_question_set_loads_as_the_vqa_judge_reads_questions() -> None:
    from sdeval.core.errors import SdevalError
    from sdeval.judges.questions import score_answers, suite_questions

    suite = load_suite("dsg-1k")
    questions = suite_questions(suite, "dsg")
    assert questions.format == "dsg" and questions.identity()["n"] == 8182 and questions.identity()["prompts"] == 1060
    items = questions.lookup("whoops_5", None)
    assert items is not None and items[1].parents == ("1",) and items[1].binary
    # DSG's rule: a "no" to the parent voids the child.
    answered = score_answers(items[:2], [(0.1, 0.9), (0.9, 0.1)], threshold=0.5)
    assert [a.passed for a in answered] == [False, False]
    with pytest.raises(SdevalError, match=r"^suite tifa160: question set 'tifa' is empty"):
        suite_questions(load_suite("tifa160"), "tifa")
    with pytest.raises(SdevalError, match=r"^suite geneval: no question set 'dsg' \(its sets: none\)$"):
        suite_questions(load_suite("geneval"), "dsg")
