"""Writes the built-in suites (`sdeval/suites/data/*.jsonl`): `python -m sdeval.suites.build [--out DIR] [--check]`.

Every file is a pure function of this module: the generated suites come from `compose.generate` with a fixed seed,
the hand-written ones from the lists below. Change a suite here, bump its version, and rebuild; the tests check
that the shipped files are exactly what this module writes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sdeval.suites import compose
from sdeval.suites.builtin import DATA_DIR, GENERATED
from sdeval.suites.load import SKETCH_PREFIX
from sdeval.suites.sketches import CLASSES

COMPOSITIONAL_SIZES = {
    "single_object": None,  # every class once, as GenEval
    "two_object": 100,
    "counting": 100,
    "colors": 100,
    "position": 100,
    "color_attr": 100,
}
#: The calibration world's vocabulary (the `shapes` checkpoint draws exactly these).
SHAPES = compose.Vocabulary(
    classes=("circle", "square", "triangle"),
    colors=("red", "green", "blue", "yellow", "purple", "orange", "black", "white"),
)
SHAPES_SIZES = {
    "single_object": None,
    "two_object": None,
    "counting": None,
    "colors": None,
    "position": None,
    "color_attr": 48,
}
SKETCH_SIZES = {
    "single_object": None,
    "two_object": 8,
    "counting": 8,
    "colors": 8,
    "position": 12,
    "color_attr": 6,
}

#: Per category (kinds of work, not GenEval tags: these prompts have no spec): (prompt, comma-separated tags).
CREATIVE: dict[str, tuple[tuple[str, str], ...]] = {
    "character": (
        (
            "kawaii nekomimi girl with pastel pink hair, big sparkling eyes, oversized hoodie, anime style",
            "anime, cute",
        ),
        ("anime boy with messy black hair and a red scarf standing on a rooftop at sunset, cel shading", "anime"),
        ("chibi witch riding a broom, round proportions, sticker design with a white border", "anime, chibi, sticker"),
        ("magical girl transformation pose, ribbons and stars, vibrant 90s anime screenshot", "anime"),
        (
            "character sheet of a fantasy knight in silver armor, front, side and back views, white background",
            "character sheet, fantasy",
        ),
        ("cyberpunk street samurai with neon tattoos and a glowing katana, rain-soaked alley", "cyberpunk"),
        ("elderly fisherman with a weathered face and a wool cap, portrait, dramatic side light", "portrait, photo"),
        ("cute round robot mascot with an antenna and a screen face, 3d render, soft studio lighting", "mascot, 3d"),
        ("elf archer with braided silver hair in a misty forest, fantasy illustration", "fantasy"),
        (
            "vtuber avatar design, fox girl with a fluffy tail and headphones, clean line art, flat colors",
            "anime, vtuber",
        ),
        ("shonen manga panel of a rival character smirking, screentone shading, black and white", "manga, monochrome"),
        ("dragon character design with iridescent scales, concept art turnaround", "creature, concept art"),
        ("steampunk inventor girl with brass goggles and a mechanical arm", "steampunk"),
        ("pixel art hero sprite, idle pose, 32x32, plain background", "pixel art, game"),
        ("portrait of a woman with freckles and curly red hair, 85mm photo, shallow depth of field", "portrait, photo"),
        ("space explorer in a retro-futuristic suit floating near a space station", "sci-fi"),
        ("cute mochi cat mascot eating ramen, kawaii sticker", "kawaii, mascot, sticker"),
        ("sorceress with a crown of black thorns, dark fantasy oil painting", "fantasy, dark"),
        ("girl in a school uniform sitting by a classroom window, soft afternoon light, slice-of-life anime", "anime"),
        ("cartoon bear chef holding a wooden spoon, children's book character", "cartoon, children's book"),
        ("idol singer on stage with glowing light sticks in the crowd, anime key visual", "anime, key visual"),
        ("desert nomad with a patterned headscarf, travel photograph", "portrait, photo"),
    ),
    "scenery": (
        (
            "anime background of a quiet suburban street after rain, puddles reflecting the evening sky",
            "anime, background",
        ),
        (
            "cozy cafe interior with plants and warm lights, hand-painted anime film background",
            "anime, background, interior",
        ),
        ("misty mountain valley at sunrise, pine forest, volumetric light, landscape photography", "landscape, photo"),
        ("cyberpunk city skyline at night with flying cars and neon signs", "city, cyberpunk"),
        ("floating islands with waterfalls above the clouds, fantasy matte painting", "fantasy, matte painting"),
        ("underwater coral reef with sunbeams and tropical fish", "nature"),
        ("abandoned greenhouse overgrown with vines, golden hour", "interior"),
        ("snowy mountain village at night, warm lanterns glowing in the windows", "winter, night"),
        ("desert canyon under a starry night sky with the Milky Way", "landscape, night"),
        ("pixel art forest level background with parallax layers, 16-bit", "pixel art, game, background"),
        ("visual novel background of a school rooftop at dusk, no people", "anime, background"),
        ("minimalist desktop wallpaper, gradient sky with a single crescent moon", "wallpaper, minimal"),
        ("medieval castle on a cliff above a stormy sea, dramatic clouds", "fantasy, landscape"),
        ("isometric diorama of a tiny island with a lighthouse, 3d render", "isometric, 3d"),
        ("rainy narrow alley in Tokyo with glowing vending machines, cinematic", "city, night"),
        ("autumn park with a wooden bench and falling maple leaves", "nature"),
        ("alien planet landscape with two suns and crystal formations, sci-fi concept art", "sci-fi, concept art"),
        ("bedroom interior with fairy lights and posters, lo-fi anime aesthetic", "anime, interior, lofi"),
        ("lavender fields at sunset, aerial photo", "landscape, photo"),
        ("spaceship bridge interior with holographic displays, concept art", "sci-fi, interior"),
    ),
    "cover": (
        ("album cover for a synthwave record, chrome sunset and palm trees, 80s retro", "album, retro"),
        ("lo-fi hip hop album cover, anime girl studying at a desk at night, rain on the window", "album, anime, lofi"),
        ("heavy metal album cover, flaming skull and lightning, airbrushed", "album"),
        ("minimal jazz album cover, abstract shapes in blue and orange, mid-century modern", "album, minimal"),
        ("indie folk album cover, film photo of a field at dusk with a lone tree", "album, photo"),
        ("video thumbnail of a surprised gamer holding a glowing controller, bold colors", "thumbnail, game"),
        ("podcast cover art with two microphones, flat vector illustration", "podcast, vector"),
        ("video game box art, heroes facing a giant dragon, epic composition", "game, fantasy"),
        ("movie poster for a sci-fi thriller, lone astronaut silhouette against a red planet", "poster, sci-fi"),
        ("book cover for a fantasy novel, a sword in a stone under moonlight", "book, fantasy"),
        ("k-pop single cover, pastel gradient background, dreamy holographic texture", "single, pastel"),
        ("electronic music EP cover, glitch art with distorted geometric shapes", "album, glitch"),
        ("cooking channel thumbnail, steaming bowl of ramen with empty space for a title", "thumbnail, food"),
        ("anime opening key visual with the main cast posing under cherry blossoms", "anime, key visual"),
        ("vaporwave album cover with a marble bust, pink and teal grid", "album, vaporwave"),
        ("children's picture book cover, a small fox holding a lantern in the snow", "book, children's book"),
        ("horror movie poster, a dark hallway with a single flickering light", "poster, horror"),
        ("travel vlog thumbnail, backpacker on a mountain peak at sunrise", "thumbnail, photo"),
        ("classical music album cover, a violin in soft window light, elegant and minimal", "album, minimal"),
        ("manga volume cover, a swordsman mid-leap with speed lines", "manga, anime"),
    ),
    "product": (
        ("product photo of a perfume bottle on a marble pedestal, soft shadows, studio lighting", "studio"),
        ("white sneakers floating on a pastel background, commercial product shot", "studio, fashion"),
        ("wireless earbuds in an open charging case, macro, reflective black surface", "electronics, macro"),
        ("a ceramic coffee mug with steam on a wooden table, lifestyle product photo", "lifestyle"),
        ("luxury wristwatch close-up, brushed steel, dramatic rim light", "studio, macro"),
        ("skincare serum dropper bottle with water droplets, clean beauty ad", "beauty, studio"),
        ("a mechanical keyboard with RGB backlight, top-down product shot", "electronics"),
        ("can of sparkling water with condensation and splashing citrus slices", "beverage, studio"),
        ("leather backpack on a rock by a lake, outdoor gear catalog photo", "lifestyle, outdoor"),
        ("flat lay of stationery: a notebook, pens and washi tape, pastel colors", "flat lay"),
        ("glass bottle of olive oil with rosemary, rustic kitchen backdrop", "food, lifestyle"),
        ("smartphone mockup on a clean desk, the screen showing a weather app", "electronics, mockup"),
        ("scented candle in an amber jar, cozy hygge setting", "lifestyle, home"),
        ("gaming headset on a stand with neon accent lighting", "electronics, game"),
        ("chocolate bar packaging design, minimal, gold foil accents", "packaging, food"),
        ("anime figure collectible in a display box, product photography", "anime, collectible"),
        ("electric guitar on a stand in front of an amp, warm studio light", "music, studio"),
        ("a bottle of red wine and two glasses, moody restaurant setting", "beverage, lifestyle"),
        ("bamboo toothbrushes arranged on a linen cloth, eco-friendly product shot", "flat lay, home"),
        ("enamel pin of a kawaii cat on a denim jacket, product shot", "kawaii, fashion"),
    ),
    "style": (
        ("a lighthouse painted in watercolor, loose washes, white paper texture", "watercolor"),
        ("portrait of a cat as an oil painting in the style of the Dutch golden age", "oil painting, portrait"),
        ("busy city street as an ukiyo-e woodblock print", "woodblock print"),
        ("pixel art of a cozy cabin in winter, 8-bit palette", "pixel art"),
        ("claymation scene of a snail tea party", "claymation, 3d"),
        ("charcoal sketch of a dancer in motion", "charcoal, drawing"),
        ("low-poly 3d render of a fox in a forest", "low poly, 3d"),
        ("stained glass window depicting a phoenix", "stained glass"),
        ("layered paper cut-out art of an underwater scene", "papercraft"),
        ("isometric 3d icon of a tiny coffee shop, soft pastel colors", "isometric, 3d, icon"),
        ("art nouveau poster of a woman with flowing hair and flowers", "art nouveau, poster"),
        ("blueprint technical drawing of a vintage motorcycle", "blueprint, drawing"),
        ("impressionist painting of a river at sunset, visible brush strokes", "impressionism"),
        ("comic book panel of a superhero landing, halftone dots, bold ink", "comic"),
        ("embroidery of a hummingbird on linen, detailed stitches", "embroidery, craft"),
        ("neon sign of a coffee cup on a brick wall at night", "neon"),
        ("chalk drawing of the solar system on a blackboard", "chalk, drawing"),
        ("pen and ink illustration of an old library, cross-hatching", "ink, drawing"),
        ("knitted wool figure of a small dinosaur, cozy craft photo", "craft, photo"),
        ("double exposure photograph of a wolf and a pine forest", "photo, double exposure"),
    ),
}

HEADERS = {
    "compositional": "GenEval-style compositional prompts over COCO's 80 classes and GenEval's ten colours: single "
    "objects, two objects, counting (1-4), colours, position (left of, right of, above, below) and colour "
    "attribution, each with its spec. For real models.",
    "shapes": "The compositional generator over the calibration world's vocabulary (circle, square, triangle; eight "
    "colours; counts 1-4; four relations), for the shapes checkpoint.",
    "creative": "About 100 prompts for what people make with these models: characters (anime-style included), "
    "backgrounds and scenery, album and video covers, product shots, styles and media. No specs.",
    "sketch2image": "Image-to-image cases: a rough line sketch that sdeval draws from each row's spec (init_image "
    "sketch:KEY), with a prompt and spec, for strength sweeps.",
    "smoke": "One prompt per GenEval category, for demos and tests.",
}
VERSIONS = {name: "1" for name in GENERATED}
SEEDS = {"compositional": 20240601, "shapes": 20240602, "sketch2image": 20240603}


def compositional() -> list[dict[str, Any]]:
    return compose.generate(compose.COCO, COMPOSITIONAL_SIZES, SEEDS["compositional"])


def shapes() -> list[dict[str, Any]]:
    return compose.generate(SHAPES, SHAPES_SIZES, SEEDS["shapes"])


def sketch2image() -> list[dict[str, Any]]:
    vocab = compose.Vocabulary(
        classes=tuple(c for c in compose.COCO_CLASSES if c in CLASSES),
        colors=compose.GENEVAL_COLORS,
        tags=compose.COCO_SUPERCATEGORIES,
    )
    rows = compose.generate(vocab, SKETCH_SIZES, SEEDS["sketch2image"], prefix="sketch-")
    for row in rows:
        row["init_image"] = f"{SKETCH_PREFIX}{row['id']}"
    return rows


def creative() -> list[dict[str, Any]]:
    return [
        {"id": f"{category}-{i:02d}", "prompt": prompt, "category": category, "tags": tags.split(", ")}
        for category, rows in CREATIVE.items()
        for i, (prompt, tags) in enumerate(rows, start=1)
    ]


def smoke() -> list[dict[str, Any]]:
    made = [
        compose.single_object("cup"),
        compose.two_object("cat", "umbrella"),
        compose.counting("apple", 3),
        compose.colors("car", "red"),
        compose.position("dog", "left of", "bench"),
        compose.color_attr("bus", "yellow", "bicycle", "blue"),
    ]
    return [{"id": spec.tag, "prompt": text, "category": spec.tag, "spec": spec.to_json()} for text, spec in made]


BUILDERS: dict[str, Callable[[], list[dict[str, Any]]]] = {
    "compositional": compositional,
    "shapes": shapes,
    "creative": creative,
    "sketch2image": sketch2image,
    "smoke": smoke,
}


def render(name: str) -> str:
    """The text of a built-in suite file: the header line, then one row per line."""
    header = {"suite": {"id": name, "version": VERSIONS[name], "description": HEADERS[name]}}
    lines = [header, *BUILDERS[name]()]
    return "".join(json.dumps(obj, ensure_ascii=False) + "\n" for obj in lines)


def build(out: Path = DATA_DIR) -> list[Path]:
    """Write every built-in suite into `out`; returns the files."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in GENERATED:
        path = out / f"{name}.jsonl"
        path.write_text(render(name), encoding="utf-8", newline="\n")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sdeval.suites.build", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--out", type=Path, default=DATA_DIR, help="folder to write into (default: the package's)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a shipped file differs")
    args = parser.parse_args(argv)
    if args.check:
        stale = [name for name in GENERATED if not _same(args.out / f"{name}.jsonl", render(name))]
        for name in stale:
            print(f"{name}: differs from what sdeval.suites.build writes", file=sys.stderr)
        return 1 if stale else 0
    for path in build(args.out):
        print(path)
    return 0


def _same(path: Path, text: str) -> bool:
    try:
        return path.read_bytes() == text.encode("utf-8")
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
