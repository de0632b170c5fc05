"""The public benchmarks as built-in suites: where each file comes from, and how it becomes a suite (format 2).

Each benchmark pins its upstream files (repository, path, 40-hex commit, git's object id and the sha256 of the
bytes, the repository's license and its prompts' upstream licenses, exact counts) and converts them row by row,
keeping the prompt text byte for byte. Files whose license allows it ship converted in `sdeval/suites/data/`
(`NAME.jsonl.gz`); a file the public snapshots lack is read from the user's copy by
`sdeval suites build NAME --from FILE`, which checks that it is the pinned file before converting it.

Maintainers rebuild the shipped files from the originals laid out as `DIR/<owner>/<repo>/<path>`:
`python -m sdeval.suites.benchmarks --originals DIR [--check]`.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdeval.core.errors import ConfigError
from sdeval.suites.builtin import BENCHMARKS, DATA_DIR, builtin_path
from sdeval.suites.nounphrases import SPACY_MODEL, T2I_BLIP_VQA, noun_phrases, questions

VERSION = "1"
COCO_CAPTIONS = "CC BY 4.0 (COCO captions)"


@dataclass(frozen=True)
class Original:
    """One upstream file (or folder of files), pinned."""

    key: str
    repo: str
    path: str
    commit: str
    license: str  # the repository's
    prompts_license: str  # the upstream licenses of the text it holds
    git_object: str  # git's id of the blob (a folder: its tree) at `commit`: `git hash-object FILE`
    sha256: str | None  # of the bytes; None where no public snapshot holds them (then git_object identifies them)
    counts: dict[str, int]
    shipped: bool = True  # converted into the package; False: the user's copy, via `sdeval suites build`
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "repo": self.repo,
            "path": self.path,
            "commit": self.commit,
            "license": self.license,
            "prompts_license": self.prompts_license,
            "git_object": self.git_object,
            "sha256": self.sha256,
            "counts": self.counts,
            "shipped": self.shipped,
        }
        if self.note:
            out["note"] = self.note
        return out


Rows = list[dict[str, Any]]


@dataclass(frozen=True)
class Benchmark:
    """A public benchmark: its suite id, its name in the literature, its files, notes and the conversion."""

    id: str
    name: str
    description: str
    sources: tuple[Original, ...]
    notes: tuple[str, ...]
    convert: Callable[[Mapping[str, bytes]], Rows]  # shipped originals by key -> rows
    question_sets: dict[str, dict[str, str]] = field(default_factory=dict)
    attach: Callable[[Rows, bytes], Rows] | None = None  # rows + the user's copy -> rows with its questions
    #: The benchmark's own generation rules (docs/generate.md): used where a generate config leaves a key unset.
    generation: dict[str, Any] = field(default_factory=dict)

    def source(self, key: str) -> Original:
        return next(s for s in self.sources if s.key == key)

    def header(self, sources: tuple[Original, ...] | None = None) -> dict[str, Any]:
        suite: dict[str, Any] = {
            "id": self.id,
            "version": VERSION,
            "description": self.description,
            "format": 2,
            "name": self.name,
            "sources": [s.to_json() for s in sources or self.sources],
            "notes": list(self.notes),
        }
        if self.question_sets:
            suite["question_sets"] = self.question_sets
        if self.generation:
            suite["generation"] = self.generation
        return {"suite": suite}


# -- conversions ----------------------------------------------------------------------------------------------------


def _lines(data: bytes) -> list[str]:
    """The lines of a text file as written (CRLF or LF; with or without a final newline)."""
    lines = data.decode("utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def _tsv(data: bytes, columns: int) -> list[list[str]]:
    """A tab-separated file with a header line; no quoting (the prompts hold quotes as text)."""
    rows = [line.split("\t") for line in _lines(data)]
    bad = [i for i, row in enumerate(rows, start=1) if len(row) != columns]
    if bad:
        raise ConfigError(f"line {bad[0]}: expected {columns} tab-separated fields")
    return rows[1:]


def geneval(files: Mapping[str, bytes]) -> Rows:
    """GenEval's metadata rows; the id is the row's 0-based line number in 5 digits, GenEval's folder name."""
    rows = []
    for i, line in enumerate(_lines(files["metadata"])):
        obj = json.loads(line)
        spec = {k: obj[k] for k in ("tag", "include", "exclude") if k in obj}
        rows.append({"id": f"{i:05d}", "prompt": obj["prompt"], "category": obj["tag"], "spec": spec})
    return rows


