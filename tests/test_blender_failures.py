"""Failed operators leave the scene exactly as it was (issue 12, Blender side).

Each test takes the data-block lists, the scene's timing and every LSMPLify scene setting
before an operator that must fail, runs it through ``bpy.ops`` (as a button does) and
compares afterwards. The broken inputs are copies of the real CMU fixtures with one field
spoiled, or model files made from the project's own open model.
"""

import dataclasses
import pickle
import re

import numpy as np
import pytest
from blender_env import ADDON, addon_enabled, import_bpy, reset_scene

bpy = import_bpy()
if bpy is None:
    pytest.skip("the bpy wheel is not installed", allow_module_level=True)

from conftest import FIXTURES

from lsmplify_blender.blender import model_cache, preferences, scene_writing
from lsmplify_blender.core.body_model import load_model_data
from lsmplify_blender.core.errors import LSMPLifyError
from lsmplify_blender.core.formats.amass import write_smpl_npz

BVH = FIXTURES / "131_01_short.bvh"
BVH2 = FIXTURES / "01_01_short.bvh"


@pytest.fixture(scope="module", autouse=True)
def addon():
    with addon_enabled():
        yield


@pytest.fixture(autouse=True)
def scene():
    return reset_scene()


def state():
    """Everything a failed import could leave behind or change."""
    d, sc = bpy.data, bpy.context.scene
    blocks = {
        k: sorted(x.name for x in getattr(d, k))
        for k in ("objects", "actions", "meshes", "armatures", "collections", "cameras")
    }
    timing = (sc.frame_start, sc.frame_end, sc.frame_current, sc.render.fps, sc.render.fps_base)
    return blocks, timing, scene_writing.settings_values(sc.lsmplify)


def with_previous_import():
    """A scene that already has a File source, its empties and its own timing."""
    assert bpy.ops.lsmplify.import_keypoints(filepath=str(BVH2)) == {"FINISHED"}
    sc = bpy.context.scene
    sc.frame_set(7)
    assert sc.lsmplify.filepath == str(BVH2) and sc.lsmplify.empties_collection is not None


