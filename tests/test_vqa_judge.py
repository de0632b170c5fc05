"""The VQA judge: its rules with an oracle that answers from the calibration world's known truth (GenEval specs, TIFA
and DSG question files, DSG's dependency rule), question-file parsing, and P(yes) from the real transformers classes
built tiny with random weights (BlipForQuestionAnswering, a LLaVA image-text-to-text model), loaded by path."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from sdeval.calibration.judge import ShapesJudge
from sdeval.calibration.render import DrawnObject, render
from sdeval.calibration.world import CLASSES, PALETTE, PLURALS, MistakeRates
from sdeval.core.errors import SdevalError
from sdeval.judges.questions import (
    BINARY,
    Question,
    QuestionSet,
    load_questions,
    plural,
    score_answers,
    spec_questions,
)
from sdeval.judges.registry import build_judge
from sdeval.judges.rules import relative_position, spec_facts
from sdeval.judges.vqa import (
    BlipVqaModel,
    GenerativeVqaModel,
    VqaJudge,
    VqaJudgement,
    load_vqa_model,
)
from sdeval.suites.spec import CATEGORIES, RELATIONS, Spec, parse_spec

SIZE = 128
NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
SINGULAR = {PLURALS[c]: c for c in CLASSES}
RELATION = {"to the left of": "left of", "to the right of": "right of", "above": "above", "below": "below"}


# -- an oracle that knows what the calibration world drew --------------------------------------------------------


def truth_of(question: str, objects: Sequence[DrawnObject]) -> bool | str:
    """The true answer to one of the judge's default spec questions (or the TIFA/DSG questions written below)."""

    def of(cls: str) -> list[DrawnObject]:
        return [o for o in objects if o.cls == cls]

    if m := re.fullmatch(r"(?:Is|Are) the (\w+) (to the left of|to the right of|above|below) the (\w+)\?", question):
        a, b = of(SINGULAR.get(m[1], m[1])), of(SINGULAR.get(m[3], m[3]))
        return all(RELATION[m[2]] in relative_position(x.box, y.box) for x in a for y in b)
    if m := re.fullmatch(r"Is there an? (\w+)\?", question):
        return len(of(m[1])) >= 1
    if m := re.fullmatch(r"Are there at least (\w+) (\w+)\?", question):
        return len(of(SINGULAR[m[2]])) >= NUMBERS[m[1]]
    if m := re.fullmatch(r"Is the (\w+) (\w+)\?", question):
        return all(o.color == m[2] for o in of(m[1]))
    if m := re.fullmatch(r"Are the (\w+) (\w+) (\w+)\?", question):
        return all(o.color == m[3] for o in of(SINGULAR[m[2]]))
    if m := re.fullmatch(r"What colou?r is the (\w+)\?", question):
        found = of(m[1])
        return found[0].color if found else "none"
    if m := re.fullmatch(r"How many (\w+) are there\?", question):
        return str(len(of(SINGULAR[m[1]])))
    raise AssertionError(f"the oracle cannot read {question!r}")


class Oracle:
    """A YesNoModel (and ChoiceModel) answering from the drawn objects of each image it was shown; 0.9 / 0.1, so
    the threshold matters. `lie_about`: question patterns it answers "yes" to whatever the truth."""

    def __init__(self, lie_about: str | None = None) -> None:
        self.drawn: dict[bytes, tuple[DrawnObject, ...]] = {}
        self.lie_about = re.compile(lie_about) if lie_about else None
        self.asked: list[str] = []

    def show(self, rendered: Any) -> np.ndarray:
        self.drawn[rendered.image.tobytes()] = rendered.objects
        return rendered.image

    def p_yes(self, image: np.ndarray, questions: Sequence[str]) -> list[float]:
        objects = self.drawn[image.tobytes()]
        self.asked.extend(questions)
        out = []
        for q in questions:
            lie = self.lie_about is not None and self.lie_about.fullmatch(q)
            out.append(0.9 if lie or truth_of(q, objects) is True else 0.1)
        return out

    def choice_probs(self, image: np.ndarray, question: str, choices: Sequence[str]) -> list[float]:
        answer = truth_of(question, self.drawn[image.tobytes()])
        weights = [8.0 if c == answer else 1.0 for c in choices]
        return [w / sum(weights) for w in weights]


class YesOnly:
    """A YesNoModel without choice_probs: always P(yes) = 0.5."""

    def p_yes(self, image: np.ndarray, questions: Sequence[str]) -> list[float]:
        return [0.5] * len(questions)


