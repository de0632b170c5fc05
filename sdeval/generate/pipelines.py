"""Loading checkpoints (folder, hub id, single file, or a named pipeline) into diffusers pipelines; calling them.

A named pipeline (`path: NAME`: the built-in tiny-random and shapes, or a plugin's) loads itself
(sdeval.generate.registry); the shapes world is no diffusers pipeline: it draws each item's spec.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdeval.core.devices import resolve_device as _resolve_device
from sdeval.core.errors import SdevalError
from sdeval.core.hashing import path_sha256
from sdeval.core.offline import require_download
from sdeval.generate.checkpoint import CheckpointSpec, Loaded, LoadOptions
from sdeval.generate.latents import expected_shape
from sdeval.generate.plan import CheckpointIdentity, WorkItem
from sdeval.generate.registry import NAMED_PIPELINES
from sdeval.generate.schedulers import SCHEDULERS

_TORCH_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
# Key that only SDXL single-file checkpoints carry (base: embedders.1, refiner: embedders.0).
_SDXL_KEYS = (
    "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias",
    "conditioner.embedders.0.model.transformer.resblocks.9.mlp.c_proj.bias",
)


def checkpoint_identity(spec: CheckpointSpec) -> CheckpointIdentity:
    """Content hashes of a checkpoint (and LoRA); a hub id has none until it is a local path."""
    if spec.kind == "builtin":
        sha = NAMED_PIPELINES.get(spec.location).identity(spec)
    elif spec.kind in ("folder", "single_file", "unet"):
        sha = path_sha256(spec.location)  # a training checkpoint: its UNet's (the base pipeline is named by path)
    else:
        sha = None
    lora = None if spec.lora is None else path_sha256(spec.lora)
    return CheckpointIdentity(sha256=sha, lora_sha256=lora)


def resolve_device(requested: str, local_rank: int = 0, world_size: int = 1) -> str:
    """The generation device (config key `device`); the rule is sdeval.core.devices.resolve_device."""
    return _resolve_device(requested, local_rank, world_size, what="device")


def torch_dtype(name: str) -> Any:
    import torch  # torch: when a pipeline loads

    return getattr(torch, _TORCH_DTYPES[name])


def _dtype_kwargs(dtype: str) -> dict[str, Any]:
    """Newer diffusers renamed from_pretrained's `torch_dtype` to `dtype`; pass whichever this one takes."""
    from diffusers.utils import deprecation_utils  # diffusers: when a pipeline loads

    key = "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"
    return {key: torch_dtype(dtype)}


def _quiet_libraries() -> None:
    """Library progress bars would interleave with sdeval's own; sdeval reports progress itself."""
    import diffusers  # diffusers and transformers: when a pipeline loads
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def load_pipeline(spec: CheckpointSpec, dtype: str, options: LoadOptions) -> Loaded:
    """Load one checkpoint as a text2image or image2image pipeline on the run's device, ready to call."""
    if spec.kind == "builtin":
        return NAMED_PIPELINES.get(spec.location).load(spec, dtype, options)
    return load_diffusers(spec, dtype, options)


