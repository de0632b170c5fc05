"""The generation config: frozen dataclasses, loaded from YAML/TOML/JSON and validated key by key."""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdeval.core.configfile import read_config_file
from sdeval.core.devices import DEVICE_NAMES, is_device_name
from sdeval.core.errors import ConfigError
from sdeval.core.suggest import check_keys, did_you_mean
from sdeval.generate.checkpoint import PICKLE_SUFFIXES, CheckpointSpec
from sdeval.generate.latents import LatentsFile, parse_latents
from sdeval.generate.registry import NAMED_PIPELINES
from sdeval.generate.schedulers import DEFAULT_SCHEDULER, SCHEDULERS, missing_dependency
from sdeval.generate.series import expand_series, is_series, needs_base
from sdeval.suites.builtin import resolve_suite_path
from sdeval.suites.load import load_suite

PIPELINES = ("text2image", "image2image")
DTYPES = ("auto", "fp32", "fp16", "bf16")
_DTYPE_ALIASES = {"float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16"}
#: Grid axes in the order they expand (the last varies fastest) and appear in setting ids.
SETTING_KEYS = (
    "guidance_scale",
    "num_inference_steps",
    "scheduler",
    "width",
    "height",
    "negative_prompt",
    "strength",
    "dtype",
)
# Defaults match a plain diffusers call, so an unset key means "what diffusers would do".
SETTING_DEFAULTS: dict[str, Any] = {
    "guidance_scale": 7.5,
    "num_inference_steps": 50,
    "scheduler": DEFAULT_SCHEDULER,
    "width": None,
    "height": None,
    "negative_prompt": None,
    "strength": None,
    "dtype": "auto",
}
DEFAULT_STRENGTH = 0.8
TOP_KEYS = (
    "checkpoints",
    "pipeline",
    "suite",
    "init_images",
    "seeds_per_prompt",
    "seeds",
    "base_seed",
    "settings",
    "batch_size",
    "output_dir",
    "device",
    "compile",
    "channels_last",
    "vae_slicing",
    "vae_tiling",
    "latents",
)
#: A settings key outside the grid's fixed axes: set, it is recorded and named in setting ids; unset, nothing changes.
LATENTS_KEY = "latents"
CHECKPOINT_KEYS = ("name", "path", "lora", "lora_scale", "allow_pickle", "config", "variant", "options", "step")
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class Setting:
    """One point of the settings grid: every knob of a pipeline call that moves the pixels."""

    guidance_scale: float
    num_inference_steps: int
    scheduler: str
    width: int | None
    height: int | None
    negative_prompt: str | None
    strength: float | None
    dtype: str  # as configured ("auto" allowed); the plan resolves it for the device
    #: One initial latent for every prompt (MLPerf's text-to-image protocol); None: drawn from each image's seed.
    latents: LatentsFile | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in SETTING_KEYS}
        if self.latents is not None:  # only when set: the metadata of every other image stays what it was
            out[LATENTS_KEY] = self.latents.record()
        return out


@dataclass(frozen=True)
class GenerateConfig:
    """A validated `sdeval generate` config; paths are absolute (resolved against the config's folder)."""

    checkpoints: tuple[CheckpointSpec, ...]
    pipeline: str
    suite: Path
    init_images: Path | None
    seeds_per_prompt: int
    seeds: tuple[int, ...] | None
    base_seed: int
    settings: tuple[Setting, ...]
    batch_size: int
    output_dir: Path
    device: str
    compile: bool
    channels_last: bool
    vae_slicing: bool
    vae_tiling: bool
    #: The normalized config as canonical JSON (relative paths as written): recorded and hashed.
    normalized_json: str
    #: The suite's own generation rules that filled keys the config leaves unset (docs/generate.md), by key.
    suite_defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.normalized_json.encode("utf-8")).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return json.loads(self.normalized_json)


def load_config(path: str | Path) -> GenerateConfig:
    """Read and validate a .yaml/.yml, .toml or .json config; relative paths are taken from its folder."""
    data = read_config_file(path)
    return parse_config(data, base_dir=Path(path).resolve().parent)


