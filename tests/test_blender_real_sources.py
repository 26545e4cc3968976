"""Real CMU files brought in with Blender's own importers, solved from the armature or the
empties (issue 11): the rig sits on its source, solves the source's frames, exports at
real size.

The BVH is a shortened CMU take (``01_01_short.bvh``) imported with ``import_anim.bvh``, the
FBX a complete CMU take on the 31-joint rig (``09_11_cmu.fbx``) imported with
``import_scene.fbx``; both come in at file units (1 unit = 0.05644 m) and leave the scene
at frames 1..250.
"""

import numpy as np
import pytest
from blender_env import addon_enabled, import_bpy, reset_scene

bpy = import_bpy()
if bpy is None:
    pytest.skip("the bpy wheel is not installed", allow_module_level=True)

from conftest import FIXTURES, SHARED_MOCAP

from lsmplify_blender.core.keypoints import UNIT_SCALES

BVH = FIXTURES / "01_01_short.bvh"
FBX = FIXTURES / "09_11_cmu.fbx"
KEYPOINTS = FIXTURES / "131_01_short.bvh"
# SMPL joint -> the CMU rig's bone whose head is that joint (the names of Blender's BVH and FBX imports)
OVERLAY = {
    "left_knee": "LeftLeg",
    "right_knee": "RightLeg",
    "left_ankle": "LeftFoot",
    "right_ankle": "RightFoot",
    "left_elbow": "LeftForeArm",
    "right_elbow": "RightForeArm",
    "left_wrist": "LeftHand",
    "right_wrist": "RightHand",
    "left_shoulder": "LeftArm",
    "right_shoulder": "RightArm",
}


@pytest.fixture(scope="module", autouse=True)
def addon():
    with addon_enabled("io_anim_bvh", "io_scene_fbx"):
        yield


@pytest.fixture(autouse=True)
def scene():
    return reset_scene()


def settings():
    return bpy.context.scene.lsmplify


def rigs():
    return [o for o in bpy.data.objects if o.type == "ARMATURE" and o.get("lsmplify_rig")]


def import_source(kind):
    if kind == "bvh":
        assert bpy.ops.import_anim.bvh(filepath=str(BVH)) == {"FINISHED"}
    else:
        assert bpy.ops.import_scene.fbx(filepath=str(FBX)) == {"FINISHED"}
    (arm,) = [o for o in bpy.data.objects if o.type == "ARMATURE"]
    return arm


def world_heads(arm, names):
    mw = arm.matrix_world
    return np.array([tuple(mw @ arm.pose.bones[n].head) for n in names])


def overlay_error_m(rig, arm, frames, metres_per_unit):
    """Mean distance, in metres, from the rig's joints to the source's matching bone heads."""
    sc = bpy.context.scene
    d = []
    for f in frames:
        sc.frame_set(f)
        d.append(
            np.linalg.norm(world_heads(rig, OVERLAY) - world_heads(arm, OVERLAY.values()), axis=-1)
        )
    return float(np.mean(d)) * metres_per_unit


