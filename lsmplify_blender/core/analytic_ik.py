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

from dataclasses import dataclass

import torch

from .body_model import BodyModel
from .errors import InputError
from .model.rotations import axis_angle_to_matrix, kabsch, normalize, swing_rotation
from .model.skeleton import JOINT_INDEX as _J
from .model.skeleton import NUM_JOINTS, SMPL_CHILDREN, SMPL_DEPTHS
TORSO = [_J[n] for n in ("pelvis", "left_hip", "right_hip", "spine1", "spine2", "spine3", "neck",
                         "left_collar", "right_collar", "left_shoulder", "right_shoulder")]
# joint whose twist is set so its child bends about a hinge: (joint, child, grandchild, hinge axis
# in the child's rest frame). SMPL's rest frames are world-aligned: knees flex about X, elbows
# (T-pose, palms down) about Y.
HINGES = ((1, 4, 7, (1.0, 0, 0)), (2, 5, 8, (1.0, 0, 0)), (16, 18, 20, (0, 1.0, 0)), (17, 19, 21, (0, 1.0, 0)))


@dataclass
class IKResult:
    rotmats: torch.Tensor  # (T, 24, 3, 3) local rotations
    trans: torch.Tensor  # (T, 3)
    joints: torch.Tensor  # (T, 24, 3) posed joints of the result


def complete_targets(targets: torch.Tensor, weight: torch.Tensor, rest: torch.Tensor):
    """Fill missing torso joints by a rigid fit of the rest torso to the observed ones.

    targets (T, 24, 3), weight (T, 24) >= 0, rest (24, 3). Returns new targets and weights
    (filled joints get weight 0.5 of a measured one, so fits lean on real data).
    """
    torso = torch.tensor(TORSO, device=targets.device)
    w = weight[:, torso]
    missing = (weight[:, torso] <= 0).any(-1)
    if not bool(missing.any()):
        return targets, weight
    enough = (w > 0).sum(-1) >= 3
    if not bool(enough[missing].all()):
        bad = int((missing & ~enough).sum())
        raise InputError(
            f"{bad} frame(s) have fewer than 3 torso keypoints (hips, shoulders, spine, neck), so the body's "
            "orientation cannot be found. Check the layout and that hips and shoulders are tracked.")
    src = rest[torso].expand(targets.shape[0], -1, -1)
    dst = torch.nan_to_num(targets[:, torso])
    ws = w / w.sum(-1, keepdim=True).clamp_min(1e-9)
    c_src = (src * ws[..., None]).sum(1, keepdim=True)
    c_dst = (dst * ws[..., None]).sum(1, keepdim=True)
    r = kabsch(src - c_src, dst - c_dst, ws)
    fitted = (r @ (src - c_src).transpose(-1, -2)).transpose(-1, -2) + c_dst
    fill = (w <= 0) & missing[:, None]
    new_t = targets.clone()
    new_w = weight.clone()
    new_t[:, torso] = torch.where(fill[..., None], fitted, dst)
    new_w[:, torso] = torch.where(fill, torch.full_like(w, 0.5), w)
    return new_t, new_w


def attach_landmarks(model: BodyModel, names: list[str], joint_available: list[bool]) -> list[int]:
    """The joint each landmark is taken to move rigidly with: its most-weighted joint, or that
    joint's parent when the joint itself has no target (a foot without a toe joint)."""
    ids = [model.data.landmarks[n] for n in names]
    dominant = model.weights[ids].argmax(-1).tolist()
    out = []
    for d in dominant:
        while d > 0 and not joint_available[d] and not any(joint_available[c] for c in SMPL_CHILDREN[d]):
            d = model.parents[d]
        out.append(d)
    return out


def _twist_to_fit(axis, rest_vecs, target_vecs, w):
    """Angle about unit ``axis`` (T,3) that best turns rest_vecs onto target_vecs (T,N,3), weights (T,N)."""
    a = axis[:, None]
    rp = rest_vecs - (rest_vecs * a).sum(-1, keepdim=True) * a
    tp = target_vecs - (target_vecs * a).sum(-1, keepdim=True) * a
    sin = (w * (torch.cross(rp, tp, dim=-1) * a).sum(-1)).sum(-1)
    cos = (w * (rp * tp).sum(-1)).sum(-1)
    return torch.atan2(sin, cos)


