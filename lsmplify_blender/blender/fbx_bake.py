"""The FBX exporter's animation bake for an SMPL rig, vectorised over frames.

Blender's exporter bakes by setting every frame of the scene in turn and asking each exported
object and bone for its transform (``io_scene_fbx.export_fbx_bin.fbx_animations_do``): ~0.7 ms
per frame, 7.6 s of a 10,000-frame export. An LSMPLify rig's action already holds one key per
frame per channel, and with no constraints, drivers or NLA between the keys and the pose, every
exported value follows from the keys in closed form:

- a bone's FBX transform is ``R @ C^-1 @ B(f) @ C``: ``B(f)`` its pose basis (location,
  quaternion, scale keys: T R S), ``C`` the exporter's bone correction matrix and ``R`` the
  exporter's own rest transform of the bone (``fbx_object_matrix(rest=True)``). This is the
  exporter's ``C_p^-1 P_p^-1 P_b C`` with ``P_p^-1 P_b = (rest_p^-1 rest_b) B`` (a bone that
  inherits its parent's rotation and scale, with a local location);
- objects that are not bones (the armature, its meshes) and shape keys without keys keep their
  values, keyed shape keys read their keys;
- the Euler angles are Blender's (``Quaternion.to_euler('XYZ', previous)``): of the two XYZ
  solutions of each rotation, each wrapped by whole turns to within 180 deg of the previous
  frame's, the one nearer it (``compatible_eulers``).

``baked_stack`` returns exactly what ``fbx_animations_do`` returns, built with the exporter's own
curve wrappers and keys, or None when the scene is not a case it covers (then the exporter bakes
as before). A check at the current frame compares both ways of every object's transform.
"""

from __future__ import annotations

import math

import bpy
import numpy as np

from .pose_eval import channel_values, key_curves, pose_bases, rig_curves

# the two ways of a transform at the current frame agree within this (float32 mathutils)
CHECK_TOLERANCE = 1e-4


def euler_pair(rot: np.ndarray):
    """(..., 3, 3) rotation matrices -> the two XYZ Euler solutions (..., 3) each, as Blender's
    ``mat3_normalized_to_eul2`` gives them (one solution twice near gimbal lock)."""
    cy = np.hypot(rot[..., 0, 0], rot[..., 1, 0])
    e1 = np.stack(
        [
            np.arctan2(rot[..., 2, 1], rot[..., 2, 2]),
            np.arctan2(-rot[..., 2, 0], cy),
            np.arctan2(rot[..., 1, 0], rot[..., 0, 0]),
        ],
        -1,
    )
    e2 = np.stack(
        [
            np.arctan2(-rot[..., 2, 1], -rot[..., 2, 2]),
            np.arctan2(-rot[..., 2, 0], -cy),
            np.arctan2(-rot[..., 1, 0], -rot[..., 0, 0]),
        ],
        -1,
    )
    locked = cy <= 16.0 * np.finfo(np.float32).eps
    if locked.any():
        e_lock = np.stack(
            [
                np.arctan2(-rot[..., 1, 2], rot[..., 1, 1]),
                np.arctan2(-rot[..., 2, 0], cy),
                np.zeros_like(cy),
            ],
            -1,
        )
        e1 = np.where(locked[..., None], e_lock, e1)
        e2 = np.where(locked[..., None], e_lock, e2)
    return e1, e2


def _turns(delta: np.ndarray) -> np.ndarray:
    """Blender's ``compatible_eul``: the whole turns (2 pi) that bring ``delta`` (an angle's
    change) to within pi, for each entry past pi either way; 0 elsewhere."""
    out = np.floor(np.abs(delta) / (2 * math.pi) + 0.5) * np.sign(delta)
    return np.where(np.abs(delta) > math.pi, out, 0.0)


def _wrapped_distance(e: np.ndarray, previous: np.ndarray) -> np.ndarray:
    d = e - previous
    return np.abs(d - 2 * math.pi * _turns(d)).sum(-1)


def compatible_eulers(e1: np.ndarray, e2: np.ndarray, first_previous: np.ndarray) -> np.ndarray:
    """(F, N, 3) Euler solution pairs of N rotations over F frames -> (F, N, 3) the Euler angles
    that ``to_euler('XYZ', previous)`` gives frame by frame from ``first_previous`` (N, 3).

    Which solution a frame takes depends on the previous frame's angles only modulo whole turns,
    that is on the previous frame's choice: both transitions are computed for every frame at
    once and the binary choice is then followed through the frames (one small step per frame);
    the whole turns follow from the wrapped changes' running sum."""
    f = e1.shape[0]
    pair = np.stack([e1, e2])  # (2, F, N, 3)
    first = np.stack([_wrapped_distance(e, first_previous) for e in (e1[0], e2[0])])
    # after[k] (F - 1, N): the solution frame f + 1 takes when frame f took solution k
    after = np.stack(
        [
            _wrapped_distance(e1[1:], pair[k, :-1]) > _wrapped_distance(e2[1:], pair[k, :-1])
            for k in (0, 1)
        ]
    )
    choice = np.empty(e1.shape[:2], dtype=bool)
    choice[0] = first[0] > first[1]
    for i in range(f - 1):
        choice[i + 1] = np.where(choice[i], after[1, i], after[0, i])
    raw = np.where(choice[..., None], e2, e1)
    steps = np.diff(np.concatenate([first_previous[None], raw]), axis=0)
    path = first_previous + np.cumsum(steps - 2 * math.pi * _turns(steps), axis=0)
    return raw + 2 * math.pi * np.round((path - raw) / (2 * math.pi))


