"""The three ways to reach one replica: directly, through Lingyun, through LiteLLM proxy.

Two simulator replicas run for the whole benchmark (one per pace); both gateways are
configured for both, so (a), (b) and (c) always hit the very same replica process.

LiteLLM is installed by the benchmark into its own virtualenv (it pins versions that clash
with Lingyun's). Offline it can run only without a database — its Prisma engine is fetched at
run time — so it runs with a master key and no virtual keys, spend tracking or budgets.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from benchmarks.gateway.procs import Proc, free_port

ROOT = Path(__file__).resolve().parents[2]
LITELLM_VENV = ROOT / ".venv-litellm"
LITELLM_SPEC = "litellm[proxy]"
LITELLM_KEY = "sk-bench-master-key"
SERVED_NAME = "sim"


@dataclass(frozen=True)
class Pace:
    name: str  # also the public model name both gateways serve it under
    ttft_ms: int
    itl_ms: int


PACES = (Pace("sim-0ms", 0, 0), Pace("sim-50ms", 50, 20))


@dataclass
class Target:
    name: str  # direct | lingyun | litellm
    base_url: str  # ending in /v1
    key: str
    proc: Proc | None  # the gateway process; None for direct

    def model(self, pace: Pace) -> str:
        return SERVED_NAME if self.proc is None else pace.name


def start_replica(pace: Pace, workdir: Path, cpus: str | None) -> tuple[Proc, str]:
    port = free_port()
    args = json.dumps({"ttft_ms": pace.ttft_ms, "itl_ms": pace.itl_ms})
    cmd = [
        sys.executable, "-m", "lingyun.cli.main", "worker", "--backend", "simulator",
        "--port", str(port), "--served-model-name", SERVED_NAME, "--args", args,
        "--log-level", "warning",
    ]  # fmt: skip
    proc = Proc(f"replica {pace.name}", cmd, workdir / f"replica-{pace.name}.log", cpus)
    proc.wait_http(f"http://127.0.0.1:{port}/health", 60)
    return proc, f"http://127.0.0.1:{port}/v1"


# Metering on: a priced model, a balance, a monthly budget and a free quota (used up by the
# first requests), so every check a billed request passes is in the measurement.
BILLED = (
    ("topup", "--tenant", "bench", "--amount", "1000000"),
    ("budgets", "set", "--tenant", "bench", "--monthly", "1000000"),
)
BILLED_PER_MODEL = (
    ("prices", "set", "{model}", "--input", "0.8", "--output", "2"),
    ("quota", "grant", "--tenant", "bench", "--model", "{model}", "--tokens", "200"),
)


def start_lingyun(
    replicas: dict[str, str],
    workdir: Path,
    cpus: str | None,
    name: str = "lingyun",
    served: str = SERVED_NAME,
    workers: str = "1",
) -> Target:
    """Lingyun as configured out of the box; ``lingyun-nometer`` turns metering off, to
    show what the durable reservations cost (a diagnostic, not a comparison target);
    ``lingyun-noobs`` turns /metrics and the request log off (observability's cost);
    ``lingyun-w2`` is ``serve --workers 2`` (``workers`` sets it for any name)."""
    if name == "lingyun-w2":
        workers = "2"
    data = workdir / name
    data.mkdir(parents=True, exist_ok=True)
    config = data / "lingyun.yaml"
    models = [
        {"name": model, "engine": "openai-compatible", "base_url": url, "model": served}
        for model, url in replicas.items()
    ]
    settings: dict[str, object] = {"models": models}
    if name == "lingyun-nometer":
        settings["metering"] = False
    if name == "lingyun-noobs":  # else the request log goes to stderr (the process log)
        settings.update(metrics=False, request_log="off")
    config.write_text(yaml.safe_dump(settings))
    port = free_port()
    common = ["--data-dir", str(data), "--config", str(config)]
    lingyun = [sys.executable, "-m", "lingyun.cli.main"]
    cmd = [*lingyun, "serve", "--port", str(port), "--workers", workers, *common]
    proc = Proc(name, cmd, workdir / f"{name}.log", cpus)
    proc.wait_http(f"http://127.0.0.1:{port}/health", 120)
    run = {"capture_output": True, "text": True, "check": True, "timeout": 60}
    subprocess.run([*lingyun, "tenants", "create", "bench", *common], **run)  # type: ignore[call-overload]
    out = subprocess.run(  # type: ignore[call-overload]
        [*lingyun, "keys", "create", "--tenant", "bench", "--json", *common], **run
    ).stdout
    if name != "lingyun-nometer":  # metering with everything it checks: the setup
        cmds = [*BILLED, *(tuple(a.format(model=m) for a in c) for m in replicas
                           for c in BILLED_PER_MODEL)]  # fmt: skip
        for cmd in cmds:
            subprocess.run([*lingyun, *cmd, *common], **run)  # type: ignore[call-overload]
    return Target(name, f"http://127.0.0.1:{port}/v1", json.loads(out)["key"], proc)


def ensure_litellm(log: Path) -> Path:
    """The LiteLLM virtualenv's ``litellm`` script, installing it on first use."""
    exe = LITELLM_VENV / "bin" / "litellm"
    if exe.exists():
        return exe
    print(f"installing {LITELLM_SPEC} into {LITELLM_VENV} (once; several minutes)", flush=True)
    with log.open("ab") as out:
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        pip = [str(LITELLM_VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, LITELLM_SPEC], check=True, stdout=out, stderr=subprocess.STDOUT)
    return exe


def litellm_version() -> str:
    py = LITELLM_VENV / "bin" / "python"
    code = "import importlib.metadata as m; print(m.version('litellm'))"
    done = subprocess.run([str(py), "-c", code], capture_output=True, text=True, check=False)
    return done.stdout.strip() or "unknown"


def start_litellm(replicas: dict[str, str], workdir: Path, cpus: str | None) -> Target:
    exe = ensure_litellm(workdir / "litellm-install.log")
    config = workdir / "litellm.yaml"
    model_list = [
        {
            "model_name": name,
            "litellm_params": {"model": f"openai/{SERVED_NAME}", "api_base": url, "api_key": "x"},
        }
        for name, url in replicas.items()
    ]
    config.write_text(
        yaml.safe_dump(
            {
                "model_list": model_list,
                "general_settings": {"master_key": LITELLM_KEY},
                "litellm_settings": {"set_verbose": False},
            }
        )
    )
    port = free_port()
    cmd = [str(exe), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
           "--num_workers", "1"]  # fmt: skip
    env = {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "DISABLE_ADMIN_UI": "True",
        "NO_DOCS": "True",
    }
    proc = Proc("litellm", cmd, workdir / "litellm.log", cpus, env)
    proc.wait_http(f"http://127.0.0.1:{port}/health/liveliness", 180)
    return Target("litellm", f"http://127.0.0.1:{port}/v1", LITELLM_KEY, proc)
