"""The functions behind the operators, called directly, give what the operators give.

Each operator reads its properties and calls one function of the Blender modules
(``keypoint_empties``, ``sources``, ``solving``, ``scene_writing``, ``npz_io``, ``fbx_export``,
``preview``); scripts can call those functions themselves. Every test here runs a function
and its operator on the same scene and compares what they made, key by key and pixel by pixel.
"""

import numpy as np
import pytest
from blender_env import addon_enabled, fcurve_keys, import_bpy, reset_scene

bpy = import_bpy()
if bpy is None:
    pytest.skip("the bpy wheel is not installed", allow_module_level=True)

from conftest import FIXTURES

from lsmplify_blender.blender import (
    fbx_export,
    keypoint_empties,
    model_cache,
    npz_io,
    preview,
    scene_writing,
    solving,
    sources,
)

BVH = FIXTURES / "131_01_short.bvh"


@pytest.fixture(scope="module", autouse=True)
def addon():
    with addon_enabled("io_scene_fbx"):
        yield


@pytest.fixture(autouse=True)
def scene():
    return reset_scene()


class Reporter:
    """Stands in for an operator's ``report`` / ``report_notes``."""

    def __init__(self):
        self.lines = []

    def report(self, kind, message):
        self.lines.append((sorted(kind)[0], message))

    def report_notes(self, notes):
        self.lines.extend(("INFO", n) for n in notes)


def keys_of(obj):
    anim = obj.animation_data
    return fcurve_keys(anim.action, getattr(anim, "action_slot", None))


def same_keys(a, b, atol=0.0):
    ka, kb = keys_of(a), keys_of(b)
    assert ka.keys() == kb.keys() and ka
    for k in ka:
        assert np.allclose(ka[k], kb[k], atol=atol, rtol=0), k


def rigs():
    return [o for o in bpy.data.objects if o.type == "ARMATURE" and o.get("lsmplify_rig")]


def settings():
    return bpy.context.scene.lsmplify


def solved_rig(frames=8):
    assert bpy.ops.lsmplify.import_keypoints(filepath=str(BVH), create_empties=False) == {
        "FINISHED"
    }
    settings().solver = "ANALYTIC"
    sc = bpy.context.scene
    sc.frame_start, sc.frame_end = 1, frames
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    rig = rigs()[-1]
    bpy.context.view_layer.objects.active = rig
    return rig


def test_import_keypoint_file_is_the_import_operator():
    model = model_cache.get_model()
    prepared = keypoint_empties.import_keypoint_file(bpy.context, str(BVH), model)
    direct = settings().empties_collection
    detected = (settings().detected_layout, settings().detected_frames, bpy.context.scene.frame_end)
    assert bpy.ops.lsmplify.import_keypoints(filepath=str(BVH)) == {"FINISHED"}
    by_op = settings().empties_collection
    assert by_op != direct and (
        settings().detected_layout,
        settings().detected_frames,
        bpy.context.scene.frame_end,
    ) == detected == (prepared.layout.title, "200", 200)
    a = sorted(direct.objects, key=lambda o: o.name)
    b = sorted(by_op.objects, key=lambda o: sources.strip_suffix(o.name))
    assert [o[sources.KEYPOINT_PROP] for o in a] == [o[sources.KEYPOINT_PROP] for o in b] and len(
        a
    ) >= 15
    for x, y in zip(a, b, strict=True):
        same_keys(x, y)
    # the empties sit where the prepared keypoints are (metres, Blender Z up)
    from lsmplify_blender.blender.rig import smpl_to_blender

    k = prepared.layout.keypoints.index("head")
    head = next(o for o in a if o[sources.KEYPOINT_PROP] == "head")
    loc = np.stack([keys_of(head)[("location", c)][:, 1] for c in range(3)], -1)
    assert np.abs(loc - smpl_to_blender(prepared.positions[:, k])).max() < 1e-5


def test_gather_source_run_solve_apply_solution_is_the_solve_operator():
    rig_op = solved_rig(8)
    model = model_cache.get_model()
    s = settings()
    prepared, start = sources.gather_source(bpy.context, s, model)
    assert start == 1 and prepared.num_frames == 8
    solution = solving.run_solve(
        prepared, model, solving.solver_name(s), s.refine_iters, smooth=solving.smooth_setting(s)
    )
    rig, action = scene_writing.apply_solution(bpy.context, s, solution, prepared, start, model)
    assert rig != rig_op and action.name.startswith("LSMPLify_analytic")
    same_keys(rig, rig_op)
    s.new_rig = (
        True  # (else the job would write a new action on the operator's rig, as a re-solve does)
    )
    job = solving.SolveJob(bpy.context, Reporter().report)
    assert job.target_name is None
    job.solve()
    reporter = Reporter()
    assert job.finish(reporter, bpy.context) == {"FINISHED"}
    same_keys(rigs()[-1], rig_op)
    assert any("fit error" in m for _, m in reporter.lines)


