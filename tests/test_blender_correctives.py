"""Pose-corrective shape keys in Blender (bpy wheel, headless) against smplx, which applies posedirs.

The open model has no pose correctives, so the tests make an SMPL-format model file from its
arrays with small random ``posedirs`` (seeded) and load it like any user model.
"""

import numpy as np
import pytest
import torch
from blender_env import evaluated_vertices_smpl, fcurve_keys, import_bpy, reset_scene

bpy = import_bpy()
if bpy is None:
    pytest.skip("the bpy wheel is not installed", allow_module_level=True)

from conftest import random_pose

from lsmplify_blender.blender import keyframes, rig, scene_writing
from lsmplify_blender.core.body_model import BodyModel, load_model_data, pose_feature

POSE_KEYS = [f"Pose{k:03d}" for k in range(207)]


@pytest.fixture(autouse=True)
def empty_scene():
    return reset_scene()


@pytest.fixture(scope="module")
def corrective_data(tmp_path_factory, model_data):
    d = model_data
    rng = np.random.default_rng(123)
    posedirs = (rng.normal(size=(d.num_vertices, 3, 207)) * 1e-3).astype(np.float32)
    kintree = np.stack([np.array(d.parents, dtype=np.int64), np.arange(24)]).astype(np.int64)
    kintree[0, 0] = -1
    path = tmp_path_factory.mktemp("model") / "SMPL_CORRECTIVES.npz"
    np.savez(
        path,
        v_template=d.v_template,
        shapedirs=d.shapedirs,
        posedirs=posedirs,
        J_regressor=d.J_regressor,
        weights=d.weights,
        kintree_table=kintree,
        f=d.faces,
    )
    data = load_model_data(path)
    assert data.posedirs is not None and np.array_equal(data.posedirs, posedirs)
    return data


@pytest.fixture(scope="module")
def corrective64(corrective_data):
    return BodyModel(corrective_data, dtype=torch.float64)


def key_fcurves(mesh_obj, action=None) -> dict:
    key = mesh_obj.data.shape_keys
    anim = key.animation_data
    action = action or anim.action
    slot = getattr(anim, "action_slot", None) if anim.action == action else None
    return {path: co for (path, _), co in fcurve_keys(action, slot).items()}


def test_pose_keys_are_posedirs_in_blender_axes(corrective_data):
    _, mesh_obj = rig.build_smpl_rig(bpy.context, corrective_data, np.zeros(10))
    blocks = mesh_obj.data.shape_keys.key_blocks
    assert [k.name for k in blocks] == ["Basis"] + [f"Shape{i:03d}" for i in range(10)] + POSE_KEYS
    basis = np.empty(3 * len(mesh_obj.data.vertices), dtype=np.float32)
    blocks["Basis"].data.foreach_get("co", basis)
    for k in (0, 100, 206):
        co = np.empty_like(basis)
        blocks[POSE_KEYS[k]].data.foreach_get("co", co)
        off = rig.blender_to_smpl((co - basis).reshape(-1, 3).astype(np.float64))
        assert np.abs(off - corrective_data.posedirs[:, :, k]).max() < 1e-6
        b = blocks[POSE_KEYS[k]]
        assert (
            b.relative_key == blocks["Basis"]
            and (b.slider_min, b.slider_max) == (-10.0, 10.0)
            and b.value == 0
        )


def test_model_without_posedirs_has_no_pose_keys(model_data):
    assert model_data.posedirs is None
    arm_obj, mesh_obj = rig.build_smpl_rig(bpy.context, model_data, np.zeros(10))
    assert not any(k.name.startswith("Pose") for k in mesh_obj.data.shape_keys.key_blocks)
    assert keyframes.write_corrective_action(mesh_obj, random_pose(3)) is None
    assert mesh_obj.data.shape_keys.animation_data is None
    assert rig.corrective_meshes(arm_obj) == []


