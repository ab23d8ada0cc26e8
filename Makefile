# LLMOS for Jupyter. Two commands a newcomer needs: `make lab` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# CPU build of torch: a bare `torch` requirement in a fresh venv pulls a multi-GB CUDA
# build. Override on a GPU machine: `make TORCH_SPEC=torch test`.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
# The JupyterLab extension the wheel ships (built from labextension/ and sdk/js/ by npm).
LABEXT := labextension/build/llmos-jupyter/package.json
JS_SOURCES := $(wildcard sdk/js/package*.json sdk/js/src/*.ts labextension/package*.json \
	labextension/src/*.ts labextension/style/* labextension/schema/*.json)
export LLMOS_HOME ?= $(HOME)/.llmos

.PHONY: install lab test lint test-fast bench gpu-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(LABEXT): $(JS_SOURCES)
	bash scripts/build-js.sh

$(STAMP): pyproject.toml $(LABEXT) | $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[test]"
	@# Build our native CPU kernels once now (a few s, cached) rather than at first load.
	$(BIN)/python -c "from llmos_jupyter.model.native import build; print('native kernels:', build())" \
		|| echo "no C++ compiler: models will run on the (slower) torch float32 path"
	$(BIN)/python -c "from llmos_jupyter.model.native import build; print('training kernels:', build('llmos_train'))" \
		|| echo "no C++ compiler or OpenMP: training will run torch's (slower) elementwise ops"
	touch $(STAMP)

install: $(STAMP)

lab: install
	$(BIN)/llmos pull smollm2-135m-instruct
	$(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

lint: install
	$(BIN)/ruff check .

# Every test: kernels under the Triton interpreter, the real default model, then the
# tutorial notebooks executed by nbval (an error or a changed output fails). Both run in
# temporary stores; the user's LLMOS_HOME is checksummed before and after, and must not change.
test: install lint
	PY=$(BIN)/python bash scripts/test.sh

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

bench: install
	$(BIN)/python benchmarks/bench_decode.py

# On a machine with an NVIDIA GPU: compiled Triton tests (bf16) + kernel benchmarks.
gpu-check: install
	$(BIN)/python kernels/benchmarks/run_all.py --out kernels/benchmarks/results

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