@pytest.mark.parametrize(("kind", "frames"), [("bvh", 200), ("fbx", 166)])
def test_armature_source_solves_its_action_and_the_rig_sits_on_it(kind, frames):
    arm = import_source(kind)
    sc, s = bpy.context.scene, settings()
    assert (sc.frame_start, sc.frame_end) == (1, 250)  # what the importers leave
    s.source_type, s.source_armature, s.solver = "ARMATURE", arm, "ANALYTIC"
    from lsmplify_blender.blender.sources import solve_range_text

    assert (
        solve_range_text(bpy.context, s)
        == f"Solves frames 1-{frames} ({frames} frames, the armature's action)"
    )
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    assert s.detected_frames == str(frames) and s.detected_units == "cmu"
    (rig,) = rigs()
    assert rig.name == f"{arm.name}_SMPL"
    cmu = UNIT_SCALES["cmu"]
    assert np.allclose(tuple(rig.scale), 1 / cmu, rtol=1e-6)  # 17.7 units per metre
    err = overlay_error_m(rig, arm, (1, frames // 2, frames), cmu)
    print(f"{kind}: overlay error {err * 1000:.0f} mm")
    assert err < 0.08, (
        err
    )  # on the source: knees, ankles, elbows, wrists, shoulders within a few cm
    # Match Source off: the rig at real size in metres, far from the file-unit source
    s.match_source, s.new_rig = False, True
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    plain = rigs()[-1]
    assert tuple(plain.scale) == (1.0, 1.0, 1.0)
    assert overlay_error_m(plain, arm, (1,), cmu) > 0.5


def test_scene_range_option_and_npz_rows_of_an_armature_source(tmp_path):
    arm = import_source("bvh")
    s = settings()
    s.source_type, s.source_armature, s.solver = "ARMATURE", arm, "ANALYTIC"
    s.use_source_range = False
    sc = bpy.context.scene
    sc.frame_start, sc.frame_end = 100, 140
    from lsmplify_blender.blender.sources import solve_range_text

    assert solve_range_text(bpy.context, s) == "Solves frames 100-140 (41 frames, the scene range)"
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    rig = rigs()[-1]
    bpy.context.view_layer.objects.active = rig
    sc.frame_start, sc.frame_end = 1, 250
    out = tmp_path / "solved.npz"
    assert bpy.ops.lsmplify.export_npz(filepath=str(out)) == {"FINISHED"}
    with np.load(out) as z:  # only the 41 solved frames, each with its own fit error
        assert z["poses"].shape == (41, 72) and int(z["frame_start"]) == 100
        assert z["fit_error_mm"].shape == (41,) and np.isfinite(z["fit_error_mm"]).all()
        assert len(np.unique(z["poses"], axis=0)) == 41
        # exports are at real size: the pelvis about a metre above the floor, not 17 units
        assert 0.5 < float(np.median(z["trans"][:, 1])) + 0.2 < 1.6


def test_fbx_export_of_a_matched_rig_is_at_real_size(tmp_path):
    arm = import_source("bvh")
    s = settings()
    s.source_type, s.source_armature, s.solver = "ARMATURE", arm, "ANALYTIC"
    s.use_source_range = False
    sc = bpy.context.scene
    sc.frame_start, sc.frame_end = 1, 4
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    rig = rigs()[-1]
    k = rig.scale[0]
    assert k > 10
    bpy.context.view_layer.objects.active = rig
    out = tmp_path / "real_size.fbx"
    assert bpy.ops.lsmplify.export_fbx(filepath=str(out), preset="BLENDER") == {"FINISHED"}
    assert rig.scale[0] == k  # the scene keeps its overlay
    names = set(bpy.data.objects.keys())
    assert bpy.ops.import_scene.fbx(filepath=str(out), anim_offset=0.0) == {"FINISHED"}
    back = next(
        bpy.data.objects[n]
        for n in set(bpy.data.objects.keys()) - names
        if bpy.data.objects[n].type == "ARMATURE"
    )
    for f in (1, 4):
        sc.frame_set(f)
        for b in ("pelvis", "head", "left_wrist"):
            ours = np.array(rig.matrix_world @ rig.pose.bones[b].head) / k  # real size, metres
            theirs = np.array(back.matrix_world @ back.pose.bones[b].head)
            assert np.abs(ours - theirs).max() < 1e-4, (f, b)


@pytest.mark.parametrize("source", ["FILE", "EMPTIES"])
def test_rig_matches_keypoints_in_a_centimetre_scene(source):
    sc = bpy.context.scene
    sc.unit_settings.scale_length = 0.01  # one scene unit = 1 cm
    assert bpy.ops.lsmplify.import_keypoints(filepath=str(KEYPOINTS)) == {"FINISHED"}
    s = settings()
    s.solver = "ANALYTIC"
    sc.frame_start, sc.frame_end = 1, 20
    empties = {o["lsmplify_keypoint"]: o for o in s.empties_collection.objects}
    if source == "EMPTIES":
        for o in sc.objects:
            o.select_set(o.type == "EMPTY")
        s.source_type, s.use_source_range = "EMPTIES", False
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    rig = rigs()[-1]
    assert np.allclose(tuple(rig.scale), 100.0)
    sc.frame_set(10)
    # CMU ASF names: the knee is where 'ltibia' starts, the elbow where 'lradius' starts
    pairs = {
        "left_knee": "ltibia",
        "right_knee": "rtibia",
        "left_elbow": "lradius",
        "right_elbow": "rradius",
    }
    d = [
        np.linalg.norm(
            np.array(rig.matrix_world @ rig.pose.bones[j].head)
            - np.array(empties[e].matrix_world.translation)
        )
        for j, e in pairs.items()
    ]
    assert np.mean(d) * 0.01 < 0.06, d  # scene units are cm: within a few cm of the keypoints


def test_amass_z_up_smplh_file_imports_standing_like_its_smpl_twin(tmp_path):
    """An AMASS-style file (Z up, no 'up' key, 156 SMPL-H columns) of a solved CMU take
    imports as the same motion as LSMPLify's own Y-up 72-column export of it."""
    import torch

    from lsmplify_blender.blender.rig import rest_joints_smpl
    from lsmplify_blender.core.body_model import load_model_data
    from lsmplify_blender.core.model.axes import Z_UP_TO_Y_UP
    from lsmplify_blender.core.rotations import axis_angle_to_matrix, matrix_to_axis_angle

    assert bpy.ops.lsmplify.import_keypoints(filepath=str(KEYPOINTS), create_empties=False) == {
        "FINISHED"
    }
    s, sc = settings(), bpy.context.scene
    s.solver = "ANALYTIC"
    sc.frame_start, sc.frame_end = 1, 30
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    bpy.context.view_layer.objects.active = rigs()[0]
    ours = tmp_path / "ours.npz"
    assert bpy.ops.lsmplify.export_npz(filepath=str(ours)) == {"FINISHED"}
    z = dict(np.load(ours))
    poses, trans, betas = z["poses"].astype(np.float64), z["trans"].astype(np.float64), z["betas"]
    m = Z_UP_TO_Y_UP.T  # SMPL's Y up -> AMASS's Z up
    j0 = rest_joints_smpl(load_model_data(), betas)[0]
    rot = axis_angle_to_matrix(torch.from_numpy(poses.reshape(-1, 24, 3))).numpy()
    rot[:, 0] = m @ rot[:, 0]
    wide = np.zeros((poses.shape[0], 156))
    wide[:, :66] = matrix_to_axis_angle(torch.from_numpy(rot)).reshape(-1, 72).numpy()[:, :66]
    wide[:, 66:69], wide[:, 111:114] = poses[:, 66:69], poses[:, 69:72]  # left/right index1
    amass = tmp_path / "amass.npz"
    np.savez(amass, poses=wide, trans=(trans + j0) @ m.T - j0, betas=betas, mocap_framerate=120.0)
    assert bpy.ops.lsmplify.import_smpl_npz(filepath=str(ours)) == {"FINISHED"}
    assert bpy.ops.lsmplify.import_smpl_npz(filepath=str(amass)) == {"FINISHED"}
    a, b = bpy.data.objects["ours"], bpy.data.objects["amass"]
    names = ["pelvis", "head", "left_wrist", "right_wrist", "left_ankle", "right_ankle"]
    for f in (1, 15, 30):
        sc.frame_set(f)
        pa, pb = world_heads(a, names), world_heads(b, names)
        assert np.abs(pa - pb).max() < 1e-3, f
        assert (
            pb[1, 2] - pb[4, 2] > 1.0
        )  # standing: the head a metre above the ankle in Blender's Z


def fbx_global_settings(path):
    """The GlobalSettings properties of a binary FBX, read with Blender's own FBX parser."""
    from io_scene_fbx import parse_fbx

    root, _ = parse_fbx.parse(str(path))
    gs = next(e for e in root.elems if e.id == b"GlobalSettings")
    p70 = next(e for e in gs.elems if e.id == b"Properties70")
    return {p.props[0].decode(): p.props[4] for p in p70.elems if len(p.props) > 4}


def test_fbx_presets_write_unity_metres_and_unreal_centimetres(tmp_path):
    assert bpy.ops.lsmplify.import_keypoints(filepath=str(KEYPOINTS), create_empties=False) == {
        "FINISHED"
    }
    s, sc = settings(), bpy.context.scene
    s.solver = "ANALYTIC"
    sc.frame_start, sc.frame_end = 1, 3
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    rig = rigs()[0]
    bpy.context.view_layer.objects.active = rig
    files = {}
    for preset in ("UNITY", "UNREAL"):
        files[preset] = tmp_path / f"{preset}.fbx"
        assert bpy.ops.lsmplify.export_fbx(filepath=str(files[preset]), preset=preset) == {
            "FINISHED"
        }
    assert files["UNITY"].read_bytes() != files["UNREAL"].read_bytes()
    unity, unreal = fbx_global_settings(files["UNITY"]), fbx_global_settings(files["UNREAL"])
    assert unity["UnitScaleFactor"] == 100.0 and unity["UpAxis"] == 1  # metres, Y up
    assert unreal["UnitScaleFactor"] == 1.0 and unreal["UpAxis"] == 2  # centimetres, Z up
    # both arrive at real size: re-imported, every joint where the rig has it
    for preset, path in files.items():
        names = set(bpy.data.objects.keys())
        assert bpy.ops.import_scene.fbx(filepath=str(path), anim_offset=0.0) == {"FINISHED"}
        back = next(
            bpy.data.objects[n]
            for n in set(bpy.data.objects.keys()) - names
            if bpy.data.objects[n].type == "ARMATURE"
        )
        for f in (1, 3):
            sc.frame_set(f)
            joints = ["pelvis", "head", "left_wrist", "right_ankle"]
            assert np.abs(world_heads(rig, joints) - world_heads(back, joints)).max() < 1e-4, (
                preset,
                f,
            )


def test_render_preview_draws_file_source_keypoints_and_never_into_the_cwd(tmp_path, monkeypatch):
    assert bpy.ops.lsmplify.import_keypoints(filepath=str(KEYPOINTS)) == {
        "FINISHED"
    }  # a File source + empties
    sc = bpy.context.scene
    sc.frame_start, sc.frame_end = 1, 5
    out = tmp_path / "png"
    assert bpy.ops.lsmplify.render_preview(directory=str(out), max_frames=1, resolution=160) == {
        "FINISHED"
    }
    (png,) = sorted(out.glob("*.png"))
    img = bpy.data.images.load(str(png))
    try:
        px = np.array(img.pixels[:]).reshape(-1, 4)[:, :3]
    finally:
        bpy.data.images.remove(img)
    markers = (
        (px[:, 0] > 0.5) & (px[:, 0] > 2 * px[:, 2]) & (px[:, 0] > 1.5 * px[:, 1])
    )  # the orange spheres
    assert markers.sum() >= 20, markers.sum()
    # an unsaved file with the default '//' folder: refused, nothing in the working directory
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    assert bpy.data.filepath == ""
    with pytest.raises(RuntimeError, match=r"relative to the \.blend file, which is not saved yet"):
        bpy.ops.lsmplify.render_preview(max_frames=1, resolution=64)
    assert list(work.iterdir()) == []


# ---------------------------------------------------------------------------- messages in Blender's terms
AMC_ALONE = FIXTURES / "88_01_short.amc"  # a CMU take whose own ASF is not available
ASF = FIXTURES / "01.asf"


def test_an_amc_without_its_asf_names_the_asf_skeleton_control_and_imports_with_it(tmp_path):
    with pytest.raises(RuntimeError) as e:
        bpy.ops.lsmplify.import_keypoints(filepath=str(AMC_ALONE))
    msg = str(e.value)
    assert "choose it as the ASF Skeleton (an option of Import Keypoints" in msg
    assert "--asf" not in msg and "read_keypoints" not in msg
    with pytest.raises(RuntimeError) as e:
        bpy.ops.lsmplify.import_keypoints(filepath=str(ASF))
    assert "choose this skeleton as the ASF Skeleton" in str(e.value) and "--" not in str(e.value)
    assert bpy.ops.lsmplify.import_keypoints(filepath=str(AMC_ALONE), asf_path=str(ASF)) == {
        "FINISHED"
    }
    s = settings()
    assert (
        s.asf_path == str(ASF)
        and s.detected_frames == "120"
        and s.detected_layout.startswith("CMU")
    )
    s.solver = "ANALYTIC"
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}  # the File source reads the same ASF again
    assert len(rigs()) == 1 and s.result_fit_error_mm < 100


def test_a_non_human_armature_is_refused_with_its_real_bone_names():
    arm_data = bpy.data.armatures.new("Crane")
    arm = bpy.data.objects.new("Crane", arm_data)
    bpy.context.scene.collection.objects.link(arm)
    bpy.context.view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode="EDIT")
    for i in range(5):
        b = arm_data.edit_bones.new("Bone")
        b.head, b.tail = (0, 0, i), (0, 0, i + 1)
    bpy.ops.object.mode_set(mode="OBJECT")
    s = settings()
    s.source_type, s.source_armature = "ARMATURE", arm
    with pytest.raises(RuntimeError) as e:
        bpy.ops.lsmplify.solve()
    msg = str(e.value)
    assert (
        "Bone.001" in msg
        and "Bone.004" in msg
        and "(the Layout setting in the LSMPLify panel)" in msg
    )
    assert "--layout" not in msg


