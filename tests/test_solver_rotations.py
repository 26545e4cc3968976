"""Bone rotations from the readers (BVH, ASF/AMC) and their use by the solver: the reader's
rotations agree with its own joint positions, and with them every segment follows the captured
bone's orientation (the issue-9 targets: mean <= 5 deg, p95 <= 12 deg per segment)."""

import numpy as np
import pytest
from conftest import FIXTURES

from lsmplify_blender.core.errors import InputError
from lsmplify_blender.core.formats import read_keypoints
from lsmplify_blender.core.formats._common import read_text
from lsmplify_blender.core.formats.acclaim import read_asf
from lsmplify_blender.core.formats.bvh import parse_bvh
from lsmplify_blender.core.layouts import cmu_node_names
from lsmplify_blender.core.metrics import orientation_error_deg
from lsmplify_blender.core.prepare import prepare
from lsmplify_blender.core.solver import solve

# SMPL joint whose world rotation turns each captured CMU bone (the same pairs as the evaluation)
SEGMENTS = {
    "lfemur": 1,
    "rfemur": 2,
    "ltibia": 4,
    "rtibia": 5,
    "lfoot": 7,
    "rfoot": 8,
    "head": 15,
    "lhumerus": 16,
    "rhumerus": 17,
    "lradius": 18,
    "rradius": 19,
    "lhand": 20,
    "rhand": 21,
}


def _orthonormal(r):
    return np.allclose(r @ np.swapaxes(r, -1, -2), np.eye(3), atol=1e-5) and np.allclose(
        np.linalg.det(r), 1, atol=1e-5
    )


def test_bvh_rotations_move_the_offsets():
    """World position of every node = its parent's + the parent's world rotation of the OFFSET."""
    path = FIXTURES / "131_01_short.bvh"
    seq = read_keypoints(path)
    data = parse_bvh(read_text(path), path.name)
    assert seq.rotations.shape == seq.positions.shape[:2] + (3, 3) and _orthonormal(seq.rotations)
    for i, node in enumerate(data.nodes):
        if node.parent >= 0 and node.channels[:1] != ["Xposition"]:
            moved = np.einsum(
                "tij,j->ti",
                seq.rotations[:, node.parent],
                seq.rest_positions[i] - seq.rest_positions[node.parent],
            )
            np.testing.assert_allclose(
                seq.positions[:, i] - seq.positions[:, node.parent], moved, atol=1e-4
            )


def test_asf_rotations_move_the_bones():
    """Every bone's end = its start + the bone's world rotation of its rest vector."""
    seq = read_keypoints(FIXTURES / "01_01_short.amc", asf=FIXTURES / "01.asf")
    skel = read_asf(FIXTURES / "01.asf")
    idx = {n: i for i, n in enumerate(seq.names)}
    assert _orthonormal(seq.rotations)
    for name, bone in skel.bones.items():
        ends = list(bone.children) or [name + "_end"]
        for end in ends:
            a, b = idx[name], idx[end]
            moved = np.einsum(
                "tij,j->ti", seq.rotations[:, a], seq.rest_positions[b] - seq.rest_positions[a]
            )
            np.testing.assert_allclose(seq.positions[:, b] - seq.positions[:, a], moved, atol=1e-4)


def _orientation(seq, sol, model):
    g, _ = model.global_transforms(sol.rotmats, model.rest_joints(sol.betas))
    g = g.numpy()
    nodes = cmu_node_names(list(seq.names))
    index = {nodes.get(n, n): i for i, n in enumerate(seq.names)}
    return {
        node: orientation_error_deg(seq.rotations[:, index[node]], g[:, j])
        for node, j in SEGMENTS.items()
    }


@pytest.mark.parametrize(
    ("name", "asf"), [("131_01_short.bvh", None), ("01_01_short.amc", "01.asf")]
)
def test_rotations_give_every_segment_its_orientation(model, name, asf):
    """The rotation transfer on its own (calibration off: see the test below)."""
    seq = read_keypoints(FIXTURES / name, asf=None if asf is None else FIXTURES / asf)
    prep = prepare(seq, model)
    with_rot = solve(prep, model, calibrate="off")  # --rotations auto: the file has them
    without = solve(prep, model, rotations="ignore", calibrate="off")
    assert with_rot.rotations and not without.rotations
    err, base = _orientation(seq, with_rot, model), _orientation(seq, without, model)
    for node, e in err.items():
        assert e.mean() <= 5.0 and np.percentile(e, 95) <= 12.0, (
            node,
            e.mean(),
            np.percentile(e, 95),
        )
    assert sum(e.mean() for e in err.values()) < 0.6 * sum(e.mean() for e in base.values())


def test_calibrated_rotations_keep_the_hands_orientation(model):
    seq = read_keypoints(FIXTURES / "01_01_short.amc", asf=FIXTURES / "01.asf")
    sol = solve(prepare(seq, model), model)  # the defaults: calibration on for a CMU skeleton
    assert sol.keypoint_offsets is not None and sol.rotations
    err = _orientation(seq, sol, model)
    # lhand is SMPL's wrist (core/layouts.py, CMU's hand): tied to lwrist, the palm was aimed along
    # the forearm and lost the hand's flexion (4.8 / 6.9 deg here, 24.7 / 29.1 p95 on eval --real)
    for node in ("lhand", "rhand"):
        assert err[node].mean() <= 1.0 and np.percentile(err[node], 95) <= 2.0, node


