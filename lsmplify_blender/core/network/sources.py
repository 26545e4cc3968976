"""Real-motion sources for training data beyond cmu_subset: CMU ASF/AMC, CMU BVH, DeepMimic.

Each loader returns a :class:`SourceMotion`: world rotations of every source node relative to
its rest pose (identity at rest), the rest positions of the nodes, and the root path, all in
SMPL's world convention (Y up, facing +Z, +X = the subject's left). ``retarget_source`` then
transfers the rotations onto SMPL's tree with the same rest calibration as the cmu_subset
clips (see ``retarget.py``), so the twist of every bone comes from the capture.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from ..body_model import SMPL_JOINT_NAMES, SMPL_PARENTS
from ..errors import InputError
from ..formats._common import read_text
from ..formats.acclaim import acclaim_forward_kinematics, asf_rest_positions, parse_amc, read_asf
from ..formats.bvh import bvh_forward_kinematics, bvh_rest_positions, parse_bvh
from ..layouts import DEEPMIMIC_NAMES, cmu_node_names
from ..model.skeleton import SMPL_CHILDREN as KIDS
from .retarget import SMPL_POS_CMU, SMPL_TO_CMU, swing_between


@dataclass
class SourceMotion:
    name: str
    glob: np.ndarray  # (T, N, 3, 3) world rotation of each node relative to its rest pose
    rest: np.ndarray  # (N, 3) rest positions of the nodes (any unit)
    root: np.ndarray  # (T, 3) root positions (same unit)
    pos: (
        np.ndarray | None
    )  # (T, N, 3) world positions of the nodes (same unit), for the tracking check
    names: list[str]
    fps: float
    drive: dict[str, str] = field(default_factory=lambda: dict(SMPL_TO_CMU))  # SMPL joint -> node
    at: dict[str, str] = field(default_factory=lambda: dict(SMPL_POS_CMU))  # node AT the SMPL joint
    no_calibration: tuple[str, ...] = ()  # SMPL joints whose bone has no source counterpart
    spread: tuple[tuple[str, ...], ...] = ()  # chains whose summed local rotation is shared out
    # a rest pose that does not face as SMPL's (DeepMimic's): P (3, 3) turns it to (``rest_to_smpl_
    # facing``); the retarget calibrates on the turned source and turns its result back
    facing: np.ndarray | None = None


def load_amc(amc, asf) -> SourceMotion:
    """CMU ASF/AMC (bone names as in cmu_subset; joints are bone start points)."""
    skel = read_asf(asf)
    motion = parse_amc(read_text(amc, "AMC"), skel, Path(amc).name)
    names, pos, rot = acclaim_forward_kinematics(skel, motion, rotations=True)
    rest = asf_rest_positions(skel, motion)
    return SourceMotion(Path(amc).stem, rot, rest - rest[0], pos[:, 0], pos, names, 120.0)


def load_bvh(path) -> SourceMotion:
    """A CMU-derived BVH in any of the dialects ``layouts`` knows, renamed to CMU node names."""
    data = parse_bvh(read_text(path, "BVH"), Path(path).name)
    pos, rot = bvh_forward_kinematics(data, rotations=True)
    raw = [n.name for n in data.nodes]
    names = [cmu_node_names(raw).get(n, n) for n in raw]
    missing = sorted({SMPL_TO_CMU[j] for j in SMPL_JOINT_NAMES} - set(names))
    if missing:
        raise InputError(
            f"{Path(path).name}: no CMU node for {missing}; only CMU-skeleton BVH files "
            f"can be retargeted by rotation transfer."
        )
    return SourceMotion(
        Path(path).stem,
        rot,
        bvh_rest_positions(data),
        pos[:, 0],
        pos,
        names,
        round(1.0 / data.frame_time),
    )


# DeepMimic's humanoid3d (``formats/deepmimic.py``) drives SMPL's spine by its root and chest and
# its neck and head by its one neck joint; its wrists are fixed to the forearms.
_DM_DRIVE = {
    "pelvis": "root",
    "spine1": "root",
    "spine2": "root",
    "spine3": "chest",
    "neck": "neck",
    "head": "neck",
}
_DM_AT = {}
for _s in ("left", "right"):
    _DM_DRIVE.update(
        {
            f"{_s}_hip": f"{_s}_hip",
            f"{_s}_knee": f"{_s}_knee",
            f"{_s}_ankle": f"{_s}_ankle",
            f"{_s}_foot": f"{_s}_ankle",
            f"{_s}_collar": "chest",
            f"{_s}_shoulder": f"{_s}_shoulder",
            f"{_s}_elbow": f"{_s}_elbow",
            f"{_s}_wrist": f"{_s}_elbow",
            f"{_s}_hand": f"{_s}_elbow",
        }
    )
    _DM_AT.update(
        {f"{_s}_{j}": f"{_s}_{j}" for j in ("hip", "knee", "ankle", "shoulder", "elbow", "wrist")}
    )
_DM_AT["pelvis"] = "root"


def rest_to_smpl_facing(rest: np.ndarray, names, left: str, right: str, low: str, high: str):
    """The rotation P (3, 3) that turns a rest pose ``rest`` (N, 3) so that it faces as SMPL's does
    (left side +X, up +Y, facing +Z): rows (left, up, left x up) measured on the ``left``/``right``
    hip and ``low``/``high`` spine nodes. DeepMimic's humanoid3d faces +X with its right side at +Z;
    the rest calibration matches bone directions only, so the facing must agree first."""
    i = {n: k for k, n in enumerate(names)}
    up = rest[i[high]] - rest[i[low]]
    up = up / np.linalg.norm(up)
    side = rest[i[left]] - rest[i[right]]
    side = side - (side @ up) * up
    side = side / np.linalg.norm(side)
    return np.stack([side, up, np.cross(side, up)])


def _deepmimic_source(name, glob, rest, pos, names, fps, turn: bool) -> SourceMotion:
    """A DeepMimic motion as a SourceMotion: turned to face as SMPL does (P glob P^T, P rest, P pos;
    ``turn``, as the training data is built), or in the file's own world with ``facing`` = P."""
    p = rest_to_smpl_facing(rest, names, "left_hip", "right_hip", "root", "neck")
    q = p if turn else np.eye(3)
    return SourceMotion(
        name,
        q @ glob @ q.T,
        (rest - rest[0]) @ q.T,
        np.zeros((glob.shape[0], 3)) if pos is None else pos[:, 0] @ q.T,
        None if pos is None else pos @ q.T,
        list(names),
        fps,
        drive=_DM_DRIVE,
        at=_DM_AT,
        no_calibration=("spine2", "left_collar", "right_collar"),
        spread=(("spine1", "spine2", "spine3"), ("neck", "head")),
        facing=None if turn else p,
    )


