"""The public benchmarks' own scores as built-in metrics, by name: GenEval, DSG, TIFA, DPG-Bench and T2I-CompBench's
BLIP-VQA attribute binding (sdeval.metrics.benchmarks: the formulas), each with a protocol block saying how the
judge differs from the published one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from sdeval.metrics.benchmarks import (
    Answer,
    accuracy_by,
    dpg_image_score,
    geneval_overall,
    label_accuracy,
    mean_over_prompts,
    missing_tags,
)
from sdeval.metrics.builtin.cells import judged_rows, unjudged
from sdeval.metrics.registry import (
    Bootstrap,
    CellData,
    Direction,
    JudgedData,
    MetricOutput,
    MetricSkip,
    MetricSpec,
    Need,
    Parts,
    ResultKey,
    ScoreParams,
)
from sdeval.suites.nounphrases import SPACY_MODEL, T2I_BLIP_VQA

#: Each benchmark's published protocol: its name in the literature, where the formula is, the judge it used.
_PUBLISHED = {
    "geneval": ("GenEval overall (Ghosh et al., NeurIPS 2023)",
                "djghosh13/geneval evaluation/summary_scores.py: mean over the six tags of the share of correct images",
                "Mask2Former (mmdetection, Swin-S) boxes and masks, CLIP ViT-L/14 colour on the masked object, "
                "thresholds 0.3 / 0.9 (counting)"),
    "dsg": ("DSG score (Davidsonian Scene Graph; Cho et al., ICLR 2024)",
            "j-min/DSG dsg/vqa_utils.py calc_vqa_score: per image the mean over its questions, 0 where a parent was "
            "answered no; mean over images",
            "PaLI 17B (also mPLUG-large, InstructBLIP) generating an answer, counted when it is 'yes'"),
    "tifa": ("TIFA score (Hu et al., ICCV 2023)",
             "Yushi-Hu/tifa tifascore/tifa_score.py: per image the share of its questions answered as expected; "
             "mean over images",
             "mPLUG-large generating a free-form answer, mapped to the nearest choice with SBERT"),
    "dpg": ("DPG-Bench score (Hu et al., 2024, ELLA)",
            "TencentQQGYLab/ELLA dpg_bench/compute_dpg_bench.py: each of the 4 images (the crops of its 2x2 grid) "
            "the mean over questions after the dependency rule, per prompt the mean over its images, mean over "
            "prompts, x100",
            "mPLUG-large (damo/mplug_visual-question-answering_coco_large_en) generating an answer, counted when it "
            "is 'yes'"),
}  # fmt: skip


def _judge_used(judge: dict[str, Any]) -> str:
    """The judge a cell's verdicts came from, in one line (its full record is the protocol's `judge` block)."""
    name = judge.get("judge") or judge.get("name") or "?"
    model = judge.get("model")
    model = model.get("model") if isinstance(model, dict) else model or judge.get("detector", {}).get("model")
    questions = judge.get("questions")
    asked = ""
    if isinstance(questions, dict):
        asked = f", questions {questions.get('set') or questions.get('format')} ({questions.get('path')})"
    return f"{name}" + (f": {model}" if model else "") + asked


def _benchmark_protocol(name: str, differs: Callable[[dict[str, Any]], list[str]]) -> Callable[..., dict[str, Any]]:
    def protocol(params: ScoreParams, cell: CellData) -> dict[str, Any]:
        judge = cell.judged.protocol if cell.judged is not None else {}
        benchmark, formula, published = _PUBLISHED[name]
        found = differs(judge)
        return {name: {"benchmark": benchmark, "formula": formula, "published_judge": published,
                       "judge": _judge_used(judge), "as_published": not found, "differs": found}}  # fmt: skip

    return protocol


def _vqa_differs(judge: dict[str, Any]) -> list[str]:
    if judge.get("judge") != "vqa":
        return [f"judged by the {judge.get('judge')} judge, not a VQA model"]
    return [
        f"VQA model {_judge_used(judge).split(': ', 1)[-1]}: a yes/no question holds when P(yes) >= "
        f"{judge.get('threshold')}, not when a generated answer is 'yes'",
    ]


def _geneval_differs(judge: dict[str, Any]) -> list[str]:
    kind = judge.get("judge")
    if kind == "detector":
        return ["an open-vocabulary detector's boxes (OWLv2 or Grounding DINO) instead of Mask2Former's masks: colour "
                "from the box crop, thresholds not GenEval's (uncalibrated; docs/adherence.md)"]  # fmt: skip
    return [f"judged by the {kind} judge, not GenEval's Mask2Former detector and colour classifier"]


def _dpg_differs(judge: dict[str, Any]) -> list[str]:
    return [*_vqa_differs(judge),
            "each image scored as it is, which is what cutting the 2x2 grid gives back (a folder of grid files is "
            "not cut)",
            "every question of dpg_bench.csv, where ELLA's reader skips its first row",
            "category scores over every image, where ELLA's code counts only the last crop of each grid"]  # fmt: skip


def _set_rows(cell: CellData, metric: str, fmt: str | None) -> tuple[JudgedData, list[int], list[dict[str, str]]]:
    """The images judged on the question set's questions (their spec was not asked), and the others with why; a
    MetricSkip when the cell was not judged by a VQA judge, or on questions of another format."""
    judged, rows = judged_rows(cell)
    questions = judged.protocol.get("questions") if judged.protocol.get("judge") == "vqa" else None
    if not isinstance(questions, dict):
        raise MetricSkip(f"{metric} needs --judge vqa with the benchmark's questions (a suite's question set or "
                         "--questions FILE)")  # fmt: skip
    if fmt is not None and questions.get("format") != fmt:
        raise MetricSkip(f"{metric} needs {fmt.upper()}'s questions, and the judge asked {questions.get('format')} "
                         f"questions ({questions.get('path')}); pass --questions with a {fmt} set or file")  # fmt: skip
    asked = [i for i in rows if judged.specs[i] is None]
    skipped = [*judged.missing, *({"path": cell.paths[i], "reason": "its prompt has no question in the set; its spec "
               "was asked instead"} for i in rows if judged.specs[i] is not None)]  # fmt: skip
    if not asked:
        raise MetricSkip(f"{metric}: no scored image has a prompt with questions in {questions.get('path')}")
    return judged, asked, skipped


def _geneval(cell: CellData) -> MetricOutput:
    judged, rows = judged_rows(cell)
    if not rows:
        return unjudged("geneval", judged)
    categories = [judged.categories[i] or "uncategorised" for i in rows]
    absent, foreign = missing_tags(categories)
    if absent or foreign:
        why = f"no image of {', '.join(absent)}" if absent else f"other categories: {', '.join(foreign)}"
        raise MetricSkip(f"GenEval overall is the mean over its six tags, and this cell has {why}")
    value, per_tag = geneval_overall(categories, [judged.judgements[i].passed for i in rows])
    entry = {"value": value, "n": len(rows), "categories": per_tag, "images_skipped": judged.missing}
    per_image = {
        "category": [judged.categories[i] if judged.judgements[i] is not None else None for i in range(cell.n)],
        "adherence_passed": [j.passed if j is not None else None for j in judged.judgements],
    }
    return MetricOutput({"geneval": entry}, per_image=per_image)


def _question_score(metric: str, fmt: str) -> Callable[[CellData], MetricOutput]:
    """DSG's or TIFA's score: the VQA judge's per-image score (DSG's rule; TIFA's questions have no parents), mean
    over images; with per category (the suite rows') and, for TIFA, per element type."""

    def compute(cell: CellData) -> MetricOutput:
        judged, rows, skipped = _set_rows(cell, metric, fmt)
        scores = [float(judged.judgements[i].score) for i in rows]
        by_category: dict[str, list[float]] = {}
        for i, score in zip(rows, scores, strict=True):
            by_category.setdefault(judged.categories[i] or "uncategorised", []).append(score)
        entry: dict[str, Any] = {
            "value": float(np.mean(scores)), "n": len(rows),
            "n_prompts": len({judged.prompt_key(i, cell.paths[i]) for i in rows}),
            "categories": {k: {"score": float(np.mean(v)), "n": len(v)} for k, v in sorted(by_category.items())},
            "images_skipped": skipped,
        }  # fmt: skip
        if metric == "tifa":
            facts = [f for i in rows for f in judged.judgements[i].facts]
            entry["accuracy_by_type"] = accuracy_by([f.kind for f in facts], [f.passed for f in facts])
        column: list[Any] = [None] * cell.n
        for i, score in zip(rows, scores, strict=True):
            column[i] = score
        return MetricOutput({metric: entry}, per_image={f"{metric}_score": column})

    return compute


def _dpg(cell: CellData) -> MetricOutput:
    judged, rows, skipped = _set_rows(cell, "dpg", "dsg")
    answers = {i: [Answer(a.question.qid, a.question.parents, a.question.label, a.correct)
                   for a in getattr(judged.judgements[i], "answers", ())] for i in rows}  # fmt: skip
    scores = {i: 100.0 * dpg_image_score(answers[i]) for i in rows}
    value, n_prompts = mean_over_prompts([scores[i] for i in rows], [judged.prompt_key(i, cell.paths[i]) for i in rows])
    every = [a for i in rows for a in answers[i]]
    entry = {"value": value, "n": len(rows), "n_prompts": n_prompts, "l1": label_accuracy(every, 1),
             "l2": label_accuracy(every, 2), "images_skipped": skipped}  # fmt: skip
    column: list[Any] = [scores.get(i) for i in range(cell.n)]
    return MetricOutput({"dpg": entry}, per_image={"dpg_score": column})


GENEVAL = MetricSpec(
    name="geneval",
    description="GenEval overall (Ghosh et al. 2023): the mean over its six tags of the share of images whose every "
    "fact holds, by the judge given (the protocol says how it differs from GenEval's Mask2Former).",
    results=(ResultKey("geneval", "GenEval overall", Direction.HIGHER, (0.0, 1.0),
                       Bootstrap("adherence_passed", by="category"),
                       parts=Parts(field="categories", value="accuracy", column="category")),),
    needs=frozenset({Need.PROMPTS, Need.JUDGEMENTS}),
    compute=_geneval,
    per_image=("category", "adherence_passed"),
    protocol=_benchmark_protocol("geneval", _geneval_differs),
)  # fmt: skip
DSG = MetricSpec(
    name="dsg",
    description="DSG score (Cho et al. 2024): per image the mean over DSG questions, 0 where a parent was answered "
    "no; mean over images (--judge vqa with DSG questions).",
    results=(ResultKey("dsg", "DSG score", Direction.HIGHER, (0.0, 1.0), Bootstrap("dsg_score"),
                       detail="({n} images)"),),
    needs=frozenset({Need.PROMPTS, Need.JUDGEMENTS}),
    compute=_question_score("dsg", "dsg"),
    per_image=("dsg_score",),
    protocol=_benchmark_protocol("dsg", _vqa_differs),
)  # fmt: skip
TIFA = MetricSpec(
    name="tifa",
    description="TIFA score (Hu et al. 2023): per image the share of TIFA's questions answered as expected; mean "
    "over images (--judge vqa with TIFA questions).",
    results=(ResultKey("tifa", "TIFA score", Direction.HIGHER, (0.0, 1.0), Bootstrap("tifa_score"),
                       detail="({n} images)"),),
    needs=frozenset({Need.PROMPTS, Need.JUDGEMENTS}),
    compute=_question_score("tifa", "tifa"),
    per_image=("tifa_score",),
    protocol=_benchmark_protocol(
        "tifa", lambda judge: [*_vqa_differs(judge), "a multiple-choice answer is the choice the model finds most "
                               "likely, not a free-form answer matched by SBERT"]),
)  # fmt: skip
DPG = MetricSpec(
    name="dpg",
    description="DPG-Bench score (ELLA, Hu et al. 2024): per image the mean over its questions after ELLA's "
    "dependency rule, per prompt the mean over its images (4: the 2x2 grid's crops), mean over prompts, x100.",
    results=(ResultKey("dpg", "DPG-Bench score", Direction.HIGHER, (0.0, 100.0),
                       Bootstrap("dpg_score", weight="prompt"), detail="({n_prompts} prompts)"),),
    needs=frozenset({Need.PROMPTS, Need.JUDGEMENTS}),
    compute=_dpg,
    per_image=("dpg_score",),
    protocol=_benchmark_protocol("dpg", _dpg_differs),
)  # fmt: skip


# -- T2I-CompBench's BLIP-VQA attribute binding (color, shape, texture), by name ------------------------------------


_PUBLISHED["t2i_compbench"] = (
    "T2I-CompBench attribute binding, BLIP-VQA (Huang et al., NeurIPS 2023): color, shape, texture",
    "Karine-Huang/T2I-CompBench BLIPvqa_eval/BLIP_vqa.py: per image the product over its noun phrases (at most 8) "
    "of P(yes) to '{phrase}?'; per category the mean over its images (10 per prompt)",
    "BLIP VQA ViT-B (model_base_vqa_capfilt_large.pth) in BLIP's own code, 480x480 images, the question after "
    "[ENC]; P(yes) = p(yes) / (p(yes) + p(no)) of the answer decoder's first token (vqa_prob)",
)
#: T2I-CompBench's BLIP reads images at this size (BLIPvqa_eval/configs/vqa.yaml image_size).
_T2I_IMAGE_SIZE = 480


def _t2i_differs(judge: dict[str, Any]) -> list[str]:
    if judge.get("judge") != "vqa":
        return [f"judged by the {judge.get('judge')} judge, not a VQA model"]
    given = judge.get("model")
    model: dict[str, Any] = given if isinstance(given, dict) else {}
    name = model.get("model") or "?"
    found = [f"noun phrases by spaCy's {' '.join(SPACY_MODEL)}, where T2I-CompBench pins en_core_web_sm 3.5.0 "
             "(3.6.0 and 3.8.0 split 52 of its 900 prompts differently)"]  # fmt: skip
    if model.get("model_type") != "blip":
        return [*found, f"VQA model {name}, not BLIP VQA (T2I-CompBench's is BLIP's model_base_vqa_capfilt_large.pth"
                        ", in transformers Salesforce/blip-vqa-base)"]  # fmt: skip
    if not str(name).endswith("Salesforce/blip-vqa-base"):
        found.append(f"VQA model {name}: T2I-CompBench's is BLIP's model_base_vqa_capfilt_large.pth (in transformers "
                     "Salesforce/blip-vqa-base)")  # fmt: skip
    size = model.get("image_size") or {}
    if (size.get("height"), size.get("width")) != (_T2I_IMAGE_SIZE, _T2I_IMAGE_SIZE):
        found.append(f"images resized to {size.get('height')}x{size.get('width')} by the transformers processor "
                     f"(blip-vqa-base was converted at 384, its position embeddings interpolated from 480), where "
                     f"T2I-CompBench's BLIP reads {_T2I_IMAGE_SIZE}x{_T2I_IMAGE_SIZE}")  # fmt: skip
    found.append("the question begins with [CLS] as transformers' processor writes it, where BLIP's code puts [ENC]")
    found.append("P(yes) of the whole answer through [SEP] (as BLIP's rank_answer scores an answer), where "
                 "T2I-CompBench's vqa_prob normalises the first answer token's p(yes) against p(no)")  # fmt: skip
    return found


def _t2i_compbench(cell: CellData) -> MetricOutput:
    judged, rows, skipped = _set_rows(cell, "t2i_compbench", "t2i-compbench")
    by_category: dict[str, list[int]] = {}
    for i in rows:
        category = judged.categories[i]
        if category in T2I_BLIP_VQA:
            by_category.setdefault(category, []).append(i)
        else:
            skipped.append({"path": cell.paths[i], "reason": f"category {category!r} is not one of T2I-CompBench's "
                            "BLIP-VQA categories (color, shape, texture)"})  # fmt: skip
    if not by_category:
        raise MetricSkip("t2i_compbench: no scored image is of T2I-CompBench's color, shape or texture prompts")
    entries: dict[str, Any] = {}
    columns: dict[str, list[Any]] = {}
    for category, members in by_category.items():
        # T2I-CompBench's rule: the product of P(yes) over the image's questions, then the mean over images.
        scores = {i: float(np.prod([a.p_yes for a in getattr(judged.judgements[i], "answers", ())])) for i in members}
        entries[f"t2i_compbench_{category}"] = {
            "value": float(np.mean(list(scores.values()))), "n": len(members),
            "n_prompts": len({judged.prompt_key(i, cell.paths[i]) for i in members}), "images_skipped": skipped,
        }  # fmt: skip
        columns[f"t2i_compbench_{category}_score"] = [scores.get(i) for i in range(cell.n)]
    return MetricOutput(entries, per_image=columns)


T2I_COMPBENCH = MetricSpec(
    name="t2i_compbench",
    description="T2I-CompBench's BLIP-VQA attribute binding (Huang et al. 2023), color, shape and texture: per image "
    "the product over its noun phrases of P(yes) to '{phrase}?', per category the mean over images (--judge vqa "
    "with the t2i-compbench suite's blip_vqa questions).",
    results=tuple(
        ResultKey(f"t2i_compbench_{c}", f"T2I-CompBench {c} (BLIP-VQA)", Direction.HIGHER, (0.0, 1.0),
                  Bootstrap(f"t2i_compbench_{c}_score"), detail="({n} images)")
        for c in T2I_BLIP_VQA
    ),
    needs=frozenset({Need.PROMPTS, Need.JUDGEMENTS}),
    compute=_t2i_compbench,
    per_image=tuple(f"t2i_compbench_{c}_score" for c in T2I_BLIP_VQA),
    protocol=_benchmark_protocol("t2i_compbench", _t2i_differs),
)  # fmt: skip
