"""The calibration world: render draws what a spec says (with known mistakes), the shapes detector finds it
exactly (also on shapes drawn by independent code), the shapes judge's accuracy is 1 - injected rate, and the
`shapes` checkpoint runs through `sdeval generate` and `sdeval score` end to end."""

from __future__ import annotations

import io
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_shapes_run
from PIL import Image, ImageDraw
from scipy.stats import binom

from sdeval.calibration.detect import detect_shapes
from sdeval.calibration.judge import ShapesJudge
from sdeval.calibration.render import RenderError, render
from sdeval.calibration.world import (
    CLASSES,
    PALETTE,
    Degradation,
    MistakeRates,
    ShapesOptions,
    delta_e,
    nearest_color,
    parse_options,
)
from sdeval.cli import main
from sdeval.core.errors import ConfigError
from sdeval.generate.shapes import ShapesCheckpoint
from sdeval.judges.rules import relative_position
from sdeval.suites.spec import CATEGORIES, RELATIONS, Include, Spec, parse_spec

COUNT_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}


def make_spec(tag: str, rng: np.random.Generator) -> Spec:
    """A random GenEval spec of one category over the world's whole vocabulary."""
    a, b = (str(c) for c in rng.choice(CLASSES, 2, replace=False))
    c1, c2 = (str(c) for c in rng.choice(list(PALETTE), 2, replace=False))
    include: list[dict[str, Any]]
    exclude: list[dict[str, Any]] = []
    if tag == "single_object":
        include = [{"class": a, "count": 1}]
    elif tag == "two_object":
        include = [{"class": a, "count": 1}, {"class": b, "count": 1}]
    elif tag == "counting":
        n = int(rng.integers(1, 5))
        include, exclude = [{"class": a, "count": n}], [{"class": a, "count": n + 1}]
    elif tag == "colors":
        include = [{"class": a, "count": 1, "color": c1}]
    elif tag == "position":
        include = [{"class": a, "count": 1}, {"class": b, "count": 1, "position": [str(rng.choice(RELATIONS)), 0]}]
    else:
        include = [{"class": a, "count": 1, "color": c1}, {"class": b, "count": 1, "color": c2}]
    return parse_spec({"tag": tag, "include": include, "exclude": exclude})


def prompt_text(spec: Spec) -> str:
    def words(i: int) -> str:
        inc = spec.include[i]
        color = f"{inc.color} " if inc.color else ""
        if inc.count > 1:
            return f"{COUNT_WORDS[inc.count]} {color}{inc.cls}s"
        return f"a {color}{inc.cls}"

    if spec.tag == "position":
        return f"a photo of {words(1)} {spec.include[1].position[0]} {words(0)}"  # type: ignore[index]
    return "a photo of " + " and ".join(words(i) for i in range(len(spec.include)))


def drawn(objects: Any) -> list[tuple[str, str]]:
    return sorted((o.cls, o.color) for o in objects)


# --- render --------------------------------------------------------------------------------------------------------


def test_render_is_deterministic_and_seeded() -> None:
    rng = np.random.default_rng(0)
    options = {"mistakes": MistakeRates(counting=0.5), "degrade": Degradation(blur=0.5, noise=2.0, jpeg=80)}
    for tag in CATEGORIES:
        spec = make_spec(tag, rng)
        first, again = render(spec, 7, 128, **options), render(spec, 7, 128, **options)
        assert np.array_equal(first.image, again.image)
        assert first.objects == again.objects and first.mistake == again.mistake
        assert first.image.shape == (128, 128, 3) and first.image.dtype == np.uint8
        assert not np.array_equal(first.image, render(spec, 8, 128, **options).image)
    wide = render(make_spec("two_object", rng), 1, (192, 128))
    assert wide.image.shape == (128, 192, 3)


