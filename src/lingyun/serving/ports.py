"""Free TCP ports for replica processes.

The kernel picks a free port (bind to 0) and we close it before the child binds it, so
another program could take it in between; the child then fails to bind, exits, and the
supervisor restarts it on a fresh port. ``PortAllocator`` keeps ports handed to live
children so that two of our own replicas never get the same one.
"""

from __future__ import annotations

import socket


class PortAllocator:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._in_use: set[int] = set()

    def acquire(self) -> int:
        for _ in range(64):
            port = _kernel_free_port(self.host)
            if port not in self._in_use:
                self._in_use.add(port)
                return port
        raise RuntimeError(f"no free TCP port found on {self.host}")

    def release(self, port: int) -> None:
        self._in_use.discard(port)


def _kernel_free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
