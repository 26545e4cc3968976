#!/usr/bin/env python
"""Build the shipped GMM pose prior from retargeted CMU *training* clips.

    PYTHONPATH=. .venv/bin/python tools/fit_pose_prior.py \
        [--data /work/shared/data/mocap/cmu_subset] [--model MODEL.npz] \
        [--out lsmplify_blender/core/data/pose_prior_gmm.npz] [--step 4] [--components 8]

Pipeline, per clip of ``cmu_subset/train`` (``test/`` is only ever *evaluated*):

1. read the 38 CMU joint positions (``formats.cmu_subset.read_cmu_subset``), CMU units ->
   metres (0.05644 m per unit), Y up already;
2. map them to SMPL joint targets. Aiming the analytic solver straight at the CMU nodes
   fails where the skeletons disagree (CMU's neck is a third of SMPL's spine3 -> neck,
   its shoulders sit 15 cm low, several nodes coincide), so the targets are rebuilt down
   SMPL's tree with SMPL's bone lengths and the capture's directions (see
   ``cmu_smpl_targets``);
3. one shape per clip from the bone lengths of the CMU layout's joints
   (``layouts.to_layout_order`` + ``Layout.smpl_joint_of``, then ``shape_inverse``), then
   ``solve_analytic`` on the rebuilt targets;
4. keep the 69 body-pose axis-angle values of every ``--step``-th frame, plus each pose
   mirrored left/right (swap left/right joints, negate the axis-angle's y and z: the
   reflection x -> -x of SMPL's symmetric rest pose);
5. fit the GMM (``pose_prior.fit_gmm``), then loosen the dimensions the data cannot
   inform (``widen_unobserved``: leaf joints stay at rest, twists follow the solver's
   rules), so layouts with hand/toe/face landmarks can still turn them;
6. save it (float32, compressed) and print sample counts and mean log-likelihoods of the
   train and test poses.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lsmplify_blender.core.analytic_ik import solve_analytic
from lsmplify_blender.core.body_model import (
    SMPL_JOINT_NAMES,
    SMPL_PARENTS,
    BodyModel,
    load_model_data,
)
from lsmplify_blender.core.formats.cmu_subset import read_cmu_skeleton, read_cmu_subset
from lsmplify_blender.core.keypoints import UNIT_SCALES
from lsmplify_blender.core.layouts import CMU, to_layout_order
from lsmplify_blender.core.model.skeleton import SMPL_MIRROR
from lsmplify_blender.core.pose_prior import fit_gmm, gmm_log_likelihood, save_gmm
from lsmplify_blender.core.rotations import kabsch, matrix_to_axis_angle, swing_rotation

DEFAULT_DATA = Path("/work/shared/data/mocap/cmu_subset")
DEFAULT_OUT = ROOT / "lsmplify_blender" / "core" / "data" / "pose_prior_gmm.npz"
MIRROR = list(SMPL_MIRROR)
_J = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}
# SMPL bone (parent -> joint) aimed along the CMU segment (from -> to), per side where needed.
# Lengths come from the SMPL model, directions from the capture.
_AIMED = [
    ("spine2", "root", "upperback"),
    ("spine3", "upperback", "thorax"),
    ("neck", "thorax", "upperneck"),
    ("head", "upperneck", "head"),
]
for _s, _c in (("left", "l"), ("right", "r")):
    _AIMED += [
        (f"{_s}_knee", f"{_c}femur", f"{_c}tibia"),
        (f"{_s}_ankle", f"{_c}tibia", f"{_c}foot"),
        (f"{_s}_foot", f"{_c}foot", f"{_c}toes"),
        (f"{_s}_elbow", f"{_c}humerus", f"{_c}radius"),
        (f"{_s}_wrist", f"{_c}radius", f"{_c}wrist"),
        (f"{_s}_hand", f"{_c}wrist", f"{_c}fingers"),
    ]


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-9)


def read_cmu_metres(path, skeleton):
    """(positions (T, N, 3) metres, node names, CMU rest positions (N, 3) metres)."""
    seq = read_cmu_subset(path, skeleton)
    _names, parents, offsets = read_cmu_skeleton(skeleton)
    rest = np.zeros_like(offsets)
    for i, p in enumerate(parents):
        rest[i] = offsets[i] + (rest[p] if p >= 0 else 0.0)
    scale = UNIT_SCALES["cmu"]
    return seq.positions * scale, list(seq.names), rest * scale


def cmu_raw_targets(pos: np.ndarray, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The CMU nodes as SMPL joint targets (T, 24, 3) by the CMU layout, and (T, 24) bool: which
    may vote on bone lengths (measured, and standing for their joint exactly: layout trust 1).

    Nodes that start where another node does (lowerneck and the clavicles at the thorax,
    the hands at the wrists) measure no bone: not measured.
    """
    kp, conf, _ = to_layout_order(CMU, pos, None, names)
    measured = (conf > 0) & (CMU.trust_array() == 1.0)
    for name in ("lowerneck", "lclavicle", "rclavicle", "lhand", "rhand"):
        measured[:, CMU.keypoints.index(name)] = False
    targets = np.full((pos.shape[0], 24, 3), np.nan)
    smpl_measured = np.zeros((pos.shape[0], 24), dtype=bool)
    for k, j in enumerate(CMU.smpl_joint_of()):
        if j >= 0:
            targets[:, j], smpl_measured[:, j] = kp[:, k], measured[:, k]
    return targets, smpl_measured


