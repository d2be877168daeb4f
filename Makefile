# One command to run a scenario, one to run the tests; each creates the venv it needs.
#
# Both targets share one venv ($(VENV), overridable: CI runs `make test VENV=.ci/venv`) and
# install in layers, each marked by a stamp file inside it:
#   $(VENV)/.core  the core package only (`pip install -e .`): what `make demo` needs, seconds
#   $(VENV)/.all   everything (`-e ".[all]"`: RL, LLM, analysis and dev tools): `make test`
# `make demo` then `make test` adds the extras to the same venv; `make test` then `make demo`
# installs nothing (.all implies .core). Editing pyproject.toml re-runs the installs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export LITELLM_LOCAL_MODEL_COST_MAP := True

.PHONY: demo test bench lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.core: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.all: pyproject.toml | $(PY)
	# the CPU build of torch first: a looser requirement would pull a multi-GB CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[all]"
	touch $@ $(VENV)/.core

demo: $(VENV)/.core  ## run the baseline scenario into runs/baseline (replacing it)
	$(VENV)/bin/distsafe run configs/baseline.yaml --out runs/baseline --overwrite

test: $(VENV)/.all  ## the whole test suite (README's test command)
	$(PY) -m pytest

bench: $(VENV)/.core  ## step throughput, 10 .. 10 000 agents
	$(PY) benchmarks/bench_step.py

lint: $(VENV)/.all
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) runs .pytest_cache
