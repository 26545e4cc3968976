# Two commands do all set-up on a fresh machine:
#   make demo   - the bundled CMU clip through the Blender add-on (headless bpy): out/demo.blend,
#                 out/demo_smpl.npz, out/preview/*.png
#   make test   - run the whole test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed

.PHONY: demo test venv clean bench smoke42

venv: $(STAMP)

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q torch==2.13.0
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	touch $(STAMP)

demo: $(STAMP)
	$(PY) tools/demo_blender.py --out out

test: $(STAMP)
	$(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) benchmarks/bench_core.py

clean:
	rm -rf out .pytest_cache

# Blender 4.2 LTS smoke test in its own environment (.venv42)
smoke42:
	bash tools/smoke_bpy42.sh
