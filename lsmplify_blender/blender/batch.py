"""File > Import > Batch Convert (LSMPLify): a folder of takes in, a folder of results out.

The conversion is the core's (``core.batch``: the same takes, names, resume and summary as
``python -m lsmplify_blender batch``), run in a worker thread with the add-on's model and
the scene's solve settings, so Blender stays responsive: progress in the status bar and
the window manager's progress cursor, Esc cancels after the take in hand. With "Also FBX"
every converted take is turned into an FBX on the main thread (bpy is not thread-safe) by
the add-on's own Import SMPL (.npz) and Export SMPL (.fbx) operators, on a temporary rig
that is removed again: the scene is left as it was.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import traceback
from argparse import Namespace
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty

from ..core.errors import InputError, LSMPLifyError
from . import model_cache, scene_writing, solving, sources
from .fbx_export import FBX_PRESETS

ID_COLLECTIONS = ("objects", "meshes", "armatures", "actions", "collections")


def take_options(settings) -> Namespace:
    """The scene's solve settings as the take options of ``core.cli.convert_take``."""
    opt = sources.option_value
    return Namespace(
        layout=opt(settings.layout),
        units=opt(settings.units),
        up=opt(settings.up_axis),
        fps=settings.fps or None,
        model=None,
        solver=solving.solver_name(settings),
        refine=int(settings.refine_iters),
        chunk=None,
        smooth=solving.smooth_setting(settings),
        rotations="auto",
        device="auto",
        asf=None,
        init=None,
    )


class BatchJob:
    """One batch: ``work`` converts in a worker thread (no bpy); ``drain`` and ``finish`` run
    on the main thread (FBX, summary)."""

    def __init__(
        self,
        context,
        input_dir: str,
        output_dir: str,
        export_fbx=False,
        preset="UNITY",
        overwrite=False,
        warn=None,
    ):
        from ..core import batch as core_batch

        if not input_dir or not os.path.isdir(input_dir):
            raise InputError(
                f"Input Folder '{input_dir}' is not a folder: choose the folder of keypoint takes."
            )
        if not output_dir:
            raise InputError("No Output Folder: choose where the .npz (and .fbx) results go.")
        if os.path.isfile(output_dir):
            raise InputError(f"Output Folder '{output_dir}' is a file: choose a folder.")
        self.core = core_batch
        self.output_dir = Path(output_dir)
        self.export_fbx, self.preset = export_fbx, preset
        self.options = take_options(context.scene.lsmplify)
        self.model = model_cache.get_model(context, warn=warn)
        self.takes = core_batch.find_takes([input_dir], output_dir, overwrite=overwrite)
        self.todo = sum(t.status == "pending" for t in self.takes)
        self.cancel = threading.Event()
        self.done: queue.SimpleQueue = queue.SimpleQueue()  # takes finished by the worker thread
        self.converted = 0
        self.error = None
        self.t0 = time.perf_counter()
        if export_fbx:  # up-to-date results whose FBX is missing or older get one now
            for t in self.takes:
                if (
                    t.status == "skipped"
                    and t.output.is_file()
                    and not _fbx_up_to_date(t, overwrite)
                ):
                    self.done.put(t)

    def work(self) -> None:  # worker thread: no bpy
        try:
            self.core.run_batch(
                self.takes,
                self.options,
                engine="inline",
                model=self.model,
                cancel=self.cancel,
                on_row=self._on_row,
            )
        except BaseException as exc:  # noqa: BLE001 (reported on the main thread)
            self.error = exc

    def _on_row(self, take, done: int, total: int) -> None:  # worker thread
        self.converted = done
        self.done.put(take)

    def drain(self, context) -> None:
        """Main thread: count the finished takes and write the FBX of each converted one."""
        while True:
            try:
                take = self.done.get_nowait()
            except queue.Empty:
                return
            if self.export_fbx and take.status in ("ok", "skipped") and take.output.is_file():
                export_take_fbx(context, take, self.preset)

    def finish(self, cancelled: bool = False) -> dict:
        """Main thread, after the worker: the summary files; returns the totals."""
        if cancelled:
            self.core.mark_unfinished(
                self.takes, "cancelled in Blender before this take; run again to resume"
            )
        return self.core.write_summary(
            self.takes,
            self.output_dir,
            time.perf_counter() - self.t0,
            extra={"engine": "blender", "fbx": self.export_fbx, "interrupted": cancelled},
        )


def _fbx_path(take) -> Path:
    return take.output.with_suffix(".fbx")  # 01_01.bvh.npz -> 01_01.bvh.fbx


def _fbx_up_to_date(take, overwrite: bool) -> bool:
    fbx = _fbx_path(take)
    return not overwrite and fbx.is_file() and fbx.stat().st_mtime > take.output.stat().st_mtime


