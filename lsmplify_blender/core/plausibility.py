"""Is the prepared take a human body in metres? Checks that catch inputs which would
otherwise solve "successfully" into nonsense (issue 12): a wrong unit (keypoints x1e6 read
as mm give a 1.7 km body and a 510 m fit error), a huge offset (at 1e12 m float32 cannot
hold a millimetre) and left/right labels swapped (the fit turns the body inside out).

Each check uses the SMPL joints the layout has and is skipped when they are missing.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError

BODY_SPAN_M = (0.1, 10.0)  # largest extent of one frame's keypoints: a hand to a giant with props
MAX_DISTANCE_M = 1.0e4  # 10 km from the origin: float32 still resolves ~1 mm there
_LHIP, _RHIP, _LANKLE, _RANKLE, _SPINE3, _LFOOT, _RFOOT, _NECK = 1, 2, 7, 8, 9, 10, 11, 12


def check_plausible(prepared) -> None:
    """Raise InputError, with the reason and the fix, when the take cannot be a human in metres."""
    pos = prepared.positions
    ok = prepared.measured if prepared.measured is not None else np.isfinite(pos).all(-1)
    frames = ok.sum(1) >= 2
    if not frames.any():
        return
    p = np.where(ok[..., None], pos, np.nan)[frames]
    with np.errstate(invalid="ignore"):
        span = np.nanmax(p, axis=1) - np.nanmin(p, axis=1)
        centre = np.nanmedian(p, axis=1)
    extent = float(np.nanmedian(np.nanmax(span, axis=1)))
    distance = float(np.nanmedian(np.linalg.norm(centre, axis=1)))
    units = prepared.units
    lo, hi = BODY_SPAN_M
    if not lo <= extent <= hi:
        raise InputError(
            f"The keypoints span {extent:.3g} m per frame when read as {units}; a human body spans "
            f"{lo}-{hi} m. Give the right --units (m, cm, mm, inch, cmu)."
        )
    if distance > MAX_DISTANCE_M:
        raise InputError(
            f"The keypoints are {distance / 1000:.3g} km from the origin (read as {units}); no capture "
            "volume is that large and float precision is lost there. Subtract the offset from the "
            "coordinates, or check --units."
        )
    _check_handedness(prepared)


def _check_handedness(prepared) -> None:
    """Left/right swapped: the toes point backwards from the facing the hips and spine give.

    Facing F = (left_hip - right_hip) x (neck - mid-hips) (SMPL: +X left, +Y up, +Z forward);
    each foot's toe direction (foot - ankle) must agree with F in most frames.
    """
    targets, weight = prepared.smpl_targets()
    need = [_LHIP, _RHIP, _LANKLE, _RANKLE, _LFOOT, _RFOOT]
    top = _NECK if weight[:, _NECK].any() else _SPINE3
    if not all(weight[:, j].any() for j in need + [top]):
        return
    mid_hips = (targets[:, _LHIP] + targets[:, _RHIP]) / 2
    facing = np.cross(targets[:, _LHIP] - targets[:, _RHIP], targets[:, top] - mid_hips)
    agree = []
    for ankle, foot in ((_LANKLE, _LFOOT), (_RANKLE, _RFOOT)):
        toe = targets[:, foot] - targets[:, ankle]
        cos = np.einsum("ti,ti->t", toe, facing) / (
            np.linalg.norm(toe, axis=1) * np.linalg.norm(facing, axis=1)
        )
        agree.append(cos)
    cos = np.concatenate(agree)
    cos = cos[np.isfinite(cos)]
    if cos.size >= 2 and np.median(cos) < -0.2 and np.mean(cos < 0) > 0.8:
        raise InputError(
            "Left and right look swapped: with these labels the toes point backwards in "
            f"{np.mean(cos < 0):.0%} of the frames (the fit would turn the body inside out). Swap "
            "the left_/right_ joint names, or mirror the capture back (negate one axis)."
        )
