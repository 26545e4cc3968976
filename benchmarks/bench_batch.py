"""Per-take cost of ``batch`` vs one ``convert`` process per take, worker scaling, Ray vs the
local engine and worker memory over many takes (printed, not asserted).

The takes are real CMU motion (../shared/data/mocap/cmu_raw; CMU credit in the README):
every BVH and AMC file there cut into --frames-frame windows (half-overlapping, the
header/skeleton kept, BVH ``Frames:`` and AMC frame numbers rewritten), round-robin over
the files until there are --takes of them; AMC takes without their own ASF get subject
01's (CMU subjects share the layout). Written to a temp folder.

The network solver throughout.

1. ``convert`` in a fresh process per take (what a shell loop does) vs one
   ``batch --workers 1`` and ``--workers 2`` process: wall time / takes, and the ratio.
2. Ray (a local 2-CPU cluster started here) vs the local engine, both with 2 workers, on
   the same takes: wall time with start-up, and the steady state (first to last finished
   take, so neither the cluster's nor the workers' start-up counts).
3. --memory-takes takes (the same files hard-linked under new names) on 2 local workers:
   each worker's peak resident memory after its 10th, 100th, ... take.

Usage: python benchmarks/bench_batch.py [--takes 100] [--frames 240] [--memory-takes 1000]
       [--convert-takes N (default: all of --takes)] [--no-ray]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from argparse import Namespace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RAW = ROOT.parent / "shared" / "data" / "mocap" / "cmu_raw"

from lsmplify_blender.core import batch

AMC_FRAME = re.compile(r"^\d+\s*$")


def cut_bvh(path: Path, frames: int):
    lines = path.read_text().splitlines()
    k = next(i for i, line in enumerate(lines) if line.strip().startswith("Frame Time"))
    head, motion = lines[: k + 1], lines[k + 1 :]
    for s in range(0, len(motion) - frames + 1, frames // 2):
        h = [f"Frames: {frames}" if line.strip().startswith("Frames:") else line for line in head]
        yield "\n".join(h + motion[s : s + frames]) + "\n"


def cut_amc(path: Path, frames: int):
    lines = path.read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if AMC_FRAME.match(line)]
    head = lines[: starts[0]]
    blocks = [lines[a:b] for a, b in zip(starts, starts[1:] + [len(lines)], strict=True)]
    for s in range(0, len(blocks) - frames + 1, frames // 2):
        out = list(head)
        for n, block in enumerate(blocks[s : s + frames], start=1):
            out += [str(n)] + block[1:]
        yield "\n".join(out) + "\n"


def make_takes(folder: Path, count: int, frames: int) -> list[Path]:
    """``count`` real takes of ``frames`` frames, round-robin over the CMU files."""
    sources = [(f.stem, ".bvh", cut_bvh(f, frames), None) for f in sorted(RAW.rglob("*.bvh"))]
    for f in sorted(RAW.rglob("*.amc")):
        own = RAW / f"{f.stem.split('_')[0]}.asf"
        sources.append(
            (f.stem, ".amc", cut_amc(f, frames), own if own.is_file() else RAW / "01.asf")
        )
    made = []
    while len(made) < count and sources:
        for src in list(sources):
            stem, ext, windows, asf = src
            text = next(windows, None)
            if text is None:
                sources.remove(src)
                continue
            sub = folder / stem
            sub.mkdir(parents=True, exist_ok=True)
            path = sub / f"{stem}_{len(made):04d}{ext}"
            path.write_text(text)
            if asf is not None and not (sub / f"{stem}.asf").exists():
                shutil.copy(asf, sub / f"{stem}.asf")  # the take's name starts with it
            made.append(path)
            if len(made) == count:
                break
    if len(made) < count:
        raise SystemExit(
            f"only {len(made)} windows of {frames} frames in {RAW}; use fewer --takes or --frames"
        )
    return made


def timed(cmd) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def bench_processes(takes, tmp: Path, convert_takes: int) -> dict:
    py = [sys.executable, "-m", "lsmplify_blender"]
    t_convert = (
        sum(
            timed(
                py
                + [
                    "convert",
                    str(p),
                    "--out",
                    str(tmp / "convert" / f"{p.name}.npz"),
                    "--quiet",
                    "--solver",
                    "network",
                ]
            )
            for p in takes[:convert_takes]
        )
        / convert_takes
    )
    res = {"convert_s_per_take": t_convert}
    for w in (1, 2):
        wall = timed(
            py
            + [
                "batch",
                str(tmp / "takes"),
                "--out",
                str(tmp / f"batch_w{w}"),
                "--workers",
                str(w),
                "--solver",
                "network",
            ]
        )
        res[f"batch_w{w}_s_per_take"] = wall / len(takes)
        res[f"batch_w{w}_vs_convert"] = t_convert / res[f"batch_w{w}_s_per_take"]
    res["scaling_w2_vs_w1"] = res["batch_w1_s_per_take"] / res["batch_w2_s_per_take"]
    return res


def engine_run(folder: Path, out: Path, engine: str, workers: int) -> dict:
    options = Namespace(
        layout="auto",
        units="auto",
        up="auto",
        fps=None,
        model=None,
        solver="network",
        refine=0,
        chunk=None,
        smooth="auto",
        rotations="auto",
        device="auto",
        asf=None,
        init=None,
    )
    stamps, finished = [], []

    def on_row(take, done, total):
        stamps.append(time.perf_counter())
        finished.append(take)

    t0 = time.perf_counter()
    takes = batch.find_takes([folder], out)
    batch.run_batch(takes, options, engine=engine, workers=workers, on_row=on_row)
    wall = time.perf_counter() - t0
    ok = sum(t.status == "ok" for t in takes)
    steady = (stamps[-1] - stamps[0]) / max(len(stamps) - 1, 1)
    return {
        "wall_s": wall,
        "steady_s_per_take": steady,
        "ok": ok,
        "takes": len(takes),
        "finished": finished,
    }


def bench_ray(folder: Path, tmp: Path) -> dict:
    import ray

    local = engine_run(folder, tmp / "local2", "local", 2)
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    start = time.perf_counter() - t0
    try:
        on_ray = engine_run(folder, tmp / "ray2", "ray", 2)
    finally:
        ray.shutdown()
    return {
        "local": local,
        "ray": on_ray,
        "ray_cluster_start_s": start,
        "ray_vs_local_steady": on_ray["steady_s_per_take"] / local["steady_s_per_take"],
    }


def bench_memory(takes, tmp: Path, count: int) -> dict:
    folder = tmp / "many"
    for i in range(count):
        src = takes[i % len(takes)]
        dst = (
            folder / src.parent.name / f"{src.stem}_{i:05d}{src.suffix}"
        )  # still starts with its ASF's name
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.link(src, dst)
        asf = src.parent / f"{src.parent.name}.asf"
        if asf.is_file() and not (dst.parent / asf.name).exists():
            os.link(asf, dst.parent / asf.name)
    run = engine_run(folder, tmp / "many_out", "local", 2)
    peaks: dict = {}  # worker pid -> its peak RSS after each of its takes, in finishing order
    for t in run["finished"]:
        if t.row.get("peak_rss_mb") is not None:
            peaks.setdefault(t.row["worker"], []).append(t.row["peak_rss_mb"])
    marks = {
        w: {n: p[n - 1] for n in (10, 100, len(p) // 2, len(p)) if 0 < n <= len(p)}
        for w, p in peaks.items()
    }
    return {"takes": count, "ok": run["ok"], "wall_s": run["wall_s"], "peak_rss_mb_by_takes": marks}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--takes", type=int, default=100)
    ap.add_argument("--frames", type=int, default=240)
    ap.add_argument("--convert-takes", type=int, default=None)
    ap.add_argument("--memory-takes", type=int, default=1000)
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="lsmplify_bench_batch_"))
    try:
        takes = make_takes(tmp / "takes", args.takes, args.frames)
        print(f"{len(takes)} real CMU takes of {args.frames} frames in {tmp / 'takes'}", flush=True)
        res = bench_processes(takes, tmp, args.convert_takes or len(takes))
        print(f"convert, one process per take : {res['convert_s_per_take']:.3f} s/take", flush=True)
        for w in (1, 2):
            print(
                f"batch --workers {w}             : {res[f'batch_w{w}_s_per_take']:.3f} s/take "
                f"({res[f'batch_w{w}_vs_convert']:.1f}x lower than convert)",
                flush=True,
            )
        print(f"workers 2 vs 1 throughput     : {res['scaling_w2_vs_w1']:.2f}x", flush=True)
        if not args.no_ray:
            r = bench_ray(tmp / "takes", tmp)
            res["ray"] = {
                k: (
                    v
                    if not isinstance(v, dict)
                    else {a: b for a, b in v.items() if a != "finished"}
                )
                for k, v in r.items()
            }
            for name in ("local", "ray"):
                e = r[name]
                print(
                    f"{name:5s} engine, 2 workers      : {e['wall_s']:.1f} s wall for {e['takes']} takes "
                    f"({e['ok']} ok), steady state {e['steady_s_per_take']:.3f} s/take",
                    flush=True,
                )
            print(
                f"Ray local cluster start        : {r['ray_cluster_start_s']:.1f} s; Ray / local steady state "
                f"{r['ray_vs_local_steady']:.2f}",
                flush=True,
            )
        if args.memory_takes:
            m = bench_memory(takes, tmp, args.memory_takes)
            res["memory"] = m
            print(
                f"{m['takes']} takes on 2 local workers: {m['ok']} ok in {m['wall_s']:.1f} s",
                flush=True,
            )
            for w, marks in m["peak_rss_mb_by_takes"].items():
                print(
                    f"  worker {w}: peak RSS MB after n takes "
                    + ", ".join(f"{n}: {v}" for n, v in marks.items())
                )
        print(json.dumps(res, default=str))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
