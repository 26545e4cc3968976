"""LSMPLify operators: each reads its properties, calls one function of the Blender modules
(``keypoint_empties``, ``solving``, ``npz_io``, ``fbx_export``, ``preview``) and reports.

Every one reports problems with ``self.report({'ERROR'}, ...)`` and returns
``{'CANCELLED'}`` (no traceback dialog), and a failed run leaves the scene as it was: new
data is made only after the solve succeeded, and anything half-made is removed.
"""

from __future__ import annotations

import contextlib
import traceback
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ExportHelper, ImportHelper

from ..core.errors import InputError, LSMPLifyError
from .properties import LAYOUT_ITEMS, REFINE_METHOD_ITEMS, UNIT_ITEMS, UP_ITEMS

# .txt: DeepMimic motion files (humanoid3d_*.txt), recognised by their content
KEYPOINT_GLOB = "*.npz;*.npy;*.json;*.csv;*.bvh;*.amc;*.fbx;*.txt"


@contextlib.contextmanager
def window_progress(context):
    """Blender's progress cursor over one blocking step (an import, reading a source's frames);
    yields the ``progress(fraction, what)`` callback the import and read functions take."""
    wm = context.window_manager
    wm.progress_begin(0, 100)
    try:
        yield lambda fraction, _what="": wm.progress_update(int(100 * fraction))
    finally:
        wm.progress_end()


class GuardedOperator:
    """``execute`` calls ``run``; errors become one report line and CANCELLED. Every report
    speaks Blender (``messages.in_blender_terms``)."""

    def execute(self, context):
        return self.guard(self.run, context)

    def guard(self, fn, *args):
        try:
            return fn(*args)
        except LSMPLifyError as exc:
            self.say({"ERROR"}, str(exc))
        except Exception as exc:  # noqa: BLE001 (operators report in the status bar, never a traceback dialog)
            traceback.print_exc()
            self.say(
                {"ERROR"},
                f"LSMPLify internal error ({type(exc).__name__}: {exc}); "
                "details are on the system console.",
            )
        return {"CANCELLED"}

    def say(self, kind, message: str) -> None:
        """``report`` in Blender's terms (an RNA method: a Python override would not be called)."""
        from .messages import in_blender_terms

        self.report(kind, in_blender_terms(message))

    def report_notes(self, notes) -> None:
        for note in notes:
            self.say({"INFO"}, f"LSMPLify: {note}")

    def warn(self, message: str) -> None:
        self.say({"WARNING"}, message)


def _rig_or_error(context):
    from .scene_writing import rig_from_context

    rig_obj = rig_from_context(context, context.scene.lsmplify)
    if rig_obj is None:
        raise InputError("No SMPL rig: make an LSMPLify rig (or its mesh) active.")
    return rig_obj