def test_rotations_use_without_rotations_is_an_error(model):
    seq = read_keypoints(FIXTURES / "131_01_short.bvh")
    seq.rotations = None
    prep = prepare(seq, model)
    with pytest.raises(InputError, match="carries no bone rotations"):
        solve(prep, model, rotations="use")
    assert not solve(prep, model).rotations  # auto: keypoints only, as before


def test_convert_rotations_flag(tmp_path, capsys, model):
    """convert --rotations auto|use|ignore: the JSON line says whether the file's rotations were
    used; asking for them from keypoints that have none is a one-line error naming the flag."""
    import json

    import torch

    from lsmplify_blender.core.cli import main
    from lsmplify_blender.core.layouts import SMPL24

    bvh = FIXTURES / "131_01_short.bvh"
    for flag, used in (("auto", True), ("use", True), ("ignore", False)):
        assert (
            main(
                [
                    "convert",
                    str(bvh),
                    "--out",
                    str(tmp_path / f"{flag}.npz"),
                    "--rotations",
                    flag,
                    "--quiet",
                ]
            )
            == 0
        )
        assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["rotations"] is used
    kp = SMPL24.generate(model, torch.eye(3).expand(4, 24, 3, 3), torch.zeros(10)).numpy()
    src = tmp_path / "kp.npz"
    np.savez(src, keypoints=kp, joint_names=np.array(SMPL24.keypoints), fps=30, units="m", up="y")
    assert main(["convert", str(src), "--out", str(tmp_path / "k.npz"), "--rotations", "use"]) == 2
    err = capsys.readouterr().err
    assert "--rotations use" in err and "Traceback" not in err


def test_cmu_subset_rotations_move_the_offsets():
    """cmu_subset clips: every node = its parent + the parent's world rotation of the rest bone."""
    from lsmplify_blender.core.formats import read_cmu_subset
    from lsmplify_blender.core.formats.cmu_subset import read_cmu_skeleton

    seq = read_cmu_subset(FIXTURES / "walking_1_short.txt", FIXTURES / "cmu_skeleton.json")
    _, parents, _ = read_cmu_skeleton(FIXTURES / "cmu_skeleton.json")
    assert _orthonormal(seq.rotations)
    for i, p in enumerate(parents):
        if p >= 0:
            moved = np.einsum(
                "tij,j->ti", seq.rotations[:, p], seq.rest_positions[i] - seq.rest_positions[p]
            )
            np.testing.assert_allclose(seq.positions[:, i] - seq.positions[:, p], moved, atol=1e-4)


@pytest.mark.parametrize(
    ("take", "fit_mm", "torso_deg"), [("55_01", 15.0, 6.0), ("49_08", 17.0, 6.0)]
)
def test_calibrated_fit_of_the_fbx_rig_dances(model, take, fit_mm, torso_deg):
    """The FBX rig's dances (first 120 frames at 30 fps, as eval --real takes them), defaults: the
    fit to the calibrated keypoints and the torso's direction. They missed most (fit 16.5 and
    21.1 mm, torso 7.3 and 9.8 deg) while the file's thorax set the chest and the body stood where
    analytic IK had put it for its own chest (solver._chest_onto_keypoints, _refit_translation),
    and CMU's upper back / thorax / lower neck were tied to SMPL's spine1 / spine2 / neck. 49_08
    is still above issue 10's 15 mm: SMPL has no lower-neck joint to follow its head's swings.
    CMU takes 55_01 and 49_08, mocap.cs.cmu.edu (fixtures/cmu_fbx_bvh/CREDIT.txt)."""
    from lsmplify_blender.research import real_metrics as rm
    from lsmplify_blender.research.real_eval import _y_up_capture
    from lsmplify_blender.research.real_takes import load_bvh_take

    real = load_bvh_take(FIXTURES / "cmu_fbx_bvh" / f"{take}_cmu.bvh", "cmu_fbx_bvh", frames=120)
    prep = prepare(real.seq, model)
    _y_up_capture(real, prep.up)
    sol = solve(prep, model)
    fit = rm.keypoint_fit(
        prep, model, sol.rotmats, sol.betas, sol.trans, sol.keypoint_offsets, positions_only=True
    )
    assert np.nanmean(np.concatenate(list(fit.values()))) <= fit_mm
    _, joints, landmarks = rm.solved_body(model, sol.rotmats, sol.betas, sol.trans)
    torso = rm.direction_errors(real.capture, joints, landmarks, slice(0, prep.num_frames))["torso"]
    assert torso.mean() <= torso_deg


def test_rotation_transfer_measures_its_rest_constants_once_per_solve(model, monkeypatch):
    # a calibrated solve transfers the file's rotations three times (twice on the subsample, once on
    # every frame); the rest pose's constants are the file's, measured once and shared (the memo)
    from lsmplify_blender.core import solver

    calls = []
    measure = solver._source_aims_better
    monkeypatch.setattr(solver, "_source_aims_better", lambda *a: calls.append(1) or measure(*a))
    seq = read_keypoints(FIXTURES / "01_01_short.bvh")
    sol = solve(prepare(seq, model), model, calibrate="on")
    assert sol.rotations and sol.keypoint_offsets is not None
    assert len(calls) == 1
    # a second solve measures its own (the memo lives with one solve's contexts)
    solve(prepare(seq, model), model, calibrate="on")
    assert len(calls) == 2