def _hinge_twist(axis, swing, e, hinge, child_bone):
    """Twist about ``axis`` after ``swing`` so the child's target ``e`` needs only a hinge bend.

    Solves A cos(phi) + B sin(phi) = C - D for the component of the child's local target
    along the hinge; of the two roots, the smaller twist. Fades to zero as the limb
    straightens, where the hinge plane is undefined.
    """
    hs = (swing @ hinge[..., None])[..., 0].expand_as(e)
    h_par = (hs * axis).sum(-1, keepdim=True) * axis
    h_perp = hs - h_par
    w = torch.cross(axis, h_perp, dim=-1)
    e_len = e.norm(dim=-1).clamp_min(1e-9)
    a = (e * h_perp).sum(-1)
    b = (e * w).sum(-1)
    d = (e * h_par).sum(-1)
    c = e_len * (normalize(child_bone) * hinge).sum(-1)
    rho = torch.sqrt(a * a + b * b).clamp_min(1e-12)
    alpha = torch.atan2(b, a)
    beta = torch.acos(((c - d) / rho).clamp(-1.0, 1.0))
    wrap = lambda x: torch.remainder(x + torch.pi, 2 * torch.pi) - torch.pi  # noqa: E731
    p1, p2 = wrap(alpha + beta), wrap(alpha - beta)
    phi = torch.where(p1.abs() <= p2.abs(), p1, p2)
    bend = rho / e_len  # ~ sin of the bend angle
    return phi * ((bend - 0.03) / 0.12).clamp(0.0, 1.0)


def _groups(kids, lm_of, hinge_of, child_seen) -> list[list[int]]:
    """Joints in solve order, batched: same tree depth (independent of each other) and the
    same branch of the solver (children, landmarks, hinge, child seen)."""
    out: dict[tuple, list[int]] = {}
    for j in range(NUM_JOINTS):
        key = (SMPL_DEPTHS[j], len(kids[j]), len(lm_of[j]), j in hinge_of, child_seen[j])
        out.setdefault(key, []).append(j)
    return [g for _, g in sorted(out.items(), key=lambda kv: (kv[0][0], kv[1][0]))]


