"""Prompt suites: the format and its checks, GenEval's metadata file, the built-in suites and their generator,
`sdeval suites`, sketches, and the suite's identity in generation (recorded, never part of an image's identity)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from generate_fixtures import sdeval_cache_fixture, write_config  # noqa: F401  (registers the sdeval_cache fixture)

from sdeval.cli import main
from sdeval.core.errors import ConfigError
from sdeval.judges.rules import relative_position
from sdeval.suites import BUILTIN, CATEGORIES, RELATIONS, build, check_suite, compose, load_suite, parse_spec
from sdeval.suites.builtin import DATA_DIR, builtin_path
from sdeval.suites.sketches import CLASSES as SKETCH_CLASSES
from sdeval.suites.sketches import draw_sketch, sketch_bytes, sketch_file
from sdeval.suites.spec import Include, Spec

# A GenEval `evaluation_metadata.jsonl`, byte for byte as its create_prompts.py writes it (json.dumps per row).
GENEVAL_ROWS = [
    {"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"},
    {"tag": "two_object", "include": [{"class": "toilet", "count": 1}, {"class": "bicycle", "count": 1}],
     "prompt": "a photo of a toilet and a bicycle"},
    {"tag": "counting", "include": [{"class": "clock", "count": 2}], "exclude": [{"class": "clock", "count": 3}],
     "prompt": "a photo of two clocks"},
    {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}], "prompt": "a photo of a red car"},
    {"tag": "position", "include": [{"class": "dog", "count": 1}, {"class": "cat", "count": 1,
     "position": ["left of", 0]}], "prompt": "a photo of a cat left of a dog"},
    {"tag": "color_attr", "include": [{"class": "car", "count": 1, "color": "red"},
     {"class": "bench", "count": 1, "color": "blue"}], "prompt": "a photo of a red car and a blue bench"},
]  # fmt: skip


def _write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# --- the built-in suites and their generator ---------------------------------------------------------------------


def test_shipped_files_are_exactly_what_the_generator_writes(tmp_path: Path) -> None:
    written = build.build(tmp_path)
    assert sorted(p.name for p in written) == sorted(p.name for p in DATA_DIR.glob("*.jsonl"))
    for path in written:
        assert path.read_bytes() == (DATA_DIR / path.name).read_bytes(), path.name
    assert build.main(["--check"]) == 0
    assert (DATA_DIR / "__init__.py").is_file()  # a package, so wheels carry the data files
    (tmp_path / "smoke.jsonl").write_text("{}\n")
    assert build.main(["--check", "--out", str(tmp_path)]) == 1


def test_compositional_generator_is_deterministic() -> None:
    sizes = {"two_object": 30, "counting": 30, "color_attr": 30}
    first = compose.generate(compose.COCO, sizes, seed=7)
    assert first == compose.generate(compose.COCO, sizes, seed=7)
    assert first != compose.generate(compose.COCO, sizes, seed=8)
    # Asking for more than there are gives all of them, once each.
    tiny = compose.Vocabulary(classes=("circle", "square"), colors=("red", "blue"), counts=(1, 2))
    rows = compose.generate(tiny, {"counting": 100}, seed=0)
    assert sorted(r["prompt"] for r in rows) == sorted(
        ["a photo of one circle", "a photo of two circles", "a photo of one square", "a photo of two squares"]
    )


@pytest.mark.parametrize("name", ["compositional", "shapes", "sketch2image", "smoke"])
def test_generated_suites_have_six_categories_distinct_prompts_and_specs(name: str) -> None:
    suite = load_suite(name)
    assert suite.id == name and suite.version == "1" and suite.source == f"builtin:{name}"
    assert set(suite.categories) == set(CATEGORIES)
    texts = [p.prompt for p in suite.prompts]
    assert len(set(texts)) == len(texts)
    assert all(p.spec is not None and p.spec.tag == p.category for p in suite.prompts)


def test_compositional_covers_cocos_vocabulary() -> None:
    suite = load_suite("compositional")
    assert len(suite.prompts) >= 400
    classes = {i.cls for p in suite.prompts for i in p.spec.include}  # type: ignore[union-attr]
    assert classes <= set(compose.COCO_CLASSES)
    assert {i.cls for p in suite.prompts if p.category == "single_object" for i in p.spec.include} == set(  # type: ignore[union-attr]
        compose.COCO_CLASSES
    )
    colours = {i.color for p in suite.prompts for i in p.spec.include if i.color}  # type: ignore[union-attr]
    assert colours == set(compose.GENEVAL_COLORS)
    counts = {i.count for p in suite.prompts if p.category == "counting" for i in p.spec.include}  # type: ignore[union-attr]
    assert counts == {1, 2, 3, 4}
    relations = {i.position[0] for p in suite.prompts for i in p.spec.include if i.position}  # type: ignore[union-attr]
    assert relations == set(RELATIONS)
    # GenEval never colours a person.
    assert not any(i.cls == "person" and i.color for p in suite.prompts for i in p.spec.include)  # type: ignore[union-attr]


def test_shapes_suite_keeps_to_the_calibration_vocabulary() -> None:
    suite = load_suite("shapes")
    includes = [i for p in suite.prompts for i in p.spec.include]  # type: ignore[union-attr]
    assert {i.cls for i in includes} == {"circle", "square", "triangle"}
    assert (
        {i.color for i in includes if i.color}
        == set(build.SHAPES.colors)
        == {
            *("red", "green", "blue", "yellow"),
            *("purple", "orange", "black", "white"),
        }
    )
    assert {i.count for i in includes} == {1, 2, 3, 4}
    world = pytest.importorskip("sdeval.calibration.world")  # what the shapes checkpoint can draw
    assert {i.cls for i in includes} <= set(world.CLASSES)
    assert {i.color for i in includes if i.color} <= set(world.PALETTE)


# An independent reading of the prompt text (not the generator's own templates) to check each spec against.
_NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4}
_IRREGULAR = {"people": "person", "sheep": "sheep", "knives": "knife", "computer mice": "computer mouse"}
_CLASSES = set(compose.COCO_CLASSES) | {"circle", "square", "triangle"}


def _bare(noun: str) -> str:
    for measure in ("pair of ", "head of "):
        noun = noun.removeprefix(measure)
    assert noun in _CLASSES, noun
    return noun


def _one(phrase: str, color: str | None) -> str:
    """`an orange pair of skis` -> `skis`, checking the article and the colour."""
    article, rest = phrase.split(" ", 1)
    assert article == ("an" if rest[0] in "aeiou" else "a"), phrase
    if color is not None:
        assert rest.startswith(color + " "), phrase
        rest = rest[len(color) + 1 :]
    return _bare(rest)


def _many(phrase: str) -> str:
    if phrase in _IRREGULAR:
        return _IRREGULAR[phrase]
    for measure in ("pairs of ", "heads of "):
        if phrase.startswith(measure):
            return phrase[len(measure) :]
    for end in ("es", "s"):
        if phrase.endswith(end) and phrase[: -len(end)] in _CLASSES:
            return phrase[: -len(end)]
    raise AssertionError(f"not a plural of a known class: {phrase!r}")


def _check_text(text: str, spec: Spec) -> None:
    assert text.startswith("a photo of "), text
    body = text[len("a photo of ") :]
    inc = spec.include
    if spec.tag == "single_object":
        assert [(_one(body, None), 1)] == [(i.cls, i.count) for i in inc]
    elif spec.tag == "colors":
        assert _one(body, inc[0].color) == inc[0].cls and len(inc) == 1 and inc[0].count == 1
    elif spec.tag in ("two_object", "color_attr"):
        first, second = body.split(" and ")
        assert _one(first, inc[0].color) == inc[0].cls and _one(second, inc[1].color) == inc[1].cls
        assert spec.tag == "two_object" or (inc[0].color and inc[1].color)
    elif spec.tag == "counting":
        word, noun = body.split(" ", 1)
        n = _NUMBERS[word]
        cls = _bare(noun) if n == 1 else _many(noun)
        assert (inc[0].cls, inc[0].count) == (cls, n)
        assert [(e.cls, e.count) for e in spec.exclude] == [(cls, n + 1)]
    elif spec.tag == "position":
        (relation,) = [r for r in RELATIONS if f" {r} " in body]
        subject, reference = body.split(f" {relation} ")
        # GenEval's order: the reference object first, then the subject placed relative to include[0].
        assert inc[0].cls == _one(reference, None) and inc[0].position is None
        assert inc[1].cls == _one(subject, None) and inc[1].position == (relation, 0)
    else:
        raise AssertionError(spec.tag)


@pytest.mark.parametrize("name", ["compositional", "shapes", "sketch2image", "smoke"])
def test_each_generated_spec_says_what_its_text_says(name: str) -> None:
    for prompt in load_suite(name).prompts:
        assert prompt.spec is not None
        _check_text(prompt.prompt, prompt.spec)


def test_creative_and_smoke_suites() -> None:
    creative = load_suite("creative")
    assert 90 <= len(creative.prompts) <= 110
    assert set(creative.categories) == {"character", "scenery", "cover", "product", "style"}
    assert all(p.spec is None and p.tags for p in creative.prompts)
    assert len({p.prompt for p in creative.prompts}) == len(creative.prompts)
    assert any("nekomimi" in p.prompt for p in creative.prompts)
    assert sum("anime" in p.tags for p in creative.prompts) >= 10
    smoke = load_suite("builtin:smoke")
    assert [p.category for p in smoke.prompts] == list(CATEGORIES)


# --- the file format ----------------------------------------------------------------------------------------------


def test_a_geneval_metadata_file_loads_as_is(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "evaluation_metadata.jsonl", GENEVAL_ROWS)
    suite = load_suite(path)
    assert suite.id == "evaluation_metadata" and suite.version is None
    assert [p.category for p in suite.prompts] == [r["tag"] for r in GENEVAL_ROWS]
    assert [p.prompt for p in suite.prompts] == [r["prompt"] for r in GENEVAL_ROWS]
    for prompt, row in zip(suite.prompts, GENEVAL_ROWS, strict=True):
        assert prompt.spec == parse_spec(row)
        assert prompt.id.startswith("g-") and len(prompt.id) == 12
    assert suite.prompts[4].spec.include[1].position == ("left of", 0)  # type: ignore[union-attr]
    # Ids come from each row's content: moving lines and adding one leaves them as they were.
    ids = {p.prompt: p.id for p in suite.prompts}
    cup = {"tag": "single_object", "include": [{"class": "cup", "count": 1}], "prompt": "a photo of a cup"}
    moved = [*GENEVAL_ROWS[::-1], cup]
    again = load_suite(_write_jsonl(tmp_path / "moved.jsonl", moved))
    assert {p.prompt: p.id for p in again.prompts if p.prompt in ids} == ids
    assert again.sha256 != suite.sha256


def test_header_rows_and_yaml(tmp_path: Path) -> None:
    rows = [
        {"suite": {"id": "mine", "version": "2", "description": "test suite"}},
        {"id": "p1", "prompt": "a cat", "category": "animals", "tags": ["pets"], "negative_prompt": "blurry"},
        {"id": "p2", "prompt": "a photo of two dogs", "spec": {"tag": "counting", "include": [
            {"class": "dog", "count": 2}], "exclude": [{"class": "dog", "count": 3}]}},
    ]  # fmt: skip
    suite = load_suite(_write_jsonl(tmp_path / "s.jsonl", rows))
    assert (suite.id, suite.version, suite.description) == ("mine", "2", "test suite")
    assert suite.identity.to_json() == {"id": "mine", "version": "2", "sha256": suite.sha256}
    p1, p2 = suite.prompts
    assert (p1.category, p1.tags, p1.negative_prompt, p1.spec) == ("animals", ("pets",), "blurry", None)
    assert p2.category == "counting" and p2.spec is not None and p2.spec.include[0].cls == "dog"
    yaml_text = (
        "id: mine\nversion: '2'\ndescription: test suite\nprompts:\n"
        "  - {id: p1, prompt: a cat, category: animals, tags: [pets], negative_prompt: blurry}\n"
        "  - id: p2\n    prompt: a photo of two dogs\n    tag: counting\n"
        "    include: [{class: dog, count: 2}]\n    exclude: [{class: dog, count: 3}]\n"
    )
    (tmp_path / "s.yaml").write_text(yaml_text)
    from_yaml = load_suite(tmp_path / "s.yaml")
    assert [p.to_json() for p in from_yaml.prompts] == [p.to_json() for p in suite.prompts]
    assert [p.line for p in from_yaml.prompts] == [5, 6]
    (tmp_path / "bad.yaml").write_text(yaml_text.replace("prompt: a photo of two dogs", "prompt: [x"))
    with pytest.raises(ConfigError, match=r"^suite: bad\.yaml:\d+: not valid YAML"):
        load_suite(tmp_path / "bad.yaml")
    (tmp_path / "bad2.yaml").write_text(yaml_text.replace("count: 2}", "count: zero}"))
    with pytest.raises(ConfigError, match=r"^suite: bad2\.yaml:6: include\[0\]\.count: expected an integer >= 1"):
        load_suite(tmp_path / "bad2.yaml")


BAD_SUITE = [
    ('{"suite": {"id": "my suite", "version": "1"}}', 1, "suite.id: expected a file-name-safe id"),
    ('{"id": "a", "prompt": "a cat"}', None, None),
    ('{"id": "a", "prompt": "a dog"}', 3, "id 'a' repeats line 2"),
    ("{not json", 4, "not valid JSON"),
    ('{"prompt": "no id"}', 5, "missing 'id' (only rows with a spec may leave it out)"),
    ('{"id": "b", "prompt": "x", "seed": 3}', 6, "unknown key 'seed'"),
    ('{"id": "c", "prompt": "x", "spec": {"tag": "counting", "include": [{"class": "cat", "count": 0}]}}', 7,
     "spec.include[0].count: expected an integer >= 1, got 0"),
    ('{"id": "d", "prompt": "x", "spec": {"tag": "position", "include": [{"class": "cat"}, '
     '{"class": "dog", "position": ["beside", 0]}]}}', 8, "spec.include[1].position: relation must be one of"),
    ('{"id": "e", "prompt": "x", "init_image": "missing.png"}', 9, "init_image: no such file: missing.png"),
    ('{"id": "f", "prompt": "x", "init_image": "sketch:f"}', 10, "init_image: a sketch is drawn from the row's spec"),
    ('{"id": "g", "prompt": "x", "category": "colors", "tag": "single_object", "include": [{"class": "cat"}]}', 11,
     "category: 'colors' differs from the spec's tag 'single_object'"),
    ('{"id": "h", "prompt": "", "tags": "pets"}', 12, "prompt: expected a non-empty string"),
    (None, 12, "tags: expected a list of non-empty strings"),
    ("[1, 2]", 13, "expected a JSON object, got a list"),
    ('{"suite": {"id": "late", "version": "1"}}', 14, "the suite header must be the first line"),
]  # fmt: skip


def _bad_suite(folder: Path) -> Path:
    path = folder / "bad.jsonl"
    path.write_text("".join(line + "\n" for line, _, _ in BAD_SUITE if line is not None))
    return path


def test_validate_names_the_line_and_reason_of_every_problem(tmp_path: Path) -> None:
    path = _bad_suite(tmp_path)
    result = CliRunner().invoke(main, ["suites", "validate", str(path)])
    assert result.exit_code == 2
    lines = result.stdout.splitlines()
    expected = [(line, reason) for _, line, reason in BAD_SUITE if reason]
    assert len(lines) == len(expected)
    for out, (line, reason) in zip(lines, expected, strict=True):
        assert out.startswith(f"{path}:{line}: {reason}"), out
    assert result.stderr.strip() == f"error: {path}: {len(expected)} problem(s)"
    as_json = CliRunner().invoke(main, ["suites", "validate", str(path), "--json"])
    assert as_json.exit_code == 2
    document = json.loads(as_json.stdout)
    assert document["valid"] is False and document["suite"] is None
    assert [(p["line"], p["reason"][: len(r)]) for p, (_, r) in zip(document["problems"], expected, strict=True)] == [
        (line, reason) for line, reason in expected
    ]
    # Loading (what generate and score do) stops at the first problem, in one line naming file, line and field.
    with pytest.raises(ConfigError, match=r"^suite: bad\.jsonl:1: suite\.id: expected a file-name-safe id"):
        load_suite(path)


VOCABULARY = [
    ('{"id": "a", "prompt": "x", "spec": {"tag": "colours", "include": [{"class": "cat", "color": "red"}]}}',
     ["spec.tag: must be one of GenEval's tags (single_object, two_object, counting, colors, position, color_attr), "
      "got 'colours' (did you mean 'colors'?)"]),
    ('{"id": "b", "prompt": "x", "spec": {"tag": "colors", "include": [{"class": "cat", "color": "turquoise"}]}}',
     ["spec.include[0].color: must be one of GenEval's colours (red, orange, yellow, green, blue, purple, pink, "
      "brown, black, white), got 'turquoise'"]),
    ('{"id": "c", "prompt": "x", "tag": "colorss", "include": [{"class": "cat"}, {"class": "dog", "color": "Red"}]}',
     ["tag: must be one of GenEval's tags", "(did you mean 'colors'?)",
      "include[1].color: must be one of GenEval's colours", "got 'Red' (did you mean 'red'?)"]),
    ('{"id": "d", "prompt": "x", "spec": {"tag": "position", "include": [{"class": "cat"}, '
     '{"class": "dog", "position": ["left", 0]}]}}',
     ["spec.include[1].position: relation must be one of left of, right of, above, below, got 'left' "
      "(did you mean 'left of'?)"]),
]  # fmt: skip


def test_tags_colours_and_relations_are_genevals_vocabulary(tmp_path: Path) -> None:
    path = tmp_path / "vocab.jsonl"
    path.write_text("".join(line + "\n" for line, _ in VOCABULARY))
    result = CliRunner().invoke(main, ["suites", "validate", str(path)])
    assert result.exit_code == 2, result.output
    lines = result.stdout.splitlines()
    # Row 3 has two problems (its tag and a colour): both are said, each naming file, line and field.
    expected = [(n, part) for n, (_, parts) in enumerate(VOCABULARY, start=1) for part in parts]
    assert [line.split(": ", 1)[0] for line in lines] == [f"{path}:{n}" for n in (1, 2, 3, 3, 4)]
    for n, part in expected:
        assert any(line.startswith(f"{path}:{n}: ") and part in line for line in lines), (n, part, lines)
    assert result.stderr.strip() == f"error: {path}: 5 problem(s)"
    # Loading (generate, score --suite) refuses it too, on the first problem, in one line.
    with pytest.raises(ConfigError, match=r"^suite: vocab\.jsonl:1: spec\.tag: .*got 'colours' \(did you mean"):
        load_suite(path)
    config = write_config(tmp_path / "gen", suite=str(path))
    generated = CliRunner().invoke(main, ["generate", str(config), "--dry-run"])
    assert generated.exit_code == 2 and generated.stderr.startswith("error: suite: vocab.jsonl:1: spec.tag: ")
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 30, 30)).save(tmp_path / "a.png")
    scored = CliRunner().invoke(main, ["score", str(tmp_path), "--metrics", "adherence", "--judge", "shapes",
                                       "--suite", str(path), "--no-cache"])  # fmt: skip
    assert scored.exit_code == 2 and scored.stderr.startswith("error: suite: vocab.jsonl:1: spec.tag: ")


# Specs no image can pass under GenEval's rules, each with the problem `suites validate` names (issue 21, item 11).
IMPOSSIBLE = [
    ('{"id": "a", "prompt": "x", "tag": "counting", "include": [{"class": "clock", "count": 2}], '
     '"exclude": [{"class": "clock", "count": 2}]}',
     ["exclude[0]: fewer than 2 clock contradicts include[0], which needs at least 2 clock: no image can hold both"]),
    ('{"id": "b", "prompt": "x", "spec": {"tag": "colors", "include": [{"class": "car", "color": "red"}], '
     '"exclude": [{"class": "car", "count": 1}]}}',
     ["spec.exclude[0]: fewer than 1 car contradicts include[0], which needs at least 1 car (red)"]),
    ('{"id": "c", "prompt": "x", "spec": {"tag": "position", "include": [{"class": "dog"}, '
     '{"class": "cat", "position": ["left of", 0]}], "exclude": [{"class": "dog", "count": 1}]}}',
     ["spec.exclude[0]: fewer than 1 dog contradicts include[0], which needs at least 1 dog: no image"]),
    ('{"id": "d", "prompt": "x", "spec": {"tag": "color_attr", "include": [{"class": "car", "color": "red"}, '
     '{"class": "car", "color": "blue"}]}}',
     ["spec.include[1].color: 'blue' contradicts include[0].color 'red': both are judged on the best car"]),
    ('{"id": "e", "prompt": "x", "spec": {"tag": "position", "include": [{"class": "dog"}, '
     '{"class": "dog", "position": ["left of", 0]}]}}',
     ["spec.include[1].position: dog left of dog (include[0]) compares the best dog with itself"]),
    ('{"id": "f", "prompt": "x", "spec": {"tag": "position", "include": [{"class": "cat"}, '
     '{"class": "dog", "position": ["left of", 0]}, {"class": "dog", "position": ["right of", 0]}]}}',
     ["spec.include[2].position: include[1] (dog left of cat), include[2] (dog right of cat): no image can hold "
      "them all (they order the objects from left to right in a circle)"]),
    ('{"id": "g", "prompt": "x", "spec": {"tag": "position", "include": [{"class": "a", "position": ["above", 1]}, '
     '{"class": "b", "position": ["above", 2]}, {"class": "c", "position": ["above", 0]}], '
     '"exclude": [{"class": "c", "count": 1}]}}',
     ["spec.exclude[0]: fewer than 1 c contradicts include[2]",
      "spec.include[2].position: include[0] (a above b), include[1] (b above c), include[2] (c above a): no image "
      "can hold them all (they order the objects from top to bottom in a circle)"]),
]  # fmt: skip
POSSIBLE = [  # the same shapes, possible: exactly two clocks; one red car; a dog above-left of a cat
    '{"id": "h", "prompt": "x", "tag": "counting", "include": [{"class": "clock", "count": 2}], '
    '"exclude": [{"class": "clock", "count": 3}]}',
    '{"id": "i", "prompt": "x", "spec": {"tag": "colors", "include": [{"class": "car", "color": "red"}], '
    '"exclude": [{"class": "car", "count": 2}]}}',
    '{"id": "j", "prompt": "x", "spec": {"tag": "position", "include": [{"class": "cat"}, '
    '{"class": "dog", "position": ["left of", 0]}, {"class": "dog", "color": "red", "position": ["above", 0]}]}}',
]


def test_validate_names_every_spec_no_image_can_pass(tmp_path: Path) -> None:
    path = tmp_path / "impossible.jsonl"
    path.write_text("".join(line + "\n" for line in [line for line, _ in IMPOSSIBLE] + POSSIBLE))
    result = CliRunner().invoke(main, ["suites", "validate", str(path)])
    assert result.exit_code == 2, result.output
    expected = [(n, part) for n, (_, parts) in enumerate(IMPOSSIBLE, start=1) for part in parts]
    lines = result.stdout.splitlines()
    assert len(lines) == len(expected), lines  # the possible rows (8-10) have none
    for line, (n, part) in zip(lines, expected, strict=True):
        assert line.startswith(f"{path}:{n}: {part}"), (line, n, part)
    assert result.stderr.strip() == f"error: {path}: {len(expected)} problem(s)"
    # Loading refuses it too (generate stops before any model loads); the possible rows load.
    with pytest.raises(ConfigError, match=r"^suite: impossible\.jsonl:1: exclude\[0\]: fewer than 2 clock"):
        load_suite(path)
    (tmp_path / "possible.jsonl").write_text("".join(line + "\n" for line in POSSIBLE))
    assert len(load_suite(tmp_path / "possible.jsonl").prompts) == 3


def test_validate_accepts_a_good_file_and_says_what_it_holds(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "evaluation_metadata.jsonl", GENEVAL_ROWS)
    result = CliRunner().invoke(main, ["suites", "validate", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        f"{path}: ok: evaluation_metadata (unversioned), 6 prompts (single_object 1, two_object 1, counting 1, "
        "colors 1, position 1, color_attr 1)"
    )
    document = json.loads(CliRunner().invoke(main, ["suites", "validate", str(path), "--json"]).stdout)
    assert document["valid"] and document["problems"] == [] and document["suite"]["n_prompts"] == 6
    for name in BUILTIN:
        suite, problems = check_suite(builtin_path(name))
        assert problems == [] and suite.prompts, name


def test_empty_unreadable_and_missing_suites(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(ConfigError, match=r"^suite: empty\.jsonl: holds no prompts$"):
        load_suite(tmp_path / "empty.jsonl")
    (tmp_path / "latin1.jsonl").write_bytes(b'{"id": "a", "prompt": "x"}\n{"id": "b", "prompt": "caf\xe9"}\n')
    with pytest.raises(ConfigError, match=r"^suite: latin1\.jsonl:2: not UTF-8 text$"):
        load_suite(tmp_path / "latin1.jsonl")
    result = CliRunner().invoke(main, ["suites", "validate", str(tmp_path / "none.jsonl")])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: suite: no such file:") and len(result.stderr.splitlines()) == 1
    with pytest.raises(ConfigError, match=r"^suite: no built-in suite 'nope' \(built-in: compositional, "):
        load_suite("builtin:nope")


# --- the CLI --------------------------------------------------------------------------------------------------------


def test_suites_list() -> None:
    result = CliRunner().invoke(main, ["suites", "list"])
    assert result.exit_code == 0, result.output
    names = [line.split()[0] for line in result.stdout.splitlines() if not line.startswith(" ")]
    assert names == list(BUILTIN)
    assert "compositional  v1   580 prompts  (single_object 80, two_object 100" in result.stdout
    document = json.loads(CliRunner().invoke(main, ["suites", "list", "--json"]).stdout)
    assert [s["id"] for s in document] == list(BUILTIN)
    assert document[0]["categories"]["single_object"] == 80 and len(document[0]["sha256"]) == 64


def test_suites_show(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["suites", "show", "smoke"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].startswith("suite: smoke (version 1, sha256 ")
    assert "  position       position       a photo of a dog left of a bench" in result.stdout
    document = json.loads(CliRunner().invoke(main, ["suites", "show", "builtin:smoke", "--json"]).stdout)
    assert document["id"] == "smoke" and document["n_prompts"] == 6 and document["source"] == "builtin:smoke"
    assert document["prompts"][4] == {
        "id": "position",
        "prompt": "a photo of a dog left of a bench",
        "category": "position",
        "spec": {"tag": "position", "include": [{"class": "bench", "count": 1},
                                                {"class": "dog", "count": 1, "position": ["left of", 0]}]},
    }  # fmt: skip
    path = _write_jsonl(tmp_path / "g.jsonl", GENEVAL_ROWS)
    shown = json.loads(CliRunner().invoke(main, ["suites", "show", str(path), "--json"]).stdout)
    assert [p["spec"] for p in shown["prompts"]] == [parse_spec(r).to_json() for r in GENEVAL_ROWS]
    bad = CliRunner().invoke(main, ["suites", "show", str(_bad_suite(tmp_path))])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: suite: bad.jsonl:1: ")


def test_builtin_names_resolve_where_a_suite_path_is_accepted(tmp_path: Path) -> None:
    from sdeval.generate.config import load_config

    assert load_config(write_config(tmp_path, suite="compositional")).suite == DATA_DIR / "compositional.jsonl"
    assert load_config(write_config(tmp_path, suite="builtin:smoke")).suite == DATA_DIR / "smoke.jsonl"
    # A local file of that name wins over the built-in; builtin: always means the built-in.
    (tmp_path / "smoke").write_text('{"id": "mine", "prompt": "x"}\n')
    assert load_config(write_config(tmp_path, suite="smoke")).suite == (tmp_path / "smoke").resolve()
    assert load_config(write_config(tmp_path, suite="builtin:smoke")).suite == DATA_DIR / "smoke.jsonl"
    with pytest.raises(ConfigError, match=r"^suite: no built-in suite 'smok'"):
        load_config(write_config(tmp_path, suite="builtin:smok"))
    with pytest.raises(ConfigError, match=r"^suite: no such file: .*nope\.jsonl \(nor a built-in suite: "):
        load_config(write_config(tmp_path, suite="nope.jsonl"))


# --- sketches -------------------------------------------------------------------------------------------------------


def _relations(a: tuple[float, ...], b: tuple[float, ...]) -> set[str]:
    """GenEval's relative_position of box a to box b (the judges' copy, tested against GenEval's cases)."""
    return relative_position(a, b)


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_sketches_are_deterministic_and_draw_what_the_spec_says() -> None:
    spec = Spec("position", (Include("tv", 1), Include("cup", 1, position=("above", 0))))
    assert sketch_bytes(spec, "k1") == sketch_bytes(spec, "k1")
    assert sketch_bytes(spec, "k1") != sketch_bytes(spec, "k2")
    image = np.asarray(draw_sketch(spec, "k1").image)
    assert image.shape == (512, 512) and image.max() == 255 and image.min() < 60
    assert 0.005 < (image < 128).mean() < 0.2  # lines on white, not a blank or a filled page
    suite = load_suite("sketch2image")
    assert {i.cls for p in suite.prompts for i in p.spec.include} <= set(SKETCH_CLASSES)  # type: ignore[union-attr]
    for prompt in suite.prompts:
        assert prompt.init_image_source == f"sketch:{prompt.id}"
        spec = prompt.spec
        assert spec is not None
        sketch = draw_sketch(spec, prompt.id)
        boxes = [box for _, box in sketch.boxes]
        assert all(0 <= x <= 512 for box in boxes for x in box)
        assert not any(_overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :]), prompt.id
        for inc in spec.include:
            assert sum(cls == inc.cls for cls, _ in sketch.boxes) >= inc.count, prompt.id
        for inc in spec.include:
            if inc.position is not None:
                relation, target = inc.position
                subject = [box for cls, box in sketch.boxes if cls == inc.cls]
                reference = [box for cls, box in sketch.boxes if cls == spec.include[target].cls]
                assert all(relation in _relations(a, b) for a in subject for b in reference), prompt.id