def export_take_fbx(context, take, preset: str) -> None:
    """The take's .npz as an FBX through the add-on's import/export operators; the temporary
    rig, mesh and action are removed and the scene's range and rate restored. A failure is
    recorded on the take's row (``fbx_error``), never raised."""
    scene = context.scene
    saved = (
        scene.frame_start,
        scene.frame_end,
        scene.render.fps,
        scene.render.fps_base,
        scene.frame_current,
    )
    before = {name: set(getattr(bpy.data, name)) for name in ID_COLLECTIONS}
    fbx = _fbx_path(take)
    partial = fbx.with_name(
        fbx.name + ".partial.fbx"
    )  # renamed into place: never a half-written FBX
    try:
        bpy.ops.lsmplify.import_smpl_npz(filepath=str(take.output), update_scene=True)
        rig = next(
            o
            for o in bpy.data.objects
            if o not in before["objects"] and scene_writing.is_smpl_rig(o)
        )
        context.view_layer.objects.active = rig
        bpy.ops.lsmplify.export_fbx(filepath=str(partial), preset=preset)
        os.replace(partial, fbx)
        take.row["fbx"] = str(fbx)
    except (RuntimeError, StopIteration, OSError) as exc:  # operators report errors as RuntimeError
        take.row["fbx_error"] = str(exc).strip() or type(exc).__name__
    finally:
        made = [
            idb
            for name in ID_COLLECTIONS
            for idb in getattr(bpy.data, name)
            if idb not in before[name]
        ]
        scene_writing.remove_ids(made)
        scene.frame_start, scene.frame_end, scene.render.fps, scene.render.fps_base = saved[:4]
        scene.frame_set(saved[4])
        if partial.exists():
            partial.unlink()


class LSMPLIFY_OT_batch_convert(bpy.types.Operator):
    """Convert every keypoint take in a folder (and its sub-folders) to SMPL .npz (and FBX), in the background"""

    bl_idname = "lsmplify.batch_convert"
    bl_label = "Batch Convert"
    bl_options = {"REGISTER"}

    input_dir: StringProperty(
        name="Input Folder",
        subtype="DIR_PATH",
        description="Folder of keypoint takes (.bvh .amc .npz .npy .json .csv), searched recursively",
    )
    output_dir: StringProperty(
        name="Output Folder",
        subtype="DIR_PATH",
        description="The input tree is mirrored here: one .npz per take, summary.csv/.json",
    )
    export_fbx: BoolProperty(
        name="Also FBX", default=False, description="An FBX rig with the motion per take"
    )
    fbx_preset: EnumProperty(
        name="FBX Target",
        default="UNITY",
        items=[(k, k.title(), f"{k.title()} settings of Export SMPL (.fbx)") for k in FBX_PRESETS],
    )
    overwrite: BoolProperty(
        name="Overwrite",
        default=False,
        description="Convert again the takes whose results are already newer than the input",
    )

    _job = None
    _thread = None
    _timer = None

    def _start(self, context):
        self._job = BatchJob(
            context,
            bpy.path.abspath(self.input_dir),
            bpy.path.abspath(self.output_dir),
            self.export_fbx,
            self.fbx_preset,
            self.overwrite,
            warn=lambda m: self.report({"WARNING"}, m),
        )
        self._thread = threading.Thread(target=self._job.work, name="lsmplify-batch", daemon=True)
        self._thread.start()

    def invoke(self, context, event):
        return context.window_manager.invoke_props_dialog(self, width=460)

    def execute(self, context):
        try:
            self._start(context)
        except LSMPLifyError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if bpy.app.background or context.window is None:  # no event loop: run to the end here
            self._thread.join()
            self._job.drain(context)
            return self._end(context, cancelled=False)
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.2, window=context.window)
        wm.progress_begin(0, max(self._job.todo, 1))
        wm.modal_handler_add(self)
        self._status(context)
        return {"RUNNING_MODAL"}

    def _status(self, context, text=None):
        """The status bar: progress by default, ``text`` if given, cleared with ''."""
        ws = getattr(context, "workspace", None)
        if ws is not None:
            if text is None:
                text = (
                    f"LSMPLify batch: {self._job.converted}/{self._job.todo} takes (Esc to cancel)"
                )
            ws.status_text_set(text or None)

    def modal(self, context, event):
        if event.type == "ESC" and not self._job.cancel.is_set():
            self._job.cancel.set()  # the take in hand finishes; nothing half-written stays
            self._status(context, "LSMPLify batch: cancelling after the current take...")
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        self._job.drain(context)
        context.window_manager.progress_update(self._job.converted)
        if self._thread.is_alive():
            if not self._job.cancel.is_set():
                self._status(context)
            return {"RUNNING_MODAL"}
        self._job.drain(context)
        wm = context.window_manager
        wm.event_timer_remove(self._timer)
        wm.progress_end()
        self._status(context, "")
        return self._end(context, cancelled=self._job.cancel.is_set())

    def _end(self, context, cancelled: bool):
        job = self._job
        if job.error is not None:
            err = job.error
            if not isinstance(err, LSMPLifyError):
                traceback.print_exception(err)
            self.report({"ERROR"}, f"LSMPLify batch stopped: {err}")
            job.finish(cancelled=True)
            return {"CANCELLED"}
        totals = job.finish(cancelled=cancelled)
        fbx_failed = sum(1 for t in job.takes if t.row.get("fbx_error"))
        text = (
            f"LSMPLify batch: {totals['ok']} converted, {totals['failed']} failed, {totals['skipped']} skipped"
            + (f", {fbx_failed} FBX failed" if fbx_failed else "")
            + (" (cancelled)" if cancelled else "")
            + f"; see {totals['summary_csv']}"
        )
        self.report({"WARNING"} if totals["failed"] or fbx_failed or cancelled else {"INFO"}, text)
        return {"CANCELLED"} if cancelled else {"FINISHED"}


def menu_import(self, _context):
    self.layout.operator(
        LSMPLIFY_OT_batch_convert.bl_idname, text="Batch Convert Keypoints (LSMPLify)..."
    )


CLASSES = (LSMPLIFY_OT_batch_convert,)