def test_every_cli_flag_of_the_core_messages_has_a_blender_term():
    from lsmplify_blender.blender.messages import in_blender_terms

    samples = [
        "Rename the joints or pass the layout explicitly (--layout).",
        "otherwise give joint names in the file or pass the layout (--layout auto|smpl24|body25).",
        "Check the file, or give the units explicitly (--units).",
        "CUDA was asked for but is not available here; use --device auto or cpu.",
        (
            "'x.txt': .txt is not a keypoint format read by extension. CMU-subset clips are read with "
            "read_cmu_subset(path, skeleton_json); otherwise save as .npz."
        ),
        "--asf must name an .asf skeleton file, got 'a.bvh'.",
        "SMPL motion file not found: '/x.npz'. Check the path (--init).",
        "x.npy is a single .npy array; --init needs an AMASS-style .npz with poses, betas and trans",
        "Could not write /x.npz: No space. Nothing was replaced; free some disk space or choose another --out.",
    ]
    for text in samples:
        out = in_blender_terms(text)
        assert "--" not in out and "read_cmu_subset(" not in out, out


def test_forced_units_or_up_that_make_no_upright_person_are_warned(capfd):
    arm = import_source("bvh")
    s, sc = settings(), bpy.context.scene
    s.source_type, s.source_armature, s.solver, s.use_source_range = (
        "ARMATURE",
        arm,
        "ANALYTIC",
        False,
    )
    sc.frame_start, sc.frame_end = 1, 10
    capfd.readouterr()
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}  # units detected: no warning
    assert "not a person's size" not in capfd.readouterr().out
    s.units = "m"  # CMU units read as metres: a body of about 30 m
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    out = capfd.readouterr().out
    assert (
        "m tall, not a person's size: check the Units setting in the LSMPLify panel (now read as 'm')"
        in out
    )
    # a Y-up file forced to Z up: the body lies down
    assert bpy.ops.lsmplify.import_keypoints(
        filepath=str(KEYPOINTS), create_empties=False, up="Z"
    ) == {"FINISHED"}
    sc.frame_start, sc.frame_end = 1, 10
    capfd.readouterr()
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    out = capfd.readouterr().out
    assert "The body lies down over most of the take" in out and "check the Up setting" in out
    assert bpy.ops.lsmplify.import_keypoints(filepath=str(KEYPOINTS), create_empties=False) == {
        "FINISHED"
    }
    sc.frame_start, sc.frame_end = 1, 10
    capfd.readouterr()
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    assert "lies down" not in capfd.readouterr().out


