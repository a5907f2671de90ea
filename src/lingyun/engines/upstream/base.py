"""What every public-cloud dialect shares: read a provider's error body, classify it, raise ours.

Each provider module only declares a table ``{provider error code: Fault}``; this module turns
a response into an ``UpstreamFault`` (status, code, message, request id), looks the code up
(case-insensitively, then by dotted prefix, so ``Throttling.RateQuota`` falls back to
``Throttling``), falls back to the HTTP status, and builds the ``LingyunError``.

How faults map to our tree, and why:

    Fault          error                    status  code
    auth           UpstreamError            502     upstream_auth_failed
    permission     UpstreamError            502     upstream_permission_denied
    billing        UpstreamError            502     upstream_quota_exhausted
    model          UpstreamError            502     upstream_model_not_found
    server         UpstreamError            502     upstream_error
    unavailable    ServiceUnavailableError  503     service_unavailable
    timeout        UpstreamTimeoutError     504     upstream_timeout
    rate_limit     RateLimitError           429     rate_limit_exceeded
    content        InvalidRequestError      400     content_filter
    context        InvalidRequestError      400     context_length_exceeded
    bad_request    InvalidRequestError      400     (none; the provider's code is in the message)

* A provider rejecting *our* credential (or our account's access to a model, or our account's
  balance) is the operator's problem: the client's Lingyun key is fine and nothing the client
  changes will help. A 401 would tell the client to fix its key, and an OpenAI SDK would not
  retry or fail over; 502 says "the backend failed", which is true, lets the router try a
  fallback deployment, and the code tells the operator exactly what to fix. The upstream's own
  text is logged, not returned: such messages can echo part of the operator's key.
* Upstream rate limits stay 429 ``rate_limit_exceeded`` so fallbacks and client back-off work.
* Moderation refusals are 400 ``content_filter`` (Azure OpenAI's code): retrying elsewhere
  with the same prompt is pointless and the client should see that it was its content.
* Every message names the provider that answered, and the upstream request id when it gave one,
  so an operator can quote it to the provider's support.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

from lingyun.engines.dialect import Dialect
from lingyun.errors import (
    InvalidRequestError,
    LingyunError,
    RateLimitError,
    ServiceUnavailableError,
    UpstreamError,
    UpstreamTimeoutError,
)

logger = logging.getLogger(__name__)


class Fault(StrEnum):
    """Why an upstream refused, in terms of who must act (operator, client, nobody: retry)."""

    AUTH = "auth"
    PERMISSION = "permission"
    BILLING = "billing"
    MODEL = "model"
    SERVER = "server"
    UNAVAILABLE = "unavailable"
    TIMEOUT = "timeout"
    RATE_LIMIT = "rate_limit"
    CONTENT = "content"
    CONTEXT = "context"
    BAD_REQUEST = "bad_request"


@dataclass(frozen=True)
class UpstreamFault:
    """The fields every provider's error body carries under some name or other."""

    status: int
    code: str | None = None
    message: str | None = None
    param: str | None = None
    request_id: str | None = None
    # OpenAI-style ``type``: consulted when ``code`` is missing or unknown.
    type: str | None = None