def parse_config(data: Any, base_dir: Path) -> GenerateConfig:
    """Validate a parsed config mapping; every error names the key it is about."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"config: expected a mapping of keys, got {_show(data)}")
    check_keys(data, TOP_KEYS, "")
    for key in ("checkpoints", "suite", "output_dir"):
        if key not in data:
            raise ConfigError(f"{key}: required key is missing")

    pipeline = data.get("pipeline", "text2image")
    if pipeline not in PIPELINES:
        raise ConfigError(f"pipeline: expected one of {', '.join(PIPELINES)}, got {_show(pipeline)}")

    parsed = _parse_checkpoints(data["checkpoints"], base_dir)
    checkpoints = tuple(spec for spec, _ in parsed)
    suite = resolve_suite_path(data["suite"], base_dir)  # a file, or a built-in suite's name (builtin:NAME)
    init_images = None
    if data.get("init_images") is not None:
        if pipeline != "image2image":
            raise ConfigError("init_images: only used by pipeline: image2image")
        init_images = _existing_path(data["init_images"], "init_images", base_dir, want="folder")

    if "seeds" in data and "seeds_per_prompt" in data:
        raise ConfigError("seeds: give either seeds or seeds_per_prompt, not both")
    rules = suite_generation(suite)
    applied: dict[str, Any] = {}
    seeding: Mapping[str, Any] = data
    if "seeds" not in data and "seeds_per_prompt" not in data:
        # The benchmark fixes how many images (and which seeds) where the config does not say.
        seeding = {k: rules[k] for k in ("seeds", "seeds_per_prompt") if k in rules}
        applied.update(seeding)
    seeds: tuple[int, ...] | None = None
    if "seeds" in seeding:
        raw_seeds = seeding["seeds"]
        if not isinstance(raw_seeds, list) or not raw_seeds:
            raise ConfigError(f"seeds: expected a non-empty list of integers, got {_show(raw_seeds)}")
        seeds = tuple(_int(s, f"seeds[{i}]", 0, _MAX_SEED) for i, s in enumerate(raw_seeds))
        if len(set(seeds)) != len(seeds):
            raise ConfigError("seeds: values must be distinct (each names one image per prompt)")
        seeds_per_prompt = len(seeds)
    else:
        seeds_per_prompt = _int(seeding.get("seeds_per_prompt", 1), "seeds_per_prompt", 1)
    base_seed = _int(data.get("base_seed", 0), "base_seed", 0, _MAX_SEED)

    settings_raw = data.get("settings", {})
    if settings_raw is None:
        settings_raw = {}
    if not isinstance(settings_raw, Mapping):
        raise ConfigError(f"settings: expected a mapping, got {_show(settings_raw)}")
    unset = {k: rules[k] for k in ("num_inference_steps", "guidance_scale") if k in rules and k not in settings_raw}
    applied.update(unset)
    axes = _parse_settings(settings_raw, pipeline, unset)
    latents = _parse_latents_axis(data, settings_raw, pipeline, base_dir)
    settings = tuple(
        Setting(**dict(zip(SETTING_KEYS, combo, strict=True)), latents=latent)
        for combo in itertools.product(*(axes[k] for k in SETTING_KEYS))
        for latent in latents
    )

    device = data.get("device", "auto")
    if not is_device_name(device):
        raise ConfigError(f"device: expected {DEVICE_NAMES}, got {_show(device)}")
    output_dir = _path(data["output_dir"], "output_dir", base_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ConfigError(f"output_dir: {output_dir} exists and is not a folder")

    flags = {
        key: _bool(data.get(key, default), key)
        for key, default in (
            ("compile", False),
            ("channels_last", True),
            ("vae_slicing", True),
            ("vae_tiling", False),
        )
    }
    normalized = {
        "checkpoints": [normal for _, normal in parsed],
        "pipeline": pipeline,
        "suite": str(data["suite"]),
        "init_images": None if init_images is None else str(data["init_images"]),
        "seeds_per_prompt": seeds_per_prompt,
        "seeds": None if seeds is None else list(seeds),
        "base_seed": base_seed,
        "settings": {k: list(axes[k]) for k in SETTING_KEYS},
        # Only when set, so the hash of every config without latents stays what it was.
        **({"latents": [f.normal() for f in latents if f is not None]} if latents != (None,) else {}),
        "batch_size": _int(data.get("batch_size", 1), "batch_size", 1),
        "output_dir": str(data["output_dir"]),
        "device": device,
        **flags,
        # Only when a suite's rules filled a key, so the hash of every other config stays what it was.
        **({"suite_defaults": applied} if applied else {}),
    }
    return GenerateConfig(
        checkpoints=checkpoints,
        pipeline=pipeline,
        suite=suite,
        init_images=init_images,
        seeds_per_prompt=seeds_per_prompt,
        seeds=seeds,
        base_seed=base_seed,
        settings=settings,
        batch_size=normalized["batch_size"],
        output_dir=output_dir,
        device=device,
        normalized_json=json.dumps(normalized, sort_keys=True, separators=(",", ":")),
        suite_defaults=applied,
        **flags,
    )


def suite_generation(suite: Path) -> dict[str, Any]:
    """The suite header's `generation` rules (format 2; {} when it has none). A suite that cannot be read gives {}
    here: loading it for generation names its problem, as before."""
    try:
        return dict(load_suite(suite).generation)
    except ConfigError:
        return {}


def suite_defaults_line(config: GenerateConfig) -> str | None:
    """What the suite's rules set, in one line, for generate and bench to say (None: nothing)."""
    if not config.suite_defaults:
        return None
    said = ", ".join(f"{k} {v}" for k, v in config.suite_defaults.items())
    suite = config.to_dict()["suite"]
    return f"suite {suite}: its generation rules where the config sets none: {said} (set a key to override)"


