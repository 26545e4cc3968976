"""SMPLify-3D-style fitting of SMPL to layout keypoints by L-BFGS.

Energy (per frame, averaged over the frames optimised together):

    E = data   * sum_k w_k rho(|kp_k(theta, beta, t) - y_k|)     robust keypoint term
      + prior  * GMM_NLL(theta_body)                              max-mixture pose prior
      + bend   * sum exp(s_i theta_i)                             elbows/knees hyper-extension
      + shape  * |beta|^2                                         (only when betas are free)
      + smooth * sum_j |J_{t+1} - 2 J_t + J_{t-1}|^2 / sigma^2     (batch mode) joint accelerations

with the Geman-McClure penalty rho(r) = r^2 / (r^2 + sigma^2): about (r / sigma)^2 for small
residuals, at most 1 for outliers. Keypoints are the layout's regressor applied to the
posed joints and landmark vertices (``Layout.regressor``), exactly what ``layout.generate``
produces.

Parameters: the 23 body joints as axis-angle, the root as an axis-angle *increment* on its
initial rotation (R_root = exp(delta) R_init), translation, optionally one shared betas.
Axis-angle is the space the GMM prior and the bend prior are defined in (no conversion in
the loop), has the minimal 3 numbers per joint that suits L-BFGS's curvature model, and
body joints stay well inside |theta| < pi where it is smooth; the root, the one rotation
that can be anywhere, is an increment from a nearby start so it never nears that limit.

Modes:
- ``sequential`` (the baseline, configured like keypoints2body): frame 0 gets
  ``iters_first`` L-BFGS iterations from its start, every later frame ``iters``
  iterations warm-started from the previous frame's result, one frame at a time.
- ``batch`` (the refiner): all frames (in chunks of ``chunk``) optimised jointly for
  ``iters`` iterations from an initial solution, with the temporal term; each chunk sees
  the last two refined frames of the chunk before it, so the smoothness runs across
  chunk borders.

Without an initial solution frames start at the rest pose with the root rotation and
translation from a Kabsch fit of the rest torso keypoints to the observed ones.
One L-BFGS "iteration" is one of torch's (``max_iter``), with a strong-Wolfe line search.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from .analytic_ik import TORSO
from .body_model import BodyModel
from .errors import InputError
from .layouts import Layout
from .metrics import per_frame_error
from .model.forward import pose_correctives
from .model.rotations import axis_angle_to_matrix, kabsch, matrix_to_axis_angle
from .model.skeleton import NUM_JOINTS, SMPL_ANCESTORS
from .model.skinning import linear_blend_skinning
from .progress import begin as begin_progress
from .progress import step as step_progress

# (joint, axis-angle component, sign): exp(sign * theta) grows as the joint hyper-extends.
# Knees flex about +x; the left elbow flexes towards -y, the right towards +y (T-pose).
BEND_TERMS = ((4, 0, -1.0), (5, 0, -1.0), (18, 1, 1.0), (19, 1, -1.0))
# Preconditioner floor: a joint that moves no keypoint is scaled as if a keypoint sat 5 cm
# from it (keeps its step size finite; a hand-set length).
LEVER_FLOOR_M = 0.05
# L-BFGS settings (torch.optim.LBFGS): curvature pairs kept, and stopping tolerances far
# below the energies' float32 resolution so the iteration budget is what ends a run.
LBFGS_HISTORY = 20
LBFGS_TOLERANCE_GRAD = 1e-9
LBFGS_TOLERANCE_CHANGE = 1e-12
# Batch mode: refined frames of the previous chunk that the temporal term sees (the
# second difference needs two).
BATCH_CONTEXT_FRAMES = 2


@dataclass
class FitWeights:
    data: float = 1.0
    sigma: float = 0.1  # Geman-McClure scale (m)
    pose_prior: float = 5e-4
    bend: float = 1e-3
    shape: float = 1e-2
    smooth: float = 0.1  # batch mode only; per squared (m/frame^2) / sigma^2


@dataclass
class FitResult:
    rotmats: torch.Tensor  # (T, 24, 3, 3)
    trans: torch.Tensor  # (T, 3)
    betas: torch.Tensor  # (num_betas,)
    per_frame_error_mm: np.ndarray  # (T,) mean distance to the weighted keypoints
    seconds: float


class _Forward:
    """Layout keypoints (and joints) from SMPL parameters, batched, reusing one FK pass."""

    def __init__(self, model: BodyModel, layout: Layout):
        self.model = model
        w, lm = layout.regressor(model)
        self.w = w
        self.lm_ids = torch.as_tensor(
            [model.data.landmarks[n] for n in lm], dtype=torch.long, device=model.device
        )
        self.has_lm = len(lm) > 0
        if self.has_lm:
            self.lm_weights = model.weights[self.lm_ids]
        # the joint each keypoint hangs from: its heaviest joint term, or for a landmark the
        # joint that skins it most (used for the lever arms of the preconditioner)
        mass = w[:, :NUM_JOINTS].clone()
        if self.has_lm:
            mass = mass + w[:, NUM_JOINTS:] @ self.lm_weights
        self.attach = mass.argmax(-1)
        self.defined = w.abs().sum(-1) > 0

    def lever_arms(self, betas, weight) -> torch.Tensor:
        """(24,) sum over keypoints moved by each joint's rotation of weight * |rest offset|^2.

        Rotating joint j by a small angle moves keypoint k by about |x_k - J_j| times the
        angle, so this is the data term's curvature along joint j's rotation (up to a
        constant): the diagonal of the Gauss-Newton matrix in the rest pose.
        """
        m = self.model
        rest_j = m.rest_joints(betas)[0]
        pts = rest_j
        if self.has_lm:
            pts = torch.cat([pts, m.rest_vertices(betas, self.lm_ids)[0]], 0)
        x = self.w @ pts  # (K, 3) rest keypoints
        wk = weight.mean(0) * self.defined.to(weight.dtype)  # (K,)
        anc = torch.zeros(
            NUM_JOINTS, NUM_JOINTS, dtype=torch.bool, device=x.device
        )  # anc[k, j]: j is k or above it
        for j, chain in enumerate(SMPL_ANCESTORS):
            anc[j, list(chain)] = True
        moved = anc[self.attach].to(x.dtype)  # (K, 24): keypoint k moves with joint j
        d2 = ((x[:, None] - rest_j[None]) ** 2).sum(-1)  # (K, 24)
        return (wk[:, None] * moved * d2).sum(0)

    def __call__(self, rotmats, betas, trans):
        m = self.model
        rest_j = m.rest_joints(betas).expand(rotmats.shape[0], -1, -1)
        g_rot, g_pos = m.global_transforms(rotmats, rest_j)
        pts = g_pos
        if self.has_lm:
            v = m.rest_vertices(betas, self.lm_ids).expand(rotmats.shape[0], -1, -1)
            if m.posedirs is not None:
                v = v + pose_correctives(m.posedirs[self.lm_ids], rotmats)
            pts = torch.cat(
                [pts, linear_blend_skinning(v, self.lm_weights, g_rot, g_pos, rest_j)], 1
            )
        kp = torch.einsum("kp,npc->nkc", self.w, pts) + trans[:, None]
        return kp, g_pos + trans[:, None]


def _as_tensor(x, model: BodyModel) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x, dtype=model.dtype).to(
        model.device
    )


def kabsch_init(
    model: BodyModel,
    layout: Layout,
    targets: torch.Tensor,
    weight: torch.Tensor,
    betas: torch.Tensor,
):
    """Rest pose whose root rotation and translation best fit the torso keypoints, per frame.

    Uses the keypoints made of torso joints only (hips, spine, neck, collars, shoulders, or
    means of them such as a mid-hip); falls back to every joint keypoint when a frame has
    fewer than 3 torso keypoints. Returns rotmats (T, 24, 3, 3) and trans (T, 3).
    """
    w_full, _ = layout.regressor(model)
    wj = w_full[:, :NUM_JOINTS]
    joint_only = (w_full[:, NUM_JOINTS:].abs().sum(-1) == 0) & (wj.abs().sum(-1) > 0)
    torso_mask = torch.zeros(NUM_JOINTS, dtype=torch.bool, device=model.device)
    torso_mask[list(TORSO)] = True
    torso = joint_only & ((wj != 0) & ~torso_mask).sum(-1).eq(0)
    rest = model.rest_joints(betas)[0]
    src = wj @ rest - rest[0]  # (K, 3) rest keypoints relative to the root
    n = targets.shape[0]
    w = weight * torso.to(weight.dtype)
    few = (w > 0).sum(-1) < 3
    w = torch.where(few[:, None], weight * joint_only.to(weight.dtype), w)
    wn = w / w.sum(-1, keepdim=True).clamp_min(1e-12)
    c_src = (wn[..., None] * src).sum(1)  # (T, 3)
    c_dst = (wn[..., None] * targets).sum(1)
    r = kabsch((src - c_src[:, None]), targets - c_dst[:, None], wn)
    r = torch.where(
        ((w > 0).sum(-1) < 3)[:, None, None], torch.eye(3, dtype=r.dtype, device=r.device), r
    )
    trans = c_dst - (r @ c_src[..., None])[..., 0] - rest[0]
    rotmats = torch.eye(3, dtype=model.dtype, device=model.device).repeat(n, NUM_JOINTS, 1, 1)
    rotmats[:, 0] = r
    return rotmats, trans


class _Problem:
    """Parameters and energy for a block of frames."""

    def __init__(
        self,
        fwd: _Forward,
        prior,
        weights: FitWeights,
        targets,
        weight,
        rot_init,
        trans_init,
        betas,
        optimize_betas: bool,
        smooth: bool,
        context=None,
    ):
        self.fwd, self.prior, self.wts = fwd, prior, weights
        self.targets, self.weight = targets, weight
        self.root_init = rot_init[:, 0].detach()
        # Diagonal preconditioning: each rotation is optimised in units scaled by its lever
        # arm (and translation by the keypoint count), so one unit of any variable moves the
        # keypoints about sigma. The raw problem is badly scaled (the root swings the whole
        # body, a wrist only the hand), which leaves L-BFGS's first iterations, before its
        # curvature memory fills, crawling along the stiff directions.
        lever = fwd.lever_arms(betas.reshape(1, -1), weight)
        floor = LEVER_FLOOR_M**2 * max(
            float(weight.mean(0).sum()), 1.0
        )  # joints that move no keypoint
        scale = weights.sigma / torch.sqrt(lever + floor)
        self.s_root = scale[0]
        self.s_body = scale[1:, None]
        self.s_trans = weights.sigma / max(float(weight.mean(0).sum()), 1.0) ** 0.5
        self.delta = torch.zeros(
            rot_init.shape[0], 3, dtype=targets.dtype, device=targets.device, requires_grad=True
        )
        body = matrix_to_axis_angle(rot_init[:, 1:]).detach()
        self.body_u = (body / self.s_body).requires_grad_(True)
        self.trans_u = (trans_init.detach() / self.s_trans).requires_grad_(True)
        self.betas = betas.detach().clone().reshape(1, -1).requires_grad_(optimize_betas)
        self.optimize_betas = optimize_betas
        self.smooth = smooth and weights.smooth > 0
        self.context = context  # (c, 24, 3) fixed joints just before this block, or None
        self.bend_idx = torch.tensor(
            [(j - 1) * 3 + c for j, c, _ in BEND_TERMS], device=targets.device
        )
        self.bend_sign = torch.tensor(
            [s for _, _, s in BEND_TERMS], dtype=targets.dtype, device=targets.device
        )

    def params(self):
        return [self.delta, self.body_u, self.trans_u] + (
            [self.betas] if self.optimize_betas else []
        )

    @property
    def body(self):
        return self.body_u * self.s_body

    @property
    def trans(self):
        return self.trans_u * self.s_trans

    def rotmats(self):
        root = axis_angle_to_matrix(self.delta * self.s_root) @ self.root_init
        return torch.cat([root[:, None], axis_angle_to_matrix(self.body)], 1)

    def energy(self):
        w = self.wts
        body = self.body
        n = body.shape[0]
        kp, joints = self.fwd(self.rotmats(), self.betas, self.trans)
        r2 = ((kp - self.targets) ** 2).sum(-1)
        e = w.data * (self.weight * r2 / (r2 + w.sigma**2)).sum()
        body = body.reshape(n, 69)
        if self.prior is not None and w.pose_prior > 0:
            e = e + w.pose_prior * self.prior(body).sum()
        if w.bend > 0:
            e = e + w.bend * torch.exp(body[:, self.bend_idx] * self.bend_sign).sum()
        if self.optimize_betas and w.shape > 0:
            e = e + w.shape * n * (self.betas**2).sum()
        if self.smooth:
            j = joints if self.context is None else torch.cat([self.context, joints], 0)
            if j.shape[0] >= 3:
                acc = j[2:] - 2 * j[1:-1] + j[:-2]
                e = e + w.smooth * (acc**2).sum() / w.sigma**2
        return e / n

    def run(self, iters: int):
        if iters <= 0:
            return
        opt = torch.optim.LBFGS(
            self.params(),
            lr=1.0,
            max_iter=iters,
            line_search_fn="strong_wolfe",
            tolerance_grad=LBFGS_TOLERANCE_GRAD,
            tolerance_change=LBFGS_TOLERANCE_CHANGE,
            history_size=LBFGS_HISTORY,
        )

        def closure():
            opt.zero_grad()
            e = self.energy()
            e.backward()
            return e

        opt.step(closure)

    @torch.no_grad()
    def result(self):
        return self.rotmats(), self.trans.detach().clone(), self.betas.detach()[0].clone()


def _fit_inputs(model: BodyModel, layout: Layout, targets, weight):
    """Targets (T, K, 3) and weights (T, K) as tensors; missing, non-finite or unsupported
    keypoints get weight 0 (and a finite placeholder position)."""
    y = _as_tensor(targets, model)
    if y.ndim != 3 or y.shape[1] != layout.num_keypoints or y.shape[2] != 3:
        raise InputError(
            f"targets must be (frames, {layout.num_keypoints}, 3) for layout '{layout.name}', "
            f"got {tuple(y.shape)}."
        )
    if y.shape[0] == 0:
        raise InputError("No frames to fit: the keypoint sequence is empty.")
    w = _as_tensor(weight, model).reshape(y.shape[:2]).clamp_min(0)
    supported = torch.as_tensor(layout.supported(model), device=model.device)
    w = torch.where(torch.isfinite(y).all(-1) & supported[None], w, torch.zeros_like(w))
    return torch.nan_to_num(y, nan=0.0, posinf=0.0, neginf=0.0), w


def _initial_solution(model, layout, y, w, b, init_rotmats, init_trans):
    """rotmats (T, 24, 3, 3) and trans (T, 3) to start from: the given ones, else the rest
    pose placed by ``kabsch_init``."""
    n = y.shape[0]
    if init_rotmats is None:
        r0, t0 = kabsch_init(model, layout, y, w, b)
    else:
        r0 = _as_tensor(init_rotmats, model).reshape(n, NUM_JOINTS, 3, 3)
        t0 = None if init_trans is not None else kabsch_init(model, layout, y, w, b)[1]
    if init_trans is not None:
        t0 = _as_tensor(init_trans, model).reshape(n, 3)
    return r0, t0


def _fit_sequential(fwd, prior, weights, y, w, r0, t0, b, optimize_betas, iters_first, iters):
    """Frame by frame, each warm-started from the previous result (frame 0 from ``r0[0]``)."""
    rot_out, trans_out = [], []
    rot_prev, trans_prev = r0[:1], t0[:1]
    begin_progress("optimisation", y.shape[0])
    for f in range(y.shape[0]):
        prob = _Problem(
            fwd,
            prior,
            weights,
            y[f : f + 1],
            w[f : f + 1],
            rot_prev,
            trans_prev,
            b,
            optimize_betas and f == 0,
            smooth=False,
        )
        prob.run(iters_first if f == 0 else iters)
        rot_prev, trans_prev, b_new = prob.result()
        b = b_new[None]
        rot_out.append(rot_prev)
        trans_out.append(trans_prev)
        step_progress(1)
    return torch.cat(rot_out), torch.cat(trans_out), b


def _fit_batch(fwd, prior, weights, y, w, r0, t0, b, optimize_betas, iters, chunk):
    """Chunks of frames optimised jointly with the temporal term; each chunk sees the last
    two refined frames of the one before (``BATCH_CONTEXT_FRAMES``)."""
    rot_out, trans_out = [], []
    context = None
    begin_progress("optimisation", y.shape[0])
    for s in range(0, y.shape[0], chunk):
        e = min(y.shape[0], s + chunk)
        prob = _Problem(
            fwd,
            prior,
            weights,
            y[s:e],
            w[s:e],
            r0[s:e],
            t0[s:e],
            b,
            optimize_betas,
            smooth=True,
            context=context,
        )
        prob.run(iters)
        rot, tr, b_new = prob.result()
        b = b_new[None]
        rot_out.append(rot)
        trans_out.append(tr)
        step_progress(e - s)
        with torch.no_grad():
            context = fwd(rot[-BATCH_CONTEXT_FRAMES:], b, tr[-BATCH_CONTEXT_FRAMES:])[1]
    return torch.cat(rot_out), torch.cat(trans_out), b


def optimize_fit(
    model: BodyModel,
    layout: Layout,
    targets,
    weight,
    betas,
    init_rotmats=None,
    init_trans=None,
    *,
    mode: str = "sequential",
    iters_first: int = 30,
    iters: int = 10,
    prior=None,
    weights: FitWeights | None = None,
    optimize_betas: bool = False,
    chunk: int = 256,
) -> FitResult:
    """Fit SMPL to layout keypoints ``targets`` (T, K, 3) metres with weights (T, K) (0 = missing).

    ``prior`` is a ``GMMPrior`` (e.g. ``pose_prior.load_default_prior(device)``) or None for
    no pose-prior term. ``betas`` (num_betas,) is one shape for the clip; with
    ``optimize_betas`` it is refined (on frame 0 in sequential mode, jointly in batch mode).
    An initial solution (``init_rotmats`` (T, 24, 3, 3), ``init_trans`` (T, 3)) is what batch
    mode starts from; sequential mode uses only its frame 0. See the module docstring for
    the energy and the two modes.
    """
    if mode not in ("sequential", "batch"):
        raise InputError(f"Unknown optimisation mode '{mode}'; use 'sequential' or 'batch'.")
    weights = weights or FitWeights()
    start = time.perf_counter()
    y, w = _fit_inputs(model, layout, targets, weight)
    b = model.betas_tensor(betas)[:1].detach()
    if prior is not None:
        prior = prior.to(device=model.device, dtype=model.dtype)
    r0, t0 = _initial_solution(model, layout, y, w, b, init_rotmats, init_trans)
    fwd = _Forward(model, layout)
    with torch.enable_grad():
        if mode == "sequential":
            rotmats, trans, b = _fit_sequential(
                fwd, prior, weights, y, w, r0, t0, b, optimize_betas, iters_first, iters
            )
        else:
            rotmats, trans, b = _fit_batch(
                fwd, prior, weights, y, w, r0, t0, b, optimize_betas, iters, chunk
            )
    with torch.no_grad():
        kp, _ = fwd(rotmats, b, trans)
    err = per_frame_error(kp, y, w)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    return FitResult(
        rotmats=rotmats,
        trans=trans,
        betas=b[0],
        per_frame_error_mm=err,
        seconds=time.perf_counter() - start,
    )
