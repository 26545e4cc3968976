"""Write SMPL motion as keyframes on an SMPL rig (see ``rig.py``), in bulk, and read it back.

With the rig's bone-frame trick the SMPL local rotation of joint j goes straight into
``pose.bones[name].rotation_quaternion`` and SMPL's root translation straight into the
pelvis bone's ``location`` (the pelvis rest frame is SMPL's frame and its head is the
rest pelvis joint, so the bone's location offset is exactly SMPL's ``transl``).

A rig made with a root bone or with bones pointing at their children keys other channels for
the same motion; ``rig_style`` turns SMPL motion into them and back (the default rig's
channels are SMPL's, unchanged).

Keys are written with ``keyframe_points.add`` + ``foreach_set`` (never one
``keyframe_insert`` per key), and F-curves are created the way each Blender version
wants, chosen by feature detection:

- layered actions (4.4+, the only kind in 5.0, which removed ``Action.fcurves``): a slot
  for the object, one layer, one keyframe strip, its channelbag's F-curves; the slot is
  assigned to the object's animation data;
- legacy actions (4.2, no slots): ``Action.fcurves.new``; where slots exist but the
  layered API fails, the slot Blender made is assigned explicitly (a legacy F-curve on a
  new action in 4.4/4.5 otherwise leaves the slot unassigned and nothing animates).
"""

from __future__ import annotations

from dataclasses import dataclass

import bpy
import numpy as np
import torch

from ..core.errors import LSMPLifyError
from ..core.model.rotations import matrix_to_quaternion, quaternion_to_matrix
from ..core.model.skeleton import NUM_JOINTS, SMPL_JOINT_NAMES
from ..core.model.skinning import pose_feature
from .rig import has_pose_keys, pose_key_names

FIT_ERROR_PROP = "lsmplify_fit_error_mm"
FIT_ERROR_DESCRIPTION = "per-frame mean distance to the input keypoints (mm)"
PELVIS_BONE = SMPL_JOINT_NAMES[0]
_GROUP_FIT = "LSMPLify"


def _rot_path(bone: str) -> str:
    return f'pose.bones["{bone}"].rotation_quaternion'


def _loc_path(bone: str) -> str:
    return f'pose.bones["{bone}"].location'


def _as_numpy(x, dtype=np.float64) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _enum_value(struct, prop: str, identifier: str) -> int:
    return struct.bl_rna.properties[prop].enum_items[identifier].value


def one_thread():
    """A block with torch on one intra-op thread, as the core solves (``core.device.cpu_threads``):
    the Blender side's batched rotation conversions (240,000 matrices for 10,000 frames) take
    0.12 s on one thread and 0.38 s on two on a busy 2-core CPU, where the pool synchronises
    longer than it computes."""
    from ..core.device import cpu_threads

    return cpu_threads(torch.device("cpu"))


def rotmats_to_continuous_quaternions(rotmats) -> np.ndarray:
    """(T, J, 3, 3) -> (T, J, 4) quaternions (w, x, y, z), signs flipped so that each key has a
    non-negative dot product with the previous one (no long-way-round interpolation)."""
    with one_thread():
        q = matrix_to_quaternion(_as_numpy(rotmats))  # float64 numpy in and out
    if q.shape[0] > 1:
        dots = np.einsum("tjc,tjc->tj", q[1:], q[:-1])
        step = np.where(dots < 0, -1.0, 1.0)
        sign = np.concatenate([np.ones((1,) + step.shape[1:]), np.cumprod(step, axis=0)], 0)
        q = q * sign[..., None]
    return q


