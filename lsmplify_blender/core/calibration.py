"""Per-keypoint calibration: each keypoint is its SMPL joint (or landmark) plus a constant offset in
the frame of the body part that carries it, estimated over the whole take.

A mocap skeleton's joint is not SMPL's joint: CMU's hips are wider, its thorax and neck nodes sit
elsewhere on the spine, its head node is not SMPL's head joint. Aiming SMPL's joints at those points
bends the pose and leaves 40-60 mm of "fit error" that no pose can remove (issue 10). This is the
latent-marker idea of MoSh (Loper, Mahmood, Black: "MoSh: Motion and Shape Capture from Sparse
Markers", SIGGRAPH Asia 2014, sec. 3): a marker is a point rigidly attached to a body part at a
constant, unknown offset, solved for together with the pose over many frames. Applied here to
skeleton joints:

    keypoint_k(t) ~ c_k(t) = P_k(theta_t, beta) + G_part(k)(theta_t) o_k

with P_k the layout's model point (``Layout.generate``), G_part the world rotation of the part
(``keypoint_parts``: a joint rides on its parent's segment, exactly where forward kinematics puts
it; a landmark on the joint that skins it most) and o_k (3,) in that part's frame, metres.

A joint keypoint whose part has one child and whose part's joint is a keypoint too (the thigh from
hip to knee, every limb bone, the neck, a spine segment: ``Geometry.chain_from``) is a bone of the
capture: its offset is the bone's length difference, along the bone (o_k = s_k l_k, l_k SMPL's bone
direction in the part's frame), and it rides on its parent keypoint's calibrated point,

    c_k(t) = c_parent(t) + (P_k - P_parent)(t) + G_part(t) o_k,

so the calibrated skeleton is SMPL's with each captured bone's length and the chains' roots (hips,
upper back, neck base, shoulders) displaced in their parts' frames. A free offset across a bone
would be a constant turn of the bone against the capture: indistinguishable from a pose error, it
turned the segments off the captured bones (eval --real: neck 0 -> 27 deg, upper arms +1-2 deg),
and applied through the previous pose it does not converge when it is as long as the bone (CMU's
head node sits 8 cm down a 9 cm SMPL neck, its thorax 17 cm up a 13 cm spine segment).

Estimation (``calibrated_solve``) alternates, as MoSh does, a pose solve aimed at the calibrated
points and the offsets' linear least squares at fixed pose. A chain root's target is
keypoint - G_part o (the pose of the previous round giving G); a bone's target is SMPL's bone length
along the captured bone from its parent's target (``Geometry.shift``), which needs no pose, and its
length difference is the captured length's mean less SMPL's. The roots' least squares has a closed
form per keypoint (the residuals seen from the part, averaged, less a translation per frame common
to all keypoints: where the body stands is the solve's, not a definition), with
- a ridge toward zero offset (``OFFSET_RIDGE`` frames' worth of a zero residual: a keypoint seen in
  a few frames keeps its definition);
- robustness to outlier frames by iteratively reweighted least squares with Huber weights
  (``HUBER_M``, Huber 1964): a frame where a marker slipped or the pose failed counts linearly, not
  quadratically;
- the rounds on an evenly spread subsample of the frames (``CALIBRATION_FRAMES``: the offsets are
  constants, a hundred frames determine them): the first at analytic IK's pose as captured (one
  pass over every frame, which also gives every frame's parts' rotations), the second at the
  strategy's own pose (any strategy, the file's rotations included); then the solver runs once
  on the calibrated targets, so calibration costs a fraction of a solve.
The betas stay the bone-length fit (``shape_inverse``): the bones' offsets absorb what the ten betas
cannot (CMU's spine and neck nodes, spaced unlike SMPL's joints). The layout's trust tables stay the
priors they were (the weights of the solve).

Aim-only keypoints (bone ends: head top, toe and finger tips) are not calibrated: they give the
leaves a direction, and an offset would turn the leaf away from the captured bone.

``--calibrate auto`` (``wants_calibration``): on for the real-skeleton layouts (``cmu``: BVH, ASF/AMC,
cmu_subset, CMU FBX rigs and Mixamo armatures; ``deepmimic``), whose joints are a lab's or a
character's definitions; off for SMPL-24 keypoints and pose-estimator layouts (COCO, BODY_25,
H3.6M, MediaPipe), which are either the model's own points (offsets ~0: calibration changes
nothing, ``tests/test_calibration.py``) or per-frame detections whose errors are not constant
offsets.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from .errors import InputError
from .layouts import Layout
from .prepare import PreparedKeypoints

if TYPE_CHECKING:  # the solver imports this module; its context type only for the checker
    from .solver import SolveContext

CALIBRATE_MODES = ("auto", "on", "off")
# layouts whose keypoints are a mocap lab's joint definitions (``--calibrate auto`` turns it on)
# (DeepMimic's humanoid: fit 31 -> 4.6 mm on humanoid3d_walk, every segment as close or closer)
SKELETON_LAYOUTS = frozenset({"cmu", "deepmimic"})
# the offsets' estimates: at analytic IK's pose of the subsample as captured, then at the strategy's
# own pose of the subsample aimed at them (``_aimed_context``). Before, two analytic rounds and a
# strategy round (eval --real, default solver, mean calibrated fit per source 9.5 / 5.8 / 11.2 /
# 9.8 / 9.8 mm) added 95 % to the wall time of a 1,000-frame solve (51 % CPU); now 10.1 / 5.8 /
# 12.0 / 10.2 / 10.4 mm, the torso's direction 0.1-0.4 deg closer, at +31-39 % wall, +17-25 % CPU
# (benchmarks/bench_calibration.py --repeats 15, 01_01.bvh)
CALIBRATION_ROUNDS = 2
CALIBRATION_FRAMES = 96  # frames the rounds run on, evenly spread over the take
OFFSET_RIDGE = 2.0  # frames' worth of a zero residual pulling each offset toward 0
HUBER_M = 0.03  # residuals (about the offset) above 3 cm count linearly (IRLS, Huber weights)
IRLS_ITERS = 4
FAR_START = 0.5  # a bone starting further than this share of it from SMPL's joint is re-aimed
MAX_OFFSET_M = 0.30  # an offset longer than this is not a definition difference: not calibrated


@dataclass
class Calibrated:
    """What ``calibrated_solve`` returns: the pose, the offsets and the calibrated context."""

    rotmats: torch.Tensor
    trans: torch.Tensor
    used: str  # the strategy that ran
    rotations: bool  # the file's bone rotations gave the twists
    offsets: np.ndarray | None  # (K, 3) metres in the parts' frames; None when not calibrated
    ctx: SolveContext  # the solver context aimed at (the calibrated one when calibrated)


def wants_calibration(mode: str, layout: Layout) -> bool:
    """Whether ``--calibrate mode`` calibrates keypoints of ``layout`` (auto: skeleton layouts)."""
    if mode not in CALIBRATE_MODES:
        raise InputError(f"calibrate must be one of {', '.join(CALIBRATE_MODES)}, not '{mode}'.")
    return mode == "on" or (mode == "auto" and layout.name in SKELETON_LAYOUTS)


def keypoint_parts(model, layout: Layout) -> np.ndarray:
    """(K,) the SMPL joint whose world rotation carries each keypoint's offset, or -1 (not
    calibrated: no definition, unsupported by the model, aim-only). A joint keypoint rides on its
    parent's segment (forward kinematics places joint j rigidly in its parent's frame); a landmark on
    the joint that skins its vertex most; a mean of points on its first term's part."""
    from .body_model import SMPL_JOINT_NAMES

    index = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}
    supported = layout.supported(model)
    aim_only = layout.aim_only_mask()
    out = np.full(layout.num_keypoints, -1, dtype=np.int64)
    for k, d in enumerate(layout.definitions):
        if d is None or not supported[k] or aim_only[k]:
            continue
        first = d.split("+")[0]
        if first in index:
            out[k] = max(model.parents[index[first]], 0)
        else:
            vid = model.data.landmarks[first[1:]]
            out[k] = int(model.weights[vid].argmax())
    return out


