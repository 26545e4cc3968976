"""Evaluate the residual IK network on cmu_subset/test (never used in training).

Protocol: test clips retargeted by rotation transfer (real twist), 120 -> 30 fps, random
betas N(0, 0.7^2) per clip (seed 0), SMPL-24 keypoints from the open model (optional noise);
the solve uses betas from the shape inverse and no ground truth. Reports MPJPE (root-centred)
and MPVE (raw vertices) in mm and frames/s for analytic vs network (sequential, chunked),
plus the pairwise s=1 error (init = ground truth of the previous frame, ground-truth betas).

Usage: PYTHONPATH=. python tools/eval_network.py [--ckpt PATH] [--clips N] [--noise-mm X] [--chunk 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lsmplify_blender.core.body_model import BodyModel, load_model_data
from lsmplify_blender.core.layouts import SMPL24
from lsmplify_blender.core.metrics import mpjpe, mpve
from lsmplify_blender.core.network.infer import network_step, solve_network
from lsmplify_blender.core.network.model import load_network
from lsmplify_blender.core.network.pairs import MotionSet
from lsmplify_blender.core.prepare import PreparedKeypoints
from lsmplify_blender.core.shape_inverse import fit_betas_auto, observed_lengths
from lsmplify_blender.core.solver import solve


def main():
    args = _parser().parse_args()
    torch.set_num_threads(args.threads)
    model = BodyModel(load_model_data())
    net = load_network(args.ckpt)
    ms = MotionSet.load(args.data)
    rng = np.random.default_rng(0)
    rows: dict[str, list] = {
        "analytic": [],
        "network": [],
        "pairwise s=1 (raw)": [],
        "pairwise s=1 (re-aimed)": [],
    }
    for c in range(min(args.clips, len(ms.starts) - 1)):
        clip = _clip(model, ms, c, rng, args.noise_mm)
        rows["analytic"].append(_analytic_row(model, clip))
        row, reanchored = _network_row(model, clip, net, args)
        rows["network"].append(row)
        for refit, key in ((False, "pairwise s=1 (raw)"), (True, "pairwise s=1 (re-aimed)")):
            rows[key].append(_pairwise_row(model, clip, net, refit))
        print(
            f"{ms.names[c] if 'names' in dir(ms) else c}: frames {clip.frames} analytic MPVE {rows['analytic'][-1][2]:.1f} "
            f"network MPVE {rows['network'][-1][2]:.1f} MPJPE {rows['network'][-1][1]:.2f} reanchored {reanchored}",
            file=sys.stderr,
            flush=True,
        )
    summary = _summary_table(rows)
    print(
        json.dumps(
            {
                "noise_mm": args.noise_mm,
                "chunk": args.chunk,
                "guard_mm": args.guard_mm,
                "refit": not args.no_refit,
                "results": summary,
            }
        )
    )


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default=None)
    ap.add_argument("--data", default=str(ROOT / "out" / "network" / "cmu_smpl_test.npz"))
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--noise-mm", type=float, default=0.0)
    ap.add_argument(
        "--chunk", type=int, default=1, help="frames per sequential chunk (the solver uses 1)"
    )
    ap.add_argument("--guard-mm", type=float, default=15.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--no-refit", action="store_true", help="no re-aim after network steps (noisy keypoints)"
    )
    return ap


@dataclass
class _Clip:
    """One test clip at 30 fps: ground-truth motion, its keypoints and its joints and vertices."""

    rot: torch.Tensor
    betas: torch.Tensor
    rest: torch.Tensor
    kp: np.ndarray
    prep: PreparedKeypoints
    joints: torch.Tensor
    vertices: torch.Tensor

    @property
    def frames(self) -> int:
        return int(self.rot.shape[0])


def _clip(model, ms: MotionSet, c: int, rng: np.random.Generator, noise_mm: float) -> _Clip:
    """Clip ``c`` (every 4th frame of 120 fps) on random betas N(0, 0.7^2), SMPL-24 keypoints."""
    sl = slice(int(ms.starts[c]), int(ms.starts[c + 1]), 4)
    rot, pel = ms.rotmats[sl], ms.pelvis[sl]
    betas = torch.as_tensor(rng.normal(scale=0.7, size=10), dtype=torch.float32)
    rest = model.rest_joints(betas)[0]
    trans = pel - rest[0]
    kp = SMPL24.generate(model, rot, betas, trans).numpy().astype(np.float64)
    if noise_mm:
        kp = kp + rng.normal(scale=noise_mm / 1000, size=kp.shape)
    prep = PreparedKeypoints(
        layout=SMPL24, positions=kp, weight=np.ones(kp.shape[:2]), fps=30, units="m", up="y"
    )
    return _Clip(
        rot,
        betas,
        rest,
        kp,
        prep,
        model.joints(rot, betas, trans),
        model.vertices(rot, betas, trans),
    )


def _analytic_row(model, clip: _Clip) -> tuple:
    """(frames, MPJPE, MPVE, seconds) of the analytic solver."""
    sol = solve(clip.prep, model, solver="analytic")
    return (
        clip.frames,
        mpjpe(model.joints(sol.rotmats, sol.betas, sol.trans), clip.joints),
        mpve(model.vertices(sol.rotmats, sol.betas, sol.trans), clip.vertices),
        sol.seconds,
    )


def _network_row(model, clip: _Clip, net, args) -> tuple[tuple, int]:
    """(frames, MPJPE, MPVE, seconds) of the network on shape-inverse betas, and the number of
    frames the drift guard re-anchored."""
    t0 = time.perf_counter()
    lengths, stderr = observed_lengths(*clip.prep.length_samples())
    b_est = fit_betas_auto(model, lengths, stderr).betas
    r_n, t_n, info = solve_network(
        clip.prep,
        model,
        b_est,
        net=net,
        chunk=args.chunk,
        guard_mm=args.guard_mm,
        refit=not args.no_refit,
    )
    sec = time.perf_counter() - t0
    row = (
        clip.frames,
        mpjpe(model.joints(r_n, b_est, t_n), clip.joints),
        mpve(model.vertices(r_n, b_est, t_n), clip.vertices),
        sec,
    )
    return row, info.reanchored


def _pairwise_row(model, clip: _Clip, net, refit: bool) -> tuple:
    """(frames, MPJPE, MPVE, nan) of one network step from each ground-truth frame to the next
    (ground-truth betas)."""
    n = clip.frames
    kpt = torch.as_tensor(clip.kp, dtype=torch.float32)
    m = torch.ones(n - 1, 24)
    with torch.no_grad():
        r_p, t_p, _ = network_step(
            net,
            clip.rest[None],
            clip.betas[None],
            clip.rot[:-1],
            kpt[:-1],
            kpt[1:],
            m,
            m,
            refit=refit,
        )
    return (
        n - 1,
        mpjpe(model.joints(r_p, clip.betas, t_p), clip.joints[1:]),
        mpve(model.vertices(r_p, clip.betas, t_p), clip.vertices[1:]),
        float("nan"),
    )


def _summary_table(rows: dict[str, list]) -> dict:
    """Print the markdown table of frame-weighted means; the same figures as a dict."""
    summary = {}
    print("\n| method | frames | MPJPE | MPVE | frames/s |\n|---|---|---|---|---|")
    for k, r in rows.items():
        a = np.array(r, dtype=np.float64)
        f = a[:, 0].sum()
        s = dict(
            frames=int(f),
            mpjpe=float((a[:, 0] * a[:, 1]).sum() / f),
            mpve=float((a[:, 0] * a[:, 2]).sum() / f),
            fps=float(f / a[:, 3].sum()) if np.isfinite(a[:, 3]).all() else None,
        )
        summary[k] = s
        fps = f"{s['fps']:.0f}" if s["fps"] else "-"
        print(f"| {k} | {s['frames']} | {s['mpjpe']:.2f} | {s['mpve']:.2f} | {fps} |")
    return summary


if __name__ == "__main__":
    main()
