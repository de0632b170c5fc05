"""Recover the prompt from a ComfyUI API graph (the PNG `prompt` chunk) by following the sampler's links."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sdeval.prompts.record import PromptParseError, PromptRecord, check_prompt, optional_seed

# Text inputs of the encode nodes, most specific first: CLIPTextEncode (`text`), SDXL (`text_g`,
# `text_l`), SD3 (`clip_g`, `clip_l`, `t5xxl`), Flux (`clip_l`, `t5xxl`).
_TEXT_KEYS = ("text", "text_g", "t5xxl", "clip_g", "text_l", "clip_l")
# Inputs of string-holding nodes (primitives, text boxes, custom string nodes).
_STRING_KEYS = ("string", "text", "value", "String", "Text", "prompt")
# Inputs through which conditioning passes (ControlNet apply, combine, set-area, guiders).
_CONDITIONING_KEYS = (
    "conditioning",
    "conditioning_to",
    "conditioning_1",
    "conditioning_from",
    "conditioning_2",
)
_SCALAR_KEYS = ("value", "seed", "noise_seed", "int", "number", "float")
_SEED_KEYS = ("seed", "noise_seed")
_MAX_DEPTH = 64


def parse_comfyui_prompt(graph: Any) -> tuple[PromptRecord, list[str]]:
    """Read the prompt of a ComfyUI API-format graph; returns the record and notes about ambiguities.

    The positive prompt is the text reached by following the sampler's `positive` input (or a
    guider's `conditioning`) back to an encode node. Raises PromptParseError if no sampler or text is found.
    """
    if not isinstance(graph, dict) or not graph:
        raise PromptParseError("ComfyUI 'prompt' is not a JSON object of nodes")
    nodes = {str(k): v for k, v in graph.items() if isinstance(v, dict) and isinstance(v.get("inputs"), dict)}
    samplers = _samplers(nodes)
    if not samplers:
        raise PromptParseError("ComfyUI graph has no sampler node with a 'positive' or guider input")
    notes: list[str] = []
    found: list[tuple[str, PromptRecord]] = []
    errors: list[str] = []
    for node_id in samplers:
        try:
            found.append((node_id, _from_sampler(nodes, node_id)))
        except PromptParseError as err:
            errors.append(f"node {node_id}: {err}")
    if not found:
        raise PromptParseError("ComfyUI graph: no sampler leads to prompt text (" + "; ".join(errors) + ")")
    node_id, record = found[0]
    # One graph, one checkpoint loader as a rule; looked up once, not per sampler, to stay linear.
    record = replace(record, checkpoint=_find_input(nodes, ("ckpt_name", "unet_name")))
    others = {r.prompt for _, r in found[1:]} - {record.prompt}
    if others:
        notes.append(f"ComfyUI graph has {len(found)} samplers with different prompts; used node {node_id}")
    return record, notes


def _samplers(nodes: dict[str, dict[str, Any]]) -> list[str]:
    """Sampler-like nodes, in node-id order so the choice is stable (the first pass of a hires-fix graph)."""
    ids = [
        node_id
        for node_id, node in nodes.items()
        if _is_link(node["inputs"].get("positive"))
        or (_is_link(node["inputs"].get("guider")) and _is_link(node["inputs"].get("noise")))
    ]
    # Nodes that merely pass conditioning on (ControlNet apply, CFGGuider) also have a `positive`
    # input; a real sampler is one whose outputs no other node reads as conditioning or guider.
    fed = {
        str(value[0])
        for node in nodes.values()
        for key, value in node["inputs"].items()
        if (key in ("positive", "negative", "guider") or key in _CONDITIONING_KEYS) and _is_link(value)
    }
    ids = [i for i in ids if i not in fed]
    return sorted(ids, key=_node_order)


def _from_sampler(nodes: dict[str, dict[str, Any]], node_id: str) -> PromptRecord:
    inputs = nodes[node_id]["inputs"]
    settings: dict[str, Any] = {"comfyui_sampler_node": node_id}
    seed_source = inputs
    if _is_link(inputs.get("guider")):  # SamplerCustomAdvanced: guider holds the conditioning
        guider = _node(nodes, inputs["guider"])
        positive_link = guider["inputs"].get("positive", guider["inputs"].get("conditioning"))
        negative_link = guider["inputs"].get("negative")
        seed_source = _node(nodes, inputs["noise"])["inputs"]
        if "cfg" in guider["inputs"]:
            settings["cfg"] = _scalar(nodes, guider["inputs"]["cfg"])
    else:
        positive_link = inputs.get("positive")
        negative_link = inputs.get("negative")
    if positive_link is None:
        raise PromptParseError("sampler has no positive conditioning")
    text_parts: dict[str, str] = {}
    prompt = check_prompt(_conditioning_text(nodes, positive_link, 0, set(), text_parts))
    negative = None
    if negative_link is not None:
        try:
            negative = check_prompt(_conditioning_text(nodes, negative_link, 0, set(), {}), "negative prompt")
        except PromptParseError:
            negative = None  # e.g. ConditioningZeroOut: no negative text, which is fine
    if len(set(text_parts.values())) > 1:
        settings.update({f"comfyui_{key}": value for key, value in text_parts.items()})
    seed = None
    for key in _SEED_KEYS:
        if key in seed_source:
            try:
                seed = optional_seed(_scalar(nodes, seed_source[key]))
            except PromptParseError:
                seed = None
            break
    for key in ("steps", "cfg", "sampler_name", "scheduler", "denoise"):
        if key in inputs:
            value = _scalar(nodes, inputs[key])
            if value is not None:
                settings[key] = value
    return PromptRecord(
        prompt=prompt,
        source="comfyui",
        negative_prompt=negative or None,
        seed=seed,
        settings=settings,
    )


def _conditioning_text(
    nodes: dict[str, dict[str, Any]], link: Any, depth: int, seen: set[str], parts: dict[str, str]
) -> str:
    """Follow a conditioning link to the encode node that made it and return its text."""
    if depth > _MAX_DEPTH:
        raise PromptParseError("conditioning chain too deep")
    if not _is_link(link):
        raise PromptParseError("conditioning input is not a link")
    node_id, output = str(link[0]), link[1]
    if node_id in seen:
        raise PromptParseError(f"cycle through node {node_id}")
    seen = seen | {node_id}
    node = _node(nodes, link)
    inputs = node["inputs"]
    present = [key for key in _TEXT_KEYS if key in inputs]
    if present:
        texts = {key: _string(nodes, inputs[key], depth + 1) for key in present}
        parts.update(texts)
        # SDXL/SD3/Flux encoders take one text per text encoder; they are usually the same prompt.
        # The first non-empty one in _TEXT_KEYS order (the main encoder) is the prompt.
        return next((texts[key] for key in present if texts[key].strip()), texts[present[0]])
    # ControlNetApplyAdvanced and kin pass (positive, negative) through as outputs (0, 1).
    if "positive" in inputs and "negative" in inputs:
        key = "negative" if output == 1 else "positive"
        return _conditioning_text(nodes, inputs[key], depth + 1, seen, parts)
    for key in _CONDITIONING_KEYS:
        if _is_link(inputs.get(key)):
            return _conditioning_text(nodes, inputs[key], depth + 1, seen, parts)
    raise PromptParseError(f"node {node_id} ({node.get('class_type', '?')}) holds no prompt text")


def _string(nodes: dict[str, dict[str, Any]], value: Any, depth: int) -> str:
    """A text input: a literal, or a link to a primitive/string node (followed, bounded)."""
    for _ in range(_MAX_DEPTH):
        if isinstance(value, str):
            return value
        if not _is_link(value):
            raise PromptParseError(f"text input is {type(value).__name__}, not a string")
        inputs = _node(nodes, value)["inputs"]
        key = next((k for k in _STRING_KEYS if k in inputs), None)
        if key is None:
            raise PromptParseError(f"text comes from node {value[0]}, which holds no string")
        value = inputs[key]
    raise PromptParseError("string chain too deep")


def _scalar(nodes: dict[str, dict[str, Any]], value: Any) -> Any:
    """A number or string input, following links to primitive nodes; None when it cannot be resolved."""
    for _ in range(_MAX_DEPTH):
        if not _is_link(value):
            return value if isinstance(value, (int, float, str)) and not isinstance(value, bool) else None
        node = nodes.get(str(value[0]))
        if node is None:
            return None
        inputs = node["inputs"]
        key = next((k for k in _SCALAR_KEYS if k in inputs), None)
        if key is None:
            return None
        value = inputs[key]
    return None


def _find_input(nodes: dict[str, dict[str, Any]], keys: tuple[str, ...]) -> str | None:
    for node_id in sorted(nodes, key=_node_order):
        for key in keys:
            value = nodes[node_id]["inputs"].get(key)
            if isinstance(value, str) and value:
                return value
    return None


def _node(nodes: dict[str, dict[str, Any]], link: list[Any]) -> dict[str, Any]:
    node = nodes.get(str(link[0]))
    if node is None:
        raise PromptParseError(f"link to missing node {link[0]}")
    return node


def _is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], (str, int))
        and not isinstance(value[0], bool)
        and isinstance(value[1], int)
    )


def _node_order(node_id: str) -> tuple[int, int | str]:
    # Numeric ids sort numerically; group-node ids like "12:3" sort after, as text.
    return (0, int(node_id)) if node_id.isdigit() else (1, node_id)
