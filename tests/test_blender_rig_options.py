"""The rig options of issue 11 through the operators, on real CMU takes (fixtures/CREDITS.md):
a root bone for engines' root motion and bones that point at their children. Neither may change
the motion: the world joints, the bones' deformations, the mesh, the exported .npz and the
re-imported FBX are the same as the plain rig's."""

import numpy as np
import pytest
from blender_env import addon_enabled, evaluated_vertices_smpl, import_bpy, reset_scene

bpy = import_bpy()
if bpy is None:
    pytest.skip("the bpy wheel is not installed", allow_module_level=True)

from conftest import FIXTURES

from lsmplify_blender.core.body_model import SMPL_JOINT_NAMES

FBX = FIXTURES / "09_11_cmu.fbx"  # a run: the body travels and turns
FRAMES = (1, 40, 83, 166)


@pytest.fixture(scope="module", autouse=True)
def addon():
    with addon_enabled("io_scene_fbx"):
        yield


@pytest.fixture(autouse=True)
def scene():
    return reset_scene()


def solve_rig(root_bone=False, to_children=False):
    """A new rig solved from the scene's source with the given rig options."""
    s = bpy.context.scene.lsmplify
    s.solver, s.new_rig = "ANALYTIC", True
    s.root_bone, s.bones_to_children = root_bone, to_children
    before = set(bpy.data.objects)
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    (rig,) = [o for o in set(bpy.data.objects) - before if o.type == "ARMATURE"]
    return rig


def deformations(arm, names=SMPL_JOINT_NAMES):
    """(J, 4, 4) each bone's world deformation (what skins the mesh): pose @ rest^-1, in world space."""
    mw = np.array(arm.matrix_world)
    return np.array(
        [
            mw
            @ np.array(arm.pose.bones[n].matrix)
            @ np.linalg.inv(np.array(arm.data.bones[n].matrix_local))
            for n in names
        ]
    )


def world_heads(arm, names=SMPL_JOINT_NAMES):
    mw = arm.matrix_world
    return np.array([tuple(mw @ arm.pose.bones[n].head) for n in names])


def assert_same_motion(a, b, scale, frames=FRAMES, mesh=True):
    sc = bpy.context.scene
    for f in frames:
        sc.frame_set(f)
        assert np.abs(world_heads(a) - world_heads(b)).max() / scale < 2e-5, f
        da, db = deformations(a), deformations(b)
        # the same rotations (times the object's Match Source scale)
        assert np.abs(da[:, :3, :3] - db[:, :3, :3]).max() / scale < 2e-5, f
        assert np.abs(da[:, :3, 3] - db[:, :3, 3]).max() / scale < 2e-5, f
        if mesh:
            va = evaluated_vertices_smpl(a.children[0])
            vb = evaluated_vertices_smpl(b.children[0])
            assert np.abs(va - vb).max() / scale < 2e-5, f


def export_npz(rig, path):
    bpy.context.view_layer.objects.active = rig
    assert bpy.ops.lsmplify.export_npz(filepath=str(path)) == {"FINISHED"}
    with np.load(path) as z:
        return {k: z[k] for k in ("poses", "trans", "betas")}


def reimported_fbx(rig, path, preset="BLENDER"):
    bpy.context.view_layer.objects.active = rig
    assert bpy.ops.lsmplify.export_fbx(filepath=str(path), preset=preset) == {"FINISHED"}
    before = set(bpy.data.objects)
    assert bpy.ops.import_scene.fbx(filepath=str(path), anim_offset=0.0) == {"FINISHED"}
    (arm,) = [o for o in set(bpy.data.objects) - before if o.type == "ARMATURE"]
    return arm


@pytest.fixture
def plain_and_source():
    assert bpy.ops.lsmplify.import_keypoints(filepath=str(FBX)) == {"FINISHED"}
    plain = solve_rig()
    return plain, plain.scale[0]


