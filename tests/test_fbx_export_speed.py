"""The FBX export is fast (issue 15): the animation is baked from the rig's keys for all frames
at once (``fbx_bake``) and re-imports to the same motion as the exporter's own frame-by-frame
bake; where that bake still runs (a rig posed by more than its keys) the skinned mesh is hidden
while it does: same file, faster. Real CMU take (fixtures/CREDITS.md), the real bpy wheel."""

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
def solved_rig(request):
    reset_scene()
    style = getattr(request, "param", {})
    bvh = FIXTURES / "131_01_short.bvh"
    assert bpy.ops.lsmplify.import_keypoints(filepath=str(bvh), create_empties=False) == {
        "FINISHED"
    }
    sc = bpy.context.scene
    sc.lsmplify.solver = "ANALYTIC"
    sc.lsmplify.root_bone = style.get("root_bone", False)
    sc.lsmplify.bones_to_children = style.get("bones_to_children", False)
    sc.frame_start, sc.frame_end = 1, 40
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    rig = next(o for o in bpy.data.objects if o.type == "ARMATURE" and o.get("lsmplify_rig"))
    bpy.context.view_layer.objects.active = rig
    return rig


def exporters_own_bake(monkeypatch):
    """Exports in this context bake frame by frame in Blender's exporter (as before issue 15)."""
    monkeypatch.setattr(fbx_export, "_baked_from_keys", contextlib.nullcontext)


def test_hiding_the_mesh_while_baking_writes_the_same_file(solved_rig, tmp_path, monkeypatch):
    from io_scene_fbx import export_fbx_bin

    exporters_own_bake(monkeypatch)
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


def fbx_curves(path) -> list:
    """[(KeyTime, KeyValueFloat)] of every AnimationCurve of a binary FBX, in file order
    (Blender's own FBX parser)."""
    from io_scene_fbx import parse_fbx

    root, _ = parse_fbx.parse(str(path))
    objects = next(e for e in root.elems if e.id == b"Objects")
    out = []
    for e in objects.elems:
        if e.id == b"AnimationCurve":
            d = {c.id: c.props[0] for c in e.elems}
            out.append((np.asarray(d[b"KeyTime"]), np.asarray(d[b"KeyValueFloat"], np.float64)))
    return out


def both_bakes(rig, tmp_path, monkeypatch, preset="UNITY"):
    """The rig exported baked from its keys and baked by the exporter: (fast, plain) paths."""
    fast, plain = tmp_path / "keys.fbx", tmp_path / "exporter.fbx"
    fbx_export.export_rig_fbx(bpy.context, rig, str(fast), preset)
    assert fbx_export.last_bake() == fbx_export.BAKED_FROM_KEYS
    with monkeypatch.context() as m:
        exporters_own_bake(m)
        fbx_export.export_rig_fbx(bpy.context, rig, str(plain), preset)
    return fast, plain


STYLES = [{}, {"root_bone": True, "bones_to_children": True}]


