import numpy as np
import torch
from conftest import random_pose

from lsmplify_blender.core.shape_inverse import fit_betas, observed_bone_lengths


def test_betas_from_exact_bone_lengths(model):
    betas = torch.tensor([1.5, -1.0, 0.8, 0.5, -0.5, 0.3, 0.0, -0.2, 0.4, 0.1])
    lengths = model.bone_lengths(betas)[0].numpy()
    fit = fit_betas(model, lengths, ridge=1e-9, iterations=20)
    assert fit.mpbe_mm < 0.5
    got = model.rest_joints(fit.betas)[0]
    want = model.rest_joints(betas)[0]
    assert ((got - want).norm(dim=-1).max() * 1000) < 5.0


def test_clip_lengths_are_robust_to_noise_and_dropouts(model):
    betas = torch.tensor([1.0, 0.5, -0.5, 0, 0, 0, 0, 0, 0, 0])
    rot = random_pose(300, seed=4)
    joints = model.joints(rot, betas).numpy()
    rng = np.random.default_rng(0)
    noisy = joints + rng.normal(scale=0.02, size=joints.shape)  # 20 mm noise
    noisy[rng.random(300) < 0.05] += 0.5  # 5% wild frames
    measured = rng.random(joints.shape[:2]) >= 0.1  # 10% dropouts
    lengths = observed_bone_lengths(noisy, measured)
    true = model.bone_lengths(betas)[0].numpy()
    fit = fit_betas(model, lengths)
    fitted_err = np.abs(fit.fitted - true).mean() * 1000
    assert fitted_err < 8.0, fitted_err


def test_unmeasured_bones_are_ignored(model):
    targets = np.full((5, 24, 3), np.nan)
    lengths = observed_bone_lengths(targets, np.zeros((5, 24), dtype=bool))
    assert np.isnan(lengths).all()
    fit = fit_betas(model, lengths)
    assert torch.allclose(fit.betas, torch.zeros(10))
