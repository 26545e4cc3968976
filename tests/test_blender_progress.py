"""Solve and Refine from a button run in a worker thread (``solving.WorkerRun``, what the
operators' ``invoke`` / ``modal`` drive): the bar is the frames done, Esc stops the worker at the
core's next block and the scene is left as it was (issue 11). Real CMU takes
(fixtures/CREDITS.md), the real bpy wheel."""

import threading

import numpy as np
import pytest
from blender_env import addon_enabled, import_bpy, reset_scene

bpy = import_bpy()
if bpy is None:
    pytest.skip("the bpy wheel is not installed", allow_module_level=True)

from conftest import FIXTURES

from lsmplify_blender.core.progress import CancelledError

BVH = FIXTURES / "131_01_short.bvh"
FBX = FIXTURES / "09_11_cmu.fbx"  # 166 frames on the CMU rig


@pytest.fixture(scope="module", autouse=True)
def addon():
    with addon_enabled("io_scene_fbx"):
        yield


@pytest.fixture(autouse=True)
def scene():
    return reset_scene()


def snapshot():
    d = bpy.data
    return {k: sorted(x.name for x in getattr(d, k)) for k in ("objects", "actions", "armatures")}


def paused_run(job, doing):
    """A WorkerRun whose worker waits in its first progress report until ``release`` is set."""
    from lsmplify_blender.blender.solving import WorkerRun

    run = WorkerRun(job, doing)
    reported, release, seen = threading.Event(), threading.Event(), []

    def on_step(done, total, stage):
        seen.append((done, total, stage))
        reported.set()
        release.wait(30)

    job.progress.callback = on_step
    return run, reported, release, seen


def test_esc_stops_the_solve_worker_and_the_scene_is_unchanged():
    from lsmplify_blender.blender.scene_writing import SceneChange
    from lsmplify_blender.blender.solving import SolveJob

    assert bpy.ops.lsmplify.import_keypoints(filepath=str(BVH)) == {"FINISHED"}
    sc, s = bpy.context.scene, bpy.context.scene.lsmplify
    s.solver = "ANALYTIC"
    s.detected_layout = "before the solve"  # the job's read of the source sets it
    before, state = SceneChange(sc), snapshot()
    job = SolveJob(bpy.context, lambda kind, msg: None)
    run, reported, release, seen = paused_run(job, "solving")
    run.start()
    assert reported.wait(60) and run.running
    ((done, total, stage),) = seen  # one block of analytic IK: all of its frames at once
    assert stage == "analytic IK" and done == total <= job.frames and run.fraction == 1.0
    assert run.status() == (
        f"LSMPLify: solving {job.frames} frames, analytic IK: {done} of {total} frames "
        "(Esc to cancel)"
    )
    run.cancel()  # what the modal handler does on Esc
    assert "cancelling" in run.status()
    release.set()
    assert run.wait(60)  # the worker stopped: it never reached the end of the solve
    assert job.solution is None and isinstance(job.error, CancelledError)
    # it stopped right after that block: no other step of the solve began
    assert len(seen) == 1 and job.progress.steps == 1
    before.undo()  # what the modal handler does when the run was cancelled
    assert snapshot() == state and s.detected_layout == "before the solve" and not s.has_result


def test_a_solve_run_to_the_end_reports_every_frame_and_matches_the_operator():
    from lsmplify_blender.blender.solving import SolveJob, WorkerRun

    assert bpy.ops.lsmplify.import_keypoints(filepath=str(BVH)) == {"FINISHED"}
    s = bpy.context.scene.lsmplify
    s.solver = "ANALYTIC"
    job = SolveJob(bpy.context, lambda kind, msg: None)
    run = WorkerRun(job, "solving")
    run.start()
    assert run.wait(120) and not run.cancelled
    assert job.error is None and run.fraction == 1.0
    assert job.progress.done == job.progress.total and job.progress.steps >= 2
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}  # the button's blocking twin
    (rig,) = [o for o in bpy.data.objects if o.get("lsmplify_rig")]
    from lsmplify_blender.blender.keyframes import read_pose_action

    rotmats, trans = read_pose_action(rig, 1, job.frames)
    assert np.allclose(rotmats, job.solution.rotmats.numpy(), atol=1e-4)
    assert np.allclose(trans, job.solution.trans.numpy(), atol=1e-5)


