"""Forward kinematics over a kinematic tree, batched over frames and over tree levels.

For local rotations R_j (relative to the parent's frame, column vectors) and bone offsets
o_j (the rest vector from the parent's joint to joint j; o_root = the root's position),

    G_root = R_root,                 p_root = o_root,
    G_j    = G_parent(j) R_j,        p_j    = p_parent(j) + G_parent(j) o_j,

which is SMPL's kinematic chain (Loper et al. 2015, eq. 3-4) written with rotations and
positions instead of 4x4 transforms. The joints of one tree depth depend only on the
depth above, so each level is one batched step (SMPL: 8 steps for 23 joints) instead of a
Python loop over joints. ``forward_kinematics`` is the SMPL form (rest joint positions
in, root at its rest position); ``tree_kinematics`` the general one (offsets in, any tree).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch

from .backend import numpy_or_torch
from .skeleton import SMPL_PARENTS, levels_of


@functools.lru_cache(maxsize=32)
def _level_plan(parents: tuple[int, ...]):
    """(joints, their parents) per level and the roots of a tree, computed once per tree."""
    levels = levels_of(parents)
    roots = [j for j, p in enumerate(parents) if p < 0]
    return roots, [(list(js), [parents[j] for j in js]) for js in levels]


@numpy_or_torch
def bone_offsets(rest_joints: torch.Tensor, parents: Sequence[int] = SMPL_PARENTS) -> torch.Tensor:
    """o_j = J_j - J_parent(j), o_root = J_root for rest joints (..., J, 3) -> (..., J, 3)."""
    par = [p if p >= 0 else j for j, p in enumerate(parents)]
    off = rest_joints - rest_joints[..., par, :]
    roots = [j for j, p in enumerate(parents) if p < 0]
    off[..., roots, :] = rest_joints[..., roots, :]
    return off


@numpy_or_torch
def tree_kinematics(
    rotmats: torch.Tensor, offsets: torch.Tensor, parents: Sequence[int] = SMPL_PARENTS
):
    """Global rotations (B, J, 3, 3) and joint positions (B, J, 3) of a tree.

    rotmats (B, J, 3, 3) local rotations, offsets (B, J, 3) or (J, 3) bone offsets (see the
    module docstring), parents (J,) with -1 for a root and every parent before its children.
    """
    roots, plan = _level_plan(tuple(int(p) for p in parents))
    n = rotmats.shape[0]
    offsets = offsets.expand(n, -1, -1)
    glob = rotmats.new_empty(rotmats.shape)
    pos = rotmats.new_empty(offsets.shape)
    glob[:, roots] = rotmats[:, roots]
    pos[:, roots] = offsets[:, roots]
    for js, ps in plan:
        g_par = glob[:, ps]
        pos[:, js] = pos[:, ps] + (g_par @ offsets[:, js, :, None])[..., 0]
        glob[:, js] = g_par @ rotmats[:, js]
    return glob, pos


@numpy_or_torch
def forward_kinematics(
    rotmats: torch.Tensor, rest_joints: torch.Tensor, parents: Sequence[int] = SMPL_PARENTS
):
    """SMPL forward kinematics: global rotations (B, J, 3, 3) and posed joints (B, J, 3).

    rotmats (B, J, 3, 3) local rotations; rest_joints (B, J, 3) or (1, J, 3) or (J, 3) rest
    joint positions (one skeleton per frame or one for all). The root stays at its rest
    position: add the translation afterwards.
    """
    return tree_kinematics(rotmats, bone_offsets(rest_joints, parents), parents)


@numpy_or_torch
def global_rotations(rotmats: torch.Tensor, parents: Sequence[int] = SMPL_PARENTS) -> torch.Tensor:
    """G_j = G_parent(j) R_j only (B, J, 3, 3), for callers without a skeleton."""
    return tree_kinematics(rotmats, rotmats.new_zeros(rotmats.shape[1:-1]), parents)[0]


@numpy_or_torch
def rest_positions(offsets: torch.Tensor, parents: Sequence[int]) -> torch.Tensor:
    """Joint positions (J, 3) or (B, J, 3) of a tree at rest from its bone offsets: p_j = p_parent + o_j."""
    flat = offsets.reshape((-1,) + offsets.shape[-2:])
    eye = torch.eye(3, dtype=offsets.dtype, device=offsets.device).expand(
        flat.shape[0], flat.shape[1], 3, 3
    )
    return tree_kinematics(eye, flat, parents)[1].reshape(offsets.shape)
