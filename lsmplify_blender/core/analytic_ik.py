"""Analytic inverse kinematics (SMPL-IKS AnalyIK, extended), batched over frames.

Given SMPL joint targets (T, 24, 3) with a mask, betas, and optional landmark targets, walk
down SMPL's tree once (a Python loop over the 24 joints, tensors over all frames):

- root and spine3 (several children) get the rotation that best fits all their children
  (weighted Kabsch);
- a joint with one child gets the minimal "swing" that aims its bone at the child's target,
  measured from the parent as rebuilt so far (adaptive targets: errors do not pile up);
- twist about a bone is not observable from joints. Where it can be inferred we do: hips and
  shoulders take the twist that makes the knee / elbow bend about its hinge axis, and any
  joint carrying landmark vertices (head: nose, eyes, ears, head top; feet: toes, heel;
  hands: fingertips) takes the twist (or full rotation, for leaves) that best fits them;
- joints with nothing to aim at stay at rest.

On keypoints made by the model itself this reproduces the joints to float precision.
Missing torso joints (a COCO layout has no spine) are first filled by a rigid fit of the
rest torso to the torso joints that are there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .body_model import BodyModel
from .errors import InputError
from .model.kinematics import parent_selector, put, selector, take
from .model.rotations import axis_angle_to_matrix, kabsch, normalize, swing_rotation
from .model.skeleton import JOINT_INDEX as _J
from .model.skeleton import NUM_JOINTS, SMPL_CHILDREN, SMPL_DEPTHS, SMPL_PARENTS

TORSO = [
    _J[n]
    for n in (
        "pelvis",
        "left_hip",
        "right_hip",
        "spine1",
        "spine2",
        "spine3",
        "neck",
        "left_collar",
        "right_collar",
        "left_shoulder",
        "right_shoulder",
    )
]
_TORSO_INDEX = torch.tensor(TORSO, dtype=torch.long)
# joint whose twist is set so its child bends about a hinge: (joint, child, grandchild, hinge axis
# in the child's rest frame, signed so that flexion is a positive turn about it). SMPL's rest
# frames are world-aligned and the body faces +Z: a knee flexes about +X (the shin swings back), an
# elbow in the T-pose about -Y on the left and +Y on the right (the forearm swings forward).
HINGES = (
    (1, 4, 7, (1.0, 0, 0)),
    (2, 5, 8, (1.0, 0, 0)),
    (16, 18, 20, (0, -1.0, 0)),
    (17, 19, 21, (0, 1.0, 0)),
)
# Hand-set constants (none is fitted to data):
# - the weight a torso joint filled in by ``complete_targets`` gets, relative to a measured
#   one (so fits lean on real data; commit a5c9494). Whether a joint was measured is a mask
#   (``solve_analytic``'s ``measured``), never read back from this weight;
COMPLETED_WEIGHT = 0.5
# - landmarks ride on skin, which slides over the bones: trusted half as much as a joint;
LANDMARK_TRUST = 0.5
# - aim blending (``_Aim``, commit a5c9494): the rebuilt joint is trusted while it has drifted
#   from its own target by less than half the bone, the captured bone direction from a whole
#   bone on;
AIM_DRIFT_START = 0.5
AIM_DRIFT_SPAN = 0.5
# - the hinge twist fades in with the bend: zero below sin(bend) = 0.03 (~1.7 degrees, where
#   the hinge plane is undefined) and full from 0.15 (~8.6 degrees; commit c680afb).
HINGE_FADE_START = 0.03
HINGE_FADE_SPAN = 0.12
# - a bend with sin(bend) above 0.26 (15 degrees) is taken to be flexion: knees and elbows
#   hyperextend by 0-10 degrees at most (``_hinge_root``).
HINGE_FLEXION_SURE = 0.26


@dataclass
class IKResult:
    rotmats: torch.Tensor  # (T, 24, 3, 3) local rotations
    trans: torch.Tensor  # (T, 3)
    joints: torch.Tensor  # (T, 24, 3) posed joints of the result
    # (T, 24, 3, 3) world rotations of the result: the solve builds them joint by joint, so a
    # caller that needs them (calibration's shifts) does not run forward kinematics again
    glob: torch.Tensor | None = None


def complete_targets(targets: torch.Tensor, weight: torch.Tensor, rest: torch.Tensor):
    """Fill missing torso joints by a rigid fit of the rest torso to the observed ones.

    targets (T, 24, 3), weight (T, 24) >= 0, rest (24, 3). Returns new targets and weights
    (filled joints get ``COMPLETED_WEIGHT`` of a measured one, so fits lean on real data).
    """
    torso = _TORSO_INDEX.to(targets.device)
    w = weight.index_select(1, torso)
    missing = (w <= 0).any(-1)
    if not bool(missing.any()):
        return targets, weight
    enough = (w > 0).sum(-1) >= 3
    if not bool(enough[missing].all()):
        bad = int((missing & ~enough).sum())
        raise InputError(
            f"{bad} frame(s) have fewer than 3 torso keypoints (hips, shoulders, spine, neck), so the body's "
            "orientation cannot be found. Check the layout and that hips and shoulders are tracked."
        )
    src = rest.index_select(0, torso).expand(targets.shape[0], -1, -1)
    dst = torch.nan_to_num(targets.index_select(1, torso))
    ws = w / w.sum(-1, keepdim=True).clamp_min(1e-9)
    c_src = (src * ws[..., None]).sum(1, keepdim=True)
    c_dst = (dst * ws[..., None]).sum(1, keepdim=True)
    r = kabsch(src - c_src, dst - c_dst, ws)
    fitted = (r @ (src - c_src).transpose(-1, -2)).transpose(-1, -2) + c_dst
    fill = (w <= 0) & missing[:, None]
    new_t = targets.index_copy(1, torso, torch.where(fill[..., None], fitted, dst))
    new_w = weight.index_copy(1, torso, torch.where(fill, torch.full_like(w, COMPLETED_WEIGHT), w))
    return new_t, new_w


def attach_landmarks(model: BodyModel, names: list[str], joint_available: list[bool]) -> list[int]:
    """The joint each landmark is taken to move rigidly with: its most-weighted joint, or that
    joint's parent when the joint itself has no target (a foot without a toe joint)."""
    ids = [model.data.landmarks[n] for n in names]
    dominant = model.weights[ids].argmax(-1).tolist()
    out = []
    for heaviest in dominant:
        joint = heaviest
        while (
            joint > 0
            and not joint_available[joint]
            and not any(joint_available[c] for c in SMPL_CHILDREN[joint])
        ):
            joint = model.parents[joint]
        out.append(joint)
    return out


