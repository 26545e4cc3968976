"""The add-on's operators in headless Blender (bpy wheel): import, solve, refine, export, preview.

The add-on is enabled the way Blender does it (``addon_utils.enable``), so preferences,
scene settings and operators are the registered ones. Operators that report an error make
``bpy.ops`` raise RuntimeError with the message: that is how the tests see the report.
"""

import subprocess
import sys

import numpy as np
import pytest
import torch
from blender_env import ADDON, ROOT, addon_enabled, fcurve_keys, import_bpy, reset_scene

bpy = import_bpy()
if bpy is None:
    pytest.skip("the bpy wheel is not installed", allow_module_level=True)

from conftest import FIXTURES

from lsmplify_blender.core.formats.amass import read_smpl_npz

BVH = FIXTURES / "131_01_short.bvh"
BVH2 = FIXTURES / "01_01_short.bvh"


@pytest.fixture(scope="module", autouse=True)
def addon():
    with addon_enabled("io_anim_bvh", "io_scene_fbx"):
        yield


@pytest.fixture(autouse=True)
def scene():
    return reset_scene()


def settings():
    return bpy.context.scene.lsmplify


def snapshot():
    d = bpy.data
    return {
        k: sorted(x.name for x in getattr(d, k))
        for k in ("objects", "actions", "meshes", "armatures", "collections", "cameras")
    }


def rigs():
    return [o for o in bpy.data.objects if o.type == "ARMATURE" and o.get("lsmplify_rig")]


def object_fcurve_keys(obj):
    anim = obj.animation_data
    return fcurve_keys(anim.action, getattr(anim, "action_slot", None))


def import_bvh(create_empties=True, path=BVH):
    assert bpy.ops.lsmplify.import_keypoints(filepath=str(path), create_empties=create_empties) == {
        "FINISHED"
    }


def set_range(start, end):
    sc = bpy.context.scene
    sc.frame_start, sc.frame_end = start, end


# ---------------------------------------------------------------------------- registration
def test_registered_and_preferences():
    prefs = bpy.context.preferences.addons[ADDON].preferences
    assert type(prefs).bl_idname == ADDON and prefs.model_path == "" and prefs.device == "AUTO"
    for op in (
        "import_keypoints",
        "solve",
        "refine",
        "export_npz",
        "import_smpl_npz",
        "export_fbx",
        "render_preview",
        "check_model",
    ):
        assert hasattr(bpy.ops.lsmplify, op)
    assert "LSMPLIFY_PT_main" in dir(bpy.types)
    from lsmplify_blender.blender import preferences

    assert preferences.device_summary("AUTO").startswith("Auto: ")
    assert preferences.device_summary("CPU") == "CPU: CPU"
    labels = {i[0]: i[1] for i in preferences.DEVICE_ITEMS}
    assert labels["CUDA"] == "CUDA" and labels["MPS"] == "Apple MPS"
    if not torch.cuda.is_available():
        assert preferences.device_summary("CUDA") == "CUDA: not available here"
    assert preferences.model_status("") == ""


def test_bad_model_path_blocks_the_solve_and_is_shown(tmp_path):
    from lsmplify_blender.blender import model_cache, preferences

    prefs = bpy.context.preferences.addons[ADDON].preferences
    import_bvh(create_empties=False)
    prefs.model_path = str(tmp_path / "nope.pkl")  # the update callback loads nothing
    assert preferences.checked_model_status(prefs.model_path) is None
    before = snapshot()
    try:
        with pytest.raises(
            RuntimeError,
            match=r"Body Model set in the add-on preferences.*cannot be used.*not found"
            r".*clear the field to use the embedded open model",
        ):
            bpy.ops.lsmplify.solve()
        assert snapshot() == before and not rigs()
        assert "not found" in preferences.checked_model_status(
            prefs.model_path
        )  # shown in the preferences
        with pytest.raises(RuntimeError, match="not found"):
            bpy.ops.lsmplify.check_model()
    finally:
        prefs.model_path = ""
        model_cache.clear_model_cache()
    assert preferences.model_status("") == ""
    assert bpy.ops.lsmplify.check_model() == {"FINISHED"}
    assert bpy.ops.lsmplify.solve() == {"FINISHED"} and len(rigs()) == 1


