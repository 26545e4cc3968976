"""The FBX export hides the skinned mesh while the exporter bakes (issue 15): same file, faster."""

import contextlib

import numpy as np
import pytest
from blender_env import addon_enabled, import_bpy, reset_scene

bpy = import_bpy()
if bpy is None:
    pytest.skip("the bpy wheel is not installed", allow_module_level=True)

from conftest import FIXTURES

from lsmplify_blender.blender import fbx_export


@pytest.fixture(scope="module", autouse=True)
def addon():
    with addon_enabled("io_scene_fbx"):
        yield


@pytest.fixture
def solved_rig():
    reset_scene()
    bvh = FIXTURES / "131_01_short.bvh"
    assert bpy.ops.lsmplify.import_keypoints(filepath=str(bvh), create_empties=False) == {
        "FINISHED"
    }
    sc = bpy.context.scene
    sc.lsmplify.solver = "ANALYTIC"
    sc.frame_start, sc.frame_end = 1, 40
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    rig = next(o for o in bpy.data.objects if o.type == "ARMATURE" and o.get("lsmplify_rig"))
    bpy.context.view_layer.objects.active = rig
    return rig


def test_hiding_the_mesh_while_baking_writes_the_same_file(solved_rig, tmp_path, monkeypatch):
    from io_scene_fbx import export_fbx_bin

    bake = export_fbx_bin.fbx_animations
    mesh = next(c for c in solved_rig.children if c.type == "MESH")
    seen = []
    hide_while_baking = fbx_export._meshes_hidden_while_baking.__wrapped__

    def spy(meshes):
        seen.extend(meshes)
        return hide_while_baking(meshes)

    fast, plain = tmp_path / "fast.fbx", tmp_path / "plain.fbx"
    with monkeypatch.context() as m:
        m.setattr(fbx_export, "_meshes_hidden_while_baking", contextlib.contextmanager(spy))
        fbx_export.export_rig_fbx(bpy.context, solved_rig, str(fast), "UNITY")
    assert seen == [mesh]
    with monkeypatch.context() as m:
        m.setattr(
            fbx_export, "_meshes_hidden_while_baking", lambda meshes: contextlib.nullcontext()
        )
        fbx_export.export_rig_fbx(bpy.context, solved_rig, str(plain), "UNITY")
    a, b = fast.read_bytes(), plain.read_bytes()
    assert len(a) == len(b) > 100_000
    differ = np.flatnonzero(np.frombuffer(a, np.uint8) != np.frombuffer(b, np.uint8))
    assert differ.size < 64  # the header's creation time stamp, nothing of the content
    assert not mesh.hide_viewport and export_fbx_bin.fbx_animations is bake


def test_the_mesh_is_hidden_only_during_the_bake_and_restored_after_a_failure(solved_rig):
    from io_scene_fbx import export_fbx_bin

    bake = export_fbx_bin.fbx_animations
    mesh = next(c for c in solved_rig.children if c.type == "MESH")
    states = []

    def failing(scene_data):
        states.append(mesh.hide_viewport)
        raise RuntimeError("bake failed")

    export_fbx_bin.fbx_animations = failing
    try:
        with fbx_export._meshes_hidden_while_baking([mesh]):
            assert not mesh.hide_viewport  # not hidden before the bake starts
            with pytest.raises(RuntimeError, match="bake failed"):
                export_fbx_bin.fbx_animations(None)
    finally:
        export_fbx_bin.fbx_animations = bake
    assert states == [True] and not mesh.hide_viewport
