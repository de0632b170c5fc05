"""One resolver for a model given as a local folder or a Hugging Face hub id, and one error for each way it fails.

As diffusers' `_get_model_file`: a local path is read from disk only; a hub id is read from the Hugging Face cache
first and downloaded only when it is not there and a download can work (offline, one line at once rather than half
a minute of retries); every failure is one line naming the option that takes a local path and what to pass it.
`models/locate.py` finds the same files without loading them, with the same rules for what is a path and what is
a hub id (both read them here).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sdeval.core.errors import SdevalError, first_line
from sdeval.core.offline import require_download

T = TypeVar("T")


def looks_like_path(value: str) -> bool:
    """Written as a path (absolute, relative with a dot, or from home), so never a hub id."""
    return value.startswith(("/", ".", "~"))


def is_hub_id(value: str) -> bool:
    """A hub id OWNER/NAME (not written as a path)."""
    return not looks_like_path(value) and value.count("/") == 1


def hub_folder(repo_id: str) -> Path:
    """The Hugging Face cache folder of a model repo (where a download goes)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"


def cached_hub_file(repo_id: str, filename: str) -> Path | None:
    """The cached copy of a hub file, or None (never touches the network)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(repo_id, filename)
    except ValueError:  # not a valid repo id
        return None
    return Path(cached) if isinstance(cached, str) else None


def folder_label(path: str | Path) -> str:
    """How a protocol names a local model: `folder:NAME` (the full path differs between machines)."""
    return f"folder:{Path(path).expanduser().resolve().name}"


def model_source(value: str) -> str:
    """`folder_label` for a local file or folder, else `value` as given (a hub id)."""
    return folder_label(value) if Path(value).expanduser().exists() else value


def local_folder_hint(option: str) -> str:
    """The way out every hub error offers."""
    return f"pass a local folder as {option} PATH"


def load_pretrained(value: str, load: Callable[[str, bool], T], *, option: str, what: str) -> tuple[T, str]:
    """(`load(location, local_files_only)`, the model's source for its protocol) for `value`, a local model folder
    (save_pretrained layout) or a hub id; `load` raises OSError for missing files and SdevalError for the rest.

    A folder is read from disk only (source `folder:NAME`); a hub id from the cache, else, where a download can
    work, from the hub (source: the id). A missing folder, a hub id offline and a failed download are each one
    SdevalError naming `option` and the way out; `what` names the model in the offline one ("DINOv2 model").
    """
    local = Path(value).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise SdevalError(f"{option} {value}: not a model folder (no config.json in it)")
        try:
            return load(str(local), True), folder_label(local)
        except OSError as err:
            raise SdevalError(f"{option} {value}: cannot load it: {first_line(err)}") from err
    if not is_hub_id(value):
        raise SdevalError(f"{option} {value}: no such folder (nor a hub id OWNER/NAME); {local_folder_hint(option)}")
    try:
        return load(value, True), value
    except OSError:
        pass  # not (wholly) in the Hugging Face cache
    require_download(f"{what} {value!r}", local_folder_hint(option))
    try:
        return load(value, False), value
    except OSError as err:  # transformers says repository not found, gated, or no such file as an OSError
        raise SdevalError(
            f"{option} {value}: cannot download it: {first_line(err)} (or {local_folder_hint(option)})"
        ) from err
