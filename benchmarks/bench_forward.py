#!/usr/bin/env python
"""Our SMPL forward pass (``BodyModel.vertices``) against smplx's: error and speed, printed.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_forward.py [--frames 1000] [--repeats 3]
        [--dtype float32|float64] [--threads N] [--posedirs]

Random poses (any root, limbs within +-0.5 rad per axis) and betas ~ N(0, 1.5^2) on the
open model (``--posedirs``: with random pose correctives, as a licensed SMPL file has).
Both run in chunks of 512 frames (smplx.SMPLLayer built once per chunk size, outside the
timing); the best of ``--repeats`` runs is reported. smplx is the reference here only: the
core never imports it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from lsmplify_blender.core.body_model import BodyModel, load_model_data
from lsmplify_blender.core.model.rotations import axis_angle_to_matrix

CHUNK = 512


def smplx_vertices(layers: dict, data, rot, betas, trans, dtype):
    from smplx_reference import smplx_layer

    out = []
    for s in range(0, rot.shape[0], CHUNK):
        e = min(rot.shape[0], s + CHUNK)
        if e - s not in layers:
            with contextlib.redirect_stdout(io.StringIO()):
                layers[e - s] = smplx_layer(data, e - s, dtype=dtype)
        res = layers[e - s](
            betas=betas[s:e], global_orient=rot[s:e, :1], body_pose=rot[s:e, 1:], transl=trans[s:e]
        )
        out.append(res.vertices)
    return torch.cat(out)


def best_of(fn, repeats: int) -> tuple[float, torch.Tensor]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        with torch.no_grad():
            out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument(
        "--posedirs", action="store_true", help="random pose correctives on the open model"
    )
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    data = load_model_data()
    if args.posedirs:
        data.posedirs = (
            np.random.default_rng(0).normal(0, 2e-3, (data.num_vertices, 3, 207)).astype(np.float32)
        )
    model = BodyModel(data, dtype=dtype)
    g = torch.Generator().manual_seed(0)
    n = args.frames
    aa = torch.rand(n, 24, 3, generator=g, dtype=torch.float64) - 0.5
    aa[:, 0] = torch.randn(n, 3, generator=g, dtype=torch.float64)
    rot = axis_angle_to_matrix(aa).to(dtype)
    betas = (torch.randn(n, 10, generator=g, dtype=torch.float64) * 1.5).to(dtype)
    trans = torch.randn(n, 3, generator=g, dtype=torch.float64).to(dtype)
    layers: dict = {}
    smplx_vertices(
        layers, data, rot[:1], betas[:1], trans[:1], dtype
    )  # warm-up, builds nothing timed
    smplx_vertices(layers, data, rot, betas, trans, dtype)
    t_ours, v_ours = best_of(lambda: model.vertices(rot, betas, trans, chunk=CHUNK), args.repeats)
    t_smplx, v_smplx = best_of(
        lambda: smplx_vertices(layers, data, rot, betas, trans, dtype), args.repeats
    )
    err = float((v_ours.double() - v_smplx.double()).abs().max())
    print(
        f"model: open model ({data.num_vertices} vertices){' + random posedirs' if args.posedirs else ''}, "
        f"{n} frames, {args.dtype}, {torch.get_num_threads()} threads, chunks of {CHUNK}"
    )
    print(f"max |ours - smplx| over all vertices and coordinates: {err:.3e} m")
    print(f"BodyModel.vertices (ours): {t_ours:.3f} s  ({n / t_ours:.0f} frames/s)")
    print(f"smplx.SMPLLayer:           {t_smplx:.3f} s  ({n / t_smplx:.0f} frames/s)")


if __name__ == "__main__":
    main()