def test_sketch_files_are_cached_and_rewritten_when_wrong(tmp_path: Path) -> None:
    spec = Spec("counting", (Include("apple", 3),), ())
    path = sketch_file(spec, "apples", folder=tmp_path)
    assert path.parent == tmp_path and path.suffix == ".bmp"
    data = path.read_bytes()
    assert data == sketch_bytes(spec, "apples")
    path.write_bytes(b"damaged")
    assert sketch_file(spec, "apples", folder=tmp_path) == path and path.read_bytes() == data


# --- the suite in generation ------------------------------------------------------------------------------------------


def _plan(folder: Path, rows: list[dict[str, Any]]):
    from sdeval.generate.config import load_config
    from sdeval.generate.plan import CheckpointIdentity, build_plan
    from sdeval.generate.suite import load_suite as generation_suite

    path = write_config(folder, seeds_per_prompt=1, suite="suite.jsonl")
    _write_jsonl(folder / "suite.jsonl", rows)
    cfg = load_config(path)
    return build_plan(cfg, generation_suite(cfg.suite), "cpu", {"tiny": CheckpointIdentity(None)})


def test_suite_identity_is_recorded_but_an_edit_elsewhere_leaves_other_prompts_unchanged(tmp_path: Path) -> None:
    from sdeval.generate.plan import metadata_for
    from sdeval.generate.writer import identity

    header = {"suite": {"id": "mine", "version": "1"}}
    rows = [header, *[p.to_json() for p in load_suite("smoke").prompts]]
    plan = _plan(tmp_path, rows)
    metas = {item.prompt.id: metadata_for(item, "text2image", False) for item in plan.items}
    meta = metas["position"]
    assert meta["suite"] == {"id": "mine", "version": "1", "sha256": plan.suite.sha256}
    assert meta["spec"] == rows[5]["spec"] and meta["category"] == "position"
    # Another line edited (and the version bumped): the suite's hash changes, no other prompt's identity does.
    edited = [{"suite": {"id": "mine", "version": "2"}}, *rows[1:]]
    edited[1] = edited[1] | {"prompt": "a photo of a mug"}
    again = {item.prompt.id: metadata_for(item, "text2image", False) for item in _plan(tmp_path, edited).items}
    assert again["position"]["suite"]["sha256"] != meta["suite"]["sha256"]
    assert identity(again["position"]) == identity(meta)
    assert identity(again["single_object"]) != identity(metas["single_object"])
    # The prompt's own spec is part of its identity (the shapes checkpoint draws from it).
    respec = [*rows]
    moved_dog = [{"class": "bench", "count": 1}, {"class": "dog", "count": 1, "position": ["right of", 0]}]
    respec[5] = rows[5] | {"spec": rows[5]["spec"] | {"include": moved_dog}}
    third = {item.prompt.id: metadata_for(item, "text2image", False) for item in _plan(tmp_path, respec).items}
    assert identity(third["position"]) != identity(meta)
    # Suites without specs or tags write no such keys, so images made before suites had them keep their identity.
    plain = _plan(tmp_path / "plain", [{"id": "p1", "prompt": "a cat"}])
    assert "spec" not in metadata_for(plain.items[0], "text2image", False)


