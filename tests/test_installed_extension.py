"""The built linux-x64 zip, installed the way a user installs it, runs the whole chain.

``build_addon.py`` builds the zip (reusing ``wheels/`` when it holds the linux-x64 wheels,
else downloading them); a separate Python process (one bpy per process) then, with its
Blender user directory in a temp folder (``BLENDER_USER_RESOURCES``):

1. installs it with ``bpy.ops.extensions.package_install_files(repo="user_default",
   enable_on_install=True)`` -- Blender unpacks the bundled wheels (torch, scipy, sympy...)
   into the extensions' own site-packages;
2. checks it is enabled as ``bl_ext.user_default.lsmplify_blender`` and that the code that
   runs is the installed copy, not this checkout;
3. imports a fixture BVH, solves it (analytic) and exports the .npz through the operators,
   with smplx and the torch requirements the zip leaves out made unimportable (the venv
   has them; a user's Blender does not).

Measured: building the zip from wheels/ about 1 s, installing (unpacking about 1 GB of
wheels) about 11 s, the whole test about 15 s: it runs in ``make test``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "131_01_short.bvh"
sys.path.insert(0, str(ROOT))

build_addon = pytest.importorskip("build_addon")

# Run with the repository NOT on sys.path (cwd and script folder are temp dirs), so the
# only lsmplify_blender Python can find is the installed one.
SCRIPT = r"""
import json, os, sys, time
zip_path, bvh, npz = sys.argv[1:4]
for blocked in sys.argv[4].split(","):  # not bundled: importing them must never be needed
    sys.modules[blocked] = None
t0 = time.perf_counter()
import bpy
import addon_utils
t_import = time.perf_counter() - t0
bpy.ops.wm.read_homefile(use_empty=True)
t0 = time.perf_counter()
res = bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default",
                                               enable_on_install=True)
t_install = time.perf_counter() - t0
mod_name = "bl_ext.user_default.lsmplify_blender"
enabled = [m.module for m in bpy.context.preferences.addons]
mod = sys.modules.get(mod_name)
out = dict(install=sorted(res), install_seconds=round(t_install, 2), bpy_import_seconds=round(t_import, 2),
           enabled=mod_name in enabled, module_file=getattr(mod, "__file__", None),
           plain_module_loaded="lsmplify_blender" in sys.modules,
           user_dir=os.environ["BLENDER_USER_RESOURCES"])
import torch, scipy
out["torch_file"] = torch.__file__
prefs = bpy.context.preferences.addons[mod_name].preferences
out["prefs_idname"] = type(prefs).bl_idname
t0 = time.perf_counter()
assert bpy.ops.lsmplify.import_keypoints(filepath=bvh, create_empties=True) == {"FINISHED"}
sc = bpy.context.scene
s = sc.lsmplify
sc.frame_start, sc.frame_end = 1, 60
s.solver = "ANALYTIC"
assert bpy.ops.lsmplify.solve() == {"FINISHED"}
rig = [o for o in bpy.data.objects if o.type == "ARMATURE" and o.get("lsmplify_rig")][-1]
bpy.context.view_layer.objects.active = rig
assert bpy.ops.lsmplify.export_npz(filepath=npz) == {"FINISHED"}
out["chain_seconds"] = round(time.perf_counter() - t0, 2)
out["fit_error_mm"] = s.result_fit_error_mm
out["layout"] = s.detected_layout
out["operator_module"] = type(bpy.ops.lsmplify.solve.get_rna_type()).__module__
import importlib
ops = importlib.import_module(mod_name + ".blender.operators")
out["operators_file"] = ops.__file__
print("RESULT " + json.dumps(out), flush=True)
"""


@pytest.fixture(scope="module")
def built_zip(linux_extension_build):
    out, _ = linux_extension_build
    (zip_path,) = sorted(out.glob("lsmplify_blender-*-linux_x64.zip"))
    return zip_path


def test_installed_zip_runs_the_operator_chain(built_zip, tmp_path):
    user = tmp_path / "blender_user"
    work = tmp_path / "work"
    user.mkdir()
    work.mkdir()
    script = work / "run_installed.py"
    script.write_text(SCRIPT, encoding="utf-8")
    npz = work / "installed.npz"
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "PYTHONPATH",
            "BLENDER_USER_SCRIPTS",
            "BLENDER_USER_CONFIG",
            "BLENDER_USER_EXTENSIONS",
        )
    }
    env["BLENDER_USER_RESOURCES"] = str(user)
    t0 = time.perf_counter()
    blocked = ",".join(["smplx", "chumpy", *sorted(build_addon.TORCH_DEPS_NOT_BUNDLED)])
    proc = subprocess.run(
        [sys.executable, str(script), str(built_zip), str(FIXTURE), str(npz), blocked],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    wall = time.perf_counter() - t0
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line is not None, log[-6000:]
    res = json.loads(line[len("RESULT ") :])
    print(
        f"\ninstall {res['install_seconds']} s, operator chain {res['chain_seconds']} s, "
        f"whole process {wall:.1f} s"
    )

    assert res["install"] == ["FINISHED"]
    assert res["enabled"], res
    installed_root = (user / "extensions" / "user_default" / "lsmplify_blender").resolve()
    assert Path(res["module_file"]).resolve().is_relative_to(installed_root), res
    assert Path(res["operators_file"]).resolve().is_relative_to(installed_root), res
    assert not res["plain_module_loaded"], "the checkout's lsmplify_blender was imported"
    assert res["prefs_idname"] == "bl_ext.user_default.lsmplify_blender"
    # the bundled wheels were unpacked into the extensions' own site-packages (the venv's
    # copies come first on sys.path here; in Blender these are the only ones)
    site = (
        user
        / "extensions"
        / ".local"
        / "lib"
        / f"python{sys.version_info[0]}.{sys.version_info[1]}"
        / "site-packages"
    )
    for pkg in ("torch", "scipy", "sympy", "mpmath", "typing_extensions.py"):
        assert (site / pkg / "__init__.py").is_file() or (site / pkg).is_file(), (
            pkg,
            sorted(p.name for p in site.iterdir()),
        )
    for pkg in ("numpy", "smplx", "chumpy", *build_addon.TORCH_DEPS_NOT_BUNDLED):
        assert not (site / pkg).exists(), pkg
    installed = user / "extensions" / "user_default" / "lsmplify_blender"
    assert "mocap.cs.cmu.edu" in (installed / build_addon.NOTICES_NAME).read_text(encoding="utf-8")
    assert res["layout"].startswith("CMU") and 0 < res["fit_error_mm"] < 100

    with np.load(npz) as z:
        assert (
            z["poses"].shape == (60, 72)
            and z["trans"].shape == (60, 3)
            and z["betas"].shape[0] >= 10
        )
        assert np.isfinite(z["poses"]).all() and float(z["mocap_framerate"]) == 120
