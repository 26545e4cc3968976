"""Solving and refining from the scene's source.

``SolveJob`` gathers everything it needs from the scene on the main thread, solves in
``work`` (no bpy data touched: safe in a worker thread) and writes the result in
``finish``, back on the main thread.
"""

from __future__ import annotations

import bpy
import numpy as np

from ..core.errors import InputError
from .model_cache import get_model
from .scene_writing import (
    apply_solution,
    check_rig_model,
    is_smpl_rig,
    latest_rig_for,
    match_source_scale,
    place_on_source,
    rig_betas,
    safe_stem,
    tag_new_rig,
    write_motion,
)
from .sources import SMOOTHING_MAX_SIGMA_S, gather_source, source_armature, source_key


def solver_name(settings) -> str:
    return settings.solver.lower()


def smooth_setting(settings):
    """The solver's ``smooth``: the panel's Smoothing amount when set (sigma up to 0.05 s),
    else 'auto' (smooth only keypoints whose limb lengths show noise) or off."""
    if settings.smoothing > 0:
        return float(settings.smoothing) * SMOOTHING_MAX_SIGMA_S
    return "auto" if settings.auto_denoise else 0.0


# frames per analytic block of a solve started here: the bar moves (and Esc stops the work)
# every block. CPU time of the analytic solve of 10,000 frames of 01_01.bvh (best of 4): 2.4 s
# in blocks of 2,048 or 4,096 frames, 3.0 s in blocks of 1,024
PROGRESS_CHUNK = 2048


def run_solve(
    prepared,
    model,
    solver: str,
    refine: int,
    betas=None,
    smooth="auto",
    progress=None,
    lock_feet: str = "auto",
    ground=None,
    calibrate: str = "auto",
):
    """The core solve; touches no bpy data (safe in a worker thread). ``progress``: a
    ``core.progress.Progress`` that hears the frames done and can stop the solve;
    ``lock_feet`` ('auto', 'on', 'off') and ``ground`` (metres, SMPL's Y; None: from the
    source) as the core's foot step takes them; ``calibrate`` ('auto', 'on', 'off'): the
    keypoint calibration."""
    from ..core.solver import solve

    return solve(
        prepared,
        model,
        solver=solver,
        refine=int(refine),
        betas=betas,
        smooth=smooth,
        chunk=PROGRESS_CHUNK,
        lock_feet=lock_feet,
        ground=ground,
        calibrate=calibrate,
        progress=progress,
    )


def ground_setting(context, settings, prepared):
    """The core's ``ground``: None (from the source), or the panel's Ground Height (scene units,
    Z) in the metres of the solve's SMPL frame (the inverse of the Match Source scale)."""
    if settings.ground_from_source:
        return None
    scene_scale = match_source_scale(context.scene, settings.source_type, prepared.units)
    return float(settings.ground_height) / scene_scale


def rig_name(context, settings) -> str:
    """A new rig's name: the file's or the source armature's name, else SMPL."""
    if settings.source_type == "FILE":
        return safe_stem(settings.filepath)
    arm = source_armature(context, settings) if settings.source_type == "ARMATURE" else None
    return f"{arm.name}_SMPL" if arm is not None else "SMPL"


# A person the body model can stand for: below or above this the source's units are wrong
# (a metre-scale source read as centimetres gives a body of 1.7 cm).
HUMAN_HEIGHT_M = (1.0, 2.3)
UPRIGHT_MIN = 0.5  # median y of the root's up axis (SMPL Y up): below it the body lies (cos 60 deg)


def plausibility_warnings(model, prepared, solution, source_type: str) -> list[str]:
    """Warnings, in the panel's terms, when the keypoints do not make a human-sized body or
    the solved body lies down over most of the take (a Units or Up setting that is wrong)."""
    import torch

    from ..core.shape_inverse import observed_lengths

    out = []
    lengths, _ = observed_lengths(*prepared.length_samples())
    ref = model.bone_lengths(torch.zeros(model.num_betas, dtype=model.dtype))[0].cpu().numpy()
    lengths = lengths[: ref.shape[0]]  # the SMPL tree's bones come first (as the solver reads them)
    ok = np.isfinite(lengths) & (
        ref > 0.05
    )  # as prepare.detect_scale: short bones say little about size
    if ok.sum() >= 3:
        v = model.v_template.cpu().numpy()
        height = float(lengths[ok].sum() / ref[ok].sum() * (v[:, 1].max() - v[:, 1].min()))
        if not HUMAN_HEIGHT_M[0] <= height <= HUMAN_HEIGHT_M[1]:
            out.append(
                f"The keypoints make a body {height:.2f} m tall, not a person's size: check the Units "
                f"setting in the LSMPLify panel (now read as '{prepared.units}')."
            )
    up = float(np.median(solution.rotmats[:, 0, 1, 1].detach().cpu().numpy()))
    if up < UPRIGHT_MIN:
        where = (
            "the Up setting in the LSMPLify panel"
            if source_type == "FILE"
            else "that the source stands along the scene's Z axis"
        )
        out.append(
            f"The body lies down over most of the take (its up axis is {np.degrees(np.arccos(np.clip(up, -1, 1))):.0f}"
            f" deg from vertical): check {where} (now read as {prepared.up.upper()} up)."
        )
    return out


