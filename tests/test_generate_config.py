"""Config validation: good configs load, bad ones give one clear line that names the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from generate_fixtures import write_config

from sdeval.cli import main
from sdeval.core.errors import ConfigError
from sdeval.generate.config import load_config

MINIMAL_YAML = """\
checkpoints:
  - {name: tiny, path: tiny-random}          # or a folder, a hub id, a .safetensors file
pipeline: text2image
suite: prompts.jsonl
seeds_per_prompt: 2
base_seed: 0
settings: {guidance_scale: [3.0, 7.5], num_inference_steps: 4, width: 64, height: 64, scheduler: ddim}
batch_size: 2
output_dir: out
device: cpu
"""


def test_minimal_config_loads_as_written(tmp_path: Path) -> None:
    (tmp_path / "prompts.jsonl").write_text('{"id": "p1", "prompt": "a cat"}\n')
    (tmp_path / "c.yaml").write_text(MINIMAL_YAML)
    cfg = load_config(tmp_path / "c.yaml")
    assert [s.guidance_scale for s in cfg.settings] == [3.0, 7.5]
    assert {s.scheduler for s in cfg.settings} == {"ddim"}
    assert cfg.suite == tmp_path / "prompts.jsonl"  # relative to the config's folder
    assert cfg.output_dir == tmp_path / "out"
    assert cfg.checkpoints[0].kind == "builtin"
    assert cfg.seeds_per_prompt == 2 and cfg.batch_size == 2


def test_toml_and_yaml_give_the_same_config_hash(tmp_path: Path) -> None:
    (tmp_path / "prompts.jsonl").write_text('{"id": "p1", "prompt": "a cat"}\n')
    (tmp_path / "c.yaml").write_text(MINIMAL_YAML)
    (tmp_path / "c.toml").write_text(
        'pipeline = "text2image"\nsuite = "prompts.jsonl"\nseeds_per_prompt = 2\nbase_seed = 0\n'
        'batch_size = 2\noutput_dir = "out"\ndevice = "cpu"\n'
        '[[checkpoints]]\nname = "tiny"\npath = "tiny-random"\n'
        "[settings]\nguidance_scale = [3.0, 7.5]\nnum_inference_steps = 4\nwidth = 64\nheight = 64\n"
        'scheduler = "ddim"\n'
    )
    assert load_config(tmp_path / "c.yaml").sha256 == load_config(tmp_path / "c.toml").sha256


def test_grid_expands_to_the_product(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        settings={
            "guidance_scale": [1.0, 5.0, 9.0],
            "num_inference_steps": [2, 3],
            "scheduler": ["ddim", "euler_a"],
        },
    )
    cfg = load_config(path)
    assert len(cfg.settings) == 12
    assert len(set(cfg.settings)) == 12


def _bad(tmp_path: Path, **overrides: object) -> str:
    path = write_config(tmp_path, **overrides)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_unknown_top_level_key_suggests_the_right_one(tmp_path: Path) -> None:
    assert _bad(tmp_path, batchsize=4) == "batchsize: unknown key (did you mean 'batch_size'?)"


def test_unknown_settings_key(tmp_path: Path) -> None:
    msg = _bad(tmp_path, settings={"cfg": 7})
    assert msg.startswith("settings.cfg: unknown key")


def test_wrong_type_names_the_key(tmp_path: Path) -> None:
    msg = _bad(tmp_path, settings={"guidance_scale": "high"})
    assert msg == "settings.guidance_scale: expected a number or a list of numbers, got 'high'"


@pytest.mark.parametrize(
    ("overrides", "starts"),
    [
        ({"suite": "missing.jsonl"}, "suite: no such file:"),
        (
            {"settings": {"scheduler": "eular_a"}},
            "settings.scheduler: unknown scheduler 'eular_a' (did you mean",
        ),
        ({"settings": {"num_inference_steps": 0}}, "settings.num_inference_steps: expected an integer >= 1"),
        ({"settings": {"width": 30, "height": 32}}, "settings.width: expected a multiple of 8"),
        ({"settings": {"width": 64}}, "settings.width: set width and height together"),
        ({"settings": {"strength": 0.5}}, "settings.strength: only used by pipeline: image2image"),
        ({"settings": {"dtype": "fp8"}}, "settings.dtype: expected one of auto, fp32, fp16, bf16"),
        ({"settings": {"guidance_scale": [7.5, 7.5]}}, "settings.guidance_scale: the list repeats a value"),
        (
            {"settings": {"scheduler": "dpmpp_sde"}},
            "settings.scheduler: scheduler 'dpmpp_sde' needs the 'torchsde'",
        ),
        ({"pipeline": "inpaint"}, "pipeline: expected one of text2image, image2image, got 'inpaint'"),
        ({"batch_size": 0}, "batch_size: expected an integer >= 1, got 0"),
        ({"batch_size": True}, "batch_size: expected an integer >= 1, got True"),
        ({"seeds": [1, 2]}, "seeds: give either seeds or seeds_per_prompt"),
        ({"device": "gpu"}, "device: expected auto, cpu, cuda, cuda:N or mps, got 'gpu'"),
        ({"output_dir": None}, "output_dir: required key is missing"),
        ({"checkpoints": []}, "checkpoints: expected a non-empty list"),
        (
            {"checkpoints": [{"name": "a b", "path": "tiny-random"}]},
            "checkpoints[0].name: expected a folder-safe",
        ),
        (
            {"checkpoints": [{"name": "x", "path": "nothing/here.safetensors"}]},
            "checkpoints[0].path: no such file",
        ),
        ({"checkpoints": [{"name": "x", "path": "./nope"}]}, "checkpoints[0].path: no such file or folder"),
        (
            {"checkpoints": [{"name": "x", "path": "tiny-random", "lora_scale": "1"}]},
            "checkpoints[0].lora_scale:",
        ),
        (
            {"checkpoints": [{"name": "x", "path": "tiny-random"}, {"name": "x", "path": "tiny-random"}]},
            "checkpoints[1].name: duplicate checkpoint name 'x'",
        ),
        ({"compile": "yes"}, "compile: expected true or false, got 'yes'"),
        ({"init_images": "imgs"}, "init_images: only used by pipeline: image2image"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, overrides: dict, starts: str) -> None:
    msg = _bad(tmp_path, **overrides)
    assert msg.startswith(starts), msg


def test_pickle_checkpoint_needs_allow_pickle(tmp_path: Path) -> None:
    (tmp_path / "model.ckpt").write_bytes(b"not really a pickle")
    msg = _bad(tmp_path, checkpoints=[{"name": "old", "path": "model.ckpt"}])
    assert msg.startswith("checkpoints[0].path: model.ckpt is a pickle checkpoint")
    assert "allow_pickle: true" in msg
    # With the opt-in the config is accepted (loading happens later).
    path = write_config(tmp_path, checkpoints=[{"name": "old", "path": "model.ckpt", "allow_pickle": True}])
    assert load_config(path).checkpoints[0].is_pickle


def test_folder_without_model_index_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "notamodel").mkdir()
    msg = _bad(tmp_path, checkpoints=[{"name": "m", "path": "notamodel"}])
    assert msg.startswith("checkpoints[0].path:") and "no model_index.json" in msg


def test_hub_ids_are_accepted_without_network(tmp_path: Path) -> None:
    path = write_config(tmp_path, checkpoints=[{"name": "sd15", "path": "stable-diffusion-v1-5/stable-diffusion-v1-5"}])
    assert load_config(path).checkpoints[0].kind == "hub"


def test_lora_without_peft_is_a_clear_error(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    import importlib.util

    if importlib.util.find_spec("peft") is not None:
        pytest.skip("peft is installed")
    (tmp_path / "style.safetensors").write_bytes(b"")
    msg = _bad(tmp_path, checkpoints=[{"name": "m", "path": "tiny-random", "lora": "style.safetensors"}])
    assert msg == "checkpoints[0].lora: loading a LoRA needs the 'peft' package (pip install peft)"


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (['{"id": "a", "prompt": "x"}', "{not json"], "suite: prompts.jsonl:2: not valid JSON"),
        (
            ['{"id": "a", "prompt": "x"}', '{"id": "a", "prompt": "y"}'],
            "suite: prompts.jsonl:2: id 'a' repeats line 1",
        ),
        (['{"prompt": "x"}'], "suite: prompts.jsonl:1: missing 'id'"),
        (['{"id": "a/b", "prompt": "x"}'], "suite: prompts.jsonl:1: id: expected a file-name-safe id"),
        (['{"id": "a", "prompt": "x", "seed": 3}'], "suite: prompts.jsonl:1: unknown key 'seed'"),
        ([], "suite: prompts.jsonl: holds no prompts"),
    ],
)
def test_bad_suites_name_the_line(tmp_path: Path, lines: list[str], expected: str) -> None:
    from sdeval.generate.suite import load_suite

    path = write_config(tmp_path)
    (tmp_path / "prompts.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as info:
        load_suite(load_config(path).suite)
    assert str(info.value).startswith(expected), str(info.value)


def test_image2image_without_init_images_is_a_clear_error(tmp_path: Path) -> None:
    from sdeval.generate.suite import load_suite

    cfg = load_config(write_config(tmp_path, pipeline="image2image"))
    with pytest.raises(ConfigError, match=r"^suite: prompts.jsonl:1: init_image: image2image needs an init image"):
        load_suite(cfg.suite, need_init_images=True, init_images=cfg.init_images)


def test_cli_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    path = write_config(tmp_path, settings={"scheduler": "nope"})
    result = CliRunner().invoke(main, ["generate", str(path)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: settings.scheduler: unknown scheduler 'nope'")


def test_cli_missing_config_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["generate", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: config: no such file: {tmp_path / 'none.yaml'}"


def test_cli_unparseable_yaml(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("checkpoints: [\n")
    result = CliRunner().invoke(main, ["generate", str(tmp_path / "c.yaml")])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: config: c.yaml: line 2, column 1: not valid YAML: ")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "run.yaml",
            "suite: prompts.jsonl\noutput_dir: out\nseeds: [1, 2\nbatch_size: 2\n",
            "config: run.yaml: line 4, column 11: not valid YAML: expected ',' or ']', but got ':' "
            "(while parsing a flow sequence at line 3, column 8)",
        ),
        (
            "run.yaml",
            "suite: prompts.jsonl\noutput_dir: out\ndevice: cpu: 0\n",
            "config: run.yaml: line 3, column 12: not valid YAML: mapping values are not allowed here",
        ),
        (
            "run.yaml",
            "suite: prompts.jsonl\ndevice: 'c\x01pu'\n",
            "config: run.yaml: line 2, column 11: not valid YAML: unacceptable character U+0001: "
            "special characters are not allowed",
        ),
        (
            "run.toml",
            'suite = "prompts.jsonl"\n[settings]\nwidth = \n',
            "config: run.toml: line 3, column 9: not valid TOML: Invalid value",
        ),
        (
            "run.toml",
            'suite = "prompts.jsonl',  # tomllib gives no line for this one: nothing is made up
            "config: run.toml: not valid TOML: Unterminated string (at end of document)",
        ),
        (
            "run.json",
            '{\n  "suite": "prompts.jsonl",\n  "output_dir": "out",\n}\n',
            "config: run.json: line 4, column 1: not valid JSON: Expecting property name enclosed in double quotes",
        ),
    ],
)
def test_syntax_errors_give_line_and_column(tmp_path: Path, name: str, text: str, message: str) -> None:
    (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / name)
    assert str(info.value) == message


def test_normalized_config_is_json(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path))
    data = cfg.to_dict()
    assert data["settings"]["guidance_scale"] == [7.5]
    assert json.loads(json.dumps(data)) == data
    assert yaml.safe_dump(data)  # round-trippable for the run record
