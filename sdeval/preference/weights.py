"""Find, read and strictly load scorer weights: local files, hub files, URLs; pickles only when the user allows them.

Checkpoints in .pt/.pth/.bin are pickles, which can run code when loaded. They are read only when the caller
passes allow_pickle=True (the CLI's --allow-pickle), and even then with `torch.load(weights_only=True)`.
A .safetensors twin is preferred wherever one exists. Hub files and URLs are looked up in the local cache
first; a download is attempted only when they are missing there, and fails at once (one line) when offline.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import shutil
import urllib.error
import urllib.request
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import torch

from sdeval.core import atomic
from sdeval.core.errors import SdevalError, first_line
from sdeval.core.hashing import file_sha256, hub_record_key, record_sha256
from sdeval.core.hub import cached_hub_file, looks_like_path
from sdeval.core.offline import require_download
from sdeval.core.paths import cache_root

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl")
SAFETENSORS_SUFFIX = ".safetensors"
#: What a user does about a pickle checkpoint.
ALLOW_PICKLE_HINT = (
    "pass --allow-pickle (allow_pickle=True) to load it with torch.load(weights_only=True), "
    "or convert it to .safetensors"
)
_URL_TIMEOUT_S = 60.0
_SHOWN_KEYS = 5


def is_pickle(path: str | os.PathLike[str]) -> bool:
    """Whether a weights file is a pickle by its suffix (.pt, .pth, .bin, .ckpt, .pkl)."""
    return Path(path).suffix.lower() in PICKLE_SUFFIXES


def safetensors_twin(name: str) -> str | None:
    """`x.safetensors` for a pickle named `x.pt` (or .pth, .bin, ...), else None."""
    path = Path(name)
    return str(path.with_suffix(SAFETENSORS_SUFFIX)) if is_pickle(path) else None


def check_pickle_allowed(path: str | os.PathLike[str], allow_pickle: bool, what: str) -> None:
    """One-line SdevalError for a pickle file the caller did not allow."""
    if is_pickle(path) and not allow_pickle:
        raise SdevalError(f"{what}: {path} is a pickle file, which can run code when loaded; {ALLOW_PICKLE_HINT}")


def read_state_file(path: str | os.PathLike[str], *, allow_pickle: bool, what: str) -> dict[str, Any]:
    """The dict stored in a .safetensors file, or (allowed) in a pickle read with weights_only=True."""
    path = Path(path)
    if not path.is_file():
        raise SdevalError(f"{what}: no such file: {path}")
    suffix = path.suffix.lower()
    if suffix == SAFETENSORS_SUFFIX:
        return _read_safetensors(path, what)
    if suffix not in PICKLE_SUFFIXES:
        raise SdevalError(f"{what}: {path} is not a weights file (expected .safetensors, or .pt/.pth/.bin)")
    check_pickle_allowed(path, allow_pickle, what)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise SdevalError(
            f"{what}: {path} holds objects other than tensors and plain containers, so it is not loaded "
            f"(weights_only=True): {first_line(err)}"
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise SdevalError(f"{what}: cannot read {path} as a torch checkpoint: {first_line(err)}") from err
    if not isinstance(obj, dict):
        raise SdevalError(f"{what}: {path} holds a {type(obj).__name__}, not a dict of tensors")
    return obj


def _read_safetensors(path: Path, what: str) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return dict(load_file(str(path), device="cpu"))
    except (SafetensorError, OSError, ValueError) as err:
        raise SdevalError(f"{what}: cannot read {path} as safetensors: {first_line(err)}") from err


def check_state(
    expected: Mapping[str, Sequence[int]],
    state: Mapping[str, Any],
    *,
    what: str,
    source: str,
    ignored: Collection[str] = (),
) -> None:
    """SdevalError unless `state` has exactly the `expected` keys (plus `ignored` ones) with the expected shapes."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected) - set(ignored))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {_some(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {_some(unexpected)}")
        raise SdevalError(
            f"{what}: {source} does not fit the model ({'; '.join(parts)}); is it the right checkpoint for this "
            "model and architecture?"
        )
    not_tensors = sorted(key for key in expected if not isinstance(state[key], torch.Tensor))
    if not_tensors:
        raise SdevalError(f"{what}: {source} holds non-tensor values under {_some(not_tensors)}")
    wrong = [
        f"{key} {tuple(state[key].shape)} (model: {tuple(shape)})"
        for key, shape in expected.items()
        if tuple(state[key].shape) != tuple(shape)
    ]
    if wrong:
        raise SdevalError(
            f"{what}: {source} has {len(wrong)} tensor(s) of the wrong shape for this architecture: {_some(wrong)}"
        )


def load_strict(module: torch.nn.Module, state: Mapping[str, Any], *, what: str, source: str) -> None:
    """Load `state` into `module`: every checkpoint key used and every model key filled, else SdevalError."""
    expected = {key: tuple(value.shape) for key, value in module.state_dict().items()}
    check_state(expected, state, what=what, source=source)
    module.load_state_dict(dict(state), strict=True)