def cmu_smpl_targets(
    pos: np.ndarray, names: list[str], cmu_rest: np.ndarray, smpl_rest: torch.Tensor
) -> torch.Tensor:
    """SMPL joint targets (T, 24, 3) with SMPL's bone lengths and the capture's directions.

    Aiming the analytic solver straight at the CMU nodes fails where the two skeletons
    disagree (CMU's neck is a third of SMPL's spine3->neck, its shoulders sit 15 cm lower),
    so the targets are rebuilt down SMPL's tree (SMPL-IKS "PR-C"):
    - pelvis children (hips, spine1): rigid with the pelvis, whose rotation is the Kabsch
      fit of the CMU hip nodes to their CMU rest offsets;
    - spine1 -> spine2 along CMU's lower back, spine2 -> spine3 along its upper back;
    - collars: rigid with a chest frame (Kabsch of the CMU spine, neck and shoulder line);
      shoulders: the CMU clavicle's swing in that chest frame, applied to SMPL's collar bone;
    - every other bone: SMPL length along the CMU segment it corresponds to (``_AIMED``).
      Spine and neck bones are first turned by the angle between the two skeletons' rest
      directions (in the pelvis / chest frame): both rests are an upright neutral trunk but
      their joints sit on different points of the curved spine (CMU's head segment leans
      back 4 degrees, SMPL's neck->head forward 19), so raw directions would bias every
      pose. Limbs keep raw directions: CMU's rest limbs are not a neutral stance (legs
      splayed 20 degrees) while the captured positions are anatomical.
    """
    dt = smpl_rest.dtype
    P = torch.as_tensor(pos, dtype=dt)
    R0 = torch.as_tensor(cmu_rest, dtype=dt)
    idx = {n: i for i, n in enumerate(names)}

    def node(n):
        return P[:, idx[n]]

    def rest(n):
        return R0[idx[n]]

    t = P.shape[0]
    out = [None] * 24

    def frame_fit(ends, weights):
        src = torch.stack([rest(b) - rest(a) for a, b in ends]).expand(t, -1, -1)
        dst = torch.stack([node(b) - node(a) for a, b in ends], 1)
        w = torch.tensor(weights, dtype=dt).expand(t, -1)
        return kabsch(src, dst, w)

    # the hip nodes are rigid with the root (their hipjoint rotations are zero)
    pelvis = frame_fit([("root", "lfemur"), ("root", "rfemur")], [1.0, 1.0])
    chest = frame_fit(
        [("upperback", "thorax"), ("thorax", "upperneck"), ("rhumerus", "lhumerus")],
        [1.0, 1.0, 1.0],
    )
    out[0] = 0.5 * (node("lfemur") + node("rfemur")) + (
        pelvis @ (smpl_rest[0] - 0.5 * (smpl_rest[1] + smpl_rest[2]))
    )
    for j in ("left_hip", "right_hip", "spine1"):
        out[_J[j]] = out[0] + pelvis @ (smpl_rest[_J[j]] - smpl_rest[0])
    aimed = {_J[j]: (a, b) for j, a, b in _AIMED}
    calibrated = {_J["spine2"]: pelvis, _J["spine3"]: chest, _J["neck"]: chest, _J["head"]: chest}
    for j in range(1, 24):
        p = SMPL_PARENTS[j]
        length = (smpl_rest[j] - smpl_rest[p]).norm()
        if j in aimed:
            a, b = aimed[j]
            d = _unit(node(b) - node(a))
            if j in calibrated:  # turn by the rest-pose difference, in the body frame
                f = calibrated[j]
                q = swing_rotation(_unit(rest(b) - rest(a)), _unit(smpl_rest[j] - smpl_rest[p]))
                d = (f @ (q @ (f.transpose(-1, -2) @ d[..., None])))[..., 0]
            out[j] = out[p] + length * d
        elif SMPL_JOINT_NAMES[j].endswith("collar"):
            out[j] = out[p] + chest @ (smpl_rest[j] - smpl_rest[p])
        elif SMPL_JOINT_NAMES[j].endswith("shoulder"):
            c = "l" if j == _J["left_shoulder"] else "r"
            local = _unit(
                (chest.transpose(-1, -2) @ (node(f"{c}humerus") - node("thorax"))[..., None])[
                    ..., 0
                ]
            )
            swing = swing_rotation(_unit(rest(f"{c}humerus") - rest("thorax")).expand(t, 3), local)
            out[j] = out[p] + (chest @ (swing @ (smpl_rest[j] - smpl_rest[p]))[..., None])[..., 0]
    return torch.stack(out, 1)