# ----------------------------------------------------------------- version-portable F-curves
class _FCurveWriter:
    """Creates F-curves on a new action for one ID (an object, or a mesh's shape-key
    datablock with ``id_type="KEY"``), however this Blender wants them."""

    def __init__(self, action, obj, id_type: str = "OBJECT"):
        self.action = action
        self.obj = obj
        self.slot = None
        self._channelbag = None
        self._groups = {}
        if hasattr(action, "slots") and hasattr(action, "layers"):
            try:
                self.slot = action.slots.new(id_type=id_type, name=obj.name)
                layer = action.layers.new("Layer")
                strip = layer.strips.new(type="KEYFRAME")
                self._channelbag = strip.channelbag(self.slot, ensure=True)
            except (AttributeError, TypeError, RuntimeError):
                self._channelbag = None  # fall back to the legacy F-curve API below
        if self._channelbag is None and not hasattr(action, "fcurves"):
            raise LSMPLifyError(
                f"This Blender version ({bpy.app.version_string}) offers neither layered nor legacy "
                "actions through its Python API; keyframes cannot be written."
            )

    def _group(self, name: str):
        if name not in self._groups:
            owner = self._channelbag if self._channelbag is not None else self.action
            self._groups[name] = owner.groups.new(name)
        return self._groups[name]

    def new(self, data_path: str, index: int, group: str):
        if self._channelbag is not None:
            fc = self._channelbag.fcurves.new(data_path, index=index)
            fc.group = self._group(group)
            return fc
        return self.action.fcurves.new(data_path, index=index, action_group=group)

    def assign(self) -> None:
        anim = self.obj.animation_data or self.obj.animation_data_create()
        anim.action = self.action
        if hasattr(anim, "action_slot"):
            slot = self.slot
            if slot is None and len(self.action.slots):
                slot = self.action.slots[0]
            if slot is not None and anim.action_slot != slot:
                anim.action_slot = slot


def action_fcurves(action, slot=None) -> list:
    """All F-curves of ``action`` for ``slot`` (layered) or of the action (legacy)."""
    if hasattr(action, "layers") and len(getattr(action, "layers", ())):
        slots = [slot] if slot is not None else list(action.slots)
        out = []
        for layer in action.layers:
            for strip in layer.strips:
                if not hasattr(strip, "channelbag"):
                    continue
                for s in slots:
                    cb = strip.channelbag(s)
                    if cb is not None:
                        out.extend(cb.fcurves)
        return out
    return list(getattr(action, "fcurves", ()))


def _write_keys(fcurve, frames: np.ndarray, values: np.ndarray, linear: int) -> None:
    n = frames.size
    kp = fcurve.keyframe_points
    kp.add(n)
    co = np.empty(2 * n, dtype=np.float32)
    co[0::2] = frames
    co[1::2] = values
    kp.foreach_set("co", co)
    kp.foreach_set("interpolation", np.full(n, linear, dtype=np.int32))
    fcurve.update()


def _protect_previous_action(obj) -> None:
    """The action we replace keeps a user: unassigned actions would be dropped on save."""
    anim = obj.animation_data
    prev = anim.action if anim is not None else None
    if prev is not None and not prev.use_fake_user and prev.users <= 1:
        prev.use_fake_user = True


@dataclass(frozen=True)
class AnimatedProperty:
    """A custom property of the rig keyed at every frame of a new action (for the Graph Editor)."""

    name: str
    values: np.ndarray  # (T,); non-finite frames get no key
    description: str
    stepped: bool = False  # constant interpolation: a state (a foot on the ground), not a measure
    minimum: float | None = None  # the property's lower limit in the UI


def _key_property(writer, obj, frames: np.ndarray, prop: AnimatedProperty) -> None:
    """``prop`` as a custom property of ``obj`` (valued as at its first keyed frame), keyed in bulk."""
    values = _as_numpy(prop.values).reshape(-1)
    ok = np.isfinite(values)
    obj[prop.name] = float(values[ok][0]) if ok.any() else 0.0
    limits = {} if prop.minimum is None else {"min": prop.minimum}
    obj.id_properties_ui(prop.name).update(description=f"LSMPLify: {prop.description}", **limits)
    if ok.any():
        kind = "CONSTANT" if prop.stepped else "LINEAR"
        fc = writer.new(f'["{prop.name}"]', 0, _GROUP_FIT)
        _write_keys(
            fc,
            frames[ok],
            values[ok].astype(np.float32),
            _enum_value(bpy.types.Keyframe, "interpolation", kind),
        )


