"""How an SMPL rig's bones are laid out, and SMPL motion turned into its bones' channels and back.

Two options of a new rig (``RigStyle``), neither of which changes the motion:

- a **root bone** (``ROOT_BONE_NAME``) on the ground at the armature's origin, parent of the
  pelvis, for game engines' root motion: it carries the pelvis's ground-plane translation and
  its heading (the twist of the pelvis rotation about the vertical), the pelvis the rest.
  With the root's world transform (R_r, t_r) about the origin and the pelvis's SMPL world
  transform (R_0 about the rest pelvis J0, translation t), the pelvis bone's own channels are
  R_p = R_r^T R_0 and t_p = R_r^T (J0 + t - t_r) - J0, so that R_r (J0 + t_p + R_p x) + t_r =
  J0 + t + R_0 x for every point x: the same world motion, a different split.
- **bones that point at their children** (``bone_axes = CHILDREN``): a skeleton to look at and
  pose, bone Y along the bone. A bone's rest frame M_j (its axes in SMPL coordinates) is then
  not SMPL's frame, and the SMPL local rotation L_j is keyed as M_j^T L_j M_j (a location as
  M_j^T t): Blender composes pose = parent pose (rest_p^-1 rest_j) basis_j, which gives the
  bone the world rotation G_j of SMPL's joint and the mesh the same deformation (SMPL's axes
  are the case M_j = I, ``rig.py``'s bone-frame trick).

Everything here is batched over frames (numpy); nothing loops over frames in Python.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.model.skeleton import SMPL_JOINT_NAMES, SMPL_PARENTS

ROOT_BONE_NAME = "root"
BONE_AXES_PROP = "lsmplify_bone_axes"  # on a rig: "SMPL" (the default) or "CHILDREN"
BONE_AXES = ("SMPL", "CHILDREN")
# a bone whose joint has several children points at this one (the spine, not a hip or collar)
MAIN_CHILD = {0: 3, 9: 12}
# length of a leaf bone (head, feet, hands) pointing on along its parent bone, metres
LEAF_LENGTH_M = 0.08


@dataclass(frozen=True)
class RigStyle:
    """A new rig's layout: a root bone or not, SMPL's axes or bones pointing at their children."""

    root_bone: bool = False
    bone_axes: str = "SMPL"


def style_from_settings(settings) -> RigStyle:
    """The panel's rig options (``scene.lsmplify``)."""
    return RigStyle(
        root_bone=bool(settings.root_bone),
        bone_axes="CHILDREN" if settings.bones_to_children else "SMPL",
    )


def has_root_bone(rig_obj) -> bool:
    return ROOT_BONE_NAME in rig_obj.data.bones


def bone_tails(heads: np.ndarray, bone_axes: str, up: np.ndarray) -> np.ndarray:
    """(24, 3) tails for bones with heads ``heads`` (24, 3) (Blender coordinates): ``up`` from
    each head (SMPL's axes), or at the main child's head, leaves on along their parent bone."""
    if bone_axes == "SMPL":
        return heads + up
    tails = np.empty_like(heads)
    for j in range(len(SMPL_JOINT_NAMES)):
        kids = [c for c, p in enumerate(SMPL_PARENTS) if p == j]
        if kids:
            tails[j] = heads[MAIN_CHILD.get(j, kids[0])]
        else:
            d = heads[j] - heads[SMPL_PARENTS[j]]
            tails[j] = heads[j] + d / np.linalg.norm(d) * LEAF_LENGTH_M
    return tails


def smpl_axes(rig_obj) -> bool:
    """Whether the rig's bones have SMPL's axes (``rest_frames`` is the identity)."""
    return rig_obj.get(BONE_AXES_PROP, "SMPL") != "CHILDREN"


def rest_frames(rig_obj) -> np.ndarray:
    """(24, 3, 3) each SMPL bone's rest axes in SMPL coordinates, M_j = A^T R_rest_j (A: SMPL's
    Y up -> Blender's Z up; R_rest_j: the bone's ``matrix_local`` rotation); the identity for a
    rig with SMPL's axes (whose float32 rest matrices are then not read, so its keys stay exact)."""
    n = len(SMPL_JOINT_NAMES)
    if smpl_axes(rig_obj):
        return np.broadcast_to(np.eye(3), (n, 3, 3)).copy()
    from .rig import SMPL_TO_BLENDER

    a = np.asarray(SMPL_TO_BLENDER, dtype=np.float64)
    bones = rig_obj.data.bones
    rest = np.array(
        [np.array(bones[b].matrix_local, dtype=np.float64)[:3, :3] for b in SMPL_JOINT_NAMES]
    )
    u, _, vt = np.linalg.svd(a.T @ rest)  # float32 matrices made orthonormal again
    return u @ vt


