"""Time the Blender side: building the SMPL rig + mesh, and keying 1,000 frames.

    .venv/bin/python benchmarks/bench_blender_keyframes.py [--frames 1000] [--repeat 3]

Prints the best of ``--repeat`` runs of each step (target: keyframe writing < 0.5 s for
1,000 frames, i.e. 100 F-curves and 100,000 keys) and the read-back time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from blender_env import import_bpy, reset_scene


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    bpy = import_bpy()
    if bpy is None:
        print("bpy is not installed; nothing to time")
        return 1
    import numpy as np
    import torch

    from lsmplify_blender.blender import keyframes, rig
    from lsmplify_blender.core.body_model import load_model_data
    from lsmplify_blender.core.rotations import axis_angle_to_matrix

    data = load_model_data()
    betas = np.random.default_rng(0).normal(size=10)
    g = torch.Generator().manual_seed(0)
    rotmats = axis_angle_to_matrix(
        torch.randn(args.frames, 24, 3, generator=g, dtype=torch.float64) * 0.4
    )
    trans = torch.randn(args.frames, 3, generator=g, dtype=torch.float64)
    fit = np.random.default_rng(1).uniform(5, 30, size=args.frames)

    build, write, read = [], [], []
    for _ in range(args.repeat):
        reset_scene()
        t0 = time.perf_counter()
        arm_obj, _ = rig.build_smpl_rig(bpy.context, data, betas)
        t1 = time.perf_counter()
        keyframes.write_pose_action(arm_obj, rotmats, trans, 1, fit_error_mm=fit)
        t2 = time.perf_counter()
        keyframes.read_pose_action(arm_obj, 1, args.frames)
        t3 = time.perf_counter()
        build.append(t1 - t0)
        write.append(t2 - t1)
        read.append(t3 - t2)
    keys = args.frames * (24 * 4 + 3 + 1)
    print(f"Blender {bpy.app.version_string}, model '{data.name}' ({data.num_vertices} vertices)")
    print(f"build rig + mesh:          {min(build):.3f} s")
    print(f"write {args.frames} frames ({keys} keys): {min(write):.3f} s  (target < 0.5 s)")
    print(f"read {args.frames} frames back:     {min(read):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
