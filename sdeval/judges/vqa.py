"""The VQA judge: a vision-language model answers yes/no questions about the image; an image passes when every
question holds, and scores the share that do (TIFA, Hu et al. 2023; DSG, Cho et al. 2024).

Questions come from the GenEval spec (one per fact, `judges/questions.py`) or from a TIFA / DSG question file joined
to the image by prompt id or text. The model is anything with `p_yes(image, questions)` (a `YesNoModel`: tests use an
oracle); two transformers families are built in, loaded by hub id or local folder:
- `BlipForQuestionAnswering`: each candidate answer is scored by BLIP's answer decoder, started from its [DEC] token
  and ended by [SEP], as BLIP's own `rank_answer` does; P(yes) = p(yes) / (p(yes) + p(no)).
- any other image-text-to-text model (`AutoModelForImageTextToText`: LLaVA, PaliGemma, BLIP-2, Idefics, Qwen-VL...):
  the question in a prompt (the processor's chat template when it has one, else "Question: {question} Answer:"),
  then the next-token probabilities of "yes"/"Yes" against "no"/"No", normalised over the two.
Multiple-choice questions (TIFA) take the most likely choice by the sum of its tokens' log-probabilities.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from sdeval.core.errors import SdevalError, first_line
from sdeval.core.hub import load_pretrained
from sdeval.judges.base import FactVerdict, Judgement
from sdeval.judges.detector import _name_of, _quiet_transformers
from sdeval.judges.questions import (
    BINARY,
    Answered,
    Question,
    QuestionSet,
    QuestionTemplates,
    load_questions,
    score_answers,
    spec_questions,
)
from sdeval.suites.spec import Spec

#: The model `--judge vqa` loads when --vqa-model is not given (BLIP ViT-B, VQAv2-finetuned).
DEFAULT_VQA_MODEL = "Salesforce/blip-vqa-base"
#: A yes/no question is answered "yes" when P(yes) >= this.
DEFAULT_THRESHOLD = 0.5
#: Prompt of a generic model without a chat template; {image} marks where the processor's image token goes.
PLAIN_TEMPLATE = "Question: {question} Answer:"
#: The user message of a generic model with a chat template.
CHAT_TEMPLATE = "{question}"
#: The words that count as each answer; variants that tokenize alike are counted once.
YES_WORDS = ("yes", "Yes")
NO_WORDS = ("no", "No")
DTYPES = ("float32", "bfloat16", "float16")


@runtime_checkable
class YesNoModel(Protocol):
    """What the judge needs from a model: P(yes) for each question about one HxWx3 uint8 image."""

    def p_yes(self, image: np.ndarray, questions: Sequence[str]) -> list[float]: ...


@runtime_checkable
class ChoiceModel(Protocol):
    """A model that can also pick among answers (TIFA's multiple-choice questions): probability per choice."""

    def choice_probs(self, image: np.ndarray, question: str, choices: Sequence[str]) -> list[float]: ...


class _AnswerScorer:
    """P(yes) and choice probabilities from one primitive: the log-likelihood of an answer given image + question."""

    def answer_logprobs(
        self, image: np.ndarray, questions: Sequence[str], answers: Sequence[str], dedupe: bool
    ) -> np.ndarray:
        """[len(questions), len(answers)] log-likelihoods; with `dedupe`, an answer that tokenizes as an earlier
        one gets -inf (so case variants like "Yes"/"yes" under an uncased tokenizer count once)."""
        raise NotImplementedError

    def p_yes(self, image: np.ndarray, questions: Sequence[str]) -> list[float]:
        if not questions:
            return []
        logp = self.answer_logprobs(image, questions, YES_WORDS + NO_WORDS, dedupe=True)
        yes = np.logaddexp.reduce(logp[:, : len(YES_WORDS)], axis=1)
        no = np.logaddexp.reduce(logp[:, len(YES_WORDS) :], axis=1)
        return [float(p) for p in 1.0 / (1.0 + np.exp(no - yes))]

    def choice_probs(self, image: np.ndarray, question: str, choices: Sequence[str]) -> list[float]:
        logp = self.answer_logprobs(image, [question], list(choices), dedupe=False)[0]
        probs = np.exp(logp - logp.max())
        return [float(p) for p in probs / probs.sum()]


class BlipVqaModel(_AnswerScorer):
    """BlipForQuestionAnswering: answers scored by the answer decoder over the question's embedding."""

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        source: str,
        weights_sha256: str,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> None:
        import torch  # torch: when a model is built, not with the module (`sdeval models` reads it)

        self.model = model.to(device).eval()
        self.processor = processor
        self.source = source
        self.weights_sha256 = weights_sha256
        self.device = device
        self.dtype = dtype
        self._torch_dtype = getattr(torch, dtype)
        text_config = model.config.text_config
        self.bos_token_id = int(text_config.bos_token_id)  # BLIP's [DEC]: where generate() starts the answer
        self.sep_token_id = int(text_config.sep_token_id)  # where generate() ends it

    def _answer_ids(self, answer: str) -> tuple[int, ...]:
        ids = self.processor.tokenizer(answer, add_special_tokens=False)["input_ids"]
        if not ids:
            raise SdevalError(f"VQA model {self.source}: the answer {answer!r} has no tokens")
        return (*ids, self.sep_token_id)

    def answer_logprobs(
        self, image: np.ndarray, questions: Sequence[str], answers: Sequence[str], dedupe: bool
    ) -> np.ndarray:
        import torch  # torch: when a model runs
        from PIL import Image  # PIL: when an image is asked about

        out = np.full((len(questions), len(answers)), -np.inf)
        if not len(questions):
            return out
        answer_ids = [self._answer_ids(a) for a in answers]
        keep = [j for j, ids in enumerate(answer_ids) if not dedupe or ids not in answer_ids[:j]]
        pixels = self.processor.image_processor(Image.fromarray(image), return_tensors="pt")["pixel_values"]
        tokens = [self.processor.tokenizer(q)["input_ids"] for q in questions]
        # Questions of one token length go together, unpadded: BLIP's text layers drop the cross-attention mask
        # (in transformers 5.24 BlipTextAttention hands it on as `attention_mask`, which cross-attention ignores), so
        # the answer decoder would read a padded question's padding. Unpadded, each question is scored as generate()
        # scores it alone.
        groups: dict[int, list[int]] = {}
        for i, ids in enumerate(tokens):
            groups.setdefault(len(ids), []).append(i)
        with torch.inference_mode():
            image_embeds = self.model.vision_model(pixel_values=pixels.to(self.device, self._torch_dtype))[0]
            for members in groups.values():
                ids = torch.tensor([tokens[i] for i in members], device=self.device)
                embeds = image_embeds.expand(len(members), -1, -1)
                question_embeds = self.model.text_encoder(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    encoder_hidden_states=embeds,
                    encoder_attention_mask=torch.ones(embeds.shape[:-1], dtype=torch.long, device=self.device),
                )[0]
                for j in keep:
                    decoder_ids = torch.tensor([[self.bos_token_id, *answer_ids[j]]], device=self.device)
                    decoder_ids = decoder_ids.expand(len(members), -1)
                    logits = self.model.text_decoder(
                        input_ids=decoder_ids, encoder_hidden_states=question_embeds
                    ).logits
                    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
                    picked = logp.gather(-1, decoder_ids[:, 1:, None]).squeeze(-1).sum(-1)
                    out[members, j] = picked.cpu().numpy()
        return out

    def protocol(self) -> dict[str, Any]:
        import transformers  # transformers: its version, loaded with the model already

        return {
            "model": self.source,
            "model_type": "blip",
            "class": type(self.model).__name__,
            "weights_sha256": self.weights_sha256,
            "p_yes": "answer decoder from [DEC] through [SEP]: p(yes) / (p(yes) + p(no)), as BLIP's rank_answer",
            "answers": {"yes": list(YES_WORDS), "no": list(NO_WORDS), "variants": "tokenized alike count once"},
            "choices": "sum of the choice's token log-probabilities through [SEP], softmax over the choices",
            "image_size": _image_size(self.processor),
            "dtype": self.dtype,
            "transformers_version": transformers.__version__,
        }


class GenerativeVqaModel(_AnswerScorer):
    """An image-text-to-text model: the answer's probability after a prompt that asks the question."""

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        source: str,
        weights_sha256: str,
        template: str | None = None,
        chat: bool | None = None,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> None:
        import torch  # torch: when a model is built, not with the module (`sdeval models` reads it)

        self.model = model.to(device).eval()
        self.processor = processor
        self.source = source
        self.weights_sha256 = weights_sha256
        self.chat = bool(getattr(processor, "chat_template", None)) if chat is None else chat
        if self.chat and not getattr(processor, "chat_template", None):
            raise SdevalError(f"VQA model {source}: its processor has no chat template; use a plain --vqa-template")
        self.template = template or (CHAT_TEMPLATE if self.chat else PLAIN_TEMPLATE)
        self.device = device
        self.dtype = dtype
        self._torch_dtype = getattr(torch, dtype)
        self.prompt("probe")  # a bad template fails here, once, not on the first image

    def prompt(self, question: str) -> str:
        """The text the model reads before the answer."""
        if "{question}" not in self.template:
            raise SdevalError(f"--vqa-template {self.template!r}: must contain {{question}}")
        image_token = getattr(self.processor, "image_token", None)
        try:
            text = self.template.format(question=question, image=str(image_token or ""))
        except (KeyError, IndexError, ValueError) as err:
            raise SdevalError(
                f"--vqa-template {self.template!r}: only {{question}} and {{image}} may be filled in ({err})"
            ) from None
        if not self.chat:
            return text
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def _inputs(self, image: Any, text: str) -> dict[str, Any]:
        try:
            inputs = self.processor(images=image, text=text, return_tensors="pt")
        except ValueError as err:
            hint = "" if self.chat else "; put {image} in --vqa-template where the image goes"
            message = f"VQA model {self.source}: the processor refused the prompt: {first_line(err)}{hint}"
            raise SdevalError(message) from None
        return {
            k: v.to(self.device, self._torch_dtype) if v.is_floating_point() else v.to(self.device)
            for k, v in inputs.items()
        }

    def answer_logprobs(
        self, image: np.ndarray, questions: Sequence[str], answers: Sequence[str], dedupe: bool
    ) -> np.ndarray:
        import torch  # torch: when a model runs
        from PIL import Image  # PIL: when an image is asked about

        pil = Image.fromarray(image)
        out = np.full((len(questions), len(answers)), -np.inf)
        with torch.inference_mode():
            for i, question in enumerate(questions):
                prompt = self.prompt(question)
                base = self._inputs(pil, prompt)
                prompt_ids = base["input_ids"][0]
                n = prompt_ids.shape[0]
                last = torch.log_softmax(self.model(**base).logits[0, -1].float(), dim=-1)
                space = "" if prompt[-1:].isspace() else " "
                seen: set[tuple[int, ...]] = set()
                for j, answer in enumerate(answers):
                    full = self._inputs(pil, prompt + space + answer)
                    ids = full["input_ids"][0]
                    if ids.shape[0] <= n or not torch.equal(ids[:n], prompt_ids):
                        raise SdevalError(
                            f"VQA model {self.source}: the prompt's tokens change when {answer!r} follows it, so the "
                            "answer cannot be scored; try another --vqa-template"
                        )
                    tail = tuple(ids[n:].tolist())
                    if dedupe and tail in seen:
                        continue
                    seen.add(tail)
                    if len(tail) == 1:  # the next-token probability
                        out[i, j] = float(last[tail[0]])
                        continue
                    logits = self.model(**full).logits[0, n - 1 : -1].float()
                    logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[n:, None]).sum()
                    out[i, j] = float(logp)
        return out

    def protocol(self) -> dict[str, Any]:
        import transformers  # transformers: its version, loaded with the model already

        chat_template = getattr(self.processor, "chat_template", None) if self.chat else None
        return {
            "model": self.source,
            "model_type": getattr(self.model.config, "model_type", None),
            "class": type(self.model).__name__,
            "weights_sha256": self.weights_sha256,
            "prompt": "chat template" if self.chat else "plain",
            "template": self.template,
            "chat_template_sha256": hashlib.sha256(str(chat_template).encode()).hexdigest() if chat_template else None,
            "p_yes": "next-token probabilities of the yes words against the no words, normalised over the two",
            "answers": {"yes": list(YES_WORDS), "no": list(NO_WORDS), "variants": "tokenized alike count once"},
            "choices": "sum of the choice's token log-probabilities after the prompt, softmax over the choices",
            "image_size": _image_size(self.processor),
            "dtype": self.dtype,
            "transformers_version": transformers.__version__,
        }


