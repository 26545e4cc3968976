"""Foot locking and the ground measured on real CMU takes (printed, not asserted; issue 10's targets).

Takes: the real-capture evaluation's held-out takes (``research/real_takes.py``: cmu_subset/test, the
cmu_raw BVH and ASF/AMC takes, the CMU FBX rigs as BVH) plus cmu_raw/01_01.bvh, about 30 fps, the
first --frames frames, read as ``convert`` reads them. Each is solved with the default solver twice,
``lock_feet='off'`` (before) and ``'on'`` (after), and measured against the capture:
- skate (eval): ``eval --real``'s figure, the horizontal speed of the solved ball of the foot over the
  frames where the CAPTURED ball is within 2 cm of its floor height (``real_metrics.foot_skating``),
  next to the capture's own ball over the same frames (mm/s, mean of both feet);
- skate (planted): the horizontal speed of the planted point (ankle while the heel is down, ball
  while the toe is) over the contact frames detected from the source (``contacts.feet_report``),
  next to the source's heel / toe points over the same frames;
- below: % of frames with any vertex of the FULL mesh more than 1 cm below the ground (the
  solution's ground height, estimated from the source), and the deepest vertex (mm);
- fit: mean fit error (mm); time: the whole solve with locking on (s), and the foot step's share
  of it with locking off (contacts, ground, figures only) and on (s).
Targets (issue 10): skate <= the source's own + 10 mm/s; below <= 1% of frames.

Usage: python benchmarks/bench_contacts.py [--data DIR] [--frames 240] [--kinds cmu_bvh cmu_amc ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lsmplify_blender.core.body_model import BodyModel, load_model_data
from lsmplify_blender.core.keypoints import UNIT_SCALES
from lsmplify_blender.core.prepare import prepare
from lsmplify_blender.core.solver import solve
from lsmplify_blender.research import real_metrics as rm
from lsmplify_blender.research import real_takes as rt
from lsmplify_blender.research.real_eval import _y_up_capture

SKATE_MARGIN_MM_S = 10.0  # issue 10: skating <= the source's own + 1 cm/s
BELOW_M, BELOW_PCT = 0.01, 1.0  # issue 10: <= 1% of frames with a vertex > 1 cm below the ground


def _takes(root: Path, kinds, frames):
    takes = rt.held_out_takes(root, kinds, None, frames)
    extra = root / "cmu_raw" / "01_01.bvh"
    if "cmu_bvh" in kinds and extra.is_file():
        takes.insert(0, rt.load_bvh_take(extra, "cmu_bvh", frames))
    return takes


def _measure(take, prep, model, sol, unit_m: float) -> dict:
    _, joints, _ = rm.solved_body(model, sol.rotmats, sol.betas, sol.trans)
    sk, sk_src = rm.foot_skating(take.capture, joints, unit_m, prep.fps, slice(0, prep.num_frames))
    low = model.vertices(sol.rotmats, sol.betas, sol.trans)[..., 1].min(1).values.numpy()
    depth = sol.ground_height - low
    return dict(
        eval_skate=float(np.mean(sk)) if sk else np.nan,
        eval_skate_src=float(np.mean(sk_src)) if sk_src else np.nan,
        skate=sol.feet.get("skate_mm_s") or np.nan,
        skate_src=sol.feet.get("skate_source_mm_s") or np.nan,
        below_pct=100.0 * float((depth > BELOW_M).mean()),
        deepest_mm=1000.0 * float(max(depth.max(), 0.0)),
        fit=float(np.nanmean(sol.fit_error_mm)),
        seconds=sol.seconds,
    )


def _f(x, digits=1):
    return "-" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=None, help="mocap data root (default $LSMPLIFY_DATA)")
    ap.add_argument("--frames", type=int, default=240, help="first N frames (~30 fps) per take")
    ap.add_argument(
        "--kinds", nargs="+", default=["cmu_bvh", "cmu_amc", "cmu_subset", "cmu_fbx_bvh"]
    )
    args = ap.parse_args()
    root = rt.data_root(args.data or str(ROOT.parent / "shared" / "data" / "mocap"))
    model = BodyModel(load_model_data())
    print(
        "| take | frames | contact L/R | skate eval before / after (capture) mm/s | skate planted "
        "before / after (source) mm/s | below 1 cm % before / after | deepest mm before / after | "
        "fit mm before / after | solve s (foot step off / on) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    misses, t0 = [], time.perf_counter()
    for take in _takes(root, args.kinds, args.frames):
        prep = prepare(take.seq, model)
        _y_up_capture(take, prep.up)
        unit = UNIT_SCALES[prep.units]
        off, on = (solve(prep, model, lock_feet=m) for m in ("off", "on"))
        b, a = _measure(take, prep, model, off, unit), _measure(take, prep, model, on, unit)
        name = f"{take.kind}/{take.name}"
        print(
            f"| {name} | {prep.num_frames} | {on.feet['contact_frames'][0]}/{on.feet['contact_frames'][1]} "
            f"| {_f(b['eval_skate'])} / {_f(a['eval_skate'])} ({_f(a['eval_skate_src'])}) "
            f"| {_f(b['skate'])} / {_f(a['skate'])} ({_f(a['skate_src'])}) "
            f"| {_f(b['below_pct'])} / {_f(a['below_pct'])} | {_f(b['deepest_mm'])} / {_f(a['deepest_mm'])} "
            f"| {_f(b['fit'])} / {_f(a['fit'])} | {_f(on.seconds, 2)} ({_f(off.feet['seconds'], 2)} / "
            f"{_f(on.feet['seconds'], 2)}) |",
            flush=True,
        )
        for label, got, ref in (
            ("skate (eval)", a["eval_skate"], a["eval_skate_src"]),
            ("skate (planted)", a["skate"], a["skate_src"]),
        ):
            if np.isfinite(got) and np.isfinite(ref) and got > ref + SKATE_MARGIN_MM_S:
                misses.append(f"{name}: {label} {got:.1f} > {ref:.1f} + {SKATE_MARGIN_MM_S:g} mm/s")
        if a["below_pct"] > BELOW_PCT:
            misses.append(f"{name}: {a['below_pct']:.1f}% of frames below the ground by > 1 cm")
    print(
        f"\n{time.perf_counter() - t0:.0f} s. Targets: skate <= source + {SKATE_MARGIN_MM_S:g} mm/s, "
        f"below <= {BELOW_PCT:g}% of frames."
    )
    print("missed: " + ("; ".join(misses) if misses else "none"))


if __name__ == "__main__":
    main()
