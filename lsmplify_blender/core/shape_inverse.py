"""Shape inverse: SMPL betas from bone lengths (SMPL-IKS "SI", solved exactly).

Bone lengths do not depend on pose, so a whole clip votes on one shape: per bone we take
the median length over the frames where both ends were measured (robust to dropouts and
glitches), average left and right (bodies are near-symmetric; halves the noise), then run
Gauss-Newton on the exact lengths. Rest joints are affine in betas, J(b) = J0 + D b, so

    d|J_c - J_p| / db = unit(J_c - J_p)^T (D_c - D_p),

and a ridge term keeps betas near the population mean when the lengths are noisy or few.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from .body_model import BodyModel
from .model.skeleton import SMPL_BONES, SMPL_MIRROR

BONES = list(SMPL_BONES)  # bone index b = child - 1
# Joints that move rigidly together without being parent and child. Lengths alone leave the
# angles of the pelvis and upper-chest triangles free; these sides pin them down, so the
# analytic solver's multi-child fits (pelvis, spine3) become exact.
RIGID_PAIRS = [(1, 2), (1, 3), (2, 3), (12, 13), (12, 14), (13, 14)]
PAIRS = BONES + RIGID_PAIRS
_MIRROR = SMPL_MIRROR


@dataclass
class ShapeFit:
    betas: torch.Tensor  # (num_betas,)
    observed: np.ndarray  # (23,) observed bone lengths (m), NaN when not measured
    fitted: np.ndarray  # (23,) the model's bone lengths with these betas
    mpbe_mm: float  # mean abs bone-length error over the measured bones
    fitted_all: np.ndarray  # (len(PAIRS),) bones then rigid pairs


def observed_bone_lengths(targets, measured, symmetric: bool = True) -> np.ndarray:
    return observed_lengths(targets, measured, symmetric)[0]


def observed_lengths(targets, measured, symmetric: bool = True):
    """Median lengths (len(PAIRS),) of the 23 bones then the rigid pairs, from SMPL joint
    targets (T, 24, 3), and the standard error of each median (from the spread over frames);
    NaN where never measured.

    Only joints measured in a frame count: ``measured`` (T, 24) bool, from
    ``PreparedKeypoints.smpl_measured(exact=True)``, so gap-filled joints, torso joints
    completed by a fit, and keypoints that only stand near their joint do not vote.
    """
    return median_lengths(pair_lengths(targets, measured), symmetric)


def pair_lengths(targets, measured) -> np.ndarray:
    """(T, len(PAIRS)) length of every bone and rigid pair in every frame; NaN where one of its
    joints is not ``measured`` (T, 24) bool. ``observed_lengths`` summarises them."""
    t = np.asarray(targets, dtype=np.float64)
    w = np.asarray(measured, dtype=bool)
    par = [p for p, _ in PAIRS]
    ch = [c for _, c in PAIRS]
    lengths = np.linalg.norm(t[:, ch] - t[:, par], axis=-1)
    ok = w[:, ch] & w[:, par] & np.isfinite(lengths)
    return np.where(ok, lengths, np.nan)


def median_lengths(lengths: np.ndarray, symmetric: bool = True):
    """(median, its standard error) per pair of ``pair_lengths`` rows (a take's frames, or a
    long take's gathered block by block, ``long_take``)."""
    ok = np.isfinite(lengths)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", RuntimeWarning
        )  # all-NaN columns are expected: unmeasured bones
        med = np.nanmedian(lengths, axis=0)  # all-NaN columns give NaN (unmeasured bones)
        mad = np.nanmedian(np.abs(lengths - med), axis=0)
    # the median's standard error: 1.4826 MAD is a robust sigma; the median costs ~1.25x the mean's
    stderr = 1.25 * 1.4826 * mad / np.sqrt(np.maximum(ok.sum(0), 1))
    if symmetric:
        sym = med.copy()
        index = {pair: i for i, pair in enumerate(PAIRS)}
        for b, (p, c) in enumerate(PAIRS):
            m = index.get((_MIRROR[p], _MIRROR[c]), index.get((_MIRROR[c], _MIRROR[p]), b))
            if m != b and np.isfinite(med[b]) and np.isfinite(med[m]):
                sym[b] = 0.5 * (med[b] + med[m])
        med = sym
    return med, stderr


