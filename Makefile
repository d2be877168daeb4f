# One command to run a scenario, one to run the tests; each creates the venv it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export LITELLM_LOCAL_MODEL_COST_MAP := True

.PHONY: demo test bench lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the CPU build of torch first: a looser requirement would pull a multi-GB CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[all]"
	touch $@

demo: $(VENV)/.installed  ## run the baseline scenario into runs/baseline
	$(VENV)/bin/distsafe run configs/baseline.yaml --out runs/baseline

test: $(VENV)/.installed  ## the whole test suite (README's test command)
	$(PY) -m pytest

bench: $(VENV)/.installed  ## step throughput, 10 .. 10 000 agents
	$(PY) benchmarks/bench_step.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) runs .pytest_cache
