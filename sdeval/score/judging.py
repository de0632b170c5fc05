"""The judging pass of `sdeval score`: each image's spec found, the image judged against it.

Specs come from GenEval's own layout (`NNNNN/metadata.jsonl`), else from a suite: `--suite NAME|FILE`, or the
suite a generation run was made from. A suite prompt is joined to an image by prompt id (the manifest's `id`,
the run's prompt id), else by exact prompt text. Images whose prompt has no spec are listed with the reason.
Judges look at pixels, so this pass decodes each judged image again (the feature pass keeps no pixels).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from sdeval.core.errors import SdevalError
from sdeval.core.images import ImageDecodeError, load_rgb
from sdeval.judges.questions import default_question_set, suite_questions
from sdeval.metrics.registry import JudgedData
from sdeval.prompts.record import PromptRecord
from sdeval.suites import load_suite

#: Why an image has no spec when nothing supplies specs (no --suite, no suite recorded by a run, no GenEval layout):
#: the reason names the fix.
NO_SPEC_SOURCE = (
    "no spec: no suite gives this folder's prompts their specs; pass --suite NAME|FILE (e.g. builtin:shapes; "
    "`sdeval suites list` shows them)"
)


@dataclass
class SpecSource:
    """Specs by prompt id and by prompt text, and the identity of where they came from (for the protocol)."""

    by_id: dict[str, Any] = field(default_factory=dict)  # prompt id -> (Spec, category)
    by_text: dict[str, Any] = field(default_factory=dict)
    identity: dict[str, Any] = field(default_factory=dict)
    suite: Any = None  # the suite itself: its question sets are what `--judge vqa` asks by default

    @classmethod
    def from_suite(cls, suite: Any) -> SpecSource:
        source = cls(identity={k: getattr(suite, k, None) for k in ("id", "version", "sha256")}, suite=suite)
        source.identity["path"] = str(getattr(suite, "path", "") or "") or None
        for prompt in suite.prompts:
            spec = getattr(prompt, "spec", None)
            if spec is None:
                continue
            category = prompt.category or spec.tag
            source.by_id[prompt.id] = (spec, category)
            source.by_text.setdefault(prompt.prompt, (spec, category))
        return source


def suite_argument(suite_arg: str | None, run_source: dict[str, Any]) -> str | None:
    """The suite named by --suite, else the one a generation run records (None when neither is there)."""
    if suite_arg is not None:
        return suite_arg
    suite = (run_source.get("run") or {}).get("suite") or {}
    return suite.get("path") or suite.get("id") or None


def load_spec_source(suite_arg: str | None, run_source: dict[str, Any]) -> SpecSource | None:
    """The specs of the suite `suite_argument` names (None when there is none)."""
    suite_arg = suite_argument(suite_arg, run_source)
    return None if suite_arg is None else SpecSource.from_suite(load_suite(suite_arg))


def vqa_questions(judge: str, questions: str | None, specs: SpecSource | None) -> Any:
    """What `--judge vqa` asks besides the specs: `--questions` naming one of the suite's question sets, else a
    TIFA/DSG file (its path); without `--questions`, the suite's default set (`default_question_set`: the first its
    header declares that holds questions). None: the specs' own questions. Other judges ask no questions."""
    suite = specs.suite if specs is not None else None
    if judge != "vqa" or suite is None:
        return questions
    sets = suite.question_sets
    if questions is not None:
        if Path(questions).is_file():
            return questions  # a file of that name wins, as with suites
        if questions in sets:
            return suite_questions(suite, questions)
        if sets:
            raise SdevalError(f"--questions {questions}: no such file, nor a question set of suite {suite.id} "
                              f"(its sets: {', '.join(sets)})")  # fmt: skip
        return questions  # the file's loader names what is wrong with it
    default = default_question_set(suite)
    return suite_questions(suite, default) if default is not None else None


def question_category(questions: Any, prompt_id: str | None, text: str | None, found: Any) -> str | None:
    """The category of an image judged by `questions` (it holds the image's prompt): a suite's set names each row's;
    a file's questions take the spec's (`found`: (spec, category), or None), else the questions' format."""
    return questions.category(prompt_id, text) or (found[1] if found is not None else questions.format)


@dataclass
class Judged:
    """Per scored image (in FolderFeatures order): judgement, category, prompt id, spec, or a missing reason."""

    judgements: list[Any]
    categories: list[str | None]
    prompt_ids: list[str | None]
    specs: list[dict[str, Any] | None]
    missing: dict[int, str]

    def for_cell(self, members: list[int], paths: list[str], protocol: dict[str, Any]) -> JudgedData:
        """The judgements of one cell's images (`members`: their positions among all scored images)."""
        return JudgedData(
            judgements=[self.judgements[i] for i in members],
            categories=[self.categories[i] for i in members],
            prompt_ids=[self.prompt_ids[i] for i in members],
            specs=[self.specs[i] for i in members],
            missing=[{"path": paths[i], "reason": self.missing[i]} for i in members if i in self.missing],
            protocol=protocol,
        )


