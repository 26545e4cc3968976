"""Seconds from a 1,000-frame keypoint file to a keyed SMPL rig with mesh preview, through the operators.

    .venv/bin/python benchmarks/bench_blender_pipeline.py [--input FILE] [--frames 1000] [--solver analytic]

The input (default: ../shared/data/mocap/cmu_raw/01_01.bvh, 2,752 frames, else the bundled
demo clip) is truncated to ``--frames`` frames (a BVH keeps its header and the first N motion
lines, played again when it is shorter). Times ``lsmplify.import_keypoints`` (no empties) and
``lsmplify.solve`` and splits them:
read + prepare, solve, rig build (rig + mesh), keyframe writing. Target: under 10 s total with
keyframe writing under 0.5 s. Printed, not asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from blender_env import import_bpy, reset_scene

RAW = ROOT.parent / "shared" / "data" / "mocap" / "cmu_raw" / "01_01.bvh"
DEMO = ROOT / "lsmplify_blender" / "core" / "data" / "demo" / "cmu_131_01.bvh"


def truncated_bvh(src: Path, frames: int, folder: Path) -> Path:
    lines = src.read_text(encoding="utf-8", errors="replace").splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.strip().startswith("Frames:"))
    motion = [ln for ln in lines[i + 2 :] if ln.strip()]
    # a take shorter than asked for is played again (a jump at each seam: timing only)
    n = frames
    motion = (motion * (n // len(motion) + 1))[:n]
    out = folder / f"{src.stem}_{n}.bvh"
    out.write_text(
        "\n".join(lines[:i] + [f"Frames: {n}", lines[i + 1]] + motion) + "\n", encoding="utf-8"
    )
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", default=str(RAW if RAW.is_file() else DEMO))
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--solver", default="analytic", choices=("network", "analytic", "optimize"))
    args = ap.parse_args(argv)

    bpy = import_bpy()
    if bpy is None:
        print("bpy is not installed; nothing to time")
        return 1
    import addon_utils

    from lsmplify_blender.blender import keyframes, rig, solving

    reset_scene()
    addon_utils.enable("lsmplify_blender", default_set=True)
    timers = {"read_prepare": 0.0, "solve": 0.0, "rig_build": 0.0, "keyframes": 0.0}

    def timed(key, fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                timers[key] += time.perf_counter() - t

        return wrapper

    # the operators look these up at call time, so wrapping the module attributes times them
    rig.build_smpl_rig = timed("rig_build", rig.build_smpl_rig)
    keyframes.write_pose_action = timed("keyframes", keyframes.write_pose_action)
    solving.run_solve = timed("solve", solving.run_solve)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.input)
        if path.suffix.lower() == ".bvh":
            path = truncated_bvh(path, args.frames, Path(tmp))
        t0 = time.perf_counter()
        bpy.ops.lsmplify.import_keypoints(filepath=str(path), create_empties=False)
        t_import = time.perf_counter() - t0
        sc = bpy.context.scene
        sc.frame_end = min(sc.frame_end, sc.frame_start + args.frames - 1)
        sc.lsmplify.solver = args.solver.upper()
        t1 = time.perf_counter()
        bpy.ops.lsmplify.solve()
        t_solve_op = time.perf_counter() - t1
    total = t_import + t_solve_op
    frames = sc.frame_end - sc.frame_start + 1
    # the solve operator reads the file again (the file is the source): that is read/prepare too
    read_prepare = total - timers["solve"] - timers["rig_build"] - timers["keyframes"]
    print(
        f"Blender {bpy.app.version_string}: {frames} frames of '{Path(args.input).name}', solver {args.solver}"
    )
    print(f"read + prepare (import op + solve op's own read): {read_prepare:6.2f} s")
    print(f"solve:                                             {timers['solve']:6.2f} s")
    print(f"rig build (armature + mesh + shape keys):          {timers['rig_build']:6.2f} s")
    print(
        f"keyframe writing:                                  {timers['keyframes']:6.2f} s  (target < 0.5 s)"
    )
    print(f"total, file to keyed rig:                          {total:6.2f} s  (target < 10 s)")
    print(
        f"fit error {sc.lsmplify.result_fit_error_mm:.1f} mm, MPBE {sc.lsmplify.result_mpbe_mm:.1f} mm"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