def solve_analytic(model: BodyModel, betas: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor,
                   landmark_names: list[str] | None = None, landmark_targets: torch.Tensor | None = None,
                   landmark_weight: torch.Tensor | None = None, hinge_twist: bool = True) -> IKResult:
    """SMPL pose for joint targets (T, 24, 3) with weights (T, 24) (0 = missing)."""
    dt, dev = model.dtype, model.device
    targets = torch.as_tensor(targets, dtype=dt, device=dev)
    weight = torch.as_tensor(weight, dtype=dt, device=dev)
    n = targets.shape[0]
    betas = model.betas_tensor(betas)[:1]
    rest = model.rest_joints(betas)[0]
    targets, weight = complete_targets(targets, weight, rest)
    targets = torch.nan_to_num(targets)
    parents = model.parents
    kids = SMPL_CHILDREN
    avail = (weight > 0).any(0).tolist()

    # landmarks: rest offsets and which joint carries each
    lm_names = list(landmark_names or [])
    lm_of: list[list[int]] = [[] for _ in range(NUM_JOINTS)]
    if lm_names:
        lm_t = torch.nan_to_num(torch.as_tensor(landmark_targets, dtype=dt, device=dev))
        lm_w = torch.as_tensor(landmark_weight, dtype=dt, device=dev)
        lm_rest = model.rest_vertices(betas, [model.data.landmarks[m] for m in lm_names])[0]
        for li, j in enumerate(attach_landmarks(model, lm_names, avail)):
            lm_of[j].append(li)

    hinge_of = {h[0]: h for h in HINGES} if hinge_twist else {}
    child_seen = [len(kids[j]) == 1 and bool((weight[:, kids[j][0]] > 0).any()) for j in range(NUM_JOINTS)]
    local = targets.new_empty(n, NUM_JOINTS, 3, 3)
    glob = targets.new_empty(n, NUM_JOINTS, 3, 3)
    pos = targets.new_empty(n, NUM_JOINTS, 3)
    pos[:, 0] = targets[:, 0]
    # Joints of one tree level that take the same branch below (e.g. both knees) are solved as
    # one batch of n * len(group) rows: 14 steps instead of 24, the same arithmetic.
    for group in _groups(kids, lm_of, hinge_of, child_seen):
        g_n = len(group)
        par = [parents[j] for j in group]
        if group[0] > 0:
            pos[:, group] = pos[:, par] + (glob[:, par] @ (rest[group] - rest[par])[..., None])[..., 0]
        b = n * g_n
        flat = lambda x: x.reshape((b,) + x.shape[2:])  # noqa: E731  (n, G, ...) -> (B, ...)
        per_joint = lambda x: x.expand((n,) + x.shape).reshape((b,) + x.shape[1:])  # noqa: E731  (G, ...)
        eye = torch.eye(3, dtype=dt, device=dev).expand(b, 3, 3)
        frame = eye if group[0] == 0 else flat(glob[:, par])
        pos_j, tgt_j = flat(pos[:, group]), flat(targets[:, group])
        inv = frame.transpose(-1, -2)
        # Aim from the rebuilt joint (errors do not pile up) unless the rebuild has drifted far
        # from the joint's own target compared with the bone - a rig whose proportions are not
        # the model's (a longer torso puts the rebuilt neck above the captured head). Then the
        # captured bone direction is the better aim. Exact or mildly noisy input is unaffected.
        drift = (pos_j - tgt_j).norm(dim=-1, keepdim=True)
        seen = flat(weight[:, group, None]) >= 0.45  # measured (completed torso joints carry 0.5 x trust)

        def aim(point, length):
            from_rebuilt = normalize(point - pos_j)
            from_target = normalize(point - tgt_j)
            blend = torch.where(seen, ((drift / length.clamp_min(1e-6) - 0.5) / 0.5).clamp(0, 1),
                                torch.zeros_like(drift))
            d = normalize((1 - blend) * from_rebuilt + blend * from_target)
            return (inv @ (d * (point - pos_j).norm(dim=-1, keepdim=True))[..., None])[..., 0]

        rv, tv, w = [], [], []
        for k in range(len(kids[group[0]])):
            cs = [kids[j][k] for j in group]
            bone = rest[cs] - rest[group]
            rv.append(per_joint(bone))
            tv.append(aim(flat(targets[:, cs]), per_joint(bone.norm(dim=-1, keepdim=True))))
            w.append(flat(weight[:, cs]))
        for k in range(len(lm_of[group[0]])):
            ls = [lm_of[j][k] for j in group]
            off = lm_rest[ls] - rest[group]
            rv.append(per_joint(off))
            tv.append(aim(flat(lm_t[:, ls]), per_joint(off.norm(dim=-1, keepdim=True))))
            w.append(flat(lm_w[:, ls]) * 0.5)  # landmarks ride on skin: trust them less than joints
        r = eye
        if rv:
            rv, tv, w = torch.stack(rv, 1), torch.stack(tv, 1), torch.stack(w, 1)
            j0 = group[0]
            if child_seen[j0]:
                has_child = w[:, 0] > 0
                swing = swing_rotation(rv[:, 0], tv[:, 0])
                axis = normalize(tv[:, 0])
                phi = None
                if tv.shape[1] > 1:  # landmarks on this joint: twist to fit them
                    rv_sw = (swing[:, None] @ rv[:, 1:, :, None])[..., 0]
                    phi = _twist_to_fit(axis, rv_sw, tv[:, 1:], w[:, 1:])
                elif j0 in hinge_of:
                    cs = [hinge_of[j][1] for j in group]
                    gs = [hinge_of[j][2] for j in group]
                    hinge = per_joint(torch.tensor([hinge_of[j][3] for j in group], dtype=dt, device=dev))
                    # twisting about the bone leaves the child where the swing put it
                    pos_c = pos_j + (frame @ (swing @ per_joint(rest[cs] - rest[group])[..., None]))[..., 0]
                    e = (inv @ (flat(targets[:, gs]) - pos_c)[..., None])[..., 0]
                    phi = _hinge_twist(axis, swing, e, hinge, per_joint(rest[gs] - rest[cs]))
                    phi = torch.where(flat(weight[:, gs]) > 0, phi, torch.zeros_like(phi))
                r = swing if phi is None else axis_angle_to_matrix(axis * phi[:, None]) @ swing
                r = torch.where(has_child[:, None, None], r, eye)
            elif tv.shape[1] >= 2:
                r = kabsch(rv, tv, w)
                few = (w > 0).sum(-1) < 2
                if bool(few.any()):  # one usable vector: a swing is all we can know
                    k = w.argmax(-1)
                    sel = lambda x: x[torch.arange(b, device=dev), k]  # noqa: E731
                    r = torch.where(few[:, None, None], swing_rotation(sel(rv), sel(tv)), r)
                r = torch.where(((w > 0).sum(-1) == 0)[:, None, None], eye, r)
            else:
                r = torch.where((w[:, 0] > 0)[:, None, None], swing_rotation(rv[:, 0], tv[:, 0]), eye)
        local[:, group] = r.reshape(n, g_n, 3, 3)
        glob[:, group] = (frame @ r if group[0] > 0 else r).reshape(n, g_n, 3, 3)

    rotmats = local
    joints = pos
    return IKResult(rotmats=rotmats, trans=joints[:, 0] - rest[0], joints=joints)
