"""Offline (HF_HUB_OFFLINE set, or the host unreachable), a model that is not cached fails in seconds with one line
naming it and the option that gives it as a local path. These tests never touch the real network."""

from __future__ import annotations

import hashlib
import io
import logging
import shutil
import socket
import threading
import time
from pathlib import Path
from urllib.error import URLError
from urllib.parse import urlsplit

import huggingface_hub.constants
import pytest
import torch
from click.testing import CliRunner
from generate_fixtures import sdeval_cache_fixture  # noqa: F401  (registers the sdeval_cache fixture)
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

from sdeval.cli import main
from sdeval.core import offline
from sdeval.core.errors import SdevalError
from sdeval.features import inception
from sdeval.features.clip import ClipEmbedder, _Download, _weights_download
from sdeval.features.inception import InceptionExtractor
from sdeval.generate.config import CheckpointSpec
from sdeval.generate.pipelines import LoadOptions, load_pipeline
from sdeval.score.demo import make_image_set

# The checks must answer in seconds; the libraries' own retries took 29 s (hub) and 51 s (CLIP).
FAST_S = 10.0
HUB_ID = "someone/not-cached-model"
CLIP_TAG = ("ViT-B-32", "laion2b_s34b_b79k")
INCEPTION_FILE = URL_INCEPTION_V3.rsplit("/", 1)[-1]
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection beyond this machine fails at once, whatever the code under test does."""
    real_getaddrinfo = socket.getaddrinfo

    def local_only(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost"):
            raise socket.gaierror(socket.EAI_NONAME, f"network disabled in tests ({host})")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", local_only)
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    offline._reachable.cache_clear()


@pytest.fixture
def flag_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture
def unreachable(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """No offline flag, and every host unreachable; returns the probed (host, port) pairs."""
    for name in offline.OFFLINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    probed: list[tuple[str, int]] = []

    def probe(host: str, port: int) -> bool:
        probed.append((host, port))
        return False

    monkeypatch.setattr(offline, "_reachable", probe)
    return probed


@pytest.fixture
def empty_torch_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """torch.hub's folder is empty (no checkpoints/ yet): the standard Inception weights are not there."""
    hub = tmp_path / "torch-hub"
    hub.mkdir()
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    return hub


def _fails_fast(load, *args, **kwargs) -> tuple[str, float]:
    start = time.monotonic()
    with pytest.raises(SdevalError) as info:
        load(*args, **kwargs)
    elapsed = time.monotonic() - start
    message = str(info.value)
    assert "\n" not in message
    assert elapsed < FAST_S, f"took {elapsed:.1f} s: {message}"
    return message, elapsed


def _hub_spec() -> CheckpointSpec:
    return CheckpointSpec(name="remote", path=HUB_ID, kind="hub", location=HUB_ID)


def _load_hub_checkpoint(spec: CheckpointSpec) -> None:
    load_pipeline(spec, "fp32", LoadOptions(pipeline="text2image", device="cpu"))


# -- the probe ----------------------------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_probe_tells_a_listening_port_from_a_closed_one(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in offline.OFFLINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    closed = _closed_port()
    assert offline.offline_reason(f"https://127.0.0.1:{closed}/weights.pth") == "cannot reach 127.0.0.1"
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert offline.offline_reason(f"http://127.0.0.1:{server.getsockname()[1]}/x") is None


def test_probe_of_a_host_behind_a_proxy_goes_to_the_proxy(monkeypatch: pytest.MonkeyPatch, unreachable) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    reason = offline.offline_reason("https://example.org/x")
    assert reason == "cannot reach example.org through the proxy 127.0.0.1:3128"
    assert unreachable == [("127.0.0.1", 3128)]


def test_probe_gives_up_after_its_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    # A name lookup can hang far longer than any connect timeout; the probe does not wait for it.
    release = threading.Event()

    def hang(*args, **kwargs):
        release.wait(30)
        raise OSError("released")

    monkeypatch.setattr(socket, "create_connection", hang)
    monkeypatch.setattr(offline, "PROBE_TIMEOUT_S", 0.2)
    start = time.monotonic()
    try:
        assert offline._reachable("hanging.invalid", 443) is False
    finally:
        release.set()
    assert time.monotonic() - start < 2


