"""Every model a run needs, found before any work: `sdeval models`, the table behind it, the header and sha256
checks, the preference scorers' offline errors, and `sdeval bench` refusing a missing model before generating."""

from __future__ import annotations

import hashlib
import importlib.resources
import io
import json
import socket
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
import yaml
from click.testing import CliRunner
from safetensors.torch import save_file

from sdeval.cli import main
from sdeval.core import offline
from sdeval.core.errors import ConfigError, SdevalError
from sdeval.features import inception
from sdeval.features.inception import InceptionExtractor, find_standard_weights
from sdeval.judges.registry import JUDGES
from sdeval.metrics import registry
from sdeval.metrics.registry import Need
from sdeval.models.check import check_run_models, problems, run_models, verify
from sdeval.models.locate import header_problem
from sdeval.models.table import JUDGE_MODELS, NEED_MODELS, SCORER_MODELS, SLOTS, run_slots
from sdeval.options.score import ScoreOptions, options_from_mapping
from sdeval.preference import SCORERS, load_scorer
from sdeval.preference import weights as preference_weights

PAYLOAD = b"stand-in for the standard Inception weights"
CLIP_REPO = "timm/vit_large_patch14_clip_224.openai"
CLIP_FILE = "open_clip_pytorch_model.bin"


@pytest.fixture
def caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Empty torch hub, Hugging Face and sdeval caches for this test, offline, with no way out to the network."""
    folders = {name: tmp_path / name for name in ("torch-hub", "hf-cache", "sdeval-cache")}
    for folder in folders.values():
        folder.mkdir()
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(folders["torch-hub"]))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(folders["hf-cache"]))
    monkeypatch.setenv("SDEVAL_CACHE_DIR", str(folders["sdeval-cache"]))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

    def refuse(*args, **kwargs):
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    offline._reachable.cache_clear()
    return folders


@pytest.fixture
def standard_payload(monkeypatch: pytest.MonkeyPatch) -> bytes:
    """PAYLOAD stands in for the standard weights: their size and sha256 are the payload's."""
    monkeypatch.setattr(inception, "STANDARD_WEIGHTS_SIZE", len(PAYLOAD))
    monkeypatch.setattr(inception, "STANDARD_WEIGHTS_SHA256", hashlib.sha256(PAYLOAD).hexdigest())
    return PAYLOAD