def test_import_keypoints_takes_an_fbx_take_as_the_armature_source():
    assert bpy.ops.lsmplify.import_keypoints(filepath=str(FBX)) == {"FINISHED"}
    s, sc = settings(), bpy.context.scene
    arm = s.source_armature
    assert s.source_type == "ARMATURE" and arm is not None and arm.type == "ARMATURE"
    assert (sc.frame_start, sc.frame_end, sc.render.fps) == (1, 166, 120)
    assert (
        s.detected_layout.startswith("CMU")
        and s.detected_units == "cmu"
        and s.detected_frames == "166"
    )
    s.solver = "ANALYTIC"
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    (rig,) = rigs()
    assert overlay_error_m(rig, arm, (1, 166), UNIT_SCALES["cmu"]) < 0.08


def test_an_fbx_without_a_human_armature_leaves_the_scene_as_it_was(tmp_path):
    arm_data = bpy.data.armatures.new("Crane")
    arm = bpy.data.objects.new("Crane", arm_data)
    bpy.context.scene.collection.objects.link(arm)
    bpy.context.view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode="EDIT")
    for i in range(5):
        b = arm_data.edit_bones.new(f"Boom{i}")
        b.head, b.tail = (0, 0, i), (0, 0, i + 1)
    bpy.ops.object.mode_set(mode="OBJECT")
    arm.animation_data_create()
    arm.keyframe_insert("location", frame=1)
    arm.location.x = 2
    arm.keyframe_insert("location", frame=20)
    crane = tmp_path / "crane.fbx"
    assert bpy.ops.export_scene.fbx(filepath=str(crane), bake_anim=True) == {"FINISHED"}
    reset_scene()
    assert bpy.ops.lsmplify.import_keypoints(filepath=str(BVH)) == {"FINISHED"}  # an earlier source
    d = bpy.data
    before = (
        {
            k: sorted(x.name for x in getattr(d, k))
            for k in ("objects", "actions", "armatures", "meshes", "collections", "materials")
        },
        (bpy.context.scene.frame_start, bpy.context.scene.frame_end),
        settings().source_type,
        settings().filepath,
    )
    with pytest.raises(RuntimeError, match="Boom0"):
        bpy.ops.lsmplify.import_keypoints(filepath=str(crane))
    after = (
        {
            k: sorted(x.name for x in getattr(d, k))
            for k in ("objects", "actions", "armatures", "meshes", "collections", "materials")
        },
        (bpy.context.scene.frame_start, bpy.context.scene.frame_end),
        settings().source_type,
        settings().filepath,
    )
    assert after == before


