"""What the operators share: the body model cache, keypoint sources, smoothing, results.

Everything that reads the scene (sources) or writes it (rigs, actions, results) runs on
the main thread; ``run_solve`` touches no bpy data and may run in a worker thread.
The core (and with it torch) is imported on first use, not at registration.
"""
from __future__ import annotations

import re
from pathlib import Path

import bpy
import numpy as np

from ..core.errors import InputError, LSMPLifyError
from ..core.prepare import smooth_over_time
from .preferences import get_preferences

KEYPOINT_PROP = "lsmplify_keypoint"  # on empties made by the importer: the keypoint they stand for
_SUFFIX = re.compile(r"\.\d{3,}$")  # Blender's unique-name suffix: "pelvis.001"

_MODEL_CACHE: dict = {}


# ----------------------------------------------------------------------------- model
def clear_model_cache() -> None:
    _MODEL_CACHE.clear()


def device_choice(context=None) -> str:
    prefs = get_preferences(context)
    return (prefs.device if prefs is not None else "AUTO").lower()


def model_path(context=None) -> str:
    prefs = get_preferences(context)
    path = prefs.model_path if prefs is not None else ""
    return bpy.path.abspath(path) if path else ""


def get_model(context=None, warn=None):
    """The ``BodyModel`` the preferences ask for, on the chosen device (cached).

    Where a fallback makes sense it is taken and said through ``warn`` (an operator's
    report): a device that is not available falls back to the CPU, and a model file that is
    missing or not a SMPL model falls back to the embedded open model.
    """
    from ..core.body_model import BodyModel, load_model_data
    from ..core.device import resolve_device

    say = warn or (lambda message: print(f"LSMPLify: {message}"))
    path = model_path(context)
    try:
        device = resolve_device(device_choice(context))
    except LSMPLifyError as exc:
        say(f"{exc} Using the CPU.")
        device = resolve_device("cpu")
    key = (path, str(device))
    if key not in _MODEL_CACHE:
        try:
            data = load_model_data(path or None)
        except LSMPLifyError as exc:
            if not path:
                raise
            say(f"{exc} Using the embedded open model instead; fix the body model in the add-on preferences.")
            data = load_model_data(None)
        _MODEL_CACHE.clear()  # one model at a time: they can be large
        _MODEL_CACHE[key] = BodyModel(data, device=device)
    return _MODEL_CACHE[key]


# ----------------------------------------------------------------------------- scene helpers
def is_smpl_rig(obj) -> bool:
    if obj is None or obj.type != "ARMATURE":
        return False
    from .rig import RIG_TAG
    if obj.get(RIG_TAG):
        return True
    from ..core.body_model import SMPL_JOINT_NAMES
    bones = obj.data.bones
    return all(n in bones for n in SMPL_JOINT_NAMES)


def rig_from_context(context, settings=None):
    """The SMPL rig to act on: the active object (or the rig of an active SMPL mesh), else the target rig."""
    obj = context.active_object
    if obj is not None and obj.type == "MESH" and is_smpl_rig(obj.parent):
        obj = obj.parent
    if is_smpl_rig(obj):
        return obj
    if settings is not None and is_smpl_rig(settings.target_rig):
        return settings.target_rig
    return None


def scene_fps(scene) -> float:
    return float(scene.render.fps) / float(scene.render.fps_base or 1.0)


def frame_range(scene, settings) -> tuple[int, int]:
    if settings.use_scene_range:
        fs, fe = scene.frame_start, scene.frame_end
    else:
        fs, fe = settings.frame_start, settings.frame_end
    if fe < fs:
        raise InputError(f"The frame range {fs}..{fe} is empty: the end comes before the start.")
    return int(fs), int(fe)


def strip_suffix(name: str) -> str:
    return _SUFFIX.sub("", name)


# ----------------------------------------------------------------------------- sources
def _scene_sequence(positions_blender: np.ndarray, names, scene, what: str):
    """(T, J, 3) Blender Z-up positions in scene units -> KeypointSequence (metres, Z up)."""
    from ..core.keypoints import KeypointSequence

    scale = float(scene.unit_settings.scale_length or 1.0)
    return KeypointSequence(positions=positions_blender * scale, names=list(names), fps=scene_fps(scene),
                            up="z", source=what, notes=[f"source: {what}"])