@pytest.mark.usefixtures("sdeval_cache")
def test_generation_records_the_suite_and_resumes_across_an_edit_elsewhere(tmp_path: Path) -> None:
    from sdeval.generate.config import load_config
    from sdeval.generate.runner import run_generate
    from sdeval.generate.writer import read_metadata

    path = write_config(tmp_path, suite="smoke", seeds_per_prompt=1)
    first = run_generate(load_config(path), progress=False)
    assert first.generated == 6
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    smoke = load_suite("smoke")
    assert record["suite"] == {"path": "builtin:smoke", "id": "smoke", "version": "1", "sha256": smoke.sha256,
                               "prompts": 6}  # fmt: skip
    pngs = sorted((tmp_path / "out").rglob("*.png"))
    meta = read_metadata(pngs[0])
    assert meta is not None and meta["suite"] == {"id": "smoke", "version": "1", "sha256": smoke.sha256}
    assert meta["spec"] == next(p.spec.to_json() for p in smoke.prompts if p.id == meta["prompt_id"])  # type: ignore[union-attr]
    # The same prompts in a file of their own, plus one more line: a new suite hash, but nothing to redo.
    rows = [{"suite": {"id": "smoke-plus", "version": "1"}}, *[p.to_json() for p in smoke.prompts]]
    rows.append({"id": "extra", "prompt": "a photo of a kite"})
    _write_jsonl(tmp_path / "plus.jsonl", rows)
    path = write_config(tmp_path, suite="plus.jsonl", seeds_per_prompt=1)
    second = run_generate(load_config(path), progress=False)
    assert (second.generated, second.skipped) == (1, 6)
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["suite"]["id"] == "smoke-plus" and record["suite"]["sha256"] != smoke.sha256


