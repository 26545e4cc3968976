"""Training pairs made on the fly by forward kinematics from cached SMPL pose sequences.

A pair is (init frame t-s, target frame t) of one clip: s in {0, 1, 3, 5, 7, 9} frames at
30 fps (x4 at the cached 120 fps; s = 0 teaches the plug-in / anchor mode), half of them
reversed in time. Augmentations: random betas, random per-bone length scaling of the rest
skeleton (left/right kept symmetric), keypoint noise 0-30 mm, random missing keypoints,
and perturbed init poses (ground truth / drifted twist and swing / swing-only re-aim with
no twist, like the analytic solver's output).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..body_model import BodyModel
from ..rotations import axis_angle_to_matrix, rotation_6d_to_matrix
from .kinematics import KIDS, fk, reaim
from .retarget import MIRROR

STEPS = (0, 1, 3, 5, 7, 9)
STEP_P = (0.12, 0.30, 0.18, 0.14, 0.13, 0.13)
SINGLE_CHILD = [j for j in range(24) if len(KIDS[j]) == 1]
ESSENTIAL = (0, 1, 2, 12)  # pelvis, hips, neck: never dropped (they define the frame)
# The augmentations' proportions, hand-set (none fitted to data): betas N(0, 1) clipped at +-3 with
# the mean body in 10% of rows; keypoint noise none / 0-10 mm / 10 mm-max in 40 / 35 / 25%
# of rows; 15% of keypoints dropped in 25% of rows; init poses ground truth / drifted
# (twist N(0, up to 0.5 rad), swing up to 0.08 rad) / swing-only in 30 / 40 / 30%.
MEAN_BODY_P = 0.1
NOISE_CUMULATIVE_P = (0.4, 0.75)  # none below the first, 0-10 mm below the second
NOISE_SMALL_MM = 10.0
DROP_P, DROP_ROWS_P = 0.15, 0.25
INIT_MODE_P = (0.3, 0.4, 0.3)
DRIFT_TWIST_MAX, DRIFT_SWING_MAX = 0.5, 0.08


@dataclass
class MotionSet:
    rotmats: torch.Tensor  # (N, 24, 3, 3)
    pelvis: torch.Tensor  # (N, 3)
    starts: np.ndarray  # (C + 1,)
    stride: int = 4  # cached frames per 30 fps frame

    @classmethod
    def load(cls, path, stride: int = 4):
        z = np.load(path)
        rot = rotation_6d_to_matrix(torch.as_tensor(z["rot6d"]))
        return cls(rot, torch.as_tensor(z["pelvis"]), z["starts"], stride)

    @property
    def clip_of(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.starts) - 1), np.diff(self.starts))


def sample_indices(ms: MotionSet, batch: int, rng: np.random.Generator):
    """(init, target, s) frame indices; both in the same clip, |t - init| = stride * s."""
    n = ms.rotmats.shape[0]
    clip = ms.clip_of
    t = rng.integers(0, n, batch)
    s = rng.choice(STEPS, size=batch, p=STEP_P)
    off = s * ms.stride
    direction = np.where(rng.random(batch) < 0.5, -1, 1)
    init = t + direction * off
    lo, hi = ms.starts[clip[t]], ms.starts[clip[t] + 1] - 1
    bad = (init < lo) | (init > hi)
    init = np.where(bad, t - direction * off, init)
    init = np.clip(init, lo, hi)
    return init, t, s


def _bone_scale(batch: int, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
    """(B, 24) per-joint scale of the bone parent->j, symmetric left/right."""
    sc: np.ndarray = 1 + rng.normal(0, 0.06, (batch, 24)).clip(-0.15, 0.15)
    sc = 0.5 * (sc + sc[:, MIRROR])
    sc *= rng.uniform(0.92, 1.08, (batch, 1))
    return np.where(rng.random((batch, 1)) < p, sc, 1.0)


def scaled_rest(rest: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Rest joints (B, 24, 3) with bone parent->j scaled by ``scale[:, j]`` (the root stays)."""
    from ..model.kinematics import bone_offsets, rest_positions
    from ..model.skeleton import SMPL_PARENTS

    off = bone_offsets(rest)
    off = torch.cat([off[:, :1], off[:, 1:] * scale[:, 1:, None]], 1)
    return rest_positions(off, SMPL_PARENTS)


def twist_noise(
    rot: torch.Tensor, rest: torch.Tensor, std: torch.Tensor, gen: torch.Generator
) -> torch.Tensor:
    """Twist each single-child joint about its rest bone by N(0, std) and undo it at the child
    (joint positions unchanged, surface changed), like a drifted twist after re-aiming."""
    rot = rot.clone()
    for j in SINGLE_CHILD:
        c = KIDS[j][0]
        axis = rest[:, c] - rest[:, j]
        axis = axis / axis.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        phi = torch.randn(rot.shape[0], 1, generator=gen) * std[:, None]
        tw = axis_angle_to_matrix(axis * phi)
        rot[:, j] = rot[:, j] @ tw
        rot[:, c] = tw.transpose(-1, -2) @ rot[:, c]
    return rot


