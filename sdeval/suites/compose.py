"""The compositional generator: GenEval's prompt templates over a vocabulary, each prompt with its spec by construction.

Templates and specs are GenEval's (its `create_prompts.py`), with proper English: a/an by the next word, real
plurals (people, knives, pairs of skis), and counts from the vocabulary (GenEval draws 2-4; ours include 1,
"a photo of one cat": at least one cat, fewer than two). Candidates are enumerated in a fixed order and drawn
without replacement from `numpy.random.default_rng(seed)`, so a suite is a pure function of (vocabulary, sizes,
seed) and no two of its prompts are the same.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sdeval.suites.spec import COLORS, RELATIONS, Exclude, Include, Spec

#: COCO's 80 classes, named as GenEval names them (its `object_names.txt`), in COCO's order.
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "computer mouse", "tv remote",
    "computer keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock",
    "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip
#: COCO's supercategory of each class (used as row tags, so results can be cut by kind of object).
COCO_SUPERCATEGORIES: dict[str, str] = {
    **dict.fromkeys(["person"], "person"),
    **dict.fromkeys(COCO_CLASSES[1:9], "vehicle"),
    **dict.fromkeys(COCO_CLASSES[9:14], "outdoor"),
    **dict.fromkeys(COCO_CLASSES[14:24], "animal"),
    **dict.fromkeys(COCO_CLASSES[24:29], "accessory"),
    **dict.fromkeys(COCO_CLASSES[29:39], "sports"),
    **dict.fromkeys(COCO_CLASSES[39:46], "kitchen"),
    **dict.fromkeys(COCO_CLASSES[46:56], "food"),
    **dict.fromkeys(COCO_CLASSES[56:62], "furniture"),
    **dict.fromkeys(COCO_CLASSES[62:68], "electronic"),
    **dict.fromkeys(COCO_CLASSES[68:73], "appliance"),
    **dict.fromkeys(COCO_CLASSES[73:80], "indoor"),
}
#: GenEval's ten colours.
GENEVAL_COLORS = COLORS
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
#: Nouns whose one-object phrase is not the class name itself (the spec keeps the class name).
SINGULAR_PHRASES = {"skis": "pair of skis", "scissors": "pair of scissors", "broccoli": "head of broccoli"}
IRREGULAR_PLURALS = {
    "person": "people",
    "sheep": "sheep",
    "knife": "knives",
    "computer mouse": "computer mice",
    "skis": "pairs of skis",
    "scissors": "pairs of scissors",
    "broccoli": "heads of broccoli",
}


def with_article(phrase: str) -> str:
    """`a cat`, `an orange`: by the first letter, which is right for every word these vocabularies use."""
    return f"{'an' if phrase[:1].lower() in 'aeiou' else 'a'} {phrase}"


def plural(noun: str) -> str:
    if noun in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[noun]
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def one(noun: str, color: str | None = None) -> str:
    """`a red car`, `an apple`, `a pair of skis`."""
    phrase = SINGULAR_PHRASES.get(noun, noun)
    return with_article(phrase if color is None else f"{color} {phrase}")


def counted(noun: str, count: int) -> str:
    """`one cat`, `three people`."""
    return f"{NUMBER_WORDS[count]} {SINGULAR_PHRASES.get(noun, noun) if count == 1 else plural(noun)}"


@dataclass(frozen=True)
class Vocabulary:
    """What a generated suite may name. `uncolored`: classes never given a colour (GenEval: no "red person")."""

    classes: tuple[str, ...]
    colors: tuple[str, ...]
    counts: tuple[int, ...] = (1, 2, 3, 4)
    relations: tuple[str, ...] = RELATIONS
    uncolored: frozenset[str] = frozenset()
    tags: Mapping[str, str] = field(default_factory=dict)  # class -> tag (e.g. COCO supercategory)

    def colorable(self) -> tuple[str, ...]:
        # "an orange orange" says nothing a colour test should ask, so a colour never names its own class.
        return tuple(c for c in self.classes if c not in self.uncolored)


COCO = Vocabulary(
    classes=COCO_CLASSES,
    colors=GENEVAL_COLORS,
    uncolored=frozenset({"person"}),
    tags=COCO_SUPERCATEGORIES,
)


def single_object(a: str) -> tuple[str, Spec]:
    return f"a photo of {one(a)}", Spec("single_object", (Include(a, 1),))


def two_object(a: str, b: str) -> tuple[str, Spec]:
    return f"a photo of {one(a)} and {one(b)}", Spec("two_object", (Include(a, 1), Include(b, 1)))


def counting(a: str, n: int) -> tuple[str, Spec]:
    return f"a photo of {counted(a, n)}", Spec("counting", (Include(a, n),), (Exclude(a, n + 1),))


def colors(a: str, color: str) -> tuple[str, Spec]:
    return f"a photo of {one(a, color)}", Spec("colors", (Include(a, 1, color),))


def position(a: str, relation: str, b: str) -> tuple[str, Spec]:
    """`a photo of a dog left of a cat`: GenEval lists the reference object (b) first, then a, placed relative
    to include[0]."""
    spec = Spec("position", (Include(b, 1), Include(a, 1, position=(relation, 0))))
    return f"a photo of {one(a)} {relation} {one(b)}", spec


def color_attr(a: str, ca: str, b: str, cb: str) -> tuple[str, Spec]:
    spec = Spec("color_attr", (Include(a, 1, ca), Include(b, 1, cb)))
    return f"a photo of {one(a, ca)} and {one(b, cb)}", spec


MAKERS: dict[str, Callable[..., tuple[str, Spec]]] = {
    "single_object": single_object,
    "two_object": two_object,
    "counting": counting,
    "colors": colors,
    "position": position,
    "color_attr": color_attr,
}


def candidates(vocab: Vocabulary, category: str) -> list[tuple[Any, ...]]:
    """The arguments of every prompt of a category that the vocabulary allows (for MAKERS[category]), in a fixed
    order. Arguments, not prompts: color_attr over COCO has half a million, and only a hundred are drawn."""
    cls, col, colorable = vocab.classes, vocab.colors, vocab.colorable()
    pairs = list(itertools.permutations(cls, 2))
    if category == "single_object":
        return [(a,) for a in cls]
    if category == "two_object":
        return pairs
    if category == "counting":
        return [(a, n) for a in cls for n in vocab.counts]
    if category == "colors":
        return [(a, c) for a in colorable for c in col if c != a]
    if category == "position":
        return [(a, r, b) for a, b in pairs for r in vocab.relations]
    if category == "color_attr":
        return [
            (a, ca, b, cb)
            for a, b in itertools.permutations(colorable, 2)
            for ca, cb in itertools.permutations(col, 2)
            if ca != a and cb != b
        ]
    raise ValueError(f"unknown category {category!r}")


def generate(vocab: Vocabulary, sizes: Mapping[str, int | None], seed: int, prefix: str = "") -> list[dict[str, Any]]:
    """Suite rows: for each category in `sizes` (in its order), `size` prompts drawn without replacement (None or
    more than there are: all of them, shuffled). Ids are `PREFIX CATEGORY-NNN`."""
    import numpy as np  # numpy: when prompts are drawn, not when a judge reads the vocabularies

    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for category, size in sizes.items():
        pool = candidates(vocab, category)
        k = len(pool) if size is None else min(size, len(pool))
        for i, index in enumerate(rng.choice(len(pool), size=k, replace=False).tolist()):
            text, spec = MAKERS[category](*pool[index])
            row: dict[str, Any] = {"id": f"{prefix}{category}-{i:03d}", "prompt": text, "category": category}
            tags = sorted({vocab.tags[c] for c in spec.classes if c in vocab.tags})
            if tags:
                row["tags"] = tags
            row["spec"] = spec.to_json()
            rows.append(row)
    return rows
