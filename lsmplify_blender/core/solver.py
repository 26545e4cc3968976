"""The solve pipeline: prepared keypoints -> betas -> pose for every frame -> optional refinement.

Solvers:
- ``analytic``: shape inverse + analytic IK (SMPL-IKS style, no learning, exact on model joints);
- ``optimize``: the SMPLify-3D-style baseline (L-BFGS frame by frame, keypoints2body settings);
- ``network``: shape inverse + analytic IK anchors, then the residual network (Learnable
  SMPLify) frame to frame, which recovers the twist joints cannot show; layouts that give
  fewer than NETWORK_MIN_JOINTS SMPL joints fall back to ``analytic`` with a notice.
``refine`` > 0 adds that many iterations of batched optimisation after any solver.
``smooth`` ('auto' by default) first estimates the keypoint noise from how much the limb bones
change length and, when it is above 2 mm, smooths the keypoints over time by the amount that
minimises the joint error for that noise; the fit error is still measured against the input.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .analytic_ik import solve_analytic
from .body_model import BodyModel
from .device import cpu_threads
from .errors import InputError, LSMPLifyError
from .prepare import PreparedKeypoints, denoise
from .rotations import matrix_to_axis_angle
from .shape_inverse import fit_betas_auto, observed_lengths

SOLVERS = ("network", "analytic", "optimize")
# fewer measured SMPL joints than this and the network is not used (analytic IK instead). Every
# layout we know gives at least 12 and the network lowers MPVE on all of them (NETWORK.md).
NETWORK_MIN_JOINTS = 10
# frames per sequential chunk; 1 = every frame analytic + one plug-in pass (see NETWORK.md:
# as accurate as chunks of 4 on the dev-test clips, and the fastest)
NETWORK_CHUNK = 1


@dataclass
class Solution:
    rotmats: torch.Tensor  # (T, 24, 3, 3)
    trans: torch.Tensor  # (T, 3)
    betas: torch.Tensor  # (num_betas,)
    fit_error_mm: np.ndarray  # (T,) mean distance to the measured keypoints
    mpbe_mm: float
    solver: str
    device: str
    seconds: float
    notes: list[str] = field(default_factory=list)
    noise_mm: float = float("nan")  # estimated keypoint noise (per-axis std)
    smooth_s: float = 0.0  # Gaussian sigma (s) the keypoints were smoothed with before solving

    @property
    def poses(self) -> np.ndarray:
        """(T, 72) axis-angle, SMPL/AMASS order."""
        return matrix_to_axis_angle(self.rotmats).reshape(-1, 72).cpu().numpy()


def fit_error_mm(model: BodyModel, prepared: PreparedKeypoints, rotmats, betas, trans) -> np.ndarray:
    """Per-frame mean distance (mm) between the layout keypoints of a solution and the measured input."""
    block = 8192  # the FK of a long take at once would hold (T, 24, 4, 4) float64 transforms
    gen = np.concatenate([prepared.layout.generate(model, rotmats[s:s + block], betas, trans[s:s + block]).cpu().numpy()
                          for s in range(0, max(rotmats.shape[0], 1), block)])
    w = prepared.measured & np.isfinite(gen).all(-1)
    d = np.linalg.norm(np.nan_to_num(gen) - prepared.positions, axis=-1)
    counts = w.sum(-1)
    return np.where(counts > 0, (d * w).sum(-1) / np.maximum(counts, 1), np.nan) * 1000.0


def solve(prepared: PreparedKeypoints, model: BodyModel, solver: str = "analytic", refine: int = 0,
          betas=None, chunk: int = 4096, smooth="auto", network_chunk: int | None = None) -> Solution:
    """``chunk``: frames per analytic block (bounds memory); ``network_chunk``: frames per
    sequential network chunk (default NETWORK_CHUNK)."""
    with cpu_threads(model.device):
        return _solve(prepared, model, solver, refine, betas, chunk, smooth, network_chunk)


def _denoise(prepared, smooth, notes: list[str]):
    """``denoise`` with a note when it smoothed; returns (keypoints, noise mm, sigma s)."""
    out, noise_mm, smooth_s = denoise(prepared, smooth)
    if smooth_s > 0:
        notes.append(f"keypoint noise estimated at {noise_mm:.1f} mm (limb length changes): smoothed over "
                     f"time with a Gaussian of {smooth_s:.3f} s" + (" (auto)" if smooth == "auto" else ""))
    return out, noise_mm, smooth_s


def _network_blocker(weight) -> str | None:
    """Why the network cannot run on these keypoints, or None when it can."""
    from .network import CHECKPOINT_PATH

    if not CHECKPOINT_PATH.is_file():
        return "no network checkpoint is installed"
    measured = int(((weight >= 0.9).any(0)).sum())
    if measured < NETWORK_MIN_JOINTS:
        return f"the network needs at least {NETWORK_MIN_JOINTS} of the 24 SMPL joints and this layout gives {measured}"
    return None


def _solve(prepared, model, solver, refine, betas, chunk, smooth="auto", network_chunk=None) -> Solution:
    if solver not in SOLVERS:
        raise LSMPLifyError(f"Unknown solver '{solver}'; use one of {', '.join(SOLVERS)}.")
    notes: list[str] = []
    start = time.perf_counter()
    given = prepared
    prepared, noise_mm, smooth_s = _denoise(prepared, smooth, notes)
    targets, weight = prepared.smpl_targets()
    lengths, stderr = observed_lengths(targets, weight)
    if betas is None:
        shape = fit_betas_auto(model, lengths, stderr)
        betas, mpbe = shape.betas, shape.mpbe_mm
    else:
        betas = torch.as_tensor(betas, dtype=model.dtype)
        fitted = model.bone_lengths(betas)[0].cpu().numpy()
        bones = lengths[: fitted.shape[0]]
        ok = np.isfinite(bones)
        mpbe = float(np.mean(np.abs(fitted[ok] - bones[ok])) * 1000) if ok.any() else float("nan")
    betas = betas.to(model.device)

    if solver == "network":
        from .network import solve_network

        blocker = _network_blocker(weight)
        if blocker:
            notes.append(f"{blocker}: used the analytic solver")
            solver = "analytic"
        else:
            n_chunk = NETWORK_CHUNK if network_chunk is None else int(network_chunk)
            if n_chunk < 1:
                raise LSMPLifyError(f"The network chunk must be at least 1 frame, not {n_chunk}.")
            rotmats, trans_t, info = solve_network(prepared, model, betas, chunk=n_chunk, threads=None)
            if n_chunk == 1:
                notes.append("network: every frame from analytic IK + one plug-in pass")
            else:
                notes.append(f"network: sequential in chunks of {n_chunk} frames, {info.anchors} chunk anchors, "
                             f"{info.reanchored} frame(s) re-anchored by the drift guard")

    if solver == "analytic":
        lm_names, lm_t, lm_w = prepared.landmark_targets()
        t = prepared.num_frames
        rotmats = torch.empty(t, 24, 3, 3, dtype=model.dtype, device=model.device)
        trans_t = torch.empty(t, 3, dtype=model.dtype, device=model.device)
        for s in range(0, t, chunk):  # chunks bound memory on very long takes
            e = s + chunk
            res = solve_analytic(model, betas, targets[s:e], weight[s:e], lm_names, lm_t[s:e], lm_w[s:e])
            rotmats[s:e], trans_t[s:e] = res.rotmats, res.trans
    elif solver == "optimize":
        from .optimize import optimize_fit
        from .pose_prior import load_default_prior

        fit = optimize_fit(model, prepared.layout, prepared.positions, prepared.weight, betas,
                           mode="sequential", prior=load_default_prior(model.device))
        rotmats, trans_t = fit.rotmats, fit.trans

    if refine > 0:
        from .optimize import optimize_fit
        from .pose_prior import load_default_prior

        fit = optimize_fit(model, prepared.layout, prepared.positions, prepared.weight, betas,
                           init_rotmats=rotmats, init_trans=trans_t, mode="batch", iters=refine,
                           prior=load_default_prior(model.device))
        rotmats, trans_t = fit.rotmats, fit.trans
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    err = fit_error_mm(model, given, rotmats, betas, trans_t)
    return Solution(rotmats=rotmats, trans=trans_t, betas=betas, fit_error_mm=err, mpbe_mm=mpbe,
                    solver=solver, device=str(model.device), seconds=seconds, notes=notes,
                    noise_mm=noise_mm, smooth_s=smooth_s)


def refine_existing(prepared: PreparedKeypoints, model: BodyModel, rotmats, betas, trans=None, passes: int = 2,
                    refine: int = 0, smooth="auto") -> Solution:
    """Plug-in mode: improve SMPL parameters that already exist for these frames (an image-based
    estimator's output, an animation on a rig) against the keypoints. ``passes`` network passes
    (init = the given pose, target = the keypoints; each re-aims the bones at the keypoints and
    predicts their twist), then ``refine`` iterations of batched optimisation. The shape stays
    the given one. Layouts the network cannot use (fewer than NETWORK_MIN_JOINTS SMPL joints)
    get the optimisation only (10 iterations when ``refine`` is 0), with a note."""
    t = prepared.num_frames
    rot = torch.as_tensor(np.asarray(rotmats), dtype=model.dtype, device=model.device)
    if rot.shape != (t, 24, 3, 3):
        raise InputError(f"The existing motion has {rot.shape[0] if rot.ndim else 0} frames of "
                         f"{tuple(rot.shape[1:])} rotations; the keypoints have {t} frames and SMPL needs "
                         f"(24, 3, 3). Give the same frame range for both.")
    if passes < 0 or refine < 0:
        raise InputError("passes and refine must be 0 or more.")
    if passes == 0 and refine == 0:
        raise InputError("Nothing to refine with: give network passes or optimisation iterations (or both).")
    b = torch.as_tensor(np.asarray(betas, dtype=np.float64)[: model.num_betas], dtype=model.dtype, device=model.device)
    if trans is None:
        tr = torch.zeros(t, 3, dtype=model.dtype, device=model.device)
    else:
        tr = torch.as_tensor(np.asarray(trans), dtype=model.dtype, device=model.device).reshape(t, 3)
    notes: list[str] = []
    with cpu_threads(model.device):
        start = time.perf_counter()
        given = prepared
        prepared, noise_mm, smooth_s = _denoise(prepared, smooth, notes)
        targets, weight = prepared.smpl_targets()
        if passes > 0:
            from .network import refine_network

            blocker = _network_blocker(weight)
            if blocker:
                refine = refine or 10
                notes.append(f"{blocker}: refined by {refine} iterations of optimisation instead")
            else:
                r32, t32 = refine_network(model, b, rot, targets, weight, passes=passes)
                root_seen = torch.as_tensor(weight[:, 0] > 0, device=model.device)[:, None]
                rot = r32.to(model.dtype)
                tr = torch.where(root_seen, t32.to(model.dtype), tr)  # an unseen root keeps its place
                notes.append(f"network plug-in: {passes} pass(es) from the existing motion")
        if refine > 0:
            from .optimize import optimize_fit
            from .pose_prior import load_default_prior

            fit = optimize_fit(model, prepared.layout, prepared.positions, prepared.weight, b, init_rotmats=rot,
                               init_trans=tr, mode="batch", iters=refine, prior=load_default_prior(model.device))
            rot, tr = fit.rotmats, fit.trans
            notes.append(f"optimisation: {refine} iteration(s)")
        seconds = time.perf_counter() - start
    err = fit_error_mm(model, given, rot, b, tr)
    return Solution(rotmats=rot, trans=tr, betas=b, fit_error_mm=err, mpbe_mm=float("nan"), solver="refine",
                    device=str(model.device), seconds=seconds, notes=notes, noise_mm=noise_mm, smooth_s=smooth_s)