def decompose(mats: np.ndarray):
    """(..., 4, 4) -> (location, rotation (..., 3, 3), scale) as ``Matrix.decompose`` splits
    them (a negative determinant goes into the scale, all three axes)."""
    m3 = mats[..., :3, :3]
    scale = np.linalg.norm(m3, axis=-2)
    rot = m3 / scale[..., None, :]
    flip = np.linalg.det(rot) < 0
    rot = np.where(flip[..., None, None], -rot, rot)
    scale = np.where(flip[..., None], -scale, scale)
    return mats[..., :3, 3], rot, scale


def _matrix(m) -> np.ndarray:
    return np.array(m, dtype=np.float64)


# ----------------------------------------------------------------------------- what it covers
def _covered(scene_data):
    """(rig, its curves) when every exported object is one SMPL rig, its bones and its meshes
    with nothing animating them but keys; else None."""
    if scene_data.data_cameras:
        return None
    rigs = {o.bdata for o in scene_data.objects if o.is_object and o.bdata.type == "ARMATURE"}
    if len(rigs) != 1:
        return None
    rig = rigs.pop()
    curves = rig_curves(rig)
    if curves is None:
        return None
    for o in scene_data.objects:
        if o.is_dupli or (o.is_bone and o._ref != rig):
            return None
        if o.is_object and o.bdata != rig:
            ob = o.bdata
            if ob.parent != rig or ob.parent_type != "OBJECT" or ob.constraints:
                return None
            if ob.animation_data is not None:
                return None
    for me in scene_data.data_deformers_shape:
        if me.shape_keys is not None and key_curves(me.shape_keys) is None:
            return None
    return rig, curves


# ----------------------------------------------------------------------------- the values
def bone_transforms(scene_data, rig, curves, bones, frames) -> np.ndarray | None:
    """(F, B, 4, 4) the FBX local transforms of the exported ``bones`` (ObjectWrappers) at
    ``frames``: ``R @ C^-1 @ B(f) @ C``; None when this disagrees with the exporter's own
    transform at the current frame (something else poses the bones)."""
    corr = scene_data.settings.bone_correction_matrix
    c = np.eye(4) if corr is None else _matrix(corr)
    c_inv = np.linalg.inv(c)
    rest = np.stack([_matrix(b.fbx_object_matrix(scene_data, rest=True)) for b in bones])
    left, right = rest @ c_inv, c  # (B, 4, 4), (4, 4)
    now = np.stack([_matrix(b.bdata_pose_bone.matrix_basis) for b in bones])
    exporter_now = np.stack([_matrix(b.fbx_object_matrix(scene_data)) for b in bones])
    if not np.allclose(left @ now @ right, exporter_now, atol=CHECK_TOLERANCE):
        return None
    basis = pose_bases(rig, curves, [b.bdata.name for b in bones], frames)
    current = scene_data.scene.frame_current
    at = np.flatnonzero(frames == current)
    if at.size and not np.allclose(basis[at[0]], now, atol=CHECK_TOLERANCE):
        return None  # the keys do not give the pose Blender evaluated
    # left_b @ B @ C for every frame as one matrix product per bone (batched 4x4 products are slow)
    out = (basis.reshape(-1, 4) @ right).reshape(basis.shape)
    f = frames.size
    for j in range(len(bones)):  # left_j @ [X_1 X_2 ... X_F]: the frames' matrices side by side
        side = out[:, j].transpose(1, 0, 2).reshape(4, 4 * f)
        out[:, j] = (left[j] @ side).reshape(4, f, 4).transpose(1, 0, 2)
    return out


def transform_values(mats: np.ndarray, first_rot: np.ndarray) -> np.ndarray:
    """(F, N, 4, 4) FBX transforms -> (N, 9, F) location, rotation (Euler XYZ in degrees,
    continuous from ``first_rot`` (N, 3) radians) and scale, as the exporter keys them."""
    loc, rot, scale = decompose(mats)
    e1, e2 = euler_pair(rot)
    euler = compatible_eulers(e1, e2, first_rot)
    values = np.concatenate([loc, np.rad2deg(euler), scale], -1)  # (F, N, 9)
    return np.ascontiguousarray(values.transpose(1, 2, 0))