def make_batch(
    ms: MotionSet,
    model: BodyModel,
    batch: int,
    rng: np.random.Generator,
    gen: torch.Generator,
    noise_max_mm: float = 30.0,
):
    """One training batch (dict of tensors); everything derived exactly from the cached poses.
    (The steps draw from ``rng`` and ``gen`` in a fixed order: a seed gives the same batch.)"""
    i0, i1, s = sample_indices(ms, batch, rng)
    betas, rest_b, rest, size = _random_bodies(model, batch, rng)
    (r0, p0), (r1, p1) = _turned(ms, (i0, i1), size, rng)
    _, j0 = fk(r0, rest)
    _, j1 = fk(r1, rest)
    j0 = j0 - rest[:, :1] + p0[:, None]
    j1 = j1 - rest[:, :1] + p1[:, None]
    kp0, kp1 = _noisy_keypoints((j0, j1), rng, gen, noise_max_mm)
    m0, m1 = _missing_mask(batch, rng), _missing_mask(batch, rng)
    init = _init_poses(r0, rest, kp0, m0, rng, gen)
    _, fk0 = fk(init, rest)
    return dict(
        kp_init=kp0,
        kp_tgt=kp1,
        mask_init=m0,
        mask_tgt=m1,
        rot_init=init,
        fk_init=fk0,
        betas=betas,
        rest=rest,
        rest_betas=rest_b,
        rot_tgt=r1,
        joints_tgt=j1 - p1[:, None] + rest[:, :1],
        s=torch.as_tensor(s),
    )


def _random_bodies(model: BodyModel, batch: int, rng: np.random.Generator):
    """Random betas (10% the mean body), their rest joints, the same with random bone lengths
    (``_bone_scale``), and each body's size against the template's (its left thigh)."""
    betas = torch.as_tensor(rng.normal(0, 1.0, (batch, 10)).clip(-3, 3), dtype=torch.float32)
    betas[rng.random(batch) < MEAN_BODY_P] = 0
    rest_b = model.rest_joints(betas)
    rest = scaled_rest(rest_b, torch.as_tensor(_bone_scale(batch, rng), dtype=torch.float32))
    tmpl = model.rest_joints(torch.zeros(10))[0]
    size = ((rest[:, 4] - rest[:, 1]).norm(dim=-1) / (tmpl[4] - tmpl[1]).norm())[:, None]
    return betas, rest_b, rest, size


def _turned(ms: MotionSet, frames, size, rng: np.random.Generator):
    """(rotmats, pelvis) of each frame index array in ``frames``, all turned by one random yaw
    per batch row about Y, the pelvis path scaled to the body's size."""
    batch = len(frames[0])
    yaw = torch.as_tensor(rng.uniform(-np.pi, np.pi, batch), dtype=torch.float32)
    rz = axis_angle_to_matrix(torch.stack([torch.zeros_like(yaw), yaw, torch.zeros_like(yaw)], -1))
    out = []
    for i in frames:
        r = ms.rotmats[i].clone()
        r[:, 0] = rz @ r[:, 0]
        out.append((r, (rz @ (ms.pelvis[i] * size)[..., None])[..., 0]))
    return out


def _noisy_keypoints(joints, rng: np.random.Generator, gen: torch.Generator, noise_max_mm):
    """The joints with Gaussian noise, one sigma per batch row: none (40%), 0-10 mm (35%) or
    10 mm to ``noise_max_mm`` (25%)."""
    batch = joints[0].shape[0]
    u = rng.random(batch)
    small = rng.uniform(0, NOISE_SMALL_MM, batch)
    large = rng.uniform(NOISE_SMALL_MM, max(noise_max_mm, NOISE_SMALL_MM), batch)
    none_below, small_below = NOISE_CUMULATIVE_P
    sig = np.where(u < none_below, 0.0, np.where(u < small_below, small, large))
    sig = sig * (noise_max_mm > 0)
    sig_m = torch.as_tensor(sig / 1000.0, dtype=torch.float32)[:, None, None]
    return tuple(j + torch.randn(j.shape, generator=gen) * sig_m for j in joints)


def _missing_mask(batch: int, rng: np.random.Generator) -> torch.Tensor:
    """(B, 24) keypoint mask: ``DROP_P`` of the joints dropped in ``DROP_ROWS_P`` of the rows,
    never the ``ESSENTIAL`` ones."""
    m = (rng.random((batch, 24)) > DROP_P) | (rng.random((batch, 1)) > DROP_ROWS_P)
    m[:, list(ESSENTIAL)] = True
    return torch.as_tensor(m, dtype=torch.float32)


def _init_poses(r0, rest, kp0, m0, rng: np.random.Generator, gen: torch.Generator):
    """Init poses: ground truth (30%), drifted twist and swing (40%), or the swing-only re-aim of
    the init keypoints with no twist, like the analytic solver's output (30%)."""
    batch = r0.shape[0]
    mode = rng.choice(3, size=batch, p=INIT_MODE_P)
    init = r0.clone()
    drift = mode == 1
    if drift.any():
        k = torch.as_tensor(np.nonzero(drift)[0])
        tw_std = torch.as_tensor(rng.uniform(0, DRIFT_TWIST_MAX, len(k)), dtype=torch.float32)
        d = twist_noise(r0[k], rest[k], tw_std, gen)
        sw = torch.randn(len(k), 24, 3, generator=gen) * torch.as_tensor(
            rng.uniform(0, DRIFT_SWING_MAX, (len(k), 1, 1)), dtype=torch.float32
        )
        init[k] = d @ axis_angle_to_matrix(sw)
    swing_only = mode == 2
    if swing_only.any():
        k = torch.as_tensor(np.nonzero(swing_only)[0])
        eye = torch.eye(3).expand(len(k), 24, 3, 3)
        init[k], _ = reaim(eye, rest[k], kp0[k], m0[k])
    return init
