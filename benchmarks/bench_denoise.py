"""Auto denoise measured (printed, not asserted): the noise estimate and the smoothing amount.

Every --stride-th cmu_subset/test clip, retargeted by rotation transfer, 30 fps, random betas
N(0, 0.7^2), SMPL-24 keypoints of the open model plus Gaussian noise of each --noise level
(mm per axis). For each level: the estimated noise (limb-length changes) and the analytic
solver's MPJPE to the clean joints and jitter for each fixed smoothing sigma, next to what
`--smooth auto` picks. This is the table `prepare.auto_smooth_seconds` was fitted to.

Usage: python benchmarks/bench_denoise.py [--noise 0 5 10 20 30] [--sigmas 0 0.03 0.05 0.07 0.1]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_network import clips, prepared

from lsmplify_blender.core.body_model import BodyModel, load_model_data
from lsmplify_blender.core.layouts import SMPL24
from lsmplify_blender.core.metrics import jitter, mpjpe
from lsmplify_blender.core.prepare import auto_smooth_seconds, estimate_noise_mm
from lsmplify_blender.core.solver import solve


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--noise", type=float, nargs="+", default=[0, 5, 10, 20, 30])
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0, 0.03, 0.05, 0.07, 0.1])
    ap.add_argument("--stride", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = BodyModel(load_model_data())
    data = [
        (rot, betas, trans, model.joints(rot, betas, trans))
        for rot, betas, trans in clips(model, args.stride)
    ]
    rng = np.random.default_rng(1)
    print(
        f"{len(data)} clips, {sum(d[0].shape[0] for d in data)} frames; analytic solver; MPJPE to the clean "
        f"joints (mm), jitter (m/s^3)"
    )
    heads = " | ".join(f"sigma {s:g} s" for s in args.sigmas)
    print(f"| noise mm | estimate mm | {heads} | auto |\n|---|---|{'---|' * len(args.sigmas)}---|")
    for noise in args.noise:
        est, rows, auto = [], {s: [] for s in args.sigmas}, []
        for rot, betas, trans, truth in data:
            prep = prepared(model, SMPL24, rot, betas, trans)
            prep.positions = prep.positions + rng.normal(
                scale=noise / 1000.0, size=prep.positions.shape
            )
            est.append(estimate_noise_mm(prep))
            for s in args.sigmas + ["auto"]:
                sol = solve(prep, model, solver="analytic", smooth=s)
                j = model.joints(sol.rotmats, sol.betas, sol.trans)
                (auto if s == "auto" else rows[s]).append(
                    (mpjpe(j, truth), jitter(j, 30.0) / 1000.0)
                )

        def cell(v):
            return f"{np.mean([a for a, _ in v]):.1f} / {np.mean([b for _, b in v]):,.0f}"

        picked = auto_smooth_seconds(float(np.mean(est)), 30.0)
        print(
            f"| {noise:g} | {np.mean(est):.1f} | "
            + " | ".join(cell(rows[s]) for s in args.sigmas)
            + f" | {cell(auto)} (sigma {picked:.3f} s) |",
            flush=True,
        )


if __name__ == "__main__":
    main()
