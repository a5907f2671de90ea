"""Which failures are the database being away (a 503 the client may retry) and which are not."""

from __future__ import annotations

import errno

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from lingyun.errors import InvalidRequestError, ServiceUnavailableError
from lingyun.store.outage import outage_is_503, unreachable


@pytest.mark.parametrize(
    ("exc", "away"),
    [
        pytest.param(ConnectionRefusedError(errno.ECONNREFUSED, "refused"), True, id="refused"),
        pytest.param(OSError("Multiple exceptions: [Errno 111] ..."), True, id="all-addresses"),
        pytest.param(TimeoutError(), True, id="connect-timeout"),
        pytest.param(PoolTimeoutError("pool"), True, id="pool-timeout"),
        pytest.param(OperationalError("SELECT 1", {}, Exception("gone")), True, id="operational"),
        pytest.param(OSError(errno.ENOSPC, "No space left on device"), True, id="disk-full"),
        pytest.param(IntegrityError("INSERT", {}, Exception("dup")), False, id="refused-row"),
        pytest.param(FileNotFoundError(errno.ENOENT, "missing"), False, id="a-bug"),
        pytest.param(ValueError("bug"), False, id="not-io"),
    ],
)
def test_unreachable_tells_an_outage_from_a_refusal(exc: Exception, away: bool) -> None:
    assert unreachable(exc) is away


def test_outage_is_503_maps_only_outages() -> None:
    with pytest.raises(ServiceUnavailableError) as caught, outage_is_503():
        raise ConnectionRefusedError(errno.ECONNREFUSED, "refused")
    assert caught.value.status_code == 503 and caught.value.headers["Retry-After"]
    with pytest.raises(IntegrityError), outage_is_503():
        raise IntegrityError("INSERT", {}, Exception("dup"))
    with pytest.raises(InvalidRequestError), outage_is_503():
        raise InvalidRequestError("ours")
