"""Where a long solve's time goes: the core solve with the Blender panel's defaults, step by step
(printed, not asserted).

A take (default: cmu_raw/01_01.bvh, 2,752 frames at 120 fps, played again to fill ``--frames``,
default 10,000: a jump at each seam, timing only) is read and prepared as the panel does, then
solved as the panel's Solve does (``blender.solving.run_solve``: the default solver, automatic
smoothing, calibration and foot locking 'auto', blocks of 2,048 frames), and the fit report is
built as the CLI builds it (``fit_report`` over every frame). Prints per step the minimum over
``--repeats`` of the wall seconds (``Solution.stage_seconds``: denoise, shape, strategy +
calibration, feet, fit error) and its share, the CPU seconds beside it (``stage_cpu_seconds``), the solve's total beside issue 11's budget (the core
part of "file to keyed rig with mesh for 10,000 frames <= 10 s"), and the load average (on a
shared machine the wall clock also counts the time other processes hold the cores).

Usage: LSMPLIFY_DATA=../shared/data/mocap python benchmarks/bench_solve_stages.py
       [--take PATH] [--frames 10000] [--repeats 3] [--threads N]
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
from lsmplify_blender.core.fit_report import fit_report
from lsmplify_blender.core.formats import read_keypoints
from lsmplify_blender.core.prepare import prepare
from lsmplify_blender.core.solver import DEFAULT_SOLVER, solve

PANEL_CHUNK = 2048  # blender.solving.PROGRESS_CHUNK (not imported: that module needs bpy)


def timed_solve(prepared, model, names) -> tuple[dict[str, float], dict[str, float]]:
    """Wall and CPU seconds per step of one panel-default solve and the fit report after it."""
    t0 = time.perf_counter()
    sol = solve(prepared, model, solver=DEFAULT_SOLVER, chunk=PANEL_CHUNK)
    t1, c1 = time.perf_counter(), time.process_time()
    fit_report(model, prepared, sol, source_names=names)
    wall, cpu = dict(sol.stage_seconds), dict(sol.stage_cpu_seconds)
    wall["fit report"], cpu["fit report"] = time.perf_counter() - t1, time.process_time() - c1
    wall["(other)"] = t1 - t0 - sum(sol.stage_seconds.values())
    cpu["(other)"] = 0.0
    return wall, cpu


def main() -> None:
    data = Path(os.environ.get("LSMPLIFY_DATA", ROOT.parent / "shared" / "data" / "mocap"))
    ap = argparse.ArgumentParser()
    ap.add_argument("--take", default=str(data / "cmu_raw" / "01_01.bvh"))
    ap.add_argument("--frames", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = BodyModel(load_model_data())
    t0 = time.perf_counter()
    seq = read_keypoints(args.take)
    prepared = prepare(seq, model)
    read_s = time.perf_counter() - t0
    prepared = prepared.cut(np.arange(args.frames) % prepared.num_frames)  # played again to fill
    solve(prepared.cut(slice(0, 50)), model)  # warm-up (imports, allocator)
    runs = [timed_solve(prepared, model, seq.names) for _ in range(args.repeats)]
    best = {k: min(r[0][k] for r in runs) for k in runs[0][0]}
    best_cpu = {k: min(r[1][k] for r in runs) for k in runs[0][1]}
    totals = [sum(r[0].values()) for r in runs]
    print(
        f"{Path(args.take).name}: {prepared.num_frames} frames ({prepared.layout.name}), solver "
        f"{DEFAULT_SOLVER}, {torch.get_num_threads()} thread(s), best of {args.repeats}; "
        f"load average {os.getloadavg()[0]:.2f}; read + prepare {read_s:.2f} s (the whole file once)"
    )
    print("| step | seconds | share | CPU seconds |\n|---|---|---|---|")
    for k, v in best.items():
        print(f"| {k} | {v:.3f} | {100 * v / sum(best.values()):.0f}% | {best_cpu[k]:.3f} |")
    print(
        f"solve + fit report: {min(totals):.2f} s (min), {np.median(totals):.2f} s (median); "
        f"{prepared.num_frames / min(totals):,.0f} frames/s; CPU {sum(best_cpu.values()):.2f} s"
    )


if __name__ == "__main__":
    main()
