"""Layout, units, up axis and gaps: given, declared or detected, and reported."""

import numpy as np
import pytest
import torch
from conftest import smooth_pose

from lsmplify_blender.core.errors import InputError
from lsmplify_blender.core.keypoints import UNIT_SCALES, KeypointSequence
from lsmplify_blender.core.layouts import COCO17, SMPL24
from lsmplify_blender.core.prepare import GAP_WEIGHT, prepare


def _walk(model, n=40, lay=SMPL24):
    rot = smooth_pose(n, seed=11, scale=0.4)
    rot[:, 0] = torch.eye(3)  # upright
    return lay.generate(model, rot, torch.zeros(10), torch.zeros(n, 3)).numpy().astype(np.float64)


@pytest.mark.parametrize("unit", ["m", "cm", "mm", "inch", "cmu"])
def test_units_detected_from_bone_lengths(model, unit):
    kp = _walk(model) / UNIT_SCALES[unit]
    prep = prepare(KeypointSequence(kp, names=list(SMPL24.keypoints)), model)
    assert prep.units == unit
    assert any("units" in n and "detected" in n for n in prep.notes)
    np.testing.assert_allclose(prep.positions, _walk(model), atol=1e-6)


def test_z_up_detected_and_converted(model):
    y_up = _walk(model)
    z_up = np.stack([y_up[..., 0], -y_up[..., 2], y_up[..., 1]], -1)  # Blender's Y-up -> Z-up
    prep = prepare(KeypointSequence(z_up, names=list(SMPL24.keypoints)), model)
    assert prep.up == "z"
    np.testing.assert_allclose(prep.positions, y_up, atol=1e-9)
    prep_y = prepare(KeypointSequence(y_up, names=list(SMPL24.keypoints)), model)
    assert prep_y.up == "y"


def test_options_override_file_declarations(model):
    kp = _walk(model) * 100
    seq = KeypointSequence(kp, names=list(SMPL24.keypoints), units="m", up="z", fps=60)
    prep = prepare(seq, model, units="cm", up="y", fps=24)
    assert (prep.units, prep.up, prep.fps) == ("cm", "y", 24)


def test_gaps_are_interpolated_and_down_weighted(model):
    kp = _walk(model, lay=COCO17)
    truth = kp.copy()
    kp[10:15, 9] = np.nan  # left wrist lost for 5 frames
    prep = prepare(KeypointSequence(kp, names=list(COCO17.keypoints)), model, units="m")
    assert (prep.weight[10:15, 9] == GAP_WEIGHT).all() and (prep.weight[:10, 9] == 1).all()
    assert np.abs(prep.positions[10:15, 9] - truth[10:15, 9]).max() < 0.1
    assert any("interpolation" in n for n in prep.notes)


def test_everything_missing_is_refused(model):
    kp = np.full((10, 24, 3), np.nan)
    with pytest.raises(InputError, match="missing"):
        prepare(KeypointSequence(kp, names=list(SMPL24.keypoints)), model)


def test_smpl_targets_and_landmarks_are_split(model):
    from lsmplify_blender.core.layouts import BODY25

    kp = _walk(model, lay=BODY25)
    prep = prepare(KeypointSequence(kp, names=list(BODY25.keypoints)), model, units="m", up="y")
    _targets, w = prep.smpl_targets()
    names, lm, _lw = prep.landmark_targets()
    assert w[:, 0].max() == 0  # BODY_25 has no pelvis keypoint
    assert w[:, 1].min() == 1  # but has the left hip
    assert "nose" in names and "LHeel" in names and lm.shape[1] == len(names)


def test_unsorted_frames_are_put_in_order(model):
    kp = _walk(model, n=10)
    frames = np.array([0, 1, 2, 3, 4, 6, 5, 7, 8, 9])
    prep = prepare(
        KeypointSequence(kp, names=list(SMPL24.keypoints), frames=frames), model, units="m", up="y"
    )
    assert prep.num_frames == 10 and list(prep.frames) == list(range(10))
    np.testing.assert_allclose(prep.positions[5], kp[6])
    assert any("sorted" in n for n in prep.notes)


def test_restarting_frame_numbers_keep_both_takes_in_file_order(model):
    kp = _walk(model, n=10)
    frames = np.r_[np.arange(5), np.arange(5)]  # two takes glued: 0..4, 0..4
    prep = prepare(
        KeypointSequence(kp, names=list(SMPL24.keypoints), frames=frames), model, units="m", up="y"
    )
    assert prep.num_frames == 10 and list(prep.frames) == list(frames)
    np.testing.assert_allclose(prep.positions, kp, atol=1e-9)
    assert any("all 10 frames were kept in file order" in n for n in prep.notes)


def test_non_human_skeleton_is_refused_with_the_reason(model):
    kp = _walk(model)
    legs = [SMPL24.keypoints.index(n) for n in ("left_knee", "left_ankle", "left_foot")]
    hip = SMPL24.keypoints.index("left_hip")
    kp[:, legs] = kp[:, hip, None] + (kp[:, legs] - kp[:, hip, None]) * 3.0  # a 3x left leg
    with pytest.raises(InputError, match=r"not form a human skeleton.*left_hip->left_knee"):
        prepare(KeypointSequence(kp, names=list(SMPL24.keypoints)), model, units="m", up="y")


def test_a_single_frame_is_solvable(model):
    from lsmplify_blender.core.solver import solve

    kp = _walk(model, n=1)
    prep = prepare(KeypointSequence(kp, names=list(SMPL24.keypoints)), model, units="m", up="y")
    sol = solve(prep, model, solver="analytic")
    assert sol.rotmats.shape == (1, 24, 3, 3) and float(sol.fit_error_mm[0]) < 1.0


def test_smoothing_removes_jitter_without_lag(model):
    from lsmplify_blender.core.denoise import smooth_over_time
    from lsmplify_blender.core.metrics import jitter

    clean = _walk(model, n=120)
    noisy = clean + np.random.default_rng(1).normal(scale=0.02, size=clean.shape)
    prep = prepare(
        KeypointSequence(noisy, names=list(SMPL24.keypoints), fps=30), model, units="m", up="y"
    )
    smooth = smooth_over_time(prep, 0.05)
    err_before = np.linalg.norm(prep.positions - clean, axis=-1).mean()
    err_after = np.linalg.norm(smooth.positions - clean, axis=-1).mean()
    assert err_after < 0.7 * err_before
    assert jitter(smooth.positions, 30) < 0.2 * jitter(prep.positions, 30)
    # zero phase: a smoothed ramp is not delayed
    ramp = prepare(
        KeypointSequence(
            clean + np.linspace(0, 1, 120)[:, None, None], names=list(SMPL24.keypoints), fps=30
        ),
        model,
        units="m",
        up="y",
    )
    mid = smooth_over_time(ramp, 0.1).positions[60] - ramp.positions[60]
    assert np.abs(mid).max() < 0.01
    assert any("smoothed" in n for n in smooth.notes)