def load_diffusers(spec: CheckpointSpec, dtype: str, options: LoadOptions, location: str | None = None) -> Loaded:
    """A diffusers pipeline from `location` (default: the checkpoint's own), its LoRA fused, ready to call."""
    _quiet_libraries()
    try:
        pipe = _load(spec, dtype, options.pipeline, location or spec.location)
        if spec.lora is not None:
            pipe.load_lora_weights(spec.lora)
            # Fusing bakes the LoRA into the weights: no per-step adapter cost.
            pipe.fuse_lora(lora_scale=spec.lora_scale)
    except (OSError, ValueError, ImportError) as err:
        first = _first_line(err)
        hint = ""
        if "safetensors" in first and not spec.allow_pickle:
            hint = " (a checkpoint with only .bin weights needs allow_pickle: true)"
        elif spec.kind == "single_file" and spec.config is None:
            hint = "; offline, set `config:` to a local diffusers folder of the same architecture"
        raise SdevalError(f"checkpoint {spec.name!r}: could not load {spec.path}: {first}{hint}") from err
    return prepare_pipeline(pipe, options)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _load(spec: CheckpointSpec, dtype: str, kind: str, location: str) -> Any:
    if spec.kind == "single_file":
        return _load_single_file(spec, dtype, kind)
    kwargs: dict[str, Any] = _dtype_kwargs(dtype)
    if not spec.allow_pickle:
        # Refuse .bin (pickle) weights unless the user opted in.
        kwargs["use_safetensors"] = True
    if spec.variant is not None:
        kwargs["variant"] = spec.variant
    hub = spec.kind == "hub"
    if spec.kind == "unet":
        # A training checkpoint: its UNet (or EMA UNet) in the pipeline it was trained from, whose own UNet is
        # never loaded.
        from diffusers import UNet2DConditionModel  # pyright: ignore[reportPrivateImportUsage]  # lazy export

        assert spec.config is not None  # the series parser requires `base` for a UNet
        kwargs["unet"] = UNet2DConditionModel.from_pretrained(spec.location, **kwargs)
        location = spec.config
        hub = not Path(location).is_dir()
    if hub:
        try:
            return _from_pretrained(location, kind, kwargs, local_files_only=True)
        except OSError:
            # Not (fully) in the Hugging Face cache, so it must be downloaded; offline, the hub client would
            # retry for half a minute and then fail with a message that does not say what to do.
            require_download(
                f"checkpoint {spec.name!r} (hub id {location})",
                "set checkpoints[].path in the config to a local diffusers folder or a .safetensors file",
            )
    return _from_pretrained(location, kind, kwargs)


def _from_pretrained(location: str, kind: str, kwargs: dict[str, Any], local_files_only: bool = False) -> Any:
    """A diffusers folder or hub id as a pipeline; `local_files_only` uses the Hugging Face cache, never the hub."""
    import diffusers  # diffusers: when a pipeline loads

    kwargs = {**kwargs, "local_files_only": local_files_only}
    # diffusers exports its classes lazily, without an __all__ that type checkers would read (here and below).
    index = diffusers.DiffusionPipeline.load_config(location, local_files_only=local_files_only)  # pyright: ignore[reportPrivateImportUsage]
    if "safety_checker" in index:
        # Evaluation needs the raw outputs: the checker blacks out images it flags.
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    auto = diffusers.AutoPipelineForText2Image if kind == "text2image" else diffusers.AutoPipelineForImage2Image  # pyright: ignore[reportPrivateImportUsage]
    return auto.from_pretrained(location, **kwargs)


def _load_single_file(spec: CheckpointSpec, dtype: str, kind: str) -> Any:
    import diffusers  # diffusers: when a pipeline loads

    try:
        xl = _is_sdxl_single_file(Path(spec.location))
    except Exception as err:  # safetensors and unpickling raise their own types; all mean "unreadable"
        raise SdevalError(
            f"checkpoint {spec.name!r}: {spec.path} is not a readable checkpoint: {_first_line(err)}"
        ) from err
    # Exported lazily, as in _from_pretrained.
    cls = diffusers.StableDiffusionXLPipeline if xl else diffusers.StableDiffusionPipeline  # pyright: ignore[reportPrivateImportUsage]
    # from_single_file still takes `torch_dtype` in diffusers 0.42.
    kwargs: dict[str, Any] = {"torch_dtype": torch_dtype(dtype)}
    if spec.config is not None:
        kwargs["config"] = spec.config
    if not xl:
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    pipe = cls.from_single_file(spec.location, **kwargs)
    if kind == "image2image":
        pipe = diffusers.AutoPipelineForImage2Image.from_pipe(pipe)  # pyright: ignore[reportPrivateImportUsage]
    return pipe


