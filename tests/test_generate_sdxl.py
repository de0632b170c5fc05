"""SDXL through the same code path (AutoPipeline picks the SDXL classes), with a tiny SDXL-shaped model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from generate_fixtures import (
    assert_same_images,
    build_tiny_sdxl,
    load_images,
    manifest_rows,
    sdeval_cache_fixture,  # noqa: F401  (registers the sdeval_cache fixture)
    write_config,
)

from sdeval.generate.config import load_config
from sdeval.generate.runner import run_generate

pytestmark = pytest.mark.usefixtures("sdeval_cache")
PROMPTS = [
    {"id": "a", "prompt": "a red cube"},
    {"id": "b", "prompt": "a cat", "negative_prompt": "blurry"},
    {"id": "c", "prompt": "a blue sphere", "negative_prompt": ""},
]


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory: pytest.TempPathFactory, sdeval_cache: Path) -> Path:
    return build_tiny_sdxl(tmp_path_factory.mktemp("sdxl") / "tiny-sdxl")


def _run(folder: Path, sdxl: Path, **overrides: object) -> dict[str, np.ndarray]:
    path = write_config(folder, prompts=PROMPTS, checkpoints=[{"name": "xl", "path": str(sdxl)}], **overrides)
    run_generate(load_config(path), progress=False)
    return load_images(folder / "out")


def test_autopipeline_picks_the_sdxl_classes(sdxl: Path) -> None:
    from sdeval.generate.config import CheckpointSpec
    from sdeval.generate.pipelines import LoadOptions, load_pipeline

    spec = CheckpointSpec(name="xl", path=str(sdxl), kind="folder", location=str(sdxl))
    for kind, cls in (("text2image", "StableDiffusionXLPipeline"), ("image2image", "StableDiffusionXLImg2ImgPipeline")):
        loaded = load_pipeline(spec, "fp32", LoadOptions(pipeline=kind, device="cpu"))
        assert type(loaded.pipe).__name__ == cls
        assert loaded.native_size == (64, 64)


def test_sdxl_text2image_is_batch_independent(tmp_path: Path, sdxl: Path) -> None:
    settings = {"num_inference_steps": 2, "width": 32, "height": 32, "scheduler": "euler_a"}
    batched = _run(tmp_path / "b3", sdxl, settings=settings, batch_size=3)
    single = _run(tmp_path / "b1", sdxl, settings=settings, batch_size=1)
    assert len(batched) == 6
    assert_same_images(batched, single)
    # None and "" negative prompts differ for SDXL (zeros vs encoded ""): a batch never mixes them.
    rows = {r["id"]: r for r in manifest_rows(tmp_path / "b3" / "out")}
    assert rows["a"]["negative_prompt"] is None and rows["c"]["negative_prompt"] == ""


def test_sdxl_image2image(tmp_path: Path, sdxl: Path) -> None:
    from PIL import Image

    (tmp_path / "init").mkdir()
    for i, pid in enumerate(("a", "b", "c")):
        Image.fromarray(np.full((40, 40, 3), 60 * i, np.uint8)).save(tmp_path / "init" / f"{pid}.png")
    settings = {"num_inference_steps": 3, "strength": 0.7, "width": 32, "height": 32}
    images = _run(tmp_path, sdxl, settings=settings, pipeline="image2image", init_images="init", batch_size=2)
    assert len(images) == 6 and all(a.shape == (32, 32, 3) for a in images.values())