def test_refine_rig_is_the_refine_operator():
    rig = solved_rig(6)
    first = rig.animation_data.action
    assert bpy.ops.lsmplify.refine(method="OPTIMIZE", iterations=1) == {"FINISHED"}
    by_op = rig.animation_data.action
    rig.animation_data.action = first
    if hasattr(rig.animation_data, "action_slot"):
        rig.animation_data.action_slot = first.slots[0]
    action, _, frames = solving.refine_rig(bpy.context, settings(), rig, "OPTIMIZE", 0, 1)
    assert frames == 6 and action not in (first, by_op) and rig.animation_data.action == action
    direct = keys_of(rig)
    rig.animation_data.action = by_op
    if hasattr(rig.animation_data, "action_slot"):
        rig.animation_data.action_slot = by_op.slots[0]
    op_keys = keys_of(rig)
    assert direct.keys() == op_keys.keys()
    for k in direct:
        assert np.allclose(direct[k], op_keys[k], atol=1e-5), k


def test_export_rig_npz_is_the_export_operator(tmp_path):
    rig = solved_rig(10)
    out_op = tmp_path / "op.npz"
    assert bpy.ops.lsmplify.export_npz(filepath=str(out_op)) == {"FINISHED"}
    out, rows = npz_io.export_rig_npz(bpy.context, rig, str(tmp_path / "direct.npz"), 1, 10)
    assert rows == 10
    with np.load(out_op) as a, np.load(out) as b:
        assert sorted(a.files) == sorted(b.files) and "poses" in a.files
        for k in a.files:
            assert np.array_equal(a[k], b[k]), k


def test_import_smpl_motion_is_the_import_operator(tmp_path):
    rig = solved_rig(10)
    out, _ = npz_io.export_rig_npz(bpy.context, rig, str(tmp_path / "m.npz"), 1, 10)
    assert bpy.ops.lsmplify.import_smpl_npz(filepath=str(out)) == {"FINISHED"}
    by_op = rigs()[-1]
    new, _, frames, _ = npz_io.import_smpl_motion(bpy.context, str(out), model_cache.get_model())
    assert frames == 10 and new not in (rig, by_op) and new.name.startswith("m")
    same_keys(new, by_op)
    same_keys(new, rig, atol=2e-4)  # the motion itself, through axis-angle in float32


def test_export_rig_fbx_is_the_export_operator(tmp_path):
    rig = solved_rig(4)
    a, b = tmp_path / "op.fbx", tmp_path / "direct.fbx"
    assert bpy.ops.lsmplify.export_fbx(filepath=str(a), preset="UNITY") == {"FINISHED"}
    assert fbx_export.export_rig_fbx(bpy.context, rig, str(b), "UNITY") == str(b)
    da, db = a.read_bytes(), b.read_bytes()
    assert len(da) == len(db) > 100_000
    differ = np.flatnonzero(np.frombuffer(da, np.uint8) != np.frombuffer(db, np.uint8))
    assert differ.size < 64  # the header's creation time stamp, nothing of the content
    with pytest.raises(Exception, match="Unknown FBX target"):
        fbx_export.export_rig_fbx(bpy.context, rig, str(b), "MAYA")


def test_render_preview_is_the_preview_operator(tmp_path):
    solved_rig(6)
    s = settings()
    a, b = tmp_path / "op", tmp_path / "direct"
    assert bpy.ops.lsmplify.render_preview(directory=str(a), max_frames=2, resolution=48) == {
        "FINISHED"
    }
    frames = preview.preview_frames(*sources.frame_range(bpy.context.scene, s), 2)
    assert frames == [1, 6]
    written = preview.render_preview(
        bpy.context, str(b), frames, keypoint_empties.keypoint_empties(bpy.context, s), 48
    )
    assert [p.rsplit("/", 1)[-1] for p in written] == sorted(p.name for p in a.glob("*.png"))
    for p in written:
        ia, ib = bpy.data.images.load(str(a / p.rsplit("/", 1)[-1])), bpy.data.images.load(p)
        try:
            pa, pb = np.array(ia.pixels[:]), np.array(ib.pixels[:])
            assert pa.size == 48 * 36 * 4 and np.array_equal(pa, pb) and pa.std() > 0.02
        finally:
            bpy.data.images.remove(ia)
            bpy.data.images.remove(ib)


def test_refine_job_in_a_worker_thread_touches_the_scene_only_when_finished():
    import threading

    rig = solved_rig(6)
    first = rig.animation_data.action
    job = solving.RefineJob(bpy.context, settings(), rig, "OPTIMIZE", 0, 1)
    names = sorted(a.name for a in bpy.data.actions)
    th = threading.Thread(target=job.work)
    th.start()
    th.join()
    assert job.error is None and job.solution is not None
    assert sorted(a.name for a in bpy.data.actions) == names and rig.animation_data.action == first
    reporter = Reporter()
    assert job.finish(reporter, bpy.context) == {"FINISHED"}
    assert rig.animation_data.action != first and any(
        "refined into" in m for _, m in reporter.lines
    )
    # without a window, INVOKE runs it here and now
    assert bpy.ops.lsmplify.refine("INVOKE_DEFAULT", method="OPTIMIZE", iterations=1) == {
        "FINISHED"
    }


def test_enabling_the_add_on_imports_no_torch():
    """Registration stays light: the core (and torch) come in on the first operator that needs them."""
    import subprocess
    import sys

    from blender_env import ROOT

    code = (
        "import sys; sys.path.insert(0, 'tests'); from blender_env import import_bpy, reset_scene; "
        "import_bpy(); import addon_utils; reset_scene(); addon_utils.enable('lsmplify_blender', default_set=True); "
        "import bpy; assert hasattr(bpy.types.Scene, 'lsmplify'); print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"