def partiprompts(files: Mapping[str, bytes]) -> Rows:
    """PartiPrompts.tsv (Prompt, Category, Challenge, Note); ids are 0-based row numbers in 4 digits."""
    rows = []
    for i, (prompt, category, challenge, note) in enumerate(_tsv(files["tsv"], 4)):
        row: dict[str, Any] = {"id": f"{i:04d}", "prompt": prompt, "category": category, "challenge": challenge}
        if note:
            row["meta"] = {"note": note}
        rows.append(row)
    return rows


T2I_CATEGORIES = ("color", "shape", "texture", "spatial", "non_spatial", "complex", "3d_spatial", "numeracy")


def t2i_compbench(files: Mapping[str, bytes]) -> Rows:
    """The eight `<category>_val.txt` files, one prompt per line; ids `<category>_<0-based line, 3 digits>`. The
    color, shape and texture rows get T2I-CompBench's BLIP-VQA questions (`nounphrases`: needs spaCy)."""
    rows: Rows = [
        {"id": f"{category}_{i:03d}", "prompt": prompt, "category": category}
        for category in T2I_CATEGORIES
        for i, prompt in enumerate(_lines(files[category]))
    ]
    asked = [row for row in rows if row["category"] in T2I_BLIP_VQA]
    for row, phrases in zip(asked, noun_phrases([row["prompt"] for row in asked]), strict=True):
        row["questions"] = {"blip_vqa": questions(phrases)}
    return rows


def _dsg_category(item_id: str) -> str:
    """DSG's dataset category of an item (`get_data_category` in DSG's dsg/data_utils.py)."""
    for needles, category in (
        (("tifa",), "tifa"),
        (("stanford", "localized"), "paragraph"),
        (("countbench",), "count"),
        (("vrd",), "relation"),
        (("diffusion", "midjourney"), "real_user"),
        (("posescript",), "pose"),
        (("whoops",), "defying"),
        (("drawtext",), "text"),
    ):
        if any(n in item_id for n in needles):
            return category
    raise ConfigError(f"DSG item {item_id!r}: no dataset category")


def dsg_questions(data: bytes) -> dict[str, tuple[str, list[dict[str, Any]]]]:
    """DSG's annotation CSV (item_id, text, keywords, proposition_id, dependency, category_broad,
    category_detailed, tuple, question_natural_language): {item_id: (text, questions)}, in first-seen order.

    A dependency that is not a list of ids ("5, right") voids every dependency of its item, as DSG's own reading
    does (dsg/data_utils.py parses an item's dependencies in one try block and keeps none when one fails)."""
    items: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    voided: set[str] = set()
    reader = csv.DictReader(io.StringIO(data.decode("utf-8"), newline=""))
    for record in reader:
        item_id = record["item_id"]
        text, questions = items.setdefault(item_id, (record["text"], []))
        if record["text"] != text:
            raise ConfigError(f"line {reader.line_num}: item {item_id!r} has two texts")
        try:
            parents = [str(int(p)) for p in record["dependency"].split(",") if int(p) != 0]
        except ValueError:
            voided.add(item_id)
            parents = []
        question: dict[str, Any] = {"qid": str(int(record["proposition_id"]))}
        question["question"] = record["question_natural_language"]
        if parents:
            question["parents"] = parents
        question.update(kind=record["category_broad"], label=record["tuple"])
        questions.append(question)
    for item_id in voided:
        for question in items[item_id][1]:
            question.pop("parents", None)
    return {item_id: (text, _clean(questions)) for item_id, (text, questions) in items.items()}