def clip_betas(model: BodyModel, targets, measured) -> torch.Tensor:
    """One shape per clip from its bone lengths; zeros if the shape inverse is unavailable."""
    try:
        from lsmplify_blender.core.shape_inverse import fit_betas, observed_bone_lengths
    except ImportError:
        return torch.zeros(model.num_betas, dtype=model.dtype)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # bones this skeleton never measures
        return fit_betas(model, observed_bone_lengths(targets, measured)).betas


def retarget_clip(model: BodyModel, path, skeleton, step: int = 1, max_frames: int | None = None):
    """SMPL fit of one CMU clip by positions: (rotmats (T,24,3,3), trans (T,3), betas (nb,))."""
    pos, names, cmu_rest = read_cmu_metres(path, skeleton)
    pos = pos[::step][:max_frames]
    raw, raw_measured = cmu_raw_targets(pos, names)
    betas = clip_betas(model, raw, raw_measured)
    smpl_rest = model.rest_joints(betas)[0]
    targets = cmu_smpl_targets(pos, names, cmu_rest, smpl_rest)
    res = solve_analytic(model, betas, targets, torch.ones(targets.shape[:2], dtype=model.dtype))
    return res.rotmats, res.trans, betas


def body_pose(rotmats: torch.Tensor) -> np.ndarray:
    """(T, 69) axis-angle of joints 1..23."""
    return matrix_to_axis_angle(rotmats[:, 1:]).reshape(-1, 69).double().cpu().numpy()


def mirror_body_pose(pose69: np.ndarray) -> np.ndarray:
    """Left/right mirror of (N, 69) body poses."""
    aa = np.concatenate([np.zeros((pose69.shape[0], 1, 3)), pose69.reshape(-1, 23, 3)], 1)
    aa = aa[:, MIRROR] * np.array([1.0, -1.0, -1.0])
    return aa[:, 1:].reshape(-1, 69)


def widen_unobserved(gmm: dict, samples: np.ndarray, free_std: float, floor_std: float):
    """Loosen the prior where the training poses carry no information (in place).

    Retargeting from positions cannot see the twist about a bone: the analytic solver sets
    it by a rule (zero, or the hinge-plane twist), and leaves it at rest where a joint has
    nothing to aim at (feet, hands, head). Left as fitted, those dimensions would get the
    EM ridge as their variance (std 0.01 rad), a prior forbidding rotations real bodies
    make. Dimensions that never move become an independent N(0, free_std^2); those whose
    sample std is below ``floor_std`` get ``floor_std^2`` added to their variance.
    Returns (fixed dims, floored dims).
    """
    std = samples.std(0)
    fixed = np.nonzero(std < 1e-4)[0]
    floored = np.nonzero((std >= 1e-4) & (std < floor_std))[0]
    gmm["covars"][:, floored, floored] += floor_std**2
    gmm["means"][:, fixed] = 0.0
    gmm["covars"][:, fixed, :] = 0.0
    gmm["covars"][:, :, fixed] = 0.0
    gmm["covars"][:, fixed, fixed] = free_std**2
    return fixed, floored


