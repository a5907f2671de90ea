"""Console sessions, CSRF and the sign-in rate limit.

- The session cookie holds an admin session token (the same sessions as ``/admin/v1``:
  stored hashed, 12 h expiry, revoked at sign-out). HttpOnly, SameSite=Lax, Path=/console,
  Secure when served over HTTPS.
- CSRF: double submit. A random token in an HttpOnly, SameSite=Strict cookie, echoed by
  every form in a hidden field; a state change also needs a same-origin Origin (or Referer)
  when the browser sends one. A cross-site page can neither read the cookie nor forge both.
- Sign-in attempts are limited per account and per IP in this process (a sliding window,
  ``tenancy/login_limit.py``, shared with ``/admin/v1/auth/login``); the page says when to
  try again, never a silent block.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from fastapi import Request, Response

SESSION_COOKIE = "ly_session"
CSRF_COOKIE = "ly_csrf"
CSRF_FIELD = "csrf"
COOKIE_PATH = "/console"

# Pages load only what the console itself serves: no CDN, no inline script.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_session(response: Response, request: Request, token: str, max_age: int) -> None:
    response.set_cookie(
        SESSION_COOKIE, token, max_age=max_age, path=COOKIE_PATH, httponly=True,
        samesite="lax", secure=_secure(request),
    )  # fmt: skip


def clear_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)


def csrf_token(request: Request) -> str:
    """This browser's CSRF token, made on first sight (the response then sets the cookie)."""
    token = request.cookies.get(CSRF_COOKIE) or getattr(request.state, "new_csrf", None)
    if not token:
        token = secrets.token_urlsafe(24)
        request.state.new_csrf = token
    return str(token)


def attach_csrf_cookie(request: Request, response: Response) -> None:
    token = getattr(request.state, "new_csrf", None)
    if token:
        response.set_cookie(
            CSRF_COOKIE, token, path=COOKIE_PATH, httponly=True, samesite="strict",
            secure=_secure(request),
        )  # fmt: skip


def same_origin(request: Request) -> bool:
    """False when the browser says the form came from another origin."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return source is None
    parts = urlsplit(source)
    return f"{parts.scheme}://{parts.netloc}" == f"{request.url.scheme}://{request.url.netloc}"


def csrf_ok(request: Request, submitted: str | None) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not submitted or not same_origin(request):
        return False
    return hmac.compare_digest(cookie, submitted)