def _check_motion(armature_obj, r: np.ndarray, t: np.ndarray) -> None:
    """Refuse what cannot be keyed: no SMPL rig, motion of the wrong shape or not finite, a rig
    in NLA tweak mode."""
    if armature_obj is None or armature_obj.type != "ARMATURE":
        raise LSMPLifyError("Keyframes need an armature object (build an SMPL rig first).")
    missing = [n for n in SMPL_JOINT_NAMES if n not in armature_obj.pose.bones]
    if missing:
        raise LSMPLifyError(
            f"'{armature_obj.name}' is not an SMPL rig: it lacks the bones {', '.join(missing)}."
        )
    if r.ndim != 4 or r.shape[1:] != (NUM_JOINTS, 3, 3):
        raise LSMPLifyError(f"Rotations must have shape (T, 24, 3, 3); got {r.shape}.")
    if t.shape != (r.shape[0], 3):
        raise LSMPLifyError(f"Translations must have shape ({r.shape[0]}, 3); got {t.shape}.")
    if r.shape[0] == 0:
        raise LSMPLifyError("There are no frames to key.")
    if not (np.isfinite(r).all() and np.isfinite(t).all()):
        raise LSMPLifyError("The motion contains NaN or infinite values; nothing was keyed.")
    anim = armature_obj.animation_data
    if anim is not None and anim.use_tweak_mode:
        raise LSMPLifyError(
            f"'{armature_obj.name}' is in NLA tweak mode; leave it before writing a new action."
        )


def _keyed_properties(fit_error_mm, properties, frames: int) -> list:
    """The custom properties to key (the fit error first), each checked to have a value per frame."""
    props = list(properties)
    if fit_error_mm is not None:
        props.insert(
            0, AnimatedProperty(FIT_ERROR_PROP, fit_error_mm, FIT_ERROR_DESCRIPTION, minimum=0.0)
        )
    for prop in props:
        size = _as_numpy(prop.values).size
        if size != frames:
            raise LSMPLifyError(f"{prop.name} has {size} values for {frames} frames.")
    return props


def _new_action(name: str, id_root: str, frame_start: int, frames: int):
    """A new action kept with a fake user (takes survive saving while another action is
    assigned), tagged with the frames it keys."""
    action = bpy.data.actions.new(name)
    action.use_fake_user = True
    if "id_root" in action.bl_rna.properties:  # legacy actions (reading it unset warns on 4.2)
        action.id_root = id_root
    action["lsmplify_frame_start"] = int(frame_start)
    action["lsmplify_frames"] = int(frames)
    return action


def _bone_channels(armature_obj, r: np.ndarray, t: np.ndarray):
    """The rig's bone channels (``rig_style.to_bone_channels``): (bones, their continuous
    quaternions (T, bones, 4), [(bone, its locations (T, 3))]: the pelvis's and the root
    bone's when the rig has one), float32 as they are keyed."""
    from .rig_style import channel_bones, to_bone_channels

    bone_rot, pelvis_loc, root_loc = to_bone_channels(r, t, armature_obj)
    quats = rotmats_to_continuous_quaternions(bone_rot).astype(np.float32)
    bones = channel_bones(armature_obj)
    locations = [(PELVIS_BONE, pelvis_loc)] + (
        [(bones[-1], root_loc)] if root_loc is not None else []
    )
    return bones, quats, [(b, v.astype(np.float32)) for b, v in locations]


def _key_bones(writer, armature_obj, channels, frames: np.ndarray) -> None:
    """``_bone_channels`` keyed in bulk, one F-curve per channel, linear."""
    bones, quats, locations = channels
    linear = _enum_value(bpy.types.Keyframe, "interpolation", "LINEAR")
    for j, bone in enumerate(bones):
        armature_obj.pose.bones[bone].rotation_mode = "QUATERNION"
        for c in range(4):
            _write_keys(writer.new(_rot_path(bone), c, bone), frames, quats[:, j, c], linear)
    for bone, loc in locations:
        for c in range(3):
            _write_keys(writer.new(_loc_path(bone), c, bone), frames, loc[:, c], linear)