def test_render_preview_draws_a_floor_and_writes_an_h264_video(tmp_path):
    assert bpy.ops.lsmplify.import_keypoints(filepath=str(KEYPOINTS)) == {"FINISHED"}
    s, sc = settings(), bpy.context.scene
    s.solver = "ANALYTIC"
    sc.frame_start, sc.frame_end = 1, 12
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    d = bpy.data
    kinds = ("objects", "meshes", "cameras", "collections", "worlds")
    before = {k: sorted(x.name for x in getattr(d, k)) for k in kinds}
    fmt = sc.render.image_settings.file_format
    out = tmp_path / "prev"
    assert bpy.ops.lsmplify.render_preview(
        directory=str(out), max_frames=2, resolution=64, video=True
    ) == {"FINISHED"}
    (video,) = sorted(out.glob("*.mp4"))
    head = video.read_bytes()[:64]
    assert video.stat().st_size > 1000 and b"ftyp" in head  # an MPEG-4 container
    assert b"avc1" in video.read_bytes()  # H.264
    assert (sc.frame_start, sc.frame_end, sc.render.image_settings.file_format) == (1, 12, fmt)
    assert {k: sorted(x.name for x in getattr(d, k)) for k in kinds} == before and sc.world is None
    img = bpy.data.images.load(str(out / "preview_00001.png"))
    try:
        px = np.array(img.pixels[:]).reshape(48, 64, 4)[..., :3]  # rows from the bottom
    finally:
        bpy.data.images.remove(img)
    floor = (
        np.abs(px[:3] - np.array([0.45, 0.47, 0.5])).max(-1) < 0.25
    )  # the bottom rows: the floor, not white
    top = (
        np.abs(px[-3:] - np.array([0.85, 0.88, 0.92])).max(-1) < 0.1
    )  # the top rows: the background colour
    assert floor.mean() > 0.5 and top.mean() > 0.5


