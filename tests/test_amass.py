"""AMASS .npz files: Z-up detection from the data and SMPL-H / SMPL-X poses on SMPL's 24 joints.

The joint orders are checked against smplx's published name lists (the test reference;
the add-on never imports smplx), the motion is a real CMU take solved by the analytic
solver, written the way AMASS stores it (Z up, no ``up`` key, 156 columns).
"""

import json

import numpy as np
import pytest
import torch
from conftest import FIXTURES

from lsmplify_blender.core.cli import main
from lsmplify_blender.core.errors import InputError
from lsmplify_blender.core.formats import read_keypoints
from lsmplify_blender.core.formats.amass import (
    detect_pose_up,
    read_smpl_npz,
    smpl_pose_columns,
    write_smpl_npz,
)
from lsmplify_blender.core.model.axes import Z_UP_TO_Y_UP
from lsmplify_blender.core.prepare import prepare
from lsmplify_blender.core.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from lsmplify_blender.core.solver import solve

joint_names = pytest.importorskip("smplx.joint_names")


def numbered_poses(names, frames=3):
    """Pose vectors whose joint j block is (j, 100 + j, 200 + j): every column says its joint."""
    j = np.arange(len(names), dtype=np.float64)
    block = np.stack([j, 100 + j, 200 + j], -1).reshape(-1)
    return np.tile(block, (frames, 1))


@pytest.mark.parametrize(("names", "width"), [("SMPLH_JOINT_NAMES", 156), ("JOINT_NAMES", 165)])
def test_wide_poses_map_the_body_and_each_hand_to_its_own_side(names, width):
    names = getattr(joint_names, names)
    n_joints = width // 3
    poses = numbered_poses(names[:n_joints])
    out, note = smpl_pose_columns(poses, "f.npz")
    got = out.reshape(-1, 24, 3)[0, :, 0].astype(int)
    assert list(got[:22]) == list(range(22))  # the body joints as they are
    assert names[got[22]] == "left_index1" and names[got[23]] == "right_index1"
    assert note.startswith("SMPL-H" if width == 156 else "SMPL-X")
    # what the old poses[:, :72] did: a LEFT finger joint on SMPL's right hand
    assert names[int(poses[0, 69])].startswith("left_")
    with pytest.raises(
        InputError, match="75 columns; expected 72 \\(SMPL\\), 156 \\(SMPL-H\\) or 165"
    ):
        smpl_pose_columns(np.zeros((2, 75)), "f.npz")


@pytest.fixture(scope="module")
def cmu_motion(model):
    """A real take solved to SMPL (Y up): (poses (T, 72), trans (T, 3), pelvis rest joint)."""
    prepared = prepare(read_keypoints(FIXTURES / "131_01_short.bvh"), model)
    sol = solve(prepared, model, "analytic")
    poses = matrix_to_axis_angle(sol.rotmats.double()).reshape(-1, 72).numpy()
    j0 = model.rest_joints(sol.betas.double().reshape(1, -1))[0, 0].cpu().numpy()
    return poses, sol.trans.double().numpy(), sol.betas.double().cpu().numpy()[:10], j0


def as_amass(poses, trans, j0):
    """The motion as AMASS stores it: Z up (the inverse of Z_UP_TO_Y_UP), 156 SMPL-H columns."""
    m = Z_UP_TO_Y_UP.T
    rot = axis_angle_to_matrix(torch.from_numpy(poses.reshape(-1, 24, 3))).numpy()
    rot[:, 0] = m @ rot[:, 0]
    tz = (trans + j0) @ m.T - j0
    wide = np.zeros((poses.shape[0], 156))
    wide[:, :66] = matrix_to_axis_angle(torch.from_numpy(rot)).reshape(-1, 72).numpy()[:, :66]
    wide[:, 66:69] = poses[:, 66:69]  # left_index1 <- SMPL's left hand
    wide[:, 111:114] = poses[:, 69:72]  # right_index1 <- SMPL's right hand
    return wide, tz


def test_z_up_is_detected_from_the_data(cmu_motion, tmp_path):
    poses, trans, betas, j0 = cmu_motion
    assert detect_pose_up(poses)[0] == "y"
    wide, tz = as_amass(poses, trans, j0)
    assert detect_pose_up(wide)[0] == "z"
    p = tmp_path / "amass.npz"
    np.savez(
        p,
        poses=wide,
        trans=tz,
        betas=np.r_[betas, np.zeros(6)],
        mocap_framerate=120.0,
        gender="neutral",
    )
    data = read_smpl_npz(p)
    assert data["up"] == "z" and data["poses"].shape == (poses.shape[0], 72)
    assert any("read as Z up (as AMASS stores it)" in n for n in data["notes"])
    assert any(n.startswith("SMPL-H poses (156 columns)") for n in data["notes"])
    declared = write_smpl_npz(tmp_path / "ours.npz", poses, betas, trans, 120.0)  # up = "y"
    assert read_smpl_npz(declared)["up"] == "y" and read_smpl_npz(declared)["notes"] == []


def test_cli_init_reads_an_amass_file_like_the_smpl_one(cmu_motion, tmp_path, capsys):
    poses, trans, betas, j0 = cmu_motion
    src = FIXTURES / "131_01_short.bvh"
    ours = write_smpl_npz(tmp_path / "init.npz", poses, betas, trans, 120.0)
    wide, tz = as_amass(poses, trans, j0)
    amass = tmp_path / "init_amass.npz"
    np.savez(amass, poses=wide, trans=tz, betas=betas, mocap_framerate=120.0)
    outs = []
    for i, init in enumerate((ours, amass)):
        out = tmp_path / f"r{i}.npz"
        code = main(
            [
                "convert",
                str(src),
                "--out",
                str(out),
                "--init",
                str(init),
                "--passes",
                "0",
                "--refine",
                "1",
                "--quiet",
            ]
        )
        res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert code == 0 and res["solver"] == "refine"
        outs.append(np.load(out))
    a, b = outs
    assert np.allclose(a["poses"], b["poses"], atol=1e-3) and np.allclose(
        a["trans"], b["trans"], atol=1e-4
    )
