"""Writing results into the scene: SMPL rigs, their actions, the panel's result fields.

All or nothing: every function that makes data-blocks removes them again (and gives a
target rig its previous action back) when it fails half-way.
"""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from ..core.errors import InputError, LSMPLifyError


# ----------------------------------------------------------------------------- rigs in the scene
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


def rig_betas(rig_obj) -> np.ndarray:
    b = rig_obj.get("lsmplify_betas")
    return np.asarray(list(b) if b is not None else np.zeros(10), dtype=np.float64)


def check_rig_model(rig_obj, model) -> None:
    name = rig_obj.get("lsmplify_model")
    if name and name != model.data.name:
        raise LSMPLifyError(
            f"The rig '{rig_obj.name}' was built with the body model '{name}' but the preferences use "
            f"'{model.data.name}'. Switch the model in the preferences, or clear the target rig to make a new one."
        )


DISPLAY_SCALE_PROP = "lsmplify_display_scale"  # on a rig scaled by Match Source: its object scale


def match_source_scale(scene, source_type: str, units: str) -> float:
    """The rig's object scale that makes it overlay its source in the scene.

    The core works in metres: a scene source is read in world space, times the scene's unit
    scale, times its detected units (e.g. 0.05644 m per CMU unit, as Blender's BVH and FBX
    importers bring CMU rigs in at file units); a File source's empties are drawn in scene
    units. The inverse of that factor, as a uniform object scale about the world origin,
    puts the rig on the source (nothing is re-centred on the way, so position and
    orientation already match) with the SMPL maths unchanged inside.
    """
    from ..core.keypoints import UNIT_SCALES

    metres_per_unit = float(scene.unit_settings.scale_length or 1.0)
    if source_type != "FILE":
        metres_per_unit *= UNIT_SCALES.get(units, 1.0)
    return 1.0 / metres_per_unit


def place_on_source(rig_obj, scale: float) -> None:
    """Give a new rig the Match Source scale (recorded, so that exports can take it out again)."""
    rig_obj.scale = (scale, scale, scale)
    rig_obj[DISPLAY_SCALE_PROP] = float(scale)


def real_size_scale(rig_obj) -> float:
    """The factor that takes a rig's Match Source scale out (1 for a rig at real size)."""
    return 1.0 / float(rig_obj.get(DISPLAY_SCALE_PROP, 1.0) or 1.0)


SOURCE_PROP = "lsmplify_source"  # on a rig: which source it was solved from (see source_key)
MADE_PROP = "lsmplify_made"  # on a rig: a counter of when it was made, to find the latest


def latest_rig_for(source: str, model_name: str):
    """The last rig made from ``source`` with the body model ``model_name``, or None."""
    found = [
        o
        for o in bpy.data.objects
        if is_smpl_rig(o)
        and o.get(SOURCE_PROP) == source
        and o.get("lsmplify_model", model_name) == model_name
    ]
    return max(found, key=lambda o: int(o.get(MADE_PROP, 0)), default=None)


def tag_new_rig(rig_obj, source: str) -> None:
    """Record the source of a new rig and when it was made (after every rig there is)."""
    rig_obj[SOURCE_PROP] = source
    rig_obj[MADE_PROP] = 1 + max(
        (int(o.get(MADE_PROP, 0)) for o in bpy.data.objects if is_smpl_rig(o)), default=0
    )


def safe_stem(path: str) -> str:
    return Path(path).stem or "LSMPLify"


# Blender's own limits on a scene's frame rate: ``render.fps`` is an int of at most 32767
# frames and ``fps_base`` at most 1e6, so rates outside these cannot be set.
MIN_SCENE_FPS, MAX_SCENE_FPS = 1e-3, 32767.0


def check_frame_rate(fps, what: str, fix: str) -> float:
    """``fps`` as a float when a scene can play at it, else an InputError naming ``what`` and ``fix``."""
    f = float(fps)
    if not (np.isfinite(f) and MIN_SCENE_FPS <= f <= MAX_SCENE_FPS):
        raise InputError(
            f"{what}: a frame rate of {f:g} fps is not usable (Blender plays "
            f"{MIN_SCENE_FPS:g} to {MAX_SCENE_FPS:g} fps). {fix}"
        )
    return f


def set_scene_timing(scene, start: int, frames: int, fps: float) -> None:
    """The scene's range to ``start .. start + frames - 1`` and its frame rate to ``fps``
    (``fps_base`` carries the fraction of a rate such as 29.97)."""
    fps = check_frame_rate(fps, "The scene", "Set the frame rate yourself in Output Properties.")
    scene.frame_start = start
    scene.frame_end = start + frames - 1
    whole = max(1, round(fps))
    scene.render.fps = whole
    scene.render.fps_base = whole / fps


