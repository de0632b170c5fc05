"""The questions a VQA judge asks, and the rule that scores the answers.

Three sources, one `Question` type:
- a GenEval spec: one yes/no question per fact (`spec_questions`), worded so that a truthful answer decides the fact
  exactly as GenEval's rules do (`judges/rules.py`): "at least n" for a count, "at least n ... -> no" for an exclude;
  a colour or position question depends on the presence (and colour) questions of the objects it names, as GenEval
  checks a colour or relation only on objects it matched;
- TIFA (Hu et al. 2023): `tifa_v1.0_question_answers.json`, a JSON list of records `{"id", "caption", "question",
  "choices", "answer", "element_type", "element"}`; yes/no and multiple-choice questions, each scored 1 when the
  model's answer is the record's `answer` (TIFA maps a free-form answer to the nearest choice with SBERT; here the
  model ranks the choices by likelihood, ties going to the first listed);
- DSG (Cho et al. 2024): the `dsg-1k-anns.csv` layout, rows `item_id, text, proposition_id, dependency,
  category_broad, tuple, question_natural_language` (also as JSON/JSONL records with those keys, or DSG's own
  `{item_id: {"qid2question", "qid2dependency"}}` output); every question expects "yes".

Scoring (`score_answers`) is DSG's `calc_vqa_score`: a question scores 1 when answered as expected; a question scores
0 when any of its parents was answered otherwise (the parent's own answer, not its score after this rule, as DSG's
code does); the image's score is the mean over its questions (TIFA and DSG), and it passes when every question does.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdeval.core.errors import SdevalError
from sdeval.core.textfiles import json_problem, read_user_text
from sdeval.judges.rules import fact_text, spec_facts
from sdeval.suites.load import Suite
from sdeval.suites.spec import Spec

YES, NO = "yes", "no"
BINARY = (YES, NO)
#: Question file formats `load_questions` reads.
FORMATS = ("tifa", "dsg")
_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
#: Plurals English spells otherwise than with -s/-es (COCO's classes among them).
_IRREGULAR = {"person": "people", "mouse": "mice", "knife": "knives", "sheep": "sheep", "skis": "skis"}
_RELATION_WORDS = {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}


@dataclass(frozen=True)
class Question:
    """One question about an image: it holds when the model answers `answer` (one of `choices`)."""

    qid: str
    text: str
    answer: str = YES
    choices: tuple[str, ...] = BINARY
    parents: tuple[str, ...] = ()  # qids whose "wrong" answer voids this one (DSG dependency)
    kind: str = "question"  # GenEval fact kind, TIFA element_type, DSG category_broad
    label: str = ""  # what it checks, in words (the fact for spec questions); defaults to the text

    def __post_init__(self) -> None:
        if len(self.choices) == 2 and {c.lower() for c in self.choices} == set(BINARY):
            # Yes/no in any case or order becomes ("yes", "no"): P(yes) is always the first probability.
            object.__setattr__(self, "choices", BINARY)
            object.__setattr__(self, "answer", self.answer.lower())
        if self.answer not in self.choices:
            raise ValueError(f"question {self.qid}: answer {self.answer!r} is not one of {list(self.choices)}")

    @property
    def binary(self) -> bool:
        """A yes/no question (decided by P(yes) against the threshold), else multiple choice (best choice wins)."""
        return self.choices == BINARY

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"qid": self.qid, "question": self.text, "answer": self.answer}
        if not self.binary:
            out["choices"] = list(self.choices)
        if self.parents:
            out["parents"] = list(self.parents)
        return out


@dataclass(frozen=True)
class Answered:
    """A question with the model's answer: `correct` before the dependency rule, `passed` after it."""

    question: Question
    probs: tuple[float, ...]  # per choice (binary: P(yes), P(no))
    answer: str
    correct: bool
    passed: bool
    voided_by: tuple[Question, ...] = ()  # parents answered otherwise than expected

    @property
    def p_yes(self) -> float | None:
        return self.probs[0] if self.question.binary else None

    def reason(self) -> str:
        """The question, what the model said and with what probability; why it was voided, if it was."""
        q = self.question
        if q.binary:
            said = f'"{q.text}" P(yes)={self.probs[0]:.3f}: {self.answer}'
        else:
            best = max(range(len(q.choices)), key=lambda i: self.probs[i])
            said = (
                f'"{q.text}" P({q.choices[best]})={self.probs[best]:.3f} of {", ".join(q.choices)}: {self.answer}'
                f", P({q.answer})={self.probs[q.choices.index(q.answer)]:.3f}"
            )
        if not self.correct:
            said += f", needs {q.answer}"
        if self.voided_by:
            parents = " and ".join(f'"{p.text}"' for p in self.voided_by)
            return f"not checked: {parents} not answered as needed; {said}"
        return said

    def to_json(self) -> dict[str, Any]:
        out = self.question.to_json()
        out.update({"said": self.answer, "passed": self.passed})
        if self.question.binary:
            out["p_yes"] = self.probs[0]
        else:
            out["probs"] = dict(zip(self.question.choices, self.probs, strict=True))
        if self.voided_by:
            out["voided_by"] = [p.qid for p in self.voided_by]
        return out