def _parse_checkpoints(raw: Any, base_dir: Path) -> list[tuple[CheckpointSpec, dict[str, Any]]]:
    """Each checkpoint with its normalized record (paths as written, so the config hash does not change when the
    project folder moves); a series entry ({glob: ...}) expands into its checkpoints, ordered by run and step."""
    if is_series(raw):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"checkpoints: expected a non-empty list of {{name, path}} entries, got {_show(raw)}")
    out: list[tuple[CheckpointSpec, dict[str, Any]]] = []
    for i, entry in enumerate(raw):
        where = f"checkpoints[{i}]" if len(raw) > 1 or not is_series(entry) else "checkpoints"
        made = _series(entry, where, base_dir) if is_series(entry) else [_checkpoint(entry, where, base_dir)]
        for spec, normal in made:
            if any(s.name == spec.name for s, _ in out):
                raise ConfigError(f"{where}.name: duplicate checkpoint name {spec.name!r}")
            out.append((spec, normal))
    return out


def _checkpoint(entry: Any, where: str, base_dir: Path) -> tuple[CheckpointSpec, dict[str, Any]]:
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: expected a mapping with name and path, got {_show(entry)}")
    check_keys(entry, CHECKPOINT_KEYS, where + ".")
    for key in ("name", "path"):
        if key not in entry:
            raise ConfigError(f"{where}.{key}: required key is missing")
    name = entry["name"]
    if not isinstance(name, str) or not SAFE_NAME.match(name):
        raise ConfigError(f"{where}.name: expected a folder-safe name (letters, digits, . _ -), got {_show(name)}")
    path = entry["path"]
    if not isinstance(path, str) or not path:
        raise ConfigError(f"{where}.path: expected a folder, file or hub id, got {_show(path)}")
    allow_pickle = _bool(entry.get("allow_pickle", False), f"{where}.allow_pickle")
    kind, location = _resolve_checkpoint(path, f"{where}.path", base_dir)
    if kind == "single_file" and location.lower().endswith(PICKLE_SUFFIXES) and not allow_pickle:
        raise ConfigError(
            f"{where}.path: {Path(location).name} is a pickle checkpoint, which can run code when loaded;"
            " set allow_pickle: true for this checkpoint if you trust it, or convert it to .safetensors"
        )
    lora = None
    if entry.get("lora") is not None:
        lora_path = _existing_path(entry["lora"], f"{where}.lora", base_dir, want="any")
        if lora_path.is_file() and lora_path.suffix.lower() in PICKLE_SUFFIXES and not allow_pickle:
            raise ConfigError(
                f"{where}.lora: {lora_path.name} is a pickle file; set allow_pickle: true if you trust it"
            )
        if importlib.util.find_spec("peft") is None:
            raise ConfigError(f"{where}.lora: loading a LoRA needs the 'peft' package (pip install peft)")
        lora = str(lora_path)
    lora_scale = _number(entry.get("lora_scale", 1.0), f"{where}.lora_scale")
    config = entry.get("config")
    if config is not None:
        if kind != "single_file":
            raise ConfigError(f"{where}.config: only used with a single-file (.safetensors/.ckpt) checkpoint")
        if not isinstance(config, str) or not config:
            raise ConfigError(f"{where}.config: expected a diffusers folder or hub id, got {_show(config)}")
        local = base_dir / config
        if local.exists():
            if not (local / "model_index.json").is_file():
                raise ConfigError(f"{where}.config: {local} is not a diffusers folder (no model_index.json)")
            config = str(local.resolve())
        elif not _HUB_ID.match(config):
            raise ConfigError(f"{where}.config: no such folder: {local}")
    variant = entry.get("variant")
    if variant is not None and not isinstance(variant, str):
        raise ConfigError(f"{where}.variant: expected a string such as 'fp16', got {_show(variant)}")
    step = None if entry.get("step") is None else _int(entry["step"], f"{where}.step", 0)
    options = None
    named = NAMED_PIPELINES.get(location) if kind == "builtin" else None
    if named is not None and named.takes_options:
        options = named.parse_options(entry.get("options"), f"{where}.options")
    elif entry.get("options") is not None:
        takers = [name for name, candidate in NAMED_PIPELINES.items() if candidate.takes_options]
        raise ConfigError(f"{where}.options: only used with path: {' or '.join(takers)}")
    for key in () if named is None else named.unused:
        if entry.get(key) is not None:
            raise ConfigError(f"{where}.{key}: not used by the built-in {location} checkpoint")
    spec = CheckpointSpec(
        name=name,
        path=path,
        kind=kind,
        location=location,
        lora=lora,
        lora_scale=lora_scale,
        allow_pickle=allow_pickle,
        config=config,
        variant=variant,
        options=options,
        step=step,
    )
    normal = {
        "name": name,
        "path": path,
        "lora": entry.get("lora"),
        "lora_scale": lora_scale,
        "allow_pickle": allow_pickle,
        "config": entry.get("config"),
        "variant": variant,
        # Only when set, so the hash of every config without a shapes checkpoint or a step stays what it was.
        **({"options": options.to_json()} if options is not None else {}),
        **({"step": step} if step is not None else {}),
    }
    return spec, normal


