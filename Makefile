# One idempotent set-up path: `make install` builds .venv from nothing; a second
# run only checks stamps and takes seconds. `make test` and `make demo` set up first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamps
# ninja (installed in the venv) must be on PATH or mmcv compiles one file at a time.
export PATH := $(abspath $(BIN)):$(PATH)
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: install lint test demo demo-det clean-venv
install: $(STAMP)/mmvim

# Every version comes from requirements/constraints.txt; the rules below only
# name packages, in the order the builds need them.
PINS := requirements/constraints.txt
# torch is asked for by its pinned line, not through -c: pip's resolver
# refuses the constraint torch==X next to the installed X+cpu wheel.
TORCH_PIN := $(shell grep -E '^torch==' $(PINS))

$(STAMP)/venv: $(PINS)
	$(PY) -m venv $(VENV)
	$(PIP) install -c $(PINS) pip setuptools wheel
	mkdir -p $(STAMP) && touch $@

# torch first: mmcv's ops compile against it.
$(STAMP)/torch: $(STAMP)/venv
	$(PIP) install '$(TORCH_PIN)'
	touch $@

# torch pulls a newer setuptools than mmcv's setup.py can use: pinned back
# (torch only needs it for its own builds).
$(STAMP)/mmcv: $(STAMP)/torch
	$(PIP) install -c $(PINS) numpy opencv-python mmengine ninja
	$(PIP) install -c $(PINS) --no-deps setuptools
	MMCV_WITH_OPS=1 MAX_JOBS=2 $(PIP) install -c $(PINS) --no-build-isolation mmcv
	touch $@

$(STAMP)/mm: $(STAMP)/mmcv requirements/mminstall.txt
	$(PIP) install -c $(PINS) -r requirements/mminstall.txt
	touch $@

# The editable install also compiles the CPU scan (mmvim/ops/csrc) for this
# machine: rebuilt only when its sources, setup.py or the pins change.
# triton and onnx are optional for users; the tests run the Triton kernels in
# its interpreter and check an ONNX export with onnxruntime.
TEST_EXTRAS := requirements/tests.txt requirements/triton.txt requirements/deploy.txt
$(STAMP)/mmvim: $(STAMP)/mm setup.py $(TEST_EXTRAS) $(wildcard mmvim/ops/csrc/*)
	$(PIP) install -c $(PINS) $(addprefix -r ,$(TEST_EXTRAS))
	$(PIP) install --no-build-isolation --no-deps -e .
	touch $@

lint: install
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest -q tests

demo: install
	$(BIN)/python tools/demo/quickstart.py

demo-det: install
	$(BIN)/python tools/demo/quickstart_det.py

clean-venv:
	rm -rf $(VENV)