def _clean(questions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An item's questions less what DSG's files hold by mistake: a blank question, a proposition id given twice
    (the first kept), a parent that is the question itself (no effect on DSG's rule) or that the item lacks."""
    kept: dict[str, dict[str, Any]] = {}
    for question in questions:
        if question["question"].strip() and question["qid"] not in kept:
            kept[question["qid"]] = question
    for qid, question in kept.items():
        parents = [p for p in question.pop("parents", []) if p != qid and p in kept]
        if parents:
            question["parents"] = parents
        question["kind"], question["label"] = question.pop("kind"), question.pop("label")  # keep the key order
    return list(kept.values())


def dsg_1k(files: Mapping[str, bytes]) -> Rows:
    """DSG-1k: one row per item_id (category: DSG's dataset category; tag: the source dataset), its questions."""
    return [
        {
            "id": item_id,
            "prompt": text,
            "category": _dsg_category(item_id),
            "tags": [item_id.rsplit("_", 1)[0]],
            "questions": {"dsg": questions},
        }
        for item_id, (text, questions) in dsg_questions(files["anns"]).items()
    ]


def tifa160(files: Mapping[str, bytes]) -> Rows:
    """TIFA160: the 160 texts of TIFA's human judgments (first-seen order), with DSG's questions for them."""
    texts: dict[str, str] = {}
    for record in json.loads(files["human"]).values():
        texts.setdefault(record["text_id"], record["text"])
    dsg = dsg_questions(files["dsg"])
    if set(dsg) != set(texts):
        raise ConfigError("tifa160-dev-anns.csv and human_annotations.json name different prompts")
    return [
        {"id": tid, "prompt": text, "category": tid.rsplit("_", 1)[0], "questions": {"dsg": dsg[tid][1]}}
        for tid, text in texts.items()
    ]


def tifa_attach(rows: Rows, data: bytes) -> Rows:
    """TIFA's own questions (tifa_v1.0_question_answers.json) for the rows' ids, as question set `tifa`."""
    by_id: dict[str, list[dict[str, Any]]] = {}
    for record in json.loads(data.decode("utf-8")):
        items = by_id.setdefault(str(record["id"]), [])
        question: dict[str, Any] = {"qid": str(len(items) + 1), "question": record["question"]}
        question.update(answer=record["answer"], choices=list(record["choices"]))
        question.update(kind=record.get("element_type") or "", label=record.get("element") or "")
        items.append(question)
    missing = [row["id"] for row in rows if row["id"] not in by_id]
    if missing:
        raise ConfigError(f"no TIFA questions for {len(missing)} prompt(s), e.g. {missing[0]!r}")
    return [{**row, "questions": {**row.get("questions", {}), "tifa": by_id[row["id"]]}} for row in rows]


def dpg_bench(files: Mapping[str, bytes]) -> Rows:
    """DPG-Bench: one prompt per file of dpg_bench/prompts, id the file name without .txt, text as written."""
    folder = json.loads(files["prompts"])  # {name: text}, read by `_read_original`
    return [{"id": name.removesuffix(".txt"), "prompt": text} for name, text in sorted(folder.items())]


def dpg_attach(rows: Rows, data: bytes) -> Rows:
    """DPG-Bench's questions (dpg_bench.csv, DSG's columns) for the rows' ids, as question set `dpg`."""
    items = dsg_questions(data)
    missing = [row["id"] for row in rows if row["id"] not in items]
    if missing:
        raise ConfigError(f"no DPG-Bench questions for {len(missing)} prompt(s), e.g. {missing[0]!r}")
    return [{**row, "questions": {"dpg": items[row["id"]][1]}} for row in rows]


def mlperf_coco2014(files: Mapping[str, bytes]) -> Rows:
    """MLPerf's captions_source.tsv: the id is the row number (0-4999); the COCO ids are kept in `meta`."""
    return [
        {"id": str(i), "prompt": caption, "meta": {"caption_id": int(cid), "image_id": int(iid), "file_name": name}}
        for i, (cid, iid, caption, _h, _w, name, _url) in enumerate(_tsv(files["tsv"], 7))
    ]


# -- the benchmarks -------------------------------------------------------------------------------------------------

_T2I_COMMIT = "7728deac05e17903b3145befd9b7207c7c019573"  # the last commit before color_val.txt changed
_T2I_HEAD = "1b7094991a57f3c22abdd4f6e8ba6c1a15517073"
_T2I_BLOBS = {  # category: git blob id at _T2I_COMMIT
    "color": "d1d3fa492f98454f118aef1ae2f08b369fbfe8f6",
    "shape": "b82835d72b25c2aa2962736f091fe04ee6a39a21",
    "texture": "61d35c8e7127e530f221780fd117c905315ce00a",
    "spatial": "e453b999d311ddc47f303d389db02818b63a256c",
    "non_spatial": "046d5689c35fb1270fdce8aa003c068e4a360726",
    "complex": "3667f7838c8ae5965ed4bd5bd8c32bff0604344a",
    "3d_spatial": "c799d256a56a68cea3fbc423d79c444c3819cf7a",
    "numeracy": "f9246e9ceb6f58c578534f967108372823762fde",
}
_T2I_SHA256 = {
    "color": "1e37a12c1861bf6b11623eaffb0bf6d6eeea9702caf45b95d040f1721bba7f4f",
    "shape": "37e1a276906c7ea9516cbd7ac8501be896006c0c17ca7344f260562834455bae",
    "texture": "fbb5363515b4a28009e360afaaaf389d2dd2289e50dbb0c6ef4ea0c7fe4f3d4f",
    "spatial": "8707a1d7e42ce3002d95363cf55f74bd043c843ae27108f5125aaaa7840ca988",
    "non_spatial": "04c56cc9ac441dc9ea6c5157652058bd1635b5308526dd31bb29a1caab9a758d",
    "complex": "1b808018b8d9916db3d47d5aa2ef18377a3549a56901a474156f799824cdf3b4",
    "3d_spatial": "c9953597315f36a5fcb41291bb19bdc6ab5f64a0fa760d691b4854a73f5d1fe9",
    "numeracy": "dad8df141604b70ba7554bec724e3db0a80023680769b5c514854ea2d2527bbe",
}
_T2I_COLOR_2025 = (
    "700badf7bd0989c45eb307ff3573f127ecee0a53",
    "1634259756dbc77d13093d907d414480080ec9790a8c97ad09efaea7b2534f2d",
)
_DSG = "j-min/DSG"
_DSG_COMMIT = "7330119a39f76ff90e619a8bd3ff321e71aa986b"  # adds the Apache-2.0 LICENSE; the data is of 2024-05-18
_DSG_SOURCES = (
    "DSG-1k draws its prompts from ten datasets, each under its own terms: TIFA160 (COCO captions CC BY 4.0, "
    "PartiPrompts Apache-2.0, PaintSkills, DrawBench), Localized Narratives (CC BY 4.0), DiffusionDB (CC0 1.0), "
    "WHOOPS! (CC BY 4.0 with WHOOPS!'s conditions: a test set, not a training set), Stanford image paragraphs, "
    "VRD, CountBench, PoseScript, Midjourney user prompts and DrawText; the licenses not named here are not stated "
    "in DSG's repository: see each dataset's own terms. Questions: generated by DSG with PaLM 2, Apache-2.0."
)
_TIFA_SOURCES = "COCO captions (CC BY 4.0), PartiPrompts (Apache-2.0), PaintSkills and DrawBench"

BENCHMARK_LIST: tuple[Benchmark, ...] = (
    Benchmark(
        id="geneval",
        name="GenEval (Ghosh et al., NeurIPS 2023 Datasets and Benchmarks)",
        description="GenEval's 553 prompts with their metadata (single_object 80, two_object 99, counting 80, "
        "colors 94, position 100, color_attr 100), as GenEval's evaluation_metadata.jsonl holds them.",
        sources=(
            Original(
                key="metadata",
                repo="djghosh13/geneval",
                path="prompts/evaluation_metadata.jsonl",
                commit="af4902f24d3ca90ebbb446dd9891a59e0f82725f",
                license="MIT",
                prompts_license="MIT (generated by GenEval's create_prompts.py over COCO's class names)",
                git_object="efc21c7e639cd45554a1e44fac87157211f16d51",
                sha256="5c48e0813e812e3c373fa5c8ed07a8f0a483be30272b4427b0559c8048e67c13",
                counts={"prompts": 553},
            ),
        ),
        notes=(
            "Ids are GenEval's output folder names: the 0-based line number of the row, in 5 digits (00000-00552), "
            "so images written in GenEval's layout match their rows.",
            "GenEval's overall score is the mean of its six task scores, not the mean over the 553 prompts.",
            "sdeval's `compositional` suite uses GenEval's templates and format but is another prompt set: its "
            "numbers are not GenEval numbers.",
            "GenEval generates 4 images per prompt with 50 steps and guidance scale 9 (generation/"
            "diffusers_generate.py): the suite's generation defaults. Its seeds are not per image (seed_everything(42) "
            "once per prompt, then the pipeline's own draws), so no seeds are fixed here.",
        ),
        convert=geneval,
        generation={"seeds_per_prompt": 4, "num_inference_steps": 50, "guidance_scale": 9.0},
    ),
    Benchmark(
        id="partiprompts",
        name="PartiPrompts (P2; Yu et al., 2022, Parti)",
        description="The 1632 PartiPrompts, each with its category (12) and challenge (11); Parti's notes in meta.",
        sources=(
            Original(
                key="tsv",
                repo="google-research/parti",
                path="PartiPrompts.tsv",
                commit="5a657978134374ce28973948331b319adef164bd",
                license="Apache-2.0",
                prompts_license="Apache-2.0",
                git_object="f96e7125a02e48976736179a667b080ba81539fb",
                sha256="fab29e41bb512a169b56acab4cf2a41dcb675e285df2efcde6640c7dd3c440eb",
                counts={"prompts": 1632, "categories": 12, "challenges": 11, "notes": 190},
            ),
        ),
        notes=(
            "PartiPrompts has no ids: ids are the 0-based row numbers of PartiPrompts.tsv (header not counted), "
            "in 4 digits.",
            "Parti reports human side-by-side judgments on P2; a number on these prompts from another metric is "
            "that metric's number, broken down by category and challenge.",
        ),
        convert=partiprompts,
    ),
    Benchmark(
        id="t2i-compbench",
        name="T2I-CompBench (Huang et al., NeurIPS 2023) validation split; 3d_spatial and numeracy from "
        "T2I-CompBench++ (Huang et al., TPAMI 2025)",
        description="T2I-CompBench's validation prompts: 300 in each of color, shape, texture, spatial, non_spatial, "
        "complex, 3d_spatial, numeracy (2400), as the published numbers used them.",
        sources=tuple(
            Original(
                key=category,
                repo="Karine-Huang/T2I-CompBench",
                path=f"examples/dataset/{category}_val.txt",
                commit=_T2I_COMMIT,
                license="MIT",
                prompts_license="MIT (the repository's; no other license is stated for the prompts)",
                git_object=blob,
                sha256=sha,
                counts={"prompts": 300},
                note=(
                    "The version every number published before 2025-09-03 used (295 distinct texts: 5 repeat). "
                    "On 2025-09-03 "
                    f"(commit 3310c2f1f43cc173505fc40cf6cc70762f090c07, still the file at {_T2I_HEAD}) 5 lines were "
                    "replaced and the repeats removed: git blob "
                    f"{_T2I_COLOR_2025[0]}, sha256 {_T2I_COLOR_2025[1]}."
                    if category == "color"
                    else ""
                ),
            )
            for category, blob in _T2I_BLOBS.items()
            for sha in [_T2I_SHA256[category]]
        ),
        notes=(
            "Pinned at the commit before color_val.txt changed on 2025-09-03, so numbers compare with the papers: "
            "T2I-CompBench (NeurIPS 2023: color, shape, texture, spatial, non_spatial, then called action, "
            "complex) and T2I-CompBench++ (3d_spatial and numeracy, added on 2024-03-13) and the papers that "
            "report on them before 2025-09-03 all used this color_val.txt; a number on the repository's later file "
            "is on 5 other color prompts.",
            "Ids are <category>_<0-based line number, 3 digits>. Six files end their lines with CRLF (3d_spatial and "
            "numeracy with LF); only shape_val.txt and non_spatial_val.txt end with a final newline. The texts are "
            "kept without line ends, so the last line of color_val.txt repeats an earlier one that differed only by "
            "its CR.",
            "T2I-CompBench scores each category with its own judge (BLIP-VQA for color, shape and texture; UniDet "
            "for spatial, 3d_spatial and numeracy; CLIPScore for non_spatial; the 3-in-1 average for complex).",
            "Question set blip_vqa: the questions T2I-CompBench's BLIP-VQA score asks of the color, shape and "
            "texture images, one per noun phrase; the image's score is the product of P(yes) over them and the "
            "category's the mean over images (metric t2i_compbench). The noun chunks come from spaCy's "
            f"{' '.join(SPACY_MODEL)}; T2I-CompBench pins en_core_web_sm 3.5.0, and en_core_web_sm 3.6.0 and 3.8.0 "
            "split 52 of these 900 prompts differently (e.g. 'a teardrop' or 'a teardrop pendant'), so the pinned "
            "3.5.0 may ask other questions of a few prompts.",
            "T2I-CompBench generates 10 images per prompt with fixed seeds, 42 to 51 (GORS_finetune/inference_eval.py: "
            "the n-th image from a CUDA generator seeded 42 + n): the suite's generation defaults. The same seed "
            "numbers give the same images only where the latents are drawn as that script draws them.",
        ),
        convert=t2i_compbench,
        generation={"seeds": list(range(42, 52))},
        question_sets={
            "blip_vqa": {
                "format": "t2i-compbench",
                "description": "T2I-CompBench's BLIP-VQA questions (color, shape, texture): '{noun phrase}?' for each "
                "noun chunk of the prompt as BLIPvqa_eval/BLIP_vqa.py makes them (less 'top', 'the side', 'the left', "
                "'the right'; at most 8), lower-cased as BLIP's pre_question does",
                "source": "Karine-Huang/T2I-CompBench BLIPvqa_eval/BLIP_vqa.py; noun chunks by spaCy's "
                f"{' '.join(SPACY_MODEL)} (T2I-CompBench's requirements.txt pins en_core_web_sm 3.5.0)",
            }
        },
    ),
    Benchmark(
        id="dsg-1k",
        name="DSG-1k (Davidsonian Scene Graph; Cho et al., ICLR 2024)",
        description="DSG-1k's 1060 prompts with their 8182 DSG questions and dependencies; category: DSG's "
        "dataset category, tag: the source dataset.",
        sources=(
            Original(
                key="anns",
                repo=_DSG,
                path="dsg/data/dsg-1k-anns.csv",
                commit=_DSG_COMMIT,
                license="Apache-2.0",
                prompts_license=_DSG_SOURCES,
                git_object="b1b097f09ec4b36546b7266492b386a742ec5790",
                sha256="b7ce06ea8a0478ccfd8fba105ecd26d7d301eb99d5c412987546c4cc8e08917a",
                counts={"prompts": 1060, "texts": 1059, "questions": 8182},
            ),
        ),
        notes=(
            "Ids are DSG's item_id: 1060 prompts but 1059 texts (midjourney_61 and midjourney_65 share one).",
            "Categories are DSG's dataset categories as its dsg/data_utils.py assigns them (tifa, paragraph, "
            "relation, count, real_user, pose, defying, text); each row's tag is its source dataset.",
            "DSG scores an image by the mean over its questions, a question counting 0 when a parent was answered "
            "no; DSG-1k's score is the mean over items, and depends on the VQA model (DSG reports PaLI 17B).",
            "The TIFA160 items here are named tifa160_N; the tifa160 suite keeps TIFA's ids.",
            "Dependencies as DSG's own code reads them: in 10 questions of 8 items (posescript_19, _41, _55, _69, "
            "stanford_paragraph_54, _55, _72, tifa160_67) the dependency names a word after the id ('5, right'), "
            "and DSG's dsg/data_utils.py then keeps no dependency for the item: nor does this suite. 44 questions "
            "that list themselves as a parent lose that parent (no effect on DSG's rule), and tifa160_134, which "
            "has no question 1, loses the 8 dependencies on it.",
        ),
        convert=dsg_1k,
        question_sets={"dsg": {"format": "dsg", "description": "DSG's questions (dsg-1k-anns.csv)"}},
    ),
    Benchmark(
        id="tifa160",
        name="TIFA160 (the TIFA v1.0 prompts with human judgments; Hu et al., ICCV 2023)",
        description="The 160 TIFA v1.0 prompts that TIFA's human judgments cover, with DSG's questions for them "
        "(question set dsg); TIFA's own questions (set tifa) come from `sdeval suites build tifa160 --from "
        "tifa_v1.0_question_answers.json`.",
        sources=(
            Original(
                key="human",
                repo="Yushi-Hu/tifa",
                path="human_annotations/human_annotations.json",
                commit="8e37050f44ab4ee681e4251f3c8a9d4cc86e901e",
                license="Apache-2.0",
                prompts_license=_TIFA_SOURCES,
                git_object="f206efbf3d728b2be5e7caf32569a4caf089498c",
                sha256="1e41c66e78b7f1e74e8a5e86251f813498def7dd8bc3019c24ae8d56c57b349f",
                counts={"prompts": 160, "judgments": 800},
            ),
            Original(
                key="dsg",
                repo=_DSG,
                path="dsg/data/tifa160-dev-anns.csv",
                commit=_DSG_COMMIT,
                license="Apache-2.0",
                prompts_license=_TIFA_SOURCES + "; questions by DSG, Apache-2.0",
                git_object="fdc49b35a017d15266d9350515d2397deb2f9ae3",
                sha256="5f79461a24112992084b8e785209b0c7c6fba14a9cd3a0d5437316e3f44da886",
                counts={"prompts": 160, "questions": 920},
            ),
            Original(
                key="tifa",
                repo="Yushi-Hu/tifa",
                path="tifa_v1.0/tifa_v1.0_question_answers.json",
                commit="8e37050f44ab4ee681e4251f3c8a9d4cc86e901e",
                license="Apache-2.0",
                prompts_license=_TIFA_SOURCES + "; questions generated by TIFA with GPT-3",
                git_object="6a563f9c157e5b2a24b9f4936edd3934a8a70add",
                sha256=None,
                counts={"prompts": 4081},
                shipped=False,
                note="Not in the public snapshots: `sdeval suites build tifa160 --from FILE` checks the copy by this "
                "git object id (git hash-object FILE) and records its sha256.",
            ),
        ),
        notes=(
            "Texts are TIFA's, as its human judgments hold them (11 differ from tifa_v1.0_text_inputs.json by "
            "trailing whitespace). DSG's tifa160-dev-anns.csv writes 19 of them otherwise (whitespace, typos "
            "fixed); its questions were made from its own texts.",
            "DSG's tifa160-dev-anns.csv has 920 rows; 841 questions are kept: 78 with a blank question and 1 "
            "repeated proposition id are left out, with the dependencies on them, and a question's dependency on "
            "itself.",
            "TIFA's score is the mean over its questions of the VQA model's accuracy (multiple choice, matched with "
            "SBERT); DSG's is the mean over its yes/no questions after the dependency rule: the two sets give "
            "different numbers on the same images.",
        ),
        convert=tifa160,
        question_sets={
            "dsg": {"format": "dsg", "description": "DSG's questions for TIFA160 (tifa160-dev-anns.csv)"},
            "tifa": {"format": "tifa", "description": "TIFA's questions (tifa_v1.0_question_answers.json)"},
        },
        attach=tifa_attach,
    ),
    Benchmark(
        id="dpg-bench",
        name="DPG-Bench (Dense Prompt Graph Benchmark; Hu et al., 2024, ELLA)",
        description="DPG-Bench's 1065 dense prompts (one file each in ELLA's dpg_bench/prompts); its questions "
        "(question set dpg) come from `sdeval suites build dpg-bench --from dpg_bench.csv`.",
        sources=(
            Original(
                key="prompts",
                repo="TencentQQGYLab/ELLA",
                path="dpg_bench/prompts",
                commit="3c228f1dc6c4d3cad0a47493816151a419f14db3",
                license="Apache-2.0",
                prompts_license="Apache-2.0 (ELLA's); rewritten from prompts of COCO captions (CC BY 4.0), "
                "PartiPrompts (Apache-2.0) and DSG-1k's sources (see dsg-1k), as the file names say",
                git_object="ac3ba27bf2e1c3ec189fe2e00681f75f4b78d683",
                sha256="317085a5cddf9620595bb38cba7b9fa25ecfb081846bc91b840c98366d46f56e",
                counts={"prompts": 1065},
                note="A folder: git_object is its tree; sha256 is that of `sha256sum *.txt | LC_ALL=C sort -k2` "
                "run in it.",
            ),
            Original(
                key="csv",
                repo="TencentQQGYLab/ELLA",
                path="dpg_bench/dpg_bench.csv",
                commit="3c228f1dc6c4d3cad0a47493816151a419f14db3",
                license="Apache-2.0",
                prompts_license="Apache-2.0 (questions made following DSG)",
                git_object="98457fc9901943f51ff9a30367250fc292533bed",
                sha256=None,
                counts={"prompts": 1065},
                shipped=False,
                note="Not in the public snapshots: `sdeval suites build dpg-bench --from FILE` checks the copy by this "
                "git object id (git hash-object FILE) and records its sha256.",
            ),
        ),
        notes=(
            "Ids are the prompt file names without .txt; texts are the files' as written (two begin or end with "
            "whitespace).",
            "DPG-Bench generates 4 images per prompt as a 2x2 grid and scores each quarter with mPLUG-large; ELLA's "
            "compute_dpg_bench.py skips the first row of dpg_bench.csv (`if i == 0: continue`), so its numbers "
            "leave out one question of the first item.",
            "DPG-Bench generates 4 images per prompt (ELLA's README), scored as the crops of a 2x2 grid: the suite's "
            "generation default.",
        ),
        convert=dpg_bench,
        generation={"seeds_per_prompt": 4},
        question_sets={"dpg": {"format": "dsg", "description": "DPG-Bench's questions (dpg_bench.csv)"}},
        attach=dpg_attach,
    ),
    Benchmark(
        id="mlperf-coco2014",
        name="MLPerf Inference text-to-image (SDXL) COCO-2014 captions",
        description="The 5000 COCO-2014 validation captions of MLPerf Inference's text-to-image benchmark, one per "
        "image; the COCO caption and image ids in meta.",
        sources=(
            Original(
                key="tsv",
                repo="mlcommons/inference",
                path="text_to_image/coco2014/captions/captions_source.tsv",
                commit="b66003e10e2db4b8c36a448b0545ec90fcc6e9e9",
                license="Apache-2.0",
                prompts_license=COCO_CAPTIONS,
                git_object="70f2b005ab38ebf5f455d8052db286fc67d79bcf",
                sha256="2eeb95637b30fe5af26dd644bafa7affe4e5472ad0bda32d0feb1bd261280d5e",
                counts={"prompts": 5000, "texts": 4965},
            ),
        ),
        notes=(
            "Ids are row numbers (0-4999), as MLPerf indexes its samples: only 4965 captions are distinct.",
            "MLPerf scores FID against these 5000 COCO images and CLIP score against these captions; its accuracy "
            "targets hold for its own SDXL setup (steps, scheduler, latents).",
        ),
        convert=mlperf_coco2014,
    ),
)
BY_ID = {b.id: b for b in BENCHMARK_LIST}
assert tuple(BY_ID) == BENCHMARKS, "builtin.BENCHMARKS lists the benchmarks in this order"


# -- files ----------------------------------------------------------------------------------------------------------


def git_object_id(data: bytes) -> str:
    """git's id of a file's bytes (`git hash-object FILE`)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def render(benchmark: Benchmark, rows: Rows, sources: tuple[Original, ...] | None = None) -> str:
    """The suite file's text: the format 2 header, then one row per line."""
    lines = [benchmark.header(sources), *rows]
    return "".join(json.dumps(obj, ensure_ascii=False) + "\n" for obj in lines)


def gzip_bytes(text: str) -> bytes:
    """Compressed without a time stamp or file name, so the same text gives the same bytes."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as handle:
        handle.write(text.encode("utf-8"))
    return buffer.getvalue()


def shipped_rows(benchmark: Benchmark) -> Rows:
    """The rows of the shipped file, as JSON."""
    lines = gzip.decompress(builtin_path(benchmark.id).read_bytes()).decode("utf-8").splitlines()
    return [json.loads(line) for line in lines[1:]]


def check_copy(original: Original, data: bytes, where: str) -> str:
    """The copy's sha256 once it is the pinned file; else ConfigError saying what differs."""
    sha256 = hashlib.sha256(data).hexdigest()
    blob = git_object_id(data)
    if (original.sha256 is not None and sha256 != original.sha256) or blob != original.git_object:
        expected = f"sha256 {original.sha256}" if original.sha256 else f"git object {original.git_object}"
        raise ConfigError(
            f"{where}: not {original.repo}@{original.commit[:12]} {original.path} ({expected}); this file has "
            f"sha256 {sha256}, git object {blob}"
        )
    return sha256


def build_from_copy(name: str, data: bytes, where: str) -> str:
    """`sdeval suites build NAME --from FILE`: the suite text, after checking that FILE is the pinned original.

    A benchmark with a file the package does not ship takes that file and adds its questions to the shipped rows; a
    benchmark made from one shipped file is converted from it again (the same bytes as the shipped suite)."""
    if name not in BY_ID:
        raise ConfigError(f"suites build: no benchmark {name!r} (benchmarks: {', '.join(BY_ID)})")
    benchmark = BY_ID[name]
    extra = [s for s in benchmark.sources if not s.shipped]
    if extra and benchmark.attach is not None:
        original = extra[0]
        sha256 = check_copy(original, data, where)
        rows = benchmark.attach(shipped_rows(benchmark), data)
        sources = tuple(Original(**{**s.__dict__, "sha256": sha256}) if s is original else s for s in benchmark.sources)
        return render(benchmark, rows, sources)
    if len(benchmark.sources) == 1:
        original = benchmark.sources[0]
        check_copy(original, data, where)
        return render(benchmark, benchmark.convert({original.key: data}))
    raise ConfigError(f"suites build: {name} is made from {len(benchmark.sources)} files and ships with sdeval")


def folder_sha256(folder: Path) -> str:
    """A folder of .txt files, as `sha256sum *.txt | LC_ALL=C sort -k2 | sha256sum` run in it says."""
    files = sorted(folder.glob("*.txt"), key=lambda p: p.name.encode())
    lines = "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n" for p in files)
    return hashlib.sha256(lines.encode()).hexdigest()


def _read_original(root: Path, original: Original) -> bytes:
    path = root / original.repo / original.path
    if path.is_dir():  # a folder of prompt files: {name: text}
        return json.dumps({p.name: p.read_text(encoding="utf-8") for p in sorted(path.glob("*.txt"))}).encode()
    return path.read_bytes()


def write_shipped(root: Path, out: Path = DATA_DIR, check: bool = False) -> list[str]:
    """Convert every shipped original under `root` (DIR/<owner>/<repo>/<path>) into `out`; returns what differs
    (check) or what was written."""
    done = []
    for benchmark in BENCHMARK_LIST:
        files = {s.key: _read_original(root, s) for s in benchmark.sources if s.shipped}
        for s in benchmark.sources:
            path = root / s.repo / s.path
            if s.shipped and path.is_dir() and folder_sha256(path) != s.sha256:
                raise ConfigError(f"{path}: not {s.repo}@{s.commit[:12]} {s.path} (sha256 {s.sha256})")
            if s.shipped and not path.is_dir():
                check_copy(s, files[s.key], str(path))
        data = gzip_bytes(render(benchmark, benchmark.convert(files)))
        target = out / f"{benchmark.id}.jsonl.gz"
        if check:
            if not target.is_file() or gzip.decompress(target.read_bytes()) != gzip.decompress(data):
                done.append(benchmark.id)
        else:
            target.write_bytes(data)
            done.append(str(target))
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sdeval.suites.benchmarks", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--originals", type=Path, required=True, help="folder holding <owner>/<repo>/<path>")
    parser.add_argument("--out", type=Path, default=DATA_DIR, help="folder to write into (default: the package's)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a shipped file differs")
    args = parser.parse_args(argv)
    done = write_shipped(args.originals, args.out, args.check)
    for line in done:
        print(f"{line}: differs from its conversion" if args.check else line, file=sys.stderr if args.check else None)
    return 1 if args.check and done else 0


if __name__ == "__main__":
    sys.exit(main())
