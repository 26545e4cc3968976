"""Retarget real mocap onto SMPL by rotation transfer and cache the pose sequences.

Train: cmu_subset/train, the cmu_raw ASF/AMC takes (01_01 and the AMC takes without their own
ASF, driven by 01.asf), the cmu_raw BVH takes 131_01..02 (01_01.bvh is the same take as 01_01.amc
and is skipped) and the DeepMimic clips, minus the takes held out for the real-capture evaluation
(core/network/heldout.py: 131_03, 11_01, two AMC takes, three DeepMimic clips). Test:
cmu_subset/test only.
Writes <out>/cmu_smpl_{train,test}.npz: local rotations as 6D (N, 24, 6) float32 at 120 fps
(other rates are resampled by slerp), pelvis positions (N, 3) metres (scaled to the open
model's leg length), clip boundaries and names. Train clips are also mirrored left/right (as
extra clips); test clips are not, and never enter training. Prints a tracking check per
source: the largest angle between a retargeted SMPL limb bone and the bone it copies
(should be ~0), and for cmu_subset the joint-position error after scaling.

Usage: PYTHONPATH=. python tools/build_training_data.py [--out out/network]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lsmplify_blender.core.body_model import (
    SMPL_JOINT_NAMES,
    SMPL_PARENTS,
    BodyModel,
    load_model_data,
)
from lsmplify_blender.core.formats.cmu_subset import (
    cmu_subset_forward_kinematics,
    read_cmu_skeleton,
)
from lsmplify_blender.core.network.heldout import is_held_out
from lsmplify_blender.core.network.retarget import (
    CMU_UNIT_M,
    SMPL_POS_CMU,
    mirror_motion,
    read_cmu_rows,
    retarget_cmu,
)
from lsmplify_blender.core.network.sources import (
    load_amc,
    load_bvh,
    load_deepmimic,
    resample,
    retarget_source,
    tracking_error_deg,
)
from lsmplify_blender.core.rotations import matrix_to_rotation_6d

MOCAP = ROOT.parent / "shared" / "data" / "mocap" / "cmu_subset"
RAW = MOCAP.parent / "cmu_raw"
DEEPMIMIC = MOCAP.parent / "deepmimic"


def extra_sources():
    """Loaders of the extra training takes (cmu_raw and DeepMimic), in a fixed order, without the
    takes held out for the real-capture evaluation (``core/network/heldout.py``)."""
    character = DEEPMIMIC / "humanoid3d_character.txt"
    takes = [
        (RAW / "01_01.amc", lambda: load_amc(RAW / "01_01.amc", RAW / "01.asf")),
        (RAW / "11_01.amc", lambda: load_amc(RAW / "11_01.amc", RAW / "11.asf")),
    ]
    takes += [
        (f, lambda f=f: load_amc(f, RAW / "01.asf"))
        for f in sorted((RAW / "amc_without_own_asf").glob("*.amc"))
    ]
    takes += [(f, lambda f=f: load_bvh(f)) for f in sorted(RAW.glob("131_*.bvh"))]
    takes += [
        (f, lambda f=f: load_deepmimic(f, character))
        for f in sorted(DEEPMIMIC.glob("humanoid3d_*.txt"))
        if f != character
    ]
    return [load for f, load in takes if not is_held_out(f, MOCAP.parent)]


def tracking_check(model, rot, pelvis, data, names, parents, offsets):
    """(max bone-direction error in degrees, mean joint error in mm after per-clip scale)."""
    cpos = cmu_subset_forward_kinematics(data, parents, offsets) * CMU_UNIT_M
    j = model.joints(torch.as_tensor(rot), torch.zeros(10)).numpy()
    j = j - j[:, :1] + pelvis[:, None]
    idx = {n: i for i, n in enumerate(names)}
    errs = []
    for k, n in enumerate(SMPL_JOINT_NAMES):
        c = [c for c in range(24) if SMPL_PARENTS[c] == k]
        if len(c) == 1 and n in SMPL_POS_CMU and SMPL_JOINT_NAMES[c[0]] in SMPL_POS_CMU:
            ds = j[:, c[0]] - j[:, k]
            dc = cpos[:, idx[SMPL_POS_CMU[SMPL_JOINT_NAMES[c[0]]]]] - cpos[:, idx[SMPL_POS_CMU[n]]]
            cos = (ds * dc).sum(-1) / np.linalg.norm(ds, axis=-1) / np.linalg.norm(dc, axis=-1)
            errs.append(np.degrees(np.arccos(np.clip(cos, -1, 1))).max())
    sj = [SMPL_JOINT_NAMES.index(n) for n in SMPL_POS_CMU]
    cj = [idx[SMPL_POS_CMU[n]] for n in SMPL_POS_CMU]
    a = j[:, sj] - j[:, :1]
    b = cpos[:, cj] - cpos[:, :1]
    s = (a * b).sum() / (b * b).sum()
    return float(max(errs)), float(np.linalg.norm(a - s * b, axis=-1).mean() * 1000)


def build(split: str, model, mirror: bool):
    names, parents, offsets = read_cmu_skeleton(MOCAP / "skeleton.json")
    rest = model.rest_joints(torch.zeros(10))[0].double().numpy()
    rots, pels, starts, clip_names, checks = [], [], [0], [], []

    def add(name, r, p):  # the clip, and its mirror image for training
        for k, (rr, pp) in enumerate([(r, p)] + ([mirror_motion(r, p)] if mirror else [])):
            rots.append(matrix_to_rotation_6d(torch.as_tensor(rr)).numpy())
            pels.append(pp)
            starts.append(starts[-1] + rr.shape[0])
            clip_names.append(name + ("_mirror" if k else ""))

    for f in sorted((MOCAP / split).rglob("*.txt")):
        data = read_cmu_rows(f)
        r, p = retarget_cmu(data, names, parents, offsets, rest)
        checks.append(tracking_check(model, r, p, data, names, parents, offsets))
        add(f"{f.parent.name}/{f.stem}", r, p)
    if split == "train":
        for load in extra_sources():
            src = load()
            r, p = retarget_source(src, rest)
            track = tracking_error_deg(
                src, r, model.joints(torch.as_tensor(r), torch.zeros(10)).numpy()
            )
            r, p = resample(r, p, src.fps, 120.0)
            print(
                f"  {src.name}: {src.glob.shape[0]} frames at {src.fps:.4g} fps -> {r.shape[0]} at 120; "
                f"max limb-direction error {track:.3f} deg"
            )
            checks.append((track, np.nan))
            add(src.name, r, p)
    return dict(
        rot6d=np.concatenate(rots).astype(np.float32),
        pelvis=np.concatenate(pels).astype(np.float32),
        starts=np.asarray(starts),
        names=np.asarray(clip_names),
        fps=np.float32(120.0),
    ), np.asarray(checks)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "out" / "network"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = BodyModel(load_model_data())
    for split, mirror in (("train", True), ("test", False)):
        t0 = time.perf_counter()
        arrays, checks = build(split, model, mirror)
        np.savez_compressed(out / f"cmu_smpl_{split}.npz", **arrays)
        print(
            f"{split}: {len(arrays['names'])} clips, {arrays['rot6d'].shape[0]} frames at 120 fps, "
            f"{time.perf_counter() - t0:.1f} s; tracking check: max limb-direction error "
            f"{checks[:, 0].max():.3f} deg, joint error after scale {np.nanmean(checks[:, 1]):.1f} mm "
            f"(proportions differ: CMU vs open model)"
        )


if __name__ == "__main__":
    main()
