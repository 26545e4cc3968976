"""SMPL motion files (AMASS-style .npz) to and from SMPL rigs in the scene."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from .scene_writing import SceneChange, check_frame_rate, rig_betas, safe_stem, set_scene_timing, write_motion
from .sources import scene_fps


def rig_motion_arrays(rig_obj, fs: int, fe: int) -> dict:
    """The rig's current action over scene frames fs..fe as the .npz's arrays: poses (T, 72)
    axis-angle, trans (T, 3), and fit_error_mm / solver / layout where the action has them."""
    import torch

    from ..core.rotations import matrix_to_axis_angle
    from .keyframes import FIT_ERROR_PROP, action_fcurves, read_pose_action

    anim = rig_obj.animation_data
    if anim is None or anim.action is None:
        raise InputError(f"The rig '{rig_obj.name}' has no action to export.")
    rotmats, trans = read_pose_action(rig_obj, fs, fe)
    out = dict(poses=matrix_to_axis_angle(torch.from_numpy(rotmats)).reshape(-1, 72).numpy(), trans=trans)
    slot = getattr(anim, "action_slot", None)
    fit = next((fc for fc in action_fcurves(anim.action, slot)
                if fc.data_path == f'["{FIT_ERROR_PROP}"]'), None)
    if fit is not None:
        out["fit_error_mm"] = np.array([fit.evaluate(f) for f in range(fs, fe + 1)], dtype=np.float32)
    for key in ("lsmplify_solver", "lsmplify_layout"):
        if key in anim.action:
            out[key.split("_", 1)[1]] = str(anim.action[key])
    return out


def export_rig_npz(context, rig_obj, path: str, fs: int, fe: int):
    """Write the rig's action over scene frames fs..fe as an AMASS-style .npz; returns (path, rows)."""
    from ..core.formats.amass import write_smpl_npz

    arrays = rig_motion_arrays(rig_obj, fs, fe)
    poses, trans = arrays.pop("poses"), arrays.pop("trans")
    out = write_smpl_npz(path, poses, rig_betas(rig_obj), trans, scene_fps(context.scene),
                         gender=str(rig_obj.get("lsmplify_gender", "neutral")),
                         model=str(rig_obj.get("lsmplify_model", "")), frame_start=np.int32(fs), **arrays)
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


def import_smpl_motion(context, path: str, model, update_scene: bool = True):
    """A new SMPL rig keyed with the motion of an AMASS-style .npz from the scene's first frame;
    returns (rig, action, frames)."""
    import torch

    from ..core.formats.amass import read_smpl_npz
    from ..core.rotations import axis_angle_to_matrix

    if not os.path.isfile(path):
        raise InputError(f"File not found: {path}")
    data = read_smpl_npz(path)
    if data["up"].lower() != "y":
        raise InputError(f"{Path(path).name}: up axis '{data['up']}'; SMPL parameters are Y up.")
    poses = np.asarray(data["poses"], dtype=np.float64)
    if not np.isfinite(poses).all() or not np.isfinite(data["trans"]).all():
        raise InputError(f"{Path(path).name}: the poses or translations contain NaN or infinite values.")
    fps = check_frame_rate(data["fps"], f"{Path(path).name}: mocap_framerate",
                           "Correct the file's mocap_framerate.")
    rotmats = axis_angle_to_matrix(torch.from_numpy(poses.reshape(-1, 24, 3)))
    scene = context.scene
    start = scene.frame_start
    fit = read_fit_error(path, poses.shape[0])
    with SceneChange(scene) as change:
        rig_obj, action = write_motion(context, model, rotmats, data["trans"], data["betas"], start, fit,
                                       name=safe_stem(path), action_name=safe_stem(path))
        change.made += [rig_obj, action, rig_obj.data, *rig_obj.children, *(c.data for c in rig_obj.children)]
        if update_scene:
            set_scene_timing(scene, start, poses.shape[0], fps)
    return rig_obj, action, poses.shape[0]