def _series(entry: Mapping[str, Any], where: str, base_dir: Path) -> list[tuple[CheckpointSpec, dict[str, Any]]]:
    """The checkpoints of a series entry (sdeval.generate.series), each as a checkpoint of its own."""
    found = expand_series(entry, where, base_dir)
    allow_pickle = _bool(entry.get("allow_pickle", False), f"{where}.allow_pickle")
    lora_scale = _number(entry.get("lora_scale", 1.0), f"{where}.lora_scale")
    variant = entry.get("variant")
    if variant is not None and not isinstance(variant, str):
        raise ConfigError(f"{where}.variant: expected a string such as 'fp16', got {_show(variant)}")
    base_kind, base = None, None
    if needs_base(found):
        if entry.get("base") is None:
            first = next(f for f in found if f.form in ("unet", "lora"))
            raise ConfigError(
                f"{where}.base: required: {first.path.name} holds a {'UNet' if first.form == 'unet' else 'LoRA'}, "
                "to be loaded into the pipeline it was trained from (a diffusers folder or hub id)"
            )
        base_kind, base = _resolve_checkpoint(str(entry["base"]), f"{where}.base", base_dir)
        if base_kind not in ("folder", "hub"):
            raise ConfigError(f"{where}.base: expected a diffusers folder or hub id, got {entry['base']!r}")
    if any(f.form == "lora" for f in found) and importlib.util.find_spec("peft") is None:
        raise ConfigError(f"{where}: loading a LoRA checkpoint needs the 'peft' package (pip install peft)")
    out = []
    for f in found:
        common: dict[str, Any] = {"allow_pickle": allow_pickle, "variant": variant, "step": f.step, "run": f.run}
        if f.form == "unet":
            spec = CheckpointSpec(f.name, str(f.path), "unet", str(f.weights), config=base, **common)
        elif f.form == "lora":
            assert base_kind is not None and base is not None  # needs_base(found) held
            spec = CheckpointSpec(f.name, str(f.path), base_kind, base, lora=str(f.weights), lora_scale=lora_scale,
                                  **common)  # fmt: skip
        else:
            kind = "folder" if f.form == "pipeline" else "single_file"
            spec = CheckpointSpec(f.name, str(f.path), kind, str(f.weights), **common)
        normal = {
            "name": f.name,
            "path": _as_written(f.path, base_dir),
            "series": str(entry["glob"]),
            "step": f.step,
            "run": f.run,
            "form": f.form,
            "weights": _as_written(f.weights, base_dir),
            "base": None if entry.get("base") is None else str(entry["base"]),
            "lora_scale": lora_scale,
            "allow_pickle": allow_pickle,
            "variant": variant,
        }
        out.append((spec, normal))
    return out


