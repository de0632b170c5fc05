"""T2I-CompBench's BLIP-VQA questions: one "{noun phrase}?" per noun chunk of the prompt.

As Karine-Huang/T2I-CompBench `BLIPvqa_eval/BLIP_vqa.py` (Create_annotation_for_BLIP) makes them: spaCy's
`noun_chunks` of the prompt, less the chunks 'top', 'the side', 'the left' and 'the right', the first `--np_num` (8)
of them, each asked as "{chunk}?" after BLIP's `pre_question` (`BLIPvqa_eval/data/utils.py`: lower case, the
characters .!"()*#:; and ~ removed). The questions are made once, when the suite is converted from the originals
(`python -m sdeval.suites.benchmarks`), and ship in the suite: scoring needs no spaCy.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

#: The categories T2I-CompBench scores with BLIP-VQA: their rows carry these questions (question set `blip_vqa`).
T2I_BLIP_VQA = ("color", "shape", "texture")
#: The chunks T2I-CompBench leaves out ("todo remove some phrases").
EXCLUDED = ("top", "the side", "the left", "the right")
#: BLIP_vqa.py's --np_num: questions past the 8th are not asked (an image scores the product of the first 8).
MAX_PHRASES = 8
#: The spaCy pipeline the shipped questions were made with (T2I-CompBench's requirements.txt pins 3.5.0, which
#: this package cannot get: 3.6.0 and 3.8.0 split 52 of the 900 prompts differently, so 3.5.0 may differ too).
SPACY_MODEL = ("en_core_web_sm", "3.8.0")
_PUNCTUATION = re.compile(r"([.!\"()*#:;~])")


def pre_question(question: str, max_words: int = 50) -> str:
    """BLIP's `pre_question`: the text BLIP's VQA reads."""
    question = _PUNCTUATION.sub("", question.lower()).rstrip(" ")
    words = question.split(" ")
    return " ".join(words[:max_words]) if len(words) > max_words else question


def questions(phrases: Sequence[str]) -> list[dict[str, Any]]:
    """A row's question set: qid 1.., "{phrase}?" as BLIP reads it, the phrase as its label."""
    return [
        {"qid": str(i), "question": pre_question(f"{phrase}?"), "kind": "noun phrase", "label": phrase}
        for i, phrase in enumerate(phrases[:MAX_PHRASES], start=1)
    ]


def kept(chunks: Sequence[str]) -> list[str]:
    """The noun chunks T2I-CompBench asks about: all but EXCLUDED, in order (the cap is `questions`')."""
    return [chunk for chunk in chunks if chunk not in EXCLUDED]


def noun_phrases(texts: Sequence[str], model: str = SPACY_MODEL[0]) -> list[list[str]]:
    """Each text's noun chunks as T2I-CompBench keeps them; `model`: a spaCy pipeline's package name or folder,
    which must be SPACY_MODEL's version (so a rebuild gives the shipped questions)."""
    # spaCy: a maintainer's dependency, only to rebuild the shipped suite (not installed with sdeval).
    import spacy  # pyright: ignore[reportMissingImports]

    nlp = spacy.load(model)
    meta = nlp.meta
    if meta.get("lang") != "en" or not str(meta.get("name", "")).startswith("core_web_sm"):
        raise ValueError(f"{model}: not {SPACY_MODEL[0]} ({meta.get('lang')}_{meta.get('name')})")
    if meta.get("version") != SPACY_MODEL[1]:
        raise ValueError(f"{model}: version {meta.get('version')}, the shipped questions are {' '.join(SPACY_MODEL)}")
    # BLIP_vqa.py reads the prompt back from the image's file name, `{prompt}_{n:06d}.png`, up to the first "_".
    return [kept([c.text for c in nlp(text.split("_")[0]).noun_chunks]) for text in texts]
