#!/usr/bin/env bash
# Smoke test on Blender 4.2 LTS: the rig, keyframe and operator tests on the bpy 4.2.23 wheel,
# in their own environment (.venv42), since one process can hold only one bpy.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv42/bin/python ]; then
  "$PYTHON" -m venv .venv42
fi
.venv42/bin/python -m pip install --disable-pip-version-check -q torch==2.13.0
.venv42/bin/python -m pip install --disable-pip-version-check -q bpy==4.2.23 smplx==0.1.28 scipy==1.17.1 \
  "numpy<2" pytest==9.2.0 hypothesis==6.170.15
.venv42/bin/python -c "import bpy; print('bpy', bpy.app.version_string)"
.venv42/bin/python -m pytest -q tests/test_blender_rig.py tests/test_blender_operators.py
