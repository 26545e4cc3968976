"""Batched kinematics with a per-sample rest skeleton, and the analytic re-aim that keeps a
pose's twist while its swings hit the keypoints."""
from __future__ import annotations

import torch

from ..body_model import SMPL_PARENTS
from ..rotations import kabsch, swing_rotation

KIDS = [[c for c in range(24) if SMPL_PARENTS[c] == j] for j in range(24)]
_DEPTH = [0] * 24
for _j in range(1, 24):
    _DEPTH[_j] = _DEPTH[SMPL_PARENTS[_j]] + 1
# joints grouped by tree depth: each level is one batched step (9 levels instead of 24 joints)
LEVELS = [[j for j in range(24) if _DEPTH[j] == d] for d in range(1, max(_DEPTH) + 1)]
_LEVEL_PARENTS = [[SMPL_PARENTS[j] for j in js] for js in LEVELS]
_LEVEL_SINGLE = [[j for j in js if len(KIDS[j]) == 1] for js in LEVELS]
_LEVEL_MULTI = [[j for j in js if len(KIDS[j]) > 1] for js in LEVELS]


def fk(rotmats: torch.Tensor, rest: torch.Tensor):
    """Global rotations and joints (B, 24, ...) for local rotations and per-sample rest (B, 24, 3).
    The root sits at its rest position."""
    n = rotmats.shape[0]
    rest = rest.expand(n, -1, -1)
    g = rotmats.new_empty(n, 24, 3, 3)
    p = rotmats.new_empty(n, 24, 3)
    g[:, 0] = rotmats[:, 0]
    p[:, 0] = rest[:, 0]
    for js, ps in zip(LEVELS, _LEVEL_PARENTS):
        gp = g[:, ps]
        p[:, js] = p[:, ps] + (gp @ (rest[:, js] - rest[:, ps])[..., None])[..., 0]
        g[:, js] = gp @ rotmats[:, js]
    return g, p


def _fit_children(j, r, rest, targets, weight, pos_j, frame):
    """Weighted Kabsch of joint j's children (where >= 2 are observed), else ``r``."""
    kids = KIDS[j]
    rv = rest[:, kids] - rest[:, j:j + 1]
    tv = targets[:, kids] - pos_j[:, None]
    if frame is not None:
        tv = tv @ frame
    wk = weight[:, kids].clamp_min(0)
    ok = (wk > 0).sum(-1) >= 2
    if not bool(ok.any()):
        return r
    return torch.where(ok[:, None, None], kabsch(rv, torch.nan_to_num(tv), wk + 1e-9), r)


def reaim(rot_init: torch.Tensor, rest: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor,
          return_joints: bool = False, swings_only: bool = False):
    """Re-aim every observed bone of ``rot_init`` at the targets (B, 24, 3), keeping its twist.

    Root and spine3 (several children) take the weighted Kabsch fit of their children when
    at least two are observed; a single-child joint takes the minimal swing that turns its
    current bone onto the target direction (seen from the parent as rebuilt so far), left-
    composed so the joint's twist about the bone is unchanged; the rest keep ``rot_init``.
    Returns local rotations (B, 24, 3, 3) and root translation (B, 3) (and the posed joints,
    translation included, with ``return_joints``). ``swings_only`` skips the Kabsch fits (for a
    loss that is differentiated through the re-aim: multi-child joints keep ``rot_init``).
    """
    n = rot_init.shape[0]
    rest = rest.expand(n, -1, -1)
    w = weight > 0
    g = rot_init.new_empty(n, 24, 3, 3)
    p = rot_init.new_empty(n, 24, 3)
    loc = rot_init.clone()
    p[:, 0] = torch.where(w[:, :1], targets[:, 0], rest[:, 0])
    if not swings_only:
        loc[:, 0] = _fit_children(0, rot_init[:, 0], rest, targets, weight, p[:, 0], None)
    g[:, 0] = loc[:, 0]
    for js, ps, single, multi in zip(LEVELS, _LEVEL_PARENTS, _LEVEL_SINGLE, _LEVEL_MULTI):
        gp = g[:, ps]
        p[:, js] = p[:, ps] + (gp @ (rest[:, js] - rest[:, ps])[..., None])[..., 0]
        if single:
            kids = [KIDS[j][0] for j in single]
            par = [SMPL_PARENTS[j] for j in single]
            r = rot_init[:, single]
            rv = rest[:, kids] - rest[:, single]
            tv = ((targets[:, kids] - p[:, single])[..., None, :] @ g[:, par])[..., 0, :]  # F^T v
            cur = (r @ rv[..., None])[..., 0]
            loc[:, single] = torch.where(w[:, kids, None, None], swing_rotation(cur, tv) @ r, r)
        if not swings_only:
            for j in multi:
                loc[:, j] = _fit_children(j, rot_init[:, j], rest, targets, weight, p[:, j], g[:, SMPL_PARENTS[j]])
        g[:, js] = gp @ loc[:, js]
    if return_joints:
        return loc, p[:, 0] - rest[:, 0], p
    return loc, p[:, 0] - rest[:, 0]


class SurfacePoints:
    """A fixed subset of model vertices, skinned from FK globals with each vertex's top-k joints
    (cheap vertex loss for training)."""

    def __init__(self, model, ids, k: int = 4):
        self.ids = torch.as_tensor(ids, dtype=torch.long)
        w = model.weights[self.ids]
        top = w.topk(k, dim=-1)
        self.joint = top.indices  # (L, k)
        self.w = top.values / top.values.sum(-1, keepdim=True)
        self.model = model

    def __call__(self, glob: torch.Tensor, pos: torch.Tensor, betas: torch.Tensor, rest: torch.Tensor):
        """Posed points (B, L, 3), root at rest, for FK globals/joints and the rest joints used."""
        v = self.model.rest_vertices(betas, self.ids)  # (B, L, 3)
        g = glob[:, self.joint]  # (B, L, k, 3, 3)
        jr = rest[:, self.joint]  # (B, L, k, 3)
        jp = pos[:, self.joint]
        moved = (g @ (v[:, :, None] - jr)[..., None])[..., 0] + jp
        return (self.w[None, ..., None] * moved).sum(2)