def test_unavailable_device_falls_back_to_cpu(capfd):
    import torch as _torch

    if _torch.cuda.is_available():
        pytest.skip("a CUDA device is present here")
    from lsmplify_blender.blender import model_cache

    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.device = "CUDA"
    model_cache.clear_model_cache()
    try:
        import_bvh(create_empties=False)
        assert bpy.ops.lsmplify.solve() == {"FINISHED"}
        out = capfd.readouterr()
        assert "CUDA" in out.out + out.err and "CPU" in out.out + out.err
    finally:
        prefs.device = "AUTO"
        model_cache.clear_model_cache()


def test_layout_items_match_the_core():
    from lsmplify_blender.blender.properties import LAYOUT_ITEMS
    from lsmplify_blender.core.layouts import LAYOUTS

    assert [i[0] for i in LAYOUT_ITEMS] == ["AUTO", *LAYOUTS]


def test_the_panel_default_solver_is_the_core_default():
    from lsmplify_blender.blender.properties import SOLVER_ITEMS, LSMPLifySceneSettings
    from lsmplify_blender.core.solver import DEFAULT_SOLVER, SOLVERS

    assert bpy.context.scene.lsmplify.solver.lower() == DEFAULT_SOLVER
    assert sorted(i[0].lower() for i in SOLVER_ITEMS) == sorted(SOLVERS)
    assert LSMPLifySceneSettings.bl_rna.properties["solver"].default.lower() == DEFAULT_SOLVER


def test_package_imports_without_blender():
    code = "import sys, lsmplify_blender, lsmplify_blender.blender; print('bpy' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------------- import + solve
def test_import_with_empties_then_solve_file():
    import_bvh()
    s, sc = settings(), bpy.context.scene
    assert (
        s.source_type == "FILE"
        and s.detected_layout.startswith("CMU")
        and s.detected_units == "cmu"
    )
    assert s.detected_fps == "120" and s.detected_frames == "200"
    assert (sc.frame_start, sc.frame_end, sc.render.fps) == (1, 200, 120)
    empties = list(s.empties_collection.objects)
    assert len(empties) >= 15 and all(o.type == "EMPTY" for o in empties)
    e = next(o for o in empties if o.name == "lfemur")
    assert len(object_fcurve_keys(e)[("location", 0)]) == 200
    sc.frame_set(1)
    z_low = e.matrix_world.translation.z
    head = next(o for o in empties if o.name == "head")
    assert head.matrix_world.translation.z > z_low + 0.3  # Z up in Blender, metres

    s.solver = "ANALYTIC"
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    (rig,) = rigs()
    meshes = [c for c in rig.children if c.type == "MESH"]
    assert len(meshes) == 1 and len(meshes[0].data.shape_keys.key_blocks) == 11
    keys = object_fcurve_keys(rig)
    assert len(keys[('pose.bones["left_knee"].rotation_quaternion', 0)]) == 200
    fit = keys[('["lsmplify_fit_error_mm"]', 0)]
    assert len(fit) == 200 and fit[:, 1].std() > 0
    sc.frame_set(50)
    v50 = rig["lsmplify_fit_error_mm"]
    sc.frame_set(150)
    assert rig["lsmplify_fit_error_mm"] != v50
    assert s.has_result and 0 < s.result_fit_error_mm < 100 and 0 < s.result_mpbe_mm < 60
    assert len(s.result_betas.split()) == 10


def test_solve_from_selected_empties():
    import_bvh()
    s = settings()
    set_range(1, 40)
    s.solver = "ANALYTIC"
    s.source_type = "FILE"
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    file_err = s.result_fit_error_mm
    for o in bpy.context.scene.objects:
        o.select_set(o.type == "EMPTY")
    s.source_type = "EMPTIES"
    s.use_source_range = False  # the scene's 1..40, not the empties' 200 frames
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    assert (
        s.detected_layout.startswith("CMU") and s.detected_up == "Z" and s.detected_frames == "40"
    )
    rig = rigs()[-1]
    assert len(object_fcurve_keys(rig)[('pose.bones["pelvis"].location', 0)]) == 40
    # the same positions through the empties: the same fit as the file solved from its positions
    # only, up to float32 keys (the file itself also carries bone rotations, used by default)
    from lsmplify_blender.core.body_model import BodyModel, load_model_data
    from lsmplify_blender.core.formats import read_keypoints
    from lsmplify_blender.core.prepare import prepare
    from lsmplify_blender.core.solver import solve

    model = BodyModel(load_model_data())
    positions_only = solve(
        prepare(read_keypoints(BVH), model).cut(slice(0, 40)), model, "analytic", rotations="ignore"
    )
    assert abs(s.result_fit_error_mm - float(np.nanmean(positions_only.fit_error_mm))) < 2.0
    assert file_err > 0


