# Two commands do all set-up on a fresh machine:
#   make demo   - solve the bundled CMU clip with the embedded open model, write out/
#   make test   - run the whole test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed

.PHONY: demo test venv clean bench

venv: $(STAMP)

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q torch==2.13.0
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	touch $(STAMP)

demo: $(STAMP)
	mkdir -p out
	$(PY) -m lsmplify_blender convert lsmplify_blender/core/data/demo/cmu_131_01.bvh --out out/demo_smpl.npz --solver network --refine 0

test: $(STAMP)
	$(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) benchmarks/bench_core.py

clean:
	rm -rf out .pytest_cache
