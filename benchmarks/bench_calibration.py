"""Per-keypoint calibration measured (printed, not asserted): what it adds to a solve's time and
what it does to the fit.

A 1,000-frame take (default: the first 1,000 frames of cmu_raw/01_01.bvh, 120 fps, read and
prepared as `convert` does), solved by the default solver with `--calibrate off` and `on`,
alternately, --repeats times each (after one warm-up solve); the solve time is Solution.seconds
(reading and preparing excluded: the same for both), and beside it the CPU seconds of the whole
``solve`` call (``time.process_time``, all threads: on a shared machine the wall clock also counts
the time other processes hold the cores; the load average is printed). Prints the minimum and
median seconds of each, the overhead of calibration (minimum on / minimum off - 1; issue 10's
target: <= 30%) by both clocks, and the mean fit error to the calibrated keypoints next to the raw
one (to the keypoints as captured).

Usage: LSMPLIFY_DATA=../shared/data/mocap python benchmarks/bench_calibration.py
       [--take PATH] [--frames 1000] [--repeats 5] [--threads N]
The data was obtained from mocap.cs.cmu.edu (funded by NSF EIA-0196217).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lsmplify_blender.core.body_model import BodyModel, load_model_data
from lsmplify_blender.core.formats import read_keypoints
from lsmplify_blender.core.prepare import prepare
from lsmplify_blender.core.solver import solve


def main() -> None:
    data = Path(os.environ.get("LSMPLIFY_DATA", ROOT.parent / "shared" / "data" / "mocap"))
    ap = argparse.ArgumentParser()
    ap.add_argument("--take", default=str(data / "cmu_raw" / "01_01.bvh"))
    ap.add_argument("--asf", default=None, help="ASF skeleton for an .amc take")
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = BodyModel(load_model_data())
    prepared = prepare(read_keypoints(args.take, asf=args.asf), model)
    prepared = prepared.cut(slice(0, args.frames))
    solve(prepared.cut(slice(0, 50)), model)  # warm-up (imports, allocator)
    seconds: dict[str, list[float]] = {"off": [], "on": []}
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    sols = {}
    for _ in range(args.repeats):
        for mode in ("off", "on"):
            c0 = time.process_time()
            sols[mode] = solve(prepared, model, calibrate=mode)
            cpu[mode].append(time.process_time() - c0)
            seconds[mode].append(sols[mode].seconds)
    print(
        f"{Path(args.take).name}: {prepared.num_frames} frames ({prepared.layout.name}), solver "
        f"{sols['on'].solver}, rotations {sols['on'].rotations}, {torch.get_num_threads()} thread(s), "
        f"{args.repeats} repeats, load average {os.getloadavg()[0]:.2f}"
    )
    print(
        "| calibrate | min s | median s | min CPU s | fit mm (calibrated) | fit mm (raw) |\n"
        "|---|---|---|---|---|---|"
    )
    for mode in ("off", "on"):
        s = np.array(seconds[mode])
        sol = sols[mode]
        print(
            f"| {mode} | {s.min():.3f} | {np.median(s):.3f} | {min(cpu[mode]):.3f} | "
            f"{np.nanmean(sol.fit_error_mm):.1f} | {np.nanmean(sol.fit_error_mm_raw):.1f} |"
        )
    ratio = min(seconds["on"]) / min(seconds["off"]) - 1
    med = np.median(seconds["on"]) / np.median(seconds["off"]) - 1
    by_cpu = min(cpu["on"]) / min(cpu["off"]) - 1
    print(
        f"calibration overhead: {ratio * 100:+.0f}% (min), {med * 100:+.0f}% (median), "
        f"{by_cpu * 100:+.0f}% (CPU, min); target <= +30%"
    )


if __name__ == "__main__":
    main()
