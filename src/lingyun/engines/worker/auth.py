"""The worker refuses every caller but its gateway: a bearer secret on every request.

Without it anyone who can reach the replica's port (any local user for a 127.0.0.1 replica,
anything on the cluster network for a Ray replica) could call the model directly and bypass
keys, limits and billing. The secret comes from the supervisor through the environment
(``serving/replica_auth.py``); a pure ASGI middleware, so no route can forget it, and a
constant-time comparison, so timing does not leak it byte by byte.
"""

from __future__ import annotations

import hmac
import json

from starlette.types import ASGIApp, Receive, Scope, Send

_REFUSAL = json.dumps(
    {
        "error": {
            "message": "This replica answers only its gateway.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
).encode()


class RequireSecret:
    """Answers 401 to any HTTP request whose ``Authorization`` is not ``Bearer <secret>``."""

    def __init__(self, app: ASGIApp, secret: str) -> None:
        if not secret:
            raise ValueError("the replica secret must not be empty")
        self.app = app
        self._expected = f"Bearer {secret}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._allowed(scope):
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"www-authenticate", b"Bearer"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": _REFUSAL})
            return
        await self.app(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                return hmac.compare_digest(value, self._expected)
        return False