def load_vqa_model(
    model: str = DEFAULT_VQA_MODEL,
    *,
    template: str | None = None,
    chat: bool | None = None,
    device: str = "cpu",
    dtype: str = "float32",
) -> BlipVqaModel | GenerativeVqaModel:
    """A VQA model from a local folder (save_pretrained layout) or a hub id: BlipForQuestionAnswering by its
    config's architectures, else any image-text-to-text model. `template`/`chat` apply to the latter only."""
    if dtype not in DTYPES:
        raise SdevalError(f"--vqa-dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    _quiet_transformers()
    load = partial(_load_parts, model, dtype)
    (network, processor, is_blip), source = load_pretrained(model, load, option="--vqa-model", what="VQA model")
    from sdeval.features.clip import state_dict_sha256  # torch and open_clip: when a model loads

    sha = state_dict_sha256(network)
    if is_blip:
        if template is not None or chat is not None:
            raise SdevalError(f"--vqa-model {model}: BLIP VQA reads the bare question; --vqa-template does not apply")
        return BlipVqaModel(network, processor, source=source, weights_sha256=sha, device=device, dtype=dtype)
    return GenerativeVqaModel(
        network, processor, source=source, weights_sha256=sha, template=template, chat=chat, device=device, dtype=dtype
    )


def _load_parts(model: str, dtype: str, location: str, local_files_only: bool) -> tuple[Any, Any, bool]:
    """(model, processor, is BLIP VQA); OSError when files are missing (for the offline check), else SdevalError."""
    import torch  # torch and transformers: when the model loads
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor, BlipForQuestionAnswering
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    try:
        config = AutoConfig.from_pretrained(location, local_files_only=local_files_only)
    except ValueError as err:
        raise SdevalError(f"--vqa-model {model}: {first_line(err)}") from err
    model_type = getattr(config, "model_type", "")
    is_blip = "BlipForQuestionAnswering" in (getattr(config, "architectures", None) or [])
    if not is_blip and model_type not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        raise SdevalError(
            f"--vqa-model {model}: a {model_type!r} model; VQA needs BlipForQuestionAnswering or an "
            "image-text-to-text model (AutoModelForImageTextToText)"
        )
    if getattr(config, "is_encoder_decoder", False) or getattr(config.get_text_config(), "is_encoder_decoder", False):
        raise SdevalError(f"--vqa-model {model}: encoder-decoder language models are not supported; use a decoder-only")
    cls = BlipForQuestionAnswering if is_blip else AutoModelForImageTextToText
    try:
        # With output_loading_info, a (model, info) pair; transformers annotates only the model.
        network, info = cls.from_pretrained(  # pyright: ignore[reportGeneralTypeIssues]
            location, local_files_only=local_files_only, dtype=getattr(torch, dtype), output_loading_info=True
        )
        processor = AutoProcessor.from_pretrained(location, local_files_only=local_files_only)
    except ValueError as err:
        raise SdevalError(f"--vqa-model {model}: {first_line(err)}") from err
    missing = sorted(info.get("missing_keys") or [])
    if missing:  # transformers would fill them with random weights and only warn
        raise SdevalError(
            f"--vqa-model {model}: its weights lack {len(missing)} parameters of {cls.__name__} (e.g. {missing[0]}); "
            "is it a checkpoint of another task?"
        )
    return network, processor, is_blip


def _image_size(processor: Any) -> Any:
    size = getattr(getattr(processor, "image_processor", None), "size", None)
    return dict(size) if size is not None else None


# -- the judge ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VqaJudgement(Judgement):
    """A judgement with the VQA score (share of questions that hold, after DSG's dependency rule) and the answers."""

    score: float = 0.0
    answers: tuple[Answered, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        out["score"] = self.score
        out["questions"] = [a.to_json() for a in self.answers]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any], facts: tuple[FactVerdict, ...]) -> VqaJudgement:
        """Back from `to_json` (a part or results file), with its answers: what the benchmarks' own rules read.
        `facts`: the judgement's verdicts, one per question, which hold each question's kind and label."""
        questions = [
            Question(
                str(q["qid"]),
                q["question"],
                q["answer"],
                tuple(q.get("choices") or BINARY),
                tuple(q.get("parents") or ()),
                kind=fact.kind,
                label=fact.fact,
            )
            for q, fact in zip(data["questions"], facts, strict=True)
        ]
        by_qid = {q.qid: q for q in questions}
        answers = []
        for q, raw in zip(questions, data["questions"], strict=True):
            probs = (raw["p_yes"], 1.0 - raw["p_yes"]) if q.binary else tuple(raw["probs"][c] for c in q.choices)
            voided = tuple(by_qid[p] for p in raw.get("voided_by") or ())
            said = raw["said"]
            answers.append(Answered(q, tuple(probs), said, said == q.answer, bool(raw["passed"]), voided))
        return cls(passed=bool(data["passed"]), facts=facts, score=float(data["score"]), answers=tuple(answers))