def test_solve_from_imported_bvh_armature():
    assert bpy.ops.import_anim.bvh(filepath=str(BVH2)) == {"FINISHED"}
    arm = bpy.context.active_object
    assert arm.type == "ARMATURE"
    s = settings()
    s.source_type = "ARMATURE"
    s.solver = "ANALYTIC"
    s.use_source_range = False  # the scene's 1..30, not the action's 200 frames
    set_range(1, 30)
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    # raw BVH scale (CMU units) in the scene: units detected from bone lengths
    assert (
        s.detected_layout.startswith("CMU")
        and s.detected_units == "cmu"
        and s.detected_frames == "30"
    )
    rig = rigs()[-1]
    assert len(object_fcurve_keys(rig)[('pose.bones["pelvis"].rotation_quaternion', 0)]) == 30
    assert s.result_fit_error_mm < 100


def test_solve_twice_keeps_the_first():
    import_bvh(create_empties=False)
    s = settings()
    s.solver = "ANALYTIC"
    set_range(1, 20)
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    (r1,) = rigs()
    a0 = r1.animation_data.action
    # the same source again: a new action on its last rig, no pile of 131_01_short.001 rigs
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    assert rigs() == [r1] and r1.animation_data.action != a0 and a0.name in bpy.data.actions
    # a new rig when asked
    s.new_rig = True
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    s.new_rig = False
    r1, r2 = rigs()
    a1, a2 = r1.animation_data.action, r2.animation_data.action
    assert a1 != a2 and len(bpy.data.actions) == 3
    assert bpy.ops.lsmplify.solve() == {
        "FINISHED"
    }  # the latest rig of the source gets the next one
    assert r2.animation_data.action != a2 and r1.animation_data.action == a1
    a2 = r2.animation_data.action
    keys1 = object_fcurve_keys(r1)
    # a third solve onto the first rig: a new action there, the old one kept untouched
    s.target_rig = r1
    set_range(5, 24)
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    a3 = r1.animation_data.action
    assert a3 not in (a1, a2) and a1.name in bpy.data.actions and a1.use_fake_user
    assert len(rigs()) == 2
    from lsmplify_blender.blender.keyframes import action_fcurves

    after = {(fc.data_path, fc.array_index): len(fc.keyframe_points) for fc in action_fcurves(a1)}
    assert after == {k: len(v) for k, v in keys1.items()}
    assert object_fcurve_keys(r1)[('pose.bones["pelvis"].location', 0)][0, 0] == 5


# ---------------------------------------------------------------------------- failures
def _bad_npy(tmp_path):
    p = tmp_path / "nineteen.npy"
    np.save(p, np.random.default_rng(0).normal(size=(10, 19, 3)))
    return p


AS_UI = ("EXEC_DEFAULT", True)  # execution context, undo: how a button or menu calls an operator


def _undo_ready():
    """Background Blender starts with no undo stack; the first undo_push creates it (as the UI
    does at startup). Operators are then called with undo=True, as the UI calls them, so their
    UNDO flag pushes a step."""
    assert bpy.ops.ed.undo_push(message="test start") == {"FINISHED"}