def score_answers(questions: Sequence[Question], probs: Sequence[Sequence[float]], threshold: float) -> list[Answered]:
    """DSG's rule (module docstring). `probs[i]`: question i's probability per choice; a yes/no question is answered
    "yes" when P(yes) >= threshold, a multiple-choice one with its most probable choice (first on ties)."""
    if len(probs) != len(questions):
        raise ValueError(f"{len(probs)} answers for {len(questions)} questions")
    said: dict[str, str] = {}
    correct: dict[str, bool] = {}
    by_qid = {q.qid: q for q in questions}
    for q, p in zip(questions, probs, strict=True):
        if len(p) != len(q.choices):
            raise ValueError(f"question {q.qid}: {len(p)} probabilities for {len(q.choices)} choices")
        if q.binary:
            answer = q.choices[0] if p[0] >= threshold else q.choices[1]
        else:
            answer = q.choices[max(range(len(p)), key=lambda i: (p[i], -i))]
        said[q.qid] = answer
        correct[q.qid] = answer == q.answer
    out = []
    for q, p in zip(questions, probs, strict=True):
        voided = tuple(by_qid[parent] for parent in q.parents if not correct.get(parent, True))
        out.append(
            Answered(q, tuple(float(x) for x in p), said[q.qid], correct[q.qid], correct[q.qid] and not voided, voided)
        )
    return out


