"""The database unreachable, told apart from the database refusing a statement.

An outage (connection refused or lost, a connect or pool wait past its bound, SQLite's disk
full or its lock held past ``busy_timeout``) is worth retrying and is the client's 503
``service_unavailable`` with Retry-After; a refused statement (a constraint, a bug) is not.
``Database`` bounds every wait for a connection (``CONNECT_TIMEOUT_S``, ``POOL_TIMEOUT_S``),
so a request learns of an outage within seconds, never after a TCP timeout.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from lingyun.errors import LingyunError, ServiceUnavailableError

# A new PostgreSQL connection must open within this; a request waits at most this long for
# a pooled one. Together they bound how long a request waits on an absent database.
CONNECT_TIMEOUT_S = 5.0
POOL_TIMEOUT_S = 5.0
RETRY_AFTER_S = 2
_AWAY = frozenset({errno.ENOSPC, errno.EDQUOT, errno.ENETUNREACH, errno.EHOSTUNREACH})


def unreachable(exc: BaseException) -> bool:
    """The database is away (retry later), rather than refusing these rows."""
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeoutError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    # asyncpg's connect raises these unwrapped: refused or reset, no answer, no such host, a
    # plain OSError for several addresses that all failed; and a full disk
    if isinstance(exc, ConnectionError | TimeoutError | socket.gaierror):
        return True
    return isinstance(exc, OSError) and (type(exc) is OSError or exc.errno in _AWAY)


def unavailable() -> ServiceUnavailableError:
    return ServiceUnavailableError(
        "The database is temporarily unreachable; nothing was started. Retry shortly.",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def as_service_error(exc: Exception) -> LingyunError | None:
    """For the error handler: an outage anywhere (admin API, console, usage) is a 503."""
    return unavailable() if unreachable(exc) else None


@contextmanager
def outage_is_503() -> Iterator[None]:
    """Around a database call on the request path: an outage becomes the 503 (refusals and
    bugs pass unchanged)."""
    try:
        yield
    except LingyunError:
        raise
    except Exception as exc:
        if unreachable(exc):
            raise unavailable() from exc
        raise