def test_each_offline_variable_counts(monkeypatch: pytest.MonkeyPatch, unreachable) -> None:
    monkeypatch.setattr(offline, "_reachable", lambda host, port: True)
    assert offline.offline_reason() is None
    for name in offline.OFFLINE_VARIABLES:
        monkeypatch.setenv(name, "yes")
        assert offline.offline_reason() == f"{name} is set"
        monkeypatch.delenv(name)


# -- hub checkpoint (sdeval generate) --------------------------------------------------------------------------


def test_hub_checkpoint_offline_fails_fast_naming_the_config_key(flag_set) -> None:
    message, _ = _fails_fast(_load_hub_checkpoint, _hub_spec())
    assert message == (
        f"checkpoint 'remote' (hub id {HUB_ID}) is not available offline: it must be downloaded once "
        "(HF_HUB_OFFLINE is set) or given as a local path: set checkpoints[].path in the config to a local "
        "diffusers folder or a .safetensors file"
    )


def test_hub_checkpoint_with_the_hub_unreachable_fails_fast(unreachable) -> None:
    message, _ = _fails_fast(_load_hub_checkpoint, _hub_spec())
    host = urlsplit(offline.hub_url()).hostname
    assert f"(cannot reach {host})" in message
    assert "checkpoints[].path" in message
    assert unreachable == [(host, urlsplit(offline.hub_url()).port or 443)]


def test_cached_hub_checkpoint_loads_without_any_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unreachable, sdeval_cache: Path
) -> None:
    # A hub id already in the Hugging Face cache needs no download: it loads with the hub unreachable.
    from sdeval.generate.tiny import tiny_random_path

    repo = tmp_path / "hf-cache" / "models--someone--cached-model"
    commit = "0" * 40
    shutil.copytree(tiny_random_path(), repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    spec = CheckpointSpec(name="cached", path="someone/cached-model", kind="hub", location="someone/cached-model")
    loaded = load_pipeline(spec, "fp32", LoadOptions(pipeline="text2image", device="cpu"))
    assert loaded.native_size[0] > 0
    assert unreachable == []


# -- CLIP weights from an open_clip tag ------------------------------------------------------------------------


def test_clip_tag_offline_fails_fast_naming_the_flag(tmp_path: Path, flag_set, caplog) -> None:
    message, _ = _fails_fast(ClipEmbedder.load, *CLIP_TAG, cache_dir=str(tmp_path))
    # open_clip's own log line about the failed download would be a second, longer line on stderr.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert message == (
        "CLIP model 'ViT-B-32' with weights 'laion2b_s34b_b79k' is not available offline: it must be downloaded once "
        "(HF_HUB_OFFLINE is set) or given as a local path: pass a local weights file as --clip-pretrained PATH "
        "(or --cmmd-pretrained PATH)"
    )


def test_clip_tag_with_the_hub_unreachable_fails_fast(tmp_path: Path, unreachable) -> None:
    message, _ = _fails_fast(ClipEmbedder.load, *CLIP_TAG, cache_dir=str(tmp_path))
    assert f"(cannot reach {urlsplit(offline.hub_url()).hostname})" in message
    assert "--clip-pretrained PATH" in message


def test_clip_weights_in_the_cache_need_no_download(tmp_path: Path) -> None:
    import open_clip

    cfg = open_clip.get_pretrained_cfg(*CLIP_TAG)
    assert _weights_download(cfg, str(tmp_path)) is not None
    # The hub cache layout: a snapshot per commit, and refs/main naming the one `main` points to.
    repo = tmp_path / "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K"
    (repo / "snapshots" / "1" / "open_clip_model.safetensors").parent.mkdir(parents=True)
    (repo / "snapshots" / "1" / "open_clip_model.safetensors").write_bytes(b"")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("1")
    assert _weights_download(cfg, str(tmp_path)) is None
    # A tag with only a URL is downloaded into the cache folder under the URL's file name.
    by_url = {"url": "https://example.org/clip/ViT-X.pt"}
    assert _weights_download(by_url, str(tmp_path)) == _Download("https://example.org/clip/ViT-X.pt", via_hub=False)
    (tmp_path / "ViT-X.pt").write_bytes(b"")
    assert _weights_download(by_url, str(tmp_path)) is None