def write_pose_action(
    armature_obj,
    rotmats,
    trans,
    frame_start: int = 1,
    name: str = "LSMPLify",
    fit_error_mm=None,
    properties=(),
):
    """Key SMPL motion on an SMPL rig as a NEW action (unique name), assigned to the armature.

    rotmats (T, 24, 3, 3) SMPL local rotations and trans (T, 3) SMPL root translations
    (numpy or torch, SMPL's Y-up metres) become keys at frames ``frame_start ..
    frame_start + T - 1`` with linear interpolation; ``fit_error_mm`` (T,) optionally keys
    the custom property ``lsmplify_fit_error_mm`` on the armature object (non-finite
    frames get no key), and each of ``properties`` (``AnimatedProperty``) its own custom
    property. An action already assigned is kept (given a fake user when it
    would otherwise be lost on save) and never modified.
    """
    r = _as_numpy(rotmats)
    t = _as_numpy(trans)
    _check_motion(armature_obj, r, t)
    T = r.shape[0]
    props = _keyed_properties(fit_error_mm, properties, T)
    channels = _bone_channels(armature_obj, r, t)
    frames = (float(frame_start) + np.arange(T, dtype=np.float64)).astype(np.float32)
    action = _new_action(name, "OBJECT", frame_start, T)
    writer = _FCurveWriter(action, armature_obj)
    _key_bones(writer, armature_obj, channels, frames)
    for prop in props:
        _key_property(writer, armature_obj, frames, prop)
    _protect_previous_action(armature_obj)
    writer.assign()
    return action


def _pose_key_path(name: str) -> str:
    return f'key_blocks["{name}"].value'


def write_corrective_action(
    mesh_obj, rotmats, frame_start: int = 1, name: str = "LSMPLify_correctives"
):
    """Key the ``Pose000..Pose206`` shape keys of an SMPL mesh at SMPL's pose feature, as a NEW action.

    The action goes on the mesh's shape-key datablock (``mesh_obj.data.shape_keys``), one
    key per frame ``frame_start ..`` per corrective with linear interpolation (the feature
    is linear in the rotation matrices, not in the interpolated quaternions, so between
    frames the correctives are an approximation). A mesh without the corrective keys gets
    nothing (returns None). An action already assigned is kept and never modified.
    """
    if not has_pose_keys(mesh_obj):
        return None
    r = _as_numpy(rotmats)
    if r.ndim != 4 or r.shape[1:] != (NUM_JOINTS, 3, 3):
        raise LSMPLifyError(f"Rotations must have shape (T, 24, 3, 3); got {r.shape}.")
    if r.shape[0] == 0:
        raise LSMPLifyError("There are no frames to key.")
    if not np.isfinite(r).all():
        raise LSMPLifyError("The motion contains NaN or infinite values; nothing was keyed.")
    key = mesh_obj.data.shape_keys
    anim = key.animation_data
    if anim is not None and anim.use_tweak_mode:
        raise LSMPLifyError(
            f"The shape keys of '{mesh_obj.name}' are in NLA tweak mode; leave it first."
        )
    T = r.shape[0]
    feats = pose_feature(r).astype(np.float32)  # (T, 207): SMPL's pose-corrective input
    frames = (float(frame_start) + np.arange(T, dtype=np.float64)).astype(np.float32)
    linear = _enum_value(bpy.types.Keyframe, "interpolation", "LINEAR")

    action = _new_action(name, "KEY", frame_start, T)
    writer = _FCurveWriter(action, key, id_type="KEY")
    for k, kname in enumerate(pose_key_names()):
        _write_keys(
            writer.new(_pose_key_path(kname), 0, "Pose correctives"), frames, feats[:, k], linear
        )
    _protect_previous_action(key)
    writer.assign()
    return action


