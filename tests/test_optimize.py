import math

import numpy as np
import pytest
import torch

from lsmplify_blender.core import metrics
from lsmplify_blender.core.analytic_ik import solve_analytic
from lsmplify_blender.core.body_model import (
    OPEN_MODEL_PATH,
    BodyModel,
    load_model_data,
    rotmats_from_axis_angle,
)
from lsmplify_blender.core.errors import InputError
from lsmplify_blender.core.layouts import BODY25, SMPL24
from lsmplify_blender.core.optimize import FitWeights, kabsch_init, optimize_fit
from lsmplify_blender.core.pose_prior import load_default_prior
from lsmplify_blender.core.rotations import axis_angle_to_matrix, geodesic_angle

pytestmark = pytest.mark.skipif(
    not OPEN_MODEL_PATH.is_file(),
    reason="the embedded open model (core/data/open_model.npz) is not built yet",
)


@pytest.fixture(scope="module")
def model():
    return BodyModel(load_model_data())


@pytest.fixture(scope="module")
def prior():
    return load_default_prior()  # None (no prior term) until the prior file is built


def walk(n=30, fps=30.0):
    """A procedural walk: axis-angle (n, 24, 3) and translation (n, 3), smooth in time."""
    g = torch.Generator().manual_seed(0)
    t = torch.arange(n, dtype=torch.float64) / fps
    ph = 2 * math.pi * t  # one stride per second
    aa = torch.zeros(n, 24, 3, dtype=torch.float64)
    aa[:, 0, 1] = 0.4 + 0.3 * t  # turning slowly
    aa[:, 0, 0] = 0.05 * torch.sin(2 * ph)
    aa[:, 1, 0], aa[:, 2, 0] = -0.45 * torch.sin(ph), 0.45 * torch.sin(ph)  # hips
    aa[:, 4, 0] = 0.15 + 0.55 * torch.clamp(torch.sin(ph + 1.2), min=0)  # knees
    aa[:, 5, 0] = 0.15 + 0.55 * torch.clamp(-torch.sin(ph + 1.2), min=0)
    aa[:, 7, 0], aa[:, 8, 0] = -0.15 * torch.sin(ph), 0.15 * torch.sin(ph)  # ankles
    aa[:, 3, 1] = 0.1 * torch.sin(ph)  # spine counter-rotation
    aa[:, 6, 0], aa[:, 12, 0] = 0.05, -0.1
    aa[:, 13, 2], aa[:, 14, 2] = -0.05, 0.05
    aa[:, 16, 2], aa[:, 17, 2] = -1.2, 1.2  # arms down
    aa[:, 16, 1] = aa[:, 17, 1] = 0.35 * torch.sin(ph)  # arm swing
    aa[:, 18, 1], aa[:, 19, 1] = -0.35 - 0.15 * torch.sin(ph), 0.35 - 0.15 * torch.sin(ph)  # elbows
    aa = aa + 0.05 * torch.randn(1, 24, 3, generator=g, dtype=torch.float64)  # a personal style
    trans = torch.stack([0.3 * torch.sin(0.3 * t), 0.9 + 0.02 * torch.sin(2 * ph), 1.2 * t], -1)
    return aa.float(), trans.float()


@pytest.fixture(scope="module")
def clip(model):
    aa, trans = walk(48)
    rot = rotmats_from_axis_angle(aa)
    betas = 0.5 * torch.randn(10, generator=torch.Generator().manual_seed(1))
    return rot, trans, betas, model.joints(rot, betas, trans)


def _keypoints(layout, model, rot, betas, trans):
    kp = layout.generate(model, rot, betas, trans)
    return torch.nan_to_num(kp), torch.isfinite(kp).all(-1).float()


def test_kabsch_init_recovers_a_rigid_body(model):
    betas = torch.zeros(10)
    root = axis_angle_to_matrix(torch.tensor([[0.3, 2.0, -0.4], [0.0, -1.0, 0.2]]))
    rot = torch.eye(3).repeat(2, 24, 1, 1)
    rot[:, 0] = root
    trans = torch.tensor([[0.5, 1.0, -2.0], [0.0, 0.9, 3.0]])
    kp, w = _keypoints(BODY25, model, rot, betas, trans)
    r0, t0 = kabsch_init(model, BODY25, kp, w, model.betas_tensor(betas))
    assert geodesic_angle(r0[:, 0], root).max() < 1e-3
    assert (t0 - trans).abs().max() < 1e-4
    assert torch.equal(r0[:, 1:], rot[:, 1:])