def shape_values(me, shapes, frames: np.ndarray) -> list:
    """Each of ``shapes``' value at ``frames`` (its keys clamped to the slider range, or its
    value), as the exporter reads ``shape.value`` frame by frame."""
    curves = key_curves(me.shape_keys) or {}
    out = []
    for shape in shapes:
        path = f'key_blocks["{bpy.utils.escape_identifier(shape.name)}"].value'
        v = channel_values(curves, path, 0, frames, shape.value)
        out.append(np.clip(v, shape.slider_min, shape.slider_max))
    return out


# ----------------------------------------------------------------------------- the stack
def _object_values(scene_data, rig, curves, objects, frames):
    """{ObjectWrapper: (N = 9, F) values} of the exported objects and bones, and their first
    (current frame) loc / rot / scale; None when the closed form does not hold."""
    first = {o: o.fbx_object_tx(scene_data) for o in objects}
    bones = [o for o in objects if o.is_bone]
    out = {}
    if bones:
        mats = bone_transforms(scene_data, rig, curves, bones, frames)
        if mats is None:
            return None
        start = np.array([tuple(first[b][1]) for b in bones], dtype=np.float64)
        out.update(zip(bones, transform_values(mats, start), strict=True))
    for o in objects:
        if not o.is_bone:  # the rig and its meshes: not animated (``_covered``)
            loc, rot, scale = first[o][:3]
            still = np.array([*loc, *np.rad2deg(tuple(rot)), *scale], dtype=np.float64)
            out[o] = np.repeat(still[:, None], frames.size, 1)
    return out, first


def baked_stack(export_fbx_bin, scene_data, f_start, f_end):
    """``fbx_animations_do(scene_data, None, f_start, f_end, False)`` (the scene's animation
    stack) computed from the keys, or None when the scene is not a case it covers."""
    covered = _covered(scene_data)
    if covered is None:
        return None
    rig, curves = covered
    settings, scene = scene_data.settings, scene_data.scene
    frames = np.arange(f_start, np.nextafter(f_end, np.inf), step=settings.bake_anim_step)
    objects = [o for o in scene_data.objects if not o.parented_to_armature]
    found = _object_values(scene_data, rig, curves, objects, frames)
    if found is None:
        return None
    values, first = found
    fps = scene.render.fps / scene.render.fps_base
    times = (frames / fps * export_fbx_bin.FBX_KTIME).astype(np.int64)
    anims = _transform_curves(export_fbx_bin, settings, objects, values, first, times)
    anims += _shape_curves(export_fbx_bin, scene_data, frames, times)
    animations: dict = {}
    for anim in anims:  # as fbx_animations_do ends
        anim.simplify(settings.bake_anim_simplify_factor, settings.bake_anim_step, False)
        if not anim:
            continue
        for obj_key, group_key, group, fbx_group, fbx_gname in anim.get_final_data(
            scene, None, False
        ):
            anim_data = animations.setdefault(obj_key, ("dummy_unused_key", {}))
            anim_data[1][fbx_group] = (group_key, group, fbx_gname)
    if not animations:
        return None
    return (
        export_fbx_bin.get_blender_anim_stack_key(scene, None),
        animations,
        export_fbx_bin.get_blender_anim_layer_key(scene, None),
        scene.name.encode(),
        f_start,
        f_end,
    )


def _transform_curves(export_fbx_bin, settings, objects, values, first, times) -> list:
    """The exporter's location / rotation / scale curve wrappers of each object, keyed."""
    wrapper = export_fbx_bin.AnimationCurveNodeWrapper
    simplify_off = settings.bake_anim_simplify_factor == 0.0
    out = []
    for o in objects:
        loc, rot, scale = first[o][:3]
        force = simplify_off or (o.is_bone and settings.bake_anim_use_all_bones)
        sek = settings.bake_anim_force_startend_keying
        rot_deg = tuple(np.rad2deg(tuple(rot)))
        curves = [
            wrapper(o.key, kind, force, sek, default)
            for kind, default in (
                ("LCL_TRANSLATION", tuple(loc)),
                ("LCL_ROTATION", rot_deg),
                ("LCL_SCALING", tuple(scale)),
            )
        ]
        for i, curve in enumerate(curves):
            curve.set_keyframes(times, values[o][3 * i : 3 * i + 3])
        out += curves
    return out


def _shape_curves(export_fbx_bin, scene_data, frames, times) -> list:
    """The exporter's shape-key curve wrappers (DeformPercent, 100 x the value), keyed."""
    wrapper = export_fbx_bin.AnimationCurveNodeWrapper
    force = scene_data.settings.bake_anim_simplify_factor == 0.0
    sek = scene_data.settings.bake_anim_force_startend_keying
    out = []
    for me, (me_key, _shapes_key, shapes) in scene_data.data_deformers_shape.items():
        if not me.shape_keys.use_relative:
            continue
        for shape, v in zip(shapes, shape_values(me, list(shapes), frames), strict=True):
            channel_key = shapes[shape][0]
            curve = wrapper(channel_key, "SHAPE_KEY", force, sek, (0.0,))
            curve.add_group(me_key, shape.name, shape.name, (shape.name,))
            curve.set_keyframes(times, v * 100.0)
            out.append(curve)
    return out