def load_deepmimic(path, character=None, turn: bool = True) -> SourceMotion:
    """A DeepMimic humanoid3d clip read by ``formats.deepmimic`` (on ``character``, a character file,
    or the built-in humanoid3d): turned to face as SMPL does (``turn``, the training data), or in
    the file's own world (the real-capture evaluation, which measures what ``convert`` returns)."""
    from ..formats.deepmimic import read_deepmimic

    seq = read_deepmimic(path, character)
    assert seq.rotations is not None and seq.rest_positions is not None and seq.names
    return _deepmimic_source(
        Path(path).stem.replace("humanoid3d_", "deepmimic_"),
        seq.rotations,
        seq.rest_positions,
        seq.positions,
        seq.names,
        float(seq.fps or 30.0),
        turn,
    )


def _spread(local: np.ndarray, chain: list[int]) -> np.ndarray:
    """Share the chain's summed rotation equally between its joints (same end rotation)."""
    total = local[:, chain[0]]
    for j in chain[1:]:
        total = total @ local[:, j]
    part = Rotation.from_rotvec(Rotation.from_matrix(total).as_rotvec() / len(chain)).as_matrix()
    local = local.copy()
    local[:, chain] = part[:, None]
    return local


def tracking_error_deg(src: SourceMotion, local: np.ndarray, smpl_joints: np.ndarray) -> float:
    """Largest angle (degrees, any frame) between an SMPL bone of the retarget and the source
    bone it copies, over bones whose both ends have a source node (limbs)."""
    if src.pos is None:  # e.g. retarget.py's CMU sources carry rotations only
        raise InputError(
            f"{src.name}: the source has no node positions to check the tracking against."
        )
    idx = {nm: i for i, nm in enumerate(src.names)}
    worst = 0.0
    for j, name in enumerate(SMPL_JOINT_NAMES):
        for c in KIDS[j]:
            cn = SMPL_JOINT_NAMES[c]
            if len(KIDS[j]) != 1 or name not in src.at or cn not in src.at or name == "pelvis":
                continue
            ds = smpl_joints[:, c] - smpl_joints[:, j]
            dc = src.pos[:, idx[src.at[cn]]] - src.pos[:, idx[src.at[name]]]
            cos = (ds * dc).sum(-1) / np.linalg.norm(ds, axis=-1) / np.linalg.norm(dc, axis=-1)
            worst = max(worst, float(np.degrees(np.arccos(np.clip(cos, -1, 1))).max()))
    return worst


