"""What the gateway may call and with which secret: checks applied when a deployment loads.

Whoever can write a deployment (the config file, ``lingyun deploy``, the admin API) chooses a
URL the gateway will POST to and the environment variable whose value it sends there. Left
open, that is a way to read any secret of the gateway's environment (``api_key_env:
DATABASE_PASSWORD`` with ``base_url`` pointing at one's own server) and to make the gateway
fetch internal addresses. So:

* ``base_url``: ``http``/``https`` only, a host, no ``user:password@`` (credentials in URLs
  end up in logs and error messages; use ``api_key_env``), no query or fragment. Operators who
  want a closed list set ``LINGYUN_OUTBOUND_ALLOW`` to comma-separated host names and CIDRs
  (``api.openai.com,10.0.0.0/8``); any other host is then refused.
* ``api_key_env``: ``LINGYUN_UPSTREAM_*``, or a provider's conventional name
  (``DASHSCOPE_API_KEY`` and the others of ``presets.py``).
* Logs show URLs through ``redact_url``, which drops userinfo, query and fragment.

Each refusal is a ``ValueError`` saying what to change, raised from ``DeploymentConfig``'s
validators, so a bad deployment never loads. (The relay also never follows redirects:
``gateway/relay.py``.)
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

KEY_ENV_PREFIX = "LINGYUN_UPSTREAM_"
ALLOW_ENV = "LINGYUN_OUTBOUND_ALLOW"


def conventional_key_envs() -> frozenset[str]:
    from lingyun.engines.upstream.presets import PRESETS

    return frozenset(p.api_key_env for p in PRESETS.values())


def check_key_env(name: str) -> str:
    """``name`` if a deployment may send that variable's value upstream; else ValueError."""
    allowed = conventional_key_envs()
    if (name.startswith(KEY_ENV_PREFIX) and len(name) > len(KEY_ENV_PREFIX)) or name in allowed:
        return name
    raise ValueError(
        f"api_key_env {name!r} is not allowed: name a variable starting with "
        f"{KEY_ENV_PREFIX} (e.g. {KEY_ENV_PREFIX}TEAM_B) or one of {sorted(allowed)}; "
        "other variables of the gateway's environment are never sent upstream"
    )


def check_base_url(url: str, environ: Mapping[str, str] | None = None) -> str:
    """``url`` without a trailing slash if the gateway may call it; else ValueError."""
    parts = urlsplit(url)
    shown = redact_url(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"base_url {shown!r} must be an http(s) URL such as http://gpu-node-1:8000/v1"
        )
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValueError(
            f"base_url {shown!r} must not carry credentials (user:password@); put the key in "
            f"an environment variable named by api_key_env ({KEY_ENV_PREFIX}...)"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"base_url {shown!r} must not have a query or a fragment")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError(f"base_url {shown!r} has an invalid port") from None
    allow = _allow_list(environ if environ is not None else os.environ)
    if allow is not None and not _host_allowed(parts.hostname, allow):
        raise ValueError(
            f"base_url {shown!r}: host {parts.hostname!r} is not in {ALLOW_ENV}; add it "
            "(a host name or a CIDR) or choose an allowed host"
        )
    return url.rstrip("/")


def redact_url(url: str) -> str:
    """``url`` fit for logs and messages: scheme, host, port and path only."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<invalid url>"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _allow_list(environ: Mapping[str, str]) -> list[str] | None:
    raw = environ.get(ALLOW_ENV, "").strip()
    if not raw:
        return None
    return [item.strip().lower() for item in raw.split(",") if item.strip()]


def _host_allowed(host: str, allow: list[str]) -> bool:
    host = host.lower().rstrip(".")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in allow:
        if address is not None and "/" in entry:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
        elif host == entry.rstrip("."):
            return True
    return False
