"""The 402s a reservation can end in, worded once for the per-request path and the leases."""

from __future__ import annotations

from decimal import Decimal

from lingyun.errors import InsufficientQuotaError


def free_only() -> InsufficientQuotaError:
    return InsufficientQuotaError(
        "Your free quota for this model is used up and this tenant is limited to free "
        "quota. Ask an administrator to top up or lift the free-only setting."
    )


def balance(available: Decimal, currency: str) -> InsufficientQuotaError:
    return InsufficientQuotaError(
        "You exceeded your current quota: the tenant's prepaid balance "
        f"({available:.6f} {currency} available) does not cover this "
        "request's maximum cost. Top up, or lower max_tokens."
    )


def budget(scope: str, limit: Decimal, period: str) -> InsufficientQuotaError:
    return InsufficientQuotaError(
        f"You exceeded your current quota: the {scope}'s monthly budget of "
        f"{limit} for {period} is used up."
    )
