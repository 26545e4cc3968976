import numpy as np
import pytest
import torch

from lsmplify_blender.core import metrics
from lsmplify_blender.core.body_model import SMPL_PARENTS


def _skeleton(n=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(scale=0.3, size=(n, 24, 3))


def _rot(axis, angle):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def test_mpjpe_is_root_centred_and_in_mm():
    gt = _skeleton()
    assert metrics.mpjpe(gt + np.array([0.3, -1.0, 2.0]), gt) == pytest.approx(0.0, abs=1e-9)
    pred = gt.copy()
    pred[:, 5] += np.array([0.0, 0.024, 0.0])  # one joint 24 mm off, out of 24 joints
    assert metrics.mpjpe(pred, gt) == pytest.approx(1.0)
    per_frame = metrics.mpjpe(pred, gt, reduce=False)
    assert per_frame.shape == (5,) and np.allclose(per_frame, 1.0)
    # moving the root moves every other joint relative to it
    pred = gt.copy()
    pred[:, 0] += np.array([0.01, 0.0, 0.0])
    assert metrics.mpjpe(pred, gt) == pytest.approx(10.0 * 23 / 24)


def test_metrics_accept_torch_and_single_frames():
    gt = _skeleton(1)[0]
    pred = gt + np.array([0.0, 0.0, 0.005])
    assert metrics.mpve(torch.tensor(pred), torch.tensor(gt)) == pytest.approx(5.0)
    assert metrics.mpve(pred.astype(np.float32), gt) == pytest.approx(5.0, rel=1e-5)
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.mpjpe(gt[:10], gt)


def test_mpve_uses_raw_vertices():
    gt = np.random.default_rng(1).normal(size=(3, 100, 3))
    shift = np.array([0.003, 0.004, 0.0])  # 5 mm
    assert metrics.mpve(gt + shift, gt) == pytest.approx(5.0)
    assert metrics.pa_mpve(gt + shift, gt) == pytest.approx(0.0, abs=1e-9)


def test_procrustes_removes_rotation_scale_translation():
    gt = _skeleton(4, seed=2)
    pred = np.stack(
        [1.3 * gt[f] @ _rot([1, 2, 3], 0.7 + f).T + np.array([0.5, -0.2, f]) for f in range(4)]
    )
    assert metrics.mpjpe(pred, gt) > 50
    assert metrics.pa_mpjpe(pred, gt) == pytest.approx(0.0, abs=1e-6)
    assert metrics.pa_mpve(pred, gt) == pytest.approx(0.0, abs=1e-6)
    # a reflection is not a rotation: Procrustes must not undo it
    mirrored = gt * np.array([-1.0, 1.0, 1.0])
    assert metrics.pa_mpjpe(mirrored, gt) > 1.0


def test_pa_mpjpe_leaves_the_nonrigid_part():
    gt = _skeleton(1, seed=3)
    pred = gt.copy()
    pred[0, 7] += np.array([0.0, 0.0, 0.05])
    assert metrics.pa_mpjpe(pred, gt) > 0
    # the alignment minimises the squared error, so it can only lower it
    aligned = metrics.procrustes_align(pred, gt)
    assert ((aligned - gt) ** 2).sum() < ((pred - gt) ** 2).sum()


def test_mpbe():
    gt = _skeleton(3, seed=4)
    assert metrics.mpbe(gt, gt) == 0.0
    # bone lengths do not change under a rigid motion
    moved = gt @ _rot([0, 1, 0], 1.0).T + 2.0
    assert metrics.mpbe(moved, gt) == pytest.approx(0.0, abs=1e-9)
    # a skeleton scaled by 2 has every bone longer by its own length
    lengths = metrics.bone_lengths(gt)
    assert lengths.shape == (3, 23)
    assert metrics.mpbe(2 * gt, gt) == pytest.approx(lengths.mean() * 1000)
    # a subset of bones: only the left knee -> ankle bone (child 7) changes
    pred = gt.copy()
    pred[:, 7] = gt[:, 4] + 1.5 * (gt[:, 7] - gt[:, 4])
    knee_ankle = np.linalg.norm(gt[:, 7] - gt[:, 4], axis=-1).mean() * 1000
    assert metrics.mpbe(pred, gt, bones=[7]) == pytest.approx(0.5 * knee_ankle)
    assert metrics.mpbe(pred, gt, bones=[4, 5]) == 0.0
    with pytest.raises(ValueError, match="the root has none"):
        metrics.bone_lengths(gt, SMPL_PARENTS, bones=[0])


def test_accel_error_and_jitter():
    t = np.arange(10, dtype=float)[:, None, None]
    gt = np.concatenate([t * 0.01, 0 * t, 0 * t], -1) * np.ones((1, 4, 1))  # constant velocity
    assert metrics.accel_error(gt + 0.1, gt) == pytest.approx(0.0, abs=1e-9)
    pred = gt.copy()
    pred[..., 1] += 0.5 * 0.002 * t[..., 0] ** 2  # constant acceleration 2 mm/frame^2
    assert metrics.accel_error(pred, gt) == pytest.approx(2.0)
    assert metrics.accel_error(pred, gt, fps=10) == pytest.approx(200.0)
    assert metrics.accel_error(pred, gt, reduce=False).shape == (8,)
    # jitter: x = t^3 / 6 mm has a third difference of 1 mm per frame^3
    cubic = np.zeros((10, 2, 3))
    cubic[..., 2] = t[..., 0] ** 3 / 6.0 * 0.001
    assert metrics.jitter(cubic, fps=1) == pytest.approx(1.0)
    assert metrics.jitter(cubic, fps=30) == pytest.approx(30.0**3)
    assert metrics.jitter(gt, fps=30) == pytest.approx(0.0, abs=1e-6)
    assert metrics.jitter(gt, fps=30, order=2) == pytest.approx(0.0, abs=1e-6)
    assert np.isnan(metrics.accel_error(gt[:2], gt[:2]))


def test_per_frame_error_masks_weights_and_nan():
    target = np.zeros((3, 4, 3))
    pred = np.zeros((3, 4, 3))
    pred[:, :, 0] = [0.001, 0.002, 0.003, 0.1]  # 1, 2, 3, 100 mm
    w = np.array([[1, 1, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0]], float)
    target[1, 3] = np.nan  # a missing target counts as absent
    err = metrics.per_frame_error(pred, target, w)
    assert err[0] == pytest.approx(2.0)
    assert err[1] == pytest.approx(2.0)
    assert np.isnan(err[2])
    assert metrics.per_frame_error(torch.tensor(pred), torch.tensor(np.zeros((3, 4, 3))))[
        2
    ] == pytest.approx(26.5)
