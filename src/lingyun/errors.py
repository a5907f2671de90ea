"""The one exception tree of Lingyun; rendered as OpenAI's ``{"error": {...}}`` by one handler.

    LingyunError                      500 server_error
    ├── InvalidRequestError           400 invalid_request_error
    │   └── UnsupportedParameterError 400 invalid_request_error / unsupported_parameter
    ├── AuthenticationError           401 invalid_request_error / invalid_api_key
    ├── PermissionDeniedError         403 permission_denied
    ├── NotFoundError                 404 invalid_request_error / model_not_found
    ├── RequestTooLargeError          413 invalid_request_error / request_too_large
    ├── RateLimitError                429 requests / rate_limit_exceeded
    ├── InsufficientQuotaError        429 insufficient_quota / insufficient_quota
    ├── UpstreamError                 502 server_error / upstream_error
    ├── ServiceUnavailableError       503 server_error / service_unavailable
    ├── UpstreamTimeoutError          504 server_error / upstream_timeout
    └── ClientDisconnectedError       499 (never seen by the client; recorded in usage)

Services raise these; adapters translate third-party exceptions at their own edge.
"""

from __future__ import annotations

from typing import Any, ClassVar


class LingyunError(Exception):
    status_code: ClassVar[int] = 500
    error_type: ClassVar[str] = "server_error"
    default_code: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers = headers or {}
        self.request_id = request_id

    def to_body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequestError(LingyunError):
    status_code = 400
    error_type = "invalid_request_error"


class UnsupportedParameterError(InvalidRequestError):
    default_code = "unsupported_parameter"


class AuthenticationError(LingyunError):
    status_code = 401
    error_type = "invalid_request_error"
    default_code = "invalid_api_key"


class PermissionDeniedError(LingyunError):
    status_code = 403
    error_type = "permission_denied"
    default_code = "permission_denied"


class NotFoundError(LingyunError):
    status_code = 404
    error_type = "invalid_request_error"
    default_code = "model_not_found"


class RequestTooLargeError(LingyunError):
    status_code = 413
    error_type = "invalid_request_error"
    default_code = "request_too_large"


class RateLimitError(LingyunError):
    status_code = 429
    error_type = "requests"
    default_code = "rate_limit_exceeded"


class InsufficientQuotaError(LingyunError):
    status_code = 429
    error_type = "insufficient_quota"
    default_code = "insufficient_quota"


class UpstreamError(LingyunError):
    status_code = 502
    error_type = "server_error"
    default_code = "upstream_error"


class ServiceUnavailableError(LingyunError):
    status_code = 503
    error_type = "server_error"
    default_code = "service_unavailable"


class UpstreamTimeoutError(LingyunError):
    status_code = 504
    error_type = "server_error"
    default_code = "upstream_timeout"


class ClientDisconnectedError(LingyunError):
    status_code = 499
    error_type = "client_error"
    default_code = "client_disconnected"


_BY_STATUS: dict[int, type[LingyunError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    413: RequestTooLargeError,
    429: RateLimitError,
    503: ServiceUnavailableError,
    504: UpstreamTimeoutError,
}


def error_for_status(status: int) -> type[LingyunError]:
    """The error class an upstream HTTP status maps to (5xx not listed become 502)."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if 400 <= status < 500:
        return InvalidRequestError
    return UpstreamError
