"""Import bpy safely for tests and benchmarks: user resources in a temp dir, set BEFORE import.

bpy reads ``BLENDER_USER_RESOURCES`` once, at import, to find the user's config and
scripts; pointing it at a fresh temp dir keeps tests away from any real Blender setup.
There is one bpy per process: reset scenes with ``reset_scene()``
(``read_homefile(use_empty=True)``), never ``read_factory_settings`` (it unregisters add-ons).
"""
from __future__ import annotations

import atexit
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