def _as_written(path: Path, base_dir: Path) -> str:
    """A path relative to the config's folder where it lies below it (the config hash survives a moved project)."""
    try:
        return path.resolve().relative_to(base_dir.resolve()).as_posix()
    except ValueError:
        return str(path)


def _resolve_checkpoint(path: str, where: str, base_dir: Path) -> tuple[str, str]:
    """Classify a checkpoint path: a named pipeline (tiny model, shapes world, a plugin's), a local folder or file,
    or a hub id."""
    if path in NAMED_PIPELINES:
        return "builtin", path
    local = (base_dir / Path(path).expanduser()).resolve()
    if local.is_dir():
        if not (local / "model_index.json").is_file():
            raise ConfigError(f"{where}: {local} is not a diffusers folder (no model_index.json)")
        return "folder", str(local)
    if local.is_file():
        if local.suffix.lower() == ".safetensors" or local.suffix.lower() in PICKLE_SUFFIXES:
            return "single_file", str(local)
        raise ConfigError(f"{where}: {local.name}: expected .safetensors (or, with allow_pickle, .ckpt/.pt/.pth/.bin)")
    if _HUB_ID.match(path) and not path.lower().endswith((".safetensors", *PICKLE_SUFFIXES)):
        return "hub", path
    raise ConfigError(f"{where}: no such file or folder: {local}")


def _parse_latents_axis(
    data: Mapping[str, Any], settings: Mapping[str, Any], pipeline: str, base_dir: Path
) -> tuple[LatentsFile | None, ...]:
    """The latents axis: `latents:` (every setting) or `settings.latents:` (a file or a list of them); (None,) unset."""
    top, axis = data.get(LATENTS_KEY), settings.get(LATENTS_KEY)
    if top is not None and axis is not None:
        raise ConfigError("latents: give either latents or settings.latents, not both")
    if top is None and axis is None:
        return (None,)
    where = "latents" if top is not None else "settings.latents"
    if pipeline != "text2image":
        raise ConfigError(f"{where}: only used by pipeline: text2image (image2image starts from its init image)")
    raw = top if top is not None else axis
    values = raw if isinstance(raw, list) and where == "settings.latents" else [raw]
    if not values:
        raise ConfigError(f"{where}: expected a file or a non-empty list of files, got []")
    files = tuple(
        parse_latents(v, f"{where}[{i}]" if len(values) > 1 else where, base_dir) for i, v in enumerate(values)
    )
    if len({f.sha256 for f in files}) != len(files):
        raise ConfigError(f"{where}: the list repeats a latent, which would generate the same images twice")
    return files