def _twist_to_fit(axis, rest_vecs, target_vecs, w):
    """Angle about unit ``axis`` (T,3) that best turns rest_vecs onto target_vecs (T,N,3), weights (T,N)."""
    a = axis[:, None]
    rp = rest_vecs - (rest_vecs * a).sum(-1, keepdim=True) * a
    tp = target_vecs - (target_vecs * a).sum(-1, keepdim=True) * a
    sin = (w * (torch.cross(rp, tp, dim=-1) * a).sum(-1)).sum(-1)
    cos = (w * (rp * tp).sum(-1)).sum(-1)
    return torch.atan2(sin, cos)


def _flexion(axis, swing, e, hinge, child_bone, phi):
    """How far (signed: positive = flexion about ``hinge``; in units of |e| |child_bone|, the same
    for both roots of one row) the child bends to reach ``e`` after the joint turns by ``swing``
    and then ``phi`` about ``axis``. The bend's axis is child_bone x e_joint with e_joint =
    swing^T R(axis, -phi) e, so its component along the hinge is R(axis, -phi) e . swing (hinge x
    child_bone): Rodrigues' formula on one vector, no matrices."""
    lever = (swing @ torch.cross(hinge, child_bone, dim=-1)[..., None])[..., 0]
    cos, sin = torch.cos(phi)[:, None], torch.sin(phi)[:, None]
    along = (axis * e).sum(-1, keepdim=True) * axis
    turned = e * cos - torch.cross(axis, e, dim=-1) * sin + along * (1 - cos)  # R(axis, -phi) e
    return (turned * lever).sum(-1)