def test_render_honours_the_spec_geometry() -> None:
    """Sizes 1/10..1/3 of the side, >= 4 px gaps and margins, relations held with a margin."""
    rng = np.random.default_rng(1)
    for seed in range(120):
        spec = make_spec(("counting", "position", "color_attr")[seed % 3], rng)
        out = render(spec, seed, 128)
        for i, a in enumerate(out.objects):
            side = max(a.box[2] - a.box[0], a.box[3] - a.box[1])
            assert 12.8 - 1e-6 <= side <= 128 / 3 + 1e-6
            assert min(a.box[0], a.box[1], 128 - a.box[2], 128 - a.box[3]) >= 4
            for b in out.objects[i + 1 :]:
                gap = max(b.box[0] - a.box[2], a.box[0] - b.box[2], b.box[1] - a.box[3], a.box[1] - b.box[3])
                assert gap >= 4
        if spec.tag == "position":
            relation = spec.include[1].position[0]  # type: ignore[index]
            assert relation in relative_position(out.objects[1].box, out.objects[0].box)


def test_each_category_gets_its_own_kind_of_mistake() -> None:
    rng = np.random.default_rng(2)
    expected = {
        "single_object": {"missing", "wrong_object"},
        "two_object": {"missing", "wrong_object"},
        "counting": {"count"},
        "colors": {"color"},
        "position": {"relation"},
        "color_attr": {"swapped_colors"},
    }
    for tag, kinds in expected.items():
        spec = make_spec(tag, rng)
        seen = set()
        for seed in range(40):
            out = render(spec, seed, 128, MistakeRates(**{tag: 1.0}))
            assert out.mistake is not None
            seen.add(out.mistake.kind)
        assert seen == kinds, tag
        # A spec's category decides which rate applies: other categories' rates never touch it.
        others = MistakeRates(**{t: 1.0 for t in CATEGORIES if t != tag})
        assert all(render(spec, seed, 128, others).mistake is None for seed in range(10))


def test_counting_mistakes_are_one_off_and_colours_swap() -> None:
    spec = parse_spec(
        {"tag": "counting", "include": [{"class": "square", "count": 3}], "exclude": [{"class": "square", "count": 4}]}
    )
    counts = {len(render(spec, s, 128, MistakeRates(counting=1.0)).objects) for s in range(40)}
    assert counts == {2, 4}
    spec = parse_spec(
        {
            "tag": "color_attr",
            "include": [{"class": "circle", "color": "red"}, {"class": "square", "color": "blue"}],
        }
    )
    out = render(spec, 0, 128, MistakeRates(color_attr=1.0))
    assert drawn(out.objects) == [("circle", "blue"), ("square", "red")]


def test_raising_a_rate_only_adds_mistakes() -> None:
    """The mistake draw is one uniform number per image: images without a mistake are the same at any rate."""
    rng = np.random.default_rng(3)
    specs = [make_spec("colors", rng) for _ in range(60)]
    low = [render(s, i, 128, MistakeRates(colors=0.2)) for i, s in enumerate(specs)]
    high = [render(s, i, 128, MistakeRates(colors=0.5)) for i, s in enumerate(specs)]
    clean = [render(s, i, 128) for i, s in enumerate(specs)]
    for lo, hi, ok in zip(low, high, clean, strict=True):
        if lo.mistake is not None:
            assert hi.mistake is not None
        if hi.mistake is None:
            assert np.array_equal(hi.image, ok.image) and np.array_equal(lo.image, ok.image)
    assert sum(h.mistake is not None for h in high) > sum(lo.mistake is not None for lo in low)


def test_render_refuses_what_it_cannot_draw() -> None:
    with pytest.raises(RenderError, match="no class 'car'"):
        render(parse_spec({"tag": "single_object", "include": [{"class": "car"}]}), 0, 128)
    with pytest.raises(RenderError, match="no colour 'teal'"):  # parse_spec refuses it too: built by hand
        render(Spec("colors", (Include("circle", color="teal"),)), 0, 128)
    with pytest.raises(RenderError, match="too small"):
        render(parse_spec({"tag": "single_object", "include": [{"class": "circle"}]}), 0, 8)


