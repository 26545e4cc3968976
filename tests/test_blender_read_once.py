"""A keypoint file is read and prepared once on the way to a keyed rig (issue 15): Import
Keypoints reads it, Solve of that File source is served the same read and preparation, and a
file changed on disk (or other options) is read (prepared) again.
Real CMU take (fixtures/CREDITS.md), the real bpy wheel."""

import os
import shutil

import numpy as np
import pytest
from blender_env import addon_enabled, import_bpy, reset_scene

bpy = import_bpy()
if bpy is None:
    pytest.skip("the bpy wheel is not installed", allow_module_level=True)

from conftest import FIXTURES

from lsmplify_blender.core import formats

BVH = FIXTURES / "131_01_short.bvh"


@pytest.fixture(scope="module", autouse=True)
def addon():
    with addon_enabled():
        yield


@pytest.fixture
def counted_reads(monkeypatch):
    """The paths the core's reader is called with (the cache starts empty)."""
    from lsmplify_blender.blender import sources

    sources.clear_read_cache()
    calls = []
    real = formats.read_keypoints

    def counting(path, asf=None):
        calls.append(str(path))
        return real(path, asf=asf)

    monkeypatch.setattr(formats, "read_keypoints", counting)
    yield calls
    sources.clear_read_cache()


def bvh_frames(src, frames: int, dest):
    """``src`` with only its first ``frames`` motion lines, written to ``dest``."""
    lines = src.read_text().splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.strip().startswith("Frames:"))
    dest.write_text("\n".join(lines[:i] + [f"Frames: {frames}"] + lines[i + 1 : i + 2 + frames]))


def solve(path):
    assert bpy.ops.lsmplify.import_keypoints(filepath=str(path), create_empties=False) == {
        "FINISHED"
    }
    sc = bpy.context.scene
    sc.lsmplify.solver = "ANALYTIC"
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    return sc


def test_import_then_solve_reads_the_file_once_and_keys_the_same_motion(counted_reads, tmp_path):
    from lsmplify_blender.blender import sources
    from lsmplify_blender.blender.keyframes import read_pose_action

    path = tmp_path / "take.bvh"
    bvh_frames(BVH, 30, path)
    reset_scene()
    sc = solve(path)
    assert counted_reads == [str(path)]  # the import's read, none by the solve
    assert sc.lsmplify.detected_frames == "30"
    rig = next(o for o in bpy.data.objects if o.get("lsmplify_rig"))
    cached = read_pose_action(rig, sc.frame_start, sc.frame_end)

    # the same solve with the solve's own read from the disk (as before the cache) keys the same
    reset_scene()
    assert bpy.ops.lsmplify.import_keypoints(filepath=str(path), create_empties=False) == {
        "FINISHED"
    }
    sources.clear_read_cache()
    sc = bpy.context.scene
    sc.lsmplify.solver = "ANALYTIC"
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    assert counted_reads == [str(path)] * 2  # the second import was served, the solve read
    rig = next(o for o in bpy.data.objects if o.get("lsmplify_rig"))
    fresh = read_pose_action(rig, sc.frame_start, sc.frame_end)
    for a, b in zip(cached, fresh, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_file_changed_on_disk_is_read_again(counted_reads, tmp_path):
    path = tmp_path / "take.bvh"
    bvh_frames(BVH, 30, path)
    reset_scene()
    sc = solve(path)
    assert len(counted_reads) == 1 and sc.lsmplify.detected_frames == "30"

    bvh_frames(BVH, 24, path)  # the take re-exported shorter: another size
    assert sc.lsmplify.source_type == "FILE"
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    assert len(counted_reads) == 2 and sc.lsmplify.detected_frames == "24"

    # the same size but a new modification time (a file rewritten in place)
    stamp = os.stat(path).st_mtime_ns
    shutil.copyfile(path, tmp_path / "copy.bvh")
    os.utime(path, ns=(stamp + 5_000_000_000, stamp + 5_000_000_000))
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    assert len(counted_reads) == 3
    # unchanged since: served from the cache again
    assert bpy.ops.lsmplify.solve() == {"FINISHED"}
    assert len(counted_reads) == 3


def test_a_served_read_is_a_copy_the_joint_map_cannot_change(counted_reads, tmp_path):
    from lsmplify_blender.blender.sources import read_keypoint_file

    first = read_keypoint_file(str(BVH))
    first.names[0] = "renamed"
    first.notes.append("added by a caller")
    again = read_keypoint_file(str(BVH))
    assert len(counted_reads) == 1
    assert again.names[0] != "renamed" and "added by a caller" not in again.notes


def test_other_options_prepare_the_served_read_again(counted_reads, monkeypatch):
    from lsmplify_blender.blender import model_cache, sources
    from lsmplify_blender.core import prepare

    model = model_cache.get_model(bpy.context)
    prepares = []
    real = prepare.prepare
    monkeypatch.setattr(prepare, "prepare", lambda *a, **k: prepares.append(k) or real(*a, **k))
    args = (str(BVH), model, "AUTO", "AUTO", "AUTO", 0.0, "", {})
    first = sources.prepared_file(*args)
    again = sources.prepared_file(*args)
    assert len(counted_reads) == 1 and len(prepares) == 1
    assert again is not first and again.notes == first.notes
    again.notes.append("a caller's note")
    assert "a caller's note" not in sources.prepared_file(*args).notes
    cm = sources.prepared_file(str(BVH), model, "AUTO", "cm", "AUTO", 0.0, "", {})
    assert len(counted_reads) == 1 and len(prepares) == 2  # the same read, prepared again
    assert cm.units == "cm" and first.units == "cmu"