def _hinge_root(p1, p2, bend, frames: int, limb) -> torch.Tensor:
    """Which of the two hinge twists ``p1``, ``p2`` (rows, joint-major: ``frames`` per joint in time
    order) to take.

    The two roots bend the child by the same angle, one forwards (flexion) and one backwards, and
    their twists differ by about 180 degrees. A limb bent past ``HINGE_FLEXION_SURE`` can only be
    flexed: that root is sure. A nearly straight one (where the twist fades out, ``_hinge_twist``)
    takes the smaller twist, as the roots come together there and neither is known. One between
    the two (a few degrees of hyperextension are real) follows the root it was on from the last
    sure frame (or back from the next one) without a straight frame in between, frame to frame, as
    a bone's twist moves on smoothly: the track keeps its label (p1 or p2) unless the other root
    is nearer the one it had. In closed form: the label flips at each swap, so it is the sure
    frame's label XOR the swaps counted since (a cumulative sum).
    """
    axis, swing, e, hinge, child_bone = limb
    f1, f2 = (_flexion(axis, swing, e, hinge, child_bone, p) for p in (p1, p2))
    shape = (-1, frames)
    sure = (bend > HINGE_FLEXION_SURE).reshape(shape)
    straight = (bend <= HINGE_FADE_START + HINGE_FADE_SPAN).reshape(shape)
    sure_is_p2 = (f2 > f1).reshape(shape)
    r1, r2 = p1.reshape(shape), p2.reshape(shape)

    def gap(a, b):  # wrapped angular distance
        return torch.remainder(a - b + torch.pi, 2 * torch.pi).sub(torch.pi).abs()

    swap = torch.zeros_like(sure)
    swap[:, 1:] = gap(r1[:, 1:], r1[:, :-1]) > gap(r2[:, 1:], r1[:, :-1])
    count = swap.long().cumsum(-1)
    t = torch.arange(frames, device=p1.device).expand_as(sure)
    event = sure | straight  # a track starts at a sure frame and ends at a straight one
    last = torch.where(event, t, -1).cummax(-1).values
    nxt = torch.where(event, t, frames).flip(-1).cummin(-1).values.flip(-1)
    from_last = (last >= 0) & sure.gather(-1, last.clamp(0, frames - 1))
    from_next = (nxt < frames) & sure.gather(-1, nxt.clamp(max=frames - 1))
    src = torch.where(from_last, last, nxt).clamp(0, frames - 1)
    swaps = (count - count.gather(-1, src)).abs()  # swaps between the sure frame and this one
    label = sure_is_p2.gather(-1, src) ^ (swaps % 2 == 1)
    tracked = torch.where(label, r2, r1)
    smaller = torch.where(r1.abs() <= r2.abs(), r1, r2)
    return torch.where(from_last | from_next, tracked, smaller).reshape(-1)