# --- detector on the calibration world -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [128, 256])
def test_detector_recovers_what_render_drew(size: int) -> None:
    rng = np.random.default_rng(size)
    for seed in range(90 if size == 128 else 45):
        spec = make_spec(list(CATEGORIES)[seed % len(CATEGORIES)], rng)
        out = render(spec, seed, size)
        found = detect_shapes(out.image)
        assert drawn(found) == drawn(out.objects), (seed, spec)
        for obj in out.objects:
            match = min(found, key=lambda d: abs(d.box[0] - obj.box[0]) + abs(d.box[1] - obj.box[1]))
            assert max(abs(m - t) for m, t in zip(match.box, obj.box, strict=True)) <= 1.5
        if spec.tag == "position":
            relation = spec.include[1].position[0]  # type: ignore[index]
            by_class = {d.cls: d for d in found}
            assert relation in relative_position(by_class[spec.include[1].cls].box, by_class[spec.include[0].cls].box)


def test_detector_holds_under_the_worlds_own_degradations() -> None:
    rng = np.random.default_rng(4)
    for i, degrade in enumerate([Degradation(jpeg=75), Degradation(noise=4.0), Degradation(blur=0.8)]):
        for seed in range(30):
            spec = make_spec(list(CATEGORIES)[seed % len(CATEGORIES)], rng)
            out = render(spec, 1000 * i + seed, 128, degrade=degrade)
            assert drawn(detect_shapes(out.image)) == drawn(out.objects), (degrade, seed)


# --- detector on shapes drawn by independent code --------------------------------------------------------------------


def _outline(cls: str, cx: float, cy: float, side: float, angle: float, tall: bool) -> list[tuple[float, float]]:
    """Polygon corners, written independently of the renderer: unit shapes, rotated and scaled."""
    if cls == "square":
        pts = [(-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)]
    elif cls == "triangle":
        h = 1.0 if tall else math.sqrt(3) / 2  # isosceles as tall as wide, or equilateral
        pts = [(0.0, -h / 2), (0.5, h / 2), (-0.5, h / 2)]
    else:
        a = 1 / 6
        pts = [(-a, -0.5), (a, -0.5), (a, -a), (0.5, -a), (0.5, a), (a, a), (a, 0.5), (-a, 0.5), (-a, a),
               (-0.5, a), (-0.5, -a), (-a, -a)]  # fmt: skip
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + side * (x * c - y * s), cy + side * (x * s + y * c)) for x, y in pts]


def draw_independent(
    rng: np.random.Generator,
    size: int,
    background: tuple[int, int, int],
    colors: list[str],
    *,
    jpeg: bool,
    noise: float,
    jitter: int = 15,
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """1-5 shapes, 1/10..1/3 of the side, rotated, >= 4 px apart, colours jittered off the palette; drawn at 4x
    and Lanczos-resampled (anti-aliased, with ringing), then noise and JPEG q75 if asked."""
    placed: list[tuple[float, float, float]] = []
    truth: list[tuple[str, str]] = []
    scale = 4
    canvas = Image.new("RGB", (size * scale, size * scale), background)
    pen = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(1, 6))):
        for _ in range(300):
            side = float(rng.uniform(0.1, 1 / 3)) * size
            radius = 0.75 * side  # encloses every rotated shape below
            cx, cy = (float(v) for v in rng.uniform(radius + 2, size - radius - 2, 2))
            if all(math.hypot(cx - x, cy - y) >= radius + r + 4 for x, y, r in placed):
                break
        else:
            continue
        placed.append((cx, cy, radius))
        cls = str(rng.choice(CLASSES))
        name = str(rng.choice(colors))
        rgb = tuple(int(v) for v in np.clip(np.array(PALETTE[name]) + rng.integers(-jitter, jitter + 1, 3), 0, 255))
        if cls == "circle":
            r = side / 2
            pen.ellipse([(cx - r) * scale, (cy - r) * scale, (cx + r) * scale, (cy + r) * scale], fill=rgb)
        else:
            corners = _outline(cls, cx, cy, side, float(rng.uniform(0, 2 * math.pi)), bool(rng.integers(2)))
            pen.polygon([(x * scale, y * scale) for x, y in corners], fill=rgb)
        truth.append((cls, name))
    pixels = np.asarray(canvas.resize((size, size), Image.Resampling.LANCZOS), dtype=np.float64)
    if noise:
        pixels = pixels + rng.normal(0, noise, pixels.shape)
    image = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    if jpeg:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=75)
        image = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return image, sorted(truth)


