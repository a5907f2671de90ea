"""First start: with no user at all, ``lingyun serve`` prints a one-time setup link.

The token lives in this process only (with ``--workers N``, in each worker: the supervisor
gives them one token, and worker 0 prints the link): it is valid until used (or until the
server stops; the next start prints a new one while there is still no user). Using it
creates the first platform admin and signs them in. Once any user exists, no setup link is made.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import sys

from lingyun import __version__
from lingyun.serving import worker_env
from lingyun.store.db import Database
from lingyun.tenancy.users import UserService

logger = logging.getLogger(__name__)


class SetupGate:
    def __init__(self) -> None:
        self.token: str | None = None

    async def open_if_empty(self, db: Database) -> str | None:
        if await UserService(db).list_users():
            self.token = None
        else:
            self.token = worker_env.setup_token() or secrets.token_urlsafe(24)
        return self.token

    def valid(self, token: str | None) -> bool:
        return bool(self.token and token and hmac.compare_digest(self.token, token))

    def close(self) -> None:
        self.token = None


def banner(host: str, port: int, setup_token: str | None, deployments: list[str]) -> str:
    """The short text ``serve`` starts with: where the API and console are, what starts."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    base = f"http://{shown}:{port}"
    lines = [
        f"Lingyun {__version__}",
        f"  API      {base}/v1   (docs {base}/docs)",
        f"  Console  {base}/console",
    ]
    if setup_token:
        lines.append(f"  Setup    {base}/console/setup?token={setup_token}")
        lines.append("           (first start: open this link once to create the platform admin)")
    lines.append(f"  Models   {', '.join(deployments) if deployments else '(none yet)'} starting")
    return "\n".join(lines)


def print_banner(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
