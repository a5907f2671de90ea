"""The delivery log on a full disk: nothing is sent that is not on record."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lingyun.errors import ServiceUnavailableError
from lingyun.metering.deliveries import DeliveryLog


def test_a_full_disk_refuses_output_it_cannot_record(tmp_path: Path) -> None:
    log = DeliveryLog(tmp_path / "deliveries.log")
    log.record("req_ok", (3, 1))
    full = os.open("/dev/full", os.O_WRONLY)  # every write: ENOSPC, as a full disk answers
    try:
        os.dup2(full, log._fd)  # the disk fills up under the open log
        with pytest.raises(ServiceUnavailableError) as caught:
            log.record("req_full", (3, 2))
    finally:
        os.close(full)
    assert (caught.value.status_code, caught.value.code) == (503, "storage_unavailable")
    assert caught.value.headers["Retry-After"]
    assert (tmp_path / "deliveries.log").read_text() == "req_ok 3 1\n"  # nothing half-written
