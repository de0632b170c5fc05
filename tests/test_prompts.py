"""Prompt recovery: every source, the precedence order, and malformed input reported with reasons."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from sdeval.core.errors import SdevalError
from sdeval.prompts import (
    MAX_PROMPT_CHARS,
    PromptParseError,
    PromptRecord,
    decode_user_comment,
    find_prompts,
    inspect_embedded_prompt,
    load_manifest,
    normalize_relpath,
    parse_a1111_parameters,
    parse_comfyui_prompt,
    read_caption,
    read_embedded_prompt,
)

RGB = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)

A1111_TRICKY = (
    "masterpiece, best quality, a cat: sitting, (red hat:1.2)\n"
    "on a chair, style: anime\n"
    "Negative prompt: lowres, bad anatomy\n"
    "worst quality\n"
    "Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 7.5, Seed: 3141592653, Size: 512x768, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, "
    'Lora hashes: "detail: a1b2c3, style \\"x\\": d4e5", Denoising strength: 0.5, Version: v1.6.0'
)


def save_png(path: Path, text: dict[str, str] | None = None) -> Path:
    info = PngInfo()
    for key, value in (text or {}).items():
        info.add_itxt(key, value) if not value.isascii() else info.add_text(key, value)
    Image.fromarray(RGB).save(path, pnginfo=info)
    return path


def append_late_text_chunk(path: Path, key: str, value: str) -> None:
    """Put a tEXt chunk after the pixel data (just before IEND), where some writers put metadata."""
    data = path.read_bytes()
    iend = data.rindex(b"IEND") - 4
    body = key.encode("latin-1") + b"\x00" + value.encode("latin-1")
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    path.write_bytes(data[:iend] + chunk + data[iend:])


def user_comment_exif(text: str, little_endian: bool = False) -> bytes:
    exif = Image.Exif()
    encoded = text.encode("utf-16-le" if little_endian else "utf-16-be")
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + encoded
    return exif.tobytes()


def comfy_basic() -> dict:
    # Negative encoder has the lower node id, so taking "the first CLIPTextEncode" would be wrong.
    return {
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 42,
                "steps": 20,
                "cfg": 8.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["7", 0],
                "negative": ["6", 0],
                "latent_image": ["5", 0],
            },
        },
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry, watermark", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox in snow", "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    }


def comfy_sdxl(text_l: str = "a lighthouse at dusk") -> dict:
    return {
        "10": {
            "class_type": "KSamplerAdvanced",
            "inputs": {
                "noise_seed": ["15", 0],
                "steps": 30,
                "cfg": 6.5,
                "sampler_name": "dpmpp_2m",
                "scheduler": "karras",
                "positive": ["12", 0],
                "negative": ["13", 0],
                "model": ["11", 0],
                "latent_image": ["16", 0],
            },
        },
        "11": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
        "12": {
            "class_type": "CLIPTextEncodeSDXL",
            "inputs": {
                "width": 1024,
                "height": 1024,
                "text_g": ["14", 0],
                "text_l": text_l,
                "clip": ["11", 1],
            },
        },
        "13": {
            "class_type": "CLIPTextEncodeSDXL",
            "inputs": {"text_g": "ugly", "text_l": "ugly", "clip": ["11", 1]},
        },
        "14": {"class_type": "PrimitiveStringMultiline", "inputs": {"value": "a lighthouse at dusk"}},
        "15": {"class_type": "PrimitiveInt", "inputs": {"value": 1234}},
        "16": {"class_type": "EmptyLatentImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1}},
    }


# -- A1111 -----------------------------------------------------------------------------------------


def test_a1111_tricky_values() -> None:
    record = parse_a1111_parameters(A1111_TRICKY)
    assert record.source == "a1111"
    assert record.prompt == "masterpiece, best quality, a cat: sitting, (red hat:1.2)\non a chair, style: anime"
    assert record.negative_prompt == "lowres, bad anatomy\nworst quality"
    assert record.seed == 3141592653
    assert record.checkpoint == "v1-5-pruned-emaonly"
    settings = record.settings
    assert settings["Steps"] == 28
    assert settings["CFG scale"] == 7.5
    assert settings["Sampler"] == "DPM++ 2M Karras"
    assert settings["Size"] == "512x768"
    assert settings["Model hash"] == "6ce0161689"
    # Quoted value with commas, colons and escaped quotes comes back exactly.
    assert settings["Lora hashes"] == 'detail: a1b2c3, style "x": d4e5'
    assert settings["Denoising strength"] == 0.5
    assert settings["Version"] == "v1.6.0"


def test_a1111_without_negative_and_with_empty_prompt() -> None:
    record = parse_a1111_parameters("a photo of a dog\nSteps: 20, Sampler: Euler a, Seed: 7, Size: 64x64")
    assert (record.prompt, record.negative_prompt, record.seed) == ("a photo of a dog", None, 7)
    only_settings = parse_a1111_parameters("Steps: 20, Sampler: Euler a, Seed: 7")
    assert only_settings.prompt == ""


def test_a1111_prompt_with_colons_but_no_settings_is_rejected() -> None:
    # The last line looks like pairs, but none is a key A1111 always writes: it is prompt text.
    with pytest.raises(PromptParseError, match="no settings line"):
        parse_a1111_parameters("portrait\nstyle: anime, mood: calm, light: soft")


def test_a1111_dynamic_prompts_template_lines_are_settings() -> None:
    text = "a cat\nNegative prompt: dog\nTemplate: a {cat|dog}\nSteps: 5, Sampler: Euler, Seed: 1"
    record = parse_a1111_parameters(text)
    assert record.negative_prompt == "dog"
    assert record.settings["Template"] == "a {cat|dog}"


# -- ComfyUI ---------------------------------------------------------------------------------------


def test_comfyui_follows_the_positive_link() -> None:
    record, notes = parse_comfyui_prompt(comfy_basic())
    assert record.source == "comfyui"
    assert record.prompt == "a red fox in snow"
    assert record.negative_prompt == "blurry, watermark"
    assert record.seed == 42
    assert record.checkpoint == "v1-5.safetensors"
    assert record.settings["steps"] == 20 and record.settings["cfg"] == 8.0
    assert notes == []


def test_comfyui_sdxl_encoder_with_string_primitive_and_seed_link() -> None:
    record, _ = parse_comfyui_prompt(comfy_sdxl())
    assert record.prompt == "a lighthouse at dusk"
    assert record.negative_prompt == "ugly"
    assert record.seed == 1234
    assert record.checkpoint == "sd_xl_base_1.0.safetensors"
    assert "comfyui_text_l" not in record.settings  # both encoders got the same text


def test_comfyui_sdxl_different_texts_keeps_both() -> None:
    record, _ = parse_comfyui_prompt(comfy_sdxl(text_l="lighthouse, film grain"))
    assert record.prompt == "a lighthouse at dusk"  # text_g: the main (OpenCLIP bigG) encoder
    assert record.settings["comfyui_text_l"] == "lighthouse, film grain"


def test_comfyui_through_controlnet_apply_advanced() -> None:
    graph = comfy_basic()
    graph["20"] = {
        "class_type": "ControlNetApplyAdvanced",
        "inputs": {"positive": ["7", 0], "negative": ["6", 0], "control_net": ["21", 0], "image": ["22", 0]},
    }
    graph["3"]["inputs"]["positive"] = ["20", 0]
    graph["3"]["inputs"]["negative"] = ["20", 1]  # output 1 of the ControlNet node is the negative
    record, _ = parse_comfyui_prompt(graph)
    assert record.prompt == "a red fox in snow"
    assert record.negative_prompt == "blurry, watermark"
    assert record.settings["comfyui_sampler_node"] == "3"


def test_comfyui_sampler_custom_advanced_with_guider() -> None:
    graph = {
        "1": {"class_type": "CLIPTextEncode", "inputs": {"text": "a castle on a hill", "clip": ["9", 1]}},
        "2": {"class_type": "BasicGuider", "inputs": {"model": ["9", 0], "conditioning": ["1", 0]}},
        "3": {"class_type": "RandomNoise", "inputs": {"noise_seed": 99}},
        "4": {
            "class_type": "SamplerCustomAdvanced",
            "inputs": {"noise": ["3", 0], "guider": ["2", 0], "sampler": ["5", 0], "sigmas": ["6", 0]},
        },
        "9": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors"}},
    }
    record, _ = parse_comfyui_prompt(graph)
    assert (record.prompt, record.seed, record.checkpoint) == (
        "a castle on a hill",
        99,
        "flux1-dev.safetensors",
    )


def test_comfyui_two_samplers_with_different_prompts_note_the_choice() -> None:
    graph = comfy_basic()
    graph["30"] = json.loads(json.dumps(graph["3"]))
    graph["31"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "a blue fox", "clip": ["4", 1]}}
    graph["30"]["inputs"]["positive"] = ["31", 0]
    record, notes = parse_comfyui_prompt(graph)
    assert record.prompt == "a red fox in snow"
    assert len(notes) == 1 and "used node 3" in notes[0]


@pytest.mark.parametrize(
    ("graph", "message"),
    [
        ({}, "not a JSON object"),
        ([1, 2], "not a JSON object"),
        ({"1": {"class_type": "CLIPTextEncode", "inputs": {"text": "x"}}}, "no sampler"),
        (
            {"3": {"class_type": "KSampler", "inputs": {"positive": ["77", 0], "negative": ["78", 0]}}},
            "missing node 77",
        ),
        (
            {
                "3": {"class_type": "KSampler", "inputs": {"positive": ["5", 0]}},
                "5": {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["6", 0]}},
                "6": {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["5", 0]}},
            },
            "cycle",
        ),
    ],
)
def test_comfyui_malformed_graphs_raise_with_reason(graph: object, message: str) -> None:
    with pytest.raises(PromptParseError, match=message):
        parse_comfyui_prompt(graph)


# -- embedded metadata in files ------------------------------------------------------------------------


def test_embedded_sources_from_png(tmp_path: Path) -> None:
    sdeval_meta = {
        "sdeval_version": "0.1.0",
        "prompt": "a teapot, studio light",
        "negative_prompt": "blur",
        "prompt_id": "p001",
        "seed": 1234,
        "seed_index": 0,
        "checkpoint": "tiny-sd",
        "checkpoint_hash": None,
        "setting_id": "g7.5-s30",
        "settings": {"guidance_scale": 7.5},
    }
    record = read_embedded_prompt(save_png(tmp_path / "s.png", {"sdeval": json.dumps(sdeval_meta)}))
    assert record == PromptRecord(
        prompt="a teapot, studio light",
        source="sdeval",
        negative_prompt="blur",
        seed=1234,
        id="p001",
        checkpoint="tiny-sd",
        settings={
            "guidance_scale": 7.5,
            "setting_id": "g7.5-s30",
            "seed_index": 0,
            "sdeval_version": "0.1.0",
        },
    )
    a1111 = read_embedded_prompt(save_png(tmp_path / "a.png", {"parameters": A1111_TRICKY}))
    assert a1111 is not None and a1111.source == "a1111" and a1111.seed == 3141592653
    comfy = read_embedded_prompt(save_png(tmp_path / "c.png", {"prompt": json.dumps(comfy_sdxl())}))
    assert comfy is not None and comfy.source == "comfyui" and comfy.prompt == "a lighthouse at dusk"
    assert read_embedded_prompt(save_png(tmp_path / "none.png")) is None


def test_embedded_non_ascii_prompt_in_itxt(tmp_path: Path) -> None:
    text = "ein Fuchs im Schnee, 雪の中の狐\nSteps: 5, Sampler: Euler, Seed: 3"
    record = read_embedded_prompt(save_png(tmp_path / "u.png", {"parameters": text}))
    assert record is not None and record.prompt == "ein Fuchs im Schnee, 雪の中の狐"


def test_embedded_sdeval_wins_over_a1111_and_bad_chunk_falls_through(tmp_path: Path) -> None:
    both = save_png(
        tmp_path / "both.png",
        {"parameters": A1111_TRICKY, "sdeval": json.dumps({"prompt": "from sdeval", "seed": 1})},
    )
    assert read_embedded_prompt(both).source == "sdeval"  # type: ignore[union-attr]
    broken = save_png(tmp_path / "broken.png", {"sdeval": "{not json", "parameters": A1111_TRICKY})
    result = inspect_embedded_prompt(broken)
    assert result.record is not None and result.record.source == "a1111"
    assert any("'sdeval' chunk: not valid JSON" in p for p in result.problems)


def test_embedded_text_chunk_after_pixel_data(tmp_path: Path) -> None:
    path = save_png(tmp_path / "late.png")
    append_late_text_chunk(path, "parameters", "late prompt\nSteps: 5, Sampler: Euler, Seed: 11")
    record = read_embedded_prompt(path)
    assert record is not None and (record.prompt, record.seed) == ("late prompt", 11)


def test_embedded_from_pil_image_object(tmp_path: Path) -> None:
    path = save_png(tmp_path / "a.png", {"parameters": A1111_TRICKY})
    with Image.open(path) as img:
        assert read_embedded_prompt(img).source == "a1111"  # type: ignore[union-attr]


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_embedded_a1111_in_exif_user_comment(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"a.{fmt.lower()}"
    Image.fromarray(RGB).save(path, fmt, exif=user_comment_exif(A1111_TRICKY))
    record = read_embedded_prompt(path)
    assert record is not None and record.source == "a1111"
    assert record.settings["Lora hashes"] == 'detail: a1b2c3, style "x": d4e5'


def test_decode_user_comment_variants() -> None:
    text = "a fox, Steps: 2"
    assert decode_user_comment(b"UNICODE\x00" + text.encode("utf-16-be")) == text
    assert decode_user_comment(b"UNICODE\x00" + text.encode("utf-16-le")) == text
    assert decode_user_comment(b"UNICODE\x00" + text.encode("utf-16")) == text  # with BOM
    assert decode_user_comment(b"ASCII\x00\x00\x00" + text.encode()) == text
    assert decode_user_comment(b"\x00" * 8 + text.encode()) == text


def test_unreadable_image_is_a_reason_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "junk.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    result = inspect_embedded_prompt(path)
    assert result.record is None
    assert result.problems and result.problems[0].startswith("cannot read image metadata")


def test_oversized_embedded_prompt_is_refused(tmp_path: Path) -> None:
    huge = "a" * (MAX_PROMPT_CHARS + 1) + "\nSteps: 5, Sampler: Euler, Seed: 1"
    result = inspect_embedded_prompt(save_png(tmp_path / "huge.png", {"parameters": huge}))
    assert result.record is None
    assert any(f"over the {MAX_PROMPT_CHARS} limit" in p for p in result.problems)


# -- captions ------------------------------------------------------------------------------------------


def test_caption_sidecar(tmp_path: Path) -> None:
    image = save_png(tmp_path / "x.png")
    assert read_caption(image) == (None, None)
    (tmp_path / "x.txt").write_text("\ufeff  a small boat  \n", encoding="utf-8")
    record, problem = read_caption(image)
    assert problem is None and record == PromptRecord(prompt="a small boat", source="caption")
    (tmp_path / "x.txt").write_bytes(b"caf\xe9 au lait")  # Latin-1, not UTF-8
    record, problem = read_caption(image)
    assert record is None and "not UTF-8" in problem and "offset 3" in problem  # type: ignore[operator]
    (tmp_path / "x.txt").write_text("   \n")
    assert read_caption(image) == (None, "caption x.txt is empty")


# -- manifest ------------------------------------------------------------------------------------------


def make_images(root: Path, names: list[str]) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        save_png(root / name)


def test_manifest_jsonl_good_and_malformed_lines(tmp_path: Path) -> None:
    root = tmp_path / "images"
    make_images(root, ["a.png", "sub/b.png", "c.png", "d.png", "e.png", "f.png"])
    lines = [
        json.dumps({"file": "a.png", "prompt": "a cat", "seed": 1, "id": "p1", "category": "animals"}),  # 1
        "{not json",  # 2
        "",  # 3: blank lines are fine
        json.dumps({"prompt": "no file"}),  # 4
        json.dumps({"file": "sub\\b.png", "prompt": "b", "settings": {"cfg": 7}, "mood": "x"}),  # 5
        json.dumps({"file": "missing.png", "prompt": "m"}),  # 6
        json.dumps({"file": "a.png", "prompt": "again"}),  # 7
        json.dumps({"file": "../outside.png", "prompt": "x"}),  # 8
        json.dumps({"file": "/etc/passwd", "prompt": "x"}),  # 9
        json.dumps({"file": "c.png"}),  # 10
        json.dumps({"file": "d.png", "prompt": "d", "seed": "abc", "settings": [1]}),  # 11
        json.dumps(["e.png", "e"]),  # 12
        json.dumps({"file": "e.png", "prompt": "x" * (MAX_PROMPT_CHARS + 1)}),  # 13
        json.dumps({"file": "./f.png", "prompt": "f", "mood": "y", "seed": "17"}),  # 14
    ]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")

    result = load_manifest(manifest, root)
    assert result.format == "jsonl"
    assert sorted(result.records) == ["a.png", "d.png", "f.png", "sub/b.png"]
    assert result.records["a.png"] == PromptRecord(
        prompt="a cat", source="manifest", seed=1, id="p1", category="animals"
    )
    assert result.records["sub/b.png"].settings == {"cfg": 7}
    assert result.records["d.png"].seed is None  # bad seed dropped, record kept
    assert result.records["f.png"].seed == 17
    assert result.lines["f.png"] == 14

    by_line = {(p.line, p.used): p.reason for p in result.problems}
    assert by_line[(2, False)].startswith("not valid JSON")
    assert by_line[(4, False)] == "missing 'file'"
    assert by_line[(5, True)] == "unknown column 'mood' ignored (on 2 lines)"
    assert by_line[(6, False)].startswith("file 'missing.png' not found")
    assert by_line[(7, False)] == "duplicate entry for 'a.png' (first on line 1); ignored"
    assert (8, False) not in by_line and result.outside == [(8, "../outside.png")]  # not scored, not an error
    assert "absolute path" in by_line[(9, False)]
    assert by_line[(10, False)] == "missing 'prompt' for 'c.png'"
    line_11 = [p.reason for p in result.problems if p.line == 11]
    assert line_11 == [
        "seed must be an integer, got 'abc'; field ignored",
        "'settings' must be an object, got list; field ignored",
    ]
    assert by_line[(12, False)] == "expected a JSON object, got list"
    assert f"over the {MAX_PROMPT_CHARS} limit" in by_line[(13, False)]
    # The paths are relative to IMAGES, not to the manifest's folder: read the old way, with a warning.
    assert result.base == root and by_line[(0, True)].startswith("'file' paths are taken relative to IMAGES")
    # Every non-blank line is accounted for: a record, a problem or outside IMAGES, nothing silently dropped.
    accounted = set(result.lines.values()) | {p.line for p in result.problems if not p.used}
    assert accounted | {line for line, _ in result.outside} == {n for n in range(1, 15) if n != 3}
    assert all(m.startswith(f"{manifest}:") for m in result.messages())


def test_manifest_csv_with_quoted_multiline_prompt(tmp_path: Path) -> None:
    root = tmp_path / "images"
    make_images(root, ["a.png", "b.png", "c.png"])
    text = (
        "file,prompt,seed,settings,extra\n"
        'a.png,"a cat, sitting\non a mat",5,"{""cfg"": 7.5}",1\n'  # lines 2-3
        "b.png,a dog,,,\n"  # line 4
        "c.png,too,many,cells,here,now\n"  # line 5
        "../x.png,escape,,,\n"  # line 6
    )
    manifest = tmp_path / "prompts.csv"
    manifest.write_text(text, encoding="utf-8")
    result = load_manifest(manifest, root)
    assert result.format == "csv"
    assert result.records["a.png"] == PromptRecord(
        prompt="a cat, sitting\non a mat", source="manifest", seed=5, settings={"cfg": 7.5}
    )
    assert result.records["b.png"].seed is None
    assert result.lines == {"a.png": 2, "b.png": 4}
    reasons = {p.line: p.reason for p in result.problems}
    assert "unknown column 'extra'" in reasons[2]
    assert reasons[5].startswith("row has 6 cells but the header has 5 columns")
    assert 6 not in reasons and result.outside == [(6, "../x.png")]


def test_manifest_that_cannot_be_used_at_all_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SdevalError, match="cannot read manifest"):
        load_manifest(tmp_path / "nope.jsonl", tmp_path)
    with pytest.raises(SdevalError, match="cannot read manifest"):
        load_manifest(tmp_path, tmp_path)  # a directory
    bad_csv = tmp_path / "m.csv"
    bad_csv.write_text("path,caption\nx.png,a cat\n")
    with pytest.raises(SdevalError, match="no 'file' column"):
        load_manifest(bad_csv, tmp_path)


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_run_manifest_scores_a_sub_folder(tmp_path: Path) -> None:
    # `sdeval generate` writes OUT/manifest.jsonl with paths relative to OUT; one checkpoint's folder is scored.
    out = tmp_path / "OUT"
    make_images(out, ["a/x.png", "a/sub/y.png", "b/x.png", "b/z.png"])
    manifest = write_jsonl(
        out / "manifest.jsonl",
        [
            {"file": "a/x.png", "prompt": "ax", "seed": 1},  # 1
            {"file": "b/x.png", "prompt": "bx"},  # 2
            {"file": "a/sub/y.png", "prompt": "ay"},  # 3
            {"file": "b/z.png", "prompt": "bz"},  # 4
            {"file": "b/gone.png"},  # 5: outside IMAGES, so not checked: no 'prompt' and no file are not reported
        ],
    )
    images = out / "a"
    result = load_manifest(manifest, images)
    assert result.base == out and result.problems == []
    assert result.records == {
        "x.png": PromptRecord(prompt="ax", source="manifest", seed=1),
        "sub/y.png": PromptRecord(prompt="ay", source="manifest"),
    }
    assert result.lines == {"x.png": 1, "sub/y.png": 3}
    assert result.outside == [(2, "b/x.png"), (4, "b/z.png"), (5, "b/gone.png")]

    records, skipped, warnings = find_prompts([images / "x.png", images / "sub" / "y.png"], images, manifest)
    assert {path.name: record.prompt for path, record in records.items()} == {"x.png": "ax", "y.png": "ay"}
    assert skipped == []
    # The other checkpoint's rows are one summarised line, not one line each.
    assert warnings == [
        f"{manifest}: 3 manifest entries match no image being scored (3 outside IMAGES {images}, "
        "e.g. line 2: 'b/x.png')"
    ]
    # Rows inside IMAGES that are not scored are counted apart in the same line.
    _, _, warnings = find_prompts([images / "x.png"], images, manifest)
    assert warnings == [
        f"{manifest}: 4 manifest entries match no image being scored (3 outside IMAGES {images}, "
        "e.g. line 2: 'b/x.png'; 1 not scored, e.g. line 3: 'sub/y.png')"
    ]
    # Scoring OUT itself reads the same manifest as before: paths relative to OUT, which is IMAGES.
    whole = load_manifest(manifest, out)
    assert sorted(whole.records) == ["a/sub/y.png", "a/x.png", "b/x.png", "b/z.png"] and whole.outside == []
    assert [p.line for p in whole.problems] == [5]


def test_manifest_with_no_row_inside_images_says_so(tmp_path: Path) -> None:
    out = tmp_path / "OUT"
    make_images(out, ["a/x.png", "b/x.png"])
    manifest = write_jsonl(out / "manifest.jsonl", [{"file": "b/x.png", "prompt": "bx"}, {"file": "c.png"}])
    result = load_manifest(manifest, out / "a")
    assert result.records == {} and len(result.outside) == 2
    assert result.messages() == [
        f"{manifest}: warning: no usable rows: every row names a file outside IMAGES {out / 'a'} (2 rows)"
    ]
    # The loader's warning already says it; find_prompts adds no second line about the same rows.
    assert find_prompts([out / "a" / "x.png"], out / "a", result).warnings == result.messages()


def test_manifest_inside_images_is_read_as_before(tmp_path: Path) -> None:
    root = tmp_path / "images"
    make_images(root, ["a.png", "sub/b.png"])
    manifest = write_jsonl(
        root / "manifest.jsonl",
        [
            {"file": "a.png", "prompt": "a"},
            {"file": "sub\\b.png", "prompt": "b"},
            {"file": "../elsewhere.png", "prompt": "x"},  # leaves IMAGES: not scored, not an error
            {"file": "sub/../a.png", "prompt": "again"},  # '..' that stays inside IMAGES names an image
        ],
    )
    result = load_manifest(manifest, root)
    assert result.base == root and sorted(result.records) == ["a.png", "sub/b.png"]
    assert result.outside == [(3, "../elsewhere.png")]
    assert result.messages() == [
        f"{manifest}:4: skipped: duplicate entry for 'sub/../a.png' (first on line 1); ignored"
    ]


def test_manifest_beside_images_with_paths_relative_to_images_falls_back(tmp_path: Path) -> None:
    # Manifests written before paths were relative to the manifest's folder keep working, with a warning.
    root = tmp_path / "images"
    make_images(root, ["a.png", "sub/b.png"])
    manifest = write_jsonl(
        tmp_path / "meta" / "m.jsonl",
        [{"file": "a.png", "prompt": "a"}, {"file": "sub/b.png", "prompt": "b"}, {"file": "gone.png", "prompt": "g"}],
    )
    result = load_manifest(manifest, root)
    assert result.base == root and sorted(result.records) == ["a.png", "sub/b.png"]
    assert result.messages() == [
        f"{manifest}: warning: 'file' paths are taken relative to IMAGES ({root}) because none matched relative to "
        f"the manifest's folder ({manifest.parent}); write them relative to the manifest's folder",
        f"{manifest}:3: skipped: file 'gone.png' not found in {root}",
    ]
    records, skipped, _ = find_prompts([root / "a.png", root / "sub" / "b.png"], root, manifest)
    assert len(records) == 2 and skipped == []

    # One row that names an image in IMAGES from the manifest's folder is enough: the manifest's folder wins.
    mixed = write_jsonl(tmp_path / "mixed.jsonl", [{"file": "a.png", "prompt": "a"}, {"file": "images/sub/b.png"}])
    result = load_manifest(mixed, root)
    assert result.base == tmp_path and result.outside == [(1, "a.png")]
    assert result.messages() == [
        f"{mixed}:2: skipped: missing 'prompt' for 'images/sub/b.png'",
        f"{mixed}: warning: no usable rows: every row was skipped (1 listed above) or names a file outside "
        f"IMAGES {root} (1 row)",
    ]


def test_manifest_paths_may_climb_out_of_its_folder_but_never_out_of_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "OUT"
    make_images(out, ["a/x.png", "a/y.png", "b/x.png"])
    save_png(tmp_path / "secret.png")
    manifest = write_jsonl(
        out / "meta" / "manifest.jsonl",
        [
            {"file": "../a/x.png", "prompt": "ax"},  # 1: up to OUT, down into IMAGES: applies
            {"file": "../b/x.png", "prompt": "bx"},  # 2: another folder of the run: not scored
            {"file": "../../secret.png", "prompt": "s"},  # 3: outside OUT altogether: never looked up
            {"file": "../a/../b/../a/x.png", "prompt": "again"},  # 4: the image of line 1, spelled otherwise
            {"file": str(out / "a" / "y.png"), "prompt": "ay"},  # 5: absolute, even inside IMAGES: refused
        ],
    )
    images = out / "a"
    looked_up: list[Path] = []
    is_file = Path.is_file

    def spy(self: Path) -> bool:
        looked_up.append(self)
        return is_file(self)

    monkeypatch.setattr(Path, "is_file", spy)
    result = load_manifest(manifest, images)
    monkeypatch.undo()
    assert result.base == manifest.parent
    assert result.records == {"x.png": PromptRecord(prompt="ax", source="manifest")}
    assert result.outside == [(2, "../b/x.png"), (3, "../../secret.png")]
    reasons = {p.line: p.reason for p in result.problems}
    assert reasons[4] == "duplicate entry for '../a/../b/../a/x.png' (first on line 1); ignored"
    assert reasons[5].startswith("'file' must be a relative path, got absolute path")
    assert looked_up and all(path.resolve().is_relative_to(images.resolve()) for path in looked_up)


def test_manifest_matches_images_given_through_a_symlink(tmp_path: Path) -> None:
    out = tmp_path / "OUT"
    make_images(out, ["a/x.png"])
    manifest = write_jsonl(out / "manifest.jsonl", [{"file": "a/x.png", "prompt": "ax"}])
    link = tmp_path / "link"
    try:
        link.symlink_to(out / "a", target_is_directory=True)
    except OSError:
        pytest.skip("no symlinks here")
    records, _, warnings = find_prompts([link / "x.png"], link, manifest)
    assert [record.prompt for record in records.values()] == ["ax"] and warnings == []


CSV_TEXT = "file,prompt\na.png,a café\n"
JSONL_TEXT = '{"file": "a.png", "prompt": "a café"}\n'


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("prompts.csv", b"\xff\xfe" + CSV_TEXT.encode("utf-16-le"), "it looks like UTF-16: save it as UTF-8"),
        ("prompts.csv", CSV_TEXT.encode("utf-16"), "it looks like UTF-16: save it as UTF-8"),  # BOM, native order
        ("prompts.jsonl", JSONL_TEXT.encode("utf-16-le"), "it looks like UTF-16: save it as UTF-8"),  # no BOM
        ("prompts.jsonl", JSONL_TEXT.encode("utf-16-be"), "it looks like UTF-16: save it as UTF-8"),
        ("prompts.jsonl", JSONL_TEXT.encode("utf-32"), "it looks like UTF-32: save it as UTF-8"),
        ("prompts.csv", CSV_TEXT.encode("latin-1"), "byte 0xE9 at offset 23, line 2: save it as UTF-8"),
        ("prompts.jsonl", JSONL_TEXT.encode("latin-1"), "byte 0xE9 at offset 34, line 1: save it as UTF-8"),
        (
            "prompts.jsonl",
            b"\xef\xbb\xbf" + JSONL_TEXT.encode("cp1252"),
            "byte 0xE9 at offset 37, line 1: save it as UTF-8",
        ),
        ("prompts.jsonl", b'{"file": "a.png", "prompt": "a\x00"}\n', "NUL byte at offset 30, line 1: save it as UTF-8"),
    ],
)
def test_manifest_that_is_not_utf8_is_one_clear_error(tmp_path: Path, name: str, data: bytes, expected: str) -> None:
    make_images(tmp_path, ["a.png"])
    (tmp_path / name).write_bytes(data)
    with pytest.raises(SdevalError) as info:
        load_manifest(tmp_path / name, tmp_path)
    message = str(info.value)
    assert message == f"manifest {tmp_path / name}: not UTF-8 text ({expected})"
    assert message.isprintable() and "\x00" not in message  # no NUL bytes, no surrogate escapes


@pytest.mark.parametrize("name", ["prompts.csv", "prompts.jsonl"])
def test_manifest_with_a_utf8_bom_is_read(tmp_path: Path, name: str) -> None:
    make_images(tmp_path, ["a.png"])
    (tmp_path / name).write_text(CSV_TEXT if name.endswith(".csv") else JSONL_TEXT, encoding="utf-8-sig")
    result = load_manifest(tmp_path / name, tmp_path)
    assert result.records["a.png"].prompt == "a café" and result.problems == []


def test_manifest_messages_escape_control_characters_and_cap_length(tmp_path: Path) -> None:
    make_images(tmp_path, ["a.png"])
    lines = [
        json.dumps({"file": "x\x1b[31m\u202e.png", "prompt": "p"}),  # 1: ANSI escape and bidi override
        json.dumps({"file": "y" * 200 + ".png", "prompt": "p"}),  # 2
        json.dumps({"file": "a.png", "prompt": "p", "col\x07umn": 1}),  # 3
        json.dumps({"file": "../\x00", "prompt": "p"}),  # 4
        json.dumps({"file": "z" * 5000 + ".png", "prompt": "p"}),  # 5: too long for the file system, no crash
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = load_manifest(tmp_path / "m.jsonl", tmp_path)
    reasons = {p.line: p.reason for p in result.problems}
    assert reasons[1].startswith("file 'x\\x1b[31m\\u202e.png' not found")
    assert reasons[2].startswith("file 'yyy") and "... (204 characters) not found" in reasons[2]
    assert reasons[5].startswith("file 'zzz") and "... (5004 characters)" in reasons[5] and len(reasons[5]) < 400
    assert reasons[3] == "unknown column 'col\\x07umn' ignored"
    assert reasons[4] == "'file' contains a NUL character"
    assert all(m.isprintable() for m in result.messages())

    (tmp_path / "m.csv").write_text("name\x1b,prompt\na.png,p\n", encoding="utf-8")
    with pytest.raises(SdevalError) as info:
        load_manifest(tmp_path / "m.csv", tmp_path)
    assert str(info.value).endswith(
        "CSV header has no 'file' column: a CSV manifest needs 'file' and 'prompt' columns "
        "(found: 'name\\x1b', 'prompt')"
    )


@pytest.mark.parametrize(
    ("name", "text", "reason"),
    [
        ("m.jsonl", "", "no usable rows: the file is empty"),
        ("m.jsonl", "\ufeff", "no usable rows: the file is empty"),
        ("m.jsonl", "\n  \r\n\n", "no usable rows: the file has only blank lines"),
        ("m.csv", "file,prompt,seed\n", "no usable rows: the CSV has a header row but no data rows"),
        ("m.csv", "file,prompt\n,\n\n", "no usable rows: the CSV has a header row but no data rows"),
        (
            "m.json",
            '[\n  {"file": "a.png", "prompt": "a cat"},\n  {"file": "b.png", "prompt": "b"}\n]\n',
            "no usable rows: the file is one JSON array (2 items), not JSON Lines: "
            "write one object per line, with no enclosing [ ]",
        ),
        (
            "m.jsonl",
            '{"file": "gone.png", "prompt": "x"}\n{"prompt": "y"}\n',
            "no usable rows: every row was skipped (2 listed above)",
        ),
    ],
)
def test_empty_manifest_is_a_warning(tmp_path: Path, name: str, text: str, reason: str) -> None:
    make_images(tmp_path, ["a.png", "b.png"])
    (tmp_path / name).write_text(text, encoding="utf-8")
    result = load_manifest(tmp_path / name, tmp_path)
    assert result.records == {}
    assert result.problems[-1].line == 0 and result.problems[-1].used
    assert result.messages()[-1] == f"{tmp_path / name}: warning: {reason}"
    # It reaches the user through find_prompts' warnings.
    assert f"{tmp_path / name}: warning: {reason}" in find_prompts([tmp_path / "a.png"], tmp_path, result).warnings


@pytest.mark.parametrize("text", ["", "\n\n"])
def test_empty_csv_manifest_stays_an_error(tmp_path: Path, text: str) -> None:
    (tmp_path / "m.csv").write_text(text, encoding="utf-8")
    with pytest.raises(SdevalError, match="a CSV manifest needs a header row with 'file' and 'prompt'"):
        load_manifest(tmp_path / "m.csv", tmp_path)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("a.png", "a.png"), ("./x//y/b.png", "x/y/b.png"), ("x\\y\\c.png", "x/y/c.png")],
)
def test_normalize_relpath_accepts(raw: str, expected: str) -> None:
    assert normalize_relpath(raw) == expected


@pytest.mark.parametrize("raw", ["../a.png", "x/../../a.png", "x/../a.png", "/abs.png", "C:\\a.png", "", "."])
def test_normalize_relpath_refuses(raw: str) -> None:
    with pytest.raises(PromptParseError):
        normalize_relpath(raw)


# -- precedence ----------------------------------------------------------------------------------------


def test_find_prompts_precedence_and_skips(tmp_path: Path) -> None:
    root = tmp_path / "images"
    root.mkdir()
    everything = save_png(root / "all.png", {"sdeval": json.dumps({"prompt": "embedded"})})
    (root / "all.txt").write_text("caption")
    embedded = save_png(root / "emb.png", {"parameters": A1111_TRICKY})
    (root / "emb.txt").write_text("caption")
    captioned = save_png(root / "cap.png")
    (root / "cap.txt").write_text("just a caption")
    broken = save_png(root / "broken.png", {"sdeval": "{oops"})
    (root / "broken.txt").write_text("caption after a broken chunk")
    nothing = save_png(root / "nothing.png")
    bad_caption = save_png(root / "latin1.png")
    (root / "latin1.txt").write_bytes(b"\xff\xfe\xfa")
    unused = save_png(root / "unused.png")
    (tmp_path / "m.jsonl").write_text(
        json.dumps({"file": "all.png", "prompt": "from manifest"})
        + "\n"
        + json.dumps({"file": "unused.png", "prompt": "not scored"})
        + "\n{bad\n"
    )
    images = [everything, embedded, captioned, broken, nothing, bad_caption]
    search = find_prompts(images, root, manifest=tmp_path / "m.jsonl")
    records, skipped, warnings = search
    assert {p.name: r.source for p, r in records.items()} == {
        "all.png": "manifest",
        "emb.png": "a1111",
        "cap.png": "caption",
        "broken.png": "caption",
    }
    assert records[everything].prompt == "from manifest"
    assert records[broken].prompt == "caption after a broken chunk"
    skips = {s.path.name: s.reason for s in skipped}
    assert set(skips) == {"nothing.png", "latin1.png"}
    assert skips["nothing.png"] == (
        "no prompt found: not in manifest m.jsonl; no prompt metadata in the image; no caption file nothing.txt"
    )
    assert "caption latin1.txt is not UTF-8" in skips["latin1.png"]
    assert any("broken.png" in w and "not valid JSON" in w for w in warnings)
    assert any(
        w.endswith("skipped: not valid JSON: Expecting property name enclosed in double quotes at column 2")
        for w in warnings
    )
    assert any("1 manifest entries match no image" in w and "unused.png" in w for w in warnings)
    assert unused not in records


def test_find_prompts_without_manifest_uses_metadata_then_caption(tmp_path: Path) -> None:
    image = save_png(tmp_path / "a.png", {"parameters": A1111_TRICKY})
    (tmp_path / "a.txt").write_text("caption")
    records, skipped, warnings = find_prompts([str(image)], tmp_path)
    assert records[str(image)].source == "a1111"  # keyed by the path exactly as given
    assert skipped == [] and warnings == []


def test_records_pickle_and_serialize() -> None:
    import pickle

    record = parse_a1111_parameters(A1111_TRICKY)
    assert pickle.loads(pickle.dumps(record)) == record
    assert json.loads(json.dumps(record.to_dict()))["seed"] == 3141592653
    hash(record)  # settings are excluded from the hash, so records can key dicts
    buffer = io.StringIO()
    json.dump(record.to_dict(), buffer)


def test_a1111_hostile_last_line_is_linear_time() -> None:
    import time

    # With a key pattern that overlaps its trailing whitespace this took seconds (quadratic backtracking).
    start = time.perf_counter()
    for line in ("a" + " " * 60_000 + "x", "Steps: 1, a" + " " * 60_000 + "x", "a b" * 20_000):
        with pytest.raises(PromptParseError, match="no settings line"):
            parse_a1111_parameters("prompt\n" + line)
    assert time.perf_counter() - start < 2.0