# =============================================================================== import
class LSMPLIFY_OT_import_keypoints(GuardedOperator, bpy.types.Operator, ImportHelper):
    """Read a keypoint or mocap file (.npz .npy .json .csv .bvh .amc, an .fbx take, a DeepMimic
    .txt motion), make it the scene's source and optionally show it as animated empties"""

    bl_idname = "lsmplify.import_keypoints"
    bl_label = "Import Keypoints"
    bl_options = {"REGISTER", "UNDO"}

    filter_glob: StringProperty(default=KEYPOINT_GLOB, options={"HIDDEN"})
    layout: EnumProperty(name="Layout", items=LAYOUT_ITEMS, default="AUTO")
    units: EnumProperty(name="Units", items=UNIT_ITEMS, default="AUTO")
    up: EnumProperty(name="Up", items=UP_ITEMS, default="AUTO")
    fps: FloatProperty(name="FPS", default=0.0, min=0.0, description="0: the file's, else 30")
    create_empties: BoolProperty(
        name="Create Empties",
        default=True,
        description="One animated empty per keypoint in a new collection",
    )
    update_scene: BoolProperty(
        name="Update Scene Range and FPS",
        default=True,
        description="Set the scene's frame range and frame rate to the file's",
    )
    asf_path: StringProperty(
        name="ASF Skeleton",
        subtype="FILE_PATH",
        default="",
        description="Skeleton (.asf) of an .amc motion; empty: the subject's .asf next to "
        "the motion (01_01.amc -> 01.asf)",
    )

    def run(self, context):
        from .keypoint_empties import import_keypoint_file
        from .model_cache import get_model

        model = get_model(context, warn=self.warn)
        if self.filepath.lower().endswith(
            ".fbx"
        ):  # an animated rig: Blender's importer, an Armature source
            from .keypoint_empties import import_fbx_armature

            with window_progress(context) as progress:
                arm, prepared = import_fbx_armature(
                    context,
                    self.filepath,
                    model,
                    self.layout,
                    self.units,
                    self.update_scene,
                    progress=progress,
                )
            self.report_notes(prepared.notes)
            self.say(
                {"INFO"},
                f"LSMPLify: the armature '{arm.name}' ({prepared.num_frames} frames of "
                f"{prepared.layout.title}) is the source",
            )
            return {"FINISHED"}
        with window_progress(context) as progress:
            prepared = import_keypoint_file(
                context,
                self.filepath,
                model,
                self.layout,
                self.units,
                self.up,
                self.fps,
                self.create_empties,
                self.update_scene,
                self.asf_path,
                progress=progress,
            )
        self.report_notes(prepared.notes)
        self.say(
            {"INFO"},
            f"LSMPLify: {prepared.num_frames} frames of {prepared.layout.title} "
            f"from '{Path(bpy.path.abspath(self.filepath)).name}'",
        )
        return {"FINISHED"}


# =============================================================================== solve, refine
class _InBackground(GuardedOperator):
    """``execute`` (scripts, background mode) runs the job here and now; ``invoke`` (a button)
    runs its solve in a worker thread (``solving.WorkerRun``) with a progress bar of the frames
    done, and writes on finishing; Esc stops the worker at the core's next block of frames and
    leaves the scene as it was. Subclasses make the job (``make_job``) and name what it does
    (``doing``)."""

    doing = "working"
    _run = None
    _timer = None
    _on_read = None  # progress(fraction) of reading a scene source's frames (invoke only)
    _before = None  # the scene's state before the job read it (its detected settings change)

    def run(self, context):
        from .scene_writing import SceneChange

        with SceneChange(context.scene):
            job = self.make_job(context)
            job.solve()
            return job.finish(self, context)

    def invoke(self, context, event):
        if bpy.app.background or context.window is None:
            return self.execute(context)
        from .scene_writing import SceneChange
        from .solving import BackgroundJob, WorkerRun

        self._before = SceneChange(context.scene)
        # reading an Armature or Empties source's frames takes seconds
        with window_progress(context) as progress:
            self._on_read = progress
            job = self.guard(self.make_job, context)
        if not isinstance(job, BackgroundJob):
            self._before.undo()
            return job  # CANCELLED, reported
        self._run = WorkerRun(job, self.doing)
        self._run.start()
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.progress_begin(0, 100)
        self._status(context, self._run.status())
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
        run = self._run
        if event.type == "ESC" and event.value == "PRESS" and not run.cancelled:
            run.cancel()  # the worker stops at its next block; its result is never written
            self._status(context, run.status())
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        if run.running:
            context.window_manager.progress_update(int(100 * run.fraction))
            self._status(context, run.status())
            return {"RUNNING_MODAL"}
        self._end(context)
        if run.cancelled:  # also when the worker finished before it saw the cancel
            self._before.undo()
            self.say({"WARNING"}, f"LSMPLify: {self.doing} cancelled; the scene is unchanged.")
            return {"CANCELLED"}
        if run.job.error is not None:
            err = run.job.error

            def fail():
                raise err

            done = self.guard(fail)
        else:
            done = self.guard(run.job.finish, self, context)
        if "FINISHED" not in done:
            self._before.undo()
        return done


class LSMPLIFY_OT_solve(_InBackground, bpy.types.Operator):
    """Solve SMPL pose and shape for the scene's keypoint source over the frame range"""

    bl_idname = "lsmplify.solve"
    bl_label = "Solve"
    bl_options = {"REGISTER", "UNDO"}
    doing = "solving"

    def make_job(self, context):
        from .solving import SolveJob

        return SolveJob(context, self.say, on_read=self._on_read)


