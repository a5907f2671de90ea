# Lingyun: `make run` serves the embedded default; `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# llama.cpp is compiled from source: portable flags so the wheel runs on any x86-64 CPU.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF

.PHONY: install run test lint typecheck bench bench-fairness bench-metering bench-idle bench-routing clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip wheel
	# torch is pinned to the CPU build on local disk; installing it first keeps
	# sentence-transformers from pulling a CUDA build.
	$(PY) -m pip install -q 'torch==2.13.0'
	$(PY) -m pip install -q -e '.[transformers,embeddings,llamacpp,ray,dev]'
	touch $(STAMP)

run: install
	$(VENV)/bin/lingyun serve

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: install
	$(VENV)/bin/mypy

test: install lint typecheck
	$(VENV)/bin/pytest -q

# Side-by-side gateway benchmark (direct / Lingyun / LiteLLM), ~15 min on 2 cores; installs
# LiteLLM into .venv-litellm on first use. BENCH_ARGS=--quick for a few minutes.
bench: install
	$(PY) -m benchmarks.gateway $(BENCH_ARGS)

# Tenant fairness under VTC and FCFS, and B against B alone (~90 s on 2 cores).
bench-fairness: install
	$(PY) -m benchmarks.fairness

# Requests/s through Lingyun with metering on and off, side by side (a few minutes).
bench-metering: install
	$(PY) -m benchmarks.metering $(BENCH_ARGS)

# An idle gateway (five deployments, no traffic): its CPU and whether it writes (~1 min).
bench-idle: install
	$(PY) -m benchmarks.idle $(BENCH_ARGS)

# Routing policies side by side over simulator replicas with a prefix cache (BENCH_ARGS=--quick:
# about 90 s).
bench-routing: install
	$(PY) -m benchmarks.routing $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .lingyun .pytest_cache .mypy_cache .ruff_cache
