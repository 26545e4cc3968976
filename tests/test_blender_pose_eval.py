"""An Armature source's frames from its keys for all frames at once (``pose_eval``,
``sources.heads_from_keys``, issue 11's benchmark): the same bone heads as Blender's frame-by-frame
evaluation, the same solve, and a fall back to that evaluation for an armature posed by more than
its keys. Real CMU takes through Blender's BVH and FBX importers (fixtures/CREDITS.md)."""

import numpy as np
import pytest
from blender_env import addon_enabled, import_bpy, reset_scene

bpy = import_bpy()
if bpy is None:
    pytest.skip("the bpy wheel is not installed", allow_module_level=True)

from conftest import FIXTURES

from lsmplify_blender.blender import sources

BVH = FIXTURES / "01_01_short.bvh"
FBX = FIXTURES / "09_11_cmu.fbx"


@pytest.fixture(scope="module", autouse=True)
def addon():
    with addon_enabled("io_scene_fbx"):
        yield


def imported(kind):
    reset_scene()
    if kind == "bvh":
        assert bpy.ops.import_anim.bvh(filepath=str(BVH)) == {"FINISHED"}
    else:
        assert bpy.ops.import_scene.fbx(filepath=str(FBX)) == {"FINISHED"}
    return max(
        (o for o in bpy.data.objects if o.type == "ARMATURE"), key=lambda o: len(o.data.bones)
    )


def head_reader(arm):
    n = len(arm.pose.bones)

    def read():
        heads = np.empty(3 * n, dtype=np.float32)
        arm.pose.bones.foreach_get("head", heads)
        mw = np.array(arm.matrix_world, dtype=np.float64)
        return heads.reshape(n, 3).astype(np.float64) @ mw[:3, :3].T + mw[:3, 3]

    return read


@pytest.mark.parametrize("kind", ["bvh", "fbx"])
def test_heads_from_keys_are_blenders_heads_at_every_frame(kind):
    arm = imported(kind)
    fs, fe = sources.action_frame_range([arm])
    sc = bpy.context.scene
    sc.frame_set(fs + 3)
    read = head_reader(arm)
    # BVH: Euler bones (ZYX) and a moving root bone; FBX: quaternion bones, connected bones
    # with location keys (not used by Blender) and a moving armature object
    ours = sources.heads_from_keys(sc, arm, fs, fe, read)
    assert ours is not None
    blender = sources.sample_frames(sc, fs, fe, read)
    assert np.abs(ours - blender).max() < 1e-6 * np.abs(blender).max(), kind
    assert sc.frame_current == fs + 3


def test_euler_matrices_are_blenders_for_every_order():
    from mathutils import Euler

    from lsmplify_blender.blender.pose_eval import EULER_ORDERS, euler_to_matrix

    angles = np.random.default_rng(0).uniform(-3, 3, (20, 3))
    for order in EULER_ORDERS:
        ours = euler_to_matrix(angles, order)
        for a, m in zip(angles, ours, strict=True):
            theirs = np.array(Euler(a, order).to_matrix())
            assert np.abs(m - theirs).max() < 1e-6, order


def solved_keys(arm):
    from lsmplify_blender.blender.keyframes import read_pose_action

    s = bpy.context.scene.lsmplify
    s.source_type, s.source_armature, s.use_source_range = "ARMATURE", arm, True
    s.solver = "ANALYTIC"
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    rig = max(
        (o for o in bpy.data.objects if o.get("lsmplify_rig")), key=lambda o: o["lsmplify_made"]
    )
    fs, fe = sources.action_frame_range([arm])
    return read_pose_action(rig, fs, fe)


def test_an_armature_source_solves_the_same_from_its_keys(monkeypatch):
    arm = imported("bvh")
    calls = []
    real = sources.heads_from_keys
    monkeypatch.setattr(sources, "heads_from_keys", lambda *a: calls.append(1) or real(*a))
    fast = solved_keys(arm)
    assert calls
    monkeypatch.setattr(sources, "heads_from_keys", lambda *a: None)  # frame by frame
    plain = solved_keys(arm)
    for a, b in zip(fast, plain, strict=True):
        assert np.abs(a - b).max() < 1e-4  # float32 heads either way; the solve is not chaotic


def test_an_armature_posed_by_more_than_its_keys_is_read_frame_by_frame(monkeypatch):
    arm = imported("bvh")
    c = arm.pose.bones["LeftForeArm"].constraints.new("LIMIT_ROTATION")
    c.use_limit_x, c.max_x = True, 0.05
    fs, fe = sources.action_frame_range([arm])
    read = head_reader(arm)
    sc = bpy.context.scene
    assert sources.heads_from_keys(sc, arm, fs, fe, read) is None
    sampled = []
    real = sources.sample_frames
    monkeypatch.setattr(
        sources, "sample_frames", lambda *a, **k: sampled.append(k) or real(*a, **k)
    )
    seq = sources.sample_armature(bpy.context, arm, fs, fe)
    assert sampled == [{}] and seq.num_frames == fe - fs + 1  # the whole range, frame by frame
    # keys that do not give Blender's pose are caught at the check frames too (an armature
    # shown in its rest position: nothing the static check looks at)
    arm.pose.bones["LeftForeArm"].constraints.remove(c)
    assert sources.heads_from_keys(sc, arm, fs, fe, read) is not None
    arm.data.pose_position = "REST"
    assert sources.heads_from_keys(sc, arm, fs, fe, read) is None
