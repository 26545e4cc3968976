"""Training-data sources: CMU ASF/AMC, CMU BVH and DeepMimic retargeted by rotation transfer."""

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from lsmplify_blender.core.body_model import SMPL_JOINT_NAMES, BodyModel, load_model_data
from lsmplify_blender.core.errors import InputError
from lsmplify_blender.core.network.sources import (
    _spread,
    load_amc,
    load_bvh,
    load_deepmimic,
    resample,
    retarget_source,
    tracking_error_deg,
)

FIX = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def model():
    return BodyModel(load_model_data())


@pytest.fixture(scope="module")
def rest(model):
    return model.rest_joints(torch.zeros(10))[0].double().numpy()


def _retarget(model, rest, src):
    local, pelvis = retarget_source(src, rest)
    joints = model.joints(torch.as_tensor(local), torch.zeros(10)).numpy()
    return local, pelvis, joints


@pytest.mark.parametrize(
    "load",
    [
        lambda: load_amc(FIX / "01_01_short.amc", FIX / "01.asf"),
        lambda: load_bvh(FIX / "01_01_short.bvh"),  # cgspeed dialect
        lambda: load_bvh(FIX / "131_01_short.bvh"),  # LeftHip/Chest2 dialect
        lambda: load_deepmimic(FIX / "humanoid3d_walk.txt", FIX / "humanoid3d_character.txt"),
    ],
    ids=["amc", "bvh-cgspeed", "bvh-chest2", "deepmimic"],
)
def test_retargeted_limbs_follow_the_source_bones(model, rest, load):
    src = load()
    local, pelvis, joints = _retarget(model, rest, src)
    assert local.shape == (src.glob.shape[0], 24, 3, 3) and pelvis.shape == (src.glob.shape[0], 3)
    assert np.allclose(np.linalg.det(local), 1.0, atol=1e-4)
    assert tracking_error_deg(src, local, joints) < 0.1
    # the rig stands upright: head above pelvis on average, pelvis about a leg length up
    assert (joints[:, 15, 1] - joints[:, 0, 1]).mean() > 0.3
    assert 0.5 < np.median(pelvis[:, 1]) < 1.3


def test_amc_and_bvh_of_the_same_take_give_the_same_pose(model, rest):
    """01_01_short.amc frame k is motion line k of 01_01_short.bvh: the two formats must agree."""
    amc, _, _ = _retarget(model, rest, load_amc(FIX / "01_01_short.amc", FIX / "01.asf"))
    bvh, _, _ = _retarget(model, rest, load_bvh(FIX / "01_01_short.bvh"))
    n = min(len(amc), len(bvh) - 1)
    ang = Rotation.from_matrix(
        (np.swapaxes(amc[:n], -1, -2) @ bvh[1 : n + 1]).reshape(-1, 3, 3)
    ).magnitude()
    assert np.degrees(np.median(ang)) < 1.0


def test_deepmimic_faces_its_walking_direction(model, rest):
    src = load_deepmimic(FIX / "humanoid3d_walk.txt", FIX / "humanoid3d_character.txt")
    assert src.fps == pytest.approx(30.0, rel=1e-3)
    _, pelvis, joints = _retarget(model, rest, src)
    left = (joints[:, 1] - joints[:, 2]).mean(0)
    forward = np.cross(left, [0.0, 1.0, 0.0])
    walk = pelvis[-1] - pelvis[0]
    assert forward @ walk / np.linalg.norm(forward) / np.linalg.norm(walk) > 0.95


def test_deepmimic_spine_is_shared_between_the_three_spine_joints(model, rest):
    src = load_deepmimic(FIX / "humanoid3d_walk.txt", FIX / "humanoid3d_character.txt")
    local, _, _ = _retarget(model, rest, src)
    s1, s2, s3 = (SMPL_JOINT_NAMES.index(n) for n in ("spine1", "spine2", "spine3"))
    assert np.allclose(local[:, s1], local[:, s2], atol=1e-5) and np.allclose(
        local[:, s2], local[:, s3], atol=1e-5
    )


def test_spread_keeps_the_chain_end_rotation():
    local = Rotation.random(10 * 24, random_state=1).as_matrix().reshape(10, 24, 3, 3)
    local[:, [3, 6]] = np.eye(3)
    out = _spread(local, [3, 6, 9])
    assert np.allclose(
        out[:, 3] @ out[:, 6] @ out[:, 9], local[:, 3] @ local[:, 6] @ local[:, 9], atol=1e-6
    )
    assert np.allclose(out[:, 0], local[:, 0])


def test_resample_keeps_the_samples_it_lands_on(model, rest):
    src = load_deepmimic(FIX / "humanoid3d_walk.txt", FIX / "humanoid3d_character.txt")
    local, pelvis = retarget_source(src, rest)
    up, pel_up = resample(local, pelvis, 30.0, 120.0)
    assert up.shape[0] == 4 * (local.shape[0] - 1) + 1
    assert np.allclose(up[::4], local, atol=1e-5) and np.allclose(pel_up[::4], pelvis, atol=1e-5)
    # midway samples lie between their neighbours
    mid = Rotation.from_matrix(
        (np.swapaxes(local[:-1], -1, -2) @ up[2::4]).reshape(-1, 3, 3)
    ).magnitude()
    full = Rotation.from_matrix(
        (np.swapaxes(local[:-1], -1, -2) @ local[1:]).reshape(-1, 3, 3)
    ).magnitude()
    assert np.allclose(mid, full / 2, atol=1e-4)


def test_non_cmu_bvh_is_refused_with_the_missing_nodes(tmp_path):
    f = tmp_path / "tiny.bvh"
    f.write_text(
        "HIERARCHY\nROOT Hips\n{\n OFFSET 0 0 0\n CHANNELS 6 Xposition Yposition Zposition "
        "Zrotation Xrotation Yrotation\n JOINT Foo\n {\n  OFFSET 0 1 0\n  CHANNELS 3 Zrotation "
        "Xrotation Yrotation\n  End Site\n  {\n   OFFSET 0 1 0\n  }\n }\n}\nMOTION\nFrames: 1\n"
        "Frame Time: 0.0333\n0 0 0 0 0 0 0 0 0\n"
    )
    with pytest.raises(InputError, match="no CMU node"):
        load_bvh(f)


def test_deepmimic_row_length_must_match_the_character(tmp_path):
    f = tmp_path / "bad.txt"
    f.write_text('{"Loop": "wrap", "Frames": [[0.033, 0, 0.9, 0, 1, 0, 0, 0]]}')
    with pytest.raises(InputError, match="the character"):
        load_deepmimic(f, FIX / "humanoid3d_character.txt")