def posed_keypoints(model, layout: Layout, rotmats, betas, trans, fk=None):
    """The layout's model points (T, K, 3) and the parts' world rotations (T, 24, 3, 3) of a
    solution, from one forward-kinematics pass (numpy, float64), or from ``fk`` (world rotations,
    joints with the translation: analytic IK's own) when given. Points that are not positions
    (unsupported, aim-only) are NaN, and their landmarks are not skinned (skinning CMU's end points
    cost more than the rest of the calibration)."""
    rot = torch.as_tensor(rotmats, dtype=model.dtype, device=model.device)
    t = torch.as_tensor(trans, dtype=model.dtype, device=model.device)
    if fk is None:
        g, joints = model.global_transforms(
            rot, model.rest_joints(model.betas_tensor(betas, rot.shape[0]))
        )
        points = joints + t[:, None]
    else:
        g, points = fk
    w, lm = layout.regressor(model)
    wanted = layout.supported(model) & ~layout.aim_only_mask()
    used = [n for i, n in enumerate(lm) if bool((w[torch.as_tensor(wanted), 24 + i] != 0).any())]
    if used:
        lms = torch.zeros(rot.shape[0], len(lm), 3, dtype=points.dtype, device=points.device)
        lms[:, [lm.index(n) for n in used]] = model.landmarks(rot, betas, t, used)
        points = torch.cat([points, lms], 1)
    elif lm:
        points = torch.cat([points, points.new_zeros(rot.shape[0], len(lm), 3)], 1)
    kp = torch.einsum("kp,npc->nkc", w, points).detach().cpu().double().numpy()
    kp[:, ~wanted] = np.nan
    return kp, g.detach().cpu().double().numpy()


