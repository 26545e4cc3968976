"""An armature's pose at many frames from its action's keys, in closed form, with no frame set.

Blender evaluates a pose one frame at a time (``scene.frame_set``: ~0.3-2 ms per frame, 2.7 s
for 10,000 frames of a CMU BVH rig); an armature posed by its keys alone (no constraints,
drivers or NLA, bones that inherit their parent's rotation and scale) has the pose

    P_b(f) = P_parent(f) @ (rest_parent^-1 @ rest_b) @ B_b(f),   B_b = T(location) R S(scale)

(Blender's ``BKE_pose_where_is_bone`` with the bones' ``matrix_local`` rests), so all frames
follow from the keys in a few array operations: ``armature_pose``. ``rig_curves`` says whether
an armature is such a case; callers check the result against Blender's own evaluation at a
few frames and fall back to it (``sources.sample_armature``, ``fbx_bake``).
"""

from __future__ import annotations

import bpy
import numpy as np

BONE_CHANNELS = ("location", "rotation_quaternion", "rotation_euler", "scale")
EULER_ORDERS = ("XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX")


def key_curves(idb) -> dict | None:
    """{(data_path, index): F-curve} of ``idb``'s action; None when its animation is more than
    one action's keys (drivers, NLA tracks, a blended or partial action, curve modifiers,
    muted curves)."""
    from .keyframes import action_fcurves

    anim = idb.animation_data
    if anim is None or anim.action is None:
        return {} if anim is None or not (anim.drivers or anim.nla_tracks) else None
    if anim.drivers or anim.nla_tracks or anim.use_tweak_mode:
        return None
    if anim.action_influence != 1.0 or anim.action_blend_type != "REPLACE":
        return None
    curves = action_fcurves(anim.action, getattr(anim, "action_slot", None))
    if any(fc.modifiers or fc.mute for fc in curves):
        return None
    return {(fc.data_path, fc.array_index): fc for fc in curves}


def bone_path(bone: str, channel: str) -> str:
    return f'pose.bones["{bpy.utils.escape_identifier(bone)}"].{channel}'


def _bone_poses_by_keys(pb, curves: dict) -> bool:
    """Whether the pose bone's pose is its parent's, its rest and its own channels alone."""
    bone = pb.bone
    if pb.constraints or not bone.use_local_location or not bone.use_inherit_rotation:
        return False
    return bone.inherit_scale == "FULL" and pb.rotation_mode in ("QUATERNION", *EULER_ORDERS)


def _still_deltas(obj) -> bool:
    return (
        not any(obj.delta_location)
        and not any(obj.delta_rotation_euler)
        and tuple(obj.delta_rotation_quaternion) == (1.0, 0.0, 0.0, 0.0)
        and tuple(obj.delta_scale) == (1.0, 1.0, 1.0)
    )


def rig_curves(rig, object_motion: bool = False) -> dict | None:
    """The armature's curves when they are only bone locations, rotations and scales (and
    custom properties; with ``object_motion`` the armature object's own location, rotation and
    scale too) on an unparented, unconstrained armature whose bones pose by their keys alone;
    else None."""
    curves = key_curves(rig)
    if curves is None or rig.constraints or rig.parent is not None:
        return None
    known = {bone_path(b.name, c) for b in rig.pose.bones for c in BONE_CHANNELS}
    if object_motion and rig.rotation_mode in ("QUATERNION", *EULER_ORDERS):
        known |= {"location", "rotation_euler", "rotation_quaternion", "scale"}
    if any(p not in known and not p.startswith('["') for p, _ in curves):
        return None
    if object_motion and not _still_deltas(rig):
        return None
    if not all(_bone_poses_by_keys(pb, curves) for pb in rig.pose.bones):
        return None
    return curves


def channel_values(curves: dict, path: str, index: int, frames: np.ndarray, still: float):
    """A channel's values at ``frames``: its keys (``keyframes.sample_fcurve``) or, unkeyed,
    its current value."""
    from .keyframes import sample_fcurve

    fc = curves.get((path, index))
    if fc is None or len(fc.keyframe_points) == 0:
        return np.full(frames.size, float(still))
    return sample_fcurve(fc, frames)


def euler_to_matrix(angles: np.ndarray, order: str) -> np.ndarray:
    """(..., 3) Euler angles (x, y, z, radians) -> (..., 3, 3) in Blender's convention: the
    axes applied in ``order`` (``XYZ``: X first, R = Rz Ry Rx)."""
    out = np.zeros(angles.shape[:-1] + (3, 3))
    out[..., [0, 1, 2], [0, 1, 2]] = 1.0
    for axis in order:
        # R_axis @ M mixes two rows of M: j' = c j - s k, k' = s j + c k (i = the axis)
        i = "XYZ".index(axis)
        j, k = (i + 1) % 3, (i + 2) % 3
        c, s = np.cos(angles[..., i])[..., None], np.sin(angles[..., i])[..., None]
        row_j, row_k = out[..., j, :].copy(), out[..., k, :]
        out[..., j, :] = c * row_j - s * row_k
        out[..., k, :] = s * row_j + c * row_k
    return out