def collect(model, folder: Path, skeleton: Path, step: int) -> tuple[np.ndarray, int]:
    clips = sorted(folder.rglob("*.txt"))
    if not clips:
        raise SystemExit(f"no clips under {folder}")
    poses = [body_pose(retarget_clip(model, c, skeleton, step)[0]) for c in clips]
    return np.concatenate(poses), len(clips)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    torch.set_grad_enabled(False)

    t0 = time.perf_counter()
    model = BodyModel(load_model_data(args.model))
    skeleton = args.data / "skeleton.json"
    train, n_train_clips = collect(model, args.data / "train", skeleton, args.step)
    train_all = np.concatenate([train, mirror_body_pose(train)])
    t1 = time.perf_counter()
    print(
        f"train: {n_train_clips} clips, {len(train)} poses (every {args.step}th frame), "
        f"{len(train_all)} with mirrors; retargeting took {t1 - t0:.1f} s"
    )

    gmm = fit_gmm(train_all, args.components, seed=args.seed, reg_covar=args.reg)
    print(
        f"GMM: {args.components} components, {gmm['iterations']} EM iterations, {time.perf_counter() - t1:.1f} s; "
        f"weights {np.round(gmm['weights'], 3).tolist()}"
    )
    _report_widened(*widen_unobserved(gmm, train_all, args.free_std, args.floor_std), args)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_gmm(
        args.out,
        gmm,
        source="CMU mocap (cmu_subset/train), retargeted by positions with solve_analytic",
        samples=len(train_all),
        step=args.step,
        model=model.data.name,
        credit="The data used in this project was obtained from mocap.cs.cmu.edu. The database was "
        "created with funding from NSF EIA-0196217.",
    )
    print(f"saved {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")

    _report_likelihood(model, args, skeleton, train, train_all, gmm)
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument(
        "--model", default=None, help="SMPL-format model (default: the embedded open model)"
    )
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--step", type=int, default=4, help="keep every n-th frame (120 fps data)")
    ap.add_argument("--components", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--reg", type=float, default=1e-4, help="ridge added to each covariance during EM (rad^2)"
    )
    ap.add_argument(
        "--free-std",
        type=float,
        default=0.5,
        help="std (rad) of the independent Gaussian for dimensions the data never moves",
    )
    ap.add_argument(
        "--floor-std",
        type=float,
        default=0.1,
        help="dimensions whose sample std is below this (twists the retargeting cannot see) get "
        "this std added to their variance in every component",
    )
    return ap


def _report_widened(fixed, floored, args) -> None:
    """Print the dimensions the data never moved and those given the variance floor."""

    def name(dims):
        return ", ".join(f"{SMPL_JOINT_NAMES[1 + d // 3]}.{'xyz'[d % 3]}" for d in dims)

    print(
        f"never moved, given an independent std {args.free_std} rad: {len(fixed)} dims "
        f"({', '.join(sorted({SMPL_JOINT_NAMES[1 + d // 3] for d in fixed}))})"
    )
    print(
        f"std below {args.floor_std} rad, variance floor added: {len(floored)} dims ({name(floored)})"
    )


def _report_likelihood(model, args, skeleton, train, train_all, gmm) -> None:
    """Print the mean log-likelihood of train and held-out test poses (and their mirrors)."""
    test, n_test_clips = collect(model, args.data / "test", skeleton, args.step)
    ll_train = gmm_log_likelihood(train, gmm).mean()
    ll_train_all = gmm_log_likelihood(train_all, gmm).mean()
    ll_test = gmm_log_likelihood(test, gmm)
    ll_test_m = gmm_log_likelihood(mirror_body_pose(test), gmm)
    print(
        f"mean log-likelihood (69-d, nats): train {ll_train:.2f} (with mirrors {ll_train_all:.2f}), "
        f"test {ll_test.mean():.2f} ({n_test_clips} clips, {len(test)} poses; mirrored test {ll_test_m.mean():.2f}; "
        f"test median {np.median(ll_test):.2f})"
    )


if __name__ == "__main__":
    raise SystemExit(main())