class LSMPLIFY_OT_refine(_InBackground, bpy.types.Operator):
    """Refine the SMPL rig's current action against the keypoint source (writes a new action)"""

    bl_idname = "lsmplify.refine"
    bl_label = "Refine Action"
    bl_options = {"REGISTER", "UNDO"}
    doing = "refining"

    method: EnumProperty(
        name="Method",
        items=[("SCENE", "Panel Setting", "The panel's refine method"), *REFINE_METHOD_ITEMS],
        default="SCENE",
    )
    passes: IntProperty(
        name="Passes",
        default=0,
        min=0,
        max=10,
        description="Network passes; 0: the panel's setting",
    )
    iterations: IntProperty(
        name="Iterations",
        default=0,
        min=0,
        max=1000,
        description="Optimisation iterations; 0: the panel's Optimise After Solve (10 when "
        "that is 0 too)",
    )

    def make_job(self, context):
        from .scene_writing import rig_from_context
        from .solving import RefineJob

        s = context.scene.lsmplify
        rig_obj = rig_from_context(context, s)
        if rig_obj is None:
            raise InputError(
                "No SMPL rig to refine: make an LSMPLify rig active or set the target rig."
            )
        method = s.refine_method if self.method == "SCENE" else self.method
        passes = (self.passes or s.refine_passes) if method == "NETWORK" else 0
        iters = 0 if method == "NETWORK" else (self.iterations or s.refine_iters or 10)
        return RefineJob(
            context, s, rig_obj, method, passes, iters, warn=self.warn, on_read=self._on_read
        )


# =============================================================================== npz
class LSMPLIFY_OT_export_npz(GuardedOperator, bpy.types.Operator, ExportHelper):
    """Export the active SMPL rig's action as an AMASS-style .npz (one row per solved frame)"""

    bl_idname = "lsmplify.export_npz"
    bl_label = "Export SMPL (.npz)"
    filename_ext = ".npz"
    filter_glob: StringProperty(default="*.npz", options={"HIDDEN"})
    use_scene_range: BoolProperty(
        name="Scene Range Only",
        default=False,
        description="Only the solved frames inside the scene's frame range",
    )

    def run(self, context):
        from .npz_io import export_rig_npz, solved_frames

        scene = context.scene
        rig_obj = _rig_or_error(context)
        fs, fe = solved_frames(
            rig_obj, (scene.frame_start, scene.frame_end) if self.use_scene_range else None
        )
        out, rows = export_rig_npz(context, rig_obj, bpy.path.abspath(self.filepath), fs, fe)
        self.say({"INFO"}, f"LSMPLify: wrote {rows} frames to '{out.name}'")
        return {"FINISHED"}


class LSMPLIFY_OT_import_smpl_npz(GuardedOperator, bpy.types.Operator, ImportHelper):
    """Import an AMASS / LSMPLify SMPL .npz as a new SMPL rig with an action"""

    bl_idname = "lsmplify.import_smpl_npz"
    bl_label = "Import SMPL (.npz)"
    bl_options = {"REGISTER", "UNDO"}
    filter_glob: StringProperty(default="*.npz", options={"HIDDEN"})
    update_scene: BoolProperty(name="Update Scene Range and FPS", default=True)
    use_file_start: BoolProperty(
        name="File's Start Frame",
        default=True,
        description="Key the motion from the frame the file records (frame_start, "
        "written by LSMPLify's export); off: from the scene's first frame",
    )

    def run(self, context):
        from .model_cache import get_model
        from .npz_io import import_smpl_motion

        model = get_model(context, warn=self.warn)
        rig_obj, _, frames, notes = import_smpl_motion(
            context, bpy.path.abspath(self.filepath), model, self.update_scene, self.use_file_start
        )
        self.report_notes(notes)
        self.say({"INFO"}, f"LSMPLify: '{rig_obj.name}' with {frames} frames")
        return {"FINISHED"}


