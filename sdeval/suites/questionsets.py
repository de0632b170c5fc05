"""Question sets in a suite (format 2): the questions a VQA judge asks about each prompt, with their dependencies.

The header declares each set, `"question_sets": {"dsg": {"format": "dsg", "description": "..."}}`; a row holds its
questions per set, `"questions": {"dsg": [{"qid": "1", "question": "Is there a cat?"}, {"qid": "2", "question":
"Is the cat black?", "parents": ["1"]}]}`. A question holds when the answer is `answer` (default "yes"), one of
`choices` (default yes/no); `parents` are qids of the same set whose wrong answer voids it (DSG's dependency).
`kind` and `label` say what it checks (DSG: broad category and tuple; TIFA: element type and element).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Formats a question set may declare: how its source wrote the questions (docs/suites.md).
QUESTION_FORMATS = ("dsg", "tifa", "t2i-compbench")
SET_KEYS = ("format", "description", "source")
QUESTION_KEYS = ("qid", "question", "answer", "choices", "parents", "kind", "label")
YES_NO = ("yes", "no")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class SuiteQuestion:
    """One question of a row's question set."""

    qid: str
    question: str
    answer: str = "yes"
    choices: tuple[str, ...] = YES_NO
    parents: tuple[str, ...] = ()
    kind: str = ""
    label: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"qid": self.qid, "question": self.question}
        if self.answer != "yes" or self.choices != YES_NO:
            out["answer"] = self.answer
        if self.choices != YES_NO:
            out["choices"] = list(self.choices)
        if self.parents:
            out["parents"] = list(self.parents)
        if self.kind:
            out["kind"] = self.kind
        if self.label:
            out["label"] = self.label
        return out


def parse_question_sets(value: Any, where: str, bad: Callable[[str], None]) -> dict[str, dict[str, str]]:
    """The header's `question_sets`: {name: {format, description?, source?}}; each problem goes to `bad`."""
    if not isinstance(value, dict):
        bad(f"{where}: expected an object of question sets by name, got {_kind(value)}")
        return {}
    sets: dict[str, dict[str, str]] = {}
    for name, spec in value.items():
        at = f"{where}.{name}"
        if not _SAFE_NAME.match(str(name)):
            bad(f"{where}: {name!r} is not a file-name-safe name")
            continue
        if not isinstance(spec, dict):
            bad(f"{at}: expected an object with {', '.join(SET_KEYS)}, got {_kind(spec)}")
            continue
        problems = [f"{at}.{key}: unknown key (known: {', '.join(SET_KEYS)})" for key in spec if key not in SET_KEYS]
        if spec.get("format") not in QUESTION_FORMATS:
            problems.append(f"{at}.format: must be one of {', '.join(QUESTION_FORMATS)}, got {spec.get('format')!r}")
        for key in ("description", "source"):
            if key in spec and not isinstance(spec[key], str):
                problems.append(f"{at}.{key}: expected a string, got {_kind(spec[key])}")
        for problem in problems:
            bad(problem)
        if not problems:
            sets[name] = dict(spec)
    return sets


def parse_row_questions(
    value: Any, declared: dict[str, dict[str, str]], bad: Callable[[str], None]
) -> tuple[tuple[str, tuple[SuiteQuestion, ...]], ...]:
    """A row's `questions`: {set name: [question, ...]}, each set declared in the header."""
    if not isinstance(value, dict):
        bad(f"questions: expected an object of question lists by set name, got {_kind(value)}")
        return ()
    out = []
    for name, items in value.items():
        if name not in declared:
            known = ", ".join(declared) or "none declared"
            bad(f"questions.{name}: not a question set of the header's question_sets ({known})")
            continue
        if not isinstance(items, list) or not items:
            bad(f"questions.{name}: expected a non-empty list of questions, got {_kind(items)}")
            continue
        parsed = [_question(item, f"questions.{name}[{i}]", bad) for i, item in enumerate(items)]
        questions = [q for q in parsed if q is not None]
        if len(questions) < len(parsed):
            continue
        qids = [q.qid for q in questions]
        for i, q in enumerate(questions):
            at = f"questions.{name}[{i}]"
            if q.qid in qids[:i]:
                bad(f"{at}.qid: {q.qid!r} repeats questions.{name}[{qids.index(q.qid)}]")
            for parent in q.parents:
                if parent == q.qid:
                    bad(f"{at}.parents: a question cannot depend on itself ({parent!r})")
                elif parent not in qids:
                    bad(f"{at}.parents: no question {parent!r} in this set")
        out.append((name, tuple(questions)))
    return tuple(out)


def _question(item: Any, at: str, bad: Callable[[str], None]) -> SuiteQuestion | None:
    if not isinstance(item, dict):
        bad(f"{at}: expected an object, got {_kind(item)}")
        return None
    problems = [
        f"{at}.{key}: unknown key (known: {', '.join(QUESTION_KEYS)})" for key in item if key not in QUESTION_KEYS
    ]
    qid = item.get("qid")
    if isinstance(qid, int) and not isinstance(qid, bool):
        qid = str(qid)
    if not isinstance(qid, str) or not qid.strip():
        problems.append(f"{at}.qid: expected a string or an integer, got {qid!r}")
    text = item.get("question")
    if not isinstance(text, str) or not text.strip():
        problems.append(f"{at}.question: expected a non-empty string, got {text!r}")
    choices = item.get("choices", list(YES_NO))
    if not (isinstance(choices, list) and len(choices) >= 2 and all(isinstance(c, str) and c for c in choices)):
        problems.append(f"{at}.choices: expected a list of at least two answers, got {choices!r}")
        choices = list(YES_NO)
    elif len(set(choices)) != len(choices):
        problems.append(f"{at}.choices: an answer repeats in {choices!r}")
    answer = item.get("answer", "yes")
    if not isinstance(answer, str) or answer not in choices:
        problems.append(f"{at}.answer: {answer!r} is not one of the choices {choices!r}")
    parents = item.get("parents", [])
    if not (isinstance(parents, list) and all(isinstance(p, (str, int)) and not isinstance(p, bool) for p in parents)):
        problems.append(f"{at}.parents: expected a list of qids, got {parents!r}")
        parents = []
    for key in ("kind", "label"):
        if key in item and not isinstance(item[key], str):
            problems.append(f"{at}.{key}: expected a string, got {_kind(item[key])}")
    for problem in problems:
        bad(problem)
    if problems:
        return None
    assert isinstance(qid, str) and isinstance(text, str)  # checked above
    return SuiteQuestion(
        qid=qid,
        question=text,
        answer=answer,
        choices=tuple(choices),
        parents=tuple(str(p) for p in parents),
        kind=item.get("kind", ""),
        label=item.get("label", ""),
    )


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string"}.get(type(value), type(value).__name__)
