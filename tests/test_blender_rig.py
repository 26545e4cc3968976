"""The SMPL rig and keyframes in Blender (bpy wheel, headless) against the core's smplx forward."""

import numpy as np
import pytest
import torch
from blender_env import evaluated_vertices_smpl, fcurve_keys, import_bpy, reset_scene

bpy = import_bpy()
if bpy is None:
    pytest.skip("the bpy wheel is not installed", allow_module_level=True)

from conftest import random_pose, smooth_pose

from lsmplify_blender.blender import keyframes, rig
from lsmplify_blender.core.body_model import SMPL_JOINT_NAMES, SMPL_PARENTS, BodyModel
from lsmplify_blender.core.errors import LSMPLifyError


@pytest.fixture(autouse=True)
def empty_scene():
    return reset_scene()


@pytest.fixture(scope="module")
def model64(model_data):
    return BodyModel(model_data, dtype=torch.float64)


def random_betas(seed: int, scale: float = 1.5) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=10) * scale


# ------------------------------------------------------------------------------ axes
def test_axis_change_is_a_proper_rotation_and_inverts():
    c = rig.SMPL_TO_BLENDER
    assert np.allclose(c @ c.T, np.eye(3)) and np.isclose(np.linalg.det(c), 1.0)
    p = np.random.default_rng(0).normal(size=(5, 3))
    assert np.allclose(rig.smpl_to_blender(p), p @ c.T)
    assert np.allclose(rig.blender_to_smpl(rig.smpl_to_blender(p)), p)
    assert np.allclose(rig.smpl_to_blender([0, 1, 0]), [0, 0, 1])  # SMPL up is Blender up


# ------------------------------------------------------------------------------- rig
def test_bones_names_parents_and_rest_heads(model_data, model64):
    betas = random_betas(1)
    arm_obj, mesh_obj = rig.build_smpl_rig(bpy.context, model_data, betas)
    bones = arm_obj.data.bones
    assert sorted(b.name for b in bones) == sorted(SMPL_JOINT_NAMES) and len(bones) == 24
    for j, name in enumerate(SMPL_JOINT_NAMES):
        parent = bones[name].parent
        assert (parent.name if parent else None) == (
            SMPL_JOINT_NAMES[SMPL_PARENTS[j]] if j else None
        )
    rest = model64.rest_joints(torch.as_tensor(betas))[0].numpy()
    heads = np.array([bones[n].head_local for n in SMPL_JOINT_NAMES], dtype=np.float64)
    tails = np.array([bones[n].tail_local for n in SMPL_JOINT_NAMES], dtype=np.float64)
    assert np.abs(rig.blender_to_smpl(heads) - rest).max() < 1e-6
    assert np.abs(tails - heads - [0, 0, 0.1]).max() < 1e-6
    # The bone-frame trick: every bone's rest frame is exactly SMPL's frame in Blender axes.
    for name in SMPL_JOINT_NAMES:
        m = np.array(bones[name].matrix_local, dtype=np.float64)
        assert np.abs(m[:3, :3] - rig.SMPL_TO_BLENDER).max() < 1e-7, name
        assert arm_obj.pose.bones[name].rotation_mode == "QUATERNION"
    assert np.allclose(np.array(arm_obj.matrix_world), np.eye(4))
    # mesh: skinned child with shape keys valued at the betas
    assert mesh_obj.parent == arm_obj and mesh_obj.type == "MESH"
    assert [m.type for m in mesh_obj.modifiers] == ["ARMATURE"] and mesh_obj.modifiers[
        0
    ].object == arm_obj
    assert len(mesh_obj.data.vertices) == model_data.num_vertices
    assert len(mesh_obj.data.polygons) == model_data.faces.shape[0]
    assert [g.name for g in mesh_obj.vertex_groups] == list(SMPL_JOINT_NAMES)
    keys = mesh_obj.data.shape_keys.key_blocks
    assert [k.name for k in keys] == ["Basis"] + [f"Shape{i:03d}" for i in range(10)]
    assert np.allclose([k.value for k in keys[1:]], betas, atol=1e-6)
    # the skinning weights made it across exactly (float32)
    w = np.zeros((model_data.num_vertices, 24), dtype=np.float32)
    for v in mesh_obj.data.vertices:
        for g in v.groups:
            w[v.index, g.group] = g.weight
    assert np.array_equal(w, model_data.weights)