def test_undo_after_a_solve_restores_the_scene_and_redo_brings_it_back():
    import_bvh(create_empties=True)
    set_range(1, 40)
    settings().solver = "ANALYTIC"
    _undo_ready()
    before = snapshot()
    assert bpy.ops.lsmplify.solve(*AS_UI) == {"FINISHED"}
    after = snapshot()
    assert len(rigs()) == 1 and after != before and settings().has_result
    assert bpy.ops.ed.undo() == {"FINISHED"}
    assert snapshot() == before and not rigs() and not settings().has_result
    assert bpy.ops.ed.redo() == {"FINISHED"}
    assert snapshot() == after and len(rigs()) == 1
    keys = object_fcurve_keys(rigs()[0])
    assert len(keys[('pose.bones["left_knee"].rotation_quaternion', 0)]) == 40


def test_undo_after_a_second_solve_and_a_refine_keeps_the_first_result():
    import_bvh(create_empties=False)
    set_range(1, 30)
    settings().solver = "ANALYTIC"
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    _undo_ready()
    first = snapshot()
    (rig,) = rigs()
    first_action = rig.animation_data.action.name
    settings().target_rig = rig
    assert bpy.ops.lsmplify.solve(*AS_UI) == {"FINISHED"}  # a new action on the same rig
    assert len(snapshot()["actions"]) > len(first["actions"])
    assert bpy.ops.ed.undo() == {"FINISHED"}
    assert snapshot() == first and rigs()[0].animation_data.action.name == first_action
    bpy.context.view_layer.objects.active = rigs()[0]
    assert bpy.ops.lsmplify.refine(*AS_UI, iterations=2) == {"FINISHED"}
    assert bpy.ops.ed.undo() == {"FINISHED"}
    assert snapshot() == first and rigs()[0].animation_data.action.name == first_action


def test_undo_after_import_removes_the_empties():
    _undo_ready()
    before = snapshot()
    assert bpy.ops.lsmplify.import_keypoints(*AS_UI, filepath=str(BVH), create_empties=True) == {
        "FINISHED"
    }
    assert snapshot() != before
    assert bpy.ops.ed.undo() == {"FINISHED"}
    assert snapshot() == before and settings().filepath == ""


@pytest.mark.parametrize("case", ["missing", "nineteen"])
def test_bad_input_cancels_and_leaves_the_scene(tmp_path, case):
    import_bvh(create_empties=False)
    s = settings()
    s.solver = "ANALYTIC"
    set_range(1, 10)
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}  # something in the scene already
    path = tmp_path / "missing.bvh" if case == "missing" else _bad_npy(tmp_path)
    before = snapshot()
    match = "not found|does not exist|No such" if case == "missing" else "layout"
    with pytest.raises(RuntimeError, match=match):
        bpy.ops.lsmplify.import_keypoints(filepath=str(path))
    assert snapshot() == before and s.filepath == str(BVH)
    s.filepath = str(path)
    with pytest.raises(RuntimeError, match=match):
        bpy.ops.lsmplify.solve()
    s.target_rig = rigs()[0]
    with pytest.raises(RuntimeError, match=match):
        bpy.ops.lsmplify.solve()
    assert snapshot() == before


def test_failure_while_writing_removes_the_half_made_rig(monkeypatch):
    import_bvh(create_empties=False)
    settings().solver = "ANALYTIC"
    set_range(1, 10)
    before = snapshot()
    from lsmplify_blender.blender import keyframes

    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(keyframes, "write_pose_action", boom)
    with pytest.raises(RuntimeError, match=r"internal error.*disk on fire"):
        bpy.ops.lsmplify.solve()
    assert snapshot() == before


def test_empty_selection_and_no_overlap_are_reported():
    import_bvh(create_empties=False)
    s = settings()
    s.source_type = "EMPTIES"
    with pytest.raises(RuntimeError, match="No empties are selected"):
        bpy.ops.lsmplify.solve()
    s.source_type = "FILE"
    s.use_scene_range = False
    s.frame_start, s.frame_end = 500, 600
    with pytest.raises(RuntimeError, match="do not overlap"):
        bpy.ops.lsmplify.solve()


