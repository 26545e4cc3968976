"""Body-model loading and the joints-only fast path against smplx itself."""
import numpy as np
import pytest
import torch

from conftest import random_pose
from lsmplify_blender.core.body_model import (OPEN_MODEL_PATH, SMPL_JOINT_NAMES, BodyModel,
                                              load_model_data)
from lsmplify_blender.core.errors import ModelFileError


def test_open_model_is_a_sane_human(model_data):
    v = model_data.v_template
    j = model_data.J_regressor @ v
    height = v[:, 1].max() - v[:, 1].min()
    assert 1.5 < height < 1.9
    idx = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}
    assert j[idx["left_hip"], 0] > 0 > j[idx["right_hip"], 0]  # subject's left is +X
    assert j[idx["left_shoulder"], 0] > 0
    assert j[idx["head"], 1] > j[idx["neck"], 1] > j[idx["pelvis"], 1] > j[idx["left_knee"], 1] > j[idx["left_ankle"], 1]
    assert v[:, 1].min() < j[idx["left_ankle"], 1]  # feet at the bottom
    assert v[model_data.landmarks["nose"], 2] > j[idx["head"], 2]  # faces +Z
    # T-pose: shoulder-to-wrist runs along X
    arm = j[idx["left_wrist"]] - j[idx["left_shoulder"]]
    assert abs(arm[0]) / np.linalg.norm(arm) > 0.97
    np.testing.assert_allclose(model_data.weights.sum(1), 1, atol=1e-4)
    np.testing.assert_allclose(model_data.J_regressor.sum(1), 1, atol=1e-4)
    assert OPEN_MODEL_PATH.stat().st_size < 20 * 2**20


def test_open_model_loads_in_smplx_and_fast_path_matches(model):
    rot = random_pose(6, seed=1)
    betas = torch.randn(6, 10, generator=torch.Generator().manual_seed(2))
    trans = torch.randn(6, 3, generator=torch.Generator().manual_seed(3))
    layer = model.smplx_model(6)
    out = layer(betas=betas, global_orient=rot[:, :1], body_pose=rot[:, 1:], transl=trans)
    fast = model.joints(rot, betas, trans)
    assert torch.allclose(out.joints[:, :24], fast, atol=1e-5)
    # skinning a few vertices alone equals the full smplx mesh at those vertices
    ids = list(model.data.landmarks.values())
    few = model.skin_points(rot, betas, trans, ids)
    assert torch.allclose(out.vertices[:, ids], few, atol=1e-5)


def test_zero_pose_returns_the_rest_mesh(model):
    rot = torch.eye(3).expand(1, 24, 3, 3)
    verts = model.vertices(rot, torch.zeros(10))
    assert torch.allclose(verts[0], model.v_template, atol=1e-6)


def test_skinning_round_trip_pose_then_unpose(model):
    """Posing then applying each vertex's inverse blended transform gives the rest mesh back."""
    rot = random_pose(2, seed=5)
    betas = torch.zeros(2, 10)
    verts = model.vertices(rot, betas)
    rest_j = model.rest_joints(betas)
    g_rot, g_pos = model.global_transforms(rot, rest_j)
    # blended affine transform per vertex: A = sum w G_rot, b = sum w (g_pos - G_rot rest_j)
    w = model.weights
    a = torch.einsum("vj,njab->nvab", w, g_rot)
    b = torch.einsum("vj,nja->nva", w, g_pos - (g_rot @ rest_j[..., None])[..., 0])
    back = torch.linalg.solve(a, (verts - b)[..., None])[..., 0]
    assert (back - model.v_template).norm(dim=-1).max() < 1e-4


def test_npz_round_trip(tmp_path, model_data):
    p = tmp_path / "model.npz"
    np.savez(p, v_template=model_data.v_template, shapedirs=model_data.shapedirs,
             J_regressor=model_data.J_regressor, weights=model_data.weights,
             kintree_table=np.stack([model_data.parents, np.arange(24)]), f=model_data.faces)
    again = load_model_data(p)
    np.testing.assert_array_equal(again.v_template, model_data.v_template)
    assert again.landmarks == ({} if model_data.num_vertices != 6890 else again.landmarks)


@pytest.mark.parametrize("mutate,match", [
    (lambda d: d.pop("J_regressor"), "missing J_regressor"),
    (lambda d: d.update(weights=d["weights"][:, :22]), "weights"),
    (lambda d: d.update(kintree_table=np.stack([np.r_[-1, np.zeros(23, int)], np.arange(24)])), "tree"),
    (lambda d: d.update(shapedirs=d["shapedirs"] * np.nan), "NaN"),
])
def test_malformed_npz_models_are_refused(tmp_path, model_data, mutate, match):
    d = dict(v_template=model_data.v_template, shapedirs=model_data.shapedirs,
             J_regressor=model_data.J_regressor, weights=model_data.weights,
             kintree_table=np.stack([model_data.parents, np.arange(24)]), f=model_data.faces)
    mutate(d)
    p = tmp_path / "bad.npz"
    np.savez(p, **d)
    with pytest.raises(ModelFileError, match=match):
        load_model_data(p)


def test_missing_and_truncated_model_files(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        load_model_data(tmp_path / "nope.pkl")
    p = tmp_path / "cut.npz"
    p.write_bytes(OPEN_MODEL_PATH.read_bytes()[:1000])
    with pytest.raises(ModelFileError):
        load_model_data(p)
    q = tmp_path / "model.obj"
    q.write_text("v 0 0 0")
    with pytest.raises(ModelFileError, match=".pkl or .npz"):
        load_model_data(q)
