"""Language choice: the switch's cookie first, then the browser's Accept-Language."""

from __future__ import annotations

import pytest

from lingyun.console.i18n import ZH, pick, translator


@pytest.mark.parametrize(
    ("cookie", "header", "expected"),
    [
        pytest.param(None, "en-US,en;q=0.9", "en", id="english-browser"),
        pytest.param(None, "zh-CN,zh;q=0.9,en;q=0.8", "zh", id="chinese-browser"),
        pytest.param(None, "fr-FR,zh;q=0.5,en;q=0.7", "en", id="weights-decide"),
        pytest.param(None, "fr-FR", "en", id="neither-falls-back-to-english"),
        pytest.param(None, None, "en", id="no-header"),
        pytest.param("zh", "en-US", "zh", id="switch-wins"),
        pytest.param("xx", "zh-TW", "zh", id="bad-cookie-ignored"),
        pytest.param(None, "zh;q=bad,en", "en", id="bad-weight-ignored"),
    ],
)
def test_pick(cookie: str | None, header: str | None, expected: str) -> None:
    assert pick(cookie, header) == expected


def test_stable_labels_translate_and_format() -> None:
    en, zh = translator("en"), translator("zh")
    for label in ("Email", "Password", "Sign in", "Overview", "API keys", "Usage", "Models",
                  "Playground", "Create key", "Name", "Secret key"):  # fmt: skip
        assert en(label) == label
        assert zh(label) == ZH[label] != label
    assert en("Too many sign-in attempts. Try again in {minutes} min.", minutes=3).endswith(
        "3 min."
    )
    assert "3" in zh("Too many sign-in attempts. Try again in {minutes} min.", minutes=3)
