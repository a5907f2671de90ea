"""Rate-limit rules, what a limiter answers, and the headers clients see.

A ``LimitRule`` bounds one subject (a tenant, project or key), for one model or for every
model together, in up to three dimensions:

- requests per minute (``rpm``): an exact sliding 60-second window, smoothed per second by a
  token bucket of rate ``rpm / 60`` holding ``burst`` requests (default: one second's worth);
  ``burst = 0`` turns smoothing off, so the minute's allowance may be spent at once;
- tokens per minute (``tpm``): prompt plus worst-case output reserved at admission in an exact
  sliding window, corrected to the real usage when the request ends;
- requests in flight (``concurrency``).

Every rule that matches a request must admit it; the answer is all or nothing (nothing is
charged to any rule when one refuses). Response headers report the tightest rule, in OpenAI's
names: ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

from lingyun.tenancy.service import KeyInfo

Scope = Literal["tenant", "project", "key"]
SCOPES: tuple[Scope, ...] = ("tenant", "project", "key")
WINDOW_S = 60.0


@dataclass(frozen=True)
class LimitRule:
    scope: Scope
    subject_id: str
    tenant_id: str
    model: str = ""  # "" = every model together
    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None
    burst: int | None = None  # None = one second's allowance; 0 = no per-second smoothing

    @property
    def id(self) -> str:
        return f"{self.scope}:{self.subject_id}:{self.model or '*'}"

    def burst_capacity(self) -> int | None:
        """Size of the per-second bucket, or None when requests are not smoothed."""
        if self.rpm is None or self.burst == 0:
            return None
        if self.burst is None:
            return max(1, math.ceil(self.rpm / WINDOW_S))
        return self.burst

    def describe(self) -> str:
        subject = {"tenant": "tenant", "project": "project", "key": "API key"}[self.scope]
        return f"{subject}" + (f" for model {self.model}" if self.model else "")


class RuleSet:
    """Rules indexed by subject, for a lookup per request without scanning them all."""

    def __init__(self, rules: Iterable[LimitRule] = ()) -> None:
        self._by_subject: dict[tuple[str, str], list[LimitRule]] = {}
        self.rules = tuple(rules)
        for rule in self.rules:
            self._by_subject.setdefault((rule.scope, rule.subject_id), []).append(rule)

    def matching(self, key: KeyInfo, models: Iterable[str]) -> tuple[LimitRule, ...]:
        names = {"", *models}
        found: list[LimitRule] = []
        for scope, subject in (
            ("tenant", key.tenant_id),
            ("project", key.project_id),
            ("key", key.key_id),
        ):
            found.extend(r for r in self._by_subject.get((scope, subject), ()) if r.model in names)
        return tuple(found)


@dataclass(frozen=True)
class Charge:
    """One request's claim on its rules."""

    request_id: str
    tenant_id: str
    rules: tuple[LimitRule, ...]
    tokens: int


@dataclass(frozen=True)
class RuleState:
    """A rule's windows as the decision left them (``None``: the rule has no such limit)."""

    requests_remaining: int | None = None
    requests_reset_s: float = 0.0
    tokens_remaining: int | None = None
    tokens_reset_s: float = 0.0


Dimension = Literal["requests", "requests_per_second", "tokens", "concurrency"]


@dataclass(frozen=True)
class Refusal:
    rule: LimitRule
    dimension: Dimension
    retry_after_s: float


@dataclass(frozen=True)
class Outcome:
    refusal: Refusal | None
    states: tuple[RuleState, ...]  # one per rule of the charge, in order


class Limiter(Protocol):
    """Counts charges against rules: in this process (``LocalLimiter``) or in Redis."""

    async def acquire(self, charge: Charge) -> Outcome: ...

    async def release(self, charge: Charge, used_tokens: int) -> None: ...

    def forget(self, keep: Iterable[str]) -> None: ...

    async def close(self) -> None: ...


def format_reset(seconds: float) -> str:
    """OpenAI's duration style: ``20ms``, ``1.5s``, ``6m0s``."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(1, math.ceil(seconds * 1000))}ms"
    if seconds < 60:
        return f"{round(seconds, 3):g}s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{round(rest):d}s"


def headers_for(charge: Charge, outcome: Outcome) -> dict[str, str]:
    headers: dict[str, str] = {}
    pairs = list(zip(charge.rules, outcome.states, strict=True))
    requests = [(s.requests_remaining, s.requests_reset_s, r.rpm) for r, s in pairs if r.rpm]
    tokens = [(s.tokens_remaining, s.tokens_reset_s, r.tpm) for r, s in pairs if r.tpm]
    for name, windows in (("requests", requests), ("tokens", tokens)):
        if not windows:
            continue
        remaining, reset, limit = min(windows, key=_tightest)
        headers[f"x-ratelimit-limit-{name}"] = str(limit)
        headers[f"x-ratelimit-remaining-{name}"] = str(max(0, remaining or 0))
        headers[f"x-ratelimit-reset-{name}"] = format_reset(reset)
    if outcome.refusal is not None:
        wait = max(outcome.refusal.retry_after_s, 0.001)
        headers["retry-after"] = str(max(1, math.ceil(wait)))
        headers["retry-after-ms"] = str(math.ceil(wait * 1000))
    return headers


def _tightest(window: tuple[int | None, float, int | None]) -> tuple[int, float]:
    remaining, reset, _ = window
    return (remaining if remaining is not None else 1 << 62, -reset)


def refusal_message(refusal: Refusal) -> str:
    rule = refusal.rule
    what = {
        "requests": f"{rule.rpm} requests per minute",
        "requests_per_second": f"{rule.rpm} requests per minute (burst {rule.burst_capacity()})",
        "tokens": f"{rule.tpm} tokens per minute",
        "concurrency": f"{rule.concurrency} requests in flight",
    }[refusal.dimension]
    return (
        f"Rate limit reached for this {rule.describe()}: {what}. "
        f"Retry after {format_reset(refusal.retry_after_s)}."
    )