@pytest.mark.parametrize("solved_rig", STYLES, indirect=True, ids=["smpl", "root_children"])
def test_the_bake_from_keys_writes_the_exporters_curves(solved_rig, tmp_path, monkeypatch):
    bpy.context.scene.frame_set(17)  # the bake starts from the current frame's rotations
    fast, plain = both_bakes(solved_rig, tmp_path, monkeypatch)
    a, b = fbx_curves(fast), fbx_curves(plain)
    assert len(a) == len(b) > 24 * 9
    for (ta, va), (tb, vb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(ta, tb)  # every frame keyed, at the same FBX times
        # degrees, centimetres or factors; the exporter computes in float32 (mathutils)
        np.testing.assert_allclose(va, vb, rtol=0, atol=2e-3)
    assert bpy.context.scene.frame_current == 17


def imported_rig(path):
    names = set(bpy.data.objects.keys())
    assert bpy.ops.import_scene.fbx(filepath=str(path), anim_offset=0.0) == {"FINISHED"}
    return next(
        bpy.data.objects[n]
        for n in set(bpy.data.objects.keys()) - names
        if bpy.data.objects[n].type == "ARMATURE"
    )


def bone_world_matrices(arm) -> np.ndarray:
    return np.stack([np.array(arm.matrix_world @ pb.matrix) for pb in arm.pose.bones])


@pytest.mark.parametrize("preset", ["UNITY", "UNREAL"])
def test_the_file_baked_from_keys_re_imports_to_the_same_animation(
    solved_rig, tmp_path, monkeypatch, preset
):
    fast, plain = both_bakes(solved_rig, tmp_path, monkeypatch, preset)
    ours, theirs = imported_rig(fast), imported_rig(plain)
    assert [b.name for b in ours.pose.bones] == [b.name for b in theirs.pose.bones]
    sc = bpy.context.scene
    for f in (1, 2, 13, 27, 40):
        sc.frame_set(f)
        a, b = bone_world_matrices(ours), bone_world_matrices(theirs)
        assert np.abs(a - b).max() < 1e-4, (preset, f)
        # and at the rig's own joints (metres: both presets arrive at real size)
        heads = np.array([tuple(solved_rig.matrix_world @ p.head) for p in solved_rig.pose.bones])
        back = np.array(
            [tuple(ours.matrix_world @ ours.pose.bones[p.name].head) for p in solved_rig.pose.bones]
        )
        assert np.abs(heads - back).max() < 1e-4, (preset, f)


def test_a_rig_posed_by_more_than_its_keys_is_baked_by_the_exporter(solved_rig, tmp_path):
    c = solved_rig.pose.bones["left_elbow"].constraints.new("LIMIT_ROTATION")
    c.use_limit_x, c.max_x = True, 0.1
    fbx_export.export_rig_fbx(bpy.context, solved_rig, str(tmp_path / "c.fbx"), "UNITY")
    assert fbx_export.last_bake() == fbx_export.BAKED_BY_EXPORTER
    solved_rig.pose.bones["left_elbow"].constraints.remove(c)
    fbx_export.export_rig_fbx(bpy.context, solved_rig, str(tmp_path / "k.fbx"), "UNITY")
    assert fbx_export.last_bake() == fbx_export.BAKED_FROM_KEYS


def test_compatible_eulers_are_blenders_to_euler_frame_by_frame():
    from mathutils import Euler, Matrix

    from lsmplify_blender.blender.fbx_bake import compatible_eulers, euler_pair
    from lsmplify_blender.core.rotations import axis_angle_to_matrix

    rng = np.random.default_rng(3)
    # smooth turns past 180 deg on every axis, jumps, and passes near gimbal lock (y = 90 deg)
    t = np.linspace(0, 1, 400)[:, None, None]
    aa = np.concatenate(
        [
            8 * np.sin(t * rng.uniform(1, 6, (1, 4, 3))),
            rng.normal(size=(400, 2, 3)) * 2.0,
            np.broadcast_to([0.0, np.pi / 2, 0.0], (400, 1, 3))
            + 0.01 * rng.normal(size=(400, 1, 3)),
        ],
        1,
    )
    rot = axis_angle_to_matrix(aa)
    first = rng.uniform(-3, 3, (rot.shape[1], 3))
    ours = compatible_eulers(*euler_pair(rot), first)
    for n in range(rot.shape[1]):
        prev = Euler(first[n], "XYZ")
        for f in range(rot.shape[0]):
            prev = Matrix(rot[f, n].tolist()).to_euler("XYZ", prev)
            # the same solution and the same whole turns (float32 in mathutils)
            assert np.abs(np.array(prev) - ours[f, n]).max() < 2e-3, (n, f)


def test_a_scene_range_past_the_keys_bakes_the_held_poses_as_the_exporter(
    solved_rig, tmp_path, monkeypatch
):
    sc = bpy.context.scene
    sc.frame_start, sc.frame_end = 0, 45  # the action keys 1..40: held before and after
    fast, plain = both_bakes(solved_rig, tmp_path, monkeypatch)
    a, b = fbx_curves(fast), fbx_curves(plain)
    assert len(a) == len(b) and {len(t) for t, _ in a} == {46}
    for (ta, va), (tb, vb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(ta, tb)
        np.testing.assert_allclose(va, vb, rtol=0, atol=2e-3)
