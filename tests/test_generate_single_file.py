"""Single-file (A1111/Civitai-style) checkpoints through diffusers' from_single_file, offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from generate_fixtures import (
    assert_same_images,
    load_images,
    sdeval_cache_fixture,  # noqa: F401  (registers the sdeval_cache fixture)
    tiny_as_single_file,
    write_config,
)

from sdeval.core.errors import ConfigError, SdevalError
from sdeval.generate.config import load_config
from sdeval.generate.runner import run_generate
from sdeval.generate.tiny import tiny_random_path

pytestmark = pytest.mark.usefixtures("sdeval_cache")


@pytest.fixture(scope="module")
def single_file(tmp_path_factory: pytest.TempPathFactory, sdeval_cache: Path) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny-ldm.safetensors"
    tiny_as_single_file(tiny_random_path(), path)
    return path


def _images(folder: Path, checkpoint: dict) -> dict[str, np.ndarray]:
    run_generate(load_config(write_config(folder, checkpoints=[checkpoint])), progress=False)
    return {f.split("/", 1)[1]: a for f, a in load_images(folder / "out").items()}


def test_single_safetensors_file_gives_the_folder_images(tmp_path: Path, single_file: Path) -> None:
    # Offline, diffusers needs the architecture from somewhere: `config:` names a local diffusers folder.
    ckpt = {"name": "sf", "path": str(single_file), "config": str(tiny_random_path())}
    from_file = _images(tmp_path / "file", ckpt)
    from_folder = _images(tmp_path / "folder", {"name": "sf", "path": str(tiny_random_path())})
    assert len(from_file) == 6
    assert_same_images(from_file, from_folder, atol=0)


def test_pickle_checkpoint_loads_only_with_allow_pickle(tmp_path: Path, single_file: Path) -> None:
    import torch
    from safetensors.torch import load_file

    ckpt = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": load_file(str(single_file))}, ckpt)
    spec = {"name": "old", "path": str(ckpt), "config": str(tiny_random_path())}

    # Without the opt-in (left out, or false) the config itself is refused, naming the key: unpickling can run
    # code, so the refusal must come before anything opens the file.
    def no_unpickling(*args, **kwargs):
        raise AssertionError("a pickle checkpoint was loaded without allow_pickle")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch, "load", no_unpickling)
        for extra in ({}, {"allow_pickle": False}):
            with pytest.raises(ConfigError) as info:
                _images(tmp_path / "refused", {**spec, **extra})
            assert str(info.value) == (
                "checkpoints[0].path: tiny.ckpt is a pickle checkpoint, which can run code when loaded; set "
                "allow_pickle: true for this checkpoint if you trust it, or convert it to .safetensors"
            )
    assert not (tmp_path / "refused" / "out").exists()

    images = _images(tmp_path / "run", {**spec, "allow_pickle": True})
    reference = _images(tmp_path / "ref", {"name": "old", "path": str(tiny_random_path())})
    assert_same_images(images, reference, atol=0)


def test_single_file_offline_without_config_is_one_clear_error(tmp_path: Path, single_file: Path) -> None:
    with pytest.raises(SdevalError, match=r"offline, set `config:` to a local diffusers folder") as info:
        _images(tmp_path, {"name": "sf", "path": str(single_file)})
    assert "\n" not in str(info.value)


def test_corrupt_single_file_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "broken.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(SdevalError, match=r"^checkpoint 'b': .*broken.safetensors is not a readable checkpoint"):
        _images(tmp_path, {"name": "b", "path": "broken.safetensors", "config": str(tiny_random_path())})