@pytest.mark.usefixtures("sdeval_cache")
def test_image2image_draws_sketch_init_images(tmp_path: Path) -> None:
    from sdeval.core.paths import cache_root
    from sdeval.generate.config import load_config
    from sdeval.generate.runner import run_generate

    sketches = [p for p in load_suite("sketch2image").prompts if p.category in ("position", "counting")][:2]
    _write_jsonl(tmp_path / "sk.jsonl", [p.to_json() for p in sketches])
    settings = {"num_inference_steps": 2, "strength": [0.5], "width": 32, "height": 32, "scheduler": "ddim"}
    path = write_config(tmp_path, suite="sk.jsonl", pipeline="image2image", settings=settings, seeds_per_prompt=1)
    result = run_generate(load_config(path), progress=False)
    assert result.generated == 2
    rows = [json.loads(line) for line in (tmp_path / "out" / ".sdeval" / "index.jsonl").read_text().splitlines()]
    for row in rows:
        prompt = next(p for p in sketches if p.id == row["id"])
        expected = hashlib.sha256(sketch_bytes(prompt.spec, prompt.id)).hexdigest()  # type: ignore[arg-type]
        assert row["init_image_sha256"] == expected
    assert len(list((cache_root() / "sketches").glob("*.bmp"))) >= 2
    # text2image refuses rows whose init image it would ignore.
    path = write_config(tmp_path / "t2i", suite=str(tmp_path / "sk.jsonl"))
    with pytest.raises(ConfigError, match=r"^suite: sk\.jsonl:1: init_image: only used by pipeline: image2image"):
        run_generate(load_config(path), progress=False)