BACKGROUNDS = {
    "grey": (128, 128, 128),
    "light-grey": (205, 205, 205),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "navy": (25, 35, 80),
    "beige": (230, 215, 175),
    "teal": (0, 120, 120),
}


@pytest.mark.parametrize("jpeg", [False, True], ids=["png", "jpeg75"])
@pytest.mark.parametrize("background", list(BACKGROUNDS))
def test_detector_holds_on_shapes_drawn_by_other_code(background: str, jpeg: bool) -> None:
    bg = BACKGROUNDS[background]
    # Every palette colour that stands out from this background (white shapes do not show on white).
    colors = [name for name, rgb in PALETTE.items() if delta_e(rgb, bg) >= 40]
    rng = np.random.default_rng(2 * list(BACKGROUNDS).index(background) + jpeg)
    for i in range(24):
        size = (128, 200, 256)[i % 3]
        image, truth = draw_independent(rng, size, bg, colors, jpeg=jpeg, noise=3.0 if i % 2 else 0.0)
        found = sorted((d.cls, d.color) for d in detect_shapes(image))
        assert found == truth, (background, jpeg, i)


def test_detector_sees_white_and_black_shapes_on_grey() -> None:
    rng = np.random.default_rng(5)
    for i in range(20):
        image, truth = draw_independent(rng, 160, (128, 128, 128), ["white", "black"], jpeg=bool(i % 2), noise=2.0)
        assert sorted((d.cls, d.color) for d in detect_shapes(image)) == truth


@pytest.mark.parametrize(
    ("rgb", "name"),
    [
        ((255, 0, 0), "red"),
        ((255, 165, 0), "orange"),
        ((255, 255, 0), "yellow"),
        ((0, 128, 0), "green"),
        ((0, 200, 0), "green"),
        ((0, 0, 255), "blue"),
        ((128, 0, 128), "purple"),
        ((255, 105, 180), "pink"),
        ((139, 69, 19), "brown"),
        ((0, 0, 0), "black"),
        ((255, 255, 255), "white"),
    ],
)
def test_textbook_colours_get_their_names(rgb: tuple[int, int, int], name: str) -> None:
    assert nearest_color(rgb)[0] == name


def test_detector_on_an_empty_image() -> None:
    assert detect_shapes(np.full((128, 128, 3), 90, dtype=np.uint8)) == []
    with pytest.raises(ValueError, match="HxWx3"):
        detect_shapes(np.zeros((16, 16), dtype=np.uint8))


# --- judge calibration ---------------------------------------------------------------------------------------------

PER_CELL = 120  # images per (category, rate); the exact-verdict check below is the strong one
OTHERS = 10  # images of each other category per cell


