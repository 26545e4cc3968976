"""The body-model layer (core/model) against what the copies it replaced computed.

``fixtures/model_layer_reference.npz`` holds the outputs of the pre-refactor functions
(body_model's FK loop, network/kinematics.fk, analytic_ik's children and depths, the
build tool's numpy Rodrigues / swing / FK, formats' Rodrigues, retarget's swing and CMU
FK, cmu_subset's row-vector FK, the old landmark and top-k skinning, the Z-up turns) on
seeded float64 inputs, written by ``fixtures/make_model_layer_reference.py`` from the
commit before the refactor. Every one is reproduced here to 1e-10.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from lsmplify_blender.core import body_model as bm
from lsmplify_blender.core.formats.cmu_subset import (
    cmu_forward_kinematics,
    cmu_subset_forward_kinematics,
)
from lsmplify_blender.core.model import axes, skeleton
from lsmplify_blender.core.model.kinematics import (
    forward_kinematics,
    global_rotations,
    local_rotations,
    tree_kinematics,
)
from lsmplify_blender.core.model.rotations import axis_angle_to_matrix, kabsch, skew, swing_rotation
from lsmplify_blender.core.model.skinning import linear_blend_skinning, pose_feature
from lsmplify_blender.core.network import kinematics as nk
from lsmplify_blender.core.network import retarget

HERE = Path(__file__).resolve().parent
TOL = 1e-10


@pytest.fixture(scope="module")
def ref():
    with np.load(HERE / "fixtures" / "model_layer_reference.npz") as z:
        return {k: z[k] for k in z.files}


def close(a, b, tol=TOL):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    err = float(np.abs(a - b).max())
    assert err < tol, err


def _model(ref):
    data = bm.load_model_data()
    data.posedirs = np.zeros((data.num_vertices, 3, 207), np.float32)
    data.posedirs[ref["in_vertex_ids"]] = ref["in_posedirs_at_ids"]
    return bm.BodyModel(data, dtype=torch.float64)


def test_skeleton_tables_match_the_old_copies(ref):
    assert (
        [len(k) for k in skeleton.SMPL_CHILDREN]
        == ref["children_ik"].tolist()
        == ref["children_network"].tolist()
    )
    levels = np.concatenate([[j, d] for d, js in enumerate(skeleton.SMPL_LEVELS) for j in js])
    assert levels.tolist() == ref["levels_network"].tolist()
    assert all(
        skeleton.SMPL_DEPTHS[j] == skeleton.SMPL_DEPTHS[p] + 1 for p, j in skeleton.SMPL_BONES
    )
    assert [skeleton.SMPL_JOINT_NAMES[m] for m in skeleton.SMPL_MIRROR][1:3] == [
        "right_hip",
        "left_hip",
    ]
    assert skeleton.SMPL_ANCESTORS[20] == (20, 18, 16, 13, 9, 6, 3, 0)


def test_forward_kinematics_reproduces_the_three_old_loops(ref):
    rot, rest = torch.as_tensor(ref["rot"]), torch.as_tensor(ref["in_rest"])
    close(axis_angle_to_matrix(ref["in_aa"]), ref["rot"])
    g, p = forward_kinematics(rot, rest)
    for name in ("fk_body_model", "fk_network"):
        close(g, ref[f"{name}_rot"])
        close(p, ref[f"{name}_pos"])
    g_np, p_np = forward_kinematics(ref["rot"], ref["in_rest"])  # numpy in, numpy out
    assert isinstance(g_np, np.ndarray) and isinstance(p_np, np.ndarray)
    close(g_np, ref["fk_body_model_rot"])
    close(global_rotations(ref["rot"]), ref["fk_tool_rot"])
    gm, pm = _model(ref).global_transforms(rot, rest)
    close(gm, ref["fk_body_model_rot"])
    close(pm, ref["fk_body_model_pos"])


def test_skinning_reproduces_the_old_landmark_and_surface_skinning(ref):
    model = _model(ref)
    rot, rest, betas = (torch.as_tensor(ref[k]) for k in ("rot", "in_rest", "in_betas"))
    close(model.skin_points(rot, betas, None, ref["in_vertex_ids"]), ref["skin_points"])
    surf = nk.SurfacePoints(model, ref["in_vertex_ids"])
    close(surf(*nk.fk(rot, rest), betas, rest), ref["surface_points"])
    close(pose_feature(rot), ref["pose_feature"])
    close(pose_feature(ref["rot"]), ref["pose_feature"])


def test_rotations_reproduce_the_numpy_copies(ref):
    close(axis_angle_to_matrix(ref["in_aa"]), ref["rodrigues_formats"])
    close(axis_angle_to_matrix(ref["in_aa"]), ref["rodrigues_tool"])
    a, b = ref["in_swing_a"], ref["in_swing_b"]
    for name in ("swing_retarget", "swing_tool", "swing_torch"):
        close(swing_rotation(a, b), ref[name])
    close(
        np.stack([retarget.swing_between(x, y) for x, y in zip(a, b, strict=True)]),
        ref["swing_retarget"],
    )
    close(kabsch(a[None], b[None]), ref["kabsch"])
    close(skew(ref["in_points"]), ref["skew_tool"])


def test_axes_reproduce_the_old_turns(ref):
    p = ref["in_points"]
    close(axes.z_up_to_y_up(p), ref["to_y_up_prepare"])
    close(axes.z_up_to_y_up(p), ref["anny_to_smpl"])
    close(p @ axes.Z_UP_TO_Y_UP.T, ref["anny_to_smpl"])
    assert np.array_equal(axes.y_up_to_z_up(axes.z_up_to_y_up(p)), p)
    close(axes.y_up_to_z_up(p), p @ axes.Y_UP_TO_Z_UP.T)
    assert np.linalg.det(axes.Y_UP_TO_Z_UP) == 1.0


def test_cmu_exp_map_kinematics_written_once_reproduces_both_conventions(ref):
    rows, parents, offsets = ref["in_cmu_rows"], ref["in_cmu_parents"], ref["in_cmu_offsets"]
    glob, pos, root = cmu_forward_kinematics(rows, parents, offsets)
    # the reference was recorded with the root read as (c2, c1, c0); it is (c0, c1, c2) now
    # (formats/cmu_subset.py): the same FK, every node moved by the difference of the roots
    np.testing.assert_array_equal(ref["cmu_root"], np.asarray(rows)[:, 2::-1])
    expected = ref["cmu_fk_positions"] + (np.asarray(rows)[:, :3] - ref["cmu_root"])[:, None]
    close(pos, expected)  # the reader's row-vector FK
    close(cmu_subset_forward_kinematics(rows, parents, offsets), expected)
    close(glob, ref["cmu_global_rot"])  # the retarget's column-vector rotations
    close(root, np.asarray(rows)[:, :3])
    g2, _ = retarget.cmu_global_rotations(rows, parents)
    close(g2, ref["cmu_global_rot"])
    close(retarget.cmu_rest_positions(parents, offsets), ref["cmu_rest"])


def test_tree_kinematics_is_differentiable_and_batched_over_levels():
    gen = torch.Generator().manual_seed(0)
    rot = axis_angle_to_matrix(
        (torch.randn(3, 24, 3, generator=gen, dtype=torch.float64) * 0.4).requires_grad_()
    )
    off = torch.randn(24, 3, generator=gen, dtype=torch.float64)
    _, pos = tree_kinematics(rot, off)
    pos.sum().backward()
    # one joint by hand: left wrist = sum of rotated offsets down its chain
    chain = list(reversed(skeleton.SMPL_ANCESTORS[20]))
    g = torch.eye(3, dtype=torch.float64).expand(3, 3, 3)
    p = off[0].expand(3, 3)
    for parent, j in itertools.pairwise(chain):
        g = g @ rot[:, parent]
        p = p + (g @ off[j][:, None])[..., 0]
    assert float((p - pos[:, 20]).detach().abs().max()) < 1e-12
    assert rot.grad_fn is not None


def test_local_rotations_undo_global_rotations_on_smpl_and_on_a_forest():
    gen = torch.Generator().manual_seed(1)
    rot = axis_angle_to_matrix(torch.randn(4, 24, 3, generator=gen, dtype=torch.float64))
    close(local_rotations(global_rotations(rot)), rot, 1e-12)
    # a tree with two roots, numpy in and out (the readers' trees)
    parents = (-1, 0, 1, -1, 3)
    r = rot[:, :5].numpy()
    back = local_rotations(global_rotations(r, parents), parents)
    assert isinstance(back, np.ndarray)
    close(back, r, 1e-12)


def test_linear_blend_skinning_of_a_rigid_pose_is_that_motion():
    gen = torch.Generator().manual_seed(1)
    r = axis_angle_to_matrix(torch.randn(2, 3, generator=gen, dtype=torch.float64))
    rest_j = torch.randn(1, 24, 3, generator=gen, dtype=torch.float64)
    rot = torch.eye(3, dtype=torch.float64).repeat(2, 24, 1, 1)
    rot[:, 0] = r
    glob, posed = forward_kinematics(rot, rest_j)
    pts = torch.randn(2, 50, 3, generator=gen, dtype=torch.float64)
    w = torch.softmax(torch.randn(50, 24, generator=gen, dtype=torch.float64), -1)
    out = linear_blend_skinning(pts, w, glob, posed, rest_j)
    expected = ((r[:, None] @ (pts - rest_j[:, :1])[..., None])[..., 0]) + rest_j[:, :1]
    assert float((out - expected).abs().max()) < 1e-12
