"""Fail fast, before a download is attempted, when downloads cannot work (offline flag set, host unreachable).

Without this, the libraries retry an unreachable host for half a minute or more and then fail with a message
that does not say what to do; here the user gets one line naming the model and the option that avoids the
download.
"""

from __future__ import annotations

import os
import socket
import threading
import urllib.request
from functools import cache
from urllib.parse import urlsplit

from sdeval.core.errors import SdevalError

#: Environment variables that forbid downloads: the Hugging Face ones, and sdeval's own.
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "DIFFUSERS_OFFLINE", "SDEVAL_OFFLINE")
#: Seconds the probe of a host may take, name lookup included.
PROBE_TIMEOUT_S = 3.0
_TRUE = {"1", "ON", "YES", "TRUE"}
_DEFAULT_HUB = "https://huggingface.co"


def hub_url() -> str:
    """The Hugging Face Hub endpoint downloads come from (HF_ENDPOINT, else huggingface.co)."""
    try:
        from huggingface_hub import constants

        return str(constants.ENDPOINT)
    except ImportError:
        return os.environ.get("HF_ENDPOINT", _DEFAULT_HUB).rstrip("/")


def offline_flag() -> str | None:
    """The name of the offline variable that is set to a true value, or None when downloads are allowed."""
    for name in OFFLINE_VARIABLES:
        if os.environ.get(name, "").strip().upper() in _TRUE:
            return name
    try:
        from huggingface_hub import constants
    except ImportError:
        return None
    # Read once at import by huggingface_hub, and what its downloads obey even if the variable changed since.
    return "HF_HUB_OFFLINE" if constants.HF_HUB_OFFLINE else None


def offline_reason(url: str | None = None) -> str | None:
    """Why a download from `url`'s host (default: the hub) cannot work now, or None when it may."""
    flag = offline_flag()
    if flag is not None:
        return f"{flag} is set"
    host, port = _endpoint(url or hub_url())
    if not host:
        return None
    # Behind a proxy the host itself may be unreachable while downloads work: probe the proxy instead.
    proxy = _proxy_for(url or hub_url(), host)
    probe_host, probe_port = proxy if proxy is not None else (host, port)
    if _reachable(probe_host, probe_port):
        return None
    via = f" through the proxy {probe_host}:{probe_port}" if proxy is not None else ""
    return f"cannot reach {host}{via}"


def require_download(what: str, hint: str, url: str | None = None) -> None:
    """Raise a one-line SdevalError when `what` cannot be downloaded from `url`'s host (default: the hub).

    Call it only when the thing is not available locally; `hint` says how to give it as a local path.
    """
    reason = offline_reason(url)
    if reason is not None:
        raise SdevalError(
            f"{what} is not available offline: it must be downloaded once ({reason}) or given as a local path: {hint}"
        )


def _endpoint(url: str) -> tuple[str, int]:
    parts = urlsplit(url if "//" in url else f"https://{url}")
    try:
        port = parts.port
    except ValueError:  # a malformed port: let the download report it
        port = None
    default = 80 if parts.scheme == "http" else 1080 if parts.scheme.startswith("socks") else 443
    return parts.hostname or "", port or default


def _proxy_for(url: str, host: str) -> tuple[str, int] | None:
    proxies = urllib.request.getproxies()
    proxy = proxies.get(urlsplit(url).scheme or "https") or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    proxy_host, proxy_port = _endpoint(proxy)
    return (proxy_host, proxy_port) if proxy_host else None


@cache
def _reachable(host: str, port: int) -> bool:
    """Whether a TCP connection to host:port opens within PROBE_TIMEOUT_S; cached for the process.

    The attempt runs in a daemon thread because the name lookup has no timeout of its own (a dead resolver
    can block it for tens of seconds); a lookup that outlives the wait counts as unreachable.
    """
    result: list[bool] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=attempt, name="sdeval-offline-probe", daemon=True)
    thread.start()
    thread.join(PROBE_TIMEOUT_S)
    return bool(result and result[0])
