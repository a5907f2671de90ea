"""Looking at replica processes from outside, as an attacker on the same machine would."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # gone meanwhile, or not ours to read
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (part.decode(errors="replace").partition("=") for part in raw.split(b"\0") if part)
    return {k: v for k, _, v in pairs}


def listen_port(pid: int) -> int:
    """The ``--port`` a replica was started with (our worker, vLLM and llama.cpp all take it)."""
    argv = cmdline(pid)
    return int(argv[argv.index("--port") + 1])


def all_cmdlines() -> Iterable[tuple[int, bytes]]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                yield int(entry.name), (entry / "cmdline").read_bytes()
            except OSError:
                continue


def files_containing(needle: str, roots: Iterable[Path]) -> list[Path]:
    """Every file under ``roots`` whose bytes contain ``needle``."""
    found = []
    raw = needle.encode()
    for root in roots:
        paths = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for path in paths:
            try:
                if raw in path.read_bytes():
                    found.append(path)
            except OSError:
                continue
    return found
