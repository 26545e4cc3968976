"""Import bpy safely for tests and benchmarks: user resources in a temp dir, set BEFORE import.

bpy reads ``BLENDER_USER_RESOURCES`` once, at import, to find the user's config and
scripts; pointing it at a fresh temp dir keeps tests away from any real Blender setup.
There is one bpy per process: reset scenes with ``reset_scene()``
(``read_homefile(use_empty=True)``), never ``read_factory_settings`` (it unregisters add-ons).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def import_bpy():
    """Return the bpy module, or None when the bpy wheel is not installed."""
    if "bpy" not in sys.modules:
        if not os.environ.get("BLENDER_USER_RESOURCES"):
            tmp = tempfile.mkdtemp(prefix="lsmplify_blender_user_")
            atexit.register(shutil.rmtree, tmp, True)
            os.environ["BLENDER_USER_RESOURCES"] = tmp
        try:
            import bpy  # noqa: F401
        except ImportError:
            return None
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return sys.modules["bpy"]


def reset_scene():
    """An empty scene in the one Blender of this process."""
    bpy = import_bpy()
    bpy.ops.wm.read_homefile(use_empty=True)
    return bpy.context.scene


def evaluated_vertices_smpl(mesh_obj):
    """The deformed mesh at the current frame, back in SMPL's Y-up metres (float64)."""
    import numpy as np

    from lsmplify_blender.blender import rig

    bpy = import_bpy()
    ev = mesh_obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    mesh = ev.to_mesh()
    try:
        co = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
        mesh.vertices.foreach_get("co", co)
    finally:
        ev.to_mesh_clear()
    mw = np.array(mesh_obj.matrix_world, dtype=np.float64)
    return rig.blender_to_smpl(co.reshape(-1, 3).astype(np.float64) @ mw[:3, :3].T + mw[:3, 3])


def fcurve_keys(action, slot=None) -> dict:
    """{(data_path, array_index): (K, 2) keyframe coordinates} of an action (bulk read)."""
    import numpy as np

    from lsmplify_blender.blender.keyframes import action_fcurves

    out = {}
    for fc in action_fcurves(action, slot):
        co = np.empty(2 * len(fc.keyframe_points), dtype=np.float32)
        fc.keyframe_points.foreach_get("co", co)
        out[(fc.data_path, fc.array_index)] = co.reshape(-1, 2)
    return out


ADDON = "lsmplify_blender"


@contextlib.contextmanager
def addon_enabled(*importers: str):
    """The LSMPLify add-on, then Blender's own ``importers`` (e.g. ``io_scene_fbx``), enabled for
    a test module (``with addon_enabled(...): yield`` in its module fixture); the add-on is
    disabled after."""
    import addon_utils

    addon_utils.enable(ADDON, default_set=True)
    for name in importers:
        addon_utils.enable(name, default_set=True)
    try:
        yield
    finally:
        addon_utils.disable(ADDON, default_set=True)
