"""Adherence judges: GenEval's rules on hand-built detections, CLIP contrast captions, and the detector judge on
the real transformers classes (OWLv2, Grounding DINO) built tiny with random weights (no downloads)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from sdeval.core.errors import SdevalError
from sdeval.judges.base import COLORS, Detection, Judgement
from sdeval.judges.clip_contrast import (
    CAVEAT,
    COCO_OBJECTS,
    Caption,
    ClipContrastJudge,
    Thing,
    contrast_captions,
    contrast_facts,
    true_caption,
)
from sdeval.judges.detector import (
    ClipColorClassifier,
    DetectorJudge,
    TransformersDetector,
    _grounding_caption,
)
from sdeval.judges.registry import build_judge
from sdeval.judges.rules import (
    Thresholds,
    box_iou,
    judge_detections,
    kept_detections,
    relative_position,
    spec_facts,
)
from sdeval.suites.spec import RELATIONS, parse_spec

SIZE = (100, 100)  # width, height of the imaginary image the rules' cases are placed in


def spec(tag: str, include: list[dict[str, Any]], exclude: list[dict[str, Any]] | None = None):
    return parse_spec({"tag": tag, "include": include, **({"exclude": exclude} if exclude else {})})


def det(cls: str, box: tuple[float, float, float, float], score: float = 0.95, color: str | None = None):
    return Detection(cls, score, box, color)


def failed_facts(judgement: Judgement) -> list[str]:
    return [f"{f.kind}:{f.fact}" for f in judgement.failed]


# -- GenEval's rules, table-driven ------------------------------------------------------------------------------

COUNTING = spec("counting", [{"class": "clock", "count": 2}], [{"class": "clock", "count": 3}])
CLOCKS = [det("clock", (0, 0, 10, 10)), det("clock", (30, 0, 40, 10)), det("clock", (60, 0, 70, 10))]
SINGLE = spec("single_object", [{"class": "dog"}])
COLOR = spec("colors", [{"class": "car", "color": "red"}])
TWO_RED = spec("colors", [{"class": "car", "count": 2, "color": "red"}])
ATTR = spec("color_attr", [{"class": "car", "color": "red"}, {"class": "bench", "color": "blue"}])
TWO = spec("two_object", [{"class": "dog"}, {"class": "cat"}])


def position(relation: str) -> Any:
    # GenEval's layout: include[1] stands in `relation` to include[0] ("a dog left of a cat").
    return spec("position", [{"class": "cat"}, {"class": "dog", "position": [relation, 0]}])


CAT = det("cat", (45, 45, 55, 55))  # 10x10 box centred at (50, 50)


def dog_at(dx: float, dy: float) -> Detection:
    return det("dog", (45 + dx, 45 + dy, 55 + dx, 55 + dy))


RULE_CASES = [
    # (id, spec, detections, thresholds, passed, failed facts)
    ("present", SINGLE, [det("dog", (0, 0, 9, 9))], None, True, []),
    ("missing", SINGLE, [det("cat", (0, 0, 9, 9))], None, False, ["present:1 dog"]),
    (
        "score at threshold is dropped (strict >)",
        SINGLE,
        [det("dog", (0, 0, 9, 9), 0.3)],
        None,
        False,
        ["present:1 dog"],
    ),
    ("score above threshold", SINGLE, [det("dog", (0, 0, 9, 9), 0.31)], None, True, []),
    ("two objects, one missing", TWO, [det("dog", (0, 0, 9, 9))], None, False, ["present:1 cat"]),
    ("two objects", TWO, [det("dog", (0, 0, 9, 9)), det("cat", (50, 50, 59, 59))], None, True, []),
    ("counting 2, found 1", COUNTING, CLOCKS[:1], None, False, ["count:2 clock"]),
    ("counting 2, found 2", COUNTING, CLOCKS[:2], None, True, []),
    ("counting 2, found 3", COUNTING, CLOCKS, None, False, ["absent:fewer than 3 clock"]),
    # A counting spec holds every object to the counting threshold (0.9), the other facts too.
    ("counting threshold", COUNTING, [det("clock", c.box, 0.8) for c in CLOCKS[:2]], None, False, ["count:2 clock"]),
    ("counting: 3rd below threshold", COUNTING, [*CLOCKS[:2], det("clock", (60, 0, 70, 10), 0.5)], None, True, []),
    ("colour", COLOR, [det("car", (0, 0, 9, 9), color="red")], None, True, []),
    ("colour mismatch", COLOR, [det("car", (0, 0, 9, 9), color="blue")], None, False, ["color:1 red car"]),
    # GenEval reads the colour of the `count` best objects only: a red car scored lower does not help.
    (
        "colour of the best object only",
        COLOR,
        [det("car", (0, 0, 9, 9), 0.9, "blue"), det("car", (50, 50, 59, 59), 0.8, "red")],
        None,
        False,
        ["color:1 red car"],
    ),
    ("colour not checked when missing", COLOR, [], None, False, ["present:1 car", "color:1 red car"]),
    (
        "two red: red, red",
        TWO_RED,
        [det("car", (0, 0, 9, 9), color="red"), det("car", (50, 50, 59, 59), 0.9, "red")],
        None,
        True,
        [],
    ),
    (
        "two red: red, blue",
        TWO_RED,
        [det("car", (0, 0, 9, 9), color="red"), det("car", (50, 50, 59, 59), 0.9, "blue")],
        None,
        False,
        ["color:2 red car"],
    ),
    (
        "colour attribution swapped",
        ATTR,
        [det("car", (0, 0, 9, 9), color="blue"), det("bench", (50, 50, 59, 59), color="red")],
        None,
        False,
        ["color:1 red car", "color:1 blue bench"],
    ),
    ("left of", position("left of"), [CAT, dog_at(-20, 0)], None, True, []),
    ("right of", position("right of"), [CAT, dog_at(20, 0)], None, True, []),
    ("above (y grows down)", position("above"), [CAT, dog_at(0, -20)], None, True, []),
    ("below", position("below"), [CAT, dog_at(0, 20)], None, True, []),
    ("left of, found right of", position("left of"), [CAT, dog_at(20, 0)], None, False, ["position:dog left of cat"]),
    ("above, found below", position("above"), [CAT, dog_at(0, 20)], None, False, ["position:dog above cat"]),
    # 10 px boxes: margin 0.1 * (10 + 10) = 2 px off each axis; a relation needs > half the offset left, so a
    # purely horizontal offset must exceed 4 px with the margin, and any offset without it.
    ("3 px left, margin 0.1", position("left of"), [CAT, dog_at(-3, 0)], None, False, ["position:dog left of cat"]),
    ("5 px left, margin 0.1", position("left of"), [CAT, dog_at(-5, 0)], None, True, []),
    ("3 px left, no margin", position("left of"), [CAT, dog_at(-3, 0)], Thresholds(position_margin=0.0), True, []),
    ("diagonal holds both", position("above"), [CAT, dog_at(-20, -20)], None, True, []),
    (
        "mostly sideways is not above",
        position("above"),
        [CAT, dog_at(-30, -6)],
        None,
        False,
        ["position:dog above cat"],
    ),
    (
        "position target missing",
        position("left of"),
        [dog_at(-20, 0)],
        None,
        False,
        ["present:1 cat", "position:dog left of cat"],
    ),
    (
        "position subject missing",
        position("left of"),
        [CAT],
        None,
        False,
        ["present:1 dog", "position:dog left of cat"],
    ),
    # Duplicates: GenEval's default keeps them (max_overlap 1.0), so two boxes on one clock count as two.
    ("duplicates kept by default", COUNTING, [CLOCKS[0], det("clock", (1, 0, 11, 10), 0.93)], None, True, []),
    (
        "duplicates suppressed at IoU 0.5",
        COUNTING,
        [CLOCKS[0], det("clock", (1, 0, 11, 10), 0.93)],
        Thresholds(nms_iou=0.5),
        False,
        ["count:2 clock"],
    ),
    (
        "suppression spares separate objects",
        COUNTING,
        [CLOCKS[0], det("clock", (1, 0, 11, 10), 0.93), CLOCKS[1]],
        Thresholds(nms_iou=0.5),
        True,
        [],
    ),
    ("other classes ignored", SINGLE, [det("dog", (0, 0, 9, 9)), det("cat", (0, 0, 9, 9))], None, True, []),
]


@pytest.mark.parametrize(
    ("spec_", "detections", "thresholds", "passed", "failed"),
    [case[1:] for case in RULE_CASES],
    ids=[case[0] for case in RULE_CASES],
)
def test_geneval_rules(spec_, detections, thresholds, passed, failed) -> None:
    judgement = judge_detections(detections, spec_, SIZE, thresholds)
    assert judgement.passed is passed
    assert failed_facts(judgement) == failed
    # Every fact of the spec is reported, in the shared order, with a reason.
    assert [(f.kind) for f in judgement.facts] == [kind for kind, _ in spec_facts(spec_)]
    assert all(f.reason for f in judgement.facts)


def test_reasons_say_what_was_found() -> None:
    counted = judge_detections(CLOCKS, COUNTING, SIZE)
    assert [f.reason for f in counted.facts] == ["found 3 clock", "found 3 clock, needs fewer than 3"]
    colour = judge_detections([det("car", (0, 0, 9, 9), color="blue")], COLOR, SIZE)
    assert colour.facts[1].reason == "the best car: blue; needs 1 red"
    missing = judge_detections([], COLOR, SIZE)
    assert missing.facts[1].reason == "not checked: found 0 car, needs at least 1"
    wrong_side = judge_detections([CAT, dog_at(20, 0)], position("left of"), SIZE)
    assert wrong_side.facts[-1].reason == "found dog right of cat, needs left of"
    close = judge_detections([CAT, dog_at(-1, 0)], position("left of"), SIZE)
    assert close.facts[-1].reason == "found dog and cat too close to call (centres within the margin)"
    right = judge_detections([CAT, dog_at(-20, 0)], position("left of"), SIZE)
    assert right.facts[-1].reason == "found dog left of cat"
    no_target = judge_detections([dog_at(-20, 0)], position("left of"), SIZE)
    assert no_target.facts[-1].reason == "no cat matched to be left of"


def test_position_checks_every_counted_object() -> None:
    # Two dogs must both be left of the cat (GenEval checks all `count` best objects against all targets).
    two_dogs = spec("position", [{"class": "cat"}, {"class": "dog", "count": 2, "position": ["left of", 0]}])
    assert judge_detections([CAT, dog_at(-20, 0), dog_at(-30, 0)], two_dogs, SIZE).passed
    mixed = judge_detections([CAT, dog_at(-20, 0), dog_at(30, 0)], two_dogs, SIZE)
    assert failed_facts(mixed) == ["position:dog left of cat"]


def test_position_chains_and_forward_references() -> None:
    # A target whose own position failed counts as unmatched for those pointing at it (GenEval's matched groups).
    chain = spec(
        "position",
        [{"class": "cat"}, {"class": "dog", "position": ["left of", 0]}, {"class": "bird", "position": ["above", 1]}],
    )
    bird = det("bird", (25, 5, 35, 15))
    assert judge_detections([CAT, dog_at(-20, 0), bird], chain, SIZE).passed
    broken = judge_detections([CAT, dog_at(20, 0), bird], chain, SIZE)
    assert failed_facts(broken) == ["position:dog left of cat", "position:bird above dog"]
    assert broken.facts[-1].reason == "no dog matched to be above"
    # A position may point at a later include; the fact is still reported with its own include.
    forward = spec("position", [{"class": "dog", "position": ["left of", 1]}, {"class": "cat"}])
    assert [f.kind for f in judge_detections([CAT, dog_at(-20, 0)], forward, SIZE).facts] == [
        "present",
        "position",
        "present",
    ]
    assert judge_detections([CAT, dog_at(-20, 0)], forward, SIZE).passed
    assert not judge_detections([CAT, dog_at(20, 0)], forward, SIZE).passed


def test_relative_position_and_iou() -> None:
    assert relative_position((0, 0, 10, 10), (20, 0, 30, 10)) == {"left of"}
    assert relative_position((20, 0, 30, 10), (0, 0, 10, 10)) == {"right of"}
    assert relative_position((0, 0, 10, 10), (0, 20, 10, 30)) == {"above"}
    assert relative_position((0, 0, 10, 10), (20, 20, 30, 30)) == {"left of", "above"}
    assert relative_position((0, 0, 10, 10), (0, 0, 10, 10)) == set()
    # Pixel-inclusive areas, as GenEval's compute_iou: (0,0,9,9) covers 100 pixels.
    assert box_iou((0, 0, 9, 9), (0, 0, 9, 9)) == 1.0
    assert box_iou((0, 0, 9, 9), (5, 0, 14, 9)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 9, 9), (20, 20, 29, 29)) == 0.0


def test_kept_detections_cap_clip_and_idempotence() -> None:
    many = [det("clock", (i, 0, i + 5, 5), 0.5 + i / 100) for i in range(20)]
    kept = kept_detections(many, COUNTING, Thresholds(counting_score=0.4))
    assert [d.score for d in kept["clock"]] == sorted((d.score for d in many), reverse=True)[:16]
    # Boxes past the image edge (padded detectors) are limited to it, so centres stay on the image.
    outside = kept_detections([det("dog", (-10, 90, 20, 130))], SINGLE, Thresholds(), SIZE)
    assert outside["dog"][0].box == (0.0, 90.0, 20.0, 100.0)
    once = kept_detections(many, COUNTING, Thresholds(counting_score=0.4, nms_iou=0.3))
    twice = kept_detections(once["clock"], COUNTING, Thresholds(counting_score=0.4, nms_iou=0.3))
    assert twice == once


def test_thresholds_validate_and_pick_by_tag() -> None:
    assert Thresholds().score_for(COUNTING) == 0.9
    assert Thresholds().score_for(TWO_RED) == 0.3
    assert Thresholds().to_json() == {
        "score": 0.3,
        "counting_score": 0.9,
        "max_objects": 16,
        "nms_iou": 1.0,
        "position_margin": 0.1,
    }
    for bad in ({"score": 1.5}, {"max_objects": 0}, {"nms_iou": 0.0}, {"position_margin": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Thresholds(**bad)


def test_judgement_json() -> None:
    judgement = judge_detections([det("car", (0, 0, 9, 9), color="blue")], COLOR, SIZE)
    out = json.loads(json.dumps(judgement.to_json()))
    assert out["passed"] is False
    assert out["facts"][1] == {
        "kind": "color",
        "fact": "1 red car",
        "passed": False,
        "reason": "the best car: blue; needs 1 red",
    }
    assert out["detections"] == [{"class": "car", "score": 0.95, "box": [0, 0, 9, 9], "color": "blue"}]


# -- CLIP contrast captions ------------------------------------------------------------------------------------


GENEVAL_SPECS = {
    "single_object": SINGLE,
    "two_object": TWO,
    "counting": COUNTING,
    "colors": COLOR,
    "position": position("right of"),
    "color_attr": ATTR,
}


def test_true_captions_use_genevals_wording() -> None:
    texts = {tag: true_caption(s).text() for tag, s in GENEVAL_SPECS.items()}
    assert texts == {
        "single_object": "a photo of a dog",
        "two_object": "a photo of a dog and a cat",
        "counting": "a photo of two clocks",
        "colors": "a photo of a red car",
        "position": "a photo of a dog right of a cat",
        "color_attr": "a photo of a red car and a blue bench",
    }
    assert Thing("apple").text() == "an apple"
    assert Thing("orange", color="orange").text() == "an orange orange"
    assert Thing("bus", 3).text() == "three buses"
    assert Thing("car", 12, "red").text() == "12 red cars"


def _assert_one_fact_each(spec_) -> None:
    truth = true_caption(spec_)
    facts = contrast_facts(spec_)
    assert [(f.kind, f.fact) for f in facts] == [
        (k, f.fact) for (k, _), f in zip(spec_facts(spec_), facts, strict=True)
    ]
    for fact in facts:
        assert fact.contrasts, fact
        texts = [c.text() for c in fact.contrasts]
        assert len(set(texts)) == len(texts)
        for caption in fact.contrasts:
            assert caption.text() != truth.text()
            assert len(truth.differences(caption)) == 1, (fact.fact, caption.text(), truth.differences(caption))


@pytest.mark.parametrize("tag", list(GENEVAL_SPECS))
def test_contrasts_differ_in_exactly_one_fact(tag: str) -> None:
    _assert_one_fact_each(GENEVAL_SPECS[tag])


def test_contrasts_differ_in_exactly_one_fact_on_random_specs() -> None:
    rng = random.Random(0)
    for _ in range(200):
        classes = rng.sample(COCO_OBJECTS, 3)
        n = rng.choice([1, 2, 3])
        include: list[dict[str, Any]] = []
        for i in range(n):
            item: dict[str, Any] = {"class": classes[i], "count": rng.choice([1, 1, 2, 4])}
            if rng.random() < 0.5:
                item["color"] = rng.choice(COLORS)
            include.append(item)
        if n > 1 and rng.random() < 0.5:
            include[1]["position"] = [rng.choice(RELATIONS), 0]
        exclude = [{"class": classes[0], "count": include[0]["count"] + 1}] if rng.random() < 0.5 else None
        _assert_one_fact_each(spec("color_attr", include, exclude))  # any GenEval tag: contrasts read the facts


def test_contrast_captions_by_fact() -> None:
    counting = contrast_captions(COUNTING)
    assert counting == {"2 clock": ["a photo of a clock"], "fewer than 3 clock": ["a photo of three clocks"]}
    pos = contrast_captions(position("left of"))
    assert pos["dog left of cat"] == [
        "a photo of a dog right of a cat",
        "a photo of a dog above a cat",
        "a photo of a dog below a cat",
        "a photo of a cat left of a dog",
    ]
    attr = contrast_captions(ATTR)
    assert "a photo of a blue car and a blue bench" in attr["1 red car"]
    assert len(attr["1 red car"]) == len(COLORS) - 1
    two = contrast_captions(TWO)
    # An object with no colour and no relation can be left out; any object can be swapped for another class.
    assert "a photo of a dog" in two["1 cat"]
    assert "a photo of a dog and a bus" in two["1 cat"]
    assert all("dog and a dog" not in t for t in two["1 cat"])
    single = contrast_captions(SINGLE)
    assert len(single["1 dog"]) == len(COCO_OBJECTS) - 1


def test_caption_differences() -> None:
    truth = Caption((Thing("dog"), Thing("cat")), ((0, "left of", 1),))
    assert truth.differences(Caption((Thing("dog"), Thing("cat")), ((1, "left of", 0),))) == ["relations[0]"]
    assert truth.differences(Caption((Thing("dog", color="red"), Thing("cat")), truth.relations)) == ["things[0].color"]
    # Dropping an object in a relation drops the relation too: two facts.
    assert len(truth.differences(Caption((Thing("dog"),)))) > 1
    plain = Caption((Thing("dog"), Thing("cat")))
    assert plain.differences(Caption((Thing("cat"),))) == ["things[0]"]


class FakeEmbedder:
    """Texts and images as fixed unit vectors: the image matches `image_text` exactly, `truth` nearly."""

    def __init__(self, truth: str, image_text: str) -> None:
        self.truth, self.image_text = truth, image_text
        self.text_calls = 0

    def embed_images(self, images: list[np.ndarray]) -> np.ndarray:
        return np.tile(np.array([1.0, 0.0, 0.0], dtype=np.float32), (len(images), 1))

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        self.text_calls += 1

        def vector(text: str) -> list[float]:
            if text == self.image_text:
                return [1.0, 0.0, 0.0]
            if text == self.truth:
                return [0.99, 0.141, 0.0]
            return [0.0, 0.0, 1.0]

        return np.asarray([vector(t) for t in texts], dtype=np.float32)

    def protocol(self) -> dict[str, Any]:
        return {"model": "fake", "pretrained": None, "weights_sha256": "0" * 64}


def test_clip_contrast_decides_each_fact() -> None:
    truth = true_caption(ATTR).text()
    fake = FakeEmbedder(truth, "a photo of a red car and a yellow bench")
    judge = ClipContrastJudge(fake)
    image = np.zeros((8, 8, 3), np.uint8)
    judgement = judge.judge(image, ATTR)
    assert not judgement.passed
    assert failed_facts(judgement) == ["color:1 blue bench"]
    assert "'a photo of a red car and a yellow bench'" in judgement.failed[0].reason
    # The captions of a spec are embedded once for all its images.
    judge.judge(image, ATTR)
    assert fake.text_calls == 1
    # The truth itself beating everything passes every fact.
    assert ClipContrastJudge(FakeEmbedder(truth, truth)).judge(image, ATTR).passed
    protocol = judge.protocol()
    assert protocol["caveat"] == CAVEAT and "bag-of-words" in CAVEAT
    assert protocol["objects"]["n"] == len(COCO_OBJECTS)


def test_clip_contrast_on_tiny_open_clip(tiny_name: str, tiny_clip_weights: dict[int, str]) -> None:
    from sdeval.features.clip import ClipEmbedder

    embedder = ClipEmbedder.load(tiny_name, tiny_clip_weights[0])
    assert isinstance(build_judge("clip", clip=embedder), ClipContrastJudge)
    judge = ClipContrastJudge(embedder, objects=COCO_OBJECTS[:6])  # a short vocabulary keeps the test fast
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    for s in GENEVAL_SPECS.values():
        judgement = judge.judge(image, s)
        assert [f.kind for f in judgement.facts] == [k for k, _ in spec_facts(s)]
        assert judgement.passed == all(f.passed for f in judgement.facts)
        assert all("true caption" in f.reason for f in judgement.facts)
    assert judge.protocol()["clip"]["weights_sha256"] == embedder.weights_sha256


# -- the detector judge: injected detector, colour by open_clip --------------------------------------------------


def two_colour_image() -> np.ndarray:
    """60x40: left half red, right half blue."""
    image = np.zeros((40, 60, 3), np.uint8)
    image[:, :30] = (220, 20, 20)
    image[:, 30:] = (20, 20, 220)
    return image


class ChannelEmbedder:
    """Crops embed as their mean RGB; colour prompts as the RGB of the colour they name (red, green, blue)."""

    RGB: ClassVar[dict[str, tuple[float, float, float]]] = {
        "red": (1.0, 0.0, 0.0),
        "green": (0.0, 1.0, 0.0),
        "blue": (0.0, 0.0, 1.0),
    }

    def embed_images(self, images: list[np.ndarray]) -> np.ndarray:
        rows = np.stack([im.reshape(-1, 3).mean(axis=0) for im in images]).astype(np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        return np.asarray([next(v for k, v in self.RGB.items() if f" {k}" in t) for t in texts], dtype=np.float32)

    def protocol(self) -> dict[str, Any]:
        return {"model": "channels"}


def test_colour_classifier_reads_the_box_crop() -> None:
    classify = ClipColorClassifier(ChannelEmbedder(), colors=("red", "green", "blue"))
    boxes = [(0.0, 0.0, 29.6, 40.0), (31.0, 5.0, 60.0, 30.0), (-3.0, 0.0, 10.0, 40.0)]
    assert classify(two_colour_image(), boxes, "car") == ["red", "blue", "red"]
    assert classify(two_colour_image(), [], "car") == []


def test_detector_judge_with_injected_detector() -> None:
    calls: list[tuple[Any, ...]] = []

    def detector(image: np.ndarray, classes: list[str], threshold: float) -> list[Detection]:
        calls.append((image.shape, tuple(classes), threshold))
        return [
            det("car", (0, 5, 25, 35), 0.9),  # on the red half
            det("bench", (35, 5, 58, 35), 0.8),  # on the blue half
            det("bench", (36, 5, 58, 35), 0.05),  # below every threshold
        ]

    judge = DetectorJudge(detector, ClipColorClassifier(ChannelEmbedder(), ("red", "green", "blue")))
    judgement = judge.judge(two_colour_image(), ATTR)
    assert judgement.passed, judgement.facts
    assert calls == [((40, 60, 3), ("car", "bench"), 0.3)]
    assert [(d.cls, d.color) for d in judgement.detections] == [("car", "red"), ("bench", "blue")]
    swapped = spec("color_attr", [{"class": "car", "color": "blue"}, {"class": "bench", "color": "red"}])
    assert failed_facts(judge.judge(two_colour_image(), swapped)) == ["color:1 blue car", "color:1 red bench"]
    # No colour fact, no colour model needed.
    plain = spec("two_object", [{"class": "car"}, {"class": "bench"}])
    assert DetectorJudge(detector, None).judge(two_colour_image(), plain).passed
    with pytest.raises(SdevalError, match="no colour model"):
        DetectorJudge(detector, None).judge(two_colour_image(), ATTR)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        judge.judge(two_colour_image().astype(np.float32), ATTR)
    assert judge.protocol()["thresholds"]["score"] == 0.3


def test_detector_judge_colour_by_tiny_open_clip(tiny_name: str, tiny_clip_weights: dict[int, str]) -> None:
    from sdeval.features.clip import ClipEmbedder

    embedder = ClipEmbedder.load(tiny_name, tiny_clip_weights[0])
    seen: list[int] = []
    color = ClipColorClassifier(embedder)

    def counting_color(image: np.ndarray, boxes: list[Any], cls: str) -> list[str]:
        seen.append(len(boxes))
        return color(image, boxes, cls)

    def detector(image: np.ndarray, classes: list[str], threshold: float) -> list[Detection]:
        return [det("car", (0, 0, 20, 20), 0.9), det("car", (30, 0, 50, 20), 0.8), det("car", (0, 20, 20, 40), 0.7)]

    judge = DetectorJudge(detector, counting_color)
    judgement = judge.judge(two_colour_image(), TWO_RED)
    # Only the two best cars (the fact's count) get a colour, each one of GenEval's colours.
    assert seen == [2]
    assert [d.color in COLORS for d in judgement.detections[:2]] == [True, True]
    assert judgement.detections[2].color is None
    colours = [d.color for d in judgement.detections[:2]]
    assert judgement.passed == (colours == ["red", "red"])
    assert color.protocol()["weights_sha256"] == embedder.weights_sha256


# -- the detector judge on the real transformers classes, tiny and random ----------------------------------------


def _save_owlv2(folder: Path) -> Path:
    from transformers import CLIPTokenizer, Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    from sdeval.generate.tiny import clip_vocab_and_merges

    vocab, merges = clip_vocab_and_merges()
    tok_dir = folder / "tokenizer-src"
    tok_dir.mkdir(parents=True)
    (tok_dir / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (tok_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), model_max_length=16)
    config = Owlv2Config(
        text_config={
            "vocab_size": 49408,
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 16,
        },
        vision_config={
            "image_size": 64,
            "patch_size": 16,
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
        },
        projection_dim=32,
    )
    torch.manual_seed(0)
    target = folder / "owlv2"
    Owlv2ForObjectDetection(config).save_pretrained(target)
    processor = Owlv2Processor(
        image_processor=Owlv2ImageProcessor(size={"height": 64, "width": 64}), tokenizer=tokenizer
    )
    processor.save_pretrained(target)
    return target


def _save_grounding_dino(folder: Path) -> Path:
    from transformers import (
        BertConfig,
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    target = folder / "grounding-dino"
    target.mkdir(parents=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "a", "cat", "dog", "car", "clock", "bench", "red"]
    (target / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    config = GroundingDinoConfig(
        backbone_config=SwinConfig(
            image_size=64,
            patch_size=4,
            embed_dim=8,
            depths=[1, 1, 1, 1],
            num_heads=[1, 1, 1, 1],
            window_size=2,
            out_indices=[2, 3, 4],
        ),
        text_config=BertConfig(
            vocab_size=len(words),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=64,
        ),
        num_queries=12,
        encoder_layers=1,
        decoder_layers=2,  # one layer trips the tied box-head weights check
        encoder_ffn_dim=16,
        decoder_ffn_dim=16,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        d_model=32,  # GroupNorm(32, d_model) needs a multiple of 32
        num_feature_levels=3,
        encoder_n_points=1,
        decoder_n_points=1,
        max_text_len=32,
    )
    torch.manual_seed(0)
    GroundingDinoForObjectDetection(config).save_pretrained(target)
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 64})
    tokenizer = BertTokenizer(str(target / "vocab.txt"))
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def detector_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import transformers

    transformers.utils.logging.disable_progress_bar()
    root = tmp_path_factory.mktemp("detectors")
    return {"owlv2": _save_owlv2(root), "grounding-dino": _save_grounding_dino(root)}


@pytest.mark.parametrize("kind", ["owlv2", "grounding-dino"])
def test_tiny_detectors_load_by_path_and_detect(
    kind: str, detector_folders: dict[str, Path], tiny_name: str, tiny_clip_weights: dict[int, str]
) -> None:
    from sdeval.features.clip import ClipEmbedder

    folder = detector_folders[kind]
    detector = TransformersDetector.load(str(folder))
    assert detector.kind == kind
    expected = {"owlv2": "Owlv2ForObjectDetection", "grounding-dino": "GroundingDinoForObjectDetection"}[kind]
    assert type(detector.model).__name__ == expected
    image = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    found = detector(image, ["cat", "dog"], 0.0)
    assert found, "threshold 0 keeps every query"
    for d in found:
        assert d.cls in ("cat", "dog")
        assert 0.0 <= d.score <= 1.0
        assert len(d.box) == 4 and all(np.isfinite(d.box))
    # The same weights give the same boxes (nothing random at inference).
    assert detector(image, ["cat", "dog"], 0.0) == found

    embedder = ClipEmbedder.load(tiny_name, tiny_clip_weights[0])
    judge = build_judge("detector", detector_model=str(folder), clip=embedder, device="cpu")
    assert isinstance(judge, DetectorJudge)
    position_spec = spec("position", [{"class": "cat"}, {"class": "dog", "position": ["left of", 0]}])
    for s in (position_spec, ATTR, COUNTING):
        judgement = judge.judge(image, s)  # random weights: verdicts are arbitrary, the path is not
        assert [f.kind for f in judgement.facts] == [k for k, _ in spec_facts(s)]
        for d in judgement.detections:
            assert 0 <= d.box[0] <= d.box[2] <= 80 and 0 <= d.box[1] <= d.box[3] <= 48
    # Every query kept (threshold 0): the colour and position paths run on real boxes.
    keep_all = DetectorJudge.load(
        str(folder), thresholds=Thresholds(score=0.0, counting_score=0.0, nms_iou=0.5), color_embedder=embedder
    )
    attr = keep_all.judge(image, ATTR)
    assert [f.kind for f in attr.facts] == ["present", "color", "present", "color"]
    assert all(f.reason.startswith("the best ") for f in attr.facts if f.kind == "color")
    for cls in ("car", "bench"):
        objs = [d for d in attr.detections if d.cls == cls]
        if objs:  # random weights may give every box to one class
            assert objs[0].color in COLORS and all(d.color is None for d in objs[1:])
    placed = keep_all.judge(image, position_spec)
    if placed.facts[0].passed and placed.facts[1].passed:
        assert not placed.facts[2].reason.startswith(("not checked", "no "))
    protocol = judge.protocol()
    assert protocol["detector"]["model"] == f"folder:{folder.name}"
    assert protocol["detector"]["model_type"] == kind
    assert len(protocol["detector"]["weights_sha256"]) == 64
    assert protocol["thresholds"]["nms_iou"] == 0.5  # the family's defaults, not GenEval's
    assert protocol["color"]["weights_sha256"] == embedder.weights_sha256
    json.dumps(protocol)


def test_detector_loading_errors(detector_folders: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(SdevalError, match="a owlv2 model, but kind 'grounding-dino'"):
        TransformersDetector.load(str(detector_folders["owlv2"]), kind="grounding-dino")
    with pytest.raises(SdevalError, match="detector kind must be one of"):
        TransformersDetector.load(str(detector_folders["owlv2"]), kind="yolo")
    with pytest.raises(SdevalError, match=r"no config\.json"):
        TransformersDetector.load(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(SdevalError, match="supported detectors"):
        TransformersDetector.load(str(tmp_path))
    # A hub id that is not cached, offline (tests set HF_HUB_OFFLINE): one line naming the way out.
    with pytest.raises(SdevalError, match="--detector-model PATH"):
        TransformersDetector.load("sdeval-test/no-such-detector")


def test_grounding_caption_spans() -> None:
    text, spans = _grounding_caption(["cat", "wine glass"])
    assert text == "a cat. a wine glass."
    assert [text[a:b] for a, b in spans] == ["cat", "wine glass"]


def test_registry() -> None:
    with pytest.raises(SdevalError, match="--judge must be one of"):
        build_judge("yolo")
    with pytest.raises(TypeError, match="unknown option"):
        build_judge("clip", colour="red")