def _some(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:_SHOWN_KEYS])
    return shown if len(keys) <= _SHOWN_KEYS else f"{shown} and {len(keys) - _SHOWN_KEYS} more"


def hub_file(repo_id: str, filename: str, *, what: str, hint: str, allow_pickle: bool) -> Path:
    """A file of a hub repo (its .safetensors twin when there is one), from the cache, else downloaded.

    Offline (or with the hub unreachable) a file that is not cached is a one-line SdevalError naming `hint`,
    the way to give it as a local path. A pickle is refused before it is downloaded unless allowed.
    """
    twin = safetensors_twin(filename)
    candidates = [twin, filename] if twin else [filename]
    for name in candidates:
        cached = cached_hub_file(repo_id, name)
        if cached is not None:
            check_pickle_allowed(f"{repo_id}/{name}", allow_pickle, what)
            return cached
    require_download(f"{what} ({repo_id}/{filename})", hint)
    return _download_hub_file(repo_id, candidates, what=what, allow_pickle=allow_pickle)


def _download_hub_file(repo_id: str, candidates: list[str], *, what: str, allow_pickle: bool) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError

    for index, name in enumerate(candidates):
        last = index == len(candidates) - 1
        check_pickle_allowed(f"{repo_id}/{name}", allow_pickle, what)
        try:
            path = Path(hf_hub_download(repo_id, name))
            _record(hub_record_key(path), path)
            return path
        except RepositoryNotFoundError as err:
            raise SdevalError(f"{what}: no hub repository {repo_id!r} (or it is private or gated)") from err
        except EntryNotFoundError as err:
            if not last:
                continue
            raise SdevalError(f"{what}: hub repository {repo_id!r} has no file {name!r}") from err
        except (HfHubHTTPError, OSError, ValueError) as err:
            raise SdevalError(f"{what}: cannot download {repo_id}/{name}: {first_line(err)}") from err
    raise AssertionError("unreachable: the last candidate returns or raises")


def url_cache_path(url: str) -> Path:
    """Where a weights file given by URL is kept: `<cache>/weights/<sha256 of the URL, 16 digits>/<its file name>`."""
    name = unquote(os.path.basename(urlsplit(url).path)) or "weights"
    return cache_root() / "weights" / hashlib.sha256(url.encode()).hexdigest()[:16] / name


def url_file(url: str, *, what: str, hint: str, allow_pickle: bool) -> Path:
    """A weights file at a URL, kept in sdeval's cache (url_cache_path); downloaded once, atomically.

    What is missing is said before what would be refused: offline, a pickle that is not there is reported as not
    there (with the way to give it), not as a pickle."""
    target = url_cache_path(url)
    if not target.is_file():
        require_download(f"{what} ({url})", hint, url=url)
    check_pickle_allowed(target.name, allow_pickle, what)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=_URL_TIMEOUT_S) as response, atomic.atomic_open(target) as out:
            shutil.copyfileobj(response, out)
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise SdevalError(f"{what}: cannot download {url}: {first_line(err)}") from err
    _record(f"url:{url}", target)
    return target


def _record(key: str | None, path: Path) -> None:
    """Record a fresh download's sha256, so that `sdeval models --check` can tell later when the file changed."""
    if key is not None:
        record_sha256(key, path)


def resolve_file(ref: str, *, what: str, hint: str, allow_pickle: bool) -> tuple[Path, str]:
    """(path, label) for a weights file given as a local path, an http(s) URL, or a hub file OWNER/REPO/FILE."""
    local = Path(ref).expanduser()
    if local.is_file():
        return local, f"file:{local.name}"
    if local.exists():
        raise SdevalError(f"{what}: {ref} is a folder; give the weights file itself")
    if ref.startswith(("http://", "https://")):
        return url_file(ref, what=what, hint=hint, allow_pickle=allow_pickle), ref
    parts = ref.split("/")
    if len(parts) >= 3 and not looks_like_path(ref) and all(parts):
        repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:])
        return hub_file(repo_id, filename, what=what, hint=hint, allow_pickle=allow_pickle), ref
    raise SdevalError(f"{what}: no such file: {ref} (give a local file, an https URL, or a hub file OWNER/REPO/FILE)")


def files_sha256(paths: Sequence[Path]) -> str:
    """sha256 of one weights file, or over the sorted (name, sha256) lines of several (sharded weights)."""
    if len(paths) == 1:
        return file_sha256(paths[0])
    lines = sorted(f"{path.name}\t{file_sha256(path)}\n" for path in paths)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and progress bars; sdeval raises its own one-line errors instead."""
    import transformers

    logging = transformers.utils.logging
    before = logging.get_verbosity()
    bars = logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(before)
        if bars:
            logging.enable_progress_bar()