def make_spec(tag: str, rng: np.random.Generator) -> Spec:
    a, b = (str(c) for c in rng.choice(CLASSES, 2, replace=False))
    c1, c2 = (str(c) for c in rng.choice(list(PALETTE), 2, replace=False))
    exclude: list[dict[str, Any]] = []
    if tag == "single_object":
        include: list[dict[str, Any]] = [{"class": a}]
    elif tag == "two_object":
        include = [{"class": a}, {"class": b}]
    elif tag == "counting":
        n = int(rng.integers(1, 5))
        include, exclude = [{"class": a, "count": n}], [{"class": a, "count": n + 1}]
    elif tag == "colors":
        include = [{"class": a, "color": c1}]
    elif tag == "position":
        include = [{"class": a}, {"class": b, "position": [str(rng.choice(RELATIONS)), 0]}]
    else:
        include = [{"class": a, "color": c1}, {"class": b, "color": c2}]
    return parse_spec({"tag": tag, "include": include, "exclude": exclude})


def calibration_images(n_per_tag: int, rate: float, seed: int = 0) -> list[tuple[Spec, Any]]:
    rng = np.random.default_rng(seed)
    mistakes = MistakeRates(**dict.fromkeys(CATEGORIES, rate))
    out = []
    for k in range(n_per_tag):
        for tag in CATEGORIES:
            spec = make_spec(tag, rng)
            out.append((spec, render(spec, 1000 * seed + k * len(CATEGORIES) + len(out), SIZE, mistakes)))
    return out


# -- (1) the rules with an oracle on the calibration world -------------------------------------------------------


def test_spec_verdicts_equal_the_truth_on_the_calibration_world() -> None:
    oracle = Oracle()
    judge = VqaJudge(oracle)
    exact = ShapesJudge()
    outcomes = []
    for spec, rendered in calibration_images(12, 0.5):
        image = oracle.show(rendered)
        got, truth = judge.judge(image, spec), exact.judge(image, spec)
        assert isinstance(got, VqaJudgement)
        # Fact by fact as the calibration world's exact judge (GenEval's rules on exact boxes), in the same order
        # and words; the image fails exactly when the world injected a mistake.
        assert [(f.kind, f.fact) for f in got.facts] == [(f.kind, f.fact) for f in truth.facts]
        assert [f.passed for f in got.facts] == [f.passed for f in truth.facts], (spec, rendered.mistake, got.facts)
        assert got.passed == truth.passed == (rendered.mistake is None)
        assert got.score == pytest.approx(np.mean([f.passed for f in truth.facts]))
        for fact, answered in zip(got.facts, got.answers, strict=True):
            assert f'"{answered.question.text}" P(yes)=' in fact.reason
        outcomes.append(got.passed)
    assert 20 <= sum(outcomes) <= len(outcomes) - 20, "both clean images and injected mistakes must be seen"


def test_spec_questions_mirror_genevals_facts() -> None:
    counting = parse_spec(
        {"tag": "counting", "include": [{"class": "clock", "count": 3}], "exclude": [{"class": "clock", "count": 4}]}
    )
    assert [(q.qid, q.text, q.answer) for q in spec_questions(counting)] == [
        ("count:0", "Are there at least three clocks?", "yes"),
        ("absent:0", "Are there at least four clocks?", "no"),
    ]
    position = parse_spec(
        {
            "tag": "position",
            "include": [{"class": "elephant", "color": "red"}, {"class": "bus", "position": ["left of", 0]}],
        }
    )
    questions = spec_questions(position)
    assert [q.text for q in questions] == [
        "Is there an elephant?",
        "Is the elephant red?",
        "Is there a bus?",
        "Is the bus to the left of the elephant?",
    ]
    assert [q.kind for q in questions] == [k for k, _ in spec_facts(position)]
    # Colour on presence; position on both objects as GenEval matches them (presence and colour).
    assert questions[1].parents == ("present:0",)
    assert questions[3].parents == ("present:1", "present:0", "color:0")
    assert [plural(w) for w in ("bus", "wine glass", "person", "knife", "sheep", "toothbrush", "cross", "dog")] == [
        "buses",
        "wine glasses",
        "people",
        "knives",
        "sheep",
        "toothbrushes",
        "crosses",
        "dogs",
    ]


