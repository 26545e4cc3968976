#!/usr/bin/env bash
# Smoke test on Blender 4.2 LTS: the rig, keyframe and operator tests on the bpy 4.2.23 wheel,
# in their own environment (.venv42), since one process can hold only one bpy.
# Every pin but bpy's comes from requirements.txt (tools/pins.py); BPY42 is this test's own pin.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
BPY42=bpy==4.2.23
# Assignments, so that a missing pin stops the script (set -e) instead of installing less.
TORCH=$("$PYTHON" tools/pins.py torch)
REST=$("$PYTHON" tools/pins.py smplx scipy numpy pytest hypothesis)
if [ ! -x .venv42/bin/python ]; then
  "$PYTHON" -m venv .venv42
fi
PIP=(.venv42/bin/python -m pip install --disable-pip-version-check -q)
# torch first, on its own: the pinned CPU build.
"${PIP[@]}" $TORCH
"${PIP[@]}" "$BPY42" $REST
.venv42/bin/python -c "import bpy; print('bpy', bpy.app.version_string)"
.venv42/bin/python -m pytest -q tests/test_blender_rig.py tests/test_blender_operators.py
