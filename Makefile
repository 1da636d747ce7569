# Two commands for a newcomer: `make demo` and `make test`. The first use creates .venv and installs
# the package with the exact versions pinned in requirements/constraints.txt.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv demo test test-slow test-all test-torch lint format typecheck bench lock clean help

help:
	@echo "make venv       create .venv with the pinned versions (demo and test do it on first use)"
	@echo "make demo       set up .venv (first use) and run the main job on the built-in data"
	@echo "make test       the default test suite (fast tier)"
	@echo "make test-slow  the slow end-to-end checks (real data, longer training)"
	@echo "make lint       ruff lint + format check + mypy"
	@echo "make bench      benchmarks (measured, never asserted)"
	@echo "make test-torch TORCH=2.4.0 TORCHVISION=0.19.0"
	@echo "                the default suite on another torch release, in .venv-torch<version>"

$(STAMP): pyproject.toml requirements/constraints.txt
	@test -x $(PY) || python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	  echo "make: the versions pinned in requirements/constraints.txt need Python 3.11+;" \
	       "python3 here is $$(python3 -V 2>&1) (pip install . works from 3.10)" >&2; exit 1; }
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -c requirements/constraints.txt -e ".[dev]"
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/googlenet summary
	$(PY) -m googlenet.demo

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest -m "slow or not slow" $(PYTEST_ARGS)

# pyproject.toml accepts torch>=2.4 (GPU machines carry other releases than the pinned one): this runs
# the default suite on the release given, in a venv of its own with everything else pinned. Below torch
# 2.6 the `fast` extra (ONNX Runtime, OpenVINO, the ONNX export) cannot install, and its tests skip.
# The pins leave out torch's own requirements (torch 2.6 needs its sympy), and naming torch and
# torchvision again makes a conflict fail rather than quietly install the pinned torch.
TORCH_VENV := .venv-torch$(TORCH)
# `===`: exactly that release. `==2.13.0` also matches a local build such as 2.13.0+cpu, which pip
# prefers where an index carries both, and which the CUDA build of torchvision 0.28.0 cannot load
# (`operator torchvision::nms does not exist`). Give TORCH=2.13.0+cpu to ask for such a build.
test-torch:
	@test -n "$(TORCH)" && test -n "$(TORCHVISION)" || { \
	  echo "make test-torch: give both releases, e.g. TORCH=2.4.0 TORCHVISION=0.19.0" >&2; exit 2; }
	@test -x $(TORCH_VENV)/bin/python || python3 -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/python -m pip install --quiet torch===$(TORCH) torchvision===$(TORCHVISION)
	$(TORCH_VENV)/bin/python requirements/constraints_beside_torch.py requirements/constraints.txt > $(TORCH_VENV)/constraints.txt
	$(TORCH_VENV)/bin/python -m pip install --quiet -c $(TORCH_VENV)/constraints.txt torch===$(TORCH) torchvision===$(TORCHVISION) \
	  -e ".[$$($(TORCH_VENV)/bin/python -c 'import torch; v = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]); print("dev" if v >= (2, 6) else "detect,caffe")')]" \
	  pytest pytest-timeout hypothesis
	$(TORCH_VENV)/bin/python -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__)'
	$(TORCH_VENV)/bin/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks requirements examples
	$(VENV)/bin/ruff format --check src tests benchmarks requirements examples
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff format src tests benchmarks requirements examples
	$(VENV)/bin/ruff check --fix src tests benchmarks requirements

bench: $(STAMP)
	$(PY) -m googlenet benchmark --json benchmarks/results/benchmark-$$(date +%Y%m%d).json

lock: $(STAMP)
	{ head -2 requirements/constraints.txt; $(PY) -m pip freeze --exclude-editable | grep -v '^-e'; } > requirements/constraints.txt.new
	mv requirements/constraints.txt.new requirements/constraints.txt

clean:
	rm -rf $(VENV) .venv-torch* build dist src/*.egg-info .pytest_cache .ruff_cache .mypy_cache
