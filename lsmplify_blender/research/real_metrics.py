"""What the real-capture evaluation measures on one solved take (see ``real_eval.py``).

Counterparts of SMPL's segments in a captured skeleton, by vocabulary (CMU ASF bone names, which
every CMU dialect is mapped onto, or DeepMimic's joint names):
- orientation: the SMPL joint whose world rotation turns the segment, and the captured node
  whose world rotation turns the same body part (a CMU node's rotation turns the bone that
  starts there: lfemur = thigh, lhand = hand);
- directions: segment end points, as SMPL joints / landmarks and captured nodes (End Sites and
  ASF bone ends included: head_end = head top).
Segments without a captured counterpart (DeepMimic has no hands, toes, head top or neck bone)
are left out, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..core import metrics
from ..core.body_model import SMPL_JOINT_NAMES

_J = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}
SIDES = (("left", "l"), ("right", "r"))

# orientation segments: label -> SMPL joint whose world rotation it is
ORIENT_SEGMENTS = {"pelvis": 0, "chest": 9, "neck": 12, "head": 15}
for _side, _s in SIDES:
    ORIENT_SEGMENTS.update(
        {
            f"{_side}_thigh": _J[f"{_side}_hip"],
            f"{_side}_shin": _J[f"{_side}_knee"],
            f"{_side}_foot": _J[f"{_side}_ankle"],
            f"{_side}_upper_arm": _J[f"{_side}_shoulder"],
            f"{_side}_forearm": _J[f"{_side}_elbow"],
            f"{_side}_hand": _J[f"{_side}_wrist"],
        }
    )
ORIENT_NODES = {
    "cmu": {"pelvis": "root", "chest": "thorax", "neck": "upperneck", "head": "head"},
    "deepmimic": {
        "pelvis": "root",
        "chest": "chest",
        "head": "neck",
    },  # DeepMimic's neck joint turns the head
}
for _side, _s in SIDES:
    ORIENT_NODES["cmu"].update(
        {
            f"{_side}_thigh": f"{_s}femur",
            f"{_side}_shin": f"{_s}tibia",
            f"{_side}_foot": f"{_s}foot",
            f"{_side}_upper_arm": f"{_s}humerus",
            f"{_side}_forearm": f"{_s}radius",
            f"{_side}_hand": f"{_s}hand",
        }
    )
    ORIENT_NODES["deepmimic"].update(
        {
            f"{_side}_thigh": f"{_side}_hip",
            f"{_side}_shin": f"{_side}_knee",
            f"{_side}_foot": f"{_side}_ankle",
            f"{_side}_upper_arm": f"{_side}_shoulder",
            f"{_side}_forearm": f"{_side}_elbow",
        }
    )

# direction end points: SMPL side (joint index, landmark name or a tuple averaged) and capture side
SMPL_POINTS: dict[str, int | str | tuple[int, ...]] = {
    "neck_base": 12,
    "head_base": 15,
    "head_top": "head_top",
    "mid_hip": (1, 2),
}
CAPTURE_POINTS = {
    "cmu": {
        "neck_base": "upperneck",
        "head_base": "head",
        "head_top": "head_end",
        "mid_hip": ("lfemur", "rfemur"),
    },
    "deepmimic": {"neck_base": "neck", "mid_hip": ("left_hip", "right_hip")},
}
for _side, _s in SIDES:
    SMPL_POINTS.update(
        {
            f"hip_{_s}": _J[f"{_side}_hip"],
            f"knee_{_s}": _J[f"{_side}_knee"],
            f"ankle_{_s}": _J[f"{_side}_ankle"],
            f"ball_{_s}": _J[f"{_side}_foot"],
            f"shoulder_{_s}": _J[f"{_side}_shoulder"],
            f"elbow_{_s}": _J[f"{_side}_elbow"],
            f"wrist_{_s}": _J[f"{_side}_wrist"],
            f"hand_{_s}": _J[f"{_side}_hand"],
        }
    )
    CAPTURE_POINTS["cmu"].update(
        {
            f"hip_{_s}": f"{_s}femur",
            f"knee_{_s}": f"{_s}tibia",
            f"ankle_{_s}": f"{_s}foot",
            f"ball_{_s}": f"{_s}toes",
            f"shoulder_{_s}": f"{_s}humerus",
            f"elbow_{_s}": f"{_s}radius",
            f"wrist_{_s}": f"{_s}hand",
            f"hand_{_s}": f"{_s}fingers",
        }
    )  # lhand starts at the wrist (lwrist is the forearm's twist segment: core/layouts.py, CMU's
    # hand), lfingers at the finger base
    CAPTURE_POINTS["deepmimic"].update(
        {
            f"hip_{_s}": f"{_side}_hip",
            f"knee_{_s}": f"{_side}_knee",
            f"ankle_{_s}": f"{_side}_ankle",
            f"shoulder_{_s}": f"{_side}_shoulder",
            f"elbow_{_s}": f"{_side}_elbow",
            f"wrist_{_s}": f"{_side}_wrist",
        }
    )
DIRECTIONS = {
    "neck": ("neck_base", "head_base"),
    "head": ("head_base", "head_top"),
    "torso": ("mid_hip", "neck_base"),
    "hip_line": ("hip_r", "hip_l"),
    "shoulder_line": ("shoulder_r", "shoulder_l"),
}
for _side, _s in SIDES:
    DIRECTIONS.update(
        {
            f"{_side}_thigh": (f"hip_{_s}", f"knee_{_s}"),
            f"{_side}_shin": (f"knee_{_s}", f"ankle_{_s}"),
            f"{_side}_foot": (f"ankle_{_s}", f"ball_{_s}"),
            f"{_side}_upper_arm": (f"shoulder_{_s}", f"elbow_{_s}"),
            f"{_side}_forearm": (f"elbow_{_s}", f"wrist_{_s}"),
            f"{_side}_hand": (f"wrist_{_s}", f"hand_{_s}"),
        }
    )
# the foot point whose floor contact is tested, per vocabulary (SMPL point, capture point)
FOOT_POINTS = {"cmu": ("ball", "ball"), "deepmimic": ("ankle", "ankle")}
HEAD_FOLD_DEG = 45.0  # a neck direction this far off the captured one: the head is folded


@dataclass
class TakeResult:
    """Per-frame errors of one solver on one take (arrays over the frames solved)."""

    frames: int
    seconds: float
    orientation: dict[str, np.ndarray] = field(default_factory=dict)  # segment -> (T,) deg
    direction: dict[str, np.ndarray] = field(default_factory=dict)  # segment -> (T,) deg
    mpve: np.ndarray | None = None  # (T,) mm against the rotation-transfer ground truth
    fit: dict[str, np.ndarray] = field(default_factory=dict)  # keypoint -> (T,) mm (NaN unmeasured)
    # the same for the position keypoints only (no aim-only end points), as captured and to the
    # calibrated keypoints (the solver's keypoint_offsets; = fit_positions when not calibrated)
    fit_positions: dict[str, np.ndarray] = field(default_factory=dict)
    fit_calibrated: dict[str, np.ndarray] = field(default_factory=dict)
    skate: list[float] = field(default_factory=list)  # solved foot speed in contact frames (mm/s)
    skate_source: list[float] = field(default_factory=list)  # the capture's own, same frames
    jitter: float = float("nan")  # m/s^3 of the solved joints
    jitter_input: float = float("nan")  # m/s^3 of the input keypoints measured in every frame
    extra: dict = field(default_factory=dict)


def capture_point(capture, name: str, frames: slice) -> np.ndarray | None:
    spec = CAPTURE_POINTS[capture.vocabulary].get(name)
    names = spec if isinstance(spec, tuple) else (spec,)
    idx = [capture.index(n) for n in names] if spec else [None]
    if any(i is None for i in idx):
        return None
    return capture.pos[frames][:, idx].mean(1)


def smpl_point(joints: np.ndarray, landmarks: dict[str, np.ndarray], name: str) -> np.ndarray:
    spec = SMPL_POINTS[name]
    if isinstance(spec, str):
        return landmarks[spec]
    if isinstance(spec, tuple):
        return joints[:, list(spec)].mean(1)
    return joints[:, spec]


def orientation_errors(capture, g_rot: np.ndarray, frames: slice) -> dict[str, np.ndarray]:
    """segment -> (T,) orientation error (deg) after the best constant per-take offset."""
    if capture.rot is None:
        return {}
    out = {}
    for seg, node in ORIENT_NODES[capture.vocabulary].items():
        i = capture.index(node)
        if i is not None:
            out[seg] = metrics.orientation_error_deg(
                capture.rot[frames, i], g_rot[:, ORIENT_SEGMENTS[seg]]
            )
    return out


def direction_errors(capture, joints, landmarks, frames: slice) -> dict[str, np.ndarray]:
    """segment -> (T,) direction error (deg), no offset, for segments whose ends were captured."""
    out = {}
    for seg, (a, b) in DIRECTIONS.items():
        ca, cb = capture_point(capture, a, frames), capture_point(capture, b, frames)
        missing_landmark = any(
            isinstance(SMPL_POINTS[p], str) and SMPL_POINTS[p] not in landmarks for p in (a, b)
        )
        if ca is None or cb is None or missing_landmark:
            continue
        out[seg] = metrics.direction_error_deg(
            cb - ca, smpl_point(joints, landmarks, b) - smpl_point(joints, landmarks, a)
        )
    return out


def foot_skating(
    capture, joints, unit_m: float, fps: float, frames: slice
) -> tuple[list[float], list[float]]:
    """Mean horizontal speed (mm/s) of the solved foot point and of the captured one over the frames
    where the captured foot is on the floor (within 3 cm of its lowest height), per foot."""
    smpl_name, cap_name = FOOT_POINTS[capture.vocabulary]
    solved, source = [], []
    for _, s in SIDES:
        cap = capture_point(capture, f"{cap_name}_{s}", frames)
        if cap is None:
            continue
        cap = cap * unit_m
        contact = metrics.contact_frames(cap[:, 1])
        if contact.sum() < 2:
            continue
        sol = joints[:, SMPL_POINTS[f"{smpl_name}_{s}"]]
        solved.append(float(metrics.horizontal_speed(sol, fps)[contact].mean() * 1000))
        source.append(float(metrics.horizontal_speed(cap, fps)[contact].mean() * 1000))
    return solved, source


def feet_figures(sol) -> dict:
    """A solution's foot figures (``contacts.feet_report``): skating of the planted foot point over
    the contact frames found in the source (and the source's own), and the % of frames with a
    vertex more than 1 cm below the ground."""
    feet = getattr(sol, "feet", None) or {}
    return {k: feet[k] for k in ("skate_mm_s", "skate_source_mm_s", "penetration_pct") if k in feet}


def feet_summary(rows, weighted_mean) -> dict:
    """``feet_figures`` of several takes, frame-weighted: planted skate, the source's, below-ground %."""

    def pooled(key):
        return weighted_mean(
            [(r.extra[key], r.frames) for r in rows if r.extra.get(key) is not None]
        )

    return dict(
        planted_skate_mm_s=pooled("skate_mm_s"),
        planted_skate_source_mm_s=pooled("skate_source_mm_s"),
        below_ground_pct=pooled("penetration_pct"),
    )


def keypoint_fit(
    prepared, model, rotmats, betas, trans, offsets=None, positions_only: bool = False
) -> dict[str, np.ndarray]:
    """keypoint -> (T,) distance (mm) of the solved layout keypoint to the measured input (NaN unmeasured);
    with ``offsets`` (K, 3) of the calibrated keypoints (``core.calibration``); ``positions_only``
    leaves out the aim-only end points (as the solver's fit error does)."""
    from ..core.calibration import calibrated_points

    if offsets is None:
        gen = prepared.layout.generate(model, rotmats, betas, trans).cpu().numpy()
    else:
        gen = calibrated_points(model, prepared.layout, rotmats, betas, trans, offsets)
    d = np.linalg.norm(gen - prepared.positions, axis=-1) * 1000.0
    d = np.where(prepared.measured & np.isfinite(d), d, np.nan)
    if positions_only:
        d[:, prepared.layout.aim_only_mask()] = np.nan
    return {
        k: d[:, i] for i, k in enumerate(prepared.layout.keypoints) if np.isfinite(d[:, i]).any()
    }


MPVE_VERTEX_STEP = (
    8  # every 8th mesh vertex (862 of SMPL's 6890): the same mean within 0.5%, 8x less skinning
)


def pose_vertices(model, rotmats, betas) -> np.ndarray:
    """(T, V/MPVE_VERTEX_STEP, 3) every MPVE_VERTEX_STEP-th mesh vertex of a pose on a body (betas),
    the root at its rest place, skinned by the model's own blend skinning (pose correctives included)."""
    ids = np.arange(0, model.v_template.shape[0], MPVE_VERTEX_STEP)
    rot = torch.as_tensor(rotmats, dtype=model.dtype)
    return np.concatenate(
        [
            model.skin_points(rot[s : s + 256], betas, None, ids).cpu().numpy()  # bounds memory
            for s in range(0, int(rot.shape[0]), 256)
        ]
    )


class PoseError:
    """Pose MPVE (mm) of solved poses against one ground-truth motion: the vertices of both poses on
    the same (solved) body, so the pose alone - global orientation and every joint's twist - is
    compared. The ground truth's vertices are kept per body (the solvers mostly share the betas)."""

    def __init__(self, model, truth_rotmats):
        self.model, self.truth, self._cache = model, truth_rotmats, {}

    def __call__(self, rotmats, betas) -> np.ndarray:
        k = int(rotmats.shape[0])
        key = (k, np.asarray(torch.as_tensor(betas).detach().cpu(), dtype=np.float64).tobytes())
        if key not in self._cache:
            self._cache[key] = pose_vertices(self.model, self.truth[:k], betas)
        return metrics.mpve(
            pose_vertices(self.model, rotmats, betas), self._cache[key], reduce=False
        )


def solved_body(model, rotmats, betas, trans):
    """World rotations (T, 24, 3, 3), joints (T, 24, 3) and landmarks {name: (T, 3)} of a solution."""
    rot = torch.as_tensor(rotmats, dtype=model.dtype)
    b = model.betas_tensor(betas, rot.shape[0])
    g_rot, joints = model.global_transforms(rot, model.rest_joints(b))
    tr = torch.as_tensor(trans, dtype=model.dtype)[:, None]
    names = [n for n in ("head_top",) if n in model.data.landmarks]
    landmarks = {}
    if names:
        lms = (
            model.landmarks(rot, betas, torch.as_tensor(trans, dtype=model.dtype), names)
            .cpu()
            .numpy()
        )
        landmarks = {n: lms[:, k] for k, n in enumerate(names)}
    return (
        g_rot.cpu().numpy().astype(np.float64),
        (joints + tr).cpu().numpy().astype(np.float64),
        landmarks,
    )
