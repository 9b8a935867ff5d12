# lstm-edge: every step of the pipeline is a make target. Variables:
#   MODEL=name[,name]   models from the config (default: all)
#   DEVICE=name[,name]  device profiles (default: the config's)
#   CONFIG=file.toml    pipeline config (default: the embedded reference zoo)
#   make export MODEL=my_model.keras DATA=my_data.npz   exports your own model file
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
EDGE := $(VENV)/bin/edge
STAMP := $(VENV)/.installed
APT_PACKAGES := gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm qemu-user chromium
CONFIG_ARG := $(if $(CONFIG),--config $(CONFIG))
MODEL_ARG := $(if $(MODEL),--models $(MODEL))
DEVICE_ARG := $(if $(DEVICE),--devices $(DEVICE))
PYTEST_ARGS ?=
# Test files run in parallel, one worker per usable CPU (each file on one worker: its module
# fixtures build once); tests/conftest.py hands out the slowest files first.
TEST_WORKERS ?= $(shell nproc)
PYTEST_PARALLEL := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

.PHONY: help setup system-packages demo export lint quantize bench report check firmware test test-fast fuzz faults spread sweep sweep-bench readme timings clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

setup: $(STAMP) system-packages  ## virtualenv with pinned dependencies + the emulator toolchain and Chromium

$(STAMP): requirements.lock pyproject.toml
	python3.11 -m venv $(VENV) 2>/dev/null || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	@# tf-keras's own dependency list pulls the full tensorflow package beside tensorflow-cpu.
	$(PY) -m pip install --quiet --no-deps tf-keras==2.21.0
	@# The [torch] extra, for the test suite: torch==2.13.0 resolves to the local CPU wheel
	@# (2.13.0+cpu) on these machines; its dependencies are pinned in requirements.lock, and
	@# --no-deps keeps pip from resolving anything else (another torch is a multi-GB CUDA build).
	$(PY) -m pip install --quiet --no-deps torch==2.13.0
	@# compat mode: a plain path entry, so `edge` imports the same from any directory.
	$(PY) -m pip install --quiet --no-deps -e . --config-settings editable_mode=compat
	touch $(STAMP)

system-packages:  ## Debian packages: arm-none-eabi GCC, newlib, QEMU (Cortex-M; user-mode x86 CPUs), Chromium (HTML report check)
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "missing Debian packages:$$missing (run: sudo apt-get install$$missing)"; exit 1; fi; fi

demo: setup  ## the main job on the embedded default: export, quantize, bench, report, check
	$(EDGE) $(CONFIG_ARG) export $(MODEL_ARG)
	$(EDGE) $(CONFIG_ARG) quantize $(MODEL_ARG)
	$(EDGE) $(CONFIG_ARG) bench $(MODEL_ARG) $(DEVICE_ARG)
	$(EDGE) $(CONFIG_ARG) report $(MODEL_ARG)
	$(EDGE) $(CONFIG_ARG) check $(MODEL_ARG) $(DEVICE_ARG)
	@echo "reports: reports/summary.html and reports/<model>/report.html"

export: $(STAMP)  ## float32 / dynamic / int8 TFLite and ONNX artifacts + manifest (incremental)
ifneq ($(and $(MODEL),$(wildcard $(MODEL))),)
	$(EDGE) export --model $(MODEL) --data $(DATA) $(if $(KIND),--kind $(KIND))
else
	$(EDGE) $(CONFIG_ARG) export $(MODEL_ARG)
endif

lint: $(STAMP)  ## pre-flight check of a model file: make lint FILE=my_model.keras
	$(EDGE) lint $(FILE)

quantize: $(STAMP)  ## accuracy-budgeted int8 search
	$(EDGE) $(CONFIG_ARG) quantize $(MODEL_ARG)

bench: $(STAMP)  ## every artifact in the simulated runtime of each device profile
	$(EDGE) $(CONFIG_ARG) bench $(MODEL_ARG) $(DEVICE_ARG)

