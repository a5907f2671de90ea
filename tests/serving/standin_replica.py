"""STAND-IN replica process for supervisor tests (not a real engine).

A stdlib HTTP server on --port answering GET /health and GET /v1/models. Knobs let tests
drive the supervisor through its states:
  --ready-file F    /health answers 503 until file F exists (model "still loading")
  --exit-after S    exit with --exit-code after S seconds (a crashing engine)
  --ignore-term     ignore SIGTERM (an engine that hangs on shutdown); else exit 0 on it
  --starts-file F   append "<pid> <monotonic time>" to F at start
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def _graceful_exit(signum: int, frame: object) -> None:
    print("stand-in replica got SIGTERM", flush=True)
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", default="standin")
    parser.add_argument("--ready-file")
    parser.add_argument("--exit-after", type=float)
    parser.add_argument("--exit-code", type=int, default=1)
    parser.add_argument("--ignore-term", action="store_true")
    parser.add_argument("--starts-file")
    opts = parser.parse_args()

    if opts.starts_file:
        with open(opts.starts_file, "a") as f:
            f.write(f"{os.getpid()} {time.monotonic()}\n")
    if opts.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, _graceful_exit)
    if opts.exit_after is not None:
        timer = threading.Timer(opts.exit_after, os._exit, args=(opts.exit_code,))
        timer.daemon = True
        timer.start()
    print(f"stand-in replica {os.getpid()} listening on {opts.port}", flush=True)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/health":
                ready = opts.ready_file is None or Path(opts.ready_file).exists()
                self._send(200 if ready else 503, {"ready": ready})
            elif self.path == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": opts.model}]})
            else:
                self._send(404, {"error": "not found"})

        def _send(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            sys.stderr.write(format % args + "\n")

    ThreadingHTTPServer(("127.0.0.1", opts.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