RIDGE_RANGE = (0.2e-3**2, 15e-3**2)  # (m^2): 0.2 mm to 15 mm of length error per unit beta


MAX_ABS_BETA = 3.5  # beyond ~3.5 standard deviations a PCA body stops looking human


def fit_betas_auto(model: BodyModel, lengths: np.ndarray, stderr: np.ndarray) -> ShapeFit:
    """Betas with the ridge set by the data: the lengths' own standard error first; then, if
    the fit leaves larger residuals (a skeleton that is not the model's, e.g. real mocap), that
    misfit level; and stronger still while any beta leaves the population range, so lengths
    the model cannot explain never buy a monster."""
    ok = np.isfinite(lengths) & np.isfinite(stderr)
    se2 = float(np.mean(stderr[ok] ** 2)) if ok.any() else RIDGE_RANGE[1]
    ridge = float(np.clip(se2, *RIDGE_RANGE))
    fit = fit_betas(model, lengths, ridge=ridge)
    resid2 = float(np.mean((fit.fitted_all[ok] - lengths[ok]) ** 2)) if ok.any() else 0.0
    if resid2 > 2 * ridge:
        ridge = float(np.clip(resid2, *RIDGE_RANGE))
        fit = fit_betas(model, lengths, ridge=ridge)
    while float(fit.betas.abs().max()) > MAX_ABS_BETA and ridge < 1.0:
        ridge *= 2.0
        fit = fit_betas(model, lengths, ridge=ridge)
    return fit


def fit_betas(
    model: BodyModel,
    lengths: np.ndarray,
    ridge: float = 4e-6,
    iterations: int = 15,
    weights: np.ndarray | None = None,
) -> ShapeFit:
    """Betas whose rest skeleton has the given lengths (PAIRS order, or just the 23 bones),
    NaN entries ignored.

    ``ridge`` is the squared length error (m^2) that one unit of beta costs: the default
    trades 2 mm of misfit (what a median over a clip of noisy keypoints still carries)
    against one standard deviation of shape.
    """
    lengths = np.asarray(lengths, dtype=np.float64)
    if lengths.shape[0] < len(PAIRS):
        lengths = np.concatenate([lengths, np.full(len(PAIRS) - lengths.shape[0], np.nan)])
    # numpy, float64: a 10-unknown Gauss-Newton on 29 lengths is a few hundred tiny ops per call,
    # each several times dearer as a torch op (the solve's "shape" stage, benchmarks/profile_solve.py)
    obs = np.nan_to_num(lengths)
    valid = np.isfinite(lengths).astype(np.float64)
    if weights is not None:
        valid = valid * np.asarray(weights, dtype=np.float64)
    j0 = model.rest_joints_template.detach().cpu().double().numpy()
    d = model.joint_shapedirs.detach().cpu().double().numpy()  # (24, 3, nb)
    par = [p for p, _ in PAIRS]
    ch = [c for _, c in PAIRS]
    nb = d.shape[-1]
    b = np.zeros(nb)
    eye = np.eye(nb)
    dd = d[ch] - d[par]
    for _ in range(iterations):
        joints = j0 + d @ b
        e = joints[ch] - joints[par]
        length = np.linalg.norm(e, axis=-1)
        jac = np.einsum("bc,bcn->bn", e / np.maximum(length[:, None], 1e-9), dd)
        r = (length - obs) * valid
        jw = jac * valid[:, None]
        step = np.linalg.solve(jw.T @ jw + ridge * eye, -(jw.T @ r) - ridge * b)
        b = b + step
        if float(np.abs(step).max()) < 1e-6:
            break
    joints = j0 + d @ b
    fitted_all = np.linalg.norm(joints[ch] - joints[par], axis=-1)
    fitted = fitted_all[: len(BONES)]
    lengths = lengths[: len(BONES)]
    m = np.isfinite(lengths)
    mpbe = float(np.mean(np.abs(fitted[m] - lengths[m])) * 1000) if m.any() else float("nan")
    return ShapeFit(
        betas=torch.as_tensor(b, dtype=model.dtype),
        observed=np.asarray(lengths),
        fitted=fitted,
        mpbe_mm=mpbe,
        fitted_all=fitted_all,
    )
