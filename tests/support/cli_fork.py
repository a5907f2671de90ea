"""Run ``lingyun`` verbs as processes without paying the interpreter's imports each time.

A fresh ``python -m lingyun.cli.main`` spends 1.5-3 s importing before it does anything, and
the suite runs hundreds of verbs. One helper process (this file run as a script) imports the
CLI once; each verb then runs in a child forked from it: its own process, environment, working
directory, exit code and stdout/stderr (files, read back as ``subprocess.run`` would give
them), but no imports of its own. Tests about the process itself (``serve``, ``worker``,
signals) start real subprocesses instead; ``run_cli`` refuses to fork those.

Protocol, one JSON line each way per verb: the test sends args, env, cwd, the two output
paths and a timeout; the helper answers the exit code (``null`` after killing a child that
ran past its timeout).
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

# Verbs that are long-running servers or are tested as processes: never forked.
PROCESS_VERBS = frozenset({"serve", "worker", "top"})
PROG = "python -m lingyun.cli.main"


class CliForkServer:
    """The test side: starts the helper on first use, one verb at a time (a lock)."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    def _helper(self) -> subprocess.Popen[str]:
        if self._proc is None or self._proc.poll() is not None:
            # -P: the script's folder (tests/support, which has a gguf.py) stays off sys.path.
            self._proc = subprocess.Popen(
                [sys.executable, "-P", __file__],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=os.environ.copy(),
            )
        return self._proc

    def run(
        self, args: list[str], env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        with self._lock, tempfile.TemporaryDirectory(prefix="lingyun-cli-") as tmp:
            out, err = Path(tmp) / "out", Path(tmp) / "err"
            request = {
                "args": args,
                "env": dict(os.environ if env is None else env),
                "cwd": os.getcwd(),
                "out": str(out),
                "err": str(err),
                "timeout": timeout,
            }
            helper = self._helper()
            assert helper.stdin is not None and helper.stdout is not None
            helper.stdin.write(json.dumps(request) + "\n")
            helper.stdin.flush()
            line = helper.stdout.readline()
            if not line:
                raise RuntimeError(f"the CLI helper died (exit {helper.wait()})")
            rc = json.loads(line)["rc"]
            stdout = out.read_text(errors="replace") if out.exists() else ""
            stderr = err.read_text(errors="replace") if err.exists() else ""
            argv = [*PROG.split(), *args]
            if rc is None:
                raise subprocess.TimeoutExpired(argv, timeout, stdout, stderr)
            return subprocess.CompletedProcess(argv, rc, stdout, stderr)

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            assert proc.stdin is not None
            proc.stdin.close()  # end of input: the helper exits
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()


_SERVER = CliForkServer()
atexit.register(_SERVER.close)


def run_cli(
    args: list[str], env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run([*LINGYUN, *args], capture_output=True, text=True, ...)``, forked."""
    if args and args[0] in PROCESS_VERBS:
        raise ValueError(f"`lingyun {args[0]}` is a process under test: start it with Popen")
    return _SERVER.run(args, env, timeout)


# --- the helper process -------------------------------------------------------------------


def _child(request: dict[str, Any]) -> None:
    """In the forked child: become the verb's process, run it, exit with its code."""
    code = 1
    try:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        null = os.open(os.devnull, os.O_RDONLY)
        out = os.open(request["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        err = os.open(request["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        for fd, target in ((null, 0), (out, 1), (err, 2)):
            os.dup2(fd, target)
            os.close(fd)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.argv = [PROG, *request["args"]]
        from lingyun.cli.main import app

        app(args=request["args"], prog_name=PROG)
        code = 0
    except SystemExit as exc:  # what the interpreter makes of sys.exit's argument
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
    except Exception:
        import traceback

        traceback.print_exc()
    finally:
        import logging

        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _wait(pid: int, timeout: float) -> int | None:
    fd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    return os.waitstatus_to_exitcode(status) if ready else None


def main() -> None:
    # Everything a verb imports lazily, imported once here before any fork.
    import aiosqlite  # noqa: F401
    import alembic.command  # noqa: F401
    import asyncpg  # noqa: F401
    import sqlalchemy.dialects.postgresql.asyncpg
    import sqlalchemy.dialects.sqlite.aiosqlite  # noqa: F401

    import lingyun.cli.main
    import lingyun.store.migrate  # noqa: F401

    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        rc = _wait(pid, float(request["timeout"]))
        sys.stdout.write(json.dumps({"rc": rc}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
