"""Where a solve's time goes, op by op (printed, not asserted): the torch profiler over whole solves.

For each case (network and analytic, 10,000 and 100 frames of CMU 131_01.bvh played again to fill,
the file's rotations ignored, calibration and foot locking 'auto': ``bench_speed.py``'s solves, on
one thread) it prints
- the per-stage wall and CPU seconds of the solve (``Solution.stage_seconds``, min over
  ``--repeats`` after a warm-up) and frames/s;
- from one profiled solve: the number of aten ops, of ``solve_analytic`` calls (analytic IK) and of
  ops per call, and the top ops by self CPU time (``torch.profiler``, ``--top`` rows).
The profiler adds its own cost per op (a few us), so its times are for shares, not speed: the
stage table comes from runs without it. The load average is printed first.

Usage: LSMPLIFY_DATA=../shared/data/mocap python benchmarks/profile_solve.py
       [--cases network:10000,network:100,analytic:10000,analytic:100] [--repeats 2] [--top 12]
The data was obtained from mocap.cs.cmu.edu (funded by NSF EIA-0196217).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from bench_speed import take_path, tiled

from lsmplify_blender.core import analytic_ik, solver
from lsmplify_blender.core.body_model import BodyModel, load_model_data
from lsmplify_blender.core.formats import read_keypoints
from lsmplify_blender.core.prepare import prepare

IK_LABEL = "analytic_ik.solve_analytic"


@contextlib.contextmanager
def labelled_ik():
    """``solve_analytic`` wrapped in a profiler label (calls counted, their ops nested under it)
    wherever the solve looks it up (the solver's own binding, calibration's import at call time)."""
    original = analytic_ik.solve_analytic

    def wrapped(*args, **kwargs):
        with record_function(IK_LABEL):
            return original(*args, **kwargs)

    bound = getattr(solver, "solve_analytic", None)
    analytic_ik.solve_analytic = wrapped
    if bound is not None:
        solver.solve_analytic = wrapped  # type: ignore[attr-defined]
    try:
        yield
    finally:
        analytic_ik.solve_analytic = original
        if bound is not None:
            solver.solve_analytic = bound  # type: ignore[attr-defined]


def stage_table(prepared, model, name: str, repeats: int) -> None:
    solver.solve(prepared, model, solver=name, rotations="ignore")  # warm-up
    runs = []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        sol = solver.solve(prepared, model, solver=name, rotations="ignore")
        runs.append((time.perf_counter() - t0, time.process_time() - c0, sol))
    wall = min(r[0] for r in runs)
    cpu = min(r[1] for r in runs)
    print("| stage | min s | min CPU s |\n|---|---|---|")
    for k in runs[0][2].stage_seconds:
        s = min(r[2].stage_seconds[k] for r in runs)
        c = min(r[2].stage_cpu_seconds[k] for r in runs)
        print(f"| {k} | {s:.4f} | {c:.4f} |")
    n = prepared.num_frames
    print(
        f"whole solve call: {wall:.4f} s wall ({n / wall:,.0f} frames/s), {cpu:.4f} s CPU "
        f"({n / cpu:,.0f} frames/s); solver used {runs[0][2].solver}"
    )


def op_profile(prepared, model, name: str, top: int) -> None:
    with labelled_ik(), profile(activities=[ProfilerActivity.CPU]) as prof:
        solver.solve(prepared, model, solver=name, rotations="ignore")
    events = prof.key_averages()
    ops = sum(e.count for e in events if e.key.startswith("aten::"))
    ik = [e for e in events if e.key == IK_LABEL]
    calls = ik[0].count if ik else 0
    ik_ops = sum(1 for e in prof.events() if e.name.startswith("aten::") and _under(e, IK_LABEL))
    per_call = f"{ik_ops / calls:,.0f}" if calls else "-"
    print(
        f"profiled solve: {ops:,} aten ops; {calls} solve_analytic call(s), {ik_ops:,} aten ops "
        f"inside them ({per_call} per call)"
    )
    print(events.table(sort_by="self_cpu_time_total", row_limit=top))


def _under(event, label: str) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name == label:
            return True
        parent = parent.cpu_parent
    return False


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="network:10000,network:100,analytic:10000,analytic:100")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = BodyModel(load_model_data(None))
    take = prepare(read_keypoints(take_path()), model)
    print(
        f"{take_path().name} ({take.num_frames} frames, {take.layout.name}), 1 thread, "
        f"torch {torch.__version__}, load average {os.getloadavg()[0]:.2f}"
    )
    for case in args.cases.split(","):
        name, frames = case.split(":")
        prepared = tiled(take, int(frames))
        print(f"\n## {name}, {int(frames):,} frames\n")
        stage_table(prepared, model, name, args.repeats)
        op_profile(prepared, model, name, args.top)


if __name__ == "__main__":
    main()