# ----------------------------------------------------------------------------- undoing a failed run
def remove_ids(ids) -> None:
    """Remove data-blocks made by a run that failed, objects first, ignoring ones already gone."""
    collections = {
        bpy.types.Object: bpy.data.objects,
        bpy.types.Armature: bpy.data.armatures,
        bpy.types.Mesh: bpy.data.meshes,
        bpy.types.Action: bpy.data.actions,
        bpy.types.Collection: bpy.data.collections,
        bpy.types.Camera: bpy.data.cameras,
        bpy.types.Material: bpy.data.materials,
        bpy.types.Image: bpy.data.images,
        bpy.types.Light: bpy.data.lights,
        bpy.types.World: bpy.data.worlds,
    }
    order = (
        bpy.types.Object,
        bpy.types.Collection,
        bpy.types.Action,
        bpy.types.Armature,
        bpy.types.Mesh,
        bpy.types.Camera,
        bpy.types.Light,
        bpy.types.Material,
        bpy.types.Image,
        bpy.types.World,
    )
    for kind in order:
        for idb in ids:
            try:
                if (
                    isinstance(idb, kind)
                    and idb.name in collections[kind]
                    and collections[kind][idb.name] == idb
                ):
                    collections[kind].remove(idb)
            except ReferenceError:
                pass


def settings_values(settings) -> dict:
    """Every writable property of a property group (the scene's LSMPLify settings) by name."""
    return {
        p.identifier: getattr(settings, p.identifier)
        for p in settings.bl_rna.properties
        if p.identifier != "rna_type" and not p.is_readonly
    }


class SceneChange:
    """``with SceneChange(scene) as change:`` - all or nothing for a run that changes the scene.

    Data-blocks the run makes go into ``change.made``. When the block raises, they are
    removed, and the scene's frame range, current frame, frame rate and LSMPLify settings
    get their values from before the block back; the exception goes on.
    """

    def __init__(self, scene):
        self.scene = scene
        self.made: list = []
        r = scene.render
        self.timing = (scene.frame_start, scene.frame_end, r.fps, r.fps_base)
        self.frame = (scene.frame_current, scene.frame_subframe)
        self.settings = settings_values(scene.lsmplify)

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is not None:
            self.undo()
        return False

    def undo(self) -> None:
        """Back to the state taken on creation (for runs that fail outside a ``with`` block)."""
        sc = self.scene
        for name, value in self.settings.items():
            setattr(sc.lsmplify, name, value)
        sc.frame_start, sc.frame_end, sc.render.fps, sc.render.fps_base = self.timing
        sc.frame_set(self.frame[0], subframe=self.frame[1])
        remove_ids(self.made)


# No body reaches this far from its origin (metres); past it float32 mesh coordinates, which
# hold ~7 significant digits, could not even place a vertex to the millimetre.
MAX_BODY_COORD_M = 1e4


def check_buildable(model_data, betas) -> None:
    """Refuse before anything is built when the rig's mesh or bones would not be finite and
    body-sized: a model whose arrays hold NaN or infinite values, such betas, or a shaped
    mesh (v_template + shapedirs @ betas, joints by J_regressor) beyond MAX_BODY_COORD_M."""
    b = np.asarray(
        betas.detach().cpu().numpy() if hasattr(betas, "detach") else betas, np.float64
    ).reshape(-1)
    nb = min(b.size, model_data.num_betas)
    arrays = dict(
        v_template=model_data.v_template,
        shapedirs=model_data.shapedirs[:, :, :nb],
        J_regressor=model_data.J_regressor,
        weights=model_data.weights,
        betas=b,
    )
    if model_data.posedirs is not None:
        arrays["posedirs"] = model_data.posedirs
    bad = [k for k, v in arrays.items() if not np.isfinite(np.asarray(v, np.float64)).all()]
    if not bad:
        with np.errstate(all="ignore"):
            verts = (
                model_data.v_template.astype(np.float64)
                + model_data.shapedirs[:, :, :nb].astype(np.float64) @ b[:nb]
            )
            joints = model_data.J_regressor.astype(np.float64) @ verts
        bad = [
            k
            for k, v in (("shaped vertices", verts), ("joints", joints))
            if not (np.isfinite(v).all() and np.abs(v).max() < MAX_BODY_COORD_M)
        ]
    if bad:
        raise LSMPLifyError(
            f"The body model '{model_data.name}' or the body shape gives NaN, infinite or "
            f"far-off values ({', '.join(bad)}); no rig was built. Choose a valid body model "
            "in the add-on preferences."
        )


def action_state(idb):
    """What ``restore_action`` needs to give ``idb`` (an object or a shape-key datablock) its action back."""
    anim = idb.animation_data
    prev_action = anim.action if anim is not None else None
    return (
        anim is not None,
        prev_action,
        getattr(anim, "action_slot", None) if anim else None,
        prev_action.use_fake_user if prev_action is not None else None,
    )


