"""LoRA adapters on a transformers replica, with PEFT: loaded on first use, LRU-bounded.

The base model is wrapped in a ``PeftModel`` when the first adapter is loaded (PEFT injects
its LoRA layers in place); from then on every forward passes ``adapter_names`` per row, so one
batch mixes base-model rows (``"__base__"``) and rows of different adapters (PEFT's mixed-batch
inference). At most ``max_loaded`` adapters stay in memory; the least recently used one that
no running row needs leaves first. Everything here runs on the scheduler's thread, between
forwards, so the model never changes under a running forward.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

BASE = "__base__"  # PEFT's name for "no adapter" in adapter_names
PEFT_HINT = "LoRA adapters need: pip install 'lingyun[transformers]' (peft)"


class LoraAdapters:
    def __init__(self, paths: Mapping[str, str], max_loaded: int = 4) -> None:
        if max_loaded < 1:
            raise ValueError("max_loras must be at least 1")
        for name, path in paths.items():
            if not (Path(path) / "adapter_config.json").is_file():
                raise ValueError(
                    f"adapter {name!r}: {path!r} is not a PEFT adapter directory "
                    "(no adapter_config.json)"
                )
        self.paths = dict(paths)
        self.max_loaded = max_loaded
        self.loaded: OrderedDict[str, None] = OrderedDict()
        self.peft: Any = None
        self.loads = 0
        self.evictions = 0

    def ensure(self, model: Any, name: str, in_use: Iterable[str | None]) -> Any:
        """Make ``name`` loaded; returns the model to call from now on (the PeftModel)."""
        if name in self.loaded:
            self.loaded.move_to_end(name)
            return self.peft
        path = self.paths[name]
        try:
            from peft import PeftModel
        except ImportError as exc:
            raise ValueError(f"{PEFT_HINT} ({exc})") from None
        logger.info("loading LoRA adapter %s from %s", name, path)
        if self.peft is None:
            self.peft = PeftModel.from_pretrained(model, path, adapter_name=name)
            self.peft.eval()
        else:
            self.peft.load_adapter(path, adapter_name=name)
        self.loads += 1
        self.loaded[name] = None
        busy = {n for n in in_use if n} | {name}
        while len(self.loaded) > self.max_loaded:
            victim = next((n for n in self.loaded if n not in busy), None)
            if victim is None:
                break  # every loaded adapter is running: exceed the bound until one ends
            self.peft.delete_adapter(victim)
            del self.loaded[victim]
            self.evictions += 1
            logger.info("unloaded LoRA adapter %s (least recently used)", victim)
        return self.peft

    def forward_kwargs(self, adapters: list[str | None]) -> dict[str, Any]:
        if self.peft is None:
            return {}
        return {"adapter_names": [a or BASE for a in adapters]}

    def stats(self) -> dict[str, Any]:
        return {
            "adapters_loaded": list(self.loaded),
            "adapter_loads": self.loads,
            "adapter_evictions": self.evictions,
        }
