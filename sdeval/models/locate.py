"""Where each model of a run is looked for, and whether it is there: found on disk only, never on the network.

Each model slot of the table (models/table.py), given a run's options, becomes one or more `Located` files or
folders: the path looked at (a local path, the torch hub file, the Hugging Face cache, sdeval's URL cache), whether
it is there, whether its header reads (a safetensors header, a torch zip or pickle, a JSON config: nothing is
unpickled), where a download would come from, and how to put it in place by hand. `{option}` in `fix` stands for
the option that takes a local path, named as the caller names options (a flag, or a config key).
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sdeval.core.errors import SdevalError
from sdeval.core.hashing import hub_record_key, recorded_sha256
from sdeval.core.hub import cached_hub_file, hub_folder, is_hub_id, looks_like_path
from sdeval.core.offline import hub_url
from sdeval.features.clip import tag_weights
from sdeval.features.clip_input import choose_clip_models
from sdeval.features.clip_specs import ClipModelSpec
from sdeval.models.table import SLOTS, ModelSlot
from sdeval.options.score import ScoreOptions
from sdeval.preference.hps import HPS_ALIASES, HPS_FILES
from sdeval.preference.imagereward import MED_CONFIG_NAME, TOKENIZER_VOCAB, WEIGHTS_NAME, locate_files
from sdeval.preference.info import (
    AESTHETIC,
    HPS_REPO,
    IMAGEREWARD,
    IMAGEREWARD_TOKENIZER_REPO,
    PICKSCORE,
    PICKSCORE_PROCESSOR,
)
from sdeval.preference.weights import is_pickle, safetensors_twin, url_cache_path

#: The weight files transformers reads from a model folder, in the order it prefers them.
MODEL_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_MAX_HEADER = 100 << 20  # a safetensors header longer than this is a damaged file, not a header


@dataclass
class Located:
    """One file or folder a run needs, and what is known about it without loading it."""

    label: str  # what it is: "Inception-v3 weights", "CLIP ViT-L-14 (openai)", "ImageReward tokenizer"
    slot: ModelSlot
    value: str  # as chosen: a path, hub id, open_clip tag, HPS version or URL
    where: Path | None  # the file or folder looked at (or the folder a download goes to); None: nowhere to look
    present: bool
    fix: str  # how to put it in place by hand; `{option}` is the option that takes a local path
    source: str | None = None  # what a download fetches (None: a local path, never downloaded)
    url: str | None = None  # where such a download comes from
    problems: list[str] = field(default_factory=list)  # what is wrong besides being absent
    pickle: str | None = None  # the pickle file it loads, which needs allow_pickle (None: none)
    files: list[Path] = field(default_factory=list)  # the present files whose sha256 can be checked
    expected_sha256: str | None = None  # what the (single) file must hash to, where that is known
    used_by: list[str] = field(default_factory=list)
    #: Where a download is not allowed (a local model's missing piece is never fetched): the reason.
    no_download: str | None = None

    @property
    def identity(self) -> tuple[str, str]:
        """Two rows with the same identity are the same model (one CLIP model used by several metrics)."""
        return self.label, str(self.where) if self.where is not None else self.value


def locate_slot(key: str, options: ScoreOptions) -> list[Located]:
    """The files and folders slot `key` stands for under `options` (a feature input's: its hub model or folder)."""
    resolve = _RESOLVERS.get(key, _input_model)
    return resolve(SLOTS[key], options)


# -- file checks -------------------------------------------------------------------------------------------------


def header_problem(path: Path) -> str | None:
    """Why `path` is not a readable weights file, judged from its header alone (None: it reads). Nothing is
    unpickled: a safetensors header (its JSON, and the data it describes fitting the file), a torch zip checkpoint
    (its directory and data.pkl entry), or a pickle's first opcode."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
            if path.suffix.lower() == ".safetensors":
                return _safetensors_problem(handle, head, size)
    except OSError as err:
        return f"cannot read it ({err.strerror or err})"
    if path.suffix.lower() == ".json":
        return _json_problem(path)
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as err:
            return f"a damaged zip file ({err})"
        return None if any(n.endswith("data.pkl") for n in names) else "a zip file, but not a torch checkpoint"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return None  # a pickle: torch's legacy format
    if is_pickle(path):
        return "not a torch checkpoint (neither a zip nor a pickle: truncated or damaged?)"
    return "neither a safetensors file nor a torch checkpoint"


def _safetensors_problem(handle, head: bytes, size: int) -> str | None:
    if len(head) < 8:
        return "not a safetensors file (shorter than its header)"
    (length,) = struct.unpack("<Q", head)
    if not 0 < length <= min(_MAX_HEADER, size - 8):
        return "not a safetensors file (its header length does not fit the file)"
    try:
        header = json.loads(handle.read(length))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return "not a safetensors file (its header is not the JSON it should be)"
    if 8 + length + end != size:
        return f"a damaged safetensors file ({size:,} bytes, its header describes {8 + length + end:,})"
    return None


def _json_problem(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return f"not readable JSON ({str(err).splitlines()[0]})"
    return None if isinstance(data, dict) else "not a JSON object"


def _local_file(slot: ModelSlot, label: str, value: str, fix: str, gated: bool) -> Located:
    """A weights file the user named: there, a file, its header readable; a pickle when `gated` needs allow_pickle."""
    path = Path(value).expanduser().absolute()
    found = Located(label, slot, value, path, path.is_file(), fix)
    if path.is_dir():
        found.problems.append(f"{value} is a folder; give the weights file itself")
    elif not found.present:
        found.problems.append(f"{value}: no such file")
    else:
        _check_header(found, path)
        found.pickle = str(path) if gated and is_pickle(path) else None
    return found


def _check_header(found: Located, path: Path) -> None:
    problem = header_problem(path)
    if problem is not None:
        found.problems.append(f"{path}: {problem}")


# -- the Hugging Face cache --------------------------------------------------------------------------------------


def _hub_fix(folder: Path, what: str | None) -> str:
    """Copy a repo's folder between Hugging Face caches (or pass `what` instead)."""
    while folder.parent != folder and not folder.name.startswith("models--"):
        folder = folder.parent  # a file in the cache: its repo's folder is what gets copied
    text = f"copy the folder {folder.name} from the Hugging Face cache of a machine that has it into {folder.parent}"
    return text + (f", or pass {what} as {{option}}" if what else "")


def _hub_file(slot: ModelSlot, label: str, value: str, repo_id: str, filename: str, *, gated: bool) -> Located:
    """A file of a hub repo (its .safetensors twin counts) in the cache."""
    twin = safetensors_twin(filename)
    cached = next((p for p in (cached_hub_file(repo_id, n) for n in filter(None, (twin, filename))) if p), None)
    fix = _hub_fix(hub_folder(repo_id), "a local copy of the file")
    found = Located(label, slot, value, cached or hub_folder(repo_id), cached is not None, fix,
                    source=f"hub {repo_id}/{filename}", url=hub_url())  # fmt: skip
    if cached is not None:
        _check_header(found, cached)
        _expect_recorded(found, cached)
        found.pickle = f"{repo_id}/{cached.name}" if gated and is_pickle(cached) else None
    elif gated and is_pickle(filename):
        found.pickle = f"{repo_id}/{filename}"  # unless the hub has a .safetensors twin, which is tried first
    return found


def _expect_recorded(found: Located, path: Path) -> None:
    """The sha256 the file had at its first download (or first check); a hub blob named by its sha256 tells too."""
    found.files = [path]
    key = hub_record_key(path)
    expected = recorded_sha256(key) if key is not None else None
    if expected is None:
        blob = Path(os.path.realpath(path)).name
        expected = blob if len(blob) == 64 and all(c in "0123456789abcdef" for c in blob) else None
    found.expected_sha256 = expected


def _hub_model(
    slot: ModelSlot,
    label: str,
    value: str,
    *,
    extra: tuple[str, ...] = (),
    gated: bool = False,
) -> Located:
    """A transformers model: a local folder (save_pretrained layout) or a hub id in the cache (config, weights and
    `extra` files)."""
    local = Path(value).expanduser().absolute()
    if local.exists() or not is_hub_id(value):
        fix = "give a model folder (save_pretrained layout: config.json and model.safetensors) as {option}"
        found = Located(label, slot, value, local, local.is_dir(), fix)
        if not local.exists():
            found.problems.append(f"{value}: no such folder (nor a hub id OWNER/NAME)")
        elif not local.is_dir():
            found.problems.append(f"{value}: not a model folder (a file)")
        else:
            _check_folder(found, local, extra, gated)
        return found
    config = cached_hub_file(value, "config.json")
    weights = next((p for p in (cached_hub_file(value, n) for n in MODEL_WEIGHTS) if p), None)
    missing_extra = [name for name in extra if cached_hub_file(value, name) is None]
    present = config is not None and weights is not None and not missing_extra
    where = config.parent if config is not None else hub_folder(value)
    fix = _hub_fix(where, "a local model folder (save_pretrained layout)")
    found = Located(label, slot, value, where, present, fix, source=f"hub {value}", url=hub_url())
    if present:
        _check_folder(found, where, extra, gated)
    return found


def _check_folder(found: Located, folder: Path, extra: tuple[str, ...], gated: bool) -> None:
    """A model folder: config.json, a weights file whose header reads, and the `extra` files."""
    for name in ("config.json", *extra):
        path = folder / name
        if not path.is_file() and name == "preprocessor_config.json" and _holds_image_processor(folder):
            continue  # transformers 5 saves a processor's image processor inside processor_config.json
        if not path.is_file():
            found.problems.append(f"{folder}: no {name} in it")
        elif name.endswith(".json"):
            _check_header(found, path)
    safe = sorted(folder.glob("model*.safetensors"))
    weights = safe or sorted(folder.glob("pytorch_model*.bin"))
    if not weights:
        found.problems.append(f"{folder}: no model.safetensors (or pytorch_model.bin) in it")
        return
    for path in weights:
        _check_header(found, path)
    if len(weights) == 1 and found.source is not None:  # a hub download, whose hash can be compared later
        _expect_recorded(found, weights[0])
    if gated and not safe:
        found.pickle = str(weights[0])


def _holds_image_processor(folder: Path) -> bool:
    """Whether the folder's processor_config.json holds its image processor (what `save_pretrained` of a processor
    writes since transformers 5, instead of preprocessor_config.json); AutoProcessor reads either."""
    try:
        return "image_processor" in json.loads((folder / "processor_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False


# -- the resolvers, one per slot ---------------------------------------------------------------------------------


def _inception(slot: ModelSlot, options: ScoreOptions) -> list[Located]:
    # torch-fidelity and torchvision (+1.2 s): when the Inception slot is looked at
    from sdeval.features.inception import (
        STANDARD_WEIGHTS_NAMES,
        STANDARD_WEIGHTS_SHA256,
        STANDARD_WEIGHTS_SIZE,
        URL_INCEPTION_V3,
        find_standard_weights,
        standard_weights_path,
        standard_weights_problem,
    )

    value = options.features.inception_weights
    if value is not None:
        fix = "give a torch-fidelity Inception state dict (.pth or .safetensors) as {option}"
        return [_local_file(slot, slot.label, value, fix, gated=False)]
    found = find_standard_weights()
    where = found or standard_weights_path()
    fix = (
        f"copy {STANDARD_WEIGHTS_NAMES[0]} ({STANDARD_WEIGHTS_SIZE:,} bytes, sha256 {STANDARD_WEIGHTS_SHA256}; "
        f"pytorch-fid's {STANDARD_WEIGHTS_NAMES[1]} is the same file) to {where}, or pass a copy as {{option}}"
    )
    located = Located(f"{slot.label} (standard)", slot, STANDARD_WEIGHTS_NAMES[0], where, found is not None, fix,
                      source=URL_INCEPTION_V3, url=URL_INCEPTION_V3)  # fmt: skip
    if found is not None:
        problem = standard_weights_problem(found)
        if problem is not None:
            located.problems.append(f"{found}: {problem}")
    return [located]


def _clip_located(slot: ModelSlot, spec: ClipModelSpec, option: str) -> Located:
    """An open_clip model name with a pretrained tag (in the hub cache or ~/.cache/clip) or a local weights file."""
    import open_clip  # open_clip (+3 s): when a CLIP slot is looked at

    pretrained = spec.pretrained or ""
    label = f"CLIP {spec.name} ({pretrained})"
    slot = ModelSlot(slot.key, slot.label, (*slot.options[:-1], option), slot.describe_default)
    unknown_model = spec.name not in open_clip.list_models()
    if os.path.isfile(pretrained) or looks_like_path(pretrained):
        fix = "give an open_clip weights file for this model as {option}"
        found = _local_file(slot, label, pretrained, fix, gated=False)
    else:
        found = _clip_tag(slot, label, spec.name, pretrained, known_model=not unknown_model)
    if unknown_model:
        found.problems.insert(0, f"{spec.name!r} is not an open_clip model (`open_clip.list_models()` lists them)")
    return found


def _clip_tag(slot: ModelSlot, label: str, name: str, tag: str, *, known_model: bool) -> Located:
    """An open_clip tag's weights: in the hub cache, or in ~/.cache/clip for a tag that only has a URL."""
    import open_clip  # open_clip (+3 s): when a CLIP slot is looked at

    cfg = open_clip.get_pretrained_cfg(name, tag) or {}
    where = tag_weights(cfg) if cfg else None
    if where is None:  # an unknown tag, or a layout open_clip resolves itself: nothing to look at
        found = Located(label, slot, tag, None, bool(cfg), "pass a local weights file as {option}")
        if not cfg and known_model:
            tags = ", ".join(open_clip.list_pretrained_tags_by_model(name)) or "none"
            found.problems.append(f"{tag!r} is neither a file nor a known tag for {name} (tags: {tags})")
        return found
    fix = _hub_fix(where.target, "a local weights file") if where.via_hub else (
        f"copy the weights file to {where.target}, or pass a local weights file as {{option}}")  # fmt: skip
    found = Located(label, slot, tag, where.target, where.cached is not None, fix, source=where.source, url=where.url)
    if where.cached is not None:
        _check_header(found, where.cached)
        _expect_recorded(found, where.cached)
    return found


def _clip(slot: ModelSlot, options: ScoreOptions) -> list[Located]:
    """The --clip-* model (CLIP score, R-precision, diversity, faithfulness; the aesthetic head, the judges)."""
    spec = choose_clip_models(True, False, options.clip_model, options.clip_pretrained).prompt
    assert spec is not None
    return [_clip_located(slot, spec, "clip_pretrained")]


def _cmmd(slot: ModelSlot, options: ScoreOptions) -> list[Located]:
    """CMMD's model: --cmmd-*, else the --clip-* one when only that is given, else the paper's."""
    choice = choose_clip_models(False, True, options.clip_model, options.clip_pretrained,
                                options.cmmd_model, options.cmmd_pretrained)  # fmt: skip
    assert choice.cmmd is not None
    follows_clip = options.cmmd_model is None and options.cmmd_pretrained is None and choice.warnings
    return [_clip_located(slot, choice.cmmd, "clip_pretrained" if follows_clip else "cmmd_pretrained")]


def _input_model(slot: ModelSlot, options: ScoreOptions) -> list[Located]:
    """A feature input's model (sdeval.features.inputs, `model_option`): a hub id or a local folder."""
    value = options.input_values().get(slot.option) or slot.default
    return [_hub_model(slot, f"{slot.label} {value}", value)]


def _detector(slot: ModelSlot, options: ScoreOptions) -> list[Located]:
    value = options.detector_model or slot.default
    return [_hub_model(slot, f"{slot.label} {value}", value, extra=("preprocessor_config.json",))]


def _vqa(slot: ModelSlot, options: ScoreOptions) -> list[Located]:
    value = options.vqa_model or slot.default
    return [_hub_model(slot, f"{slot.label} {value}", value, extra=("preprocessor_config.json",))]


def _file_ref(slot: ModelSlot, label: str, value: str, hint: str) -> Located:
    """A weights file given as a local path, an https URL (kept in sdeval's cache) or a hub file OWNER/REPO/FILE."""
    local = Path(value).expanduser()
    if local.exists():
        return _local_file(slot, label, value, f"give {hint} as {{option}}", gated=True)
    if value.startswith(("http://", "https://")):
        target = url_cache_path(value)
        fix = f"download {value} once and copy it to {target}, or pass it as {{option}}"
        found = Located(label, slot, value, target, target.is_file(), fix, source=value, url=value)
        found.pickle = target.name if is_pickle(target) else None
        if found.present:
            _check_header(found, target)
            found.files = [target]
            found.expected_sha256 = recorded_sha256(f"url:{value}")
        return found
    parts = value.split("/")
    if len(parts) >= 3 and not looks_like_path(value) and all(parts):
        return _hub_file(slot, label, value, "/".join(parts[:2]), "/".join(parts[2:]), gated=True)
    found = Located(label, slot, value, local, False, f"give {hint} as {{option}}")
    found.problems.append(f"{value}: no such file (give a local file, an https URL, or a hub file OWNER/REPO/FILE)")
    return found


def _hps(slot: ModelSlot, options: ScoreOptions) -> list[Located]:
    value = options.hps_model or "v2.1"
    version = HPS_ALIASES.get(value, value)
    if version in HPS_FILES:
        return [_hub_file(slot, f"HPS {version} checkpoint", value, HPS_REPO, HPS_FILES[version], gated=True)]
    if version.lower().startswith("v") and "/" not in version and not Path(version).expanduser().exists():
        found = Located(slot.label, slot, value, None, False, "give a version or a checkpoint file as {option}")
        found.problems.append(f"HPS version {value!r} is unknown (versions: {', '.join(HPS_FILES)})")
        return [found]
    return [_file_ref(slot, slot.label, value, "an HPS checkpoint file")]


def _aesthetic(slot: ModelSlot, options: ScoreOptions) -> list[Located]:
    return [_file_ref(slot, slot.label, options.aesthetic_model or AESTHETIC.default_model, "the head's file")]


def _imagereward(slot: ModelSlot, options: ScoreOptions) -> list[Located]:
    value = options.imagereward_model or IMAGEREWARD.default_model
    local = Path(value).expanduser()
    if not local.exists() and not is_hub_id(value):
        found = Located(slot.label, slot, value, local, False, "give ImageReward's weights file or folder as {option}")
        found.problems.append(f"{value}: no such file or folder (nor a hub id OWNER/NAME)")
        return [found]
    if not local.exists():
        rows = [
            _hub_file(slot, "ImageReward weights", value, value, WEIGHTS_NAME, gated=True),
            _hub_file(slot, "ImageReward config", value, value, MED_CONFIG_NAME, gated=False),
        ]
        return [*rows, _bert_vocab(slot, value, IMAGEREWARD_TOKENIZER_REPO, TOKENIZER_VOCAB, local_only=False)]
    try:
        files = locate_files(value, tokenizer=None, allow_pickle=True)  # local: looks at files only
    except SdevalError as err:
        found = Located(slot.label, slot, value, local, False, "give ImageReward's weights file or folder as {option}")
        found.problems.append(str(err))
        return [found]
    weights = _local_file(slot, "ImageReward weights", str(files.weights), "give the weights as {option}", True)
    tokenizer = Path(files.tokenizer)
    if tokenizer.is_dir():
        return [weights]
    return [weights, _bert_vocab(slot, value, files.tokenizer, TOKENIZER_VOCAB, local_only=files.tokenizer_local_only)]


def _bert_vocab(slot: ModelSlot, value: str, repo_id: str, vocab: str, *, local_only: bool) -> Located:
    """ImageReward's tokenizer vocabulary: a hub repo's vocab.txt in the cache (never fetched for local weights)."""
    cached = cached_hub_file(repo_id, vocab)
    fix = f"put {repo_id}'s {vocab} beside the ImageReward weights (a folder given as {{option}}), or " + _hub_fix(
        hub_folder(repo_id), None
    )
    found = Located(f"ImageReward tokenizer ({repo_id})", slot, value, cached or hub_folder(repo_id),
                    cached is not None, fix, source=f"hub {repo_id}/{vocab}", url=hub_url())  # fmt: skip
    if local_only:
        found.no_download = "local ImageReward weights never download their tokenizer"
    return found


def _pickscore(slot: ModelSlot, options: ScoreOptions) -> list[Located]:
    value = options.pickscore_model or PICKSCORE.default_model
    model = _hub_model(slot, f"{slot.label} {value}", value, gated=True)
    local = Path(value).expanduser()
    if local.is_dir() and (local / "preprocessor_config.json").is_file():
        return [model]
    cached = cached_hub_file(PICKSCORE_PROCESSOR, "preprocessor_config.json")
    fix = "put preprocessor_config.json and the CLIP tokenizer files in the {option} folder, or " + _hub_fix(
        hub_folder(PICKSCORE_PROCESSOR), None
    )
    processor = Located(f"PickScore processor ({PICKSCORE_PROCESSOR})", slot, value,
                        cached.parent if cached else hub_folder(PICKSCORE_PROCESSOR), cached is not None, fix,
                        source=f"hub {PICKSCORE_PROCESSOR}", url=hub_url())  # fmt: skip
    if local.exists():
        processor.no_download = "a local PickScore model never downloads its processor"
    return [model, processor]


_RESOLVERS: dict[str, Callable[[ModelSlot, ScoreOptions], list[Located]]] = {
    "inception": _inception,
    "clip": _clip,
    "cmmd": _cmmd,
    "imagereward": _imagereward,
    "hps": _hps,
    "pickscore": _pickscore,
    "aesthetic": _aesthetic,
    "detector": _detector,
    "vqa": _vqa,
}
