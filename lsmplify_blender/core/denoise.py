"""Denoising keypoint tracks before solving: the noise estimate from limb-length changes and
zero-phase Gaussian smoothing over time (never across a cut).

``denoise(prepared, smooth)`` is what the solver calls: 'auto' estimates the noise and picks the
sigma that minimises the joint error for it (benchmarks/bench_denoise.py), a number forces that
sigma in seconds, 0 turns it off.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from .body_model import SMPL_JOINT_NAMES
from .errors import InputError

if TYPE_CHECKING:  # prepare imports this module
    from .prepare import PreparedKeypoints


def smooth_over_time(prepared: PreparedKeypoints, sigma_seconds: float) -> PreparedKeypoints:
    """Zero-phase Gaussian smoothing of the keypoint tracks over time (no lag: the kernel is
    symmetric). Removes capture jitter before solving; sigma in seconds, so the effect does
    not depend on the frame rate."""
    sigma = float(sigma_seconds) * prepared.fps
    if sigma < 0.3 or prepared.num_frames < 3:
        return prepared
    cuts = motion_cuts(prepared)
    pos = prepared.positions.copy()
    for a, b in zip(
        [0, *cuts], [*cuts, prepared.num_frames], strict=False
    ):  # never smooth across a cut
        pos[a:b] = gaussian_over_time(prepared.positions[a:b], sigma)
    notes = list(prepared.notes) + [
        f"smoothed over time: Gaussian sigma {sigma_seconds:g} s ({sigma:.1f} frames)"
        + (f", in {len(cuts) + 1} pieces split at jumps of the whole body" if cuts else "")
    ]
    return dataclasses.replace(prepared, positions=pos, notes=notes)


def gaussian_over_time(x: np.ndarray, sigma: float, truncate: float = 3.0) -> np.ndarray:
    """Gaussian filter along axis 0 with the ends held (scipy's gaussian_filter1d with
    mode='nearest', which costs a 0.3 s import of scipy.ndimage on the first solve)."""
    radius = int(truncate * sigma + 0.5)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    padded = np.concatenate([np.repeat(x[:1], radius, 0), x, np.repeat(x[-1:], radius, 0)])
    out = np.zeros_like(x, dtype=np.float64)
    for k, wk in enumerate(taps):  # a loop over the few taps, each a whole-array multiply-add
        out += wk * padded[k : k + x.shape[0]]
    return out


MAX_BODY_SPEED = 10.0  # m/s: faster than a sprinter; a body that moves faster has jumped (a cut)


def motion_cuts(prepared: PreparedKeypoints) -> list[int]:
    """Frames where the body's centre jumps faster than MAX_BODY_SPEED (and 10x its median
    step) from the frame before (concatenated takes, an edit, a tracker that switched people):
    smoothing stops there."""
    w = prepared.measured[..., None]
    centre = np.where(w, prepared.positions, 0.0).sum(1) / np.maximum(w.sum(1), 1)
    step = np.linalg.norm(np.diff(centre, axis=0), axis=-1)
    if step.size == 0:
        return []
    # a cut is an isolated jump: when every frame jumps (pure noise), none of them is a cut
    limit = max(MAX_BODY_SPEED / max(prepared.fps, 1e-6), 10.0 * float(np.median(step)))
    return (np.nonzero(step > limit)[0] + 1).tolist()


# limb bones: the most rigid keypoint pairs in every layout (hip-knee, knee-ankle,
# shoulder-elbow, elbow-wrist on both sides)
_LIMBS = [
    (SMPL_JOINT_NAMES.index(f"{s}_{a}"), SMPL_JOINT_NAMES.index(f"{s}_{b}"))
    for s in ("left", "right")
    for a, b in (("hip", "knee"), ("knee", "ankle"), ("shoulder", "elbow"), ("elbow", "wrist"))
]
NOISE_FLOOR_MM = 2.0


def estimate_noise_mm(prepared: PreparedKeypoints) -> float:
    """Keypoint noise (per-axis std, mm) from how much the limb bones change length over time.

    A bone between two keypoints with independent noise sigma per axis changes length with a
    std of sigma * sqrt(2), whatever the motion, so the median over the limbs divided by
    sqrt(2) estimates sigma (20.1 mm for 20 mm of Gaussian noise, benchmarks/bench_denoise.py; 0 on
    exact keypoints). NaN with fewer than 5 measured frames."""
    return noise_from_limb_stats(limb_length_stats(prepared))


def limb_length_stats(prepared: PreparedKeypoints) -> np.ndarray:
    """(len(_LIMBS), 3): per limb bone the count, mean and sum of squared deviations (M2) of its
    length over the frames where both ends are measured. Blocks of a long take combine with
    ``combine_limb_stats`` into the whole take's (Chan et al.'s parallel variance)."""
    targets, _ = prepared.smpl_targets()
    measured = prepared.smpl_measured()
    out = np.zeros((len(_LIMBS), 3))
    for i, (a, b) in enumerate(_LIMBS):
        ok = measured[:, a] & measured[:, b]
        if ok.any():
            length = np.linalg.norm(targets[ok, a] - targets[ok, b], axis=-1)
            mean = float(length.mean())
            out[i] = (length.size, mean, float(((length - mean) ** 2).sum()))
    return out


def combine_limb_stats(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``limb_length_stats`` of two sets of frames -> those of both (Chan, Golub & LeVeque 1979)."""
    n = a[:, 0] + b[:, 0]
    delta = b[:, 1] - a[:, 1]
    safe = np.maximum(n, 1)
    mean = a[:, 1] + delta * b[:, 0] / safe
    m2 = a[:, 2] + b[:, 2] + delta**2 * a[:, 0] * b[:, 0] / safe
    return np.stack([n, mean, m2], axis=1)