def spoiled_bvh(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_bvh_with_a_tiny_frame_time_leaves_the_scene_as_it_was(tmp_path):
    with_previous_import()
    bad = spoiled_bvh(
        tmp_path,
        "tiny_frame_time.bvh",
        re.sub(r"Frame Time:.*", "Frame Time: 1e-300", BVH.read_text(encoding="utf-8")),
    )
    before = state()
    # refused by the reader or, where a reader lets it through, before the scene is touched
    with pytest.raises(RuntimeError, match=r"tiny_frame_time\.bvh: .*1e\+300 fps"):
        bpy.ops.lsmplify.import_keypoints(filepath=str(bad), create_empties=True)
    assert state() == before


def test_a_frame_rate_blender_cannot_play_is_refused_before_the_scene_changes():
    from lsmplify_blender.blender.scene_writing import check_frame_rate

    for fps in (1e300, float("inf"), float("nan"), 0.0, -5.0, 40000.0):
        with pytest.raises(LSMPLifyError, match=r"is not usable .*Set FPS"):
            check_frame_rate(fps, "take.bvh", "Set FPS in the Import Keypoints options.")
    assert check_frame_rate(119.88, "take.bvh", "") == 119.88


def test_truncated_bvh_leaves_the_scene_as_it_was(tmp_path):
    with_previous_import()
    text = BVH.read_text(encoding="utf-8")
    bad = spoiled_bvh(tmp_path, "truncated.bvh", text[: len(text) * 2 // 3])
    before = state()
    with pytest.raises(RuntimeError, match="truncated"):
        bpy.ops.lsmplify.import_keypoints(filepath=str(bad))
    assert state() == before


def test_a_step_failing_after_the_empties_were_made_removes_them(monkeypatch):
    with_previous_import()
    before = state()

    def full(*a, **k):
        raise RuntimeError("the scene refused its new frame range")

    monkeypatch.setattr(scene_writing, "set_scene_timing", full)
    with pytest.raises(RuntimeError, match=r"internal error.*refused its new frame range"):
        bpy.ops.lsmplify.import_keypoints(filepath=str(BVH))
    assert state() == before


@pytest.mark.parametrize("spoil", ["inf_fps", "nan_fps", "zero_fps", "nan_poses", "nan_betas"])
def test_import_smpl_with_unusable_values_leaves_nothing(tmp_path, spoil):
    with_previous_import()
    poses = np.random.default_rng(0).normal(size=(5, 72)) * 0.2
    betas, fps = np.zeros(10), 30.0
    if spoil == "nan_poses":
        poses[2, 7] = np.nan
    if spoil == "nan_betas":
        betas[3] = np.nan
    fps = {"inf_fps": np.inf, "nan_fps": np.nan, "zero_fps": 0.0}.get(spoil, fps)
    path = tmp_path / f"{spoil}.npz"  # written as a damaged file would be (our writer refuses NaN)
    np.savez(
        path,
        poses=poses.astype(np.float32),
        betas=betas.astype(np.float32),
        trans=np.zeros((5, 3), np.float32),
        mocap_framerate=np.float32(fps),
        gender=np.array("neutral"),
        up=np.array("y"),
    )
    before = state()
    # whichever check refuses it (the reader's or the importer's), it names what is wrong
    expected = {
        "nan_poses": r"poses.*(NaN|non-finite)|(NaN|non-finite).*poses",
        "nan_betas": r"betas.*NaN|NaN.*betas",
    }.get(spoil, rf"{spoil}\.npz: .*mocap_framerate")
    with pytest.raises(RuntimeError, match=expected):
        bpy.ops.lsmplify.import_smpl_npz(filepath=str(path))
    assert state() == before


def test_setting_a_hostile_model_file_loads_nothing_and_is_reported(tmp_path, monkeypatch):
    class Exploit:
        def __reduce__(self):
            import os

            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    evil = tmp_path / "SMPL_EVIL.pkl"
    evil.write_bytes(pickle.dumps({"v_template": Exploit()}))
    prefs = bpy.context.preferences.addons[ADDON].preferences
    import lsmplify_blender.core.body_model as body_model

    calls = []
    real = body_model.load_model_data
    monkeypatch.setattr(
        body_model, "load_model_data", lambda *a, **k: calls.append(a) or real(*a, **k)
    )
    try:
        prefs.model_path = str(evil)  # the update callback: no load at all
        assert calls == [] and preferences.checked_model_status(prefs.model_path) is None
        with pytest.raises(RuntimeError, match=r"Refused to load posix\.system"):
            bpy.ops.lsmplify.check_model()
        assert len(calls) == 1 and "Refused" in preferences.checked_model_status(prefs.model_path)
        before = state()
        with pytest.raises(
            RuntimeError, match=r"Body Model set in the add-on preferences.*Refused to load"
        ):
            bpy.ops.lsmplify.import_keypoints(filepath=str(BVH))
        assert state() == before and len(calls) == 1  # validated once per path
        assert not (tmp_path / "pwned").exists()
    finally:
        prefs.model_path = ""
        model_cache.clear_model_cache()


def test_a_model_with_nan_values_builds_no_rig(tmp_path):
    d = load_model_data()
    v = d.v_template.copy()
    v[10, 1] = np.nan
    bad = tmp_path / "SMPL_NAN.npz"
    np.savez(
        bad,
        v_template=v,
        shapedirs=d.shapedirs,
        J_regressor=d.J_regressor,
        weights=d.weights,
        kintree_table=np.stack([d.parents, np.arange(24)]).astype(np.int64),
        f=d.faces,
    )
    motion = write_smpl_npz(
        tmp_path / "m.npz", np.zeros((3, 72)), np.zeros(10), np.zeros((3, 3)), 30.0
    )
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.model_path = str(bad)
    try:
        before = state()
        with pytest.raises(RuntimeError, match=r"v_template.*NaN"):
            bpy.ops.lsmplify.import_smpl_npz(filepath=str(motion))
        assert state() == before
    finally:
        prefs.model_path = ""
        model_cache.clear_model_cache()
    # the writer's own check, whatever a loader lets through: no mesh with NaN vertices is built
    import torch

    class NanModel:
        data = dataclasses.replace(
            d,
            shapedirs=np.where(
                np.arange(d.shapedirs.size).reshape(d.shapedirs.shape) == 5, np.inf, d.shapedirs
            ),
        )

    before = state()
    with pytest.raises(
        LSMPLifyError, match="NaN, infinite or far-off values \\(shapedirs\\); no rig was built"
    ):
        scene_writing.write_motion(
            bpy.context,
            NanModel,
            torch.eye(3).expand(2, 24, 3, 3),
            np.zeros((2, 3)),
            np.ones(10),
            1,
        )
    assert state() == before

    class HugeModel:  # finite, but a shape direction of 1e30 m: a mesh no float32 can hold
        data = dataclasses.replace(d, shapedirs=d.shapedirs * 1e30)

    with pytest.raises(LSMPLifyError, match="far-off values \\(shaped vertices, joints\\)"):
        scene_writing.write_motion(
            bpy.context,
            HugeModel,
            torch.eye(3).expand(2, 24, 3, 3),
            np.zeros((2, 3)),
            np.ones(10),
            1,
        )
    assert state() == before


def test_a_failed_solve_leaves_the_settings_as_they_were(monkeypatch):
    with_previous_import()
    s = bpy.context.scene.lsmplify
    s.solver = "ANALYTIC"
    s.detected_layout, s.detected_frames = "shown before", "7"  # what the panel showed
    s.filepath = str(BVH)  # another take: reading it detects other figures
    before = state()
    from lsmplify_blender.blender import keyframes

    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(keyframes, "write_pose_action", boom)
    with pytest.raises(RuntimeError, match=r"internal error.*disk on fire"):
        bpy.ops.lsmplify.solve()
    assert state() == before and s.detected_layout == "shown before"
