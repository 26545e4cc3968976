"""Batch Convert in headless Blender (bpy wheel): a folder of real takes to .npz and FBX,
the scene left as it was, failures in the summary, cancel, resume."""

import csv
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from blender_env import addon_enabled, import_bpy, reset_scene

bpy = import_bpy()
if bpy is None:
    pytest.skip("the bpy wheel is not installed", allow_module_level=True)

from conftest import FIXTURES


@pytest.fixture(scope="module", autouse=True)
def addon():
    with addon_enabled("io_scene_fbx"):
        yield


@pytest.fixture(autouse=True)
def scene():
    sc = reset_scene()
    sc.lsmplify.solver = "ANALYTIC"
    return sc


def snapshot():
    d = bpy.data
    return {
        k: sorted(x.name for x in getattr(d, k))
        for k in ("objects", "actions", "meshes", "armatures")
    }


def takes_folder(root: Path, copies: int = 1) -> Path:
    (root / "sub").mkdir(parents=True)
    shutil.copy(FIXTURES / "131_01_short.bvh", root / "131_01.bvh")
    shutil.copy(FIXTURES / "01_01_short.amc", root / "sub" / "01_01.amc")
    shutil.copy(FIXTURES / "01.asf", root / "sub" / "01.asf")
    for i in range(copies - 1):
        shutil.copy(FIXTURES / "01_01_short.bvh", root / f"copy_{i}.bvh")
    (root / "damaged.bvh").write_bytes((FIXTURES / "01_01_short.bvh").read_bytes()[:2500])
    return root


def summary_rows(out: Path) -> dict:
    with open(out / "summary.csv", newline="") as f:
        return {Path(r["input"]).name: r for r in csv.DictReader(f)}


def test_batch_convert_writes_npz_and_fbx_and_leaves_the_scene(tmp_path, scene):
    src, out = takes_folder(tmp_path / "takes"), tmp_path / "out"
    scene.frame_start, scene.frame_end, scene.render.fps = 7, 42, 25
    before = snapshot()
    assert bpy.ops.lsmplify.batch_convert(
        input_dir=str(src), output_dir=str(out), export_fbx=True, fbx_preset="BLENDER"
    ) == {"FINISHED"}
    assert snapshot() == before and (scene.frame_start, scene.frame_end, scene.render.fps) == (
        7,
        42,
        25,
    )
    rows = summary_rows(out)
    assert {n: r["status"] for n, r in rows.items()} == {
        "131_01.bvh": "ok",
        "01_01.amc": "ok",
        "damaged.bvh": "failed",
    }
    assert "damaged.bvh" in rows["damaged.bvh"]["error"]
    for name, rel, frames in (
        ("131_01.bvh", "131_01.bvh", 200),
        ("01_01.amc", "sub/01_01.amc", 199),
    ):
        z = np.load(out / f"{rel}.npz")
        assert z["poses"].shape == (frames, 72) and int(rows[name]["frames"]) == frames
        assert (out / f"{rel}.fbx").stat().st_size > 100_000
    assert not (out / "damaged.bvh.fbx").exists() and not list(out.rglob("*partial*"))

    # the FBX is the take: re-imported, 24 bones moving over the take's frames
    names = set(bpy.data.objects.keys())
    assert bpy.ops.import_scene.fbx(filepath=str(out / "131_01.bvh.fbx"), anim_offset=0.0) == {
        "FINISHED"
    }
    arm = next(
        bpy.data.objects[n]
        for n in set(bpy.data.objects.keys()) - names
        if bpy.data.objects[n].type == "ARMATURE"
    )
    assert len(arm.data.bones) == 24
    act = arm.animation_data.action
    assert act.frame_range[1] - act.frame_range[0] + 1 >= 199

    # again: nothing to do (up to date), nothing changes
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.fbx")}
    assert bpy.ops.lsmplify.batch_convert(
        input_dir=str(src), output_dir=str(out), export_fbx=True
    ) == {"FINISHED"}
    assert summary_rows(out)["131_01.bvh"]["status"] == "skipped"
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.fbx")} == stamps


def test_batch_convert_bad_folders_are_reported(tmp_path):
    with pytest.raises(RuntimeError, match="not a folder"):
        bpy.ops.lsmplify.batch_convert(
            input_dir=str(tmp_path / "nope"), output_dir=str(tmp_path / "out")
        )
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuntimeError, match="No takes found"):
        bpy.ops.lsmplify.batch_convert(
            input_dir=str(tmp_path / "empty"), output_dir=str(tmp_path / "out")
        )


def test_cancel_in_the_background_job_keeps_finished_takes(tmp_path):
    from lsmplify_blender.blender.batch import BatchJob

    src, out = takes_folder(tmp_path / "takes", copies=4), tmp_path / "out"
    job = BatchJob(bpy.context, str(src), str(out))
    before = snapshot()
    worker = threading.Thread(target=job.work)
    worker.start()
    first = job.done.get(timeout=120)  # the first finished take, then Esc
    job.cancel.set()
    worker.join(timeout=120)
    job.drain(bpy.context)
    totals = job.finish(cancelled=True)
    assert first.status in ("ok", "failed") and snapshot() == before
    rows = summary_rows(out)
    cancelled = [r for r in rows.values() if "cancelled" in r["reason"]]
    assert cancelled and totals["ok"] + totals["failed"] + len(cancelled) == len(rows) == 6
    for r in rows.values():  # every take that says ok has its complete output; none other has one
        assert Path(r["output"]).is_file() == (r["status"] == "ok"), r
