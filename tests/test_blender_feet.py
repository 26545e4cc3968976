"""Foot contacts and the ground in Blender (issue 10) through the operators, on a real CMU run
(fixtures/09_11_cmu.fbx, see fixtures/CREDITS.md): the contacts become animated custom properties
of the rig, Lock Feet reaches the core, the ground is shown as a plane under the motion, the
.npz carries both, and a ground the core refuses leaves the scene as it was."""

import numpy as np
import pytest
from blender_env import addon_enabled, fcurve_keys, import_bpy, reset_scene

bpy = import_bpy()
if bpy is None:
    pytest.skip("the bpy wheel is not installed", allow_module_level=True)

from conftest import FIXTURES

FBX = FIXTURES / "09_11_cmu.fbx"


@pytest.fixture(scope="module", autouse=True)
def addon():
    with addon_enabled("io_scene_fbx"):
        yield


@pytest.fixture(autouse=True)
def scene():
    reset_scene()
    assert bpy.ops.lsmplify.import_keypoints(filepath=str(FBX)) == {"FINISHED"}
    s = bpy.context.scene.lsmplify
    s.solver, s.new_rig = "ANALYTIC", True
    return bpy.context.scene


def solve_rig(**options):
    s = bpy.context.scene.lsmplify
    for k, v in options.items():
        setattr(s, k, v)
    before = set(bpy.data.objects)
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    (rig,) = [o for o in set(bpy.data.objects) - before if o.type == "ARMATURE"]
    return rig


def contact_keys(rig):
    from lsmplify_blender.blender.ground import CONTACT_PROPS

    anim = rig.animation_data
    keys = fcurve_keys(anim.action, getattr(anim, "action_slot", None))
    return np.stack([keys[(f'["{p}"]', 0)][:, 1] for p in CONTACT_PROPS], -1)


def ankle_speed_in_contact(rig, contacts):
    """Mean world speed (m per frame, real size) of each ankle over its contact frames."""
    sc, k = bpy.context.scene, rig.scale[0]
    pos = []
    for f in range(sc.frame_start, sc.frame_start + len(contacts)):
        sc.frame_set(f)
        pos.append(
            [
                tuple(rig.matrix_world @ rig.pose.bones[b].head)
                for b in ("left_ankle", "right_ankle")
            ]
        )
    speed = np.linalg.norm(np.diff(np.array(pos), axis=0), axis=-1) / k  # (T-1, 2)
    both = contacts[1:] & contacts[:-1]
    return [float(speed[both[:, i], i].mean()) for i in (0, 1)]


def test_contacts_are_animated_properties_and_the_ground_is_shown(tmp_path):
    from lsmplify_blender.blender.ground import CONTACT_PROPS, GROUND_HEIGHT_PROP, ground_plane

    s = bpy.context.scene.lsmplify
    assert s.lock_feet == "AUTO" and s.ground_from_source
    rig = solve_rig()
    keys = contact_keys(rig).astype(bool)
    assert keys.shape == (166, 2) and keys.any(0).all() and (~keys).any(0).all()  # a run: both
    anim = rig.animation_data
    from lsmplify_blender.blender.keyframes import action_fcurves

    fcs = {fc.data_path: fc for fc in action_fcurves(anim.action, anim.action_slot)}
    assert {kp.interpolation for kp in fcs[f'["{CONTACT_PROPS[0]}"]'].keyframe_points} == {
        "CONSTANT"
    }
    assert "left foot" in rig.id_properties_ui(CONTACT_PROPS[0]).as_dict()["description"]
    assert "(planted)" in s.result_feet and "left" in s.result_feet
    # the ground plane follows the rig (Match Source scale) at the solve's ground height
    plane = ground_plane(rig)
    assert plane is not None and plane not in rig.children  # FBX exports of the rig leave it out
    height = rig[GROUND_HEIGHT_PROP]
    bpy.context.view_layer.update()
    z = [(plane.matrix_world @ v.co).z for v in plane.data.vertices]
    assert np.allclose(z, height * rig.scale[0], atol=1e-4)
    # the feet stand on it: the lowest ankle over the take a few cm above
    sc = bpy.context.scene
    lows = []
    for f in range(1, 167, 5):
        sc.frame_set(f)
        lows.append(
            min(
                (rig.matrix_world @ rig.pose.bones[b].head).z for b in ("left_ankle", "right_ankle")
            )
        )
    assert 0.02 < (min(lows) / rig.scale[0] - height) < 0.15
    # the .npz has the contacts and the ground, as the command line writes them
    bpy.context.view_layer.objects.active = rig
    out = tmp_path / "run.npz"
    assert bpy.ops.lsmplify.export_npz(filepath=str(out)) == {"FINISHED"}
    with np.load(out) as z:
        assert z["contacts"].dtype == bool and (z["contacts"] == keys).all()
        assert float(z["ground_height"]) == pytest.approx(height, abs=1e-6)


