"""SMPL motion files (AMASS-style .npz) to and from SMPL rigs in the scene."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from .scene_writing import (
    SceneChange,
    check_frame_rate,
    rig_betas,
    safe_stem,
    set_scene_timing,
    write_motion,
)
from .sources import scene_fps


def rig_motion_arrays(rig_obj, fs: int, fe: int) -> dict:
    """The rig's current action over scene frames fs..fe as the .npz's arrays: poses (T, 72)
    axis-angle, trans (T, 3), and fit_error_mm / contacts (T, 2) / ground_height / solver /
    layout where the action and the rig have them (the CLI's keys)."""
    import torch

    from ..core.rotations import matrix_to_axis_angle
    from .keyframes import FIT_ERROR_PROP, action_fcurves, read_pose_action, sample_fcurve

    anim = rig_obj.animation_data
    if anim is None or anim.action is None:
        raise InputError(f"The rig '{rig_obj.name}' has no action to export.")
    rotmats, trans = read_pose_action(rig_obj, fs, fe)
    out = dict(
        poses=matrix_to_axis_angle(torch.from_numpy(rotmats)).reshape(-1, 72).numpy(), trans=trans
    )
    from .ground import CONTACT_PROPS, GROUND_HEIGHT_PROP

    slot = getattr(anim, "action_slot", None)
    curves = {fc.data_path: fc for fc in action_fcurves(anim.action, slot)}

    def sampled(prop):
        frames = np.arange(fs, fe + 1, dtype=np.float64)
        return sample_fcurve(curves[f'["{prop}"]'], frames).astype(np.float32)

    if f'["{FIT_ERROR_PROP}"]' in curves:
        out["fit_error_mm"] = sampled(FIT_ERROR_PROP)
    if all(f'["{p}"]' in curves for p in CONTACT_PROPS):
        out["contacts"] = np.stack([sampled(p) for p in CONTACT_PROPS], -1) > 0.5
        if GROUND_HEIGHT_PROP in rig_obj:
            out["ground_height"] = np.float32(rig_obj[GROUND_HEIGHT_PROP])
    for key in ("lsmplify_solver", "lsmplify_layout"):
        if key in anim.action:
            out[key.split("_", 1)[1]] = str(anim.action[key])
    from ..core.layouts import LAYOUTS
    from .results import OFFSETS_LAYOUT_PROP, action_offsets

    layout = LAYOUTS.get(str(anim.action.get(OFFSETS_LAYOUT_PROP, "")))
    offsets = action_offsets(anim.action, layout) if layout is not None else None
    if offsets is not None:  # the solve's calibration, as the command line writes it
        out["keypoint_offsets"] = offsets.astype(np.float32)
        out["keypoint_names"] = np.array(layout.keypoints)
    return out


def solved_frames(rig_obj, within=None) -> tuple[int, int]:
    """The frames the rig's current action was solved for, (first, last): the range LSMPLify
    recorded on the action, else the action's keyed range; cut to ``within`` (first, last) when given."""
    import math

    anim = rig_obj.animation_data
    action = anim.action if anim is not None else None
    if action is None:
        raise InputError(f"The rig '{rig_obj.name}' has no action to export.")
    if "lsmplify_frame_start" in action and "lsmplify_frames" in action:
        fs = int(action["lsmplify_frame_start"])
        fe = fs + int(action["lsmplify_frames"]) - 1
    else:
        lo, hi = action.frame_range
        fs, fe = math.floor(lo), math.ceil(hi)
    if within is not None:
        lo, hi = max(fs, within[0]), min(fe, within[1])
        if hi < lo:
            raise InputError(
                f"The action '{action.name}' covers frames {fs}-{fe}, outside the scene range "
                f"{within[0]}-{within[1]}: nothing to export. Turn off Scene Range Only or change "
                "the scene range."
            )
        fs, fe = lo, hi
    return fs, fe


def export_rig_npz(context, rig_obj, path: str, fs: int, fe: int):
    """Write the rig's action over frames fs..fe (see ``solved_frames``) as an AMASS-style
    .npz with ``frame_start`` = fs; returns (path, rows)."""
    from ..core.formats.amass import write_smpl_npz

    arrays = rig_motion_arrays(rig_obj, fs, fe)
    poses, trans = arrays.pop("poses"), arrays.pop("trans")
    out = write_smpl_npz(
        path,
        poses,
        rig_betas(rig_obj),
        trans,
        scene_fps(context.scene),
        gender=str(rig_obj.get("lsmplify_gender", "neutral")),
        model=str(rig_obj.get("lsmplify_model", "")),
        frame_start=np.int32(fs),
        **arrays,
    )
    return out, poses.shape[0]


def read_fit_error(path: str, frames: int):
    """The file's per-frame ``fit_error_mm`` when it has one of the right length, else None."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if "fit_error_mm" in z.files and z["fit_error_mm"].shape == (frames,):
                return z["fit_error_mm"]
    except (OSError, ValueError):
        pass
    return None


def read_feet(path: str, frames: int):
    """The file's foot ``contacts`` (T, 2) bool and ``ground_height`` (metres) when it has them
    in the right shape (LSMPLify's exports, the command line's output), else (None, None)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if "contacts" not in z.files or z["contacts"].shape != (frames, 2):
                return None, None
            contacts = z["contacts"].astype(bool)
            ground = None
            if "ground_height" in z.files and z["ground_height"].shape == ():
                g = float(z["ground_height"])
                ground = g if np.isfinite(g) else None
            return contacts, ground
    except (OSError, ValueError):
        return None, None


def read_offsets(path: str, notes: list):
    """The file's keypoint calibration (``keypoint_offsets`` with its ``layout``), checked by the
    core as a file's offsets are (hostile until checked): ((K, 3), layout name) or (None, None);
    offsets that do not pass are left out with a note."""
    from ..core.calibration import checked_offsets
    from ..core.errors import InputError as CoreInputError
    from ..core.layouts import LAYOUTS

    try:
        with np.load(path, allow_pickle=False) as z:
            if "keypoint_offsets" not in z.files or "layout" not in z.files:
                return None, None
            layout = LAYOUTS.get(str(z["layout"]))
            names = z["keypoint_names"] if "keypoint_names" in z.files else None
            if layout is None:
                return None, None
            offsets = checked_offsets(z["keypoint_offsets"], layout, names)
    except (OSError, ValueError):
        return None, None
    except CoreInputError as exc:
        notes.append(f"the file's keypoint calibration is not kept: {exc}")
        return None, None
    return offsets, layout.name


def import_smpl_motion(
    context, path: str, model, update_scene: bool = True, use_file_start: bool = True
):
    """A new SMPL rig keyed with the motion of an AMASS-style .npz, from the file's
    ``frame_start`` (when it has one and ``use_file_start``) or the scene's first frame.

    Z-up files (declared, or AMASS's, detected from the data) are turned into SMPL's Y up;
    SMPL-H / SMPL-X poses are mapped onto SMPL's 24 joints (``core.formats.amass``). Foot
    contacts and the ground height, when the file has them, become the rig's contact
    properties and ground plane, as after a solve.
    Returns (rig, action, frames, notes).
    """
    import torch

    from ..core.formats.amass import read_smpl_npz, turn_motion_z_up_to_y_up
    from ..core.rotations import axis_angle_to_matrix
    from .rig import rest_joints_smpl

    if not os.path.isfile(path):
        raise InputError(f"File not found: {path}")
    data = read_smpl_npz(path)
    poses = np.asarray(data["poses"], dtype=np.float64)
    trans = np.asarray(data["trans"], dtype=np.float64)
    if not np.isfinite(poses).all() or not np.isfinite(trans).all():
        raise InputError(
            f"{Path(path).name}: the poses or translations contain NaN or infinite values."
        )
    fps = check_frame_rate(
        data["fps"], f"{Path(path).name}: mocap_framerate", "Correct the file's mocap_framerate."
    )
    rotmats = axis_angle_to_matrix(torch.from_numpy(poses.reshape(-1, 24, 3))).numpy()
    if data["up"] == "z":
        pelvis = rest_joints_smpl(model.data, data["betas"])[0]
        rotmats[:, 0], trans = turn_motion_z_up_to_y_up(rotmats[:, 0], trans, pelvis)
    scene = context.scene
    start = (
        data["frame_start"]
        if use_file_start and data["frame_start"] is not None
        else scene.frame_start
    )
    fit = read_fit_error(path, poses.shape[0])
    contacts, ground = read_feet(path, poses.shape[0])
    if data["up"] == "z":  # a ground height is along Y, as LSMPLify writes files
        ground = None
    notes = list(data["notes"])
    offsets, offsets_layout = read_offsets(path, notes)
    from .ground import contact_properties
    from .results import tag_offsets
    from .rig_style import style_from_settings

    with SceneChange(scene) as change:
        rig_obj, action = write_motion(
            context,
            model,
            rotmats,
            trans,
            data["betas"],
            start,
            fit,
            name=safe_stem(path),
            action_name=safe_stem(path),
            style=style_from_settings(scene.lsmplify),
            properties=contact_properties(contacts),
            ground=ground,
        )
        from .ground import ground_plane

        plane = ground_plane(rig_obj)
        change.made += [
            rig_obj,
            action,
            rig_obj.data,
            *rig_obj.children,
            *(c.data for c in rig_obj.children),
            *([plane, plane.data] if plane is not None else []),
        ]
        tag_offsets(action, offsets, offsets_layout)
        if update_scene:
            set_scene_timing(scene, start, poses.shape[0], fps)
    return rig_obj, action, poses.shape[0], notes
