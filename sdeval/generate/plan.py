"""The work plan: every image to make (checkpoint x setting x prompt x seed), its seed, its file, its shard.

Everything here is a pure function of the config and the suite, so every process of a multi-process run
computes the same plan and takes a disjoint, deterministic share of it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from sdeval.core.errors import ConfigError
from sdeval.core.version import __version__
from sdeval.generate.config import CheckpointSpec, GenerateConfig, Setting
from sdeval.suites.load import Prompt, Suite, SuiteIdentity

# Seeds land in [0, 2**32) so that every common front end (A1111, ComfyUI, plain diffusers) accepts them.
_SEED_SPACE = 2**32


def derive_seed(base_seed: int, prompt_id: str, seed_index: int, attempt: int = 0) -> int:
    """Stable seed of one image: sha256 of (base_seed, prompt id, seed index), not Python's salted hash()."""
    tag = f"sdeval-seed/v1/{base_seed}/{prompt_id}/{seed_index}"
    if attempt:
        tag += f"/retry{attempt}"
    return int.from_bytes(hashlib.sha256(tag.encode("utf-8")).digest()[:8], "big") % _SEED_SPACE


def prompt_seeds(config: GenerateConfig, prompt_id: str) -> list[int]:
    """Seeds for one prompt, index by index; an explicit `seeds` list is used as is, for every prompt."""
    if config.seeds is not None:
        return list(config.seeds)
    seeds: list[int] = []
    for index in range(config.seeds_per_prompt):
        attempt, seed = 0, derive_seed(config.base_seed, prompt_id, index)
        # Two indices of one prompt must not share a seed (and a file name); re-draw deterministically.
        while seed in seeds:
            attempt += 1
            seed = derive_seed(config.base_seed, prompt_id, index, attempt)
        seeds.append(seed)
    return seeds


def resolve_dtype(dtype: str, device: str) -> str:
    """`auto` is fp16 on accelerators and fp32 on CPU (where fp16 is slow and bf16 changes numerics)."""
    if dtype != "auto":
        if dtype == "fp16" and device.startswith("cpu"):
            raise ConfigError("settings.dtype: fp16 needs a GPU; use fp32 or bf16 on cpu")
        return dtype
    return "fp32" if device.startswith("cpu") else "fp16"


def _fmt(value: float) -> str:
    return f"{value:g}"


def setting_id(setting: Setting) -> str:
    """Folder-safe, human-readable id of a setting, e.g. `g7.5-s30-ddim-512x512-fp16`."""
    size = "native" if setting.width is None else f"{setting.width}x{setting.height}"
    parts = [f"g{_fmt(setting.guidance_scale)}", f"s{setting.num_inference_steps}", setting.scheduler, size]
    if setting.strength is not None:
        parts.append(f"str{_fmt(setting.strength)}")
    if setting.negative_prompt is not None:
        # The text itself can be long or not file-name safe; a short hash keeps ids distinct and stable.
        parts.append("neg" + hashlib.sha256(setting.negative_prompt.encode("utf-8")).hexdigest()[:8])
    if setting.latents is not None:
        parts.append("lat" + setting.latents.sha256[:8])  # the file's bytes name it, as the metadata does
    parts.append(setting.dtype)
    return "-".join(parts)


@dataclass(frozen=True)
class CheckpointIdentity:
    """Content hashes of a checkpoint and its LoRA (None where unknown, e.g. a hub id)."""

    sha256: str | None
    lora_sha256: str | None = None


@dataclass(frozen=True)
class WorkItem:
    """One image: what to generate and where it goes (file is relative to the output folder)."""

    index: int  # position in the full plan; sharding and ordering key
    checkpoint: CheckpointSpec
    setting: Setting  # dtype resolved
    setting_id: str
    prompt: Prompt
    seed_index: int
    seed: int
    identity: CheckpointIdentity
    suite: SuiteIdentity | None = None  # recorded with the image, never part of its identity (writer.identity)

    @property
    def file(self) -> str:
        return f"{self.checkpoint.name}/{self.setting_id}/{self.prompt.id}__s{self.seed}.png"

    @property
    def negative_prompt(self) -> str | None:
        """A suite row's own negative prompt overrides the setting's (documented in docs/generate.md)."""
        if self.prompt.negative_prompt is not None:
            return self.prompt.negative_prompt
        return self.setting.negative_prompt

    @property
    def batch_key(self) -> tuple[Any, ...]:
        """Items batch together only when one pipeline call can serve them all identically."""
        # None vs "" negative prompts are embedded differently by SDXL (zeros vs encoded ""), so a batch
        # never mixes them: a batch must give each image exactly what a batch of one would.
        return (self.checkpoint.name, self.setting_id, self.negative_prompt is None)