def test_esc_stops_a_refine_and_leaves_the_rig_with_its_action():
    from lsmplify_blender.blender.scene_writing import SceneChange
    from lsmplify_blender.blender.solving import RefineJob

    assert bpy.ops.lsmplify.import_keypoints(filepath=str(BVH)) == {"FINISHED"}
    sc, s = bpy.context.scene, bpy.context.scene.lsmplify
    s.solver = "ANALYTIC"
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    (rig,) = [o for o in bpy.data.objects if o.get("lsmplify_rig")]
    action = rig.animation_data.action
    before, state = SceneChange(sc), snapshot()
    job = RefineJob(bpy.context, s, rig, "OPTIMIZE", 0, 2)
    run, reported, release, _ = paused_run(job, "refining")
    run.start()
    assert reported.wait(120)
    assert run.status().startswith(f"LSMPLify: refining {job.frames} frames, ")
    run.cancel()
    release.set()
    assert run.wait(120) and isinstance(job.error, CancelledError) and job.solution is None
    before.undo()
    assert snapshot() == state and rig.animation_data.action == action


def test_import_keypoints_reports_its_steps_up_to_done():
    from lsmplify_blender.blender.keypoint_empties import import_keypoint_file
    from lsmplify_blender.blender.model_cache import get_model

    heard = []
    prepared = import_keypoint_file(
        bpy.context,
        str(BVH),
        get_model(bpy.context),
        progress=lambda fraction, what: heard.append((fraction, what)),
    )
    fractions = [f for f, _ in heard]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    steps = [w for _, w in heard]
    assert steps[:2] == ["reading", "preparing"] and steps[-1] == "done"
    keyed = steps.count("keying the keypoint empties")
    # one report as the keying starts and one per keypoint that got an empty
    assert keyed == 1 + len(bpy.context.scene.lsmplify.empties_collection.objects)
    assert keyed - 1 == int((prepared.weight > 0).any(0).sum())
    # the operator drives the window manager's bar with it and finishes
    assert bpy.ops.lsmplify.import_keypoints(filepath=str(BVH)) == {"FINISHED"}


def test_an_fbx_import_and_a_solve_from_its_armature_report_the_frames_read(monkeypatch):
    from lsmplify_blender.blender import sources
    from lsmplify_blender.blender.keypoint_empties import FBX_IMPORTER_SHARE, import_fbx_armature
    from lsmplify_blender.blender.model_cache import get_model
    from lsmplify_blender.blender.solving import SolveJob
    from lsmplify_blender.blender.sources import SAMPLE_REPORT_FRAMES

    # read frame by frame (an armature posed by more than its keys): every 50 frames and the end
    monkeypatch.setattr(sources, "heads_from_keys", lambda *a: None)
    heard = []
    _, prepared = import_fbx_armature(
        bpy.context, str(FBX), get_model(bpy.context), progress=lambda f, w: heard.append((f, w))
    )
    assert prepared.num_frames == 166
    fractions = [f for f, _ in heard]
    assert fractions[0] == FBX_IMPORTER_SHARE and fractions[-1] == 1.0
    assert fractions == sorted(fractions)
    assert len(fractions) == 1 + 166 // SAMPLE_REPORT_FRAMES + 1  # start, every 50 frames, end
    read = []
    s = bpy.context.scene.lsmplify
    s.solver = "ANALYTIC"
    job = SolveJob(bpy.context, lambda kind, msg: None, on_read=read.append)
    assert job.frames == 166
    expected = [k * SAMPLE_REPORT_FRAMES / 166 for k in range(1, 166 // SAMPLE_REPORT_FRAMES + 1)]
    assert np.allclose(read, [*expected, 1.0])
    # read from the keys (all frames at once): the end is heard
    monkeypatch.undo()
    read.clear()
    job = SolveJob(bpy.context, lambda kind, msg: None, on_read=read.append)
    assert job.frames == 166 and read == [1.0]
    # the operator drives the window manager's bar with it and finishes
    assert bpy.ops.lsmplify.import_keypoints(filepath=str(FBX)) == {"FINISHED"}