def sample_fcurve(fc, frames: np.ndarray) -> np.ndarray:
    """An F-curve's values (float64) at ``frames``: its keys, read in bulk, at the frames that
    have one (every frame, as LSMPLify keys them); the curve evaluated at the others only (a
    range past the action's ends)."""
    n = len(fc.keyframe_points)
    co = np.empty(2 * n, dtype=np.float32)
    fc.keyframe_points.foreach_get("co", co)
    kf, kv = co[0::2].astype(np.float64), co[1::2].astype(np.float64)
    if n == frames.size and np.array_equal(kf, frames):  # a key at each frame, as LSMPLify keys
        return kv
    idx = np.clip(np.searchsorted(kf, frames), 0, max(n - 1, 0))
    keyed = np.abs(kf[idx] - frames) < 1e-3 if n else np.zeros(frames.shape, dtype=bool)
    out = np.where(keyed, kv[idx] if n else 0.0, 0.0)
    for i in np.flatnonzero(~keyed):
        out[i] = fc.evaluate(float(frames[i]))
    return out


def read_pose_action(armature_obj, frame_start: int, frame_end: int, action=None):
    """Read SMPL motion back from an SMPL rig's action, frames ``frame_start..frame_end`` inclusive.

    Returns numpy float64 ``(rotmats (T, 24, 3, 3), trans (T, 3))``. Frames that carry keys
    are read in bulk (``foreach_get``); a curve lacking some of the frames is evaluated
    there instead. Unkeyed channels read as the rest pose (identity, zero translation).
    """
    anim = armature_obj.animation_data
    if action is None:
        action = anim.action if anim is not None else None
    if action is None:
        raise LSMPLifyError(f"'{armature_obj.name}' has no action to read.")
    slot = None
    if anim is not None and anim.action == action and hasattr(anim, "action_slot"):
        slot = anim.action_slot
    frames = np.arange(int(frame_start), int(frame_end) + 1, dtype=np.float64)
    T = frames.size
    if T <= 0:
        raise LSMPLifyError(f"Empty frame range {frame_start}..{frame_end}.")
    curves = {(fc.data_path, fc.array_index): fc for fc in action_fcurves(action, slot)}

    def channel(path: str, index: int, default: float) -> np.ndarray:
        fc = curves.get((path, index))
        if fc is None or len(fc.keyframe_points) == 0:
            return np.full(T, default)
        return sample_fcurve(fc, frames)

    from .rig_style import channel_bones, from_bone_channels, has_root_bone

    bones = channel_bones(armature_obj)
    quats = np.empty((T, len(bones), 4))
    for j, bone in enumerate(bones):
        for c in range(4):
            quats[:, j, c] = channel(_rot_path(bone), c, 1.0 if c == 0 else 0.0)

    def location(bone):
        return np.stack([channel(_loc_path(bone), c, 0.0) for c in range(3)], -1)

    root_loc = location(bones[-1]) if has_root_bone(armature_obj) else None
    with one_thread():
        rot = quaternion_to_matrix(quats)
    return from_bone_channels(rot, location(PELVIS_BONE), root_loc, armature_obj)


def write_location_action(obj, frames, locations, name: str):
    """Key ``obj.location`` as a NEW action assigned to ``obj``: ``locations`` (K, 3) at
    ``frames`` (K,), linear, in bulk (one ``foreach_set`` per channel)."""
    loc = _as_numpy(locations, np.float32)
    f = _as_numpy(frames, np.float32).reshape(-1)
    if loc.shape != (f.size, 3) or f.size == 0:
        raise LSMPLifyError(
            f"Locations must have shape ({f.size}, 3) with at least one frame; got {loc.shape}."
        )
    if not np.isfinite(loc).all():
        raise LSMPLifyError(
            f"The locations of '{obj.name}' contain NaN or infinite values; nothing was keyed."
        )
    linear = _enum_value(bpy.types.Keyframe, "interpolation", "LINEAR")
    action = bpy.data.actions.new(name)
    writer = _FCurveWriter(action, obj)
    try:
        for c in range(3):
            _write_keys(writer.new("location", c, "Location"), f, loc[:, c], linear)
        writer.assign()
    except BaseException:
        bpy.data.actions.remove(action)
        raise
    return action
