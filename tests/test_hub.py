"""One resolver for "local folder or hub id" (core/hub.py): every model loader fails the same way, naming its option."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sdeval.core import hub
from sdeval.core.errors import SdevalError
from sdeval.core.hub import is_hub_id, load_pretrained, looks_like_path, model_source


def _loader(calls: list[tuple[str, bool]], fail_local: bool = False, fail_hub: bool = False) -> Callable:
    def load(location: str, local_only: bool) -> str:
        calls.append((location, local_only))
        if (local_only and fail_local) or (not local_only and fail_hub):
            raise OSError("files missing\nsecond line")
        return "model"

    return load


def test_what_is_a_path_and_what_is_a_hub_id() -> None:
    assert is_hub_id("facebook/dinov2-large")
    assert not is_hub_id("./facebook/dinov2-large") and looks_like_path("./x")
    assert not is_hub_id("dinov2-large") and not is_hub_id("a/b/c") and not is_hub_id("~/models/x")


def test_a_local_folder_is_read_from_disk_only(tmp_path: Path) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    with pytest.raises(SdevalError, match=r"^--x-model .*my-model: not a model folder \(no config\.json in it\)$"):
        load_pretrained(str(folder), _loader([]), option="--x-model", what="X model")
    (folder / "config.json").write_text("{}")
    calls: list[tuple[str, bool]] = []
    assert load_pretrained(str(folder), _loader(calls), option="--x-model", what="X model") == (
        "model",
        "folder:my-model",
    )
    assert calls == [(str(folder), True)]
    assert model_source(str(folder)) == "folder:my-model" and model_source("a/b") == "a/b"
    with pytest.raises(SdevalError, match=r"^--x-model .*: cannot load it: files missing$"):
        load_pretrained(str(folder), _loader([], fail_local=True), option="--x-model", what="X model")


def test_a_hub_id_comes_from_the_cache_first() -> None:
    calls: list[tuple[str, bool]] = []
    assert load_pretrained("a/b", _loader(calls), option="--x-model", what="X model") == ("model", "a/b")
    assert calls == [("a/b", True)]


def test_an_uncached_hub_id_offline_and_a_missing_folder_name_the_option(tmp_path: Path) -> None:
    # Tests run with HF_HUB_OFFLINE set: no download is tried.
    calls: list[tuple[str, bool]] = []
    with pytest.raises(SdevalError) as offline:
        load_pretrained("a/b", _loader(calls, fail_local=True), option="--x-model", what="X model")
    assert str(offline.value).startswith("X model 'a/b' is not available offline")
    assert calls == [("a/b", True)]
    with pytest.raises(SdevalError) as missing:
        load_pretrained(str(tmp_path / "nope"), _loader([]), option="--x-model", what="X model")
    assert "no such folder (nor a hub id OWNER/NAME)" in str(missing.value)
    for err in (offline, missing):
        assert str(err.value).endswith("pass a local folder as --x-model PATH") and "\n" not in str(err.value)


def test_a_failed_download_is_one_line_naming_the_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub, "require_download", lambda what, hint: None)  # as if online
    calls: list[tuple[str, bool]] = []
    with pytest.raises(SdevalError) as info:
        load_pretrained("a/b", _loader(calls, fail_local=True, fail_hub=True), option="--x-model", what="X model")
    assert (
        str(info.value) == "--x-model a/b: cannot download it: files missing (or pass a local folder as --x-model PATH)"
    )
    assert calls == [("a/b", True), ("a/b", False)]


def _dinov2(value: str) -> Any:
    from sdeval.features.dinov2 import Dinov2Extractor

    return Dinov2Extractor.load(value)


def _detector(value: str) -> Any:
    from sdeval.judges.detector import TransformersDetector

    return TransformersDetector.load(value)


def _vqa(value: str) -> Any:
    from sdeval.judges.vqa import load_vqa_model

    return load_vqa_model(value)


@pytest.mark.parametrize(
    ("load", "option", "what"),
    [(_dinov2, "--dinov2-model", "DINOv2 model"), (_detector, "--detector-model", "detector"),
     (_vqa, "--vqa-model", "VQA model")],
)  # fmt: skip
def test_every_hub_loader_fails_the_same_way(load: Callable, option: str, what: str, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(SdevalError) as no_folder:
        load(str(missing))
    assert str(no_folder.value) == (
        f"{option} {missing}: no such folder (nor a hub id OWNER/NAME); pass a local folder as {option} PATH"
    )
    with pytest.raises(SdevalError) as offline:
        load("sdeval-test/not-cached")
    assert str(offline.value).startswith(f"{what} 'sdeval-test/not-cached' is not available offline")
    assert str(offline.value).endswith(f"pass a local folder as {option} PATH")
    tmp_path.joinpath("empty").mkdir()
    with pytest.raises(SdevalError, match=rf"^{option} .*empty: not a model folder \(no config\.json in it\)$"):
        load(str(tmp_path / "empty"))