# ---------------------------------------------------------------------------- joint map
def test_joint_map_makes_a_renamed_rig_solvable_and_is_saved_on_the_source():
    arm = import_source("bvh")
    s, sc = settings(), bpy.context.scene
    s.source_type, s.source_armature, s.solver, s.use_source_range = (
        "ARMATURE",
        arm,
        "ANALYTIC",
        False,
    )
    sc.frame_start, sc.frame_end = 1, 12
    s.new_rig = True
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    reference = rigs()[-1]
    original = [b.name for b in arm.data.bones]
    for b in arm.data.bones:  # a studio's own names: nothing any layout knows
        b.name = f"rig_j{original.index(b.name):02d}"
    with pytest.raises(RuntimeError, match="Could not recognise the keypoint layout"):
        bpy.ops.lsmplify.solve()
    for i, name in enumerate(original):
        assert bpy.ops.lsmplify.joint_map_add(source=f"rig_j{i:02d}", keypoint=name) == {"FINISHED"}
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    mapped = rigs()[-1]
    assert mapped != reference
    a, b = keys_of_rig(reference), keys_of_rig(mapped)
    assert a.keys() == b.keys() and all(np.allclose(a[k], b[k], atol=1e-5) for k in a)
    # saved on the armature: used whenever the panel's map is empty
    assert bpy.ops.lsmplify.joint_map_save() == {"FINISHED"}
    while len(s.joint_map):
        assert bpy.ops.lsmplify.joint_map_remove() == {"FINISHED"}
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    assert len(rigs()) == 3
    assert bpy.ops.lsmplify.joint_map_load() == {"FINISHED"}
    assert len(s.joint_map) == len(original) and s.joint_map[0].source == "rig_j00"