def _hinge_twist(axis, swing, e, hinge, child_bone, frames: int):
    """Twist about ``axis`` after ``swing`` so the child's target ``e`` needs only a hinge bend.

    Solves A cos(phi) + B sin(phi) = C - D for the component of the child's local target
    along the hinge; of the two roots, the one ``_hinge_root`` picks. Fades to zero as the limb
    straightens, where the hinge plane is undefined. Rows are joint-major, ``frames`` per joint.
    """
    hs = (swing @ hinge[..., None])[..., 0].expand_as(e)
    h_par = (hs * axis).sum(-1, keepdim=True) * axis
    h_perp = hs - h_par
    w = torch.cross(axis, h_perp, dim=-1)
    e_len = torch.linalg.vector_norm(e, dim=-1).clamp_min(1e-9)
    a = (e * h_perp).sum(-1)
    b = (e * w).sum(-1)
    d = (e * h_par).sum(-1)
    c = e_len * (normalize(child_bone) * hinge).sum(-1)
    rho = torch.sqrt(a * a + b * b).clamp_min(1e-12)
    alpha = torch.atan2(b, a)
    beta = torch.acos(((c - d) / rho).clamp(-1.0, 1.0))

    def wrap(x):
        return torch.remainder(x + torch.pi, 2 * torch.pi) - torch.pi

    p1, p2 = wrap(alpha + beta), wrap(alpha - beta)
    bend = rho / e_len  # ~ sin of the bend angle
    phi = _hinge_root(p1, p2, bend, frames, (axis, swing, e, hinge, child_bone))
    return phi * ((bend - HINGE_FADE_START) / HINGE_FADE_SPAN).clamp(0.0, 1.0)


def _groups(kids, lm_of, hinge_of, child_seen) -> list[list[int]]:
    """Joints in solve order, batched: same tree depth (independent of each other) and the
    same branch of the solver (children, landmarks, hinge, child seen)."""
    out: dict[tuple, list[int]] = {}
    for j in range(NUM_JOINTS):
        key = (SMPL_DEPTHS[j], len(kids[j]), len(lm_of[j]), j in hinge_of, child_seen[j])
        out.setdefault(key, []).append(j)
    return [g for _, g in sorted(out.items(), key=lambda kv: (kv[0][0], kv[1][0]))]


@dataclass
class _Group:
    """A batch of joints of one level and branch, solved as ``rows = joints x frames`` rows.

    Per-frame values are stored joint-major, (24 or L, T, ...): a group's joints are one
    block (``take``: a slice where they are consecutive, else ``index_select`` with a tensor
    made once) and its rows a view of it."""

    joints: list[int]
    frames: int

    def __post_init__(self):
        self.sel = selector(self.joints)

    @property
    def rows(self) -> int:
        return self.frames * len(self.joints)

    def flat(self, x: torch.Tensor) -> torch.Tensor:
        """(G or 1, frames, ...) per-frame values of the group's joints -> (rows, ...)."""
        return x.expand((len(self.joints),) + x.shape[1:]).reshape((self.rows,) + x.shape[2:])

    def per_joint(self, x: torch.Tensor) -> torch.Tensor:
        """(G, ...) one value per joint, the same in every frame -> (rows, ...)."""
        return (
            x[:, None]
            .expand((x.shape[0], self.frames) + x.shape[1:])
            .reshape((self.rows,) + x.shape[1:])
        )

    def of(self, x: torch.Tensor, ids=None) -> torch.Tensor:
        """Rows (rows, ...) of joint-major ``x`` (J, frames, ...) at the group's joints, or at
        ``ids`` (one per joint of the group: their children, parents, landmarks)."""
        sel = self.sel if ids is None else parent_selector(ids)
        return self.flat(take(x, sel, dim=0))

    def of_each(self, x: torch.Tensor, ids: list[list[int]]) -> torch.Tensor:
        """Rows (rows, K, ...) of joint-major ``x`` (J, frames, ...) at ``ids`` (K per joint of
        the group: its children or landmarks), one gather for all K."""
        g, k = len(ids), len(ids[0])
        picked = take(x, parent_selector([i for row in ids for i in row]), dim=0)
        picked = picked.expand((g * k,) + x.shape[1:]).reshape((g, k) + x.shape[1:])
        return picked.transpose(1, 2).reshape((self.rows, k) + x.shape[2:])