def _put_in_hub_cache(cache: Path, repo_id: str, files: dict[str, bytes]) -> Path:
    """Lay files out as huggingface_hub caches a download (refs/main -> snapshots/<revision>/)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    revision = hashlib.sha1(repo_id.encode()).hexdigest()
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)
    return snapshot


def _torch_bytes(**kwargs) -> bytes:
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(3)}, buffer, **kwargs)
    return buffer.getvalue()


def _options(**values) -> ScoreOptions:
    metrics = values.pop("metrics", None)
    return options_from_mapping(values, images="", metrics=metrics, where="option")


# -- the table ---------------------------------------------------------------------------------------------------


def test_every_metric_judge_and_scorer_has_its_models_in_the_table() -> None:
    assert set(SCORER_MODELS) == set(SCORERS)
    assert set(JUDGE_MODELS) == set(JUDGES)
    for spec in registry.metrics():
        for need in spec.needs:  # every need is either model-free or in the table
            assert need in NEED_MODELS or need in (Need.PROMPTS, Need.REFERENCE, Need.INIT_IMAGES, Need.PREFERENCE,
                                                   Need.JUDGEMENTS), need  # fmt: skip
    used = run_slots(registry.names(), JUDGES)
    assert list(used) == list(SLOTS)  # every slot is needed by something, in table order
    # in registration order
    assert used["inception"] == ["fid", "kid", "is", "pr", "fid_inf", "vendi_inception", "dc", "sfid"]
    judged = ("adherence", "robustness", "geneval", "dsg", "tifa", "dpg", "t2i_compbench")  # every metric of judgements
    assert used["detector"] == [f"{name} (judge detector)" for name in judged]
    assert "aesthetic" in used["clip"] and "faithfulness" in used["clip"]
    assert run_slots(["adherence"], ["shapes"]) == {}


def test_cmmd_given_only_the_clip_model_is_one_row_used_by_both(caches: dict[str, Path]) -> None:
    rows = run_models(_options(metrics=("clip", "cmmd"), clip_model="ViT-B-32", clip_pretrained="openai"))
    assert [(row.label, row.used_by, row.slot.option) for row in rows] == [
        ("CLIP ViT-B-32 (openai)", ["clip", "cmmd"], "clip_pretrained")
    ]
    rows = run_models(_options(metrics=("clip", "cmmd")))
    assert [(row.label, row.used_by, row.slot.option) for row in rows] == [
        ("CLIP ViT-L-14 (openai)", ["clip"], "clip_pretrained"),
        ("CLIP ViT-L-14-336 (openai)", ["cmmd"], "cmmd_pretrained"),
    ]


# -- header checks -----------------------------------------------------------------------------------------------


def test_header_problem_reads_headers_without_unpickling(tmp_path: Path) -> None:
    good = tmp_path / "good.safetensors"
    save_file({"w": torch.ones(4, 4)}, str(good))
    assert header_problem(good) is None
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:-10])
    assert header_problem(cut) == f"a damaged safetensors file ({cut.stat().st_size:,} bytes, its header describes " \
                                  f"{good.stat().st_size:,})"  # fmt: skip
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"<html>not found</html>")
    assert header_problem(junk) == "not a safetensors file (its header length does not fit the file)"
    (tmp_path / "zip.pth").write_bytes(_torch_bytes())
    assert header_problem(tmp_path / "zip.pth") is None
    (tmp_path / "legacy.pth").write_bytes(_torch_bytes(_use_new_zipfile_serialization=False))
    assert header_problem(tmp_path / "legacy.pth") is None
    (tmp_path / "page.pth").write_bytes(b"<html>not found</html>")
    assert header_problem(tmp_path / "page.pth") == (
        "not a torch checkpoint (neither a zip nor a pickle: truncated or damaged?)"
    )
    (tmp_path / "config.json").write_text("{oops")
    assert header_problem(tmp_path / "config.json").startswith("not readable JSON")


# -- the standard Inception weights ------------------------------------------------------------------------------


def test_pytorch_fid_file_name_is_accepted_and_a_wrong_file_refused(
    caches: dict[str, Path], standard_payload: bytes
) -> None:
    folder = caches["torch-hub"] / "checkpoints"
    folder.mkdir()
    assert find_standard_weights() is None
    pytorch_fid = folder / "pt_inception-2015-12-05-6726825d.pth"
    pytorch_fid.write_bytes(standard_payload)
    assert find_standard_weights() == pytorch_fid
    assert InceptionExtractor().weights_path == pytorch_fid
    pytorch_fid.unlink()
    (folder / "weights-inception-2015-12-05-6726825d.pth").write_bytes(b"x" * len(standard_payload))
    with pytest.raises(SdevalError) as info:
        InceptionExtractor()
    sha = hashlib.sha256(b"x" * len(standard_payload)).hexdigest()
    assert str(info.value) == (
        f"{folder / 'weights-inception-2015-12-05-6726825d.pth'}: sha256 {sha[:12]}..., not the standard weights' "
        f"{hashlib.sha256(standard_payload).hexdigest()[:12]}...: delete it (it is downloaded again) or copy the "
        "standard file there (`sdeval models` says where), or pass --inception-weights PATH"
    )


def test_models_command_says_where_to_copy_the_inception_weights(
    caches: dict[str, Path], standard_payload: bytes
) -> None:
    target = caches["torch-hub"] / "checkpoints" / "weights-inception-2015-12-05-6726825d.pth"
    result = CliRunner().invoke(main, ["models", "--metrics", "fid,is", "--check"])
    assert result.exit_code == 2, result.output
    assert "Inception-v3 weights (standard): MISSING, cannot be downloaded now (HF_HUB_OFFLINE is set)" in result.output
    assert "  for:     fid, is\n" in result.output
    assert "  option:  --inception-weights (config: score.inception_weights)\n" in result.output
    assert f"  where:   {target}\n" in result.output
    assert f"to {target}, or pass a copy as --inception-weights" in result.output
    assert "pytorch-fid's pt_inception-2015-12-05-6726825d.pth is the same file" in result.output
    error = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and error[0].startswith("error: 1 problem(s) with the models this run needs: ")
    # Without --check the listing is all there is: exit 0.
    assert CliRunner().invoke(main, ["models", "--metrics", "fid"]).exit_code == 0
    target.parent.mkdir()
    target.write_bytes(standard_payload)
    result = CliRunner().invoke(main, ["models", "--metrics", "fid", "--check", "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert row["present"] is True and row["where"] == str(target) and row["problems"] == []
    assert row["options"] == ["--inception-weights"] and row["config_keys"] == ["score.inception_weights"]


def test_models_command_names_a_missing_local_file_and_a_damaged_one(caches: dict[str, Path], tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["models", "--metrics", "is", "--inception-weights", "/nope.pth", "--check"])
    assert result.exit_code == 2
    assert "error: 1 problem(s) with the models this run needs: --inception-weights: /nope.pth: no such file; " \
           "to put it in place: give a torch-fidelity Inception state dict" in result.output  # fmt: skip
    damaged = tmp_path / "inception.safetensors"
    damaged.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    result = CliRunner().invoke(main, ["models", "--metrics", "is", "--inception-weights", str(damaged)])
    assert result.exit_code == 0 and "Inception-v3 weights: PROBLEM" in result.output
    assert f"  problem: {damaged}: not a safetensors file (its header length does not fit" in result.output


def test_a_local_model_folder_is_present_and_a_folder_without_weights_is_not(
    caches: dict[str, Path], tmp_path: Path
) -> None:
    from transformers import Dinov2Config, Dinov2Model

    config = Dinov2Config(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                          image_size=28, patch_size=14)  # fmt: skip
    Dinov2Model(config).save_pretrained(tmp_path / "dinov2")
    result = CliRunner().invoke(main, ["models", "--metrics", "fd_dinov2", "--dinov2-model", str(tmp_path / "dinov2"),
                                       "--check"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"DINOv2 model {tmp_path / 'dinov2'}: present\n" in result.output
    (tmp_path / "dinov2" / "model.safetensors").unlink()
    (row,) = run_models(_options(metrics=("fd_dinov2",), dinov2_model=str(tmp_path / "dinov2")))
    assert row.problems == [f"{tmp_path / 'dinov2'}: no model.safetensors (or pytorch_model.bin) in it"]


# -- hub files: in the cache, checked, their sha256 recorded and compared -----------------------------------------


def test_cached_clip_tag_is_present_and_a_changed_file_is_caught(caches: dict[str, Path]) -> None:
    snapshot = _put_in_hub_cache(caches["hf-cache"], CLIP_REPO, {CLIP_FILE: _torch_bytes()})
    (row,) = run_models(_options(metrics=("clip",)))
    assert (row.label, row.present, row.where, row.problems) == (
        "CLIP ViT-L-14 (openai)", True, snapshot / CLIP_FILE, []
    )  # fmt: skip
    assert verify(row) == []  # first check: recorded
    records = json.loads((caches["sdeval-cache"] / "model-sha256.json").read_text())
    key = f"hub:models--timm--vit_large_patch14_clip_224.openai/snapshots/{snapshot.name}/{CLIP_FILE}"
    assert records[key]["sha256"] == hashlib.sha256(_torch_bytes()).hexdigest()
    (snapshot / CLIP_FILE).write_bytes(_torch_bytes(_use_new_zipfile_serialization=False))
    (row,) = run_models(_options(metrics=("clip",)))
    (changed,) = verify(row)
    assert "differs from the" in changed and "it had when first downloaded (damaged or replaced)" in changed
    result = CliRunner().invoke(main, ["models", "--metrics", "clip", "--check"])
    assert result.exit_code == 2 and "damaged or replaced" in result.output


def test_a_url_download_records_its_sha256(caches: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    url = "https://example.org/heads/head.safetensors"
    monkeypatch.setattr(offline, "offline_reason", lambda url=None: None)
    monkeypatch.setattr(preference_weights, "require_download", lambda *args, **kwargs: None)
    monkeypatch.setattr(preference_weights.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(b"head"))
    path = preference_weights.url_file(url, what="head", hint="", allow_pickle=False)
    records = json.loads((caches["sdeval-cache"] / "model-sha256.json").read_text())
    assert records[f"url:{url}"] == {"sha256": hashlib.sha256(b"head").hexdigest(), "size": 4}
    assert path == preference_weights.url_cache_path(url)


# -- preference scorers offline: the option named, what is missing before what would be refused --------------------


@pytest.mark.parametrize(
    ("name", "option"),
    [("imagereward", "--imagereward-model"), ("hps", "--hps-model"), ("pickscore", "--pickscore-model"),
     ("aesthetic", "--aesthetic-model")],
)  # fmt: skip
def test_scorer_offline_errors_name_the_option(caches: dict[str, Path], name: str, option: str) -> None:
    with pytest.raises(SdevalError, match="not available offline") as info:
        load_scorer(name)  # no allow_pickle: a missing file is reported as missing, not as a pickle
    assert f"as {option} PATH" in str(info.value) and "pickle" not in str(info.value)


def test_aesthetic_offline_lists_the_missing_head_before_the_refusal(caches: dict[str, Path]) -> None:
    (head,) = [row for row in run_models(_options(metrics=("aesthetic",))) if row.slot.key == "aesthetic"]
    missing, refused = problems(head, allow_pickle=False, name=lambda option: f"score.{option}")
    assert missing.startswith(
        "score.aesthetic_model: LAION aesthetic head is not on this machine (it cannot be downloaded now: "
        "HF_HUB_OFFLINE is set); to put it in place: download https://"
    )
    assert refused == (
        "score.aesthetic_model: sac+logos+ava1-l14-linearMSE.pth is a pickle file, which can run code when loaded: "
        "set score.allow_pickle: true to load it with torch.load(weights_only=True), or convert it to .safetensors"
    )
    assert problems(head, allow_pickle=True, name=str) == [missing.replace("score.aesthetic_model", "aesthetic_model")]


def test_run_check_names_config_keys(caches: dict[str, Path]) -> None:
    with pytest.raises(ConfigError) as info:
        check_run_models(_options(metrics=("is", "clip"), inception_weights="/nope.pth"))
    assert str(info.value).startswith(
        "score.inception_weights: /nope.pth: no such file; to put it in place: give a torch-fidelity Inception state "
        "dict (.pth or .safetensors) as score.inception_weights; score.clip_pretrained: CLIP ViT-L-14 (openai) is not "
        "on this machine (it cannot be downloaded now: HF_HUB_OFFLINE is set)"
    )
    check_run_models(_options(metrics=("adherence",), judge="shapes"))  # nothing to load: nothing to say


# -- sdeval bench: refused before an image is generated ------------------------------------------------------------


def _bench_config(folder: Path, **score) -> Path:
    """The shipped calibration example, also asking for the Inception Score, with `score` options."""
    data = yaml.safe_load((importlib.resources.files("sdeval.bench.examples") / "calibration.yaml").read_text())
    data.update(seeds_per_prompt=1, settings={"width": 64, "height": 64})
    data["metrics"] = ["adherence", "is"]
    data["score"].update(score)
    path = folder / "bench.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("score", "message"),
    [
        ({"inception_weights": "/nope.pth"},
         "error: score.inception_weights: /nope.pth: no such file; to put it in place: give a torch-fidelity "
         "Inception state dict (.pth or .safetensors) as score.inception_weights"),
        ({"judge": "clip"},
         "error: score.inception_weights: Inception-v3 weights (standard) is not on this machine (it cannot be "
         "downloaded now: HF_HUB_OFFLINE is set); to put it in place: copy weights-inception-2015-12-05-6726825d.pth"),
        ({"judge": "clip", "inception_weights": "weights.safetensors"},
         "error: score.clip_pretrained: CLIP ViT-L-14 (openai) is not on this machine (it cannot be downloaded now: "
         "HF_HUB_OFFLINE is set); to put it in place: copy the folder models--timm--vit_large_patch14_clip_224.openai "
         "from the Hugging Face cache of a machine that has it into"),
    ],
)  # fmt: skip
def test_bench_refuses_a_missing_model_before_generating(
    caches: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, score: dict, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    save_file({"w": torch.ones(2)}, str(tmp_path / "weights.safetensors"))  # reads as a file; never loaded here
    config = _bench_config(tmp_path, **score)
    result = CliRunner().invoke(main, ["bench", str(config), "--quiet"])
    assert result.exit_code == 2, result.output
    (error,) = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert error.startswith(message), error
    assert "generate:" not in result.output and not (tmp_path / "out").exists()  # no image was generated