def _sample_frames(scene, fs: int, fe: int, read) -> np.ndarray:
    """Call ``read()`` -> (J, 3) at every frame fs..fe (one pass), restoring the current frame."""
    current, subframe = scene.frame_current, scene.frame_subframe
    out = []
    try:
        for f in range(fs, fe + 1):
            scene.frame_set(f)
            out.append(read())
    finally:
        scene.frame_set(current, subframe=subframe)
    return np.asarray(out, dtype=np.float64)


def sample_empties(context, fs: int, fe: int):
    objs = [o for o in context.selected_objects if o.type == "EMPTY"]
    if not objs:
        raise InputError("No empties are selected: select the animated keypoint empties "
                         "(one per joint, named after the joints) to use them as the source.")
    objs.sort(key=lambda o: o.name)
    names = [o.get(KEYPOINT_PROP) or strip_suffix(o.name) for o in objs]

    def read():
        return [tuple(o.matrix_world.translation) for o in objs]

    pos = _sample_frames(context.scene, fs, fe, read)
    return _scene_sequence(pos, names, context.scene, f"{len(objs)} selected empties")


def sample_armature(context, arm_obj, fs: int, fe: int):
    if arm_obj is None or arm_obj.type != "ARMATURE":
        raise InputError("No source armature: choose one in the panel or make an armature active.")
    bones = list(arm_obj.pose.bones)
    if not bones:
        raise InputError(f"The armature '{arm_obj.name}' has no bones.")
    names = [strip_suffix(b.name) for b in bones]
    n = len(bones)

    def read():
        heads = np.empty(3 * n, dtype=np.float32)
        arm_obj.pose.bones.foreach_get("head", heads)
        mw = np.array(arm_obj.matrix_world, dtype=np.float64)
        return heads.reshape(n, 3).astype(np.float64) @ mw[:3, :3].T + mw[:3, 3]

    pos = _sample_frames(context.scene, fs, fe, read)
    return _scene_sequence(pos, names, context.scene, f"armature '{arm_obj.name}'")


def _opt(value: str):
    return "auto" if value == "AUTO" else value.lower()


def read_file_source(settings, model):
    """The file source read and prepared (every frame of the file)."""
    from ..core.formats import read_keypoints
    from ..core.prepare import prepare

    if not settings.filepath:
        raise InputError("No keypoint file is set: choose a file in the LSMPLify panel or use Import Keypoints.")
    seq = read_keypoints(bpy.path.abspath(settings.filepath))
    return prepare(seq, model, layout=_opt(settings.layout), units=_opt(settings.units),
                   up=_opt(settings.up_axis), fps=settings.fps or None)


def gather_source(context, settings, model):
    """The scene's current source over the frame range: (PreparedKeypoints, first scene frame)."""
    from ..core.prepare import prepare

    scene = context.scene
    fs, fe = frame_range(scene, settings)
    kind = settings.source_type
    if kind == "FILE":
        prepared = read_file_source(settings, model)
        set_detected(settings, prepared)
        return slice_prepared(prepared, settings.file_frame_start, fs, fe)
    if kind == "EMPTIES":
        seq = sample_empties(context, fs, fe)
    elif kind == "ARMATURE":
        arm = settings.source_armature
        if arm is None and context.active_object is not None and context.active_object.type == "ARMATURE" \
                and not is_smpl_rig(context.active_object):
            arm = context.active_object
        seq = sample_armature(context, arm, fs, fe)
    else:
        raise InputError(f"Unknown source type '{kind}'.")
    # Scene sources are Z up. Units: scene units are metres in a normal scene, but a mocap
    # armature imported at its file's raw scale (e.g. CMU BVH units) is not: auto-detect
    # from bone lengths unless the user picked units.
    prepared = prepare(seq, model, layout=_opt(settings.layout), units=_opt(settings.units),
                       up="z", fps=scene_fps(scene))
    set_detected(settings, prepared)
    return prepared, fs


