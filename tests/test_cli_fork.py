"""The forked CLI helper answers as a fresh ``python -m lingyun.cli.main`` would."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.cli_fork import run_cli
from tests.support.server import LINGYUN


def test_a_forked_verb_answers_as_a_fresh_process(tmp_path: Path) -> None:
    args = ["deploy", "x", "--engine", "warp-drive", "--data-dir", str(tmp_path)]
    fresh = subprocess.run([*LINGYUN, *args], capture_output=True, text=True, timeout=60)
    forked = run_cli(args)
    assert (forked.returncode, forked.stdout, forked.stderr) == (
        fresh.returncode,
        fresh.stdout,
        fresh.stderr,
    )
    assert forked.returncode == 1 and "unknown engine" in forked.stderr


def test_each_verb_gets_the_env_and_cwd_it_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The data dir comes from the environment of this call only, relative to its cwd.
    monkeypatch.chdir(tmp_path)
    env = {**os.environ, "LINGYUN_DATA_DIR": "from-env"}
    assert run_cli(["tenants", "create", "t-env"], env=env).returncode == 0
    assert (tmp_path / "from-env").is_dir()
    listed = run_cli(["tenants", "list", "--json"], env={**os.environ, "LINGYUN_DATA_DIR": "b"})
    assert "t-env" not in listed.stdout  # another call, another env: a different data dir
    assert "t-env" in run_cli(["tenants", "list", "--json"], env=env).stdout


def test_processes_under_test_are_not_forked() -> None:
    with pytest.raises(ValueError, match="serve"):
        run_cli(["serve"])