# ---------------------------------------------------------------------------- npz, refine
def test_export_npz_round_trip_and_import(tmp_path):
    from lsmplify_blender.core.body_model import BodyModel, load_model_data
    from lsmplify_blender.core.formats import read_keypoints
    from lsmplify_blender.core.prepare import prepare
    from lsmplify_blender.core.rotations import axis_angle_to_matrix
    from lsmplify_blender.core.solver import solve

    import_bvh(create_empties=False)
    s = settings()
    s.solver = "ANALYTIC"
    set_range(1, 25)
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    rig = rigs()[0]
    bpy.context.view_layer.objects.active = rig
    set_range(3, 30)  # rows are the solved frames, whatever the scene range is now
    out = tmp_path / "motion.npz"
    assert bpy.ops.lsmplify.export_npz(filepath=str(out)) == {"FINISHED"}
    data = read_smpl_npz(out)
    assert data["poses"].shape == (25, 72) and data["trans"].shape == (25, 3) and data["fps"] == 120
    assert data["frame_start"] == 1
    assert np.allclose(data["betas"], list(rig["lsmplify_betas"])[:10], atol=1e-6)

    model = BodyModel(load_model_data())
    prepared = prepare(read_keypoints(BVH), model)
    # the same 25 frames: foot locking (on for a BVH) plants each contact over the frames solved
    ref = solve(prepared.cut(slice(0, 25)), model, "analytic")
    got = axis_angle_to_matrix(
        torch.from_numpy(data["poses"].astype(np.float64).reshape(-1, 24, 3))
    )
    assert (got - ref.rotmats[:25].double()).abs().max() < 1e-4
    assert np.abs(data["trans"] - ref.trans[:25].numpy()).max() < 1e-4
    with np.load(out) as z:
        fit = z["fit_error_mm"]
        assert fit.shape == (25,) and np.isfinite(fit).all() and int(z["frame_start"]) == 1
    # Scene Range Only: the solved frames inside the scene range (3..25), no held copies
    part = tmp_path / "part.npz"
    assert bpy.ops.lsmplify.export_npz(filepath=str(part), use_scene_range=True) == {"FINISHED"}
    sub = read_smpl_npz(part)
    assert sub["frame_start"] == 3 and np.array_equal(sub["poses"], data["poses"][2:])
    set_range(40, 50)
    with pytest.raises(RuntimeError, match="outside the scene range 40-50: nothing to export"):
        bpy.ops.lsmplify.export_npz(filepath=str(part), use_scene_range=True)

    # ... and back in as a new rig, keyed from the file's frame_start
    set_range(1, 250)
    assert bpy.ops.lsmplify.import_smpl_npz(filepath=str(part)) == {"FINISHED"}
    new = [r for r in rigs() if r != rig]
    assert len(new) == 1 and new[0].name == "part"
    assert (bpy.context.scene.frame_start, bpy.context.scene.frame_end) == (3, 25)
    loc = object_fcurve_keys(new[0])[('pose.bones["pelvis"].location', 2)]
    assert len(loc) == 23 and loc[0, 0] == 3
    # the same keys as the solved rig at those frames
    assert (
        np.abs(
            loc[:, 1] - object_fcurve_keys(rig)[('pose.bones["pelvis"].location', 2)][2:, 1]
        ).max()
        < 1e-5
    )
    mesh = next(c for c in new[0].children if c.type == "MESH")
    assert np.allclose(
        [k.value for k in mesh.data.shape_keys.key_blocks[1:]], data["betas"], atol=1e-5
    )
    set_range(1, 250)
    assert bpy.ops.lsmplify.import_smpl_npz(filepath=str(part), use_file_start=False) == {
        "FINISHED"
    }
    assert object_fcurve_keys(rigs()[-1])[('pose.bones["pelvis"].location', 2)][0, 0] == 1
    with pytest.raises(RuntimeError, match="not found"):
        bpy.ops.lsmplify.import_smpl_npz(filepath=str(tmp_path / "none.npz"))


def test_refine_writes_a_new_action():
    import_bvh(create_empties=False)
    s = settings()
    s.solver = "ANALYTIC"
    set_range(1, 8)
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    rig = rigs()[0]
    first = rig.animation_data.action
    err0 = s.result_fit_error_mm
    bpy.context.view_layer.objects.active = rig
    assert bpy.ops.lsmplify.refine(method="OPTIMIZE", iterations=2) == {"FINISHED"}
    new = rig.animation_data.action
    assert (
        new != first and new.name.startswith("LSMPLify_refined") and first.name in bpy.data.actions
    )
    assert s.result_fit_error_mm <= err0 + 1.0 and "optimisation: 2 iteration" in s.result_summary