report: $(STAMP)  ## Markdown + HTML reports from manifests and bench results
	$(EDGE) $(CONFIG_ARG) report $(MODEL_ARG)

check: $(STAMP)  ## the CI gate: budgets from the config, JUnit XML, exit 1 when exceeded
	$(EDGE) $(CONFIG_ARG) check $(MODEL_ARG) $(DEVICE_ARG)

comma := ,
firmware: $(STAMP)  ## int8 or 16x8 model -> C library (API, Makefile, CMake, README): make firmware MODEL=seattle_temp [ARTIFACT=tflite_16x8|budgeted OUT=dir DEVICE=cortex_m4f]
	@test -n "$(MODEL)" || { echo "usage: make firmware MODEL=<name or .tflite>[,<name>...] [ARTIFACT=...] [OUT=...] [DEVICE=...]"; exit 2; }
	@for m in $(subst $(comma), ,$(MODEL)); do \
	  $(EDGE) $(CONFIG_ARG) firmware $$m $(if $(ARTIFACT),--artifact $(ARTIFACT)) $(if $(OUT),--out $(OUT)) \
	    $(if $(DEVICE),--device $(DEVICE)) || exit $$?; done

test: setup  ## the test suite (unit tests + end-to-end tests on the reference models)
	$(PY) -m pytest -q $(PYTEST_PARALLEL) $(PYTEST_ARGS)

test-fast: $(STAMP)  ## unit tests only, no reference-model end-to-end tests
	$(PY) -m pytest -q -m "not e2e" $(PYTEST_PARALLEL) $(PYTEST_ARGS)

FUZZ_MODELS ?= 10000
FUZZ_SEED ?= 0
FUZZ_BAD_INPUTS ?= 200
fuzz: $(STAMP)  ## seeded fuzz campaign: mutated models through edge.runtime; bad models, data, configs through edge export (needs `make export`)
	$(PY) -m edge.fuzz --artifacts artifacts --models $(FUZZ_MODELS) --bad-inputs $(FUZZ_BAD_INPUTS) --seed $(FUZZ_SEED) --out reports/fuzz.json

FAULT_KILLS ?= 20
faults: $(STAMP)  ## kill -9 at random points of export, quantize and bench; check every file stays consistent
	$(PY) -m edge.faults --kills $(FAULT_KILLS) --seed $(FUZZ_SEED) --work reports/faults --out reports/faults.json

spread: setup  ## host figures on this CPU and emulated x86 CPUs (QEMU user mode) -> reports/spread.json (needs `make export`)
	$(PY) -m edge.spread --artifacts artifacts --out reports/spread.json $(MODEL_ARG)

SPACE ?= edge/tasks/sweep_example.toml
sweep: $(STAMP)  ## train a grid of variants on Ray, Pareto front + recommendation per device: make sweep [SPACE=file.toml RAY=host:port DATA=x.npz KIND=regression]
	$(EDGE) sweep $(SPACE) $(if $(RAY),--ray $(RAY)) $(if $(DATA),--data $(DATA)) $(if $(KIND),--kind $(KIND))

sweep-bench: $(STAMP)  ## sweep scale benchmark: 2 Ray workers vs 1, per-variant overhead, driver memory -> reports/sweep_bench.json
	$(PY) -m edge.sweep.benchmark --out reports/sweep_bench.json $(SWEEP_BENCH_ARGS)

readme: $(STAMP)  ## regenerate the README's measured tables from reports/ (after make demo)
	$(PY) -m edge.readme_figures --reports reports --artifacts artifacts --readme README.md

timings:  ## cold and warm `make demo` wall times -> reports/timings.json (run it on a fresh clone)
	python3 -m edge.timings

clean:  ## remove generated artifacts and reports (keeps the virtualenv)
	rm -rf artifacts reports
