# Two commands do all set-up on a fresh machine:
#   make demo   - the bundled CMU clip through the Blender add-on (headless bpy): out/demo.blend,
#                 out/demo_smpl.npz, out/preview/*.png
#   make test   - run the whole test suite
# and for developers:
#   make lint   - ruff check, ruff format --check, mypy on the core (CI runs it before the tests)
#   make format - ruff format + ruff check --fix over the tree
# Every version pin lives in requirements.txt; tools/pins.py reads them (stdlib only).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --disable-pip-version-check -q
STAMP := $(VENV)/.requirements-installed
# The lint tools have their own stamp: `make lint` installs ruff and mypy into an existing .venv
# when they are missing, and never reinstalls the rest of the environment.
LINT_STAMP := $(VENV)/.lint-installed
PINS := $(PYTHON) tools/pins.py

.PHONY: demo test venv lint format format-check clean bench smoke42

venv: $(STAMP)

# torch first, on its own: the pinned CPU build (an unpinned resolve would pull the CUDA build).
# Then the package itself, editable and without dependencies (they are the pins above), so
# `lsmplify` and `import lsmplify_blender` work from any folder without PYTHONPATH.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) $$($(PINS) torch)
	$(PIP) -r requirements.txt
	$(PIP) --no-deps -e .
	touch $(STAMP)

# A fresh machine (CI) gets the whole environment once (mypy needs torch and numpy to check
# the core); an existing .venv only gets the pinned ruff and mypy, and only if they are absent.
$(LINT_STAMP): requirements.txt
	test -f $(STAMP) || $(MAKE) venv
	$(PY) tools/pins.py --installed ruff mypy || $(PIP) $$($(PINS) ruff mypy)
	touch $(LINT_STAMP)

# Both checks run (one CI log shows every finding); lint fails if either does.
lint: $(LINT_STAMP)
	@status=0; \
	$(VENV)/bin/ruff check --output-format=concise . || status=1; \
	$(VENV)/bin/ruff format --check . || status=1; \
	$(VENV)/bin/mypy || status=1; \
	exit $$status

# `lint` runs this too; on its own for a quick look.
format-check: $(LINT_STAMP)
	$(VENV)/bin/ruff format --check .

# Fixes first (they may leave code the formatter then tidies); what is left to fix by hand
# is listed, without failing the target.
format: $(LINT_STAMP)
	$(VENV)/bin/ruff check --fix --exit-zero --output-format=concise .
	$(VENV)/bin/ruff format .

demo: $(STAMP)
	$(PY) tools/demo_blender.py --out out

test: $(STAMP)
	$(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) benchmarks/bench_core.py

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache

# Blender 4.2 LTS smoke test in its own environment (.venv42)
smoke42:
	bash tools/smoke_bpy42.sh
