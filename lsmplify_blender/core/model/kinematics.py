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
from dataclasses import dataclass

import torch

from .backend import numpy_or_torch
from .skeleton import SMPL_PARENTS, levels_of


def selector(ids: Sequence[int]):
    """A slice when ``ids`` are consecutive (SMPL's levels all are: basic indexing, no gather or
    scatter kernel), else the index tensor for ``index_select`` / ``index_copy_`` (made once per
    set of ids and shared: callers only read it)."""
    return _selector(tuple(int(i) for i in ids))


@functools.lru_cache(maxsize=1024)
def _selector(ids: tuple[int, ...]):
    # analytic IK asks for the same few dozen sets on every call (~12 calls a calibrated solve):
    # building the tensor each time was a few aten ops per group and call
    if ids == tuple(range(ids[0], ids[0] + len(ids))):
        return slice(ids[0], ids[0] + len(ids))
    with torch.inference_mode(False):  # kept for autograd too, though first asked for in IK's
        return torch.tensor(ids, dtype=torch.long)


def parent_selector(ids: Sequence[int]):
    """``selector`` of joints read once per child (parents): a length-1 slice, broadcast, when
    they are all one joint (SMPL's hips and spine1 share the pelvis)."""
    return slice(ids[0], ids[0] + 1) if len(set(ids)) == 1 else selector(ids)


def take(x: torch.Tensor, sel, dim: int = 1) -> torch.Tensor:
    """``x`` at the joints ``sel`` (a ``selector``) along ``dim``.

    A slice is a view of ``x``, which the kinematic loops go on writing into (``put``); under
    autograd it is copied, as indexing with a list did, so the graph keeps the values it used
    (the optimiser differentiates forward kinematics)."""
    if isinstance(sel, slice):
        out = x[(slice(None),) * dim + (sel,)]
        return out.clone() if x.requires_grad and torch.is_grad_enabled() else out
    return x.index_select(dim, sel.to(x.device))


def put(x: torch.Tensor, sel, value: torch.Tensor, dim: int = 1) -> None:
    """``x[..., sel, ...] = value`` along ``dim`` in place."""
    if isinstance(sel, slice):
        x[(slice(None),) * dim + (sel,)] = value
    else:
        x.index_copy_(dim, sel.to(x.device), value)


@dataclass(frozen=True)
class LevelStep:
    """One tree level: its joints and their parents as ``selector``s."""

    joints: object
    parents: object
    joint_ids: tuple[int, ...]
    parent_ids: tuple[int, ...]


@functools.lru_cache(maxsize=32)
def level_plan(parents: tuple[int, ...]):
    """The roots (a selector) and one ``LevelStep`` per level of a tree, computed once per tree.
    A level whose joints share one parent reads it as a length-1 slice broadcast over them."""
    levels = levels_of(parents)
    roots = selector([j for j, p in enumerate(parents) if p < 0])
    steps = []
    for js in levels:
        ps = [parents[j] for j in js]
        steps.append(LevelStep(selector(js), parent_selector(ps), tuple(js), tuple(ps)))
    return roots, tuple(steps)


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
    roots, plan = level_plan(tuple(int(p) for p in parents))
    n = rotmats.shape[0]
    offsets = offsets.expand(n, -1, -1)
    glob = rotmats.new_empty(rotmats.shape)
    pos = rotmats.new_empty(offsets.shape)
    put(glob, roots, take(rotmats, roots))
    put(pos, roots, take(offsets, roots))
    for step in plan:
        g_par = take(glob, step.parents)
        off = take(offsets, step.joints)
        put(pos, step.joints, take(pos, step.parents) + (g_par @ off[..., None])[..., 0])
        put(glob, step.joints, g_par @ take(rotmats, step.joints))
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
def local_rotations(glob: torch.Tensor, parents: Sequence[int] = SMPL_PARENTS) -> torch.Tensor:
    """R_j = G_parent(j)^T G_j, R_root = G_root (B, J, 3, 3): the local rotations whose forward
    kinematics gives the world rotations ``glob`` (B, J, 3, 3) (``global_rotations`` undone), for
    every joint at once."""
    par = [p if p >= 0 else j for j, p in enumerate(parents)]
    local = glob[:, par].transpose(-1, -2) @ glob
    roots = [j for j, p in enumerate(parents) if p < 0]
    local[:, roots] = glob[:, roots]
    return local


@numpy_or_torch
def rest_positions(offsets: torch.Tensor, parents: Sequence[int]) -> torch.Tensor:
    """Joint positions (J, 3) or (B, J, 3) of a tree at rest from its bone offsets: p_j = p_parent + o_j."""
    flat = offsets.reshape((-1,) + offsets.shape[-2:])
    eye = torch.eye(3, dtype=offsets.dtype, device=offsets.device).expand(
        flat.shape[0], flat.shape[1], 3, 3
    )
    return tree_kinematics(eye, flat, parents)[1].reshape(offsets.shape)