# -- standard Inception weights --------------------------------------------------------------------------------


def test_inception_weights_offline_fail_fast_naming_the_flag(empty_torch_hub: Path, flag_set) -> None:
    message, _ = _fails_fast(InceptionExtractor)
    assert message == (
        f"Inception weights file {INCEPTION_FILE} is not available offline: it must be downloaded once "
        "(HF_HUB_OFFLINE is set) or given as a local path: pass --inception-weights PATH"
    )
    assert not any(empty_torch_hub.rglob("*"))


def test_inception_weights_with_github_unreachable_fail_fast(empty_torch_hub: Path, unreachable) -> None:
    message, _ = _fails_fast(InceptionExtractor)
    assert message.startswith(f"Inception weights file {INCEPTION_FILE} is not available offline")
    assert "(cannot reach github.com)" in message
    assert unreachable == [("github.com", 443)]


def test_failed_inception_download_leaves_no_partial_file(
    empty_torch_hub: Path, unreachable, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The host answered the probe but the download broke: one line, and no temporary file left or named.
    monkeypatch.setattr(offline, "_reachable", lambda host, port: True)

    def broken(*args, **kwargs):
        raise URLError(OSError(104, "Connection reset by peer"))

    monkeypatch.setattr(torch.hub, "urlopen", broken)
    message, _ = _fails_fast(InceptionExtractor)
    assert message == (
        f"could not download Inception weights file {INCEPTION_FILE} from github.com into "
        f"{empty_torch_hub / 'checkpoints'}: Connection reset by peer; pass --inception-weights PATH"
    )
    assert ".partial" not in message
    assert list((empty_torch_hub / "checkpoints").iterdir()) == []


def test_inception_download_creates_the_checkpoints_folder(
    empty_torch_hub: Path, unreachable, monkeypatch: pytest.MonkeyPatch
) -> None:
    # torch.hub's download does not create the folder: without it, a first run failed on its temporary file.
    monkeypatch.setattr(offline, "_reachable", lambda host, port: True)
    payload = b"not really weights"

    class Response(io.BytesIO):
        def info(self):
            return Headers({"Content-Length": str(len(payload))})

    class Headers(dict):
        def get_all(self, key):
            return [self[key]] if key in self else None

    monkeypatch.setattr(torch.hub, "urlopen", lambda request: Response(payload))
    # The download is checked against the standard file's size and sha256: here the payload stands in for it.
    monkeypatch.setattr(inception, "STANDARD_WEIGHTS_SIZE", len(payload))
    monkeypatch.setattr(inception, "STANDARD_WEIGHTS_SHA256", hashlib.sha256(payload).hexdigest())
    extractor = InceptionExtractor()
    assert extractor.weights_path == empty_torch_hub / "checkpoints" / INCEPTION_FILE
    assert extractor.weights_path.read_bytes() == payload
    assert [p.name for p in (empty_torch_hub / "checkpoints").iterdir()] == [INCEPTION_FILE]


def test_cli_score_without_inception_weights_offline_is_one_line(
    tmp_path: Path, empty_torch_hub: Path, flag_set
) -> None:
    folder = tmp_path / "images"
    make_image_set(folder, 12, seed=0)
    start = time.monotonic()
    result = CliRunner().invoke(main, ["score", str(folder), "--metrics", "is", "--no-cache", "--workers", "0"])
    elapsed = time.monotonic() - start
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert lines == [
        f"error: Inception weights file {INCEPTION_FILE} is not available offline: it must be downloaded once "
        "(HF_HUB_OFFLINE is set) or given as a local path: pass --inception-weights PATH"
    ]
    assert elapsed < FAST_S


def test_the_inception_download_url_is_torch_fidelitys() -> None:
    """sdeval says the URL itself (a warm run must not import torch-fidelity to name it): it is the library's."""
    from sdeval.features import inception

    assert inception.URL_INCEPTION_V3 == URL_INCEPTION_V3