def _channels(curves, path, frames, still) -> np.ndarray:
    return np.stack(
        [channel_values(curves, path, c, frames, still[c]) for c in range(len(still))], -1
    )


def pose_bases(rig, curves: dict, bone_names, frames: np.ndarray) -> np.ndarray:
    """(F, B, 4, 4) the bones' pose basis matrices ``T @ R @ S`` at ``frames`` from their keys
    (each bone's rotation channel as its rotation mode says: quaternion or an Euler order)."""
    from ..core.model.rotations import quaternion_to_matrix
    from .keyframes import one_thread

    f, n = frames.size, len(bone_names)
    basis = np.zeros((f, n, 4, 4))
    basis[..., 3, 3] = 1.0
    rotations: dict = {}  # rotation mode -> ([bone index], [(F, 3 or 4) channel values])
    for j, name in enumerate(bone_names):
        pb = rig.pose.bones[name]
        if not pb.bone.use_connect:  # a connected bone's location is not used (BKE_pchan_to_mat4)
            loc = _channels(curves, bone_path(name, "location"), frames, pb.location)
            basis[:, j, :3, 3] = loc
        # times the rotation below: R @ diag(S)
        basis[:, j, :3, :3] = _channels(curves, bone_path(name, "scale"), frames, pb.scale)[
            :, None, :
        ]
        mode = pb.rotation_mode
        channel = "rotation_quaternion" if mode == "QUATERNION" else "rotation_euler"
        still = pb.rotation_quaternion if mode == "QUATERNION" else pb.rotation_euler
        at, values = rotations.setdefault(mode, ([], []))
        at.append(j)
        values.append(_channels(curves, bone_path(name, channel), frames, still))
    for mode, (at, values) in rotations.items():
        if mode == "QUATERNION":
            with one_thread():
                rot = quaternion_to_matrix(np.stack(values, 1))  # (F, Q, 3, 3)
        else:
            rot = euler_to_matrix(np.stack(values, 1), mode)
        basis[:, at, :3, :3] *= rot
    return basis


def _times(m: np.ndarray, mats: np.ndarray) -> np.ndarray:
    """(4, 4) @ (F, 4, 4) as one matrix product: the frames' matrices side by side."""
    f = mats.shape[0]
    side = mats.transpose(1, 0, 2).reshape(4, 4 * f)
    return (m @ side).reshape(4, f, 4).transpose(1, 0, 2)


def armature_pose(rig, curves: dict, frames: np.ndarray) -> np.ndarray:
    """(F, B, 4, 4) every pose bone's armature-space matrix (``PoseBone.matrix``) at ``frames``,
    in ``rig.pose.bones`` order, by forward kinematics over the rest matrices."""
    names = [pb.name for pb in rig.pose.bones]
    index = {n: i for i, n in enumerate(names)}
    bones = rig.data.bones
    rest = np.stack([np.array(bones[n].matrix_local, dtype=np.float64) for n in names])
    parents = [index[bones[n].parent.name] if bones[n].parent else -1 for n in names]
    basis = pose_bases(rig, curves, names, frames)
    pose = np.empty_like(basis)
    done = [False] * len(names)

    def solve(i: int) -> None:
        p = parents[i]
        if p < 0:
            pose[:, i] = _times(rest[i], basis[:, i])
        else:
            if not done[p]:
                solve(p)
            pose[:, i] = pose[:, p] @ _times(np.linalg.inv(rest[p]) @ rest[i], basis[:, i])
        done[i] = True

    for i in range(len(names)):
        if not done[i]:
            solve(i)
    return pose


def object_matrices(obj, curves: dict, frames: np.ndarray) -> np.ndarray:
    """(F, 4, 4) an unparented, unconstrained object's ``matrix_world`` at ``frames`` from its own
    location, rotation and scale keys (``T @ R @ S``; ``rig_curves(object_motion=True)``)."""
    from ..core.model.rotations import quaternion_to_matrix

    def channel(path, still):
        return np.stack(
            [channel_values(curves, path, c, frames, still[c]) for c in range(len(still))], -1
        )

    out = np.zeros((frames.size, 4, 4))
    out[:, 3, 3] = 1.0
    if obj.rotation_mode == "QUATERNION":
        rot = quaternion_to_matrix(channel("rotation_quaternion", obj.rotation_quaternion))
    else:
        rot = euler_to_matrix(channel("rotation_euler", obj.rotation_euler), obj.rotation_mode)
    out[:, :3, :3] = rot * channel("scale", obj.scale)[:, None, :]
    out[:, :3, 3] = channel("location", obj.location)
    return out
