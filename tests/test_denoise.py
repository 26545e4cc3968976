"""Auto denoise: keypoint noise estimated from limb-length changes, smoothing matched to it."""

import numpy as np
import pytest
import torch
from conftest import smooth_pose

from lsmplify_blender.core.denoise import auto_smooth_seconds, denoise, estimate_noise_mm
from lsmplify_blender.core.errors import InputError
from lsmplify_blender.core.layouts import SMPL24
from lsmplify_blender.core.metrics import jitter, mpjpe
from lsmplify_blender.core.prepare import PreparedKeypoints
from lsmplify_blender.core.solver import solve


def _clip(model, noise_mm, n=150, seed=3):
    rot = smooth_pose(n, seed=seed, keys=6, scale=0.6)
    betas = torch.zeros(10)
    trans = torch.zeros(n, 3)
    clean = SMPL24.generate(model, rot, betas, trans).numpy().astype(np.float64)
    kp = clean + np.random.default_rng(seed).normal(scale=noise_mm / 1000.0, size=clean.shape)
    prep = PreparedKeypoints(
        layout=SMPL24, positions=kp, weight=np.ones(kp.shape[:2]), fps=30.0, units="m", up="y"
    )
    return prep, model.joints(rot, betas, trans)


@pytest.mark.parametrize("noise", [5.0, 20.0, 30.0])
def test_noise_estimate_matches_the_added_noise(model, noise):
    prep, _ = _clip(model, noise)
    assert estimate_noise_mm(prep) == pytest.approx(noise, rel=0.15)


def test_exact_keypoints_are_left_alone(model):
    prep, _ = _clip(model, 0.0)
    assert estimate_noise_mm(prep) < 0.1
    out, _noise, sigma = denoise(prep, "auto")
    assert out is prep and sigma == 0.0
    sol = solve(prep, model, solver="analytic")
    assert sol.smooth_s == 0.0 and not any("smoothed" in n for n in sol.notes)


def test_auto_smoothing_grows_with_noise_and_narrows_with_frame_rate():
    assert auto_smooth_seconds(1.0, 30.0) == 0.0
    assert auto_smooth_seconds(float("nan"), 30.0) == 0.0
    s5, s20, s30 = (auto_smooth_seconds(x, 30.0) for x in (5.0, 20.0, 30.0))
    assert 0 < s5 < s20 < s30 <= 0.08
    assert auto_smooth_seconds(20.0, 120.0) < s20


def test_auto_denoise_brings_joint_error_below_the_noise_and_jitter_below_the_input(model):
    prep, truth = _clip(model, 20.0)
    raw = solve(prep, model, solver="analytic", smooth=0)
    auto = solve(prep, model, solver="analytic")
    j_raw = model.joints(raw.rotmats, raw.betas, raw.trans)
    j_auto = model.joints(auto.rotmats, auto.betas, auto.trans)
    assert auto.smooth_s > 0 and auto.noise_mm == pytest.approx(20.0, rel=0.15)
    assert any("smoothed" in n for n in auto.notes)
    assert mpjpe(j_auto, truth) < 20.0 < mpjpe(j_raw, truth)
    input_jitter = jitter(torch.as_tensor(prep.positions), 30.0)
    assert jitter(j_auto, 30.0) < 0.2 * input_jitter
    # the fit error is measured against the keypoints given, not the smoothed ones
    assert np.nanmean(auto.fit_error_mm) > 15.0


def test_explicit_sigma_and_bad_values(model):
    prep, _ = _clip(model, 0.0, n=20)
    out, _, sigma = denoise(prep, 0.05)
    assert sigma == 0.05 and not np.allclose(out.positions, prep.positions)
    for bad in ("sometimes", -1.0, float("nan")):
        with pytest.raises(InputError, match="smooth"):
            denoise(prep, bad)


def test_smoothing_never_blends_across_a_jump_of_the_whole_body(model):
    import dataclasses

    from lsmplify_blender.core.denoise import motion_cuts, smooth_over_time

    prep, _ = _clip(model, 10.0, n=60)
    pos = prep.positions.copy()
    pos[30:] += [2.0, 0.0, 0.0]  # two takes glued together, the second 2 m away
    glued = dataclasses.replace(prep, positions=pos)
    assert motion_cuts(glued) == [30] and motion_cuts(prep) == []
    out = smooth_over_time(glued, 0.05)
    first = smooth_over_time(
        dataclasses.replace(
            prep, positions=pos[:30], weight=prep.weight[:30], measured=prep.measured[:30]
        ),
        0.05,
    )
    assert np.allclose(out.positions[:30], first.positions)
    assert (
        np.abs(out.positions[28:32, :, 0] - pos[28:32, :, 0]).max() < 0.5
    )  # a blend across the cut would move them ~1 m
    assert any("2 pieces" in n for n in out.notes)


@pytest.mark.parametrize("sigma", [0.4, 1.0, 2.7, 9.0])
def test_gaussian_over_time_equals_scipy(sigma):
    from scipy.ndimage import gaussian_filter1d

    from lsmplify_blender.core.denoise import gaussian_over_time

    x = np.random.default_rng(1).normal(size=(40, 5, 3))
    ref = gaussian_filter1d(x, sigma, axis=0, mode="nearest", truncate=3.0)
    assert np.allclose(gaussian_over_time(x, sigma), ref, atol=1e-12)
    short = x[:3]  # fewer frames than the kernel
    assert np.allclose(
        gaussian_over_time(short, sigma),
        gaussian_filter1d(short, sigma, axis=0, mode="nearest", truncate=3.0),
        atol=1e-12,
    )