def test_refine_with_the_network_plug_in_mode():
    """Plug-in mode from the rig's own action: SMPL-24 empties as the source, a rig posed off."""
    from lsmplify_blender.core.body_model import BodyModel, load_model_data
    from lsmplify_blender.core.layouts import SMPL24
    from lsmplify_blender.core.rotations import axis_angle_to_matrix

    model = BodyModel(load_model_data())
    n = 12
    aa = torch.zeros(n, 24, 3, dtype=model.dtype)
    aa[:, 18, 2] = torch.linspace(0.3, 1.2, n)  # the left elbow bends over the clip
    aa[:, 4, 0] = torch.linspace(0.2, 0.9, n)  # and the left knee
    rot = axis_angle_to_matrix(aa)
    kp = SMPL24.generate(
        model, rot, torch.zeros(10, dtype=model.dtype), torch.zeros(n, 3, dtype=model.dtype)
    ).numpy()
    path = ROOT / "out" / "test_plug_in_kp.npz"
    path.parent.mkdir(exist_ok=True)
    np.savez(path, keypoints=kp, joint_names=np.array(SMPL24.keypoints), fps=30, units="m", up="y")
    s = settings()
    assert bpy.ops.lsmplify.import_keypoints(filepath=str(path), create_empties=False) == {
        "FINISHED"
    }
    set_range(1, n)
    s.solver = "ANALYTIC"
    s.auto_denoise = False
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    rig = rigs()[0]
    # spoil the action: every key of the left elbow and knee back to rest
    from lsmplify_blender.blender.keyframes import action_fcurves

    action = rig.animation_data.action
    spoiled = 0
    for fc in action_fcurves(action, getattr(rig.animation_data, "action_slot", None)):
        if fc.data_path in (
            'pose.bones["left_elbow"].rotation_quaternion',
            'pose.bones["left_knee"].rotation_quaternion',
        ):
            for k in fc.keyframe_points:
                k.co[1] = 1.0 if fc.array_index == 0 else 0.0
            spoiled += 1
    assert spoiled == 8
    bpy.context.scene.frame_set(n)
    rig.evaluated_get(bpy.context.evaluated_depsgraph_get())
    wrist = rig.pose.bones["left_wrist"].head
    assert (
        wrist - rig.data.bones["left_wrist"].head_local
    ).length < 0.005  # the arm is straight now (bent: ~0.2 m)
    bpy.context.view_layer.objects.active = rig
    s.refine_method, s.refine_passes = "NETWORK", 2
    assert bpy.ops.lsmplify.refine() == {"FINISHED"}
    assert rig.animation_data.action != action and "network plug-in: 2 pass(es)" in s.result_summary
    assert s.result_fit_error_mm < 2.0  # the elbow and knee are bent again
    path.unlink()


def test_model_with_pose_correctives_keys_them_on_solve_and_import(tmp_path):
    from lsmplify_blender.blender import model_cache
    from lsmplify_blender.core.body_model import load_model_data
    from lsmplify_blender.core.formats.amass import write_smpl_npz

    d = load_model_data()
    posedirs = (np.random.default_rng(7).normal(size=(d.num_vertices, 3, 207)) * 1e-3).astype(
        np.float32
    )
    model_file = tmp_path / "SMPL_CORR.npz"
    np.savez(
        model_file,
        v_template=d.v_template,
        shapedirs=d.shapedirs,
        posedirs=posedirs,
        J_regressor=d.J_regressor,
        weights=d.weights,
        kintree_table=np.stack([d.parents, np.arange(24)]).astype(np.int64),
        f=d.faces,
    )
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.model_path = str(model_file)
    model_cache.clear_model_cache()
    try:
        import_bvh(create_empties=False)
        settings().solver = "ANALYTIC"
        set_range(1, 6)
        assert bpy.ops.lsmplify.solve() == {"FINISHED"}
        mesh = next(c for c in rigs()[0].children if c.type == "MESH")
        key = mesh.data.shape_keys
        assert "Pose206" in key.key_blocks and key.animation_data.action is not None
        first = key.animation_data.action
        bpy.context.view_layer.objects.active = rigs()[0]
        assert bpy.ops.lsmplify.refine(iterations=1) == {"FINISHED"}
        assert key.animation_data.action != first and first.name in bpy.data.actions

        poses = np.random.default_rng(1).normal(size=(4, 72)) * 0.2
        motion = write_smpl_npz(tmp_path / "m.npz", poses, np.zeros(10), np.zeros((4, 3)), 30.0)
        assert bpy.ops.lsmplify.import_smpl_npz(filepath=str(motion)) == {"FINISHED"}
        rig = next(r for r in rigs() if r.name == "m")
        mesh = next(c for c in rig.children if c.type == "MESH")
        act = mesh.data.shape_keys.animation_data.action
        from lsmplify_blender.blender.keyframes import action_fcurves

        fcs = action_fcurves(act, getattr(mesh.data.shape_keys.animation_data, "action_slot", None))
        assert len(fcs) == 207 and all(len(fc.keyframe_points) == 4 for fc in fcs)
    finally:
        prefs.model_path = ""
        model_cache.clear_model_cache()