def pelvis_rest_smpl(rig_obj) -> np.ndarray:
    """(3,) the rig's rest pelvis joint J0 in SMPL coordinates (the root bone's head is the origin)."""
    from .rig import blender_to_smpl

    return blender_to_smpl(np.array(rig_obj.data.bones[SMPL_JOINT_NAMES[0]].head_local))


def heading(rot0: np.ndarray) -> np.ndarray:
    """(T,) the heading of pelvis rotations (T, 3, 3): the angle of their twist about SMPL's up
    axis Y (swing-twist split: 2 atan2(q_y, q_w) of the rotation's quaternion), unwrapped over
    time so the root turns the short way between frames."""
    # R02 - R20 = 4 w y and R00 + R22 = 2 (w^2 - y^2) for the quaternion (w, x, y, z), so
    # atan2 of the two is the double angle 2 atan2(y, w), with no quaternion to build
    s = rot0[:, 0, 2] - rot0[:, 2, 0]
    c = rot0[:, 0, 0] + rot0[:, 2, 2]
    return np.unwrap(np.arctan2(s, c))


def rot_y(angle: np.ndarray) -> np.ndarray:
    """(T, 3, 3) rotations by ``angle`` (T,) about SMPL's Y axis."""
    c, s = np.cos(angle), np.sin(angle)
    out = np.zeros(angle.shape + (3, 3))
    out[:, 0, 0], out[:, 0, 2], out[:, 1, 1], out[:, 2, 0], out[:, 2, 2] = c, s, 1.0, -s, c
    return out


def split_root(rot0: np.ndarray, trans: np.ndarray, pelvis_rest: np.ndarray):
    """SMPL's pelvis motion (R_0 (T, 3, 3), t (T, 3)) split into the root bone's (R_r, t_r) -
    heading and ground-plane position of the pelvis (y = 0) - and the pelvis's own (R_p, t_p)."""
    r_root = rot_y(heading(rot0))
    world = pelvis_rest + trans
    t_root = world * np.array([1.0, 0.0, 1.0])
    r_p = np.swapaxes(r_root, -1, -2) @ rot0
    t_p = np.einsum("tji,tj->ti", r_root, world - t_root) - pelvis_rest
    return r_root, t_root, r_p, t_p


def join_root(r_root, t_root, r_p, t_p, pelvis_rest):
    """``split_root`` undone: SMPL's pelvis rotation and translation (R_0, t)."""
    world = np.einsum("tij,tj->ti", r_root, pelvis_rest + t_p) + t_root
    return r_root @ r_p, world - pelvis_rest


def to_bone_channels(rotmats: np.ndarray, trans: np.ndarray, rig_obj):
    """SMPL motion (T, 24, 3, 3) + (T, 3) as the rig's channels: (rotations (T, B, 3, 3) of the
    bones ``channel_bones(rig_obj)``, the pelvis's location (T, 3), the root bone's location
    (T, 3) or None), each in its bone's own rest frame."""
    frames = rest_frames(rig_obj)
    if smpl_axes(rig_obj):  # M = I: the channels are SMPL's (copied, not multiplied: exact)
        rot, loc0 = np.array(rotmats, dtype=np.float64), np.array(trans, dtype=np.float64)
    else:
        rot = np.einsum("jba,tjbc,jcd->tjad", frames, rotmats, frames)  # M^T L M
        loc0 = np.einsum("ba,tb->ta", frames[0], trans)
    if not has_root_bone(rig_obj):
        return rot, loc0, None
    r_root, t_root, r_p, t_p = split_root(rotmats[:, 0], trans, pelvis_rest_smpl(rig_obj))
    rot[:, 0] = np.einsum("ba,tbc,cd->tad", frames[0], r_p, frames[0])
    loc0 = np.einsum("ba,tb->ta", frames[0], t_p)
    return np.concatenate([rot, r_root[:, None]], 1), loc0, t_root  # the root keeps SMPL's axes


def from_bone_channels(rot: np.ndarray, loc0: np.ndarray, root_loc, rig_obj):
    """``to_bone_channels`` undone: SMPL's (rotmats (T, 24, 3, 3), trans (T, 3))."""
    frames = rest_frames(rig_obj)
    body = rot[:, : len(SMPL_JOINT_NAMES)]
    if smpl_axes(rig_obj):
        rotmats, trans = np.array(body, dtype=np.float64), np.array(loc0, dtype=np.float64)
    else:
        rotmats = np.einsum("jab,tjbc,jdc->tjad", frames, body, frames)
        trans = np.einsum("ab,tb->ta", frames[0], loc0)
    if root_loc is None:
        return rotmats, trans
    rotmats[:, 0], trans = join_root(
        rot[:, -1], root_loc, rotmats[:, 0], trans, pelvis_rest_smpl(rig_obj)
    )
    return rotmats, trans


def channel_bones(rig_obj) -> list[str]:
    """The bones whose rotations ``to_bone_channels`` gives, in its order."""
    return list(SMPL_JOINT_NAMES) + ([ROOT_BONE_NAME] if has_root_bone(rig_obj) else [])