def restore_action(idb, prev) -> None:
    had_anim, action, slot, fake = prev
    anim = idb.animation_data
    if anim is None:
        return
    if not had_anim:
        idb.animation_data_clear()
        return
    anim.action = action
    if slot is not None and hasattr(anim, "action_slot"):
        anim.action_slot = slot
    if action is not None and fake is not None:
        action.use_fake_user = fake


# ----------------------------------------------------------------------------- motion
def apply_solution(
    context,
    settings,
    solution,
    prepared,
    start_frame: int,
    model,
    target_rig=None,
    name: str = "SMPL",
):
    """Write a solution into the scene: a new rig (or a new action on ``target_rig``).

    Returns (rig, action). On any failure every data-block made here is removed again and
    the target rig gets its previous action back.
    """
    from .ground import contact_properties, feet_summary
    from .rig_style import style_from_settings

    rig_obj, action = write_motion(
        context,
        model,
        solution.rotmats,
        solution.trans,
        solution.betas,
        start_frame,
        solution.fit_error_mm,
        target_rig=target_rig,
        name=name,
        style=style_from_settings(settings),
        properties=contact_properties(solution.contacts),
        ground=solution.ground_height,
        action_name=f"LSMPLify_{solution.solver}",
        tags=dict(
            lsmplify_solver=solution.solver,
            lsmplify_layout=prepared.layout.name,
            lsmplify_mpbe_mm=float(solution.mpbe_mm),
        ),
    )
    store_results(
        settings,
        solution.betas,
        solution.fit_error_mm,
        solution.mpbe_mm,
        f"{solution.solver} on {prepared.num_frames} frames from {start_frame}, "
        f"{solution.seconds:.1f} s on {solution.device}",
    )
    settings.result_feet = feet_summary(solution)
    return rig_obj, action


def write_motion(
    context,
    model,
    rotmats,
    trans,
    betas,
    start_frame: int,
    fit_error_mm=None,
    target_rig=None,
    name: str = "SMPL",
    action_name: str = "LSMPLify",
    tags=None,
    style=None,
    properties=(),
    ground=None,
):
    """A new rig + action (or a new action on ``target_rig``); all or nothing. A new rig is
    laid out as ``style`` says (``rig_style.RigStyle``); a target rig keeps its own layout.
    ``properties`` (``keyframes.AnimatedProperty``) are keyed on the action too; a finite
    ``ground`` (SMPL height, metres) puts the rig's ground plane there (``ground.show_ground``).

    Where the rig's mesh carries pose-corrective shape keys (a model with ``posedirs``),
    they get a new action of their own on the mesh's shape-key datablock.
    """
    # looked up at call time (tests and benchmarks wrap them); importing keyframes imports torch
    from . import keyframes, rig

    made = []
    prev = None
    prev_keys = []  # (shape-key datablock, its animation state) of the target rig's meshes
    if target_rig is not None:
        prev = action_state(target_rig)
        prev_keys = [
            (m.data.shape_keys, action_state(m.data.shape_keys))
            for m in rig.corrective_meshes(target_rig)
        ]
    try:
        if target_rig is None:
            check_buildable(model.data, betas)
            rig_obj, mesh_obj = rig.build_smpl_rig(
                context, model.data, betas, name=name, style=style
            )
            made += [rig_obj, mesh_obj, rig_obj.data, mesh_obj.data]
            rig_obj["lsmplify_gender"] = model.data.meta.get("gender", "neutral")
        else:
            rig_obj = target_rig
        action = keyframes.write_pose_action(
            rig_obj,
            rotmats,
            trans,
            frame_start=start_frame,
            name=action_name,
            fit_error_mm=fit_error_mm,
            properties=properties,
        )
        made.append(action)
        for k, v in (tags or {}).items():
            action[k] = v
        for mesh_obj in rig.corrective_meshes(rig_obj):
            corr = keyframes.write_corrective_action(
                mesh_obj, rotmats, frame_start=start_frame, name=f"{action_name}_correctives"
            )
            if corr is not None:
                made.append(corr)
        if ground is not None and np.isfinite(ground):
            from .ground import show_ground

            show_ground(rig_obj, float(ground), keyframes._as_numpy(trans), made)
    except BaseException:
        if target_rig is not None:
            restore_action(target_rig, prev)
            for key, state in prev_keys:
                restore_action(key, state)
        remove_ids(made)
        raise
    return rig_obj, action


def store_results(settings, betas, fit_error_mm, mpbe_mm, summary: str) -> None:
    b = betas.detach().cpu().numpy() if hasattr(betas, "detach") else np.asarray(betas)
    err = np.asarray(fit_error_mm, dtype=np.float64)
    settings.has_result = True
    settings.result_mpbe_mm = float(mpbe_mm) if np.isfinite(mpbe_mm) else 0.0
    settings.result_fit_error_mm = float(np.nanmean(err)) if np.isfinite(err).any() else 0.0
    settings.result_betas = " ".join(f"{x:+.2f}" for x in b.reshape(-1)[:10])
    settings.result_summary = summary
