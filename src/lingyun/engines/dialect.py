"""How an OpenAI-compatible peer deviates from OpenAI: auth, model ids, error bodies.

Our own workers, vLLM and llama.cpp speak plain OpenAI (``OPENAI_DIALECT``); each public
cloud preset subclasses ``Dialect`` in ``engines/upstream``. The relay calls these hooks at
its edge so the rest of the gateway only ever sees ``LingyunError``.
"""

from __future__ import annotations

import json
from typing import Any

from lingyun.errors import LingyunError, UpstreamError, error_for_status


class Dialect:
    name = "openai"
    # Ask for usage on every stream chunk (vLLM's ``continuous_usage_stats``; our worker has
    # it too), so a stream cut off by a client or a crash is still metered exactly. Servers
    # that might reject the unknown option (public clouds) turn it off.
    continuous_usage = True

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"}

    def translate_error(self, status: int, body: bytes) -> LingyunError:
        """Map a non-2xx response to our error tree, keeping the peer's message. A peer that
        refuses our credentials is the operator's fault (a replica secret or API key the
        gateway holds), never the client's: it is a 502, not the client's 401."""
        if status in (401, 403, 407):
            return UpstreamError(
                f"The model backend refused the gateway's credentials (HTTP {status}).",
                code="upstream_auth_failed",
            )
        message, code, param = _openai_error_fields(body)
        cls = error_for_status(status)
        if status >= 500 or cls.status_code >= 500:
            message = f"The model backend failed: {message or f'HTTP {status}'}"
        return cls(message or f"Upstream answered HTTP {status}.", code=code, param=param)

    def inband_error(self, payload: dict[str, Any]) -> LingyunError | None:
        """An error carried in a 2xx body or stream chunk (OpenAI sends ``{"error": ...}``)."""
        err = payload.get("error")
        if isinstance(err, dict):
            body = json.dumps(payload).encode()
            status = 429 if err.get("code") in ("rate_limit_exceeded",) else 502
            return self.translate_error(status, body)
        return None


def _openai_error_fields(body: bytes) -> tuple[str | None, str | None, str | None]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        text = body.decode("utf-8", "replace").strip()
        return (text[:500] or None), None, None
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        code = err.get("code")
        return (
            str(err.get("message")) if err.get("message") is not None else None,
            str(code) if code is not None else None,
            str(err["param"]) if err.get("param") is not None else None,
        )
    if isinstance(err, str):
        return err, None, None
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return data["message"], None, None
    return None, None, None


OPENAI_DIALECT = Dialect()
