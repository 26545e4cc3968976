"""Anatomical checks of a solution against the measured keypoints, frame by frame.

The fit error alone cannot tell a folded head from a good one: on CMU skeletons the captured
neck and head sit where SMPL's cannot (another torso length), so a pose that bends the head
into the chest can be *closer* to those points than the right one (network 48.7 mm vs analytic
50.1 mm on 01_01.bvh with the neck 88 deg off). These checks look at what a viewer sees:

- segment directions: for every pair of measured keypoints that are SMPL joints and parent and
  child (thigh, shin, foot, upper arm, forearm, hand, neck) or span a rigid line (hips,
  shoulders, torso), the angle between the solved segment and the measured one;
- the head above the neck's plane: (head - neck) . (neck - mid-hip) > 0 for the solved joints;
- the pelvis kept: the solved pelvis within PELVIS_DRIFT_M of a reference solution's.

``prefer_reference`` picks per frame the reference (analytic IK) where a candidate (the
network, a plug-in pass) is anatomically worse; callers use it as the last word.
"""

from __future__ import annotations

import numpy as np
import torch

from .body_model import SMPL_JOINT_NAMES, SMPL_PARENTS

_J = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}
# rigid lines that are not bones of the tree (both ends must be measured)
LINES = [(_J["left_hip"], _J["right_hip"]), (_J["left_shoulder"], _J["right_shoulder"])]
# a candidate may differ from the reference by this much on a segment's direction before the
# frame counts as worse: well above the 1-4 deg by which two good solutions differ on real takes
# (the twist a network adds does not move directions; re-aiming puts both on the same bones)
GUARD_DEG = 5.0
PELVIS_DRIFT_M = 0.05  # half a pelvis width: a network pass that moves the root more has failed


def _np(x) -> np.ndarray:
    return (
        x.detach().cpu().double().numpy() if torch.is_tensor(x) else np.asarray(x, dtype=np.float64)
    )


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(n > 1e-9, n, np.nan)


def segments(measured: np.ndarray) -> list[tuple[int, int]]:
    """(parent, child) SMPL joint pairs whose both ends are measured in some frame; measured (T, 24) bool."""
    seen = measured.any(0)
    out = [(SMPL_PARENTS[c], c) for c in range(1, 24) if seen[c] and seen[SMPL_PARENTS[c]]]
    return out + [(a, b) for a, b in LINES if seen[a] and seen[b]]


def direction_errors_deg(joints, targets, measured: np.ndarray, pairs=None) -> np.ndarray:
    """(T, S) angle (deg) between each solved segment and the measured one; NaN where an end is
    not measured in that frame. ``joints`` (T, 24, 3) solved, ``targets`` (T, 24, 3) measured."""
    j, t = _np(joints), _np(targets)
    pairs = segments(measured) if pairs is None else pairs
    if not pairs:
        return np.zeros((j.shape[0], 0))
    a, b = np.array(pairs).T
    cos = (_unit(j[:, b] - j[:, a]) * _unit(t[:, b] - t[:, a])).sum(-1)
    err = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    return np.where(measured[:, a] & measured[:, b], err, np.nan)


def head_above_neck(joints) -> np.ndarray:
    """(T,) bool: the head joint lies above the plane through the neck normal to the torso."""
    j = _np(joints)
    up = j[:, _J["neck"]] - 0.5 * (j[:, _J["left_hip"]] + j[:, _J["right_hip"]])
    return ((j[:, _J["head"]] - j[:, _J["neck"]]) * up).sum(-1) > 0


def worse_frames(
    candidate_joints, reference_joints, targets, measured: np.ndarray, guard_deg: float = GUARD_DEG
) -> np.ndarray:
    """(T,) bool: frames where the candidate is anatomically worse than the reference: a segment
    direction more than ``guard_deg`` further from the measured one, the head dropped below the
    neck's plane (where the reference keeps it above), or the pelvis moved by more than
    PELVIS_DRIFT_M."""
    pairs = segments(measured)
    e_c = direction_errors_deg(candidate_joints, targets, measured, pairs)
    e_r = direction_errors_deg(reference_joints, targets, measured, pairs)
    with np.errstate(invalid="ignore"):
        worse = (np.nan_to_num(e_c - e_r, nan=0.0) > guard_deg).any(-1)
    worse |= ~head_above_neck(candidate_joints) & head_above_neck(reference_joints)
    worse |= (
        np.linalg.norm(_np(candidate_joints)[:, 0] - _np(reference_joints)[:, 0], axis=-1)
        > PELVIS_DRIFT_M
    )
    return worse


def prefer_reference(
    worse: np.ndarray, candidate: tuple[torch.Tensor, ...], reference: tuple[torch.Tensor, ...]
) -> tuple[torch.Tensor, ...]:
    """Per frame: the reference's tensors where ``worse``, the candidate's elsewhere."""
    if not worse.any():
        return candidate
    out = []
    for c, r in zip(candidate, reference, strict=False):
        m = torch.as_tensor(worse, device=c.device).reshape((-1,) + (1,) * (c.ndim - 1))
        out.append(torch.where(m, r.to(c.dtype), c))
    return tuple(out)