# =============================================================================== FBX
class LSMPLIFY_OT_export_fbx(GuardedOperator, bpy.types.Operator, ExportHelper):
    """Export the active SMPL rig, its mesh and its action as FBX for a game engine or DCC"""

    bl_idname = "lsmplify.export_fbx"
    bl_label = "Export SMPL (.fbx)"
    filename_ext = ".fbx"
    filter_glob: StringProperty(default="*.fbx", options={"HIDDEN"})
    preset: EnumProperty(
        name="Target",
        default="UNITY",
        items=(
            ("UNITY", "Unity", "Metres (FBX unit factor 100), Y up: scale 1 in Unity"),
            ("UNREAL", "Unreal", "Centimetres (FBX unit factor 1), Z up: real size in Unreal"),
            ("BLENDER", "Blender", "Blender's defaults (round trip into Blender)"),
        ),
    )

    def run(self, context):
        from .fbx_export import export_rig_fbx

        path = export_rig_fbx(
            context, _rig_or_error(context), bpy.path.abspath(self.filepath), self.preset
        )
        self.say({"INFO"}, f"LSMPLify: wrote '{Path(path).name}' ({self.preset.title()} settings)")
        return {"FINISHED"}


# =============================================================================== preview
class LSMPLIFY_OT_render_preview(GuardedOperator, bpy.types.Operator):
    """Render a quick Workbench preview of the SMPL mesh and the keypoints to PNG files"""

    bl_idname = "lsmplify.render_preview"
    bl_label = "Render Preview"

    directory: StringProperty(name="Folder", subtype="DIR_PATH", default="//lsmplify_preview/")
    max_frames: IntProperty(
        name="Frames",
        default=10,
        min=0,
        description="Frames to render, evenly spread over the frame range (0: every frame)",
    )
    resolution: IntProperty(
        name="Resolution",
        default=320,
        min=16,
        max=4096,
        description="Width in pixels (height is 3/4 of it)",
    )
    video: BoolProperty(
        name="Video",
        default=False,
        description="Also every frame of the range as an H.264 .mp4 (Blender's FFmpeg output)",
    )

    def invoke(self, context, event):
        return context.window_manager.invoke_props_dialog(self)

    def run(self, context):
        from .keypoint_empties import keypoint_targets
        from .preview import MARKER_RADIUS_M, preview_folder, preview_frames, render_preview
        from .scene_writing import match_source_scale
        from .sources import frame_range

        s = context.scene.lsmplify
        frames = preview_frames(*frame_range(context.scene, s), self.max_frames)
        folder = preview_folder(self.directory)
        radius = MARKER_RADIUS_M * match_source_scale(
            context.scene, s.source_type, s.detected_units
        )  # scene units
        written = render_preview(
            context,
            folder,
            frames,
            keypoint_targets(context, s),
            self.resolution,
            self.video,
            radius,
        )
        videos = [p for p in written if p.endswith(".mp4")]
        self.say(
            {"INFO"},
            f"LSMPLify: rendered {len(written) - len(videos)} frames to '{folder}'"
            + (f" and the video '{Path(videos[0]).name}'" if videos else ""),
        )
        return {"FINISHED"}


# =============================================================================== menus
def menu_import(self, _context):
    self.layout.operator(
        LSMPLIFY_OT_import_keypoints.bl_idname,
        text="Keypoints for LSMPLify (.bvh .amc .fbx DeepMimic .txt ...)",
    )
    self.layout.operator(LSMPLIFY_OT_import_smpl_npz.bl_idname, text="SMPL Motion (.npz)")


def menu_export(self, _context):
    self.layout.operator(LSMPLIFY_OT_export_npz.bl_idname, text="SMPL Motion (.npz)")
    self.layout.operator(LSMPLIFY_OT_export_fbx.bl_idname, text="SMPL Rig for Engines (.fbx)")


CLASSES = (
    LSMPLIFY_OT_import_keypoints,
    LSMPLIFY_OT_solve,
    LSMPLIFY_OT_refine,
    LSMPLIFY_OT_export_npz,
    LSMPLIFY_OT_import_smpl_npz,
    LSMPLIFY_OT_export_fbx,
    LSMPLIFY_OT_render_preview,
)