def test_a_missing_object_voids_its_colour_and_position() -> None:
    """With an oracle that says yes to every colour and position question, the presence answers still decide."""
    oracle = Oracle(lie_about=r"Is the \w+ \w+\?|Is the \w+ (to the left of|to the right of|above|below) the \w+\?")
    judge = VqaJudge(oracle)
    spec = parse_spec(
        {
            "tag": "two_object",
            "include": [
                {"class": "circle", "color": "red"},
                {"class": "square", "color": "blue", "position": ["left of", 0]},
            ],
        }
    )
    voided = 0
    for seed in range(6):
        rendered = render(spec, seed, SIZE, MistakeRates(two_object=1.0))  # one object left out or replaced
        got = judge.judge(oracle.show(rendered), spec)
        assert not got.passed
        gone = {
            q.qid for q in spec_questions(spec) if q.kind == "present" and truth_of(q.text, rendered.objects) is False
        }
        assert len(gone) == 1, rendered.mistake
        for fact, answered in zip(got.facts, got.answers, strict=True):
            if fact.kind in ("color", "position") and set(answered.question.parents) & gone:
                assert answered.correct and not fact.passed  # said yes, voided by the missing parent
                assert fact.reason.startswith('not checked: "Is there a ')
                voided += 1
    assert voided >= 6


def test_threshold_decides_yes() -> None:
    spec = parse_spec(
        {"tag": "counting", "include": [{"class": "circle", "count": 2}], "exclude": [{"class": "circle", "count": 3}]}
    )
    oracle = Oracle()
    image = oracle.show(render(spec, 0, SIZE))
    assert VqaJudge(oracle).judge(image, spec).passed
    strict = VqaJudge(oracle, threshold=0.95).judge(image, spec)  # 0.9 no longer counts as yes
    assert [f.passed for f in strict.facts] == [False, True]
    assert VqaJudge(oracle, threshold=0.95).protocol()["threshold"] == 0.95
    with pytest.raises(SdevalError, match="--vqa-threshold"):
        VqaJudge(oracle, threshold=1.5)


# -- TIFA and DSG files on the calibration world -----------------------------------------------------------------


def _colour_prompts(n: int, rate: float) -> list[tuple[str, str, Spec, Any]]:
    """(prompt id, prompt text, spec, rendered) for 'a photo of a red circle' prompts with colour mistakes."""
    rng = np.random.default_rng(7)
    out = []
    for k in range(n):
        cls, colour = str(rng.choice(CLASSES)), str(rng.choice(list(PALETTE)))
        # Tagged colors, a mistake draws another colour; tagged single_object, it leaves the object out or replaces it.
        tag = ("colors", "single_object")[k % 2]
        spec = parse_spec({"tag": tag, "include": [{"class": cls, "color": colour}]})
        rendered = render(spec, k, SIZE, MistakeRates(colors=rate, single_object=rate))
        out.append((f"shapes_{k}", f"a photo of a {colour} {cls}", spec, rendered))
    return out


