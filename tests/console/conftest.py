"""One populated server per module (see ``tests/support/console.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.console import Console, console_world


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    with console_world(tmp_path_factory.mktemp("console-http")) as c:
        yield c