# ---------------------------------------------------------------------------- FBX, preview
@pytest.mark.parametrize("preset", ["UNITY", "BLENDER"])
def test_export_fbx(tmp_path, preset):
    import_bvh(create_empties=False)
    settings().solver = "ANALYTIC"
    set_range(1, 5)
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    rig = rigs()[0]
    bpy.context.view_layer.objects.active = rig
    out = tmp_path / f"smpl_{preset}.fbx"
    before = snapshot()
    assert bpy.ops.lsmplify.export_fbx(filepath=str(out), preset=preset) == {"FINISHED"}
    assert out.stat().st_size > 100_000 and snapshot() == before
    if preset == "BLENDER":  # re-import: 24 bones, upright, real size, animated
        names = set(bpy.data.objects.keys())
        # anim_offset=0: Blender's FBX importer shifts animation by +1 frame by default
        assert bpy.ops.import_scene.fbx(filepath=str(out), anim_offset=0.0) == {"FINISHED"}
        arm = next(
            bpy.data.objects[n]
            for n in set(bpy.data.objects.keys()) - names
            if bpy.data.objects[n].type == "ARMATURE"
        )
        assert len(arm.data.bones) == 24
        for f in (1, 3, 5):
            bpy.context.scene.frame_set(f)
            for b in ("pelvis", "head", "left_wrist", "right_ankle"):
                ours = rig.matrix_world @ rig.pose.bones[b].head
                theirs = arm.matrix_world @ arm.pose.bones[b].head
                assert (ours - theirs).length < 1e-4, (f, b)


def test_render_preview_two_frames(tmp_path):
    import_bvh()
    settings().solver = "ANALYTIC"
    set_range(1, 10)
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    sc = bpy.context.scene
    engine, res = sc.render.engine, (sc.render.resolution_x, sc.render.resolution_y)
    before = snapshot()
    assert bpy.ops.lsmplify.render_preview(
        directory=str(tmp_path), max_frames=2, resolution=64
    ) == {"FINISHED"}
    pngs = sorted(tmp_path.glob("*.png"))
    assert [p.name for p in pngs] == ["preview_00001.png", "preview_00010.png"]
    img = bpy.data.images.load(str(pngs[0]))
    try:
        assert tuple(img.size) == (64, 48)
        px = np.array(img.pixels[:]).reshape(48, 64, 4)
        assert px[..., :3].std() > 0.02  # something was drawn
    finally:
        bpy.data.images.remove(img)
    assert snapshot() == before and sc.render.engine == engine
    assert (sc.render.resolution_x, sc.render.resolution_y) == res and sc.camera is None


