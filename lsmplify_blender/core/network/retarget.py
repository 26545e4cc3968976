"""Rotation-transfer retargeting of CMU motion onto SMPL's 24-joint tree (numpy).

The cmu_subset clips store local exponential maps in the row-vector convention
(R_i = E(r_i) R_parent). In column vectors the global rotation of node i is
G_i = G_parent E(r_i)^T, with rest frames aligned with the world (Y up, +X = the
subject's left, facing +Z) exactly as SMPL's rest frames are.

Transfer: every SMPL joint j is driven by one CMU node n(j) whose rotation moves the same
bone. SMPL's global rotation is G^S_j = G^C_n(j) C_j, where the rest calibration C_j is the
minimal rotation taking SMPL's rest bone direction onto CMU's (so the CMU rest pose, legs
splayed ~20 degrees, maps onto the same pose of SMPL); joints with several or no children
use C_j = I. Local rotations follow as L_j = G^S_parent^T G^S_j. Twist about every bone
comes from the capture itself (which a position retarget cannot give).
"""

from __future__ import annotations

import numpy as np

from ..formats.cmu_subset import cmu_forward_kinematics
from ..model.kinematics import rest_positions
from ..model.rotations import swing_rotation
from ..model.skeleton import SMPL_MIRROR

CMU_UNIT_M = 0.05644
# SMPL joint -> CMU node name whose rotation drives the same bone
SMPL_TO_CMU = {
    "pelvis": "root",
    "left_hip": "lfemur",
    "right_hip": "rfemur",
    "spine1": "lowerback",
    "left_knee": "ltibia",
    "right_knee": "rtibia",
    "spine2": "upperback",
    "left_ankle": "lfoot",
    "right_ankle": "rfoot",
    "spine3": "thorax",
    "left_foot": "ltoes",
    "right_foot": "rtoes",
    "neck": "upperneck",
    "left_collar": "lclavicle",
    "right_collar": "rclavicle",
    "head": "head",
    "left_shoulder": "lhumerus",
    "right_shoulder": "rhumerus",
    "left_elbow": "lradius",
    "right_elbow": "rradius",
    "left_wrist": "lwrist",
    "right_wrist": "rwrist",
    "left_hand": "lhand",
    "right_hand": "rhand",
}
# CMU node standing at each SMPL joint's position (for the tracking check); None = no match
SMPL_POS_CMU = {
    "pelvis": "root",
    "left_hip": "lfemur",
    "right_hip": "rfemur",
    "left_knee": "ltibia",
    "right_knee": "rtibia",
    "left_ankle": "lfoot",
    "right_ankle": "rfoot",
    "left_foot": "ltoes",
    "right_foot": "rtoes",
    "left_shoulder": "lhumerus",
    "right_shoulder": "rhumerus",
    "left_elbow": "lradius",
    "right_elbow": "rradius",
    "left_wrist": "lwrist",
    "right_wrist": "rwrist",
}
MIRROR = list(SMPL_MIRROR)


def swing_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The minimal rotation (3, 3) taking direction a (3,) onto b (3,): ``rotations.swing_rotation``."""
    return swing_rotation(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))


def cmu_global_rotations(data: np.ndarray, parents: np.ndarray):
    """(T, 3 + 3N) rows -> column-convention global rotations (T, N, 3, 3) and root positions (T, 3)."""
    glob, _, root = cmu_forward_kinematics(data, parents, np.zeros((len(parents), 3)))
    return glob, root


def cmu_rest_positions(parents, offsets) -> np.ndarray:
    """(N, 3) rest node positions from the offsets, root at the origin."""
    off = np.asarray(offsets, dtype=np.float64).copy()
    off[0] = 0.0
    return rest_positions(off, parents)


def retarget_cmu(data: np.ndarray, names, parents, offsets, smpl_rest: np.ndarray):
    """CMU subset rows -> SMPL local rotations (T, 24, 3, 3) and pelvis positions (T, 3) in metres,
    scaled to the SMPL rest skeleton ``smpl_rest`` (24, 3) by leg length."""
    from .sources import SourceMotion, retarget_source  # sources builds on this module

    glob, root = cmu_global_rotations(data, parents)
    src = SourceMotion(
        "cmu", glob, cmu_rest_positions(parents, offsets), root, None, list(names), 120.0
    )
    return retarget_source(src, smpl_rest)


def mirror_motion(rotmats: np.ndarray, pelvis: np.ndarray):
    """Left/right mirror about the x = 0 plane: R' = M R M with M = diag(-1, 1, 1), sides swapped."""
    m = np.diag([-1.0, 1.0, 1.0]).astype(rotmats.dtype)
    r = (m @ rotmats @ m)[:, MIRROR]
    p = pelvis.copy()
    p[:, 0] *= -1
    return r, p


def read_cmu_rows(path) -> np.ndarray:
    return np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
