"""LoRA adapters as models through a real gateway: a PEFT adapter of the tiny Qwen2 served by
the base deployment's transformers replica, with its own grants, prices and billing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.lora import build_lora_adapter, peft_greedy
from tests.support.server import LingyunServer
from tests.support.tenancy import poll

pytestmark = pytest.mark.slow

MSG: list[Any] = [{"role": "user", "content": "Hello, how are you today?"}]
TOKENS = 16
BASE, LORA = "tiny-chat", "tiny-lora"


@dataclass
class World:
    server: LingyunServer
    full: openai.OpenAI  # a tenant with no grants: every model
    base_only: openai.OpenAI  # granted the base model only
    adapter: Path
    base_dir: Path


@pytest.fixture(scope="module")
def world(
    module_database_url: str, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    # Built once for both databases' runs of this module: the same adapter, the same answers.
    adapter = build_lora_adapter(tiny_model_dir, tmp_path_factory.getbasetemp() / "lora-a")
    server = LingyunServer(
        data_dir=Path(tmp_path_factory.mktemp("adapters")),
        database_url=module_database_url,
        models=[{"name": BASE, "engine": "transformers", "model": str(tiny_model_dir),
                 "args": {"device": "cpu"}, "adapters": [{"name": LORA, "path": str(adapter)}]}],
    )  # fmt: skip
    server.start()
    try:
        server.cli("prices", "set", BASE, "--input", "1", "--output", "2")
        server.cli("prices", "set", LORA, "--input", "10", "--output", "20")
        full = server.client(server.create_key("lora-full"), max_retries=0)
        base_key = server.create_key("lora-base")
        server.cli("models", "grant", BASE, "--tenant", "lora-base")
        for tenant in ("lora-full", "lora-base"):
            server.cli("topup", "--tenant", tenant, "--amount", "100")
        yield World(server, full, server.client(base_key, max_retries=0), adapter, tiny_model_dir)
    finally:
        server.stop()


def _answer(client: openai.OpenAI, model: str) -> Any:
    return client.chat.completions.create(
        model=model, messages=MSG, temperature=0, max_tokens=TOKENS
    )


def test_adapter_is_a_model_that_answers_as_peft_does(world: World) -> None:
    assert {m.id for m in world.full.models.list().data} == {BASE, LORA}
    base = _answer(world.full, BASE)
    tuned = _answer(world.full, LORA)
    assert tuned.model == LORA
    assert base.choices[0].message.content != tuned.choices[0].message.content
    expected = peft_greedy(world.base_dir, world.adapter, MSG, TOKENS)
    assert tuned.choices[0].message.content == expected
    stream = world.full.chat.completions.create(
        model=LORA, messages=MSG, temperature=0, max_tokens=TOKENS, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == expected


def test_tenant_without_a_grant_gets_404_for_the_adapter_but_uses_the_base(world: World) -> None:
    assert {m.id for m in world.base_only.models.list().data} == {BASE}
    with pytest.raises(openai.NotFoundError):
        _answer(world.base_only, LORA)
    assert _answer(world.base_only, BASE).choices[0].message.content


def test_adapter_requests_are_billed_at_the_adapters_price(world: World) -> None:
    server = world.server
    usage = [_answer(world.full, m).usage for m in (LORA, LORA, BASE)]

    def lines() -> dict[str, dict[str, Any]]:
        rows = server.cli_json("usage", "--tenant", "lora-full")
        return {r["model"]: r for r in rows}

    # Earlier tests of this module sent requests too: compare what each model was charged
    # with what its own tokens cost at its own price.
    poll(lambda: lines().get(LORA, {}).get("requests", 0) >= 2, timeout_s=30)
    got = lines()
    for model, (pin, pout) in {LORA: (10, 20), BASE: (1, 2)}.items():
        line = got[model]
        cost = Decimal(line["prompt_tokens"]) * pin + Decimal(line["completion_tokens"]) * pout
        assert Decimal(str(line["amount"])) == cost / 1_000_000, (model, line)
    assert all(u is not None and u.completion_tokens > 0 for u in usage)