@dataclass
class _Aim:
    """Where a group's joints stand and which way they aim (rows, ...).

    Aim from the rebuilt joint (errors do not pile up) unless the rebuild has drifted far
    from the joint's own target compared with the bone - a rig whose proportions are not
    the model's (a longer torso puts the rebuilt neck above the captured head). Then the
    captured bone direction is the better aim: the two blend as drift / bone length goes
    from ``AIM_DRIFT_START`` to ``AIM_DRIFT_START + AIM_DRIFT_SPAN``. Exact or mildly noisy
    input is unaffected.
    """

    pos: torch.Tensor  # rebuilt joint positions
    target: torch.Tensor  # the joints' own targets
    frame: torch.Tensor  # parents' global rotations (identity for the root)
    seen: torch.Tensor  # (rows, 1) the joint itself was measured

    def __post_init__(self):
        self.drift = torch.linalg.vector_norm(self.pos - self.target, dim=-1, keepdim=True)
        self.inv = self.frame.transpose(-1, -2)

    def local(self, point: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """The vectors from the joint to ``point`` (rows, K, 3: its children or landmarks, their
        rest lengths (rows, K, 1)), aimed as above, in the parent's frame (rows, K, 3)."""
        to_point = point - self.pos[:, None]
        from_rebuilt = normalize(to_point)
        from_target = normalize(point - self.target[:, None])
        ramp = (
            (self.drift[:, None] / length.clamp_min(1e-6) - AIM_DRIFT_START) / AIM_DRIFT_SPAN
        ).clamp(0, 1)
        blend = torch.where(self.seen[:, None], ramp, 0.0)
        d = normalize((1 - blend) * from_rebuilt + blend * from_target)
        aimed = d * torch.linalg.vector_norm(to_point, dim=-1, keepdim=True)
        return (self.inv[:, None] @ aimed[..., None])[..., 0]


def _landmark_setup(model: BodyModel, betas, names, targets, weight, avail, bone_ends=None):
    """Landmark targets (L, T, 3) and weights (L, T), joint-major, rest positions (L, 3) and the
    landmarks each joint carries (``lm_of[j]``: indices into ``names``).

    ``bone_ends`` (L bools): the landmark marks the end of a captured bone chain (a BVH End Site,
    an ASF bone end), which is straight in the source's rest pose. On a joint with one child that
    is not seen (CMU's wrist: no finger-base keypoint), the farthest such landmark is taken on the
    line of the joint's own bone, at its rest distance: the open model's middle finger tip droops
    9.5 deg below its palm (wrist -> hand joint), so aimed as it is, the palm of a positions-only
    solve tilted 9.5 deg off the captured hand (eval --real, analytic:rotations=ignore, hand
    direction 8.7 / 8.8 deg). The rotation transfer's leaves aim the same way (solver._aim_leaf)."""
    dt, dev = model.dtype, model.device
    lm_of: list[list[int]] = [[] for _ in range(NUM_JOINTS)]
    if not names:
        return None, None, None, lm_of
    lm_t = torch.nan_to_num(torch.as_tensor(targets, dtype=dt, device=dev)).transpose(0, 1)
    lm_w = torch.as_tensor(weight, dtype=dt, device=dev).T
    lm_rest = model.rest_vertices(betas, [model.data.landmarks[m] for m in names])[0]
    for li, j in enumerate(attach_landmarks(model, names, avail)):
        lm_of[j].append(li)
    if bone_ends is not None and any(bone_ends):
        lm_rest = _ends_on_bones(model.rest_joints(betas)[0], lm_rest, lm_of, bone_ends, avail)
    return lm_t.contiguous(), lm_w.contiguous(), lm_rest, lm_of


def _ends_on_bones(rest, lm_rest, lm_of, bone_ends, avail):
    """``lm_rest`` with the farthest bone-end landmark of each joint whose only child is unseen
    moved onto the line of that joint's bone, at its own distance (``_landmark_setup``)."""
    out = lm_rest.clone()
    for j, ls in enumerate(lm_of):
        kids = SMPL_CHILDREN[j]
        ends = [li for li in ls if bone_ends[li]]
        if len(kids) != 1 or avail[kids[0]] or not ends:
            continue
        far = max(ends, key=lambda li: float((lm_rest[li] - rest[j]).norm()))
        axis = rest[kids[0]] - rest[j]
        out[far] = rest[j] + axis / axis.norm() * (lm_rest[far] - rest[j]).norm()
    return out


def _group_vectors(grp: _Group, aim: _Aim, rest, targets, weight, kids, lm):
    """Rest vectors, aimed target vectors (parent frame) and weights (rows, K, ...) of a group:
    its children first, then its landmarks (trusted ``LANDMARK_TRUST`` times a joint).
    ``targets`` (24, T, 3) and ``weight`` (24, T) joint-major, as the landmarks'."""
    lm_t, lm_w, lm_rest, lm_of = lm
    js = grp.joints
    # (the children or the landmarks of each joint, their rest points, targets, weights, trust);
    # a group's joints have as many of each (``_groups``), gathered K at a time
    sources = ((kids, rest, targets, weight, 1.0), (lm_of, lm_rest, lm_t, lm_w, LANDMARK_TRUST))
    rv, tv, w = [], [], []
    for of, rest_points, point_targets, point_weight, trust in sources:
        ids = [list(of[j]) for j in js]
        if not ids[0]:
            continue
        off = (
            rest_points[[i for row in ids for i in row]].reshape(len(js), -1, 3) - rest[js][:, None]
        )
        rv.append(grp.per_joint(off))
        length = grp.per_joint(torch.linalg.vector_norm(off, dim=-1, keepdim=True))
        tv.append(aim.local(grp.of_each(point_targets, ids), length))
        w.append(grp.of_each(point_weight, ids) * trust)
    if not rv:
        return None
    return torch.cat(rv, 1), torch.cat(tv, 1), torch.cat(w, 1)


def _swing_and_twist(grp: _Group, aim: _Aim, rv, tv, w, rest, targets, weight, hinge_of):
    """A one-child joint: the swing onto its child, then the twist about the bone that fits
    its landmarks, or that makes its child bend about its hinge, if it has either."""
    js = grp.joints
    swing = swing_rotation(rv[:, 0], tv[:, 0])
    axis = normalize(tv[:, 0])
    phi = None
    if tv.shape[1] > 1:  # landmarks on this joint: twist to fit them
        rv_sw = (swing[:, None] @ rv[:, 1:, :, None])[..., 0]
        phi = _twist_to_fit(axis, rv_sw, tv[:, 1:], w[:, 1:])
    elif js[0] in hinge_of:
        dt, dev = rv.dtype, rv.device
        cs = [hinge_of[j][1] for j in js]
        gs = [hinge_of[j][2] for j in js]
        hinge = grp.per_joint(torch.tensor([hinge_of[j][3] for j in js], dtype=dt, device=dev))
        # twisting about the bone leaves the child where the swing put it
        pos_c = (
            aim.pos + (aim.frame @ (swing @ grp.per_joint(rest[cs] - rest[js])[..., None]))[..., 0]
        )
        e = (aim.inv @ (grp.of(targets, gs) - pos_c)[..., None])[..., 0]
        phi = _hinge_twist(axis, swing, e, hinge, grp.per_joint(rest[gs] - rest[cs]), grp.frames)
        phi = torch.where(grp.of(weight, gs) > 0, phi, torch.zeros_like(phi))
    return swing if phi is None else axis_angle_to_matrix(axis * phi[:, None]) @ swing


def _fit_vectors(rv, tv, w, eye):
    """A multi-vector joint: weighted Kabsch; a swing where only one vector is usable; rest
    where none is."""
    r = kabsch(rv, tv, w)
    few = (w > 0).sum(-1) < 2
    if bool(few.any()):  # one usable vector: a swing is all we can know
        k = w.argmax(-1)
        rows = torch.arange(rv.shape[0], device=rv.device)
        r = torch.where(few[:, None, None], swing_rotation(rv[rows, k], tv[rows, k]), r)
    return torch.where(((w > 0).sum(-1) == 0)[:, None, None], eye, r)


@dataclass
class _Tree:
    """What every group of one ``solve_analytic`` call reads: the tree, the rest joints (24, 3),
    the joint-major targets (24, T, 3), weights (24, T) and aim origins (24, T), the landmark
    setup (``_landmark_setup``), the hinges and which joints have a seen only child."""

    parents: tuple[int, ...]
    rest: torch.Tensor
    targets: torch.Tensor
    weight: torch.Tensor
    measured: torch.Tensor
    lm: tuple
    hinge_of: dict
    child_seen: list[bool]


def _solve_group(tree: _Tree, grp: _Group, local, glob, pos) -> None:
    """One group's joints: place them under their parents (forward kinematics of the rest
    bones), aim them at their children and landmarks, and write their local and world
    rotations into ``local`` / ``glob`` (24, T, 3, 3) and positions into ``pos`` (24, T, 3)."""
    joints, n, rest = grp.joints, grp.frames, tree.rest
    dt, dev = rest.dtype, rest.device
    par = [tree.parents[j] for j in joints]
    eye = torch.eye(3, dtype=dt, device=dev).expand(grp.rows, 3, 3)
    frame = eye
    if joints[0] > 0:
        frame = grp.of(glob, par)
        bone = grp.per_joint(rest[joints] - rest[par])
        put(
            pos,
            grp.sel,
            (grp.of(pos, par) + (frame @ bone[..., None])[..., 0]).reshape(-1, n, 3),
            dim=0,
        )
    aim = _Aim(
        pos=grp.of(pos),
        target=grp.of(tree.targets),
        frame=frame,
        seen=grp.of(tree.measured)[:, None],
    )
    vectors = _group_vectors(grp, aim, rest, tree.targets, tree.weight, SMPL_CHILDREN, tree.lm)
    r = eye
    if vectors is not None:
        rv, tv, w = vectors
        if tree.child_seen[joints[0]]:
            r = _swing_and_twist(
                grp, aim, rv, tv, w, rest, tree.targets, tree.weight, tree.hinge_of
            )
            r = torch.where((w[:, 0] > 0)[:, None, None], r, eye)
        elif tv.shape[1] >= 2:
            r = _fit_vectors(rv, tv, w, eye)
        else:
            r = torch.where((w[:, 0] > 0)[:, None, None], swing_rotation(rv[:, 0], tv[:, 0]), eye)
    put(local, grp.sel, r.reshape(len(joints), n, 3, 3), dim=0)
    put(glob, grp.sel, (frame @ r if joints[0] > 0 else r).reshape(len(joints), n, 3, 3), dim=0)


def solve_analytic(
    model: BodyModel,
    betas: torch.Tensor,
    targets: torch.Tensor | np.ndarray,
    weight: torch.Tensor | np.ndarray,
    landmark_names: list[str] | None = None,
    landmark_targets: torch.Tensor | np.ndarray | None = None,
    landmark_weight: torch.Tensor | np.ndarray | None = None,
    hinge_twist: bool = True,
    measured: torch.Tensor | np.ndarray | None = None,
    bone_ends: list[bool] | None = None,
    joints: Sequence[int] | None = None,
) -> IKResult:
    """SMPL pose for joint targets (T, 24, 3) with weights (T, 24) (0 = missing).

    ``joints``: solve only these joints and their ancestors (each joint depends on its ancestors
    alone, so they come out as a whole solve gives them); every other joint is left at the identity
    rotation and the origin. None: all.

    ``bone_ends`` (one per landmark): the landmark is the end of a captured bone chain, aimed along
    its joint's bone where that bone's child is not seen (``_landmark_setup``); None = none is.

    ``measured`` (T, 24) bool: the target is a real sample that may be the origin of its bones'
    aim (``PreparedKeypoints.aim_origins``: not interpolated over a gap); None = every weighted
    target. Torso joints filled in by ``complete_targets`` never count as measured."""
    dt, dev = model.dtype, model.device
    # No gradient flows through analytic IK (callers start optimisers from it): inference mode
    # spares each of its ~6,000 small ops autograd's bookkeeping (benchmarks/profile_solve.py counts
    # them per call). Its results are copied out as ordinary tensors below.
    with torch.inference_mode():
        targets = torch.as_tensor(targets, dtype=dt, device=dev)
        weight = torch.as_tensor(weight, dtype=dt, device=dev)
        measured = (
            weight > 0
            if measured is None
            else torch.as_tensor(measured, dtype=torch.bool, device=dev)
        )
        rest, local, glob, pos = _solve_tree(
            model,
            model.betas_tensor(betas)[:1],
            (targets, weight, measured),
            (landmark_names, landmark_targets, landmark_weight, bone_ends),
            hinge_twist,
            None if joints is None else _with_ancestors(joints),
        )
    # copies made outside inference mode: ordinary tensors, which autograd and in-place ops accept
    return IKResult(
        rotmats=local.transpose(0, 1).clone(memory_format=torch.contiguous_format),
        trans=pos[0] - rest[0],
        joints=pos.transpose(0, 1).clone(memory_format=torch.contiguous_format),
        glob=glob.transpose(0, 1).clone(memory_format=torch.contiguous_format),
    )


def _with_ancestors(joints: Sequence[int]) -> set[int]:
    """The joints and every ancestor of theirs."""
    out: set[int] = set()
    for joint in joints:
        j = joint
        while j >= 0 and j not in out:
            out.add(j)
            j = SMPL_PARENTS[j]
    return out


def _solve_tree(model: BodyModel, betas, joint_targets, landmarks, hinge_twist: bool, only=None):
    """``solve_analytic``'s walk down the tree: the rest joints (24, 3) and the local and world
    rotations (24, T, 3, 3) and positions (24, T, 3), joint-major."""
    targets, weight, measured = joint_targets
    landmark_names, landmark_targets, landmark_weight, bone_ends = landmarks
    n = targets.shape[0]
    rest = model.rest_joints(betas)[0]
    targets, weight = complete_targets(targets, weight, rest)
    seen_any = (weight > 0).any(0)
    # joint-major from here on: (24, T, ...), a group of joints is one block of rows
    targets = torch.nan_to_num(torch.as_tensor(targets)).transpose(0, 1).contiguous()
    weight = torch.as_tensor(weight).T.contiguous()
    measured = (measured & (weight.T > 0)).T.contiguous()
    lm = _landmark_setup(
        model,
        betas,
        list(landmark_names or []),
        landmark_targets,
        landmark_weight,
        seen_any.tolist(),
        bone_ends,
    )
    hinge_of = {h[0]: h for h in HINGES} if hinge_twist else {}
    kids = SMPL_CHILDREN
    child_seen = [len(kids[j]) == 1 and bool(seen_any[kids[j][0]]) for j in range(NUM_JOINTS)]
    tree = _Tree(model.parents, rest, targets, weight, measured, lm, hinge_of, child_seen)
    groups = _groups(kids, lm[3], hinge_of, child_seen)
    if only is None:
        local = targets.new_empty(NUM_JOINTS, n, 3, 3)
        glob = targets.new_empty(NUM_JOINTS, n, 3, 3)
        pos = targets.new_empty(NUM_JOINTS, n, 3)
    else:  # the joints not solved stay at rest, at the origin
        groups = [sub for g in groups if (sub := [j for j in g if j in only])]
        local = torch.eye(3, dtype=targets.dtype, device=targets.device).repeat(NUM_JOINTS, n, 1, 1)
        glob = local.clone()
        pos = targets.new_zeros(NUM_JOINTS, n, 3)
    pos[0] = targets[0]
    # Joints of one tree level that take the same branch below (e.g. both knees) are solved as
    # one batch of len(group) * n rows: 14 steps instead of 24, the same arithmetic.
    for joints in groups:
        _solve_group(tree, _Group(joints, n), local, glob, pos)
    return rest, local, glob, pos