def _parse_settings(
    raw: Mapping[str, Any], pipeline: str, suite_defaults: Mapping[str, Any] | None = None
) -> dict[str, tuple[Any, ...]]:
    check_keys(raw, (*SETTING_KEYS, LATENTS_KEY), "settings.")  # latents: its own axis (_parse_latents_axis)
    axes: dict[str, tuple[Any, ...]] = {}
    for key in SETTING_KEYS:
        where = f"settings.{key}"
        if key not in raw:
            default = (suite_defaults or {}).get(key, SETTING_DEFAULTS[key])
            if key == "strength" and pipeline == "image2image":
                default = DEFAULT_STRENGTH
            axes[key] = (default,)
            continue
        value = raw[key]
        values = value if isinstance(value, list) else [value]
        if not values:
            raise ConfigError(f"{where}: expected a value or a non-empty list, got []")
        checked = tuple(_setting_value(key, v, where, isinstance(value, list)) for v in values)
        if len(set(checked)) != len(checked):
            raise ConfigError(f"{where}: the list repeats a value, which would generate the same images twice")
        axes[key] = checked
    if (raw.get("width") is None) != (raw.get("height") is None):
        raise ConfigError("settings.width: set width and height together (or neither, for the model's native size)")
    if pipeline == "text2image" and raw.get("strength") is not None:
        raise ConfigError("settings.strength: only used by pipeline: image2image")
    if pipeline == "image2image":
        for strength, steps in itertools.product(axes["strength"], axes["num_inference_steps"]):
            if int(steps * strength) < 1:
                raise ConfigError(
                    f"settings.strength: {strength} x {steps} steps leaves no denoising step; raise either"
                )
    return axes


def _setting_value(key: str, value: Any, where: str, in_list: bool) -> Any:
    plural = " or a list of them" if not in_list else ""
    if key == "guidance_scale":
        if not _is_number(value):
            raise ConfigError(f"{where}: expected a number or a list of numbers, got {_show(value)}")
        if value < 0:
            raise ConfigError(f"{where}: expected a number >= 0, got {value!r}")
        return float(value)
    if key == "num_inference_steps":
        if not _is_int(value) or value < 1:
            raise ConfigError(f"{where}: expected an integer >= 1{plural}, got {_show(value)}")
        return int(value)
    if key == "scheduler":
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a scheduler name{plural}, got {_show(value)}")
        if value != DEFAULT_SCHEDULER and value not in SCHEDULERS:
            raise ConfigError(
                f"{where}: unknown scheduler {value!r}{did_you_mean(value, SCHEDULERS)}; "
                f"known: {DEFAULT_SCHEDULER}, {', '.join(SCHEDULERS)}"
            )
        if (missing := missing_dependency(value)) is not None:
            raise ConfigError(f"{where}: scheduler {value!r} needs the '{missing}' package (pip install {missing})")
        return value
    if key in ("width", "height"):
        if value is None:
            return None
        if not _is_int(value) or value < 8 or value % 8:
            raise ConfigError(f"{where}: expected a multiple of 8 (>= 8){plural}, got {_show(value)}")
        return int(value)
    if key == "negative_prompt":
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string{plural}, got {_show(value)}")
        return value
    if key == "strength":
        if not _is_number(value) or not 0 < value <= 1:
            raise ConfigError(f"{where}: expected a number in (0, 1]{plural}, got {_show(value)}")
        return float(value)
    if key == "dtype":
        name = _DTYPE_ALIASES.get(value, value) if isinstance(value, str) else value
        if name not in DTYPES:
            raise ConfigError(f"{where}: expected one of {', '.join(DTYPES)}{plural}, got {_show(value)}")
        return name
    raise AssertionError(key)


def _path(value: Any, where: str, base_dir: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: expected a path, got {_show(value)}")
    return (base_dir / Path(value).expanduser()).resolve()


def _existing_path(value: Any, where: str, base_dir: Path, want: str) -> Path:
    path = _path(value, where, base_dir)
    if want == "file" and not path.is_file():
        raise ConfigError(f"{where}: no such file: {path}")
    if want == "folder" and not path.is_dir():
        raise ConfigError(f"{where}: no such folder: {path}")
    if want == "any" and not path.exists():
        raise ConfigError(f"{where}: no such file or folder: {path}")
    return path


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # not NaN


def _int(value: Any, where: str, minimum: int, maximum: int | None = None) -> int:
    if not _is_int(value) or value < minimum or (maximum is not None and value > maximum):
        upper = f" and <= {maximum}" if maximum is not None else ""
        raise ConfigError(f"{where}: expected an integer >= {minimum}{upper}, got {_show(value)}")
    return int(value)


def _number(value: Any, where: str) -> float:
    if not _is_number(value):
        raise ConfigError(f"{where}: expected a number, got {_show(value)}")
    return float(value)


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {_show(value)}")
    return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