def test_sequential_baseline_from_rest_converges(model, prior, clip):
    rot, trans, betas, joints = clip
    kp, w = _keypoints(SMPL24, model, rot, betas, trans)
    res = optimize_fit(model, SMPL24, kp, w, betas, mode="sequential", prior=prior)
    assert res.rotmats.shape == (48, 24, 3, 3) and res.trans.shape == (48, 3)
    assert res.per_frame_error_mm.shape == (48,)
    fitted = model.joints(res.rotmats, betas, res.trans)
    err = metrics.mpjpe(fitted, joints, reduce=False)
    # starts at the rest pose (arms out, legs straight), tracks the walk after a few frames
    assert err.mean() < 20.0
    assert err[24:].mean() < 15.0
    assert res.per_frame_error_mm[-10:].mean() < 15.0


def test_batch_refine_from_perturbed_pose(model, prior, clip):
    rot, trans, betas, joints = clip
    rot, trans, joints = rot[:24], trans[:24], joints[:24]
    kp, w = _keypoints(BODY25, model, rot, betas, trans)
    g = torch.Generator().manual_seed(2)
    noise = axis_angle_to_matrix(0.12 * torch.randn(24, 24, 3, generator=g))
    start_rot = rot @ noise
    start_trans = trans + 0.03 * torch.randn(24, 3, generator=g)
    before = metrics.mpjpe(model.joints(start_rot, betas, start_trans), joints)
    res = optimize_fit(
        model, BODY25, kp, w, betas, start_rot, start_trans, mode="batch", iters=10, prior=prior
    )
    after = metrics.mpjpe(model.joints(res.rotmats, betas, res.trans), joints)
    assert before > 60.0
    assert after < 0.4 * before
    # more iterations keep improving the fit to the keypoints
    res30 = optimize_fit(
        model, BODY25, kp, w, betas, start_rot, start_trans, mode="batch", iters=30, prior=prior
    )
    assert np.nanmean(res30.per_frame_error_mm) < np.nanmean(res.per_frame_error_mm)
    assert np.nanmean(res30.per_frame_error_mm) < 10.0


def test_refine_keeps_an_exact_analytic_solution(model, prior, clip):
    _rot, _trans, betas, joints = clip
    ik = solve_analytic(model, betas, joints, torch.ones(joints.shape[:2]))
    assert metrics.mpjpe(model.joints(ik.rotmats, betas, ik.trans), joints) < 0.05
    res = optimize_fit(
        model,
        SMPL24,
        joints,
        torch.ones(joints.shape[:2]),
        betas,
        ik.rotmats,
        ik.trans,
        mode="batch",
        iters=10,
        prior=prior,
    )
    fitted = model.joints(res.rotmats, betas, res.trans)
    assert metrics.mpjpe(fitted, joints) < 1.0
    assert np.nanmax(res.per_frame_error_mm) < 2.0
    assert res.seconds > 0


def test_chunks_and_missing_keypoints(model, prior, clip):
    rot, trans, betas, joints = clip
    rot, trans, joints = rot[:20], trans[:20], joints[:20]
    kp, w = _keypoints(SMPL24, model, rot, betas, trans)
    kp[:, 21] = float("nan")  # a lost wrist: NaN with full weight must be ignored
    kp[5, 18] += 1.0  # one wild outlier, handled by the robust term
    ik = solve_analytic(model, betas, joints, torch.ones(20, 24))
    res = optimize_fit(
        model,
        SMPL24,
        kp.numpy(),
        w.numpy(),
        betas.numpy(),
        ik.rotmats,
        ik.trans,
        mode="batch",
        iters=5,
        prior=prior,
        chunk=8,
    )
    assert res.rotmats.shape == (20, 24, 3, 3) and torch.isfinite(res.rotmats).all()
    assert np.isfinite(res.per_frame_error_mm).all()
    fitted = model.joints(res.rotmats, betas, res.trans)
    assert metrics.mpjpe(fitted, joints) < 5.0  # the outlier did not drag the elbow
    with pytest.raises(InputError):
        optimize_fit(model, SMPL24, kp[:, :10], w[:, :10], betas)
    with pytest.raises(InputError):
        optimize_fit(model, SMPL24, kp, w, betas, mode="fast")


def test_shape_is_recovered_with_free_betas(model, prior, clip):
    rot, trans, _betas, joints = clip
    rot, trans, joints = rot[:12], trans[:12], joints[:12]
    start = torch.zeros(10)
    before = metrics.mpbe(model.joints(rot, start, trans), joints)
    res = optimize_fit(
        model,
        SMPL24,
        joints,
        torch.ones(12, 24),
        start,
        rot,
        trans,
        mode="batch",
        iters=40,
        prior=prior,
        optimize_betas=True,
        weights=FitWeights(shape=1e-3),
    )
    after = metrics.mpbe(model.joints(res.rotmats, res.betas, res.trans), joints)
    assert before > 3.0
    assert after < 0.3 * before