def test_root_bone_carries_ground_motion_and_heading_with_the_same_body_motion(
    plain_and_source, tmp_path
):
    plain, k = plain_and_source
    rooted = solve_rig(root_bone=True)
    bones = rooted.data.bones
    assert "root" in bones and bones["pelvis"].parent == bones["root"]
    assert "root" not in plain.data.bones
    assert_same_motion(plain, rooted, k)
    sc = bpy.context.scene
    travelled, turned = [], []
    for f in FRAMES:
        sc.frame_set(f)
        root = np.array(rooted.matrix_world @ rooted.pose.bones["root"].head)
        pelvis = np.array(rooted.matrix_world @ rooted.pose.bones["pelvis"].head)
        assert abs(root[2]) < 1e-6 * k  # on the ground (SMPL y = 0)
        assert np.abs(root[:2] - pelvis[:2]).max() < 1e-5 * k  # under the pelvis
        travelled.append(root[:2])
        # the root's front (SMPL +Z: the bone's local Z) against the pelvis's, on the ground
        fronts = []
        for b in ("root", "pelvis"):
            m = np.array(rooted.matrix_world @ rooted.pose.bones[b].matrix)[:3, :3]
            front = m[:, 2] * np.array([1, 1, 0])
            fronts.append(front / np.linalg.norm(front))
        turned.append(np.degrees(np.arccos(np.clip(fronts[0] @ fronts[1], -1, 1))))
    assert np.linalg.norm(travelled[-1] - travelled[0]) / k > 1.0  # the run covers metres
    assert max(turned) < 15.0, turned  # the root faces where the hips face
    # the .npz is SMPL's motion: the same as the plain rig's
    a, b = export_npz(plain, tmp_path / "plain.npz"), export_npz(rooted, tmp_path / "rooted.npz")
    for key in a:
        assert np.allclose(a[key], b[key], atol=2e-5), key
    # the FBX carries the root bone, and the body moves as the plain rig's FBX does
    back_plain = reimported_fbx(plain, tmp_path / "plain.fbx")
    back_root = reimported_fbx(rooted, tmp_path / "rooted.fbx")
    assert back_root.data.bones["pelvis"].parent.name == "root"
    assert_same_motion(back_plain, back_root, 1.0, mesh=False)
    sc.frame_set(83)
    ours = world_heads(rooted) / k  # the export is at real size
    assert np.abs(world_heads(back_root) - ours).max() < 1e-4


@pytest.mark.parametrize("root_bone", [False, True])
def test_bones_pointing_at_children_keep_the_exported_animation(
    plain_and_source, tmp_path, root_bone
):
    plain, k = plain_and_source
    skeleton = solve_rig(root_bone=root_bone, to_children=True)
    assert skeleton["lsmplify_bone_axes"] == "CHILDREN"
    bones = skeleton.data.bones
    for joint, child in (("left_knee", "left_ankle"), ("spine3", "neck"), ("pelvis", "spine1")):
        assert np.allclose(bones[joint].tail_local, bones[child].head_local, atol=1e-6)
    up = np.array(
        plain.data.bones["left_knee"].tail_local - plain.data.bones["left_knee"].head_local
    )
    assert np.allclose(up / np.linalg.norm(up), (0, 0, 1), atol=1e-6)  # the plain rig: up
    assert_same_motion(plain, skeleton, k)
    a, b = export_npz(plain, tmp_path / "plain.npz"), export_npz(skeleton, tmp_path / "sk.npz")
    for key in a:
        assert np.allclose(a[key], b[key], atol=2e-5), key
    back_plain = reimported_fbx(plain, tmp_path / "plain.fbx")
    back_skeleton = reimported_fbx(skeleton, tmp_path / "skeleton.fbx")
    assert_same_motion(back_plain, back_skeleton, 1.0, mesh=False)


def test_refine_and_a_second_solve_on_a_rooted_skeleton_rig_read_its_own_channels():
    assert bpy.ops.lsmplify.import_keypoints(filepath=str(FBX)) == {"FINISHED"}
    rig = solve_rig(root_bone=True, to_children=True)
    from lsmplify_blender.blender.keyframes import read_pose_action
    from lsmplify_blender.blender.solving import SolveJob

    s = bpy.context.scene.lsmplify
    job = SolveJob(bpy.context, lambda kind, msg: None)
    job.solve()
    rotmats, trans = read_pose_action(rig, 1, job.frames)  # SMPL's motion back from the channels
    assert np.abs(rotmats - job.solution.rotmats.numpy()).max() < 1e-4
    assert np.abs(trans - job.solution.trans.numpy()).max() < 1e-4
    bpy.context.view_layer.objects.active = rig
    s.refine_iters = 0
    assert bpy.ops.lsmplify.refine(method="OPTIMIZE", iterations=1) == {"FINISHED"}
    assert rig.animation_data.action.name.startswith("LSMPLify_refined")