def slice_prepared(prepared, first_frame: int, fs: int, fe: int):
    """Keep the frames of ``prepared`` (frame 0 plays at ``first_frame``) that lie in fs..fe."""
    t = prepared.num_frames
    lo = max(fs, first_frame)
    hi = min(fe, first_frame + t - 1)
    if hi < lo:
        raise InputError(
            f"The source covers frames {first_frame}..{first_frame + t - 1} but the frame range is "
            f"{fs}..{fe}: they do not overlap. Change the frame range or the file's start frame.")
    a, b = lo - first_frame, hi - first_frame + 1
    if (a, b) == (0, t):
        return prepared, lo
    sub = prepared.cut(slice(a, b))  # every per-frame array (masks, bone rotations) cut alike
    if not (sub.weight > 0).any():
        raise InputError(f"No keypoint is seen in frames {lo}..{hi}: nothing to solve.")
    return sub, lo


def smooth_prepared(prepared, amount: float):
    """The panel's smoothing amount (0..1) as a zero-phase Gaussian of up to 0.05 s."""
    if amount <= 0:
        return prepared
    return smooth_over_time(prepared, float(amount) * 0.05)


def set_detected(settings, prepared) -> None:
    settings.detected_layout = prepared.layout.title
    settings.detected_units = prepared.units
    settings.detected_up = prepared.up.upper()
    settings.detected_fps = f"{prepared.fps:g}"
    settings.detected_frames = str(prepared.num_frames)


# ----------------------------------------------------------------------------- solving
def solver_name(settings) -> str:
    return settings.solver.lower()


def smooth_setting(settings):
    """The solver's ``smooth``: the panel's Smoothing amount when set (sigma up to 0.05 s),
    else 'auto' (smooth only keypoints whose limb lengths show noise) or off."""
    if settings.smoothing > 0:
        return float(settings.smoothing) * 0.05
    return "auto" if settings.auto_denoise else 0.0


def run_solve(prepared, model, solver: str, refine: int, betas=None, smooth="auto"):
    """The core solve; touches no bpy data (safe in a worker thread)."""
    from ..core.solver import solve
    return solve(prepared, model, solver=solver, refine=int(refine), betas=betas, smooth=smooth)


def rig_betas(rig_obj) -> np.ndarray:
    b = rig_obj.get("lsmplify_betas")
    return np.asarray(list(b) if b is not None else np.zeros(10), dtype=np.float64)


def check_rig_model(rig_obj, model) -> None:
    name = rig_obj.get("lsmplify_model")
    if name and name != model.data.name:
        raise LSMPLifyError(
            f"The rig '{rig_obj.name}' was built with the body model '{name}' but the preferences use "
            f"'{model.data.name}'. Switch the model in the preferences, or clear the target rig to make a new one.")


def remove_ids(ids) -> None:
    """Remove data-blocks made by a run that failed, objects first, ignoring ones already gone."""
    collections = {bpy.types.Object: bpy.data.objects, bpy.types.Armature: bpy.data.armatures,
                   bpy.types.Mesh: bpy.data.meshes, bpy.types.Action: bpy.data.actions,
                   bpy.types.Collection: bpy.data.collections, bpy.types.Camera: bpy.data.cameras}
    order = (bpy.types.Object, bpy.types.Collection, bpy.types.Action, bpy.types.Armature, bpy.types.Mesh,
             bpy.types.Camera)
    for kind in order:
        for idb in ids:
            try:
                if isinstance(idb, kind) and idb.name in collections[kind] and collections[kind][idb.name] == idb:
                    collections[kind].remove(idb)
            except ReferenceError:
                pass