def _judge_cell(judge: ShapesJudge, tag: str, rates: MistakeRates, n: int, seed: int) -> tuple[int, int]:
    """(passed, mistakes injected) over n images of one category; every verdict must match the truth."""
    rng = np.random.default_rng(seed)
    passed = mistakes = 0
    for i in range(n):
        spec = make_spec(tag, rng)
        out = render(spec, seed * 100_000 + i, 128, rates)
        verdict = judge.judge(out.image, spec)
        assert verdict.passed == (out.mistake is None), (tag, i, out.mistake, verdict.failed)
        passed += verdict.passed
        mistakes += out.mistake is not None
    return passed, mistakes


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.5])
def test_judge_accuracy_is_one_minus_the_injected_rate(rate: float) -> None:
    judge = ShapesJudge()
    tags = list(CATEGORIES)
    for k, tag in enumerate(tags):
        rates = MistakeRates(**{tag: rate})
        passed, _ = _judge_cell(judge, tag, rates, PER_CELL, seed=1 + k)
        low, high = binom.interval(0.99, PER_CELL, 1 - rate)
        assert low <= passed <= high, f"{tag} at rate {rate}: {passed}/{PER_CELL} outside [{low}, {high}]"
        if rate:
            # The other categories, drawn by the same checkpoint, are untouched.
            for j, other in enumerate(tags):
                if other != tag:
                    assert _judge_cell(judge, other, rates, OTHERS, seed=50 + 10 * k + j) == (OTHERS, 0)


def test_judge_protocol_and_unknown_classes() -> None:
    judge = ShapesJudge()
    protocol = judge.protocol()
    assert protocol["judge"] == "shapes" and protocol["detector"] == "sdeval.calibration"
    assert protocol["version"] == 1 and protocol["classes"] == list(CLASSES)
    json.dumps(protocol)
    image = render(parse_spec({"tag": "single_object", "include": [{"class": "circle"}]}), 0, 128).image
    verdict = judge.judge(image, parse_spec({"tag": "single_object", "include": [{"class": "car"}]}))
    assert not verdict.passed and "found 0 car" in verdict.facts[0].reason


# --- options, identity ---------------------------------------------------------------------------------------------