def test_rig_from_scene_into_collection_leaves_user_objects_alone(model_data):
    scene = bpy.context.scene
    user_arm = bpy.data.objects.new("SMPL", bpy.data.armatures.new("SMPL"))
    scene.collection.objects.link(user_arm)
    user_arm.select_set(True)
    coll = bpy.data.collections.new("Bodies")
    scene.collection.children.link(coll)
    arm_obj, mesh_obj = rig.build_smpl_rig(scene, model_data, np.zeros(10), collection=coll)
    assert user_arm.name == "SMPL" and arm_obj.name == "SMPL.001"
    assert len(user_arm.data.bones) == 0 and user_arm.mode == "OBJECT" and user_arm.select_get()
    assert list(coll.objects) == [arm_obj, mesh_obj]
    assert (
        arm_obj.name not in scene.collection.objects
        and mesh_obj.name not in scene.collection.objects
    )


def test_second_rig_does_not_touch_the_first(model_data):
    a1, m1 = rig.build_smpl_rig(bpy.context, model_data, random_betas(2))
    keyframes.write_pose_action(a1, random_pose(5, seed=3), torch.zeros(5, 3), 1)
    heads1 = np.array([b.head_local for b in a1.data.bones])
    keys1 = fcurve_keys(a1.animation_data.action, getattr(a1.animation_data, "action_slot", None))
    betas1 = [k.value for k in m1.data.shape_keys.key_blocks]
    names1 = (a1.name, m1.name, a1.data.name, m1.data.name)
    a2, m2 = rig.build_smpl_rig(bpy.context, model_data, random_betas(4))
    assert (
        (a1.name, m1.name, a1.data.name, m1.data.name)
        == names1
        == ("SMPL", "SMPL_mesh", "SMPL", "SMPL_mesh")
    )
    assert (
        (a2.name, m2.name) == ("SMPL.001", "SMPL_mesh.001")
        and a2.data != a1.data
        and m2.data != m1.data
    )
    assert np.array_equal(np.array([b.head_local for b in a1.data.bones]), heads1)
    assert [k.value for k in m1.data.shape_keys.key_blocks] == betas1
    after = fcurve_keys(a1.animation_data.action, getattr(a1.animation_data, "action_slot", None))
    assert after.keys() == keys1.keys() and all(np.array_equal(after[k], keys1[k]) for k in keys1)
    assert m2.parent == a2 and m2.modifiers[0].object == a2


def test_out_of_range_betas_are_refused(model_data):
    with pytest.raises(LSMPLifyError, match="shape-key range"):
        rig.build_smpl_rig(bpy.context, model_data, np.full(10, 12.0))
    assert len(bpy.data.objects) == 0


# ----------------------------------------------------------------- deformation vs smplx
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_blender_deformation_equals_smplx(model_data, model64, seed):
    betas = random_betas(10 + seed, scale=2.0)
    n = 3
    rotmats = random_pose(n, seed=20 + seed).double()
    trans = torch.as_tensor(np.random.default_rng(seed).normal(size=(n, 3)), dtype=torch.float64)
    arm_obj, mesh_obj = rig.build_smpl_rig(bpy.context, model_data, betas)
    keyframes.write_pose_action(arm_obj, rotmats, trans, frame_start=5)
    expected = model64.vertices(rotmats, torch.as_tensor(betas), trans).numpy()
    worst = 0.0
    for f in range(n):
        bpy.context.scene.frame_set(5 + f)
        got = evaluated_vertices_smpl(mesh_obj)
        worst = max(worst, float(np.abs(got - expected[f]).max()))
    print(f"max vertex error vs smplx: {worst:.3g} m")
    assert worst < 1e-5