def apply_solution(context, settings, solution, prepared, start_frame: int, model, target_rig=None,
                   name: str = "SMPL"):
    """Write a solution into the scene: a new rig (or a new action on ``target_rig``).

    Returns (rig, action). On any failure every data-block made here is removed again and
    the target rig gets its previous action back.
    """
    rig_obj, action = write_motion(context, model, solution.rotmats, solution.trans, solution.betas,
                                   start_frame, solution.fit_error_mm, target_rig=target_rig, name=name,
                                   action_name=f"LSMPLify_{solution.solver}",
                                   tags=dict(lsmplify_solver=solution.solver, lsmplify_layout=prepared.layout.name,
                                             lsmplify_mpbe_mm=float(solution.mpbe_mm)))
    store_results(settings, solution.betas, solution.fit_error_mm, solution.mpbe_mm,
                  f"{solution.solver} on {prepared.num_frames} frames from {start_frame}, "
                  f"{solution.seconds:.1f} s on {solution.device}")
    return rig_obj, action


def write_motion(context, model, rotmats, trans, betas, start_frame: int, fit_error_mm=None, target_rig=None,
                 name: str = "SMPL", action_name: str = "LSMPLify", tags=None):
    """A new rig + action (or a new action on ``target_rig``); all or nothing.

    Where the rig's mesh carries pose-corrective shape keys (a model with ``posedirs``),
    they get a new action of their own on the mesh's shape-key datablock.
    """
    from .keyframes import write_corrective_action, write_pose_action
    from .rig import build_smpl_rig, corrective_meshes

    made = []
    prev = None
    prev_keys = []  # (shape-key datablock, its animation state) of the target rig's meshes
    if target_rig is not None:
        prev = _action_state(target_rig)
        prev_keys = [(m.data.shape_keys, _action_state(m.data.shape_keys)) for m in corrective_meshes(target_rig)]
    try:
        if target_rig is None:
            rig_obj, mesh_obj = build_smpl_rig(context, model.data, betas, name=name)
            made += [rig_obj, mesh_obj, rig_obj.data, mesh_obj.data]
            rig_obj["lsmplify_gender"] = model.data.meta.get("gender", "neutral")
        else:
            rig_obj = target_rig
        action = write_pose_action(rig_obj, rotmats, trans, frame_start=start_frame, name=action_name,
                                   fit_error_mm=fit_error_mm)
        made.append(action)
        for k, v in (tags or {}).items():
            action[k] = v
        for mesh_obj in corrective_meshes(rig_obj):
            corr = write_corrective_action(mesh_obj, rotmats, frame_start=start_frame,
                                           name=f"{action_name}_correctives")
            if corr is not None:
                made.append(corr)
    except BaseException:
        if target_rig is not None:
            _restore_action(target_rig, prev)
            for key, state in prev_keys:
                _restore_action(key, state)
        remove_ids(made)
        raise
    return rig_obj, action


def _action_state(idb):
    """What ``_restore_action`` needs to give ``idb`` (an object or a shape-key datablock) its action back."""
    anim = idb.animation_data
    prev_action = anim.action if anim is not None else None
    return (anim is not None, prev_action, getattr(anim, "action_slot", None) if anim else None,
            prev_action.use_fake_user if prev_action is not None else None)


def _restore_action(rig_obj, prev) -> None:
    had_anim, action, slot, fake = prev
    anim = rig_obj.animation_data
    if anim is None:
        return
    if not had_anim:
        rig_obj.animation_data_clear()
        return
    anim.action = action
    if slot is not None and hasattr(anim, "action_slot"):
        anim.action_slot = slot
    if action is not None and fake is not None:
        action.use_fake_user = fake


def store_results(settings, betas, fit_error_mm, mpbe_mm, summary: str) -> None:
    b = betas.detach().cpu().numpy() if hasattr(betas, "detach") else np.asarray(betas)
    err = np.asarray(fit_error_mm, dtype=np.float64)
    settings.has_result = True
    settings.result_mpbe_mm = float(mpbe_mm) if np.isfinite(mpbe_mm) else 0.0
    settings.result_fit_error_mm = float(np.nanmean(err)) if np.isfinite(err).any() else 0.0
    settings.result_betas = " ".join(f"{x:+.2f}" for x in b.reshape(-1)[:10])
    settings.result_summary = summary


def safe_stem(path: str) -> str:
    return Path(path).stem or "LSMPLify"
