"""The sign-in limit: per account and per address, in a sliding window."""

from __future__ import annotations

from lingyun.tenancy.login_limit import LoginLimiter


def test_account_limit_then_reset_by_success() -> None:
    lim = LoginLimiter(per_account=3, per_ip=100, window_s=60)
    for _ in range(3):
        assert lim.retry_after("A@x.io", "1.1.1.1") == 0
        lim.failed("A@x.io", "1.1.1.1")
    assert 0 < lim.retry_after("a@x.io", "2.2.2.2") <= 60  # same account, any address
    assert lim.retry_after("b@x.io", "1.1.1.1") == 0  # other accounts unaffected
    lim.succeeded("a@x.io")
    assert lim.retry_after("a@x.io", "1.1.1.1") == 0


def test_address_limit_spans_accounts() -> None:
    lim = LoginLimiter(per_account=100, per_ip=4, window_s=60)
    for i in range(4):
        lim.failed(f"u{i}@x.io", "9.9.9.9")
    assert lim.retry_after("new@x.io", "9.9.9.9") > 0
    assert lim.retry_after("new@x.io", "8.8.8.8") == 0


def test_window_expires() -> None:
    lim = LoginLimiter(per_account=1, per_ip=100, window_s=0.0)
    lim.failed("a@x.io", "1.1.1.1")
    assert lim.retry_after("a@x.io", "1.1.1.1") == 0
