"""The analytic re-aim that keeps a pose's twist while its swings hit the keypoints, and a
cheap surface-point skinning for training losses, over a per-sample rest skeleton.

Forward kinematics is ``core.model.kinematics.forward_kinematics`` (``fk`` here, the name
the network code uses for it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..model.kinematics import forward_kinematics as fk  # noqa: F401  (re-exported for the network code)
from ..model.kinematics import parent_selector, put, selector, take
from ..model.rotations import kabsch, swing_rotation
from ..model.skeleton import SMPL_CHILDREN as KIDS
from ..model.skeleton import SMPL_LEVELS, SMPL_PARENTS
from ..model.skinning import linear_blend_skinning


@dataclass(frozen=True)
class _ReaimLevel:
    """One SMPL level for ``reaim``: its joints, their parents, its single-child joints with
    their children and parents (``take``/``put`` selectors: slices on SMPL's tree) and its
    multi-child joints (pelvis, spine3)."""

    joints: object
    parents: object
    single: object | None
    single_kids: object | None
    single_parents: object | None
    multi: tuple[int, ...]


def _plan_level(level) -> _ReaimLevel:
    single = [j for j in level if len(KIDS[j]) == 1]
    return _ReaimLevel(
        joints=selector(level),
        parents=parent_selector([SMPL_PARENTS[j] for j in level]),
        single=selector(single) if single else None,
        single_kids=selector([KIDS[j][0] for j in single]) if single else None,
        single_parents=parent_selector([SMPL_PARENTS[j] for j in single]) if single else None,
        multi=tuple(j for j in level if len(KIDS[j]) > 1),
    )


_PLAN = tuple(_plan_level(level) for level in SMPL_LEVELS)


def _fit_children(j, r, rest, targets, weight, pos_j, frame):
    """Weighted Kabsch of joint j's children (where >= 2 are observed), else ``r`` (B, 3, 3).
    ``rest`` (24, 1 or B, 3), ``targets`` (24, B, 3), ``weight`` (24, B) joint-major."""
    kids = slice(KIDS[j][0], KIDS[j][-1] + 1)  # SMPL's children of one joint are consecutive
    rv = (rest[kids] - rest[j : j + 1]).transpose(0, 1)  # (1 or B, K, 3)
    tv = (targets[kids] - pos_j[None]).transpose(0, 1)  # (B, K, 3)
    if frame is not None:
        tv = tv @ frame
    wk = weight[kids].T.clamp_min(0)
    ok = (wk > 0).sum(-1) >= 2
    if not bool(ok.any()):
        return r
    return torch.where(ok[:, None, None], kabsch(rv, torch.nan_to_num(tv), wk + 1e-9), r)


def reaim(
    rot_init: torch.Tensor,
    rest: torch.Tensor,
    targets: torch.Tensor,
    weight: torch.Tensor,
    return_joints: bool = False,
    swings_only: bool = False,
):
    """Re-aim every observed bone of ``rot_init`` at the targets (B, 24, 3), keeping its twist.

    Root and spine3 (several children) take the weighted Kabsch fit of their children when
    at least two are observed; a single-child joint takes the minimal swing that turns its
    current bone onto the target direction (seen from the parent as rebuilt so far), left-
    composed so the joint's twist about the bone is unchanged; the rest keep ``rot_init``.
    Returns local rotations (B, 24, 3, 3) and root translation (B, 3) (and the posed joints,
    translation included, with ``return_joints``). ``swings_only`` skips the Kabsch fits (for a
    loss that is differentiated through the re-aim: multi-child joints keep ``rot_init``).
    ``rest`` (B, 24, 3) or (1, 24, 3). The work is joint-major, (24, B, ...): each level reads
    and writes its joints as contiguous blocks (``_PLAN``: SMPL's levels, their single-child
    joints and their children are consecutive).
    """
    rest = rest.reshape((-1,) + rest.shape[-2:]).transpose(0, 1)  # (24, 1 or B, 3)
    rot = rot_init.transpose(0, 1).contiguous()  # (24, B, 3, 3)
    tgt = targets.transpose(0, 1).contiguous()
    wj = weight.T.contiguous()
    seen = wj > 0
    g = torch.empty_like(rot)
    p = rot.new_empty(rot.shape[:2] + (3,))
    loc = rot.clone()
    p[0] = torch.where(seen[0, :, None], tgt[0], rest[0])
    if not swings_only:
        loc[0] = _fit_children(0, rot[0], rest, tgt, wj, p[0], None)
    g[0] = loc[0]
    for lv in _PLAN:
        gp = take(g, lv.parents, 0)
        bone = take(rest, lv.joints, 0) - take(rest, lv.parents, 0)
        put(p, lv.joints, take(p, lv.parents, 0) + (gp @ bone[..., None])[..., 0], 0)
        if lv.single is not None:
            r = take(rot, lv.single, 0)
            rv = take(rest, lv.single_kids, 0) - take(rest, lv.single, 0)
            tv = (
                (take(tgt, lv.single_kids, 0) - take(p, lv.single, 0))[..., None, :]
                @ take(g, lv.single_parents, 0)
            )[..., 0, :]  # F^T v
            cur = (r @ rv[..., None])[..., 0]
            kid_seen = take(seen, lv.single_kids, 0)[..., None, None]
            put(loc, lv.single, torch.where(kid_seen, swing_rotation(cur, tv) @ r, r), 0)
        if not swings_only:
            for j in lv.multi:
                loc[j] = _fit_children(j, rot[j], rest, tgt, wj, p[j], g[SMPL_PARENTS[j]])
        put(g, lv.joints, gp @ take(loc, lv.joints, 0), 0)
    trans = p[0] - rest[0]
    loc = loc.transpose(0, 1).contiguous()
    if return_joints:
        return loc, trans, p.transpose(0, 1).contiguous()
    return loc, trans


class SurfacePoints:
    """A fixed subset of model vertices, skinned from FK globals with each vertex's top-k joints
    (its weights renormalised over them: a cheap vertex loss for training)."""

    def __init__(self, model, ids, k: int = 4):
        self.ids = torch.as_tensor(ids, dtype=torch.long)
        top = model.weights[self.ids].topk(k, dim=-1)
        self.weights = torch.zeros_like(model.weights[self.ids]).scatter_(
            -1, top.indices, top.values / top.values.sum(-1, keepdim=True)
        )  # (L, 24), k non-zeros a row
        self.model = model

    def __call__(
        self, glob: torch.Tensor, pos: torch.Tensor, betas: torch.Tensor, rest: torch.Tensor
    ):
        """Posed points (B, L, 3), root at rest, for FK globals/joints and the rest joints used."""
        v = self.model.rest_vertices(betas, self.ids)  # (B, L, 3)
        return linear_blend_skinning(v, self.weights.to(glob.dtype), glob, pos, rest)
