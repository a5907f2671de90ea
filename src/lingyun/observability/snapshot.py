"""Per-model figures from two /metrics scrapes, for ``lingyun top``.

A scrape is parsed into flat samples; ``figures(before, after, seconds)`` gives, per
deployment: totals since the server started (requests, errors, tokens), rates over the window
between the scrapes, TTFT p50/p95 (over the window when it saw streams, else since start),
in flight, queued, and replicas up/total. Quantiles interpolate inside histogram buckets the
way PromQL's ``histogram_quantile`` does.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


def _by(samples: Samples, name: str, label: str) -> dict[str, float]:
    """``name`` summed per value of ``label``."""
    out: dict[str, float] = defaultdict(float)
    for (n, labels), v in samples.items():
        if n == name:
            out[dict(labels).get(label, "")] += v
    return out


def _buckets(samples: Samples, name: str, model: str) -> list[tuple[float, float]]:
    acc: dict[float, float] = defaultdict(float)
    for (n, labels), v in samples.items():
        d = dict(labels)
        if n == f"{name}_bucket" and d.get("model") == model:
            acc[float(d["le"])] += v
    return sorted(acc.items())


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """``histogram_quantile`` over cumulative (upper bound, count) pairs; None when empty."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return prev_bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound


@dataclass
class ModelFigures:
    model: str
    requests: int
    errors: int
    requests_per_s: float
    prompt_tokens_per_s: float
    completion_tokens_per_s: float
    prompt_tokens: int
    completion_tokens: int
    ttft_p50_s: float | None
    ttft_p95_s: float | None
    in_flight: int
    queued: int
    replicas_up: int
    replicas: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _errors(samples: Samples) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for (n, labels), v in samples.items():
        d = dict(labels)
        if n == "lingyun_requests_total" and int(d.get("status", "0")) >= 400:
            out[d.get("model", "")] += v
    return out


def figures(before: Samples | None, after: Samples, seconds: float) -> list[ModelFigures]:
    prev = before or {}
    window = seconds if before is not None and seconds > 0 else 0.0
    req = _by(after, "lingyun_requests_total", "model")
    req0 = _by(prev, "lingyun_requests_total", "model")
    pt = _by(after, "lingyun_prompt_tokens_total", "model")
    pt0 = _by(prev, "lingyun_prompt_tokens_total", "model")
    ct = _by(after, "lingyun_completion_tokens_total", "model")
    ct0 = _by(prev, "lingyun_completion_tokens_total", "model")
    errors = _errors(after)
    inflight = _by(after, "lingyun_requests_in_flight", "deployment")
    queued = _by(after, "lingyun_requests_queued", "deployment")
    up = _by(after, "lingyun_replica_up", "deployment")
    total = _by({k: 1.0 for k in after if k[0] == "lingyun_replica_up"}, "lingyun_replica_up",
                "deployment")  # fmt: skip
    names = (set(req) | set(_by(after, "lingyun_replicas", "deployment"))) - {"unknown", ""}

    def rate(now: dict[str, float], then: dict[str, float], name: str) -> float:
        return (now.get(name, 0.0) - then.get(name, 0.0)) / window if window else 0.0

    rows = []
    for name in sorted(names):
        ttft = "lingyun_time_to_first_token_seconds"
        now_b, then_b = _buckets(after, ttft, name), dict(_buckets(prev, ttft, name))
        delta = [(le, c - then_b.get(le, 0.0)) for le, c in now_b]
        use = delta if window and delta and delta[-1][1] > 0 else now_b
        rows.append(
            ModelFigures(
                model=name,
                requests=int(req.get(name, 0)),
                errors=int(errors.get(name, 0)),
                requests_per_s=rate(req, req0, name),
                prompt_tokens_per_s=rate(pt, pt0, name),
                completion_tokens_per_s=rate(ct, ct0, name),
                prompt_tokens=int(pt.get(name, 0)),
                completion_tokens=int(ct.get(name, 0)),
                ttft_p50_s=quantile(0.5, use),
                ttft_p95_s=quantile(0.95, use),
                in_flight=int(inflight.get(name, 0)),
                queued=int(queued.get(name, 0)),
                replicas_up=int(up.get(name, 0)),
                replicas=int(total.get(name, 0)),
            )
        )
    return rows
