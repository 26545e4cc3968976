"""``make demo``'s script (tools/demo_blender.py) on a short fixture, in its own process.

Checks what the demo promises: a .blend that loads with the rig, mesh and empties in it,
an .npz with one row per scene frame from the scene's first frame, non-empty preview PNGs,
and the fit figures on stdout.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lsmplify_blender.core.solver import DEFAULT_SOLVER

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "131_01_short.bvh"

# only look for the wheel (importing bpy here would take this process's one bpy): the demo
# runs in a child process
if importlib.util.find_spec("bpy") is None:
    pytest.skip("the bpy wheel is not installed", allow_module_level=True)

CHECK_BLEND = r"""
import json, sys, bpy
bpy.ops.wm.open_mainfile(filepath=sys.argv[1])
rigs = [o for o in bpy.data.objects if o.type == "ARMATURE" and o.get("lsmplify_rig")]
sc = bpy.context.scene
print("BLEND " + json.dumps(dict(
    rigs=len(rigs), meshes=[c.name for r in rigs for c in r.children if c.type == "MESH"],
    empties=sum(o.type == "EMPTY" for o in bpy.data.objects),
    action=rigs[0].animation_data.action.name if rigs and rigs[0].animation_data else None,
    frames=[sc.frame_start, sc.frame_end], fps=sc.render.fps)))
"""


def test_demo_script_on_a_short_clip(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "demo_blender.py"),
            "--out",
            str(out),
            "--input",
            str(FIXTURE),
            "--max-frames",
            "30",
            "--preview-frames",
            "3",
            "--resolution",
            "96",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    # the panel's default, which is the core's (the demo no longer forces a solver)
    assert summary["solver"] == DEFAULT_SOLVER
    assert summary["frames"] == 30 and summary["frame_start"] == 1
    assert 0 < summary["fit_error_mm_mean"] <= summary["fit_error_mm_max"] < 150
    assert 0 < summary["mpbe_mm"] < 80 and len(summary["betas"]) == 10
    assert "fit error mean" in proc.stdout and str(out / "demo.blend") in proc.stdout

    with np.load(out / "demo_smpl.npz") as z:
        assert z["poses"].shape == (30, 72) and z["trans"].shape == (30, 3)
        assert int(z["frame_start"]) == 1 and z["fit_error_mm"].shape == (30,)
        assert np.isfinite(z["poses"]).all() and np.isfinite(z["trans"]).all()

    pngs = sorted((out / "preview").glob("preview_*.png"))
    assert [p.name for p in pngs] == ["preview_00001.png", "preview_00016.png", "preview_00030.png"]
    for p in pngs:
        data = p.read_bytes()
        assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"

    script = tmp_path / "check_blend.py"
    script.write_text(CHECK_BLEND, encoding="utf-8")
    chk = subprocess.run(
        [sys.executable, str(script), str(out / "demo.blend")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path / "user")},
    )
    assert chk.returncode == 0, (chk.stdout + chk.stderr)[-4000:]
    blend = json.loads(next(ln for ln in chk.stdout.splitlines() if ln.startswith("BLEND "))[6:])
    assert blend["rigs"] == 1 and len(blend["meshes"]) == 1 and blend["empties"] >= 15
    assert (
        blend["action"].startswith("LSMPLify_")
        and blend["frames"] == [1, 30]
        and blend["fps"] == 120
    )