def calibrated_points(model, layout: Layout, rotmats, betas, trans, offsets) -> np.ndarray:
    """(T, K, 3) the calibrated keypoints c_k of a solution (the module docstring's model)."""
    kp, g = posed_keypoints(model, layout, rotmats, betas, trans)
    geometry = Geometry.of(model, layout, betas)
    return geometry.points(kp, g, np.asarray(offsets, np.float64))


def _shift(g: np.ndarray, parts: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(T, K, 3) world vectors G_part(k) o_k (0 for keypoints without a part)."""
    ok = parts >= 0
    out = np.zeros(g.shape[:1] + offsets.shape)
    out[:, ok] = np.einsum("tkij,kj->tki", g[:, parts[ok]], offsets[ok])
    return out


def estimate_offsets(
    prepared: PreparedKeypoints, model_points: np.ndarray, g: np.ndarray, parts: np.ndarray
) -> np.ndarray:
    """(K, 3) offsets o_k minimising, over the measured frames,

        sum_t,k w_tk rho(|x_tk - P_tk - G_tk o_k - c_t|) + OFFSET_RIDGE sum_k |o_k|^2

    (rho: Huber, by IRLS) with c_t (3,) a translation per frame common to the keypoints: what is
    common to them is where the body stands, which the solve decides, not a definition (without it
    each round moved the body 1-2 cm further from the capture, the offsets following); a Huber mean,
    so the few keypoints with large definition offsets do not place the body. Block coordinate
    descent: c_t from the offsets, then each o_k in closed form (the residuals seen from its part,
    averaged). 0 for keypoints without a part, never measured, or whose offset would
    exceed MAX_OFFSET_M (not a definition difference)."""
    ok = parts >= 0
    offsets = np.zeros((parts.shape[0], 3))
    if not ok.any():
        return offsets
    resid = prepared.positions[:, ok] - model_points[:, ok]  # (T, K', 3) world
    rot = g[:, parts[ok]]  # (T, K', 3, 3)
    w = (prepared.measured[:, ok] & np.isfinite(resid).all(-1)) * prepared.weight[:, ok]
    resid = np.nan_to_num(resid)
    o = np.zeros((int(ok.sum()), 3))
    h, c = w, np.zeros((resid.shape[0], 3))
    for _ in range(IRLS_ITERS):
        world = np.einsum("tkij,kj->tki", rot, o)  # G o
        # c: the Huber mean of what is left (the few keypoints far from their definitions, CMU's
        # spine and neck nodes 8-19 cm off SMPL's joints, count little until their offsets hold it)
        left = resid - world
        hc = w * np.minimum(
            1.0, HUBER_M / np.maximum(np.linalg.norm(left - c[:, None], axis=-1), 1e-12)
        )
        c = (hc[..., None] * left).sum(1) / np.maximum(hc.sum(1), 1e-12)[:, None]
        local = np.einsum("tkji,tkj->tki", rot, resid - c[:, None])  # G^T (x - P - c)
        o = (h[..., None] * local).sum(0) / (h.sum(0) + OFFSET_RIDGE)[:, None]
        dist = np.linalg.norm(local - o[None], axis=-1)  # Huber weights min(1, m / |r|)
        h = w * np.minimum(1.0, HUBER_M / np.maximum(dist, 1e-12))
    o[np.linalg.norm(o, axis=-1) > MAX_OFFSET_M] = 0.0
    offsets[ok] = o
    return offsets


def _aimed_from(model, definition, at: dict[int, int]) -> int:
    """The keypoint at the joint an aim-only end point ``@landmark`` aims (the joint that skins the
    landmark most, or its nearest ancestor with a keypoint, as ``analytic_ik.attach_landmarks``
    walks up), or -1."""
    if not definition or not definition.startswith("@") or "+" in definition:
        return -1
    vid = model.data.landmarks.get(definition[1:])
    if vid is None:
        return -1
    j = int(model.weights[vid].argmax())
    while j > 0 and j not in at:
        j = int(model.parents[j])
    return at.get(j, -1)


def rest_vectors(model, layout: Layout, betas, parts: np.ndarray) -> np.ndarray:
    """(K, 3) each keypoint's model point in the rest pose seen from its part's joint (0 where no
    part): the lever arm through which a turn of the part moves the point."""
    eye = torch.eye(3, dtype=model.dtype, device=model.device).expand(1, 24, 3, 3)
    zero = torch.zeros(1, 3, dtype=model.dtype, device=model.device)
    kp, _ = posed_keypoints(model, layout, eye, betas, zero)
    joints = model.rest_joints(model.betas_tensor(betas))[0].detach().cpu().double().numpy()
    return np.where((parts >= 0)[:, None], np.nan_to_num(kp[0] - joints[parts.clip(0)]), 0.0)


def shifted(prepared: PreparedKeypoints, shift: np.ndarray) -> PreparedKeypoints:
    """The same keypoints moved by -shift (T, K, 3): what the solver aims the model's points at."""
    return dataclasses.replace(
        prepared, positions=prepared.positions - shift, notes=list(prepared.notes)
    )


def subsample(num_frames: int, count: int = CALIBRATION_FRAMES) -> np.ndarray:
    """Indices of at most ``count`` frames evenly spread over the take (first and last included)."""
    if num_frames <= count:
        return np.arange(num_frames)
    return np.unique(np.linspace(0, num_frames - 1, count).round().astype(np.int64))


_GEOMETRIES: dict = {}  # Geometry.of's: (model id, layout id, betas bytes) -> (model, layout, it)


@dataclass
class Geometry:
    """The calibration model of one layout on one body (see the module docstring)."""

    parts: np.ndarray  # (K,) keypoint_parts
    levers: np.ndarray  # (K, 3) rest_vectors
    chain_from: np.ndarray  # (K,) the keypoint at the part's joint for a bone keypoint, else -1
    chained: tuple[int, ...]  # the bone keypoints, parents first
    # (K,) for an aim-only end point, the keypoint at the joint it aims (head_end: head), else -1
    aim_from: np.ndarray

    @classmethod
    def of(cls, model, layout: Layout, betas) -> Geometry:
        """The geometry of ``layout`` on the body ``betas`` (kept for the last few bodies: a
        calibrated solve and its fit figures ask for the same one several times)."""
        b = model.betas_tensor(betas)[0].detach().cpu().double().numpy()
        key = (id(model), id(layout), b.tobytes())
        held = _GEOMETRIES.get(key)
        if held is None or held[0] is not model or held[1] is not layout:
            if len(_GEOMETRIES) >= 8:
                _GEOMETRIES.pop(next(iter(_GEOMETRIES)))
            # the model and layout held with it: their ids stay theirs while the entry lives
            held = _GEOMETRIES[key] = (model, layout, cls._built(model, layout, betas))
        return held[2]

    @classmethod
    def _built(cls, model, layout: Layout, betas) -> Geometry:
        from .model.skeleton import SMPL_CHILDREN, SMPL_DEPTHS

        parts = keypoint_parts(model, layout)
        joint_of = layout.smpl_joint_of()
        at = {int(j): k for k, j in enumerate(joint_of) if j >= 0}
        chain_from = np.array(
            [
                at.get(int(p), -1)
                if p >= 0 and joint_of[k] >= 0 and len(SMPL_CHILDREN[p]) == 1
                else -1
                for k, p in enumerate(parts)
            ],
            dtype=np.int64,
        )
        chained = tuple(
            sorted(np.nonzero(chain_from >= 0)[0].tolist(), key=lambda k: SMPL_DEPTHS[joint_of[k]])
        )
        aim_from = np.array(
            [
                _aimed_from(model, d, at) if a else -1
                for d, a in zip(layout.definitions, layout.aim_only_mask(), strict=True)
            ],
            dtype=np.int64,
        )
        return cls(parts, rest_vectors(model, layout, betas, parts), chain_from, chained, aim_from)

    def joints_used(self, prepared: PreparedKeypoints) -> list[int]:
        """The joints an analytic pass must solve for the first offsets and ``shift`` on
        ``prepared`` (their ancestors come with them): the roots' (their points and parts), and a
        bone's part where its parent keypoint is unseen in some frame. CMU's roots are its hips,
        spine, neck and shoulder points, so the torso alone places every frame's shifts, without
        the limbs below the hips and shoulders and the head (``analytic_ik._groups``)."""
        joint_of = prepared.layout.smpl_joint_of()
        roots = np.nonzero(self.roots >= 0)[0]
        used = {int(joint_of[k]) if joint_of[k] >= 0 else int(self.parts[k]) for k in roots}
        unseen = (prepared.weight <= 0).any(0)
        used |= {int(self.parts[k]) for k in self.chained if unseen[self.chain_from[k]]}
        return sorted(used)

    @property
    def roots(self) -> np.ndarray:
        """(K,) parts of the keypoints with a free offset (-1 for the bones and the uncalibrated)."""
        return np.where(self.chain_from >= 0, -1, self.parts)

    def points(self, model_points: np.ndarray, g: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """(T, K, 3) calibrated points from the model points and parts' rotations of a pose."""
        own = _shift(g, self.parts, offsets)  # G_part o
        out = model_points + own
        for k in self.chained:
            p = self.chain_from[k]
            out[:, k] = out[:, p] + (model_points[:, k] - model_points[:, p]) + own[:, k]
        return out

    def estimate(self, prepared: PreparedKeypoints, model_points, g) -> np.ndarray:
        """(K, 3) offsets: the roots' by ``estimate_offsets`` at this pose, each bone's its captured
        length's weighted mean less SMPL's, along SMPL's bone (0 where never measured at both ends)."""
        o = estimate_offsets(prepared, model_points, g, self.roots)
        x, w = prepared.positions, prepared.weight * prepared.measured
        for k in self.chained:
            p = self.chain_from[k]
            both = w[:, k] * w[:, p]
            lever = np.linalg.norm(self.levers[k])
            if both.sum() <= 0 or lever <= 1e-9:
                continue
            length = (both * np.linalg.norm(x[:, k] - x[:, p], axis=-1)).sum() / both.sum()
            o[k] = self.levers[k] * (length - lever) / lever
        return o

    def far_starts(self, offsets: np.ndarray, joint_of: np.ndarray) -> list[int]:
        """The last bones of their chains (no keypoint rides below them) whose start keypoint's own
        offset is longer than FAR_START of the bone: the captured bone starts far from SMPL's joint
        (CMU's upperneck 11 cm from SMPL's neck on cmu_subset's basketball_1, its lower neck 19 cm
        when the layout tied that one to SMPL's neck). A bone with keypoints below (CMU's upper
        back, under the whole upper body) is not turned: that would move them."""
        from .body_model import SMPL_PARENTS

        def below(j: int, c: int) -> bool:  # j in c's subtree, c excluded
            while j > 0:
                j = SMPL_PARENTS[j]
                if j == c:
                    return True
            return False

        start = np.linalg.norm(offsets[self.chain_from.clip(0)], axis=-1)
        bone = np.linalg.norm(self.levers, axis=-1)
        return [
            k
            for k in self.chained
            if start[k] > FAR_START * bone[k]
            and not any(
                below(int(p), int(joint_of[k])) or p == joint_of[k] for p in self.parts if p >= 0
            )
        ]

    def aim_bones(self, model, prepared: PreparedKeypoints, rotmats, betas, offsets):
        """``rotmats`` with each bone that starts far from its SMPL joint (``far_starts``) turned (the
        minimal swing) onto the captured bone, every other segment keeping its world rotation. Such
        a bone's target lies along the captured bone from its parent's target, but analytic IK aims
        from the rebuilt joint, which the torso's fit leaves ~1 cm from its target at CMU's neck
        (measured with the lower neck as SMPL's neck): the 9 cm neck was 3-4 deg off the captured one (uncalibrated, the aim followed the
        captured bone because the rebuilt neck was 19 cm from its keypoint: ``analytic_ik._Aim``
        does the same from half a bone on). The limbs start within a fifth of their bone and
        follow the capture within 0.5 deg as solved."""
        from .model.kinematics import local_rotations
        from .rotations import swing_rotation

        joint_of = prepared.layout.smpl_joint_of()
        bones = self.far_starts(np.asarray(offsets, np.float64), joint_of)
        if not bones:
            return rotmats
        rot = torch.as_tensor(rotmats)
        rest = model.rest_joints(model.betas_tensor(betas))[0].to(rot.dtype)
        g, _ = model.global_transforms(rot, rest.expand(rot.shape[0], -1, -1))
        g = g.clone()
        x = torch.as_tensor(prepared.positions, dtype=rot.dtype)
        seen = torch.as_tensor(prepared.measured)
        eye = torch.eye(3, dtype=rot.dtype)
        for k in bones:
            p, c, a = int(self.parts[k]), int(joint_of[k]), int(self.chain_from[k])
            bone = g[:, p] @ (rest[c] - rest[p])
            swing = swing_rotation(bone, x[:, k] - x[:, a])
            ok = (seen[:, k] & seen[:, a])[:, None, None]
            g[:, p] = torch.where(ok, swing, eye) @ g[:, p]
        return local_rotations(g)

    def shift(self, prepared: PreparedKeypoints, root_shift: np.ndarray, offsets) -> np.ndarray:
        """(T, K, 3) keypoint - target for every keypoint: ``root_shift`` (G_part o, from a pose) for
        the roots; for each bone, SMPL's bone length along the captured bone from its parent's
        target (parents first), so the SMPL bone aims along the captured one and its own pose is
        not needed (frames where the parent keypoint is missing: G_part o from ``root_shift``)."""
        out = root_shift.copy()
        x = prepared.positions
        for k in self.chained:
            p = self.chain_from[k]
            bone = x[:, k] - x[:, p]
            unit = bone / np.maximum(np.linalg.norm(bone, axis=-1, keepdims=True), 1e-9)
            target = x[:, p] - out[:, p] + np.linalg.norm(self.levers[k]) * unit
            seen = (prepared.weight[:, p] > 0)[:, None]
            out[:, k] = np.where(seen, x[:, k] - target, root_shift[:, k])
        # An end point (a direction from its joint, not a position) moves with its joint's target,
        # so the captured bone's direction is kept. Left where it was, CMU's head top fell below
        # the head target that calibration raised by ~9 cm, and from positions alone the head
        # turned upside down (eval --real, analytic:rotations=ignore: head direction 88 deg).
        for k in np.nonzero(self.aim_from >= 0)[0]:
            a = self.aim_from[k]
            seen = (prepared.weight[:, a] > 0)[:, None]
            out[:, k] = np.where(seen, out[:, a], root_shift[:, k])
        return out


def calibrated_solve(ctx, run, mode: str = "auto", offsets=None) -> Calibrated:
    """Solve ``ctx`` (the solver's context) with ``run(ctx) -> (rotmats, trans, used, rotations)``,
    calibrated as the module docstring says when ``wants_calibration(mode, layout)``, or aimed at the
    points given ``offsets`` (K, 3) calibrate.

    One analytic IK pass over every frame as captured (``analytic_pose``) gives the first offsets
    (on the subsample) and every frame's parts' rotations; ``run`` on the subsample, aimed at those
    offsets, re-estimates them at the strategy's own pose and measures how its parts turn against
    analytic IK's (``_aimed_context``); then ``run`` solves every frame once. Each frame's targets
    depend on that frame alone (a take glued twice gives the same poses twice)."""
    prepared, model = ctx.prepared, ctx.model
    layout = prepared.layout
    if offsets is None and not wants_calibration(mode, layout):
        rotmats, trans, used, rotations = run(ctx)
        return Calibrated(rotmats, trans, used, rotations, None, ctx)
    fixed = offsets is not None
    geo = Geometry.of(model, layout, ctx.betas)
    full, o = _aimed_context(ctx, run, geo, None if not fixed else np.asarray(offsets, np.float64))
    rotmats, trans, used, rotations = run(full)
    rotmats = geo.aim_bones(model, prepared, rotmats, ctx.betas, o)
    # the offsets returned are the ones aimed at: reused (--init, Refine) they give the same targets
    n = int((np.linalg.norm(o, axis=-1) > 0).sum())
    how = (
        "given"
        if fixed
        else f"estimated over {subsample(prepared.num_frames).shape[0]} frames, "
        f"{CALIBRATION_ROUNDS} rounds"
    )
    ctx.notes.append(
        f"calibration: {n} keypoint offset(s) in their SMPL body parts' frames ({how}; MoSh-style)"
    )
    return Calibrated(rotmats, trans, used, rotations, o.astype(np.float32), full)


def _aimed_context(ctx, run, geo: Geometry, offsets):
    """(``ctx`` aimed at the calibrated points for ``run``, the offsets aimed at). ``offsets`` None:
    estimated, first at analytic IK's pose of the subsample as captured, then at ``run``'s pose of
    the subsample aimed at them (CALIBRATION_ROUNDS = 2).

    The take's targets need every frame's parts' rotations (G o); they come from analytic IK of
    every frame as captured, turned by the constant that takes analytic IK's parts onto the
    strategy's (the file's rotations set the pelvis and spine3; mean over the subsample of
    G_run G_ana^T, ``mean_rotation``): one IK pass over the take, where aiming analytic IK at the
    calibrated points first took two (and two more on the subsample): calibration's cost
    (benchmarks/bench_calibration.py, 1,000 frames of 01_01.bvh)."""
    model, prepared, layout = ctx.model, ctx.prepared, ctx.prepared.layout
    frames = subsample(prepared.num_frames)
    start = analytic_pose(ctx, prepared, geo.joints_used(prepared))
    g_ana = start.glob.detach().cpu().double().numpy()
    sub = ctx.cut(frames)
    o = offsets
    if o is None:
        sel = torch.as_tensor(frames, dtype=torch.long, device=start.rotmats.device)
        fk = (start.glob[sel], start.joints[sel])  # analytic IK's: no forward kinematics again
        kp, g = posed_keypoints(model, layout, start.rotmats[sel], ctx.betas, start.trans[sel], fk)
        o = geo.estimate(sub.prepared, kp, g)
    g_sub = g_ana[frames]
    aimed_sub = _aimed(_without_end_points(sub.prepared), geo, g_sub, o)
    rot_s, trans_s, _, _ = run(sub.with_prepared(aimed_sub, sub.notes))
    kp, g_s = posed_keypoints(model, layout, rot_s, ctx.betas, trans_s)
    if offsets is None:
        o = geo.estimate(sub.prepared, kp, g_s)
    turn = mean_rotation(np.einsum("tjab,tjcb->tjac", g_s, g_sub))  # G_s G_ana^T
    g_run = np.einsum("jab,tjbc->tjac", turn, g_ana)
    return ctx.with_prepared(_aimed(prepared, geo, g_run, o), ctx.notes), o


def _without_end_points(prepared: PreparedKeypoints) -> PreparedKeypoints:
    """``prepared`` with its aim-only end points unseen. They aim the leaves (head, hands, feet),
    which carry no offset, and nothing the offsets ride on (the torso and the limbs' parents);
    without them the strategy's analytic IK on the subsample is one pass, not two (no landmark to
    move onto the solved joints first, ``SolveContext.analytic``)."""
    ends = prepared.layout.aim_only_mask()
    if not ends.any():
        return prepared
    weight, measured = prepared.weight.copy(), prepared.measured.copy()
    weight[:, ends], measured[:, ends] = 0.0, False
    return dataclasses.replace(
        prepared, weight=weight, measured=measured, notes=list(prepared.notes)
    )


def _aimed(prepared: PreparedKeypoints, geo: Geometry, g: np.ndarray, offsets) -> PreparedKeypoints:
    """``prepared`` aimed at the calibrated points of parts' rotations ``g`` (T, 24, 3, 3)."""
    return shifted(prepared, geo.shift(prepared, _shift(g, geo.parts, offsets), offsets))


def calibrated_context(ctx, run, offsets):
    """``ctx`` aimed at the points given ``offsets`` (K, 3) calibrate, for the strategy ``run``, as a
    calibrated solve aims (the plug-in mode: an earlier solve's offsets reused,
    ``solver.refine_existing``). Nothing comes from a motion being refined: 10 deg of noise per joint
    in it moved CMU's neck-base target (a 19 cm offset) by centimetres."""
    geo = Geometry.of(ctx.model, ctx.prepared.layout, ctx.betas)
    return _aimed_context(ctx, run, geo, np.asarray(offsets, np.float64))[0]


def aim_far_bones(ctx, rotmats, offsets):
    """``Geometry.aim_bones`` of ``ctx``'s keypoints: the post-step of a calibrated solve, for the
    plug-in mode (the same pose from the same keypoints)."""
    geo = Geometry.of(ctx.model, ctx.prepared.layout, ctx.betas)
    o = np.asarray(offsets, np.float64)
    return geo.aim_bones(ctx.model, ctx.prepared, rotmats, ctx.betas, o)


def analytic_pose(ctx, prepared: PreparedKeypoints, joints=None):
    """``IKResult`` (local and world rotations, trans, joints) of analytic IK on ``prepared``'s
    joint targets and position landmarks (not the aim-only end points: the parts that carry offsets
    are solved before the leaves), in blocks of the solve's chunk; ``joints``: only those and their
    ancestors are solved (``solve_analytic``)."""
    from .analytic_ik import IKResult, solve_analytic

    layout = prepared.layout
    targets, weight = prepared.smpl_targets()
    measured = prepared.aim_origins()
    lm = [
        k
        for k, d in enumerate(layout.definitions)
        if d
        and d.startswith("@")
        and "+" not in d
        and not layout.aim_only_mask()[k]
        and d[1:] in ctx.model.data.landmarks
    ]
    names = [str(layout.definitions[k])[1:] for k in lm]
    chunk = ctx.options.chunk
    parts = [
        solve_analytic(
            ctx.model,
            ctx.betas,
            targets[s : s + chunk],
            weight[s : s + chunk],
            names,
            prepared.positions[s : s + chunk, lm],
            prepared.weight[s : s + chunk, lm],
            measured=measured[s : s + chunk],
            joints=joints,
        )
        for s in range(0, prepared.num_frames, chunk)
    ]
    return IKResult(
        *(torch.cat([getattr(p, f) for p in parts]) for f in ("rotmats", "trans", "joints", "glob"))
    )


def mean_rotation(rotations: np.ndarray) -> np.ndarray:
    """(..., 3, 3) the chordal mean over the first axis of (T, ..., 3, 3) rotations (the mean matrix
    projected onto SO(3) by SVD, Hartley et al. 2013 "Rotation averaging", sec. 5.3)."""
    u, _, vt = np.linalg.svd(rotations.mean(0))
    d = np.sign(np.linalg.det(u @ vt))
    u[..., :, -1] *= d[..., None]
    return u @ vt


def checked_offsets(offsets, layout: Layout, names=None, source: str = "keypoint_offsets"):
    """``offsets`` as (K, 3) float64 for ``layout``, or a clear InputError: the shape, finite values,
    at most MAX_OFFSET_M long, and (when the file names them) the same keypoints in the same order.
    Offsets come from files (an earlier output's ``keypoint_offsets``): hostile until checked."""
    o = np.asarray(offsets)
    k = layout.num_keypoints
    if o.dtype.kind not in "iuf" or o.shape != (k, 3):
        raise InputError(
            f"{source}: expected ({k}, 3) numbers, one offset per keypoint of the '{layout.name}' "
            f"layout, got {o.dtype} {o.shape}. Use the output of a solve with the same layout, or "
            "solve again without it."
        )
    o = o.astype(np.float64)
    if not np.isfinite(o).all():
        raise InputError(f"{source}: holds NaN or infinite values; the file is damaged.")
    longest = float(np.linalg.norm(o, axis=-1).max(initial=0.0))
    if longest > MAX_OFFSET_M:
        raise InputError(
            f"{source}: an offset is {longest:.2f} m long; a keypoint's calibration is at most "
            f"{MAX_OFFSET_M:g} m. The file is not a calibration of this skeleton."
        )
    if names is not None:
        given = [str(n) for n in np.asarray(names).reshape(-1)]
        if given != list(layout.keypoints):
            raise InputError(
                f"{source}: the offsets are for the keypoints {', '.join(given[:6])}"
                f"{' ...' if len(given) > 6 else ''}, not the '{layout.name}' layout's "
                f"({', '.join(layout.keypoints[:6])} ...). Give --layout {layout.name}'s own output "
                "or solve without it."
            )
    return o