class VqaJudge:
    """Asks a YesNoModel the spec's questions (or a question file's) and applies DSG's rule; see the module doc."""

    name = "vqa"

    def __init__(
        self,
        model: YesNoModel,
        threshold: float = DEFAULT_THRESHOLD,
        templates: QuestionTemplates | None = None,
        questions: QuestionSet | None = None,
    ) -> None:
        self.model = model
        self.threshold = _checked_threshold(threshold)
        self.templates = templates or QuestionTemplates()
        self.questions = questions

    @classmethod
    def load(
        cls,
        model: str = DEFAULT_VQA_MODEL,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        template: str | None = None,
        questions: str | Path | QuestionSet | None = None,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> VqaJudge:
        """Load the model (hub id or local folder) and, when given, the TIFA/DSG question file."""
        _checked_threshold(threshold)  # before anything loads
        if questions is not None and not isinstance(questions, QuestionSet):
            questions = load_questions(questions)  # before the model: a bad file fails fast
        network = load_vqa_model(model, template=template, device=device, dtype=dtype)
        return cls(network, threshold=threshold, questions=questions)

    def judge(self, image: np.ndarray, spec: Spec) -> VqaJudgement:
        """The spec's facts, one question each (`questions.spec_questions`); reported in `spec_facts` order."""
        return self.judge_questions(image, spec_questions(spec, self.templates))

    def judge_prompt(
        self, image: np.ndarray, prompt_id: str | None, prompt_text: str | None, spec: Spec | None = None
    ) -> VqaJudgement | None:
        """The question file's questions for this prompt (by id, else text), else the spec's; None when neither."""
        found = self.questions.lookup(prompt_id, prompt_text) if self.questions is not None else None
        if found is not None:
            return self.judge_questions(image, found)
        return self.judge(image, spec) if spec is not None else None

    def judge_questions(self, image: np.ndarray, questions: Sequence[Question]) -> VqaJudgement:
        """Ask every question, score with DSG's rule: one FactVerdict per question, in order."""
        answers = self.ask(image, questions)
        facts = tuple(
            FactVerdict(
                kind=a.question.kind, fact=a.question.label or a.question.text, passed=a.passed, reason=a.reason()
            )
            for a in answers
        )
        score = sum(a.passed for a in answers) / len(answers) if answers else 0.0
        passed = bool(answers) and all(a.passed for a in answers)
        return VqaJudgement(passed=passed, facts=facts, score=score, answers=tuple(answers))

    def ask(self, image: np.ndarray, questions: Sequence[Question]) -> list[Answered]:
        """The model's answers, scored: yes/no questions in one p_yes call, multiple choice one by one."""
        _check_image(image)
        binary = [q for q in questions if q.binary]
        p_yes = self.model.p_yes(image, [q.text for q in binary]) if binary else []
        if len(p_yes) != len(binary):
            raise RuntimeError(f"{_name_of(self.model)} returned {len(p_yes)} answers for {len(binary)} questions")
        yes = iter(p_yes)
        probs: list[Sequence[float]] = []
        for q in questions:
            if q.binary:
                p = float(next(yes))
                probs.append((p, 1.0 - p))
                continue
            if not isinstance(self.model, ChoiceModel):
                raise SdevalError(
                    f"question {q.text!r} is multiple choice ({', '.join(q.choices)}), and the VQA model "
                    f"{_name_of(self.model)} answers yes/no only"
                )
            probs.append(self.model.choice_probs(image, q.text, q.choices))
        return score_answers(questions, probs, self.threshold)

    def protocol(self) -> dict[str, Any]:
        model_protocol = getattr(self.model, "protocol", None)
        return {
            "judge": self.name,
            "model": model_protocol() if callable(model_protocol) else {"model": _name_of(self.model)},
            "threshold": self.threshold,
            "rules": (
                "yes/no: answered yes when P(yes) >= threshold; multiple choice: the most probable choice; a question "
                "holds when answered as expected, and scores 0 when a parent did not (DSG calc_vqa_score); score = "
                "mean over questions, passed = all hold"
            ),
            "spec_questions": {
                "templates": self.templates.to_json(),
                "dependencies": "colour on presence; position on both objects' presence and colour (GenEval matching)",
            },
            "questions": self.questions.identity() if self.questions is not None else None,
        }


def _checked_threshold(threshold: Any) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise SdevalError(f"--vqa-threshold must be a number in [0, 1], got {threshold!r}")
    return float(threshold)


def _check_image(image: Any) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"expected an HxWx3 uint8 RGB array, got {got}")


def build(options: dict[str, Any], device: str) -> VqaJudge:
    """`--judge vqa` (sdeval.judges.registry): build_judge's options -> a loaded VQA judge."""
    threshold = options.get("vqa_threshold")
    return VqaJudge.load(
        options.get("vqa_model") or DEFAULT_VQA_MODEL,
        threshold=DEFAULT_THRESHOLD if threshold is None else threshold,
        template=options.get("vqa_template"),
        questions=options.get("questions"),
        device=device,
        dtype=options.get("vqa_dtype") or "float32",
    )
