"""The CLIP contrast judge: a fact holds when the image is closer (cosine, open_clip) to the true caption than to
every caption that changes only that fact: another colour, one object fewer, the relation changed or its two
objects swapped, the object replaced by another class or left out, one object too many for an exclude.

Cheap (one image embedding per image, text embeddings shared by all images of a prompt) and weak: CLIP reads
captions largely as bags of words (Yuksekgonul et al. 2023, "When and why vision-language models behave like
bags-of-words"), so "a red car and a blue bench" and "a blue car and a red bench" embed nearly alike, and
relations and counts are barely seen. Use it as a quick screen, not as GenEval's number.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from sdeval.features.clip_specs import CLIP_SCORE_MODEL
from sdeval.judges.base import COLORS, FactVerdict, Judgement
from sdeval.judges.rules import fact_text, spec_facts
from sdeval.suites.compose import COCO_CLASSES
from sdeval.suites.spec import RELATIONS, Spec

#: COCO's 80 classes (the vocabulary GenEval's prompts draw from): an object's presence is contrasted with each
#: of these that the spec does not name.
COCO_OBJECTS = COCO_CLASSES
#: What the protocol says about this judge's blind spots.
CAVEAT = (
    "bag-of-words: weak on attribute binding and relations (CLIP matches words more than their arrangement); "
    "counts beyond two or three are barely seen"
)
_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


@dataclass(frozen=True)
class Thing:
    """One object phrase of a caption: `count` objects of `cls`, of `color` when given."""

    cls: str
    count: int = 1
    color: str | None = None

    def text(self) -> str:
        # GenEval's create_prompts.py wording: article by the first letter, number words, plural by "s"/"es".
        if self.count == 1:
            head = self.color or self.cls
            article = "an" if head[0] in "aeiou" else "a"
            return " ".join(p for p in (article, self.color, self.cls) if p)
        number = _NUMBERS[self.count] if self.count < len(_NUMBERS) else str(self.count)
        plural = f"{self.cls}es" if self.cls.endswith("s") else f"{self.cls}s"
        return " ".join(p for p in (number, self.color, plural) if p)


@dataclass(frozen=True)
class Caption:
    """A structured caption: object phrases and relations (subject index, relation, object index) between them.

    Two captions differ in a fact when one of these fields differs: a thing's class, count or colour, a thing
    present in one only, or a relation.
    """

    things: tuple[Thing, ...]
    relations: tuple[tuple[int, str, int], ...] = field(default=())

    def text(self) -> str:
        """'a photo of ...' as GenEval words its prompts: 'a dog left of a cat', 'a red car and a blue bench'."""
        clauses = [f"{self.things[s].text()} {rel} {self.things[o].text()}" for s, rel, o in self.relations]
        related = {i for s, _, o in self.relations for i in (s, o)}
        clauses += [t.text() for i, t in enumerate(self.things) if i not in related]
        return "a photo of " + " and ".join(clauses)

    def differences(self, other: Caption) -> list[str]:
        """The fields in which `other` differs from this caption: 'things[1].color', 'relations[0]', or 'things[2]'
        for an object phrase only one of them has (the others then compared as they pair up)."""
        if len(self.things) != len(other.things):
            longer, shorter = (self, other) if len(self.things) > len(other.things) else (other, self)
            for i in range(len(longer.things)):
                alone = not any(i in (s, o) for s, _, o in longer.relations)  # else its relation goes with it
                if alone and len(longer.things) == len(shorter.things) + 1 and _without_thing(longer, i) == shorter:
                    return [f"things[{i}]"]
            return [f"things[{i}]" for i in range(len(longer.things))]
        out = []
        for i, (mine, theirs) in enumerate(zip(self.things, other.things, strict=True)):
            out += [
                f"things[{i}].{name}"
                for name in ("cls", "count", "color")
                if getattr(mine, name) != getattr(theirs, name)
            ]
        for k in range(max(len(self.relations), len(other.relations))):
            mine_rel = self.relations[k] if k < len(self.relations) else None
            theirs_rel = other.relations[k] if k < len(other.relations) else None
            if mine_rel != theirs_rel:
                out.append(f"relations[{k}]")
        return out


@dataclass(frozen=True)
class ContrastFact:
    """One fact of a spec with the captions that deny it and nothing else."""

    kind: str
    fact: str
    contrasts: tuple[Caption, ...]


def true_caption(spec: Spec) -> Caption:
    """The caption that states every include of the spec (excludes are implied by the counts)."""
    things = tuple(Thing(i.cls, i.count, i.color) for i in spec.include)
    relations = tuple((k, i.position[0], i.position[1]) for k, i in enumerate(spec.include) if i.position is not None)
    return Caption(things, relations)


def contrast_facts(
    spec: Spec, objects: Sequence[str] = COCO_OBJECTS, colors: Sequence[str] = COLORS
) -> list[ContrastFact]:
    """Per fact of the spec (in rules.spec_facts order), the captions that change exactly that fact."""
    truth = true_caption(spec)
    named = set(spec.classes)
    out = []
    for kind, index in spec_facts(spec):
        contrasts: list[Caption] = []
        if kind == "present":
            thing = truth.things[index]
            contrasts += [_with_thing(truth, index, replace(thing, cls=o)) for o in objects if o not in named]
            # Leaving the object out also drops its colour or relation, unless it has none.
            in_relation = any(index in (s, o) for s, _, o in truth.relations)
            if len(truth.things) > 1 and thing.color is None and not in_relation:
                contrasts.append(_without_thing(truth, index))
        elif kind == "count":
            thing = truth.things[index]
            contrasts.append(_with_thing(truth, index, replace(thing, count=thing.count - 1)))
        elif kind == "color":
            thing = truth.things[index]
            contrasts += [_with_thing(truth, index, replace(thing, color=c)) for c in colors if c != thing.color]
        elif kind == "position":
            k = next(n for n, (s, _, _) in enumerate(truth.relations) if s == index)
            subject, relation, target = truth.relations[k]
            options = [(subject, r, target) for r in RELATIONS if r != relation] + [(target, relation, subject)]
            contrasts += [replace(truth, relations=_replaced(truth.relations, k, r)) for r in options]
        elif kind == "absent":
            exclude = spec.exclude[index]
            same = [n for n, t in enumerate(truth.things) if t.cls == exclude.cls and t.color is None]
            if same:
                contrasts.append(_with_thing(truth, same[0], replace(truth.things[same[0]], count=exclude.count)))
            else:
                contrasts.append(replace(truth, things=(*truth.things, Thing(exclude.cls, exclude.count))))
        # A contrast that reads like the truth (or another contrast) would test nothing.
        unique = list({c.text(): c for c in contrasts if c.text() != truth.text()}.values())
        out.append(ContrastFact(kind, fact_text(kind, spec, index), tuple(unique)))
    return out


def contrast_captions(
    spec: Spec, objects: Sequence[str] = COCO_OBJECTS, colors: Sequence[str] = COLORS
) -> dict[str, list[str]]:
    """Per fact (its words, as the rules write it), the caption texts that deny exactly that fact."""
    out: dict[str, list[str]] = {}
    for fact in contrast_facts(spec, objects, colors):
        key, n = fact.fact, 2
        while key in out:  # two includes of one class state the same words
            key, n = f"{fact.fact} (#{n})", n + 1
        out[key] = [c.text() for c in fact.contrasts]
    return out


class ClipContrastJudge:
    """Judges each fact by whether the true caption beats every caption that denies only that fact."""

    name = "clip"

    def __init__(
        self,
        embedder: Any,
        objects: Sequence[str] = COCO_OBJECTS,
        colors: Sequence[str] = COLORS,
        cache_specs: int = 64,
    ) -> None:
        self.embedder = embedder
        self.objects = tuple(objects)
        self.colors = tuple(colors)
        self._cache_specs = cache_specs
        # Suites give several images per prompt, usually in a row: keep the captions' embeddings of recent specs.
        self._texts: OrderedDict[str, tuple[list[ContrastFact], np.ndarray]] = OrderedDict()

    def judge(self, image: np.ndarray, spec: Spec) -> Judgement:
        facts, table = self._captions(spec)
        features = self.embedder.embed_images([image])[0]
        sims = table @ features
        truth_sim, at = float(sims[0]), 1
        verdicts = []
        for fact in facts:
            n = len(fact.contrasts)
            if n == 0:
                verdicts.append(FactVerdict(fact.kind, fact.fact, True, "no caption denies this fact alone: untested"))
                continue
            mine = sims[at : at + n]
            at += n
            best = int(np.argmax(mine))
            passed = truth_sim > float(mine[best])
            reason = (
                f"true caption {truth_sim:.4f} {'>' if passed else '<='} {float(mine[best]):.4f} "
                f"for '{fact.contrasts[best].text()}' (best of {n})"
            )
            verdicts.append(FactVerdict(fact.kind, fact.fact, passed, reason))
        return Judgement(passed=all(v.passed for v in verdicts), facts=tuple(verdicts))

    def _captions(self, spec: Spec) -> tuple[list[ContrastFact], np.ndarray]:
        key = json.dumps(spec.to_json(), sort_keys=True)
        if key in self._texts:
            self._texts.move_to_end(key)
            return self._texts[key]
        truth = true_caption(spec)
        facts = contrast_facts(spec, self.objects, self.colors)
        texts = [truth.text()] + [c.text() for f in facts for c in f.contrasts]
        entry = (facts, np.asarray(self.embedder.embed_texts(texts), dtype=np.float32))
        self._texts[key] = entry
        while len(self._texts) > self._cache_specs:
            self._texts.popitem(last=False)
        return entry

    def protocol(self) -> dict[str, Any]:
        clip = self.embedder.protocol()
        vocabulary = "\n".join(self.objects).encode("utf-8")
        return {
            "judge": self.name,
            "method": "a fact holds when the true caption's cosine beats every caption that denies only that fact",
            "caveat": CAVEAT,
            "clip": {
                k: clip.get(k) for k in ("model", "pretrained", "weights_sha256", "quick_gelu", "open_clip_version")
            },
            "captions": "GenEval's prompt wording ('a photo of ...')",
            "colors": list(self.colors),
            "objects": {"n": len(self.objects), "sha256": hashlib.sha256(vocabulary).hexdigest()},
        }


def _with_thing(caption: Caption, index: int, thing: Thing) -> Caption:
    return replace(caption, things=(*caption.things[:index], thing, *caption.things[index + 1 :]))


def _without_thing(caption: Caption, index: int) -> Caption:
    """The caption without thing `index` and the relations it is in; later indices shift down by one."""

    def shift(i: int) -> int:
        return i - 1 if i > index else i

    things = caption.things[:index] + caption.things[index + 1 :]
    kept = [(s, r, o) for s, r, o in caption.relations if index not in (s, o)]
    return Caption(things, tuple((shift(s), r, shift(o)) for s, r, o in kept))


def _replaced(
    relations: tuple[tuple[int, str, int], ...], k: int, new: tuple[int, str, int]
) -> tuple[tuple[int, str, int], ...]:
    return (*relations[:k], new, *relations[k + 1 :])


def build(options: dict[str, Any], device: str) -> ClipContrastJudge:
    """`--judge clip` (sdeval.judges.registry): the given ClipEmbedder, else CLIP score's model or `clip_model`."""
    embedder = options.get("clip")
    if embedder is None:
        from sdeval.features.clip import ClipEmbedder  # torch and open_clip: when a run builds it

        embedder = ClipEmbedder.load(
            options.get("clip_model") or CLIP_SCORE_MODEL.name,
            options.get("clip_pretrained") or CLIP_SCORE_MODEL.pretrained,
            device=device,
        )
    return ClipContrastJudge(embedder)