def _status_fault(status: int) -> Fault:
    """The fallback when a provider's code is unknown to us: judge by the HTTP status."""
    if status == 401:
        return Fault.AUTH
    if status == 402:
        return Fault.BILLING
    if status == 403:
        return Fault.PERMISSION
    if status == 404:
        return Fault.MODEL
    if status in (408, 504):
        return Fault.TIMEOUT
    if status == 429:
        return Fault.RATE_LIMIT
    if status == 503:
        return Fault.UNAVAILABLE
    if 400 <= status < 500:
        return Fault.BAD_REQUEST
    return Fault.SERVER


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def parse_body(body: bytes) -> dict[str, Any] | None:
    """The JSON object in ``body``, or None when it is not one (HTML error pages, empty)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def fault_fields(status: int, data: dict[str, Any]) -> UpstreamFault | None:
    """Read the error shapes the Chinese clouds use; None when ``data`` holds no error.

    Shapes seen in their documentation:
    ``{"error": {"code", "message", "type", "param"}, "request_id"|"id"}`` (OpenAI style:
    DashScope, Ark, Qianfan v2, Hunyuan), ``{"error": "text"}`` (vLLM behind a gateway),
    ``{"error_code", "error_msg"}`` (Qianfan v1 codes, ModelArts), ``{"code", "msg"}`` (Qianfan
    rate-limit page) and ``{"object": "error", "message", "type", "code"}`` (vLLM, ModelArts).
    """
    request_id = _text(data.get("request_id") or data.get("id"))
    err = data.get("error")
    if isinstance(err, dict):
        return UpstreamFault(
            status,
            _text(err.get("code")),
            _text(err.get("message")),
            _text(err.get("param")),
            _text(err.get("request_id") or err.get("id")) or request_id,
            _text(err.get("type")),
        )
    if isinstance(err, str) and err:
        return UpstreamFault(status, None, err, None, request_id)
    error_code = data.get("error_code")
    if error_code not in (None, 0, "", "0"):
        return UpstreamFault(
            status, _text(error_code), _text(data.get("error_msg")), None, request_id
        )
    if data.get("object") == "error":
        code = _text(data.get("code")) if not isinstance(data.get("code"), int) else None
        return UpstreamFault(
            status, code, _text(data.get("message")), None, request_id, _text(data.get("type"))
        )
    code = data.get("code")
    # Some proxies wrap successes as {"code": 0 or 200, "msg": "success"}: not errors.
    failed = isinstance(code, int) and code != 0 and not 200 <= code < 300
    if failed and ("msg" in data or "message" in data):
        return UpstreamFault(status, str(code), _text(data.get("msg") or data.get("message")))
    return None


class ProviderDialect(Dialect):
    """A public cloud's OpenAI-compatible mode: Bearer auth plus a table of its error codes.

    Subclasses set ``name``, ``display_name`` and ``codes``; tables are keyed as the provider
    documents the code, matched case-insensitively.
    """

    continuous_usage = False

    name: str = "openai-compatible"
    display_name: str = "the upstream"
    codes: ClassVar[dict[str, Fault]] = {}

    def __init__(self, display_name: str | None = None) -> None:
        if display_name is not None:
            self.display_name = display_name
        self._codes = {k.lower(): v for k, v in self.codes.items()}

    # -- the Dialect hooks the relay calls ------------------------------------------------

    def translate_error(self, status: int, body: bytes) -> LingyunError:
        data = parse_body(body)
        fault = fault_fields(status, data) if data is not None else None
        if fault is None:
            text = body.decode("utf-8", "replace").strip()[:300] or None
            fault = UpstreamFault(status, None, text)
        return self.build(fault, self.classify(fault))

    def inband_error(self, payload: dict[str, Any]) -> LingyunError | None:
        """An error inside a 2xx body or stream chunk; classified by its code alone."""
        if "choices" in payload and "error" not in payload:
            return None  # the hot path: an ordinary completion or chunk
        fault = fault_fields(200, payload)
        if fault is None:
            return None
        return self.build(fault, self.classify(fault))

    # -- overridable steps ----------------------------------------------------------------

    def classify(self, fault: UpstreamFault) -> Fault:
        """The provider's code (then its error type) if we know it, else the HTTP status; a
        2xx with an unknown code counts as a server failure (the provider broke protocol)."""
        for name in (fault.code, fault.type):
            key = (name or "").lower()
            while key:
                if key in self._codes:
                    return self._codes[key]
                key = key.rpartition(".")[0]
        if 200 <= fault.status < 300:
            return Fault.SERVER
        return _status_fault(fault.status)

    def build(self, fault: UpstreamFault, kind: Fault) -> LingyunError:
        who = self.display_name
        who_ = who[:1].upper() + who[1:]  # at the start of a sentence
        ref = f" [{fault.code or fault.type}]" if fault.code or fault.type else ""
        detail = fault.message or f"HTTP {fault.status}"
        rid = f" (upstream request id {fault.request_id})" if fault.request_id else ""
        if kind in _OPERATOR_FAULTS:
            logger.warning(
                "%s refused Lingyun's upstream request: %s%s: %s%s",
                who, kind.value, ref, detail, rid,
            )  # fmt: skip
            code, what = _OPERATOR_FAULTS[kind]
            return UpstreamError(
                f"{who_} {what}{ref}{rid}. This is a problem with this server's configuration "
                "or its account with that provider, not with your request or API key; "
                "please tell the operator.",
                code=code,
            )
        if kind is Fault.RATE_LIMIT:
            return RateLimitError(f"{who_} is rate limiting this model{ref}: {detail}{rid}")
        if kind is Fault.CONTENT:
            return InvalidRequestError(
                f"{who_} refused the content under its moderation policy{ref}: {detail}{rid}",
                code="content_filter",
            )
        if kind is Fault.CONTEXT:
            return InvalidRequestError(
                f"{who_}: the input is too long for this model{ref}: {detail}{rid}",
                code="context_length_exceeded",
                param=fault.param or "messages",
            )
        if kind is Fault.BAD_REQUEST:
            return InvalidRequestError(
                f"{who_} rejected the request{ref}: {detail}{rid}", param=fault.param
            )
        if kind is Fault.TIMEOUT:
            return UpstreamTimeoutError(f"{who_} timed out{ref}: {detail}{rid}")
        if kind is Fault.UNAVAILABLE:
            return ServiceUnavailableError(f"{who_} is unavailable{ref}: {detail}{rid}")
        return UpstreamError(f"{who_} failed{ref}: {detail}{rid}")


_OPERATOR_FAULTS: dict[Fault, tuple[str, str]] = {
    Fault.AUTH: ("upstream_auth_failed", "rejected the API key this server uses for it"),
    Fault.PERMISSION: ("upstream_permission_denied", "denied this server access to the model"),
    Fault.BILLING: ("upstream_quota_exhausted", "refused: this server's account is out of quota"),
    Fault.MODEL: ("upstream_model_not_found", "does not know this deployment's model id"),
}