def test_options_parse_and_identity() -> None:
    options = parse_options({"mistakes": {"colors": 0.3}, "blur": 1, "noise": 2, "jpeg": 75}, "x.options")
    assert options.mistakes.colors == 0.3 and options.degrade == Degradation(1.0, 2.0, 75)
    assert options.sha256 != ShapesOptions().sha256
    same = parse_options({"jpeg": 75, "noise": 2, "blur": 1.0, "mistakes": {"colors": 0.3}}, "x.options")
    assert options.sha256 == same.sha256
    for raw, message in [
        ({"mistakes": {"colour": 0.3}}, r"x\.mistakes\.colour: unknown category"),
        ({"mistakes": {"colors": 1.5}}, r"x\.mistakes\.colors: expected a rate in \[0, 1\]"),
        ({"blur": -1}, r"x\.blur: expected a number >= 0"),
        ({"jpeg": 100}, r"x\.jpeg: expected a JPEG quality"),
        ({"background": [250, 250, 250]}, r"x\.background: .* too close to the palette colour white"),
        ({"size": 256}, r"x\.size: unknown key"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_options(raw, "x")
    assert parse_options({"background": [40, 90, 120]}, "x").background == (40, 90, 120)


def test_config_takes_shapes_checkpoints_with_options(tmp_path: Path) -> None:
    from sdeval.generate.config import parse_config
    from sdeval.generate.pipelines import checkpoint_identity

    (tmp_path / "p.jsonl").write_text('{"id": "a", "prompt": "a photo of a circle"}\n')

    def config(**entry: Any) -> Any:
        data = {"checkpoints": [{"name": "s", "path": "shapes", **entry}], "suite": "p.jsonl", "output_dir": "o"}
        return parse_config(data, tmp_path)

    plain, colours = config(), config(options={"mistakes": {"colors": 0.3}})
    assert plain.checkpoints[0].kind == "builtin" and plain.checkpoints[0].options == ShapesOptions()
    assert plain.sha256 != colours.sha256
    assert plain.to_dict()["checkpoints"][0]["options"]["mistakes"]["colors"] == 0.0
    ids = {checkpoint_identity(c.checkpoints[0]).sha256 for c in (plain, colours, config())}
    assert len(ids) == 2
    with pytest.raises(ConfigError, match=r"checkpoints\[0\]\.options\.mistakes\.colors"):
        config(options={"mistakes": {"colors": "high"}})
    with pytest.raises(ConfigError, match=r"checkpoints\[0\]\.options: only used with path: shapes"):
        parse_config(
            {
                "checkpoints": [{"name": "t", "path": "tiny-random", "options": {}}],
                "suite": "p.jsonl",
                "output_dir": "o",
            },
            tmp_path,
        )


# --- image-to-image ------------------------------------------------------------------------------------------------


def test_image_to_image_keeps_the_init_image_with_probability_one_minus_strength() -> None:
    rng = np.random.default_rng(6)
    checkpoint = ShapesCheckpoint("s", ShapesOptions(mistakes=MistakeRates(position=0.5)))
    specs = [make_spec("position", rng) for _ in range(200)]
    inits = [Image.fromarray(render(s, 10_000 + i, 128).image) for i, s in enumerate(specs)]
    kept_before: set[int] = set()
    for strength in (0.2, 0.5, 0.8):
        kept = set()
        for i, (spec, init) in enumerate(zip(specs, inits, strict=True)):
            out = checkpoint.image(spec, i, (128, 128), strength, init)
            if np.array_equal(out, np.asarray(init)):
                kept.add(i)
            else:  # drawn afresh: exactly what text-to-image draws with this seed
                assert np.array_equal(out, checkpoint.image(spec, i, (128, 128)))
        low, high = binom.interval(0.99, len(specs), 1 - strength)
        assert low <= len(kept) <= high, strength
        # Raising the strength only turns kept images into drawn ones.
        assert not kept_before or kept <= kept_before
        kept_before = kept


# --- generate and score end to end ---------------------------------------------------------------------------------


def _suite_rows(n_per_category: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    rows = []
    for tag in CATEGORIES:
        for i in range(n_per_category):
            spec = make_spec(tag, rng)
            rows.append({"id": f"{tag}-{i:03d}", "prompt": prompt_text(spec), "category": tag, "spec": spec.to_json()})
    return rows


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_generate_and_score_shapes_end_to_end(tmp_path: Path) -> None:
    """Two shapes checkpoints (no mistakes, colours at 0.5), 2 x 54 images, generated then judged."""
    rows = _suite_rows(9, seed=7)
    config = write_shapes_run(tmp_path, rows)
    result = CliRunner().invoke(main, ["generate", str(config), "--quiet"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines() if line.strip()]
    assert len(manifest) == 2 * len(rows)
    options = ShapesOptions(mistakes=MistakeRates(colors=0.5))
    wrong: set[str] = set()
    for row in manifest:
        if row["checkpoint"] != "colours":
            continue
        spec = parse_spec(next(r["spec"] for r in rows if r["id"] == row["id"]))
        truth = render(spec, row["seed"], 128, options.mistakes)
        colours, clean = _pixels(out / row["file"]), _pixels(out / row["file"].replace("colours/", "clean/", 1))
        assert np.array_equal(colours, truth.image)  # the file is exactly what render draws for (spec, seed)
        assert np.array_equal(colours, clean) == (truth.mistake is None)
        if truth.mistake is not None:
            assert truth.mistake.kind == "color" and row["category"] == "colors"
            wrong.add(row["id"])
    assert 0 < len(wrong) < 9

    scored = CliRunner().invoke(
        main, ["score", str(out), "--metrics", "adherence", "--judge", "shapes", "-o", str(tmp_path / "r.json")]
    )
    assert scored.exit_code == 0, scored.output
    results = json.loads((tmp_path / "r.json").read_text())
    by_checkpoint = {c["id"].split("/")[0]: c["metrics"]["adherence"] for c in results["cells"]}
    assert by_checkpoint["clean"]["value"] == 1.0
    categories = by_checkpoint["colours"]["categories"]
    assert categories["colors"]["passed"] == 9 - len(wrong)
    assert all(v["accuracy"] == 1.0 for k, v in categories.items() if k != "colors")


def test_generate_image_to_image_strength_sweep(tmp_path: Path, tiny_name: str, tiny_clip_weights: dict) -> None:
    rows = _suite_rows(2, seed=8)
    first = write_shapes_run(tmp_path / "t2i", rows)
    assert CliRunner().invoke(main, ["generate", str(first), "--quiet"]).exit_code == 0
    init = tmp_path / "init"
    init.mkdir()
    for path in (tmp_path / "t2i" / "out" / "clean").rglob("*.png"):
        shutil.copy(path, init / (path.name.split("__")[0] + ".png"))
    sweep = write_shapes_run(
        tmp_path / "i2i",
        rows,
        pipeline="image2image",
        init_images=str(init),
        checkpoints=[{"name": "s", "path": "shapes"}],
        base_seed=1,  # seeds unlike the init images' own
        settings={"width": 128, "height": 128, "strength": [0.25, 0.75]},
    )
    result = CliRunner().invoke(main, ["generate", str(sweep), "--quiet"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "i2i" / "out"
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines() if line.strip()]
    assert len(manifest) == 2 * len(rows)
    kept: dict[float, set[str]] = {0.25: set(), 0.75: set()}
    for row in manifest:
        pixels, spec = _pixels(out / row["file"]), parse_spec(next(r["spec"] for r in rows if r["id"] == row["id"]))
        fresh = render(spec, row["seed"], 128).image
        assert not np.array_equal(fresh, _pixels(init / f"{row['id']}.png"))  # other seeds: tell them apart
        if np.array_equal(pixels, _pixels(init / f"{row['id']}.png")):
            kept[row["settings"]["strength"]].add(row["id"])
        else:  # drawn afresh, as text-to-image draws it
            assert np.array_equal(pixels, fresh)
    # Same seeds at both strengths: the higher one keeps a subset of what the lower one keeps.
    assert kept[0.75] <= kept[0.25] and len(kept[0.25]) > len(kept[0.75])

    # Scored: faithfulness to the init image falls with strength, adherence stays (the world makes no mistakes).
    scored = CliRunner().invoke(main, ["score", str(out), "--metrics", "faithfulness,adherence", "--judge", "shapes",
                                       "--clip-model", tiny_name, "--clip-pretrained", tiny_clip_weights[0],
                                       "--no-cache", "--workers", "0", "-o", str(tmp_path / "r.json")])  # fmt: skip
    assert scored.exit_code == 0, scored.output
    cells = json.loads((tmp_path / "r.json").read_text())["cells"]
    by_strength = {c["setting"]["values"]["strength"]: c["metrics"] for c in cells}
    low, high = by_strength[0.25], by_strength[0.75]
    assert low["faithfulness_edge"]["value"] > high["faithfulness_edge"]["value"]
    assert low["faithfulness_clip"]["value"] >= high["faithfulness_clip"]["value"]
    assert low["adherence"]["value"] == high["adherence"]["value"] == 1.0
    for cell in cells:
        for row in cell["per_image"]:
            kept_row = row["item"].split("#")[0] in kept[cell["setting"]["values"]["strength"]]
            assert (row["init_edge_ssim"] == pytest.approx(1.0)) == kept_row


def test_generate_refuses_a_prompt_without_spec(tmp_path: Path) -> None:
    config = write_shapes_run(tmp_path, [{"id": "plain", "prompt": "a photo of a circle"}])
    result = CliRunner().invoke(main, ["generate", str(config), "--quiet"])
    assert result.exit_code == 2
    assert "'plain'" in result.output and "no spec" in result.output