def test_rest_pose_with_betas_equals_smplx(model_data, model64):
    betas = random_betas(7, scale=2.5)
    _, mesh_obj = rig.build_smpl_rig(bpy.context, model_data, betas)
    rest = torch.eye(3, dtype=torch.float64).expand(1, 24, 3, 3)
    expected = model64.vertices(rest, torch.as_tensor(betas)).numpy()[0]
    assert np.abs(evaluated_vertices_smpl(mesh_obj) - expected).max() < 1e-5


# -------------------------------------------------------------------------- keyframes
def test_keyframes_round_trip_and_continuity(model_data):
    T, start = 200, 11
    arm_obj, _ = rig.build_smpl_rig(bpy.context, model_data, random_betas(5))
    # independent random poses: roots anywhere up to a half turn, so w >= 0 quaternions of
    # consecutive frames often point opposite ways and the writer has to flip them
    rotmats = torch.cat([random_pose(T // 2, seed=8), smooth_pose(T - T // 2, seed=9)]).double()
    trans = torch.as_tensor(np.random.default_rng(3).uniform(-2, 2, size=(T, 3)))
    fit = np.linspace(5, 25, T)
    fit[7] = np.nan
    action = keyframes.write_pose_action(
        arm_obj, rotmats, trans, frame_start=start, fit_error_mm=fit
    )
    anim = arm_obj.animation_data
    assert anim.action == action
    if hasattr(anim, "action_slot"):
        assert anim.action_slot is not None
    keys = fcurve_keys(action, getattr(anim, "action_slot", None))
    assert len(keys) == 24 * 4 + 3 + 1
    for co in keys.values():
        assert co.shape[0] in (T, T - 1) and co[0, 0] == start
    linear = [
        kp.interpolation for fc in keyframes.action_fcurves(action) for kp in fc.keyframe_points[:3]
    ]
    assert set(linear) == {"LINEAR"}

    got_r, got_t = keyframes.read_pose_action(arm_obj, start, start + T - 1)
    err_r = np.abs(got_r - rotmats.numpy()).max()
    err_t = np.abs(got_t - trans.numpy()).max()
    print(f"round trip: rotation {err_r:.3g}, translation {err_t:.3g} m")
    assert got_r.shape == (T, 24, 3, 3) and got_t.shape == (T, 3)
    assert err_r < 1e-6 and err_t < 1e-6

    # no sign flips between consecutive keys, though the raw (w >= 0) quaternions needed some
    q = np.stack(
        [
            np.stack(
                [keys[(f'pose.bones["{b}"].rotation_quaternion', c)][:, 1] for c in range(4)], -1
            )
            for b in SMPL_JOINT_NAMES
        ],
        1,
    )  # (T, 24, 4)
    assert (np.einsum("tjc,tjc->tj", q[1:], q[:-1]) >= 0).all()
    from lsmplify_blender.core.rotations import matrix_to_quaternion

    raw = matrix_to_quaternion(rotmats).numpy()
    assert (np.einsum("tjc,tjc->tj", raw[1:], raw[:-1]) < 0).any()

    # the fit error is an animated custom property; the NaN frame has no key
    fit_keys = keys[('["lsmplify_fit_error_mm"]', 0)]
    assert fit_keys.shape[0] == T - 1 and start + 7 not in fit_keys[:, 0]
    bpy.context.scene.frame_set(start + 20)
    assert arm_obj["lsmplify_fit_error_mm"] == pytest.approx(fit[20], abs=1e-4)
    # and the pose bones follow the keys when the frame changes
    pb = arm_obj.pose.bones["left_elbow"]
    assert np.allclose(np.array(pb.matrix_basis)[:3, :3], rotmats[20, 18].numpy(), atol=1e-6)
    assert np.allclose(
        np.array(arm_obj.pose.bones["pelvis"].location), trans[20].numpy(), atol=1e-6
    )


def test_second_write_makes_a_new_action_and_keeps_the_first(model_data):
    arm_obj, _ = rig.build_smpl_rig(bpy.context, model_data, np.zeros(10))
    r1, t1 = random_pose(10, seed=1), torch.zeros(10, 3)
    a1 = keyframes.write_pose_action(arm_obj, r1, t1, 1)
    keys1 = fcurve_keys(a1, getattr(arm_obj.animation_data, "action_slot", None))
    a2 = keyframes.write_pose_action(arm_obj, random_pose(20, seed=2), torch.ones(20, 3), 1)
    assert a1 != a2 and a1.name == "LSMPLify" and a2.name == "LSMPLify.001"
    assert arm_obj.animation_data.action == a2
    assert a1.name in bpy.data.actions and a1.use_fake_user  # survives a save unassigned
    after = fcurve_keys(a1)
    assert after.keys() == keys1.keys() and all(np.array_equal(after[k], keys1[k]) for k in keys1)
    # reading the first action explicitly still gives its motion
    r, t = keyframes.read_pose_action(arm_obj, 1, 10, action=a1)
    assert np.abs(r - r1.numpy()).max() < 1e-6 and np.abs(t).max() == 0


def test_user_action_is_kept(model_data):
    arm_obj, _ = rig.build_smpl_rig(bpy.context, model_data, np.zeros(10))
    user = bpy.data.actions.new("LSMPLify")  # a name clash with the default too
    arm_obj.animation_data_create().action = user
    new = keyframes.write_pose_action(arm_obj, random_pose(2), torch.zeros(2, 3), 1)
    assert new != user and user.name == "LSMPLify" and new.name == "LSMPLify.001"
    assert user.use_fake_user and len(keyframes.action_fcurves(user)) == 0


def test_bad_motion_is_refused(model_data):
    arm_obj, _ = rig.build_smpl_rig(bpy.context, model_data, np.zeros(10))
    n_actions = len(bpy.data.actions)
    with pytest.raises(LSMPLifyError, match="shape"):
        keyframes.write_pose_action(arm_obj, torch.zeros(3, 23, 3, 3), torch.zeros(3, 3), 1)
    bad = random_pose(3)
    bad[1, 4, 0, 0] = float("nan")
    with pytest.raises(LSMPLifyError, match="NaN"):
        keyframes.write_pose_action(arm_obj, bad, torch.zeros(3, 3), 1)
    assert len(bpy.data.actions) == n_actions


def test_continuous_quaternions_through_full_turns():
    angles = np.linspace(0, 4 * np.pi, 50)
    c, s = np.cos(angles), np.sin(angles)
    m = np.zeros((50, 1, 3, 3))
    m[:, 0, 0, 0], m[:, 0, 0, 1], m[:, 0, 1, 0], m[:, 0, 1, 1], m[:, 0, 2, 2] = c, -s, s, c, 1
    q = keyframes.rotmats_to_continuous_quaternions(m)
    assert (np.einsum("tjc,tjc->tj", q[1:], q[:-1]) > 0).all()
    back = keyframes.quaternion_to_matrix(torch.as_tensor(q)).numpy()
    assert np.abs(back - m).max() < 1e-12


def test_read_evaluates_curves_with_missing_keys(model_data):
    arm_obj, _ = rig.build_smpl_rig(bpy.context, model_data, np.zeros(10))
    trans = torch.as_tensor(np.arange(30, dtype=np.float64).reshape(10, 3))
    keyframes.write_pose_action(arm_obj, random_pose(10, seed=4), trans, 1)
    anim = arm_obj.animation_data
    fc = next(
        f
        for f in keyframes.action_fcurves(anim.action, getattr(anim, "action_slot", None))
        if f.data_path == 'pose.bones["pelvis"].location' and f.array_index == 1
    )
    fc.keyframe_points.remove(fc.keyframe_points[4])  # frame 5: read by evaluating the curve
    _, t = keyframes.read_pose_action(arm_obj, 1, 10)
    assert np.allclose(t, trans.numpy(), atol=1e-5)  # linear keys: the gap interpolates exactly
