# The two commands of the README. Both create the virtual environment on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PRESET ?= quick
# test workers (pytest-xdist), one file each at a time; each computes on cores / workers threads
TEST_WORKERS ?= 2

.PHONY: reproduce test test-fast rehearse lab docs lint clean-outputs

$(VENV)/.installed: pyproject.toml jupyter/overrides.json
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q --no-compile -e '.[dev]'
	# the tests compare our ports of the published networks with ldct-benchmark's own classes; its
	# network modules need none of its heavy dependencies (wandb, torchvision), so: --no-deps
	$(PY) -m pip install --disable-pip-version-check -q --no-compile --no-deps ldct-benchmark==0.0.15
	# byte-compile on every core we may use at once: pip compiles one file after another (67 of its
	# 140 s on 2 cores; 40 s this way). A cache only (Python compiles a file when it imports it), so a
	# failure is a note, not an error; torch's Python-3.12-only test file is left out
	$(PY) -m compileall -q -j "$$(nproc 2>/dev/null || echo 2)" -x 'py312_intrinsics' \
		"$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >/dev/null 2>&1 \
		|| echo "note: some installed files did not byte-compile; Python compiles them when it imports them"
	# JupyterLab opens the notebooks (py:percent files) as notebooks on a double click
	mkdir -p $(VENV)/share/jupyter/lab/settings && cp jupyter/overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	touch $@

## reproduce: every notebook of a preset (default: quick) on the embedded data -> papermill_runs/, figures/
# (paths are quoted: DATA="/data/my scans" works)
reproduce: $(VENV)/.installed
	$(PY) -m ctinv_utils run --preset '$(PRESET)' $(if $(DATA),--data '$(DATA)') $(if $(ONLY),--only '$(ONLY)') $(if $(OUT),--out '$(OUT)') $(if $(CONFIRM_CPU),--confirm-cpu)

## test: the whole test suite (CPU, no network) but the paper rehearsal (make rehearse)
test: $(VENV)/.installed
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder -m "not rehearsal" $(PYTEST_ARGS)

## test-fast: the unit and integration tests (everything but the notebook chain and preset-size training)
test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder -m "not reproduction and not rehearsal" $(PYTEST_ARGS)

## rehearse: the paper preset at its sizes (512 px, every notebook) on stand-ins, about 8 min on 2 idle cores
rehearse: $(VENV)/.installed
	$(PY) -m pytest -q -p no:xdist -m rehearsal tests/test_paper_rehearsal.py $(PYTEST_ARGS)

## lab: JupyterLab on the notebooks (py:percent files open as notebooks)
lab: $(VENV)/.installed
	$(VENV)/bin/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/

## docs: the documentation site into site/ (a broken link or reference fails the build)
docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

## lint: ruff's checks (ruff.toml)
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check ctinv_utils tests docs

clean-outputs:
	rm -rf papermill_runs/quick papermill_runs/paper figures/quick figures/paper
