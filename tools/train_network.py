"""Train the residual IK network on rotation-transfer CMU motion (CPU is enough).

Usage (the shipped checkpoint's command is in lsmplify_blender/core/data/NETWORK.md):
  PYTHONPATH=. python tools/build_training_data.py
  PYTHONPATH=. python tools/train_network.py --steps 6000 --minutes 85 --out lsmplify_blender/core/data/network.pt
Loss: 50 x mean joint distance (m) + 20 x mean vertex distance (m, 300 fixed vertices, top-4 skinning) +
1 x mean geodesic angle (rad) [+ --reaim-loss x vertex distance after re-aiming the bones at the
target keypoints, i.e. the twist error of what inference returns]. AdamW, cosine schedule with warm-up, fixed seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lsmplify_blender.core.body_model import BodyModel, load_model_data
from lsmplify_blender.core.network.kinematics import SurfacePoints, fk, reaim
from lsmplify_blender.core.network.model import ResidualIKNet, build_features, compose, save_network
from lsmplify_blender.core.network.pairs import MotionSet, make_batch
from lsmplify_blender.core.rotations import geodesic_angle

W_JOINT, W_VERT, W_GEO = 50.0, 20.0, 1.0


def loss_terms(surf, b, rot):
    gp, jp = fk(rot, b["rest"])
    lj = (jp - b["joints_tgt"]).norm(dim=-1).mean()
    vp = surf(gp, jp, b["betas"], b["rest"])
    if "verts_tgt" not in b:
        with torch.no_grad():
            b["verts_tgt"] = surf(*fk(b["rot_tgt"], b["rest"]), b["betas"], b["rest"])
    vt = b["verts_tgt"]
    lv = (vp - vt).norm(dim=-1).mean()
    lg = geodesic_angle(rot, b["rot_tgt"]).mean()
    return lj, lv, lg


def reaimed_vertex_loss(surf, b, rot):
    """Vertex error after re-aiming the bones at the target keypoints (what inference returns): twist."""
    r, _ = reaim(
        rot,
        b["rest"],
        b["kp_tgt"] - b["kp_tgt"][:, :1] + b["rest"][:, :1],
        b["mask_tgt"],
        swings_only=True,
    )
    return (surf(*fk(r, b["rest"]), b["betas"], b["rest"]) - b["verts_tgt"]).norm(dim=-1).mean()


def forward(net, b):
    feats = build_features(
        b["kp_init"],
        b["kp_tgt"],
        b["mask_init"],
        b["mask_tgt"],
        b["rot_init"],
        b["fk_init"],
        b["betas"],
        b["rest"],
    )
    return compose(b["rot_init"], net(feats))


# learning-rate schedule: linear warm-up over the first steps, then cosine decay to 1% of --lr
WARMUP_STEPS = 200
FINAL_LR_FRACTION = 0.01


def main():
    args = _parser().parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    model = BodyModel(load_model_data())
    vids = np.random.default_rng(1234).choice(model.data.num_vertices, 300, replace=False)
    surf = SurfacePoints(model, vids)
    train = MotionSet.load(Path(args.data) / "cmu_smpl_train.npz")
    test = MotionSet.load(Path(args.data) / "cmu_smpl_test.npz")
    val = make_batch(
        test,
        model,
        1024,
        np.random.default_rng(99),
        torch.Generator().manual_seed(99),
        noise_max_mm=0,
    )
    net = ResidualIKNet(hidden=args.hidden, blocks=args.blocks)
    print(f"parameters: {sum(p.numel() for p in net.parameters())}", flush=True)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: _lr_factor(k, args.steps))
    t0 = time.perf_counter()
    log = []
    step = 0
    for step in range(1, args.steps + 1):
        net.train()
        b = make_batch(train, model, args.batch, rng, gen)
        loss, lj, lv = _train_step(net, surf, b, opt, sched, args.reaim_loss)
        minutes = (time.perf_counter() - t0) / 60
        if step % 100 == 0 or step == 1:
            row = _validate(net, surf, val, step, minutes, loss, lj, lv)
            log.append(row)
            print(json.dumps(row), flush=True)
            save_network(net, args.out, meta=dict(step=step, args=vars(args), minutes=minutes))
        if minutes > args.minutes:
            print(f"time limit: stopped at step {step}", flush=True)
            break
    save_network(
        net,
        args.out,
        meta=dict(step=step, args=vars(args), minutes=(time.perf_counter() - t0) / 60, log=log),
    )
    print(
        f"saved {args.out} after {step} steps, {(time.perf_counter() - t0) / 60:.1f} min",
        flush=True,
    )


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT / "out" / "network"))
    ap.add_argument("--out", default=str(ROOT / "out" / "network" / "network.pt"))
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument(
        "--minutes", type=float, default=85.0, help="stop early (schedule still by --steps)"
    )
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--reaim-loss", type=float, default=0.0, help="weight of the vertex loss after re-aiming"
    )
    ap.add_argument("--threads", type=int, default=2)
    return ap


def _lr_factor(k: int, steps: int) -> float:
    """The learning rate of step k as a fraction of --lr (warm-up, then cosine decay)."""
    cosine = 0.5 * (1 + math.cos(math.pi * min(k, steps) / steps))
    return min(1.0, (k + 1) / WARMUP_STEPS) * (FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * cosine)


def _train_step(net, surf, b, opt, sched, reaim_loss: float):
    """One optimiser step on batch ``b``: (loss, joint loss, vertex loss)."""
    rot = forward(net, b)
    lj, lv, lg = loss_terms(surf, b, rot)
    loss = W_JOINT * lj + W_VERT * lv + W_GEO * lg
    if reaim_loss > 0:
        loss = loss + reaim_loss * reaimed_vertex_loss(surf, b, rot)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    opt.step()
    sched.step()
    return loss, lj, lv


def _validate(net, surf, val, step: int, minutes: float, loss, lj, lv) -> dict:
    """The log row of a step: its training losses and the validation batch's (mm, degrees)."""
    net.eval()
    with torch.no_grad():
        vj, vv, vg = loss_terms(surf, val, forward(net, val))
        _ij, iv, _ig = loss_terms(surf, val, val["rot_init"])
        rv = reaimed_vertex_loss(surf, val, forward(net, val))
    return dict(
        step=step,
        min=round(minutes, 2),
        loss=round(float(loss.detach()), 4),
        train_j_mm=round(float(lj.detach()) * 1000, 2),
        train_v_mm=round(float(lv.detach()) * 1000, 2),
        val_j_mm=round(float(vj) * 1000, 2),
        val_v_mm=round(float(vv) * 1000, 2),
        val_geo_deg=round(float(vg) * 57.3, 2),
        val_init_v_mm=round(float(iv) * 1000, 2),
        val_reaimed_v_mm=round(float(rv) * 1000, 2),
    )


if __name__ == "__main__":
    main()
