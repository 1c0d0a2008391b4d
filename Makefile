# One idempotent set-up path: `make install` builds .venv from nothing; a second
# run only checks stamps and takes seconds. `make test` and `make demo` set up first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamps
# ninja (installed in the venv) must be on PATH or mmcv compiles one file at a time.
export PATH := $(abspath $(BIN)):$(PATH)
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: install test demo demo-det clean-venv
install: $(STAMP)/mmvim

$(STAMP)/venv:
	$(PY) -m venv $(VENV)
	$(PIP) install 'pip==24.2' 'setuptools==69.5.1' 'wheel==0.44.0'
	mkdir -p $(STAMP) && touch $@

# torch first: mmcv's ops compile against it. 2.13.0 is the CPU wheel on these machines.
$(STAMP)/torch: $(STAMP)/venv
	$(PIP) install 'torch==2.13.0'
	touch $@

# numpy < 2 and the matching opencv: mmseg 1.2.2 / mmdet 3.3.0 predate numpy 2.
# mmcv 2.1.0's setup.py imports pkg_resources, gone from setuptools >= 70; torch
# pulled a newer one, so it is pinned back (torch only needs it for its own builds).
$(STAMP)/mmcv: $(STAMP)/torch
	$(PIP) install 'numpy==1.26.4' 'opencv-python==4.10.0.84' 'mmengine==0.10.7' 'ninja==1.11.1.1'
	$(PIP) install --no-deps 'setuptools==69.5.1'
	MMCV_WITH_OPS=1 MAX_JOBS=2 $(PIP) install --no-build-isolation 'mmcv==2.1.0'
	touch $@

$(STAMP)/mm: $(STAMP)/mmcv requirements/mminstall.txt
	$(PIP) install 'mmsegmentation==1.2.2' 'mmdet==3.3.0' 'ftfy==6.2.3' 'regex==2024.9.11' \
		'matplotlib==3.9.2' 'prettytable==3.11.0' 'scipy==1.14.1' 'pycocotools==2.0.8' \
		'shapely==2.0.6' 'terminaltables==3.1.10' 'rich==13.8.1' 'tqdm==4.66.5'
	touch $@

$(STAMP)/mmvim: $(STAMP)/mm setup.py requirements/tests.txt
	$(PIP) install -r requirements/tests.txt
	$(PIP) install --no-build-isolation --no-deps -e .
	touch $@

test: install
	$(BIN)/python -m pytest -q tests

demo: install
	$(BIN)/python tools/demo/quickstart.py

demo-det: install
	$(BIN)/python tools/demo/quickstart_det.py

clean-venv:
	rm -rf $(VENV)