def noise_from_limb_stats(stats: np.ndarray) -> float:
    """The noise estimate of ``estimate_noise_mm`` from ``limb_length_stats``."""
    ok = stats[:, 0] >= 5
    if not ok.any():
        return float("nan")
    stds = np.sqrt(stats[ok, 2] / stats[ok, 0])
    return float(np.median(stds) / np.sqrt(2) * 1000)


def auto_smooth_seconds(noise_mm: float, fps: float) -> float:
    """Gaussian sigma (s) that minimises the joint error for this noise level (measured on the
    dev-test clips at 30 fps: 0.03 s at 5 mm, 0.05 s at 10 mm, 0.06 s at 20 mm, 0.07 s at
    30 mm); slightly narrower at higher frame rates, where more samples share a window."""
    if not np.isfinite(noise_mm) or noise_mm < NOISE_FLOOR_MM:
        return 0.0
    return float(min(0.025 + 0.0016 * noise_mm, 0.08) * (30.0 / max(fps, 1.0)) ** 0.2)


def smooth_sigma_seconds(smooth, noise_mm: float, fps: float) -> float:
    """The Gaussian sigma (s) that ``smooth`` ('auto', or seconds; 0 = off) means for keypoints
    with this noise estimate and frame rate."""
    if isinstance(smooth, str):
        if smooth != "auto":
            raise InputError(f"smooth must be 'auto' or a number of seconds, not '{smooth}'.")
        return auto_smooth_seconds(noise_mm, fps)
    sigma = float(smooth)
    if not np.isfinite(sigma) or sigma < 0:
        raise InputError(f"smooth must be 'auto' or a number of seconds >= 0, not {smooth}.")
    return sigma


def denoise(prepared: PreparedKeypoints, smooth="auto") -> tuple[PreparedKeypoints, float, float]:
    """Apply ``smooth`` ('auto', or sigma in seconds; 0 = off). Returns the keypoints, the
    estimated noise (mm) and the sigma used (s)."""
    noise = estimate_noise_mm(prepared)
    sigma = smooth_sigma_seconds(smooth, noise, prepared.fps)
    if sigma <= 0:
        return prepared, noise, 0.0
    return smooth_over_time(prepared, sigma), noise, sigma