class BackgroundJob:
    """Read the scene on creation (main thread), ``solve`` (no bpy data: ``work`` runs it in a
    worker thread and keeps its error), then ``finish`` writes into the scene (main thread).
    ``progress`` (``core.progress.Progress``) hears the frames done; cancelling it stops the
    core at its next block of frames."""

    solution = None
    error = None
    frames = 0  # what the status bar says the job works on
    progress = None

    def solve(self):
        raise NotImplementedError

    def work(self):  # worker thread: no bpy
        try:
            self.solve()
        except BaseException as exc:  # noqa: BLE001 (re-raised on the main thread)
            self.error = exc

    def finish(self, op, context):
        raise NotImplementedError


class WorkerRun:
    """A ``BackgroundJob`` solving in a worker thread, as the Solve and Refine buttons run it:
    ``start``, then on each timer tick ``running`` / ``fraction`` (of the core's current step:
    analytic IK, the network, the optimiser) / ``status``; ``cancel`` (Esc)
    stops the worker at the core's next block of frames, and ``cancelled`` tells the operator
    to drop whatever the worker left and restore the scene."""

    def __init__(self, job: BackgroundJob, doing: str):
        import threading

        from ..core.progress import Progress

        self.job, self.doing = job, doing
        job.progress = Progress()
        self.thread = threading.Thread(target=job.work, name=f"lsmplify-{doing}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def cancel(self) -> None:
        self.job.progress.cancel()

    @property
    def cancelled(self) -> bool:
        return self.job.progress.cancelled

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def wait(self, seconds: float | None = None) -> bool:
        """Wait for the worker; True when it has ended."""
        self.thread.join(seconds)
        return not self.thread.is_alive()

    @property
    def fraction(self) -> float:
        return self.job.progress.fraction

    def status(self) -> str:
        """The status bar's line: what is being done, how far, and how to stop it."""
        p = self.job.progress
        if p.cancelled:
            return f"LSMPLify: cancelling {self.doing} (at the end of this block of frames)..."
        if not p.stage:
            return f"LSMPLify: {self.doing} {self.job.frames} frames... (Esc to cancel)"
        return (
            f"LSMPLify: {self.doing} {self.job.frames} frames, {p.stage}: {p.done:,} of "
            f"{p.total:,} frames (Esc to cancel)"
        )


class SolveJob(BackgroundJob):
    """One solve of the scene's source."""

    def __init__(self, context, report, on_read=None):
        s = context.scene.lsmplify
        self.model = get_model(context, warn=lambda m: report({"WARNING"}, m))
        target = s.target_rig
        if target is not None and not is_smpl_rig(target):
            raise InputError(
                f"The target rig '{target.name}' is not an SMPL rig; clear it to make a new rig."
            )
        self.source = source_key(context, s)
        if (
            target is None and not s.new_rig
        ):  # a re-solve: a new action on the last rig of this source
            target = latest_rig_for(self.source, self.model.data.name)
        self.target_name = target.name if target is not None else None
        self.betas = None
        if target is not None:
            check_rig_model(target, self.model)
            self.betas = rig_betas(target)[: self.model.num_betas]
        prepared, self.start = gather_source(context, s, self.model, on_read)
        self.prepared = prepared
        self.smooth = smooth_setting(s)
        self.lock_feet = s.lock_feet.lower()
        self.ground = ground_setting(context, s, prepared)
        self.calibrate = s.calibrate.lower()
        self.solver = solver_name(s)
        self.refine = s.refine_iters
        self.name = rig_name(context, s)
        self.scale = (
            match_source_scale(context.scene, s.source_type, prepared.units)
            if s.match_source
            else 1.0
        )
        self.frames = prepared.num_frames

    def solve(self):
        self.solution = run_solve(
            self.prepared,
            self.model,
            self.solver,
            self.refine,
            self.betas,
            self.smooth,
            progress=self.progress,
            lock_feet=self.lock_feet,
            ground=self.ground,
            calibrate=self.calibrate,
        )
        from .results import solve_report

        self.report = solve_report(self.model, self.prepared, self.solution)

    def finish(self, op, context):
        """Write the solution into the scene and report it through ``op``."""
        target = None
        if self.target_name is not None:
            target = bpy.data.objects.get(self.target_name)
            if target is None:
                raise InputError(
                    f"The target rig '{self.target_name}' was deleted during the solve."
                )
        s = context.scene.lsmplify
        rig_obj, action = apply_solution(
            context,
            s,
            self.solution,
            self.prepared,
            self.start,
            self.model,
            target_rig=target,
            name=self.name,
        )
        if target is None:
            tag_new_rig(rig_obj, self.source)
            if self.scale != 1.0:
                place_on_source(rig_obj, self.scale)
        from .results import store_report, tag_offsets

        tag_offsets(action, self.solution.keypoint_offsets, self.prepared.layout.name)
        store_report(s, self.report[0], self.report[1], self.prepared.num_frames)
        op.report_notes(self.prepared.notes + self.solution.notes)
        for warning in plausibility_warnings(
            self.model, self.prepared, self.solution, s.source_type
        ):
            op.report({"WARNING"}, f"LSMPLify: {warning}")
        op.report(
            {"INFO"},
            f"LSMPLify: '{action.name}' on '{rig_obj.name}': fit error "
            f"{s.result_fit_error_mm:.1f} mm, bone length error {s.result_mpbe_mm:.1f} mm; "
            f"{s.result_verdict}",
        )
        return {"FINISHED"}


class RefineJob(BackgroundJob):
    """Refine a rig's current action against the scene's source into a new action:
    ``method`` NETWORK runs ``passes`` plug-in passes, OPTIMIZE ``iterations`` iterations."""

    def __init__(
        self,
        context,
        settings,
        rig_obj,
        method: str,
        passes: int,
        iterations: int,
        warn=None,
        on_read=None,
    ):
        from .keyframes import read_pose_action

        anim = rig_obj.animation_data
        if anim is None or anim.action is None:
            raise InputError(f"The rig '{rig_obj.name}' has no action to refine; solve first.")
        self.model = get_model(context, warn=warn)
        check_rig_model(rig_obj, self.model)
        self.prepared, self.start = gather_source(context, settings, self.model, on_read)
        self.frames = self.prepared.num_frames
        self.rotmats, self.trans = read_pose_action(
            rig_obj, self.start, self.start + self.frames - 1
        )
        self.betas = rig_betas(rig_obj)[: self.model.num_betas]
        from .ground import action_contacts

        self.contacts = action_contacts(rig_obj, self.start, self.frames)  # kept by the refine

        from .results import action_offsets

        # the keypoint calibration of the solve that made the action: Refine aims at the same points
        self.offsets = action_offsets(anim.action, self.prepared.layout)
        self.rig_name, self.method = rig_obj.name, method
        self.passes, self.iterations, self.smooth = passes, iterations, smooth_setting(settings)
        # the feet end as a solve ends them: the panel's Lock Feet and Ground
        self.lock_feet = settings.lock_feet.lower()
        self.ground = ground_setting(context, settings, self.prepared)

    def solve(self):
        from ..core.solver import refine_existing

        self.solution = refine_existing(
            self.prepared,
            self.model,
            self.rotmats,
            self.betas,
            self.trans,
            passes=self.passes,
            refine=self.iterations,
            smooth=self.smooth,
            progress=self.progress,
            keypoint_offsets=self.offsets,
            lock_feet=self.lock_feet,
            ground=self.ground,
        )
        from .results import solve_report

        self.report = solve_report(self.model, self.prepared, self.solution)

    def write(self, context):
        """The refined motion as a new action on the rig, and the panel's results; returns the action."""
        from .ground import contact_properties

        rig_obj = bpy.data.objects.get(self.rig_name)
        if rig_obj is None:
            raise InputError(f"The rig '{self.rig_name}' was deleted while it was being refined.")
        sol, s = self.solution, context.scene.lsmplify
        err = sol.fit_error_mm
        _, action = write_motion(
            context,
            self.model,
            sol.rotmats,
            sol.trans,
            self.betas,
            self.start,
            err,
            target_rig=rig_obj,
            action_name="LSMPLify_refined",
            tags=dict(lsmplify_solver="refine", lsmplify_layout=self.prepared.layout.name),
            # the contacts the refine planted the feet on, else the action's own
            properties=contact_properties(self.contacts if sol.contacts is None else sol.contacts),
        )
        from .results import store_report, tag_offsets

        tag_offsets(action, sol.keypoint_offsets, self.prepared.layout.name)
        store_report(s, self.report[0], self.report[1], self.frames)
        s.has_result = True
        s.result_fit_error_mm = float(np.nanmean(err)) if np.isfinite(err).any() else 0.0
        s.result_summary = (
            f"refined ({'; '.join(sol.notes) or self.method.lower()}) on {self.frames} "
            f"frames, {sol.seconds:.1f} s"
        )
        return action

    def finish(self, op, context):
        action = self.write(context)
        op.report_notes(self.solution.notes)
        op.report(
            {"INFO"},
            f"LSMPLify: refined into '{action.name}': fit error "
            f"{context.scene.lsmplify.result_fit_error_mm:.1f} mm; "
            f"{context.scene.lsmplify.result_verdict}",
        )
        return {"FINISHED"}


def refine_rig(context, settings, rig_obj, method: str, passes: int, iterations: int, warn=None):
    """``RefineJob`` run here and now; returns (action, solution, frames refined)."""
    job = RefineJob(context, settings, rig_obj, method, passes, iterations, warn=warn)
    job.solve()
    return job.write(context), job.solution, job.frames