def _is_sdxl_single_file(path: Path) -> bool:
    """SDXL files carry a second text encoder under `conditioner.embedders`; read keys only, not tensors."""
    if path.suffix.lower() == ".safetensors":
        from safetensors import safe_open  # safetensors: when a single file is looked at

        with safe_open(str(path), framework="pt") as handle:
            keys = set(handle.keys())
    else:
        import torch  # torch: when a pickled single file is looked at

        # Only reached with allow_pickle: true; weights_only still refuses arbitrary objects.
        state = torch.load(str(path), map_location="cpu", mmap=True, weights_only=True)
        keys = set(state.get("state_dict", state))
    return any(k in keys or f"model.{k}" in keys for k in _SDXL_KEYS)


def prepare_pipeline(pipe: Any, options: LoadOptions) -> Loaded:
    """Put a loaded pipeline on the device and apply the speed options (once per model load)."""
    import torch  # torch: when a pipeline is prepared

    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(options.device)
    if options.vae_slicing:
        # One image at a time through the VAE decoder: lower peak memory, and decoding no longer
        # depends on the batch an image was in.
        pipe.vae.enable_slicing()
    if options.vae_tiling:
        pipe.vae.enable_tiling()
    if options.channels_last and options.device.startswith("cuda"):
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    if options.compile:
        pipe.unet = torch.compile(pipe.unet)
    return Loaded(pipe=pipe, base_scheduler=pipe.scheduler)


def generate_batch(loaded: Loaded, items: list[WorkItem], kind: str, init_images: list[Any] | None = None) -> list[Any]:
    """One pipeline call for a batch that shares checkpoint and setting; returns PIL images in item order.

    Each image gets its own CPU generator seeded with its seed: diffusers draws each image's initial
    latents (and any per-step noise) from its own generator, so an image is the same whatever batch it is
    in, and matches a plain diffusers call with `generator=torch.Generator("cpu").manual_seed(seed)`.
    """
    if loaded.render is not None:
        return loaded.render(items, kind, init_images)
    import torch  # torch: when a batch is generated

    setting = items[0].setting
    spec = SCHEDULERS.find(setting.scheduler)
    extra = {"noise_sampler_seed": items[0].seed} if spec is not None and spec.per_call_noise else {}
    loaded.set_scheduler(setting.scheduler, **extra)
    negatives = [item.negative_prompt for item in items]
    kwargs: dict[str, Any] = {
        "prompt": [item.prompt.prompt for item in items],
        "negative_prompt": None if all(n is None for n in negatives) else negatives,
        "generator": [torch.Generator("cpu").manual_seed(item.seed) for item in items],
        "num_inference_steps": setting.num_inference_steps,
        "guidance_scale": setting.guidance_scale,
        "output_type": "pil",
    }
    if kind == "image2image":
        kwargs["image"] = init_images
        kwargs["strength"] = setting.strength
    else:
        kwargs["width"] = setting.width
        kwargs["height"] = setting.height
    if setting.latents is not None:
        kwargs["latents"] = _file_latents(loaded, setting, len(items))
    return list(loaded.pipe(**kwargs).images)


def _file_latents(loaded: Loaded, setting: Any, batch: int) -> Any:
    """The setting's latent file for each image of a batch (one latent for every prompt, as MLPerf feeds SDXL), in
    the dtype the pipeline would draw its own in; its shape checked against the model's at the setting's size."""
    import torch  # torch: when a batch is generated

    latents = setting.latents
    expected = expected_shape(loaded.pipe, setting.width, setting.height, loaded.native_size)
    if latents.shape != expected:
        size = "its native size" if setting.width is None else f"{setting.width}x{setting.height}"
        raise SdevalError(
            f"latents: {latents.written} holds a latent of shape {list(latents.shape)}, but this checkpoint at {size} "
            f"draws {list(expected)}"
        )
    array = torch.from_numpy(latents.array()).to(loaded.pipe.unet.dtype)
    return array.expand(batch, *array.shape[1:]).clone()


def load_init_image(path: Path, size: tuple[int, int]) -> Any:
    """An init image as RGB at the setting's size (Lanczos), so a batch stacks and the size is fixed."""
    from PIL import Image  # PIL: when an init image is read

    with Image.open(path) as im:
        rgb = im.convert("RGB")
    if rgb.size != size:
        rgb = rgb.resize(size, Image.Resampling.LANCZOS)
    return rgb