def _write_dsg_csv(path: Path, prompts: list[tuple[str, str, Spec, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    header = "item_id,text,keywords,proposition_id,dependency,category_broad,category_detailed,tuple"
    writer.writerow([*header.split(","), "question_natural_language"])
    for pid, text, spec, _ in prompts:
        cls, colour = spec.include[0].cls, spec.include[0].color
        writer.writerow([pid, text, cls, 1, 0, "entity", "whole", f"entity - whole ({cls})", f"Is there a {cls}?"])
        tup = f"attribute - color ({cls}, {colour})"
        writer.writerow([pid, text, f"{cls}, {colour}", 2, 1, "attribute", "color", tup, f"Is the {cls} {colour}?"])
    path.write_text(buffer.getvalue(), encoding="utf-8")


def test_dsg_questions_on_the_calibration_world(tmp_path: Path) -> None:
    prompts = _colour_prompts(24, 0.6)
    _write_dsg_csv(tmp_path / "dsg.csv", prompts)
    questions = load_questions(tmp_path / "dsg.csv")
    assert questions.format == "dsg" and len(questions.by_id) == 24
    truthful, liar = Oracle(), Oracle(lie_about=r"Is the \w+ \w+\?")
    judge, fooled = VqaJudge(truthful, questions=questions), VqaJudge(liar, questions=questions)
    kinds = set()
    for pid, text, _, rendered in prompts:
        image = truthful.show(rendered)
        liar.show(rendered)
        got = judge.judge_prompt(image, pid, None)
        assert got is not None and got.passed == (rendered.mistake is None)
        assert [f.kind for f in got.facts] == ["entity", "attribute"]
        assert judge.judge_prompt(image, "unknown id", text).facts == got.facts  # joined by prompt text instead
        lied = fooled.judge_prompt(image, pid, text)
        assert lied is not None
        if rendered.mistake is not None and rendered.mistake.kind in ("missing", "wrong_object"):
            # DSG: the child (colour) said yes, but its parent (presence) said no, so it scores 0.
            assert lied.answers[1].correct and not lied.answers[1].passed and lied.score == 0.0
            assert lied.facts[1].reason.startswith("not checked")
        kinds.add(rendered.mistake.kind if rendered.mistake else None)
    assert kinds == {None, "missing", "wrong_object", "color"}
    assert judge.judge_prompt(image, "unknown id", "unknown text") is None
    assert judge.protocol()["questions"]["format"] == "dsg"


def test_dsg_rule_zeroes_children_of_a_no_and_averages() -> None:
    questions = [
        Question("1", "Is there a bench?"),
        Question("2", "Is the bench red?", parents=("1",)),
        Question("3", "Are there trees?"),
        Question("4", "Is the bench near the trees?", parents=("1", "3")),
        Question("5", "Is the red paint fresh?", parents=("2",)),
    ]
    p_yes = [0.2, 0.9, 0.8, 0.7, 0.9]
    answered = score_answers(questions, [(p, 1 - p) for p in p_yes], threshold=0.5)
    assert [a.correct for a in answered] == [False, True, True, True, True]
    # DSG's calc_vqa_score reads each parent's own answer: question 5's parent (2) said yes, so 5 stands even though
    # 2 itself was zeroed by 1.
    assert [a.passed for a in answered] == [False, False, True, False, True]
    assert [[p.qid for p in a.voided_by] for a in answered] == [[], ["1"], [], ["1"], []]

    class Fixed:
        def p_yes(self, image: np.ndarray, texts: Sequence[str]) -> list[float]:
            return [p_yes[[q.text for q in questions].index(t)] for t in texts]

    got = VqaJudge(Fixed()).judge_questions(np.zeros((8, 8, 3), np.uint8), questions)
    assert got.score == pytest.approx(2 / 5) and not got.passed
    assert [q["passed"] for q in got.to_json()["questions"]] == [False, False, True, False, True]


def test_tifa_questions_on_the_calibration_world(tmp_path: Path) -> None:
    prompts = _colour_prompts(18, 0.5)
    records = []
    other_of = {}  # per prompt text: the class its "no" question asks about
    for pid, text, spec, _ in prompts:
        cls, colour = spec.include[0].cls, spec.include[0].color
        other_of[text] = other = next(c for c in CLASSES if c != cls)
        # The right colour listed last: an oracle that cannot see the object ties, and a tie takes the first choice.
        colours = [*(c for c in PALETTE if c != colour), colour]
        records += [
            {"id": pid, "caption": text, "question": f"Is there a {cls}?", "choices": ["yes", "no"], "answer": "yes",
             "element_type": "object", "element": cls},
            {"id": pid, "caption": text, "question": f"Is there a {other}?", "choices": ["no", "yes"], "answer": "no",
             "element_type": "object", "element": other},
            {"id": pid, "caption": text, "question": f"What color is the {cls}?", "choices": colours,
             "answer": colour, "element_type": "color", "element": colour},
            {"id": pid, "caption": text, "question": f"How many {PLURALS[cls]} are there?",
             "choices": ["0", "1", "2", "3", "4"], "answer": "1", "element_type": "counting", "element": "one"},
        ]  # fmt: skip
    (tmp_path / "tifa.json").write_text(json.dumps(records), encoding="utf-8")
    questions = load_questions(tmp_path / "tifa.json")
    assert questions.format == "tifa" and questions.identity()["n"] == 4 * len(prompts)
    oracle = Oracle()
    judge = VqaJudge(oracle, questions=questions)
    for _, text, _, rendered in prompts:
        got = judge.judge_prompt(oracle.show(rendered), None, text)  # joined by caption
        assert got is not None
        kind = rendered.mistake.kind if rendered.mistake else None
        drawn = {o.cls for o in rendered.objects}
        truth = [
            kind not in ("missing", "wrong_object"),
            other_of[text] not in drawn,  # a wrong object may be the very one asked about
            kind is None,
            kind not in ("missing", "wrong_object"),
        ]
        assert [f.passed for f in got.facts] == truth, (rendered.mistake, got.facts)
        assert got.score == pytest.approx(np.mean(truth)) and got.passed == all(truth)
        assert [f.kind for f in got.facts] == ["object", "object", "color", "counting"]
        assert got.facts[2].reason.startswith(f'"{got.answers[2].question.text}" P(')
    # Multiple choice needs a model that can pick among answers.
    with pytest.raises(SdevalError, match="multiple choice"):
        VqaJudge(YesOnly(), questions=questions).judge_prompt(np.zeros((8, 8, 3), np.uint8), prompts[0][0], None)


# -- (4) question files: formats and malformed input -------------------------------------------------------------


def test_question_file_formats(tmp_path: Path) -> None:
    # DSG rows as JSONL, and DSG's own generation output.
    rows = [
        {
            "item_id": "a",
            "text": "a cat",
            "proposition_id": 1,
            "dependency": "0",
            "question_natural_language": "Is there a cat?",
        },
        {
            "item_id": "a",
            "text": "a cat",
            "proposition_id": 2,
            "dependency": [1],
            "question_natural_language": "Is it black?",
        },
    ]
    (tmp_path / "dsg.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    jsonl = load_questions(tmp_path / "dsg.jsonl")
    questions = {"1": "Is there a cat?", "2": "Is it black?"}
    output = {"a": {"text": "a cat", "qid2question": questions, "qid2dependency": {"1": [0], "2": [1]}}}
    (tmp_path / "dsg-output.json").write_text(json.dumps(output))
    generated = load_questions(tmp_path / "dsg-output.json")
    for loaded in (jsonl, generated):
        assert loaded.format == "dsg"
        assert [(q.qid, q.text, q.parents) for q in loaded.by_id["a"]] == [
            ("1", "Is there a cat?", ()),
            ("2", "Is it black?", ("1",)),
        ]
        assert loaded.lookup(None, "a cat") == loaded.by_id["a"]
    # TIFA yes/no in either order and case is one binary question.
    tifa = [{"id": 7, "question": "is it?", "choices": ["No", "Yes"], "answer": "Yes"}]
    (tmp_path / "tifa.json").write_text(json.dumps(tifa))
    question = load_questions(tmp_path / "tifa.json").by_id["7"][0]
    assert question.binary and question.choices == BINARY and question.answer == "yes"
    assert isinstance(load_questions(tmp_path / "tifa.json", format="tifa"), QuestionSet)


DSG_HEAD = "item_id,proposition_id,dependency,question_natural_language\n"
DSG_ROW = '{"item_id": "x", "proposition_id": 1, "question_natural_language": "Q?"}'


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.json", "[{", r"bad\.json:1: not valid JSON"),
        ("obj.json", '{"a": 1}', "expected a JSON list"),
        ("what.json", '[{"foo": 1}]', "neither TIFA records"),
        ("empty.json", "[]", "neither TIFA records"),
        ("t1.json", '[{"id": "x", "choices": ["yes", "no"], "answer": "yes"}]', r"record 0: missing 'question'"),
        (
            "t2.json",
            '[{"id": "x", "question": "q?", "choices": ["yes", "no"], "answer": "yes"},'
            ' {"id": "x", "question": "q?", "choices": ["red", "blue"], "answer": "green"}]',
            r"t2\.json: record 1: answer 'green' is not one of its choices",
        ),
        ("t3.json", '[{"id": "x", "question": "q?", "choices": "yes", "answer": "yes"}]', "'choices' must be a list"),
        ("t4.json", '[{"id": "x", "question": "q?", "choices": ["a", "A"], "answer": "a"}]', "repeat an answer"),
        ("t5.json", '[{"id": {}, "question": "q?", "choices": ["a", "b"], "answer": "a"}]', "'id' must be text"),
        ("d1.csv", "", "empty CSV"),
        ("d2.csv", DSG_HEAD + "x,1,0\n", r"d2\.csv:2: missing 'question"),
        (
            "d3.csv",
            DSG_HEAD + "x,1,0,Is there a?\nx,2,3,Is it?\n",
            r"d3\.csv:3: dependency names proposition 3, which item 'x' lacks",
        ),
        ("d4.csv", DSG_HEAD + "x,1,one,Q?\n", r"d4\.csv:2: dependency must be a number"),
        (
            "d5.csv",
            DSG_HEAD + "x,1,0,Q?\nx,1,0,R?\n",
            r"d5\.csv:3: item 'x' has proposition 1 twice \(also at .*d5\.csv:2\)",
        ),
        ("d6.csv", DSG_HEAD + "x,2,2,Q?\n", "depends on itself"),
        ("d7.csv", DSG_HEAD + "x,1.5,0,Q?\n", "whole number"),
        ("d8.csv", DSG_HEAD + "x,1,0,Q?,extra\n", "more fields"),
        ("d9.jsonl", DSG_ROW + "\n{oops\n", r"d9\.jsonl:2: not valid JSON"),
    ],
)  # fmt: skip
def test_malformed_question_files(tmp_path: Path, name: str, content: str, message: str) -> None:
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(SdevalError, match=message):
        load_questions(tmp_path / name)


def test_question_file_arguments(tmp_path: Path) -> None:
    with pytest.raises(SdevalError, match="no such question file"):
        load_questions(tmp_path / "missing.json")
    (tmp_path / "q.csv").write_text("item_id,proposition_id,question_natural_language\nx,1,Q?\n")
    with pytest.raises(SdevalError, match="TIFA questions are JSON"):
        load_questions(tmp_path / "q.csv", format="tifa")
    with pytest.raises(SdevalError, match="question format must be one of"):
        load_questions(tmp_path / "q.csv", format="vqa2")
    assert load_questions(tmp_path / "q.csv").by_id["x"][0].parents == ()  # no dependency column: no parents


# -- (2) BlipForQuestionAnswering, tiny and random ----------------------------------------------------------------

BLIP_WORDS = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "?", "is", "are", "there", "a", "an", "at", "least", "the",
    "circle", "circles", "square", "squares", "cross", "triangle", "red", "blue", "green", "yes", "no", "two", "to",
    "left", "right", "of", "above", "below", "what", "color", "big",
]  # fmt: skip


def _save_blip(folder: Path) -> Path:
    from transformers import BertTokenizer, BlipConfig, BlipForQuestionAnswering, BlipImageProcessor, BlipProcessor

    target = folder / "blip-vqa"
    target.mkdir(parents=True)
    (target / "vocab.txt").write_text("\n".join(BLIP_WORDS) + "\n", encoding="utf-8")
    # A wide init, so that random weights still tell questions and answers apart.
    layers = {"num_hidden_layers": 1, "num_attention_heads": 2, "hidden_size": 32, "intermediate_size": 37}
    layers["initializer_range"] = 0.5
    config = BlipConfig(
        text_config={
            **layers,
            "vocab_size": len(BLIP_WORDS),
            "max_position_embeddings": 64,
            "encoder_hidden_size": 32,
            "pad_token_id": 0,
            "sep_token_id": BLIP_WORDS.index("[SEP]"),
            "bos_token_id": BLIP_WORDS.index("[DEC]"),  # BLIP's answer decoder starts at [DEC]
        },
        vision_config={**layers, "image_size": 32, "patch_size": 8},
        projection_dim=32,
    )
    torch.manual_seed(0)
    BlipForQuestionAnswering(config).save_pretrained(target)
    tokenizer = BertTokenizer(str(target / "vocab.txt"))
    image_processor = BlipImageProcessor(size={"height": 32, "width": 32})
    BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(target)
    return target


# -- (3) a LLaVA image-text-to-text model, tiny and random ---------------------------------------------------------

LLAVA_WORDS = [
    "<unk>", "<pad>", "<s>", "</s>", "<image>", "USER", "ASSISTANT", ":", "?", "Question", "Answer", "yes", "no", "Yes",
    "No", "Is", "there", "a", "circle", "square", "the", "red", "blue", "What", "color", "is",
]  # fmt: skip
CHAT = (
    "{% for m in messages %}{{ m['role'].upper() }}: {% for c in m['content'] %}{% if c['type'] == 'image' %}<image>\n"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %} {% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def _save_llava(folder: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    words = Tokenizer(models.WordLevel({w: i for i, w in enumerate(LLAVA_WORDS)}, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=words,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        extra_special_tokens={"image_token": "<image>"},
    )
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT,
    )
    layers = {"num_hidden_layers": 1, "num_attention_heads": 2, "hidden_size": 32, "intermediate_size": 37}
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**layers, image_size=32, patch_size=8, projection_dim=32),
        text_config=LlamaConfig(
            **layers, vocab_size=len(LLAVA_WORDS), num_key_value_heads=2, max_position_embeddings=128,
            pad_token_id=1, bos_token_id=2, eos_token_id=3,
        ),
        image_token_index=LLAVA_WORDS.index("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )  # fmt: skip
    torch.manual_seed(0)
    target = folder / "llava"
    LlavaForConditionalGeneration(config).save_pretrained(target)
    processor.save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def vqa_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import transformers

    transformers.utils.logging.disable_progress_bar()
    root = tmp_path_factory.mktemp("vqa")
    return {"blip": _save_blip(root), "llava": _save_llava(root)}


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (40, 56, 3), dtype=np.uint8)


def _blip_by_hand(model: Any, processor: Any, image: np.ndarray, question: str, answer: str) -> tuple[float, Any]:
    """log p(answer [SEP] | [DEC], question, image), running BLIP's three parts one by one, one question at a time;
    and the decoder's first-step logits."""
    inputs = processor(images=Image.fromarray(image), text=question, return_tensors="pt")
    with torch.inference_mode():
        image_embeds = model.vision_model(pixel_values=inputs["pixel_values"]).last_hidden_state
        question_embeds = model.text_encoder(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], encoder_hidden_states=image_embeds
        ).last_hidden_state
        dec = torch.tensor([[BLIP_WORDS.index("[DEC]"), BLIP_WORDS.index(answer), BLIP_WORDS.index("[SEP]")]])
        logits = model.text_decoder(input_ids=dec, encoder_hidden_states=question_embeds).logits[0]
    logp = torch.log_softmax(logits, dim=-1)
    return float(logp[0, dec[0, 1]] + logp[1, dec[0, 2]]), logits[0]


def test_blip_p_yes_equals_the_decoder_by_hand(vqa_folders: dict[str, Path]) -> None:
    from transformers import AutoProcessor, BlipForQuestionAnswering

    vqa = load_vqa_model(str(vqa_folders["blip"]))
    assert isinstance(vqa, BlipVqaModel)
    model = BlipForQuestionAnswering.from_pretrained(vqa_folders["blip"]).eval()
    processor = AutoProcessor.from_pretrained(vqa_folders["blip"])
    image = _image()
    questions = [
        "Is there a circle?",
        "Are there at least two squares?",
        "Is there a square?",  # as long as the first: scored in one batch
        "Is the big red cross to the left of the circle?",
    ]
    got = vqa.p_yes(image, questions)
    for question, p in zip(questions, got, strict=True):
        yes, first_step = _blip_by_hand(model, processor, image, question, "yes")
        no, _ = _blip_by_hand(model, processor, image, question, "no")
        assert p == pytest.approx(np.exp(yes) / (np.exp(yes) + np.exp(no)), abs=1e-5)
        # The by-hand path is BLIP's own: its generate() sees the same first-step logits after [DEC].
        inputs = processor(images=Image.fromarray(image), text=question, return_tensors="pt")
        generated = model.generate(**inputs, max_new_tokens=1, output_logits=True, return_dict_in_generate=True)
        torch.testing.assert_close(generated.logits[0][0], first_step, rtol=1e-4, atol=1e-5)
    assert np.ptp(got) > 1e-3, "random weights should still tell the questions apart"
    # "Yes" tokenizes as "yes" (uncased): counted once, so P(yes) is exactly p(yes) / (p(yes) + p(no)).
    probs = vqa.choice_probs(image, questions[0], ["red", "blue", "green"])
    by_hand = np.array([_blip_by_hand(model, processor, image, questions[0], c)[0] for c in ("red", "blue", "green")])
    np.testing.assert_allclose(probs, np.exp(by_hand) / np.exp(by_hand).sum(), atol=1e-5)
    protocol = vqa.protocol()
    json.dumps(protocol)
    assert protocol["model"] == "folder:blip-vqa" and len(protocol["weights_sha256"]) == 64


def test_blip_judge_through_the_registry(vqa_folders: dict[str, Path], tmp_path: Path) -> None:
    square = {"class": "square", "position": ["left of", 0]}
    spec = parse_spec({"tag": "position", "include": [{"class": "circle"}, square]})
    image = render(spec, 0, SIZE).image
    judge = build_judge("vqa", vqa_model=str(vqa_folders["blip"]), vqa_threshold=0.3)
    assert isinstance(judge, VqaJudge) and judge.threshold == 0.3
    got = judge.judge(image, spec)  # random weights: verdicts are arbitrary, the path is not
    assert [f.kind for f in got.facts] == [k for k, _ in spec_facts(spec)]
    assert all("P(yes)=" in f.reason for f in got.facts)
    assert json.loads(json.dumps(got.to_json()))["score"] == got.score
    protocol = judge.protocol()
    json.dumps(protocol)
    assert protocol["judge"] == "vqa" and protocol["model"]["model_type"] == "blip"
    assert protocol["threshold"] == 0.3 and protocol["questions"] is None
    # A question file given by path is loaded first; a bad one fails before the model loads.
    (tmp_path / "bad.json").write_text("[1]")
    with pytest.raises(SdevalError, match="neither TIFA"):
        build_judge("vqa", vqa_model="sdeval-test/never-loaded", questions=str(tmp_path / "bad.json"))
    with pytest.raises(SdevalError, match="BLIP VQA reads the bare question"):
        build_judge("vqa", vqa_model=str(vqa_folders["blip"]), vqa_template="Q: {question}")


def test_generic_model_next_token_yes_no(vqa_folders: dict[str, Path]) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    vqa = load_vqa_model(str(vqa_folders["llava"]))
    assert isinstance(vqa, GenerativeVqaModel) and vqa.chat  # the processor has a chat template
    model = AutoModelForImageTextToText.from_pretrained(vqa_folders["llava"]).eval()
    processor = AutoProcessor.from_pretrained(vqa_folders["llava"])
    image = _image(1)
    questions = ["Is there a circle?", "Is the square red?"]
    got = vqa.p_yes(image, questions)
    ids = {w: LLAVA_WORDS.index(w) for w in ("yes", "Yes", "no", "No")}
    for question, p in zip(questions, got, strict=True):
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        assert prompt.endswith(f"{question} ASSISTANT:")
        inputs = processor(images=Image.fromarray(image), text=prompt, return_tensors="pt")
        with torch.inference_mode():
            next_token = torch.softmax(model(**inputs).logits[0, -1], dim=-1)
        yes, no = next_token[ids["yes"]] + next_token[ids["Yes"]], next_token[ids["no"]] + next_token[ids["No"]]
        assert p == pytest.approx(float(yes / (yes + no)), abs=1e-5)
    # A choice of two tokens is scored teacher-forced: the sum of both tokens' log-probabilities.
    probs = vqa.choice_probs(image, "What color is the circle?", ["red", "blue circle"])
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What color is the circle?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    full = processor(images=Image.fromarray(image), text=prompt + " blue circle", return_tensors="pt")
    with torch.inference_mode():
        logp = torch.log_softmax(model(**full).logits[0], dim=-1)
    n = full["input_ids"].shape[1]
    two = float(logp[n - 3, LLAVA_WORDS.index("blue")] + logp[n - 2, LLAVA_WORDS.index("circle")])
    one = float(logp[n - 3, LLAVA_WORDS.index("red")])
    np.testing.assert_allclose(probs, np.exp([one, two]) / np.exp([one, two]).sum(), atol=1e-5)
    protocol = vqa.protocol()
    json.dumps(protocol)
    assert protocol["prompt"] == "chat template" and protocol["model_type"] == "llava"
    assert protocol["chat_template_sha256"] is not None


def test_generic_model_plain_template(vqa_folders: dict[str, Path]) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    template = "{image}\nQuestion: {question} Answer:"
    vqa = load_vqa_model(str(vqa_folders["llava"]), template=template, chat=False)
    assert vqa.prompt("Is there a circle?") == "<image>\nQuestion: Is there a circle? Answer:"
    model = AutoModelForImageTextToText.from_pretrained(vqa_folders["llava"]).eval()
    processor = AutoProcessor.from_pretrained(vqa_folders["llava"])
    image = _image(2)
    inputs = processor(images=Image.fromarray(image), text=vqa.prompt("Is there a circle?"), return_tensors="pt")
    with torch.inference_mode():
        next_token = torch.softmax(model(**inputs).logits[0, -1], dim=-1)
    yes = next_token[LLAVA_WORDS.index("yes")] + next_token[LLAVA_WORDS.index("Yes")]
    no = next_token[LLAVA_WORDS.index("no")] + next_token[LLAVA_WORDS.index("No")]
    assert vqa.p_yes(image, ["Is there a circle?"])[0] == pytest.approx(float(yes / (yes + no)), abs=1e-5)
    # Without the image token LLaVA's processor refuses the prompt: the error says where it goes.
    bare = load_vqa_model(str(vqa_folders["llava"]), chat=False)
    with pytest.raises(SdevalError, match=r"put \{image\} in --vqa-template"):
        bare.p_yes(image, ["Is there a circle?"])
    with pytest.raises(SdevalError, match=r"must contain \{question\}"):
        load_vqa_model(str(vqa_folders["llava"]), template="Describe the image.")
    with pytest.raises(SdevalError, match=r"only \{question\} and \{image\}"):
        load_vqa_model(str(vqa_folders["llava"]), template="{question} {colour}")


def test_vqa_model_loading_errors(vqa_folders: dict[str, Path], tmp_path: Path) -> None:
    import safetensors.torch

    with pytest.raises(SdevalError, match=r"no config\.json"):
        load_vqa_model(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(SdevalError, match="image-text-to-text"):
        load_vqa_model(str(tmp_path))
    # Weights missing for the class: transformers would initialise them randomly and only warn.
    partial = tmp_path / "partial"
    partial.mkdir()
    for item in vqa_folders["llava"].iterdir():
        (partial / item.name).write_bytes(item.read_bytes())
    weights = safetensors.torch.load_file(partial / "model.safetensors")
    dropped = sorted(weights)[-1]
    del weights[dropped]
    safetensors.torch.save_file(weights, partial / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(SdevalError, match="its weights lack 1 parameters"):
        load_vqa_model(str(partial))
    with pytest.raises(SdevalError, match="--vqa-dtype must be one of"):
        load_vqa_model(str(vqa_folders["blip"]), dtype="int8")
    # A hub id that is not cached, offline (tests set HF_HUB_OFFLINE): one line naming the way out.
    with pytest.raises(SdevalError, match="--vqa-model PATH"):
        load_vqa_model("sdeval-test/no-such-vqa")
    with pytest.raises(SdevalError, match="--vqa-model PATH"):
        build_judge("vqa", vqa_model="sdeval-test/no-such-vqa")
    with pytest.raises(SdevalError, match="--vqa-threshold"):
        build_judge("vqa", vqa_model="sdeval-test/no-such-vqa", vqa_threshold=-1)