@pytest.mark.parametrize("seed", [0, 1])
def test_blender_deformation_with_correctives_equals_smplx(corrective_data, corrective64, seed):
    betas = np.random.default_rng(40 + seed).normal(size=10) * 2.0
    n = 4
    rotmats = random_pose(n, seed=50 + seed).double()
    trans = torch.as_tensor(np.random.default_rng(seed).normal(size=(n, 3)), dtype=torch.float64)
    arm_obj, mesh_obj = rig.build_smpl_rig(bpy.context, corrective_data, betas)
    keyframes.write_pose_action(arm_obj, rotmats, trans, frame_start=3)
    action = keyframes.write_corrective_action(mesh_obj, rotmats, frame_start=3)
    assert mesh_obj.data.shape_keys.animation_data.action == action
    expected = corrective64.vertices(rotmats, torch.as_tensor(betas), trans).numpy()
    no_corr = (
        expected - torch.einsum("vcp,np->nvc", corrective64.posedirs, pose_feature(rotmats)).numpy()
    )
    # the correctives matter at this scale: without them the mesh would be visibly off
    assert np.abs(expected - no_corr).max() > 1e-3
    worst = 0.0
    for f in range(n):
        bpy.context.scene.frame_set(3 + f)
        got = evaluated_vertices_smpl(mesh_obj)
        worst = max(worst, float(np.abs(got - expected[f]).max()))
    print(f"max vertex error vs smplx with pose correctives: {worst:.3g} m")
    assert worst < 1e-5


def test_second_write_makes_a_second_shape_key_action(corrective_data):
    _, mesh_obj = rig.build_smpl_rig(bpy.context, corrective_data, np.zeros(10))
    r1 = random_pose(5, seed=1)
    a1 = keyframes.write_corrective_action(mesh_obj, r1, 1)
    keys1 = key_fcurves(mesh_obj)
    assert len(keys1) == 207
    feat = pose_feature(torch.as_tensor(r1)).numpy()
    assert np.allclose(keys1['key_blocks["Pose100"].value'][:, 1], feat[:, 100], atol=1e-6)
    a2 = keyframes.write_corrective_action(mesh_obj, random_pose(8, seed=2), 1)
    assert a1 != a2 and a1.name in bpy.data.actions and a1.use_fake_user
    assert mesh_obj.data.shape_keys.animation_data.action == a2
    after = key_fcurves(mesh_obj, a1)
    assert after.keys() == keys1.keys() and all(np.array_equal(after[k], keys1[k]) for k in keys1)
    assert all(v.shape[0] == 8 for v in key_fcurves(mesh_obj).values())


def test_write_motion_keys_correctives_and_refine_adds_a_new_action(corrective_data):
    class _Model:  # write_motion only reads model.data
        data = corrective_data

    rotmats = random_pose(6, seed=3)
    rig_obj, _ = scene_writing.write_motion(
        bpy.context,
        _Model,
        rotmats,
        torch.zeros(6, 3),
        np.zeros(10),
        1,
        action_name="LSMPLify_test",
    )
    (mesh_obj,) = rig.corrective_meshes(rig_obj)
    first = mesh_obj.data.shape_keys.animation_data.action
    assert first.name == "LSMPLify_test_correctives" and len(key_fcurves(mesh_obj)) == 207
    scene_writing.write_motion(
        bpy.context,
        _Model,
        random_pose(6, seed=4),
        torch.zeros(6, 3),
        np.zeros(10),
        1,
        target_rig=rig_obj,
        action_name="LSMPLify_refined",
    )
    second = mesh_obj.data.shape_keys.animation_data.action
    assert (
        second != first
        and second.name == "LSMPLify_refined_correctives"
        and first.name in bpy.data.actions
    )


def test_1000_frames_keyed_in_bulk(corrective_data):
    """1,000 frames: every Pose key gets one key per frame, valued at SMPL's pose feature.

    (Its speed is measured by benchmarks/bench_blender_keyframes.py, not asserted here.)"""
    _, mesh_obj = rig.build_smpl_rig(bpy.context, corrective_data, np.zeros(10))
    rotmats = random_pose(1000, seed=5)
    keyframes.write_corrective_action(mesh_obj, rotmats, 1)
    keys = key_fcurves(mesh_obj)
    feature = pose_feature(torch.as_tensor(rotmats)).numpy()
    assert len(keys) == 207
    for k in (0, 100, 206):
        co = keys[f'key_blocks["{POSE_KEYS[k]}"].value']
        assert co.shape == (1000, 2)
        assert np.array_equal(co[:, 0], np.arange(1, 1001))
        assert np.abs(co[:, 1] - feature[:, k]).max() < 1e-5
