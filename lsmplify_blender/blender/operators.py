"""LSMPLify operators. Every one reports problems with ``self.report({'ERROR'}, ...)`` and
returns ``{'CANCELLED'}`` (no traceback dialog), and a failed run leaves the scene as it was:
new data is made only after the solve succeeded, and anything half-made is removed.
"""
from __future__ import annotations

import os
import threading
import time
import traceback
from pathlib import Path

import bpy
import numpy as np
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ExportHelper, ImportHelper

from ..core.errors import InputError, LSMPLifyError
from . import runtime
from .properties import LAYOUT_ITEMS, REFINE_METHOD_ITEMS, UNIT_ITEMS, UP_ITEMS

KEYPOINT_GLOB = "*.npz;*.npy;*.json;*.csv;*.bvh;*.amc"


class _Guarded:
    """``execute`` calls ``run``; errors become one report line and CANCELLED."""

    def execute(self, context):
        return self.guard(self.run, context)

    def guard(self, fn, *args):
        try:
            return fn(*args)
        except LSMPLifyError as exc:
            self.report({"ERROR"}, str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug: short message, details on the console
            traceback.print_exc()
            self.report({"ERROR"}, f"LSMPLify internal error ({type(exc).__name__}: {exc}); "
                                   "details are on the system console.")
        return {"CANCELLED"}

    def report_notes(self, notes) -> None:
        for note in notes:
            self.report({"INFO"}, f"LSMPLify: {note}")


def _settings(context):
    return context.scene.lsmplify


def _set_scene_timing(scene, start: int, frames: int, fps: float) -> None:
    scene.frame_start = start
    scene.frame_end = start + frames - 1
    if fps and fps > 0:
        whole = max(1, int(round(fps)))
        scene.render.fps = whole
        scene.render.fps_base = whole / float(fps)


# =============================================================================== import
def create_keypoint_empties(context, prepared, start_frame: int, name: str):
    """One empty per seen keypoint in a new collection, keyed in bulk (Blender Z up, scene units)."""
    from .keyframes import _enum_value, _FCurveWriter, _write_keys
    from .rig import smpl_to_blender

    scene = context.scene
    scale = float(scene.unit_settings.scale_length or 1.0)
    pos = smpl_to_blender(prepared.positions) / scale  # (T, K, 3)
    seen = prepared.weight > 0
    frames_all = (start_frame + np.arange(prepared.num_frames)).astype(np.float32)
    linear = _enum_value(bpy.types.Keyframe, "interpolation", "LINEAR")
    made = []
    try:
        coll = bpy.data.collections.new(f"{name} keypoints")
        made.append(coll)
        for k, kp in enumerate(prepared.layout.keypoints):
            ok = seen[:, k]
            if not ok.any():
                continue
            obj = bpy.data.objects.new(kp, None)
            made.append(obj)
            obj.empty_display_type = "SPHERE"
            obj.empty_display_size = 0.025 / scale
            obj[runtime.KEYPOINT_PROP] = kp
            coll.objects.link(obj)
            first = int(np.argmax(ok))
            obj.location = tuple(pos[first, k])
            action = bpy.data.actions.new(f"{kp}_keypoint")
            made.append(action)
            writer = _FCurveWriter(action, obj)
            for c in range(3):
                _write_keys(writer.new("location", c, "Location"), frames_all[ok],
                            pos[ok, k, c].astype(np.float32), linear)
            writer.assign()
        scene.collection.children.link(coll)
    except BaseException:
        runtime.remove_ids(made)
        raise
    return coll


class LSMPLIFY_OT_import_keypoints(_Guarded, bpy.types.Operator, ImportHelper):
    """Read a keypoint file, make it the scene's source and optionally show it as animated empties"""
    bl_idname = "lsmplify.import_keypoints"
    bl_label = "Import Keypoints"
    bl_options = {"REGISTER", "UNDO"}

    filter_glob: StringProperty(default=KEYPOINT_GLOB, options={"HIDDEN"})
    layout: EnumProperty(name="Layout", items=LAYOUT_ITEMS, default="AUTO")
    units: EnumProperty(name="Units", items=UNIT_ITEMS, default="AUTO")
    up: EnumProperty(name="Up", items=UP_ITEMS, default="AUTO")
    fps: FloatProperty(name="FPS", default=0.0, min=0.0, description="0: the file's, else 30")
    create_empties: BoolProperty(name="Create Empties", default=True,
                                 description="One animated empty per keypoint in a new collection")
    update_scene: BoolProperty(name="Update Scene Range and FPS", default=True,
                               description="Set the scene's frame range and frame rate to the file's")

    def run(self, context):
        from ..core.formats import read_keypoints
        from ..core.prepare import prepare

        path = bpy.path.abspath(self.filepath)
        model = runtime.get_model(context, warn=lambda m: self.report({'WARNING'}, m))
        seq = read_keypoints(path)
        prepared = prepare(seq, model, layout=runtime._opt(self.layout), units=runtime._opt(self.units),
                           up=runtime._opt(self.up), fps=self.fps or None)
        scene = context.scene
        start = scene.frame_start
        coll = create_keypoint_empties(context, prepared, start, runtime.safe_stem(path)) \
            if self.create_empties else None
        s = _settings(context)
        s.source_type = "FILE"
        s.filepath = self.filepath
        s.layout, s.units, s.up_axis, s.fps = self.layout, self.units, self.up, self.fps
        s.file_frame_start = start
        if coll is not None:
            s.empties_collection = coll
        runtime.set_detected(s, prepared)
        if self.update_scene:
            _set_scene_timing(scene, start, prepared.num_frames, prepared.fps)
        self.report_notes(prepared.notes)
        self.report({"INFO"}, f"LSMPLify: {prepared.num_frames} frames of {prepared.layout.title} "
                              f"from '{Path(path).name}'")
        return {"FINISHED"}


# =============================================================================== solve
class _SolveJob:
    def __init__(self, context, report):
        s = _settings(context)
        self.model = runtime.get_model(context, warn=lambda m: report({'WARNING'}, m))
        target = s.target_rig
        if target is not None and not runtime.is_smpl_rig(target):
            raise InputError(f"The target rig '{target.name}' is not an SMPL rig; clear it to make a new rig.")
        self.target_name = target.name if target is not None else None
        self.betas = None
        if target is not None:
            runtime.check_rig_model(target, self.model)
            self.betas = runtime.rig_betas(target)[: self.model.num_betas]
        prepared, self.start = runtime.gather_source(context, s, self.model)
        self.prepared = prepared
        self.smooth = runtime.smooth_setting(s)
        self.solver = runtime.solver_name(s)
        self.refine = s.refine_iters
        self.name = runtime.safe_stem(s.filepath) if s.source_type == "FILE" else "SMPL"
        self.solution = None
        self.error = None
        self.cancelled = False

    def solve(self):
        self.solution = runtime.run_solve(self.prepared, self.model, self.solver, self.refine, self.betas,
                                          self.smooth)

    def work(self):  # worker thread: no bpy
        try:
            self.solve()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self.error = exc

    def finish(self, op, context):
        target = None
        if self.target_name is not None:
            target = bpy.data.objects.get(self.target_name)
            if target is None:
                raise InputError(f"The target rig '{self.target_name}' was deleted during the solve.")
        rig_obj, action = runtime.apply_solution(context, _settings(context), self.solution, self.prepared,
                                                 self.start, self.model, target_rig=target, name=self.name)
        op.report_notes(self.prepared.notes + self.solution.notes)
        s = _settings(context)
        op.report({"INFO"}, f"LSMPLify: '{action.name}' on '{rig_obj.name}': fit error "
                            f"{s.result_fit_error_mm:.1f} mm, MPBE {s.result_mpbe_mm:.1f} mm")
        return {"FINISHED"}


class LSMPLIFY_OT_solve(_Guarded, bpy.types.Operator):
    """Solve SMPL pose and shape for the scene's keypoint source over the frame range"""
    bl_idname = "lsmplify.solve"
    bl_label = "Solve"
    bl_options = {"REGISTER", "UNDO"}

    _job = None
    _thread = None
    _timer = None
    _t0 = 0.0

    def run(self, context):
        job = _SolveJob(context, self.report)
        job.solve()
        return job.finish(self, context)

    def invoke(self, context, event):
        wm = context.window_manager
        if bpy.app.background or context.window is None:
            return self.execute(context)
        try:
            self._job = _SolveJob(context, self.report)
        except LSMPLifyError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            self.report({"ERROR"}, f"LSMPLify internal error ({type(exc).__name__}: {exc}).")
            return {"CANCELLED"}
        self._thread = threading.Thread(target=self._job.work, name="lsmplify-solve", daemon=True)
        self._t0 = time.perf_counter()
        self._thread.start()
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.progress_begin(0, 100)
        self._status(context, f"LSMPLify: solving {self._job.prepared.num_frames} frames... (Esc to cancel)")
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _status(self, context, text):
        ws = getattr(context, "workspace", None)
        if ws is not None:
            ws.status_text_set(text)

    def _end(self, context):
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()
        self._status(context, None)

    def modal(self, context, event):
        if event.type == "ESC":
            self._job.cancelled = True  # the worker finishes on its own; its result is dropped
            self._end(context)
            self.report({"WARNING"}, "LSMPLify: solve cancelled; the scene is unchanged.")
            return {"CANCELLED"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        if self._thread.is_alive():
            elapsed = time.perf_counter() - self._t0
            # no progress signal from the core: an asymptotic bar that never claims to be done
            context.window_manager.progress_update(int(99 * (1 - np.exp(-elapsed / 10.0))))
            return {"RUNNING_MODAL"}
        self._end(context)
        if self._job.error is not None:
            err = self._job.error

            def fail():
                raise err
            return self.guard(fail)
        return self.guard(self._job.finish, self, context)


# =============================================================================== refine
class LSMPLIFY_OT_refine(_Guarded, bpy.types.Operator):
    """Refine the SMPL rig's current action against the keypoint source (writes a new action)"""
    bl_idname = "lsmplify.refine"
    bl_label = "Refine Action"
    bl_options = {"REGISTER", "UNDO"}

    method: EnumProperty(name="Method", items=[("SCENE", "Panel Setting", "The panel's refine method"),
                                               *REFINE_METHOD_ITEMS], default="SCENE")
    passes: IntProperty(name="Passes", default=0, min=0, max=10,
                        description="Network passes; 0: the panel's setting")
    iterations: IntProperty(name="Iterations", default=0, min=0, max=1000,
                            description="Optimisation iterations; 0: the panel's Refine setting (10 when that "
                                        "is 0 too)")

    def run(self, context):
        from ..core.solver import refine_existing
        from .keyframes import read_pose_action

        s = _settings(context)
        rig_obj = runtime.rig_from_context(context, s)
        if rig_obj is None:
            raise InputError("No SMPL rig to refine: make an LSMPLify rig active or set the target rig.")
        anim = rig_obj.animation_data
        if anim is None or anim.action is None:
            raise InputError(f"The rig '{rig_obj.name}' has no action to refine; solve first.")
        model = runtime.get_model(context, warn=lambda m: self.report({'WARNING'}, m))
        runtime.check_rig_model(rig_obj, model)
        prepared, start = runtime.gather_source(context, s, model)
        end = start + prepared.num_frames - 1
        rotmats, trans = read_pose_action(rig_obj, start, end)
        betas = runtime.rig_betas(rig_obj)[: model.num_betas]
        method = s.refine_method if self.method == "SCENE" else self.method
        passes = (self.passes or s.refine_passes) if method == "NETWORK" else 0
        iters = 0 if method == "NETWORK" else (self.iterations or s.refine_iters or 10)
        wm = context.window_manager
        wm.progress_begin(0, 1)
        try:
            sol = refine_existing(prepared, model, rotmats, betas, trans, passes=passes, refine=iters,
                                  smooth=runtime.smooth_setting(s))
        finally:
            wm.progress_end()
        err = sol.fit_error_mm
        _, action = runtime.write_motion(context, model, sol.rotmats, sol.trans, betas, start, err,
                                         target_rig=rig_obj, action_name="LSMPLify_refined",
                                         tags=dict(lsmplify_solver="refine", lsmplify_layout=prepared.layout.name))
        self.report_notes(sol.notes)
        s.has_result = True
        s.result_fit_error_mm = float(np.nanmean(err)) if np.isfinite(err).any() else 0.0
        s.result_summary = f"refined ({'; '.join(sol.notes) or method.lower()}) on {prepared.num_frames} " \
                           f"frames, {sol.seconds:.1f} s"
        self.report({"INFO"}, f"LSMPLify: refined into '{action.name}': fit error {s.result_fit_error_mm:.1f} mm")
        return {"FINISHED"}


# =============================================================================== npz
class LSMPLIFY_OT_export_npz(_Guarded, bpy.types.Operator, ExportHelper):
    """Export the active SMPL rig's action as an AMASS-style .npz (one row per scene frame)"""
    bl_idname = "lsmplify.export_npz"
    bl_label = "Export SMPL (.npz)"
    filename_ext = ".npz"
    filter_glob: StringProperty(default="*.npz", options={"HIDDEN"})

    def run(self, context):
        import torch

        from ..core.formats.amass import write_smpl_npz
        from ..core.rotations import matrix_to_axis_angle
        from .keyframes import FIT_ERROR_PROP, action_fcurves, read_pose_action

        scene = context.scene
        rig_obj = runtime.rig_from_context(context, _settings(context))
        if rig_obj is None:
            raise InputError("No SMPL rig: make an LSMPLify rig (or its mesh) active.")
        anim = rig_obj.animation_data
        if anim is None or anim.action is None:
            raise InputError(f"The rig '{rig_obj.name}' has no action to export.")
        fs, fe = scene.frame_start, scene.frame_end
        rotmats, trans = read_pose_action(rig_obj, fs, fe)
        poses = matrix_to_axis_angle(torch.from_numpy(rotmats)).reshape(-1, 72).numpy()
        extra = {}
        slot = getattr(anim, "action_slot", None)
        fit = next((fc for fc in action_fcurves(anim.action, slot)
                    if fc.data_path == f'["{FIT_ERROR_PROP}"]'), None)
        if fit is not None:
            extra["fit_error_mm"] = np.array([fit.evaluate(f) for f in range(fs, fe + 1)], dtype=np.float32)
        for key in ("lsmplify_solver", "lsmplify_layout"):
            if key in anim.action:
                extra[key.split("_", 1)[1]] = str(anim.action[key])
        out = write_smpl_npz(bpy.path.abspath(self.filepath), poses, runtime.rig_betas(rig_obj), trans,
                             runtime.scene_fps(scene), gender=str(rig_obj.get("lsmplify_gender", "neutral")),
                             model=str(rig_obj.get("lsmplify_model", "")), frame_start=np.int32(fs), **extra)
        self.report({"INFO"}, f"LSMPLify: wrote {poses.shape[0]} frames to '{out.name}'")
        return {"FINISHED"}


class LSMPLIFY_OT_import_smpl_npz(_Guarded, bpy.types.Operator, ImportHelper):
    """Import an AMASS / LSMPLify SMPL .npz as a new SMPL rig with an action"""
    bl_idname = "lsmplify.import_smpl_npz"
    bl_label = "Import SMPL (.npz)"
    bl_options = {"REGISTER", "UNDO"}
    filter_glob: StringProperty(default="*.npz", options={"HIDDEN"})
    update_scene: BoolProperty(name="Update Scene Range and FPS", default=True)

    def run(self, context):
        import torch

        from ..core.formats.amass import read_smpl_npz
        from ..core.rotations import axis_angle_to_matrix

        path = bpy.path.abspath(self.filepath)
        if not os.path.isfile(path):
            raise InputError(f"File not found: {path}")
        data = read_smpl_npz(path)
        if data["up"].lower() != "y":
            raise InputError(f"{Path(path).name}: up axis '{data['up']}'; SMPL parameters are Y up.")
        poses = np.asarray(data["poses"], dtype=np.float64)
        if not np.isfinite(poses).all() or not np.isfinite(data["trans"]).all():
            raise InputError(f"{Path(path).name}: the poses or translations contain NaN or infinite values.")
        rotmats = axis_angle_to_matrix(torch.from_numpy(poses.reshape(-1, 24, 3)))
        model = runtime.get_model(context, warn=lambda m: self.report({'WARNING'}, m))
        scene = context.scene
        start = scene.frame_start
        fit = None
        try:
            with np.load(path, allow_pickle=False) as z:
                if "fit_error_mm" in z.files and z["fit_error_mm"].shape == (poses.shape[0],):
                    fit = z["fit_error_mm"]
        except (OSError, ValueError):
            fit = None
        rig_obj, action = runtime.write_motion(context, model, rotmats, data["trans"], data["betas"], start, fit,
                                               name=runtime.safe_stem(path), action_name=runtime.safe_stem(path))
        if self.update_scene:
            _set_scene_timing(scene, start, poses.shape[0], data["fps"])
        self.report({"INFO"}, f"LSMPLify: '{rig_obj.name}' with {poses.shape[0]} frames")
        return {"FINISHED"}


# =============================================================================== FBX
# Settings per target. Shared: only the rig and its mesh, no leaf bones (they would become
# extra joints in engines), only deforming bones, the active action baked at every frame
# with no simplification (the solve's keys exactly), no NLA/all-actions stacks.
FBX_PRESETS = {
    # Unity reads FBX units: 'FBX All' writes the metre scale into the file's unit factor, so
    # the model arrives at scale 1 (not 100) with no per-object scale; -Z forward / Y up is
    # Unity's own axis convention. (Apply Transform is not used: Blender documents it as
    # broken with armatures. Unity's 'Bake Axis Conversion' removes the root's axis rotation.)
    "UNITY": dict(axis_forward="-Z", axis_up="Y", apply_unit_scale=True, apply_scale_options="FBX_SCALE_ALL"),
    # Unreal converts axes itself (Convert Scene) and works in centimetres: units go to the
    # FBX unit factor ('FBX Units Scale') so the armature keeps scale 1 and the body its real size.
    "UNREAL": dict(axis_forward="-Z", axis_up="Y", apply_unit_scale=True, apply_scale_options="FBX_SCALE_UNITS"),
    # Blender's own defaults: re-imports into Blender unchanged.
    "BLENDER": dict(axis_forward="-Z", axis_up="Y", apply_unit_scale=True, apply_scale_options="FBX_SCALE_NONE"),
}
FBX_COMMON = dict(use_selection=True, object_types={"ARMATURE", "MESH"}, add_leaf_bones=False,
                  use_armature_deform_only=True, primary_bone_axis="Y", secondary_bone_axis="X",
                  armature_nodetype="NULL", bake_anim=True, bake_anim_use_all_bones=True,
                  bake_anim_use_nla_strips=False, bake_anim_use_all_actions=False,
                  bake_anim_force_startend_keying=True, bake_anim_step=1.0, bake_anim_simplify_factor=0.0,
                  use_mesh_modifiers=False, mesh_smooth_type="FACE", bake_space_transform=False, global_scale=1.0)


class LSMPLIFY_OT_export_fbx(_Guarded, bpy.types.Operator, ExportHelper):
    """Export the active SMPL rig, its mesh and its action as FBX for a game engine or DCC"""
    bl_idname = "lsmplify.export_fbx"
    bl_label = "Export SMPL (.fbx)"
    filename_ext = ".fbx"
    filter_glob: StringProperty(default="*.fbx", options={"HIDDEN"})
    preset: EnumProperty(name="Target", default="UNITY", items=(
        ("UNITY", "Unity", "Scale 1 in Unity, Y up"),
        ("UNREAL", "Unreal", "Real size in centimetres, armature scale 1"),
        ("BLENDER", "Blender", "Blender's defaults (round trip into Blender)"),
    ))

    def run(self, context):
        rig_obj = runtime.rig_from_context(context, _settings(context))
        if rig_obj is None:
            raise InputError("No SMPL rig: make an LSMPLify rig (or its mesh) active.")
        if not hasattr(bpy.ops.export_scene, "fbx") or "EXPORT_SCENE_OT_fbx" not in dir(bpy.types):
            raise LSMPLifyError("Blender's FBX exporter is not enabled: enable the 'FBX format' add-on.")
        objs = [rig_obj] + [c for c in rig_obj.children if c.type == "MESH"]
        view_layer = context.view_layer
        prev_sel = [o for o in view_layer.objects if o.select_get()]
        prev_active = view_layer.objects.active
        path = bpy.path.abspath(self.filepath)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        try:
            for o in prev_sel:
                o.select_set(False)
            for o in objs:
                o.select_set(True)
            view_layer.objects.active = rig_obj
            with context.temp_override(active_object=rig_obj, selected_objects=objs):
                result = bpy.ops.export_scene.fbx(filepath=path, **FBX_COMMON, **FBX_PRESETS[self.preset])
        finally:
            for o in objs:
                o.select_set(False)
            for o in prev_sel:
                o.select_set(True)
            view_layer.objects.active = prev_active
        if "FINISHED" not in result or not os.path.isfile(path):
            raise LSMPLifyError(f"The FBX exporter did not write '{path}'.")
        self.report({"INFO"}, f"LSMPLify: wrote '{Path(path).name}' ({self.preset.title()} settings)")
        return {"FINISHED"}


# =============================================================================== preview
class LSMPLIFY_OT_render_preview(_Guarded, bpy.types.Operator):
    """Render a quick Workbench preview of the SMPL mesh and the keypoints to PNG files"""
    bl_idname = "lsmplify.render_preview"
    bl_label = "Render Preview"

    directory: StringProperty(name="Folder", subtype="DIR_PATH", default="//lsmplify_preview/")
    max_frames: IntProperty(name="Frames", default=10, min=0,
                            description="Frames to render, evenly spread over the frame range (0: every frame)")
    resolution: IntProperty(name="Resolution", default=320, min=16, max=4096,
                            description="Width in pixels (height is 3/4 of it)")

    def invoke(self, context, event):
        return context.window_manager.invoke_props_dialog(self)

    def run(self, context):
        scene = context.scene
        s = _settings(context)
        fs, fe = runtime.frame_range(scene, s)
        frames = list(range(fs, fe + 1))
        if self.max_frames and len(frames) > self.max_frames:
            frames = sorted(set(np.linspace(fs, fe, self.max_frames).round().astype(int).tolist()))
        folder = bpy.path.abspath(self.directory)
        if not folder or (folder.startswith("//")):
            raise InputError("Choose an output folder (save the .blend first to use a relative '//' folder).")
        os.makedirs(folder, exist_ok=True)
        meshes = [o for o in scene.objects if o.type == "MESH" and o.get("lsmplify_mesh") and o.visible_get()]
        empties = self._empties(context, s)
        if not meshes and not empties:
            raise InputError("Nothing to preview: no visible LSMPLify mesh or keypoint empties.")

        made = []
        saved = _RenderState(scene)
        written = []
        try:
            markers = self._markers(empties, made)
            cam = self._camera(context, meshes, empties, frames, made)
            r = scene.render
            r.engine = "BLENDER_WORKBENCH"
            r.resolution_x, r.resolution_y, r.resolution_percentage = self.resolution, max(16, self.resolution * 3 // 4), 100
            r.image_settings.file_format = "PNG"
            r.film_transparent = False
            scene.display.shading.light = "STUDIO"
            scene.display.shading.color_type = "OBJECT"
            scene.camera = cam
            for o in meshes:
                o.color = (0.75, 0.75, 0.78, 1.0)
            for m in markers:
                m.color = (1.0, 0.25, 0.1, 1.0)
            for f in frames:
                scene.frame_set(f)
                r.filepath = os.path.join(folder, f"preview_{f:05d}.png")
                bpy.ops.render.render(write_still=True, scene=scene.name)
                written.append(r.filepath)
        finally:
            saved.restore(scene)
            runtime.remove_ids(made)
        self.report({"INFO"}, f"LSMPLify: rendered {len(written)} frames to '{folder}'")
        return {"FINISHED"}

    @staticmethod
    def _empties(context, s):
        if s.source_type == "EMPTIES":
            return [o for o in context.selected_objects if o.type == "EMPTY"]
        coll = s.empties_collection
        if coll is not None and coll.name in context.scene.collection.children_recursive:
            return [o for o in coll.all_objects if o.type == "EMPTY" and o.visible_get()]
        return []

    @staticmethod
    def _markers(empties, made):
        """Empties do not render: a small sphere follows each one while rendering."""
        if not empties:
            return []
        import bmesh
        mesh = bpy.data.meshes.new("lsmplify_marker")
        made.append(mesh)
        bm = bmesh.new()
        bmesh.ops.create_uvsphere(bm, u_segments=8, v_segments=6, radius=0.025)
        bm.to_mesh(mesh)
        bm.free()
        coll = bpy.data.collections.new("lsmplify_preview_markers")
        made.append(coll)
        bpy.context.scene.collection.children.link(coll)
        out = []
        for e in empties:
            m = bpy.data.objects.new(f"marker_{e.name}", mesh)
            made.append(m)
            coll.objects.link(m)
            m.parent = e
            m.matrix_parent_inverse.identity()
            s = e.matrix_world.to_scale()
            m.scale = tuple(1.0 / max(abs(c), 1e-6) for c in s)
            out.append(m)
        return out

    def _camera(self, context, meshes, empties, frames, made):
        """An orthographic front camera (-Y, looking +Y) framing everything over the frames."""
        scene = context.scene
        pts = []
        step = max(1, len(frames) // 20)
        current = scene.frame_current
        deps = context.evaluated_depsgraph_get()
        for f in frames[::step] + [frames[-1]]:
            scene.frame_set(f)
            for o in meshes:
                ev = o.evaluated_get(deps)
                mw = np.array(ev.matrix_world)
                bb = np.array([tuple(c) for c in ev.bound_box])
                pts.append(bb @ mw[:3, :3].T + mw[:3, 3])
            if empties:
                pts.append(np.array([tuple(e.matrix_world.translation) for e in empties]))
        scene.frame_set(current)
        p = np.concatenate(pts, 0)
        lo, hi = p.min(0), p.max(0)
        centre = (lo + hi) / 2
        size = max(hi[0] - lo[0], (hi[2] - lo[2]) * 4 / 3) * 1.15 + 0.1
        cam_data = bpy.data.cameras.new("lsmplify_preview_camera")
        made.append(cam_data)
        cam_data.type = "ORTHO"
        cam_data.ortho_scale = float(size)
        cam_data.clip_end = 1000.0
        cam = bpy.data.objects.new("lsmplify_preview_camera", cam_data)
        made.append(cam)
        scene.collection.objects.link(cam)
        cam.location = (float(centre[0]), float(lo[1] - 10.0), float(centre[2]))
        cam.rotation_euler = (np.pi / 2, 0.0, 0.0)  # looks along +Y, Z up
        return cam


class _RenderState:
    """Render settings the preview changes, restored afterwards."""

    def __init__(self, scene):
        r = scene.render
        self.values = dict(engine=r.engine, resolution_x=r.resolution_x, resolution_y=r.resolution_y,
                           resolution_percentage=r.resolution_percentage, filepath=r.filepath,
                           film_transparent=r.film_transparent)
        self.file_format = r.image_settings.file_format
        self.light = scene.display.shading.light
        self.color_type = scene.display.shading.color_type
        self.camera = scene.camera
        self.frame = (scene.frame_current, scene.frame_subframe)
        self.colors = {o.name: tuple(o.color) for o in scene.objects}

    def restore(self, scene):
        r = scene.render
        for k, v in self.values.items():
            setattr(r, k, v)
        r.image_settings.file_format = self.file_format
        scene.display.shading.light = self.light
        scene.display.shading.color_type = self.color_type
        scene.camera = self.camera
        for name, c in self.colors.items():
            o = scene.objects.get(name)
            if o is not None:
                o.color = c
        scene.frame_set(self.frame[0], subframe=self.frame[1])


# =============================================================================== menus
def menu_import(self, _context):
    self.layout.operator(LSMPLIFY_OT_import_keypoints.bl_idname, text="Keypoints for LSMPLify (.bvh .npz .csv ...)")
    self.layout.operator(LSMPLIFY_OT_import_smpl_npz.bl_idname, text="SMPL Motion (.npz)")


def menu_export(self, _context):
    self.layout.operator(LSMPLIFY_OT_export_npz.bl_idname, text="SMPL Motion (.npz)")
    self.layout.operator(LSMPLIFY_OT_export_fbx.bl_idname, text="SMPL Rig for Engines (.fbx)")


CLASSES = (LSMPLIFY_OT_import_keypoints, LSMPLIFY_OT_solve, LSMPLIFY_OT_refine, LSMPLIFY_OT_export_npz,
           LSMPLIFY_OT_import_smpl_npz, LSMPLIFY_OT_export_fbx, LSMPLIFY_OT_render_preview)
