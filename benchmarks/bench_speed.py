"""Every speed target of issue 15 in one run, each beside its target (printed, not asserted).

    .venv/bin/python benchmarks/bench_speed.py [--repeats 3] [--no-blender] [--no-convert]

- whole solve (``core.solver.solve``, what the CLI and the panel call) in frames/s on one thread,
  network (real-capture features on: landmarks rebased on the joints, leaves from analytic IK,
  the anatomical guard, automatic denoising; the file's rotations ignored so the network runs)
  and analytic, at 10,000 and 100 frames of CMU 131_01.bvh (994 frames, played again to fill),
  best of ``--repeats`` after a warm-up;
- a 60-frame ``convert`` (a fresh ``python -m lsmplify_blender`` process), beside the bare
  ``import torch`` of a fresh process (the floor under it);
- inside Blender (the bpy module, in its own process): file to keyed rig with mesh for 1,000
  frames through the operators (read + prepare, rig build, keyframes; the solve excluded and
  printed beside it), and the FBX export of a 10,000-frame action (``fbx_export.export_rig_fbx``);

Every figure is the CPU time of the process that did the work (``time.process_time``; a child's
from ``getrusage``), with the wall clock beside it: on a shared machine the wall clock also
counts the time other processes hold the cores (the load average is printed first).
- the peers (keypoints2body, smplfitter) with their exact versions where installed.

Ratio: measured / target for rates, target / measured for times (>= 1 meets the target).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

MOCAP = Path(os.environ.get("LSMPLIFY_DATA") or ROOT.parent / "shared" / "data" / "mocap")
TAKE = MOCAP / "cmu_raw" / "131_01.bvh"
DEMO = ROOT / "lsmplify_blender" / "core" / "data" / "demo" / "cmu_131_01.bvh"
PEERS = ("keypoints2body", "smplfitter")

# (name, target, unit, higher is better)
TARGETS = {
    "network_10k": (25_000, "frames/s", True),
    "network_100": (10_000, "frames/s", True),
    "analytic_10k": (100_000, "frames/s", True),
    "convert_60": (0.9, "s", False),
    "fbx_10k": (3.0, "s", False),
    "blender_rig_1k": (0.25, "s", False),
}


def take_path() -> Path:
    return TAKE if TAKE.is_file() else DEMO


def tiled(prepared, frames: int):
    """The prepared take played again to ``frames`` frames (every per-frame array alike)."""
    import numpy as np

    reps = -(-frames // prepared.num_frames)

    def tile(a):
        return np.concatenate([a] * reps)[:frames]

    return dataclasses.replace(
        prepared,
        positions=tile(prepared.positions),
        weight=tile(prepared.weight),
        measured=tile(prepared.measured),
        interpolated=tile(prepared.interpolated),
        frames=None,
        rotations=None,
    )


def bench_solves(repeats: int) -> dict:
    """frames/s of whole solves, wall and CPU, best of ``repeats``."""
    import torch

    from lsmplify_blender.core.body_model import BodyModel, load_model_data
    from lsmplify_blender.core.formats import read_keypoints
    from lsmplify_blender.core.prepare import prepare
    from lsmplify_blender.core.solver import solve

    torch.set_num_threads(1)
    model = BodyModel(load_model_data(None))
    take = prepare(read_keypoints(take_path()), model)
    out = {}
    for solver, frames in (("network", 10_000), ("network", 100), ("analytic", 10_000)):
        prepared = tiled(take, frames)
        solve(prepared, model, solver=solver, rotations="ignore")  # warm-up
        wall, cpu = [], []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            sol = solve(prepared, model, solver=solver, rotations="ignore")
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        key = f"{solver}_{frames // 1000}k" if frames >= 1000 else f"{solver}_{frames}"
        out[key] = {
            "frames": frames,
            "wall_fps": frames / min(wall),
            "cpu_fps": frames / min(cpu),
            "solver": sol.solver,
        }
    return out


def bench_convert(repeats: int) -> dict:
    """Wall seconds of a 60-frame convert in a fresh process, and of a bare torch import."""
    from bench_blender_pipeline import truncated_bvh

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        src = truncated_bvh(DEMO, 60, Path(tmp))
        cmd = [sys.executable, "-m", "lsmplify_blender", "convert", str(src), "--out"]
        conv, imp, conv_cpu, imp_cpu = [], [], [], []
        for k in range(repeats):
            for argv, wall, cpu in (
                (cmd + [str(Path(tmp) / f"out{k}.npz"), "--quiet"], conv, conv_cpu),
                ([sys.executable, "-c", "import torch"], imp, imp_cpu),
            ):
                c0, t0 = _children_cpu(), time.perf_counter()
                subprocess.run(argv, env=env, check=True, capture_output=True)
                wall.append(time.perf_counter() - t0)
                cpu.append(_children_cpu() - c0)
    return {
        "convert_60": {
            "wall_s": min(conv),
            "cpu_s": min(conv_cpu),
            "import_torch_s": min(imp),
            "import_torch_cpu_s": min(imp_cpu),
        }
    }


def _children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes so far."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def bench_blender() -> dict:
    """Run the Blender part in its own process (bpy and one-thread solves kept apart)."""
    proc = subprocess.run(
        [sys.executable, __file__, "--blender-part"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": " | ".join(tail) or f"exit status {proc.returncode}"}


def blender_part(frames: int = 1000, fbx_frames: int = 10_000) -> dict:
    """Inside Blender: file -> keyed rig through the operators, then the FBX export."""
    import numpy as np
    from bench_blender_pipeline import truncated_bvh
    from blender_env import import_bpy, reset_scene

    bpy = import_bpy()
    if bpy is None:
        return {"error": "bpy is not installed"}
    import addon_utils

    from lsmplify_blender.blender import fbx_export, keyframes, rig, solving

    reset_scene()
    addon_utils.enable("lsmplify_blender", default_set=True)
    addon_utils.enable("io_scene_fbx", default_set=True)
    timers = {"solve": 0.0, "rig_build": 0.0, "keyframes": 0.0}
    timers_cpu = dict(timers)

    def timed(key, fn):
        def wrapper(*a, **k):
            t, c = time.perf_counter(), time.process_time()
            try:
                return fn(*a, **k)
            finally:
                timers[key] += time.perf_counter() - t
                timers_cpu[key] += time.process_time() - c

        return wrapper

    # the operators look these up at call time, so wrapping the module attributes times them
    write_action = keyframes.write_pose_action
    rig.build_smpl_rig = timed("rig_build", rig.build_smpl_rig)
    keyframes.write_pose_action = timed("keyframes", write_action)
    solving.run_solve = timed("solve", solving.run_solve)
    with tempfile.TemporaryDirectory() as tmp:
        src = truncated_bvh(take_path(), frames, Path(tmp))
        t0, c0 = time.perf_counter(), time.process_time()
        bpy.ops.lsmplify.import_keypoints(filepath=str(src), create_empties=False)
        sc = bpy.context.scene
        sc.frame_end = sc.frame_start + frames - 1
        sc.lsmplify.solver = "ANALYTIC"
        bpy.ops.lsmplify.solve()
        total, total_cpu = time.perf_counter() - t0, time.process_time() - c0
        arm = next(o for o in bpy.data.objects if o.type == "ARMATURE" and o.get("lsmplify_rig"))
        # a 10,000-frame action on the same rig: smooth joint angles (what is keyed does not
        # change the exporter's work per frame)
        t = np.arange(fbx_frames)[:, None, None] / 30.0
        aa = 0.3 * np.sin(t * np.linspace(0.5, 2.0, 72).reshape(1, 24, 3))
        from lsmplify_blender.core.rotations import axis_angle_to_matrix

        rot = axis_angle_to_matrix(aa.astype(np.float64))
        write_action(arm, rot, np.zeros((fbx_frames, 3)), frame_start=1)  # (not timed)
        sc.frame_start, sc.frame_end = 1, fbx_frames
        path = str(Path(tmp) / "bench.fbx")
        t0, c0 = time.perf_counter(), time.process_time()
        fbx_export.export_rig_fbx(bpy.context, arm, path, "UNITY")
        fbx_s, fbx_cpu = time.perf_counter() - t0, time.process_time() - c0
        size = os.path.getsize(path)
    return {
        "blender": bpy.app.version_string,
        "blender_rig_1k": {
            "frames": frames,
            "wall_s": total - timers["solve"],
            "read_prepare_s": total - sum(timers.values()),
            "rig_build_s": timers["rig_build"],
            "keyframes_s": timers["keyframes"],
            "solve_s": timers["solve"],
            "with_solve_s": total,
            "with_solve_cpu_s": total_cpu,
            "solve_cpu_s": timers_cpu["solve"],
        },
        "fbx_10k": {"frames": fbx_frames, "wall_s": fbx_s, "cpu_s": fbx_cpu, "bytes": size},
    }


def peer_versions() -> dict:
    """Exact installed versions of the peers (None: not installed)."""
    out = {}
    for name in PEERS:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _row(key: str, value: float, detail: str = "") -> str:
    target, unit, higher = TARGETS[key]
    ratio = value / target if higher else target / value
    mark = "meets" if ratio >= 1 else f"misses by {abs(1 - ratio) * 100:.0f}%"
    return (
        f"{key:16s} {value:11.3f} {unit:9s} target {'>=' if higher else '<='} {target:<8g} "
        f"ratio {ratio:5.2f}  {mark}{('  ' + detail) if detail else ''}"
    )


def report(res: dict) -> list[str]:
    import torch

    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    head = f"torch {torch.__version__}, {os.cpu_count()} CPU(s), load average {load}"
    lines = [head + " (figures: CPU time of the process measured; wall clock beside them)"]
    for key in ("network_10k", "network_100", "analytic_10k"):
        if key in res:
            r = res[key]
            lines.append(
                _row(key, r["cpu_fps"], f"wall {r['wall_fps']:.0f} frames/s, solver {r['solver']}")
            )
    if "convert_60" in res:
        r = res["convert_60"]
        lines.append(
            _row("convert_60", r["wall_s"], f"bare 'import torch' {r['import_torch_s']:.3f} s")
        )
    bl = res.get("blender_part")
    if bl is not None and "error" in bl:
        lines.append(f"blender: {bl['error']}")
    elif bl is not None:
        r = bl["blender_rig_1k"]
        lines.append(
            _row(
                "blender_rig_1k",
                r["with_solve_cpu_s"] - r["solve_cpu_s"],
                f"(solve excluded) wall {r['wall_s']:.3f} s: read+prepare "
                f"{r['read_prepare_s']:.3f} s, rig {r['rig_build_s']:.3f} s, keys "
                f"{r['keyframes_s']:.3f} s; the solve beside it {r['solve_cpu_s']:.3f} s CPU "
                f"(with it {r['with_solve_cpu_s']:.3f} s CPU); Blender {bl['blender']}",
            )
        )
        r = bl["fbx_10k"]
        lines.append(
            _row("fbx_10k", r["cpu_s"], f"wall {r['wall_s']:.3f} s, {r['bytes'] / 1e6:.1f} MB")
        )
    for name, version in res.get("peers", {}).items():
        lines.append(
            f"peer {name:14s} "
            + (
                f"{version} installed (no runner for it in this benchmark: no ratio)"
                if version
                else "not installed (no ratio)"
            )
        )
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="best of N timed runs (default 3)")
    ap.add_argument("--no-blender", action="store_true", help="skip the Blender figures")
    ap.add_argument("--no-convert", action="store_true", help="skip the convert figure")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    ap.add_argument("--blender-part", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.blender_part:
        print(json.dumps(blender_part()))
        return 0
    res: dict = {"peers": peer_versions()}
    res.update(bench_solves(args.repeats))
    if not args.no_convert:
        res.update(bench_convert(args.repeats))
    if not args.no_blender:
        res["blender_part"] = bench_blender()
    for line in report(res):
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