def judge_images(
    root: str | Path,
    paths: list[str],
    records: list[PromptRecord | None] | None,
    prompt_ids: list[str | None],
    specs: SpecSource | None,
    preset: list[Any] | None,
    judge: Any,
    progress: bool = True,
) -> Judged:
    """Judge every image that has a spec. `preset[i]`, when given, is (Spec, category) from the images' own
    layout (GenEval's), which wins over the suite."""
    n = len(paths)
    found: list[Any] = [None] * n
    missing: dict[int, str] = {}
    questions = getattr(judge, "questions", None)  # a VQA judge's TIFA/DSG questions: they win over the spec
    for i in range(n):
        if preset is not None and preset[i] is not None:
            found[i] = preset[i]
            continue
        record = records[i] if records is not None else None
        pid = prompt_ids[i] if prompt_ids[i] is not None else (record.id if record is not None else None)
        if specs is None:
            missing[i] = NO_SPEC_SOURCE
        elif pid is not None and pid in specs.by_id:
            found[i] = specs.by_id[pid]
        elif record is not None and record.prompt in specs.by_text:
            found[i] = specs.by_text[record.prompt]
        else:
            what = f"prompt id {pid!r}" if pid is not None else "no prompt id"
            text = "no prompt text" if record is None else "its prompt text matches no suite prompt"
            missing[i] = f"no spec: {what} is not in the suite, and {text}"
        if questions:
            text = record.prompt if record is not None else None
            asked = questions.lookup(pid, text)
            if asked is not None:
                found[i] = (asked, question_category(questions, pid, text, found[i]))
                missing.pop(i, None)
    judgements: list[Any] = [None] * n
    todo = [i for i in range(n) if found[i] is not None]
    bar = tqdm(todo, desc="judging", unit="img", file=sys.stderr, disable=not progress or not todo, leave=False)
    for i in bar:
        try:
            image = load_rgb(Path(root) / paths[i])
        except ImageDecodeError as err:  # decoded fine in the feature pass; changed on disk since
            missing[i] = f"cannot be read for judging: {err}"
            found[i] = None
            continue
        what = found[i][0]
        judgements[i] = judge.judge_questions(image, what) if isinstance(what, tuple) else judge.judge(image, what)
    bar.close()
    if not todo and specs is not None and not specs.by_id:
        raise SdevalError("the suite has no prompt with a spec: adherence needs specs (see docs/adherence.md)")
    return Judged(
        judgements=judgements,
        categories=[f[1] if f is not None else None for f in found],
        prompt_ids=[
            pid if pid is not None else (record.id if record else None)
            for pid, record in ((prompt_ids[i], records[i] if records else None) for i in range(n))
        ],
        specs=[f[0].to_json() if f is not None and not isinstance(f[0], tuple) else None for f in found],
        missing=missing,
    )


def faithfulness_columns(
    root: str | Path,
    paths: list[str],
    prompt_ids: list[str | None],
    suite_arg: str | None,
    run_source: dict[str, Any],
    embedder: Any,
) -> tuple[dict[str, list[float | None]], dict[int, str]]:
    """Image-to-image faithfulness of each output to its init image (the suite row's `init_image`, joined by
    prompt id): edge-map SSIM and CLIP image-image cosine. Returns the per-image columns and, for images
    without an init image, the reason."""
    from sdeval.metrics.faithfulness import clip_image_cosine, edge_ssim  # scipy: when faithfulness is scored

    run = run_source.get("run") or {}
    suite_arg = suite_argument(suite_arg, run_source)
    folder = Path(run["init_images"]) if run.get("init_images") else None  # the run config's init_images
    inits: dict[str, Path] = {}
    if suite_arg:
        loaded = load_suite(suite_arg, need_init_images=True, init_images=folder)
        inits = {p.id: p.init_image for p in loaded.prompts if p.init_image is not None}
    edge: list[float | None] = [None] * len(paths)
    cosine: list[float | None] = [None] * len(paths)
    missing: dict[int, str] = {}
    for i, rel in enumerate(paths):
        pid = prompt_ids[i]
        if pid is None or pid not in inits:
            missing[i] = "no init image: its prompt id is not a suite row with an init_image (pass --suite)"
            continue
        try:
            output, init = load_rgb(Path(root) / rel), load_rgb(inits[pid])
        except ImageDecodeError as err:
            missing[i] = f"cannot be read: {err}"
            continue
        edge[i] = edge_ssim(init, output)
        if embedder is not None:
            pair = embedder.embed_images([init, output])
            cosine[i] = float(clip_image_cosine(pair[:1], pair[1:])[0])
    return {"init_edge_ssim": edge, "init_clip_cosine": cosine}, missing