# ---------------------------------------------------------------------------- smoothing
def test_smoothing_is_zero_phase():
    from lsmplify_blender.blender.sources import smooth_prepared
    from lsmplify_blender.core.body_model import BodyModel, load_model_data
    from lsmplify_blender.core.formats import read_keypoints
    from lsmplify_blender.core.prepare import prepare

    prepared = prepare(read_keypoints(BVH), BodyModel(load_model_data()))
    assert smooth_prepared(prepared, 0.0) is prepared
    t = np.arange(prepared.num_frames)
    wave = np.sin(2 * np.pi * t / 200.0)  # 0.6 Hz at 120 fps
    p = prepared.positions.copy()
    p[:, :, 0] = wave[:, None]
    sm = smooth_prepared(type(prepared)(**{**prepared.__dict__, "positions": p}), 1.0).positions[
        :, 0, 0
    ]
    core = slice(20, 180)
    assert np.argmax(sm[core]) == np.argmax(wave[core])  # no lag
    assert np.abs(sm[core] - wave[core]).max() < 0.05
    noisy = p.copy()
    noisy[:, :, 1] = np.random.default_rng(0).normal(size=noisy.shape[:2])
    sm2 = smooth_prepared(
        type(prepared)(**{**prepared.__dict__, "positions": noisy}), 1.0
    ).positions
    assert sm2[:, :, 1].std() < 0.5 * noisy[:, :, 1].std()


def test_smoothing_setting_and_auto_denoise(scene):
    from lsmplify_blender.blender.solving import smooth_setting

    s = scene.lsmplify
    s.smoothing, s.auto_denoise = 0.0, True
    assert smooth_setting(s) == "auto"
    s.auto_denoise = False
    assert smooth_setting(s) == 0.0
    s.smoothing = 0.5
    assert smooth_setting(s) == pytest.approx(0.025)
    s.smoothing, s.auto_denoise = 0.0, True


# ---------------------------------------------------------------------------- UI + worker
class _FakeLayout:
    """Records what a draw() asks for and checks that every property exists."""

    def __init__(self):
        self.props, self.ops = [], []

    def __getattr__(self, name):  # box, row, column, split...: all return a layout
        if name in ("use_property_split", "use_property_decorate", "alert", "enabled"):
            raise AttributeError(name)
        return lambda *a, **k: self

    def prop(self, data, name, **_):
        assert name in data.bl_rna.properties, name
        self.props.append(name)

    def operator(self, idname, **_):
        mod, op = idname.split(".")
        assert hasattr(getattr(bpy.ops, mod), op), idname
        self.ops.append(idname)

    def label(self, **_):
        pass


def test_panel_and_preferences_draw():
    from lsmplify_blender.blender.panel import LSMPLIFY_PT_main

    s = settings()
    for kind in ("FILE", "EMPTIES", "ARMATURE"):
        s.source_type = kind
        s.has_result = True
        fake = _FakeLayout()
        LSMPLIFY_PT_main.draw(type("P", (), {"layout": fake})(), bpy.context)
        assert "lsmplify.solve" in fake.ops and "solver" in fake.props
        assert {"root_bone", "bones_to_children"} <= set(fake.props)  # the rig options
    prefs = bpy.context.preferences.addons[ADDON].preferences
    fake = _FakeLayout()
    type(prefs).draw(
        type(
            "P",
            (),
            {
                "layout": fake,
                "bl_rna": prefs.bl_rna,
                **{k: getattr(prefs, k) for k in ("model_path", "device")},
            },
        )(),
        bpy.context,
    )
    assert fake.props == ["model_path", "device"] and fake.ops == ["lsmplify.check_model"]
    assert "network_checkpoint" not in prefs.bl_rna.properties  # it was never used: removed


def test_threaded_job_touches_the_scene_only_when_finished():
    import threading

    from lsmplify_blender.blender.solving import SolveJob as _SolveJob

    import_bvh(create_empties=False)
    settings().solver = "ANALYTIC"
    set_range(1, 10)
    settings().new_rig = True
    job = _SolveJob(bpy.context, lambda kind, message: None)
    before = snapshot()
    th = threading.Thread(target=job.work)
    th.start()
    th.join()
    assert (
        job.error is None and job.solution is not None and snapshot() == before
    )  # Esc here: nothing to undo

    class Op:
        def report(self, *a):
            pass

        def report_notes(self, *a):
            pass

    assert job.finish(Op(), bpy.context) == {"FINISHED"} and len(rigs()) == 1
    # without a window, INVOKE runs the solve synchronously
    assert bpy.ops.lsmplify.solve("INVOKE_DEFAULT") == {"FINISHED"} and len(rigs()) == 2