# -- questions from a GenEval spec ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuestionTemplates:
    """The wording of spec questions. Fields: {a} (article), {object}, {objects} (plural), {number}, {color},
    {relation} ("to the left of"), {target} / {targets}. `absent` asks for the excluded count and expects "no"."""

    present: str = "Is there {a} {object}?"
    count: str = "Are there at least {number} {objects}?"
    color: str = "Is the {object} {color}?"
    colors: str = "Are the {number} {objects} {color}?"
    position: str = "Is the {object} {relation} the {target}?"
    positions: str = "Are the {objects} {relation} the {targets}?"
    absent_one: str = "Is there {a} {object}?"
    absent: str = "Are there at least {number} {objects}?"

    def to_json(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def plural(noun: str) -> str:
    """English plural of a class name ("bus" -> "buses", "wine glass" -> "wine glasses", "person" -> "people")."""
    head, _, last = noun.rpartition(" ")
    if last in _IRREGULAR:
        word = _IRREGULAR[last]
    elif last.endswith(("s", "x", "z", "ch", "sh")):
        word = last + "es"
    elif last.endswith("y") and last[-2:-1] not in ("a", "e", "i", "o", "u", ""):
        word = last[:-1] + "ies"
    else:
        word = last + "s"
    return f"{head} {word}" if head else word


def number_word(n: int) -> str:
    return _NUMBERS[n] if 0 <= n < len(_NUMBERS) else str(n)


def spec_questions(spec: Spec, templates: QuestionTemplates | None = None) -> list[Question]:
    """One question per fact of `spec`, in `spec_facts` order (qid "kind:index"); see the module docstring."""
    t = templates or QuestionTemplates()
    questions = []
    for kind, index in spec_facts(spec):
        if kind == "absent":
            exclude = spec.exclude[index]
            template = t.absent_one if exclude.count == 1 else t.absent
            text = template.format(**_words(exclude.cls, exclude.count))
            questions.append(Question(f"absent:{index}", text, NO, kind=kind, label=fact_text(kind, spec, index)))
            continue
        include = spec.include[index]
        words = _words(include.cls, include.count, include.color)
        parents: tuple[str, ...] = ()
        if kind in ("present", "count"):
            text = (t.present if include.count == 1 else t.count).format(**words)
        elif kind == "color":
            text = (t.color if include.count == 1 else t.colors).format(**words)
            parents = (_presence(spec, index),)
        else:
            assert include.position is not None
            relation, target = include.position
            other = spec.include[target]
            words.update(
                relation=_RELATION_WORDS[relation],
                target=other.cls,
                targets=other.cls if other.count == 1 else plural(other.cls),
            )
            many = include.count > 1 or other.count > 1
            text = (t.positions if many else t.position).format(**words)
            parents = _matched(spec, index) + _matched(spec, target)
            if other.position is not None and target < index:  # GenEval checks positions in include order
                parents += (f"position:{target}",)
        questions.append(
            Question(f"{kind}:{index}", text, YES, parents=parents, kind=kind, label=fact_text(kind, spec, index))
        )
    return questions


def _words(cls: str, count: int, color: str | None = None) -> dict[str, str]:
    return {
        "a": "an" if cls[:1].lower() in "aeiou" else "a",
        "object": cls,
        "objects": plural(cls),
        "number": number_word(count),
        "color": color or "",
    }


def _presence(spec: Spec, index: int) -> str:
    return f"{'present' if spec.include[index].count == 1 else 'count'}:{index}"


def _matched(spec: Spec, index: int) -> tuple[str, ...]:
    """The questions that decide whether GenEval matched include[index]: its presence, and its colour if any."""
    return (_presence(spec, index),) + ((f"color:{index}",) if spec.include[index].color is not None else ())


# -- question files -------------------------------------------------------------------------------------------------


@dataclass
class QuestionSet:
    """Questions per prompt from a TIFA or DSG file, joined to an image by prompt id, else by prompt text."""

    format: str
    path: str
    sha256: str
    by_id: dict[str, tuple[Question, ...]] = field(default_factory=dict)
    by_text: dict[str, tuple[Question, ...]] = field(default_factory=dict)
    name: str | None = None  # a suite's set: its name there (None: a file)
    #: A suite's set: each row's category by prompt id and by text (a file has none: its format is the category).
    categories: dict[str, str] = field(default_factory=dict)
    categories_by_text: dict[str, str] = field(default_factory=dict)

    def category(self, prompt_id: str | None, prompt_text: str | None) -> str | None:
        """The suite row's category of a prompt whose questions this set gives (None: none known)."""
        if prompt_id is not None and str(prompt_id) in self.by_id:
            return self.categories.get(str(prompt_id))
        return self.categories_by_text.get(prompt_text) if prompt_text is not None else None

    def lookup(self, prompt_id: str | None, prompt_text: str | None) -> tuple[Question, ...] | None:
        """The questions of a prompt: by id first, then by exact prompt text; None when neither matches."""
        if prompt_id is not None and str(prompt_id) in self.by_id:
            return self.by_id[str(prompt_id)]
        if prompt_text is not None and prompt_text in self.by_text:
            return self.by_text[prompt_text]
        return None

    def identity(self) -> dict[str, Any]:
        """What the protocol records about the questions."""
        n = sum(len(q) for q in self.by_id.values())
        out: dict[str, Any] = {
            "format": self.format,
            "path": self.path,
            "sha256": self.sha256,
            "prompts": len(self.by_id),
            "n": n,
        }
        if self.name is not None:
            out["set"] = self.name
        return out


def load_questions(path: str | Path, format: str | None = None) -> QuestionSet:
    """A TIFA (.json/.jsonl) or DSG (.csv/.json/.jsonl) question file; `format` is read from it when None.

    Every problem is one SdevalError naming the file and the record (JSON: record index; CSV/JSONL: line).
    """
    if format is not None and format not in FORMATS:
        raise SdevalError(f"question format must be one of {', '.join(FORMATS)}, got {format!r}")
    path = Path(path)
    text = read_user_text(path, "question")
    sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if path.suffix.lower() == ".csv":
        if format == "tifa":
            raise SdevalError(f"{path}: TIFA questions are JSON (tifa_v1.0_question_answers.json), not CSV")
        records = _csv_records(path, text)
        format = "dsg"
    else:
        records = _json_records(path, text)
        format = format or _detect(path, records)
    parse = _tifa if format == "tifa" else _dsg
    questions = QuestionSet(format=format, path=str(path), sha256=sha256)
    for prompt_id, prompt_text, items in parse(path, records):
        questions.by_id[prompt_id] = items
        if prompt_text:
            questions.by_text.setdefault(prompt_text, items)
    if not questions.by_id:
        raise SdevalError(f"{path}: no questions in it")
    return questions


def suite_questions(suite: Suite, name: str) -> QuestionSet:
    """A suite's question set `name` (format 2, docs/suites.md) as the structure `load_questions` gives: the
    questions of each row by its id (and text), with their dependencies; SdevalError when the suite has no such set
    or no row fills it (`sdeval suites build` adds the sets sdeval cannot ship)."""
    if name not in suite.question_sets:
        known = ", ".join(suite.question_sets) or "none"
        raise SdevalError(f"suite {suite.id}: no question set {name!r} (its sets: {known})")
    questions = QuestionSet(
        format=suite.question_sets[name]["format"], path=f"{suite.source}#{name}", sha256=suite.sha256, name=name
    )
    for prompt in suite.prompts:
        items = prompt.question_set(name)
        if not items:
            continue
        converted = tuple(
            Question(
                q.qid,
                q.question,
                q.answer,
                q.choices,
                q.parents,
                kind=q.kind or "question",
                label=q.label or q.question,
            )
            for q in items
        )
        questions.by_id[prompt.id] = converted
        questions.by_text.setdefault(prompt.prompt, converted)
        if prompt.category:
            questions.categories[prompt.id] = prompt.category
            questions.categories_by_text.setdefault(prompt.prompt, prompt.category)
    if not questions.by_id:
        raise SdevalError(f"suite {suite.id}: question set {name!r} is empty (see `sdeval suites show {suite.id}`)")
    return questions


def default_question_set(suite: Suite) -> str | None:
    """The set `--judge vqa` asks without `--questions`: the first the suite's header declares that holds questions
    (tifa160: `dsg`, which ships; `tifa` only with `--questions tifa`), None when no set holds any."""
    filled = {name for prompt in suite.prompts for name, items in prompt.questions if items}
    return next((name for name in suite.question_sets if name in filled), None)


# A record: (where it is, for messages; its fields).
_Record = tuple[str, Mapping[str, Any]]


def _csv_records(path: Path, text: str) -> list[_Record]:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise SdevalError(f"{path}: empty CSV (expected DSG's columns item_id, proposition_id, ...)")
    records = []
    try:
        for row in reader:
            if None in row:
                raise SdevalError(f"{path}:{reader.line_num}: more fields than the header has")
            records.append((f"{path}:{reader.line_num}", row))
    except csv.Error as err:
        raise SdevalError(f"{path}:{reader.line_num}: not valid CSV ({err})") from None
    return records


def _json_records(path: Path, text: str) -> list[_Record]:
    if path.suffix.lower() == ".jsonl":
        records = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise SdevalError(f"{path}:{n}: not valid JSON ({json_problem(err, line=False)})") from None
            records.append((f"{path}:{n}", obj))
        return records
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise SdevalError(f"{path}:{err.lineno}: not valid JSON ({json_problem(err, line=False)})") from None
    if isinstance(data, dict) and all(isinstance(v, dict) and "qid2question" in v for v in data.values()):
        return _dsg_output_records(path, data)
    if not isinstance(data, list):
        raise SdevalError(f"{path}: expected a JSON list of question records, got {type(data).__name__}")
    return [(f"{path}: record {i}", obj) for i, obj in enumerate(data)]


def _dsg_output_records(path: Path, data: Mapping[str, Any]) -> list[_Record]:
    """DSG's generation output, {item_id: {"qid2question": {...}, "qid2dependency": {...}, ...}}, as rows."""
    records = []
    for item_id, item in data.items():
        deps = item.get("qid2dependency") or {}
        tuples = item.get("qid2tuple") or {}
        if not isinstance(item["qid2question"], dict) or not isinstance(deps, dict):
            raise SdevalError(f"{path}: item {item_id!r}: qid2question and qid2dependency must be objects")
        for qid, question in item["qid2question"].items():
            row = {
                "item_id": item_id,
                "text": item.get("text") or item.get("prompt"),
                "proposition_id": qid,
                "dependency": deps.get(qid, deps.get(str(qid), "0")),
                "tuple": tuples.get(qid, ""),
                "question_natural_language": question,
            }
            records.append((f"{path}: item {item_id!r} question {qid}", row))
    return records


def _detect(path: Path, records: list[_Record]) -> str:
    first = records[0][1] if records else None
    if isinstance(first, Mapping):
        if "question_natural_language" in first or "proposition_id" in first:
            return "dsg"
        if {"question", "choices", "answer"} & set(first):
            return "tifa"
    raise SdevalError(
        f"{path}: neither TIFA records (id, question, choices, answer) nor DSG rows "
        "(item_id, proposition_id, dependency, question_natural_language)"
    )


def _field(record: Mapping[str, Any], key: str, where: str, required: bool = True) -> str:
    value = record.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise SdevalError(f"{where}: missing {key!r}")
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise SdevalError(f"{where}: {key!r} must be text, got {type(value).__name__}")
    return str(value).strip()


def _tifa(path: Path, records: list[_Record]) -> list[tuple[str, str, tuple[Question, ...]]]:
    grouped: dict[str, list[Question]] = {}
    captions: dict[str, str] = {}
    for where, record in records:
        if not isinstance(record, Mapping):
            raise SdevalError(f"{where}: expected an object, got {type(record).__name__}")
        prompt_id = _field(record, "id", where)
        question = _field(record, "question", where)
        choices = record.get("choices")
        if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
            raise SdevalError(f"{where}: 'choices' must be a list of at least two answers, got {choices!r}")
        choices = [c.strip() for c in choices]
        if len({c.lower() for c in choices}) != len(choices):
            raise SdevalError(f"{where}: 'choices' repeat an answer: {choices!r}")
        answer = _field(record, "answer", where)
        match = [c for c in choices if c.lower() == answer.lower()]
        if not match:
            raise SdevalError(f"{where}: answer {answer!r} is not one of its choices {choices!r}")
        items = grouped.setdefault(prompt_id, [])
        kind = _field(record, "element_type", where, required=False) or "question"
        items.append(Question(str(len(items) + 1), question, match[0], tuple(choices), kind=kind, label=question))
        caption = _field(record, "caption", where, required=False)
        if caption:
            captions.setdefault(prompt_id, caption)
    return [(pid, captions.get(pid, ""), tuple(items)) for pid, items in grouped.items()]


def _dsg(path: Path, records: list[_Record]) -> list[tuple[str, str, tuple[Question, ...]]]:
    grouped: dict[str, dict[str, tuple[str, Question]]] = {}
    texts: dict[str, str] = {}
    for where, record in records:
        if not isinstance(record, Mapping):
            raise SdevalError(f"{where}: expected an object, got {type(record).__name__}")
        item_id = _field(record, "item_id", where)
        qid = _proposition_id(_field(record, "proposition_id", where), "proposition_id", where)
        question = _field(record, "question_natural_language", where)
        parents = _dependency(record.get("dependency"), where)
        if qid in parents:
            raise SdevalError(f"{where}: proposition {qid} depends on itself")
        items = grouped.setdefault(item_id, {})
        if qid in items:
            raise SdevalError(f"{where}: item {item_id!r} has proposition {qid} twice (also at {items[qid][0]})")
        kind = _field(record, "category_broad", where, required=False) or "question"
        label = _field(record, "tuple", where, required=False) or question
        items[qid] = (where, Question(qid, question, YES, BINARY, parents, kind=kind, label=label))
        text = _field(record, "text", where, required=False)
        if text:
            texts.setdefault(item_id, text)
    out = []
    for item_id, items in grouped.items():
        for where, q in items.values():
            unknown = [p for p in q.parents if p not in items]
            if unknown:
                raise SdevalError(f"{where}: dependency names proposition {unknown[0]}, which item {item_id!r} lacks")
        out.append((item_id, texts.get(item_id, ""), tuple(q for _, q in items.values())))
    return out


def _proposition_id(value: str, key: str, where: str) -> str:
    try:
        number = float(value)
    except ValueError:
        raise SdevalError(f"{where}: {key} must be a number, got {value!r}") from None
    if number != int(number) or number < 0:
        raise SdevalError(f"{where}: {key} must be a whole number, got {value!r}")
    return str(int(number))


def _dependency(value: Any, where: str) -> tuple[str, ...]:
    """DSG's parent list: "0" (none), "1,4", a number or a list of numbers; 0 and "-" mean no parent."""
    if value is None:
        return ()
    if isinstance(value, bool):
        raise SdevalError(f"{where}: dependency must list proposition ids, got {value!r}")
    if isinstance(value, (int, float)):
        items: list[Any] = [value]
    elif isinstance(value, str):
        items = [v for v in value.replace(";", ",").split(",") if v.strip() not in ("", "-")]
    elif isinstance(value, list):
        items = value
    else:
        raise SdevalError(f"{where}: dependency must list proposition ids, got {value!r}")
    parents = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, float, str)):
            raise SdevalError(f"{where}: dependency must list proposition ids, got {value!r}")
        qid = _proposition_id(str(item).strip(), "dependency", where)
        if qid != "0" and qid not in parents:
            parents.append(qid)
    return tuple(parents)