def retarget_source(src: SourceMotion, smpl_rest: np.ndarray):
    """SMPL local rotations (T, 24, 3, 3) and pelvis path (T, 3) in metres, scaled to the SMPL
    rest skeleton ``smpl_rest`` (24, 3) by leg length. A source with ``facing`` P is calibrated
    turned (P glob P^T, P rest) and its result turned back: G = P^T G' for every joint, so only the
    root's local rotation and the path change."""
    if src.facing is not None:
        p = src.facing
        turned = replace(src, glob=p @ src.glob @ p.T, rest=src.rest @ p.T, root=src.root @ p.T)
        local, pelvis = retarget_source(replace(turned, pos=None, facing=None), smpl_rest)
        local[:, 0] = p.T @ local[:, 0]
        return local, pelvis @ p.astype(np.float32)
    idx = {nm: i for i, nm in enumerate(src.names)}
    cal = np.tile(np.eye(3), (24, 1, 1))
    for j, name in enumerate(SMPL_JOINT_NAMES):
        if len(KIDS[j]) != 1 or name in src.no_calibration:
            continue
        c = KIDS[j][0]
        d_s = smpl_rest[c] - smpl_rest[j]
        ends = src.at if name in src.at and SMPL_JOINT_NAMES[c] in src.at else src.drive
        d_c = src.rest[idx[ends[SMPL_JOINT_NAMES[c]]]] - src.rest[idx[ends[name]]]
        if np.linalg.norm(d_c) > 1e-6 and np.linalg.norm(d_s) > 1e-6:
            cal[j] = swing_between(d_s, d_c)
        elif j > 0:  # a source bone of no length (CMU BVH wrist -> hand) continues its parent's
            # (the identity bent 131_0x.bvh's hands 90 deg off their hanging forearms)
            cal[j] = cal[SMPL_PARENTS[j]]
    sel = [idx[src.drive[n]] for n in SMPL_JOINT_NAMES]
    g = src.glob[:, sel] @ cal[None]
    local = np.empty_like(g)
    local[:, 0] = g[:, 0]
    local[:, 1:] = np.swapaxes(g[:, list(SMPL_PARENTS[1:])], -1, -2) @ g[:, 1:]
    for chain in src.spread:
        local = _spread(local, [SMPL_JOINT_NAMES.index(n) for n in chain])
    leg = [idx[src.at[n]] for n in ("left_hip", "left_knee", "left_ankle")]
    leg_c = np.linalg.norm(np.diff(src.rest[leg], axis=0), axis=-1).sum()
    leg_s = np.linalg.norm(np.diff(smpl_rest[[1, 4, 7]], axis=0), axis=-1).sum()
    return local.astype(np.float32), (src.root * (leg_s / leg_c)).astype(np.float32)


# The solver's transfer drives SMPL's wrists (the palm) by CMU's hand bones, which turn the palm
# relative to the short wrist bone; the training data keeps SMPL_TO_CMU (lwrist) unchanged.
SOLVER_DRIVE = {**SMPL_TO_CMU, "left_wrist": "lhand", "right_wrist": "rhand"}


def smpl_pose_from_rotations(
    glob: np.ndarray, rest: np.ndarray, names, smpl_rest: np.ndarray
) -> np.ndarray:
    """SMPL local rotations (T, 24, 3, 3) from the bone rotations a CMU-skeleton file or a DeepMimic
    humanoid3d clip carries (``glob`` (T, N, 3, 3) relative to its rest pose ``rest`` (N, 3), any
    CMU dialect's ``names`` or DeepMimic's),
    by the training data's rotation transfer and rest calibration (``retarget_source``). A
    skeleton without the CMU nodes the transfer needs is an InputError naming them."""
    rest = np.asarray(rest, dtype=np.float64)
    if set(names) >= DEEPMIMIC_NAMES:  # DeepMimic's humanoid3d
        dm = _deepmimic_source("input", np.asarray(glob, np.float64), rest, None, names, 0.0, False)
        return retarget_source(dm, np.asarray(smpl_rest, dtype=np.float64))[0]
    to_cmu = cmu_node_names(list(names))  # once, not once per name (it normalises every name)
    cmu = [to_cmu.get(n, n) for n in names]
    need = set(SMPL_TO_CMU.values()) | set(SMPL_POS_CMU.values())
    missing = sorted(need - set(cmu))
    if missing:
        raise InputError(
            f"the skeleton has no joint for the CMU node(s) {', '.join(missing)}, which the rotation "
            f"transfer needs (only CMU-skeleton BVH and ASF/AMC files and DeepMimic clips can give "
            f"SMPL their rotations)"
        )
    src = SourceMotion(
        "input",
        np.asarray(glob, dtype=np.float64),
        rest - rest[0],
        np.zeros((glob.shape[0], 3)),
        None,
        cmu,
        0.0,
        drive=dict(SOLVER_DRIVE),
    )
    return retarget_source(src, np.asarray(smpl_rest, dtype=np.float64))[0]


def resample(local: np.ndarray, pelvis: np.ndarray, fps: float, new_fps: float):
    """Slerp the local rotations and lerp the pelvis from ``fps`` to ``new_fps``."""
    if abs(fps - new_fps) < 1e-6:
        return local, pelvis
    t = np.arange(local.shape[0]) / fps
    tn = np.arange(int(np.floor(t[-1] * new_fps + 1e-9)) + 1) / new_fps
    out = np.empty((tn.shape[0], 24, 3, 3), dtype=np.float32)
    for j in range(24):
        out[:, j] = Slerp(t, Rotation.from_matrix(local[:, j])).__call__(tn).as_matrix()
    pel = np.stack([np.interp(tn, t, pelvis[:, k]) for k in range(3)], -1)
    return out, pel.astype(np.float32)