def keys_of_rig(rig):
    from blender_env import fcurve_keys

    anim = rig.animation_data
    return fcurve_keys(anim.action, getattr(anim, "action_slot", None))


def test_render_preview_of_an_armature_source_marks_its_bones_over_the_matched_rig(tmp_path):
    arm = import_source("fbx")
    s, sc = settings(), bpy.context.scene
    s.source_type, s.source_armature, s.solver, s.use_source_range = (
        "ARMATURE",
        arm,
        "ANALYTIC",
        False,
    )
    sc.frame_start, sc.frame_end = 1, 20
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    from lsmplify_blender.blender.keypoint_empties import keypoint_targets

    targets = keypoint_targets(bpy.context, s)
    assert len(targets) == len(arm.pose.bones) and targets[0] == (arm, arm.pose.bones[0].name)
    out = tmp_path / "arm"
    assert bpy.ops.lsmplify.render_preview(directory=str(out), max_frames=1, resolution=160) == {
        "FINISHED"
    }
    img = bpy.data.images.load(str(next(out.glob("*.png"))))
    try:
        px = np.array(img.pixels[:]).reshape(-1, 4)[:, :3]
    finally:
        bpy.data.images.remove(img)
    markers = (px[:, 0] > 0.5) & (px[:, 0] > 2 * px[:, 2]) & (px[:, 0] > 1.5 * px[:, 1])
    body = (np.abs(px - 0.75).max(-1) < 0.2) & (px.std(-1) < 0.05)  # the grey mesh
    assert markers.sum() >= 20 and body.sum() >= 200, (markers.sum(), body.sum())


DEEPMIMIC_RUN = SHARED_MOCAP / "deepmimic" / "humanoid3d_run.txt"


@pytest.mark.parametrize("clip", [FIXTURES / "humanoid3d_walk.txt", DEEPMIMIC_RUN])
def test_import_keypoints_takes_a_deepmimic_motion_and_the_rig_follows_it(clip):
    if not clip.is_file():
        pytest.skip(f"{clip} is not in the shared mocap collection")
    from lsmplify_blender.blender.operators import KEYPOINT_GLOB

    assert "*.txt" in KEYPOINT_GLOB.split(";")  # the file browser shows DeepMimic files
    assert bpy.ops.lsmplify.import_keypoints(filepath=str(clip)) == {"FINISHED"}
    s, sc = settings(), bpy.context.scene
    frames = int(s.detected_frames)
    assert s.detected_layout == "DeepMimic humanoid3d" and s.detected_units == "m"
    assert frames > 20 and (sc.frame_start, sc.frame_end) == (1, frames)
    empties = {o["lsmplify_keypoint"]: o for o in s.empties_collection.objects}
    assert {"root", "left_knee", "right_elbow"} <= set(empties)
    s.solver = "ANALYTIC"
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    (rig,) = rigs()
    assert s.result_fit_error_mm < 60.0
    d = []
    for f in (1, frames // 2, frames):
        sc.frame_set(f)
        for joint in ("left_knee", "right_knee", "left_elbow", "right_elbow"):
            ours = np.array(rig.matrix_world @ rig.pose.bones[joint].head)
            d.append(np.linalg.norm(ours - np.array(empties[joint].matrix_world.translation)))
    assert np.mean(d) < 0.06, d  # knees and elbows on the clip's own, within a few cm


def test_a_txt_that_is_not_deepmimic_is_refused_in_blender_terms(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("1 2 3\n4 5 6\n", encoding="utf-8")
    before = {k: set(getattr(bpy.data, k)) for k in ("objects", "actions", "collections")}
    with pytest.raises(RuntimeError) as err:
        bpy.ops.lsmplify.import_keypoints(filepath=str(bad))
    msg = str(err.value)
    assert "DeepMimic motion" in msg and "read_cmu_subset(" not in msg and "--" not in msg
    assert {k: set(getattr(bpy.data, k)) for k in before} == before