def test_lock_feet_plants_the_feet_and_off_leaves_the_motion():
    locked = solve_rig(lock_feet="ON")
    free = solve_rig(lock_feet="OFF")
    s = bpy.context.scene.lsmplify
    assert "(planted)" not in s.result_feet  # off: contacts and ground found, nothing planted
    contacts = contact_keys(locked).astype(bool)
    assert (contact_keys(free).astype(bool) == contacts).all()  # the source's, either way
    planted, sliding = (
        ankle_speed_in_contact(locked, contacts),
        ankle_speed_in_contact(free, contacts),
    )
    print(f"ankle speed in contact, m/frame: locked {planted}, off {sliding}")
    assert all(p < q for p, q in zip(planted, sliding, strict=True))


def test_a_given_ground_height_reaches_the_core_in_metres_and_a_wrong_one_changes_nothing():
    from lsmplify_blender.blender.ground import GROUND_HEIGHT_PROP

    k = 1 / 0.05644  # the rig's Match Source scale for this CMU-unit armature
    rig = solve_rig(ground_from_source=False, ground_height=0.05 * k)  # 5 cm in scene units
    assert rig[GROUND_HEIGHT_PROP] == pytest.approx(0.05, abs=1e-4)
    before = {c: set(getattr(bpy.data, c)) for c in ("objects", "actions", "meshes")}
    s = bpy.context.scene.lsmplify
    s.ground_height = 500.0 * k  # 500 m: the core refuses it
    with pytest.raises(RuntimeError) as err:
        bpy.ops.lsmplify.solve()
    assert "Ground Height in the LSMPLify panel" in str(err.value) and "--" not in str(err.value)
    assert {c: set(getattr(bpy.data, c)) for c in before} == before


def test_refine_keeps_the_contacts_on_its_new_action():
    rig = solve_rig()
    contacts = contact_keys(rig)
    bpy.context.view_layer.objects.active = rig
    first = rig.animation_data.action
    assert bpy.ops.lsmplify.refine(method="OPTIMIZE", iterations=1) == {"FINISHED"}
    assert rig.animation_data.action != first
    assert (contact_keys(rig) == contacts).all()


def test_refine_plants_the_feet_by_the_panels_lock_feet():
    """Refine ends the feet as a solve does, by the panel's Lock Feet: a rig solved with the feet
    free and refined with Lock Feet on has its ankles as still in contact as a locked solve's;
    refined with it off, they slide as before."""
    locked_rig = solve_rig(lock_feet="ON")
    locked = ankle_speed_in_contact(locked_rig, contact_keys(locked_rig).astype(bool))
    free = solve_rig(lock_feet="OFF")
    contacts = contact_keys(free).astype(bool)
    sliding = ankle_speed_in_contact(free, contacts)
    bpy.context.view_layer.objects.active = free
    s = bpy.context.scene.lsmplify
    speeds = {}
    for mode in ("OFF", "ON"):
        s.lock_feet = mode
        assert bpy.ops.lsmplify.refine(method="OPTIMIZE", iterations=1) == {"FINISHED"}
        assert (contact_keys(free).astype(bool) == contacts).all()
        speeds[mode] = ankle_speed_in_contact(free, contacts)
    print(
        f"ankle speed in contact, m/frame: solved locked {locked}, free {sliding}; refined {speeds}"
    )
    assert speeds["OFF"] == pytest.approx(sliding, rel=0.05)
    assert speeds["ON"] == pytest.approx(locked, rel=0.05)
    assert all(p < q for p, q in zip(speeds["ON"], speeds["OFF"], strict=True))


def test_import_smpl_brings_the_contacts_and_the_ground_back(tmp_path):
    from lsmplify_blender.blender.ground import GROUND_HEIGHT_PROP, ground_plane

    rig = solve_rig()
    bpy.context.view_layer.objects.active = rig
    out = tmp_path / "run.npz"
    assert bpy.ops.lsmplify.export_npz(filepath=str(out)) == {"FINISHED"}
    before = set(bpy.data.objects)
    assert bpy.ops.lsmplify.import_smpl_npz(filepath=str(out)) == {"FINISHED"}
    (back,) = [o for o in set(bpy.data.objects) - before if o.type == "ARMATURE"]
    assert (contact_keys(back) == contact_keys(rig)).all()
    assert back[GROUND_HEIGHT_PROP] == pytest.approx(rig[GROUND_HEIGHT_PROP], abs=1e-6)
    assert ground_plane(back) is not None and ground_plane(back) in set(bpy.data.objects) - before