@dataclass(frozen=True)
class Plan:
    items: tuple[WorkItem, ...]
    config: GenerateConfig
    suite: Suite
    device: str
    identities: Mapping[str, CheckpointIdentity]

    def shard(self, rank: int, world_size: int) -> tuple[WorkItem, ...]:
        """Round-robin share of the full plan (not of the pending part: no process needs another's view)."""
        return self.items[rank::world_size]


def build_plan(config: GenerateConfig, suite: Suite, device: str, identities: Mapping[str, CheckpointIdentity]) -> Plan:
    """Expand checkpoints x settings x prompts x seeds into work items, in a fixed order."""
    settings: list[tuple[Setting, str]] = []
    seen: dict[str, Setting] = {}
    for setting in config.settings:
        resolved = replace(setting, dtype=resolve_dtype(setting.dtype, device))
        sid = setting_id(resolved)
        if sid in seen:
            raise ConfigError(
                f"settings: two grid points share the id {sid!r} ({seen[sid]} and {resolved}); "
                "give values that differ in their first 6 significant digits"
            )
        seen[sid] = resolved
        settings.append((resolved, sid))
    seeds = {p.id: prompt_seeds(config, p.id) for p in suite.prompts}
    items: list[WorkItem] = []
    for checkpoint in config.checkpoints:
        for setting, sid in settings:
            for prompt in suite.prompts:
                for seed_index, seed in enumerate(seeds[prompt.id]):
                    items.append(
                        WorkItem(
                            len(items),
                            checkpoint,
                            setting,
                            sid,
                            prompt,
                            seed_index,
                            seed,
                            identities[checkpoint.name],
                            suite.identity,
                        )
                    )
    return Plan(items=tuple(items), config=config, suite=suite, device=device, identities=dict(identities))


def batches(
    items: Iterable[WorkItem], batch_size: int, per_call: frozenset[str] = frozenset()
) -> Iterator[list[WorkItem]]:
    """Group items by batch key (first-seen order) and cut each group into batches of at most batch_size.

    Schedulers named in `per_call` draw noise once per call, so their items go one per batch.
    """
    groups: dict[tuple[Any, ...], list[WorkItem]] = {}
    for item in items:
        groups.setdefault(item.batch_key, []).append(item)
    for group in groups.values():
        size = 1 if group[0].setting.scheduler in per_call else batch_size
        for start in range(0, len(group), size):
            yield group[start : start + size]


def metadata_for(item: WorkItem, pipeline: str, vae_tiling: bool) -> dict[str, Any]:
    """The PNG's `sdeval` metadata (docs/formats.md): everything that determined the pixels."""
    settings = item.setting.to_dict()
    # VAE tiling changes pixels (tile seams), so it is recorded with the settings.
    settings["vae_tiling"] = vae_tiling
    meta: dict[str, Any] = {
        "sdeval_version": __version__,
        "prompt": item.prompt.prompt,
        "negative_prompt": item.negative_prompt,
        "prompt_id": item.prompt.id,
        "category": item.prompt.category,
        "seed": item.seed,
        "seed_index": item.seed_index,
        "checkpoint": item.checkpoint.name,
        "checkpoint_hash": item.identity.sha256,
        "lora": None
        if item.checkpoint.lora is None
        else {"sha256": item.identity.lora_sha256, "scale": item.checkpoint.lora_scale},
        "pipeline": pipeline,
        "init_image_sha256": item.prompt.init_image_sha256,
        "setting_id": item.setting_id,
        "settings": settings,
    }
    # Added only when there is one, so images made before suites had specs keep their identity.
    if item.prompt.spec is not None:
        meta["spec"] = item.prompt.spec.to_json()
    if item.prompt.tags:
        meta["tags"] = list(item.prompt.tags)
    if item.suite is not None:
        meta["suite"] = item.suite.to_json()
    return meta
