"""Fit figures that mean something: per keypoint and per segment, with a verdict in plain words.

One mean fit error cannot tell a good solve from a bad one (issue 10): on a CMU take most of it is
definitional (CMU's neck node is not SMPL's neck), a wrong layout scores better than the right one
by fitting fewer points, and a folded head scores like an upright one. So a solve reports
- the fit per keypoint (mean mm over the frames it was measured), to the calibrated keypoints
  (``calibration.py``) and as captured (raw), for the keypoints that are positions;
- the direction error per segment (mean deg): the angle between the solved SMPL segment (its joints
  and landmarks as the model places them) and the captured bone, for every segment whose two ends
  are keypoints of the layout (end points included: head top, toe and finger tips);
- warnings, not better scores, for a layout that leaves most of the file's joints unused, for
  segments that disagree with the capture, and for a head folded below the neck;
- a verdict: "good", or "check the <region>: <what>" naming the worst keypoints and segments.

``fit_report(model, prepared, solution)`` is the one entry point (the CLI's JSON line and .npz, and
the Blender Results panel call it).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from .body_model import SMPL_JOINT_NAMES
from .prepare import PreparedKeypoints

_J = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}
# (segment, from, to) by definition (an SMPL joint or '@landmark'); a segment is measured when the
# layout has keypoints defined exactly as both ends. The first of several with one name wins.
SEGMENTS: tuple[tuple[str, str, str], ...] = (
    ("lower_spine", "pelvis", "spine1"),
    ("spine", "spine1", "spine2"),
    ("upper_spine", "spine2", "spine3"),
    ("chest", "spine3", "neck"),
    ("neck", "neck", "head"),
    ("head", "head", "@head_top"),
    ("hip_line", "right_hip", "left_hip"),
    ("shoulder_line", "right_shoulder", "left_shoulder"),
) + tuple(
    (
        seg.format(s=side),
        a.format(s=side, S=side[0].upper(), l=side[0]),
        b.format(s=side, S=side[0].upper(), l=side[0]),
    )
    for side in ("left", "right")
    for seg, a, b in (
        ("{s}_thigh", "{s}_hip", "{s}_knee"),
        ("{s}_shin", "{s}_knee", "{s}_ankle"),
        ("{s}_foot", "{s}_ankle", "{s}_foot"),
        ("{s}_toes", "{s}_foot", "@{S}BigToe"),
        ("{s}_clavicle", "{s}_collar", "{s}_shoulder"),
        ("{s}_upper_arm", "{s}_shoulder", "{s}_elbow"),
        ("{s}_forearm", "{s}_elbow", "{s}_wrist"),
        ("{s}_hand", "{s}_wrist", "{s}_hand"),
        ("{s}_hand", "{s}_wrist", "@{l}middle"),
    )
)
# body regions of the SMPL joints, for the verdict's "check the ..."
_REGIONS = {
    "the torso": ("pelvis", "spine1", "spine2", "spine3"),
    "the legs": ("left_hip", "right_hip", "left_knee", "right_knee"),
    "the feet": ("left_ankle", "right_ankle", "left_foot", "right_foot"),
    "the head": ("neck", "head"),
    "the arms": (
        "left_collar",
        "right_collar",
        "left_shoulder",
        "right_shoulder",
        "left_elbow",
        "right_elbow",
    ),
    "the hands": ("left_wrist", "right_wrist", "left_hand", "right_hand"),
}
REGION_OF = {_J[j]: region for region, joints in _REGIONS.items() for j in joints}
# Thresholds of the verdict (hand-set, from eval --real: a good solve of a CMU take with calibration
# fits every keypoint within 5-25 mm and every segment within 3 deg but the hands' 6-15):
KEYPOINT_CHECK_MM = 30.0  # a keypoint fitted worse than this (calibrated, mean) is named
SEGMENT_CHECK_DEG = 10.0  # a segment further than this from the captured bone (mean) is named
SEGMENT_WARN_DEG = 20.0  # ... and warned about from this on: the solve disagrees with the capture
UNUSED_WARN = 0.5  # a layout that uses less than this share of the file's joints is warned about
FOLDED_WARN = 0.01  # share of frames with the head folded below the neck that is warned about
WORST = 3  # worst keypoints / segments listed


@dataclass
class FitReport:
    """Per-keypoint and per-segment figures of one solve, its verdict and warnings."""

    keypoint_names: list[str]
    fit_mm: np.ndarray  # (K,) mean mm to the calibrated keypoints (raw when not calibrated); NaN: not a fitted position
    fit_mm_raw: np.ndarray  # (K,) mean mm to the keypoints as captured
    segment_names: list[str]
    segment_direction_deg: np.ndarray  # (S,) mean angle between solved segment and captured bone
    fit_error_mm_mean: float
    fit_error_mm_mean_raw: float
    calibrated: bool
    keypoint_offsets: np.ndarray | None = None  # (K, 3) metres in the SMPL parts' frames
    fit_error_mm_raw: np.ndarray | None = None  # (T,) per frame, as captured
    worst_keypoints: list[tuple[str, float]] = field(default_factory=list)
    worst_segments: list[tuple[str, float]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    verdict: str = "good"

    def to_json(self) -> dict:
        """The keys the CLI's JSON line carries (issue 10); NaN (not measured) left out."""

        def named(names, values, digits):
            return {
                n: round(float(v), digits)
                for n, v in zip(names, values, strict=True)
                if np.isfinite(v)
            }

        return {
            "fit_error_mm_mean_raw": _round(self.fit_error_mm_mean_raw, 3),
            "calibrated": self.calibrated,
            "fit_error_mm_per_keypoint": named(self.keypoint_names, self.fit_mm, 1),
            "fit_error_mm_per_keypoint_raw": named(self.keypoint_names, self.fit_mm_raw, 1),
            "segment_direction_deg": named(self.segment_names, self.segment_direction_deg, 2),
            "worst_keypoints": [
                {"keypoint": n, "mm": round(v, 1)} for n, v in self.worst_keypoints
            ],
            "worst_segments": [{"segment": n, "deg": round(v, 2)} for n, v in self.worst_segments],
            "verdict": self.verdict,
            "warnings": list(self.warnings),
        }

    def npz_fields(self) -> dict:
        """The arrays the output .npz carries (``write_smpl_npz`` writes NaN as -1)."""
        out = {
            "keypoint_names": np.array(self.keypoint_names),
            "fit_error_mm_per_keypoint": self.fit_mm.astype(np.float32),
            "fit_error_mm_per_keypoint_raw": self.fit_mm_raw.astype(np.float32),
            "segment_names": np.array(self.segment_names, dtype=str).reshape(-1),
            "segment_direction_deg": self.segment_direction_deg.astype(np.float32),
            "verdict": np.array(self.verdict),
        }
        if self.keypoint_offsets is not None:
            out["keypoint_offsets"] = np.asarray(self.keypoint_offsets, np.float32)
        if self.fit_error_mm_raw is not None:
            out["fit_error_mm_raw"] = np.asarray(self.fit_error_mm_raw, np.float32)
        return out


def _round(x: float, digits: int):
    return round(float(x), digits) if np.isfinite(x) else None


def _nanmean(values: np.ndarray, axis=0) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # never-measured keypoints: all-NaN columns
        return np.nanmean(values, axis=axis)


def fit_report(model, prepared: PreparedKeypoints, solution, source_names=None) -> FitReport:
    """The figures of ``solution`` (``solver.Solution``) on ``prepared``. ``source_names``: the file's
    joint names (default: those of its bone rotations, when it had any), for the unused-joints
    warning. On the solver's thread setting (``device.cpu_threads``)."""
    from .device import cpu_threads

    with cpu_threads(model.device):
        return _fit_report(model, prepared, solution, source_names)


def _fit_report(model, prepared: PreparedKeypoints, solution, source_names) -> FitReport:
    from .calibration import Geometry, posed_keypoints

    layout = prepared.layout
    rot, b, tr = solution.rotmats, solution.betas, solution.trans
    offsets = getattr(solution, "keypoint_offsets", None)
    # one forward kinematics for the model points that are positions, their calibrated points and
    # the folded-head check; the end points (segment directions) from the layout's whole set
    joints, g = posed_keypoints(model, layout, rot, b, tr)
    points = (
        joints
        if offsets is None
        else Geometry.of(model, layout, b).points(joints, g, np.asarray(offsets, np.float64))
    )
    fitted = prepared.measured & ~layout.aim_only_mask()[None]
    fit = _per_keypoint_mm(points, prepared.positions, fitted)
    fit_raw = _per_keypoint_mm(joints, prepared.positions, fitted)
    raw_points = layout.generate(model, rot, b, tr).detach().cpu().double().numpy()
    from .layouts import FIGURE_POINTS

    smpl_joints = _figure_points(model, solution) if layout.name in FIGURE_POINTS else None
    names, seg_deg = segment_directions(layout, raw_points, prepared, smpl_joints)
    raw_frames = getattr(solution, "fit_error_mm_raw", None)
    report = FitReport(
        keypoint_names=list(layout.keypoints),
        fit_mm=fit,
        fit_mm_raw=fit_raw,
        segment_names=names,
        segment_direction_deg=seg_deg,
        fit_error_mm_mean=float(_nanmean(np.asarray(solution.fit_error_mm))),
        fit_error_mm_mean_raw=float(
            _nanmean(np.asarray(solution.fit_error_mm if raw_frames is None else raw_frames))
        ),
        calibrated=offsets is not None,
        keypoint_offsets=offsets,
        fit_error_mm_raw=raw_frames,
    )
    report.worst_keypoints = _worst(report.keypoint_names, fit)
    report.worst_segments = _worst(names, seg_deg)
    if source_names is None and prepared.rotations is not None:
        source_names = prepared.rotations.names
    report.warnings = _unused_warning(layout, source_names) + _segment_warnings(names, seg_deg)
    report.warnings += _folded_warning(layout, joints, prepared)
    report.verdict = _verdict(report, layout, model)
    return report


def _per_keypoint_mm(points: np.ndarray, positions: np.ndarray, mask: np.ndarray) -> np.ndarray:
    d = np.linalg.norm(points - positions, axis=-1) * 1000.0
    return _nanmean(np.where(mask & np.isfinite(d), d, np.nan))


def _figure_points(model, solution) -> np.ndarray:
    """(T, 24, 3) the solution's SMPL joints (for ``layouts.FIGURE_POINTS``)."""
    import torch

    rot = torch.as_tensor(solution.rotmats, dtype=model.dtype, device=model.device)
    rest = model.rest_joints(model.betas_tensor(solution.betas, rot.shape[0]))
    _, joints = model.global_transforms(rot, rest)
    trans = torch.as_tensor(solution.trans, dtype=joints.dtype, device=joints.device)
    return (joints + trans[:, None]).detach().cpu().double().numpy()


def segment_directions(layout, points: np.ndarray, prepared: PreparedKeypoints, smpl_joints=None):
    """(names, (S,) mean deg) for the SEGMENTS whose ends are keypoints of ``layout``: the solved
    model points ``points`` (T, K, 3) against the captured ones, over the frames both ends were
    measured. With ``smpl_joints`` (T, 24, 3), the layout's ``FIGURE_POINTS`` stand for their SMPL
    joints too (solved: that joint; captured: the keypoint, where it is a point of its own)."""
    from .layouts import FIGURE_POINTS

    at = {d: k for k, d in enumerate(layout.definitions) if d is not None}
    measured = prepared.measured
    figure = FIGURE_POINTS.get(layout.name, {}) if smpl_joints is not None else {}
    if figure:
        points, measured = points.copy(), measured.copy()
        for name, joint in figure.items():
            k = layout.keypoints.index(name)
            at.setdefault(joint, k)
            points[:, k] = smpl_joints[:, _J[joint]]
            # a keypoint the file does not have is left at the origin (``layouts.to_layout_order``
            # then ``prepare``): no finger base there, and the finger end measures the hand
            x = prepared.positions[:, k]
            measured[:, k] = np.isfinite(x).all(-1) & (np.abs(x).sum(-1) > 0)
    names, errs = [], []
    for seg, a, b in SEGMENTS:
        ka, kb = at.get(a), at.get(b)
        if seg in names or ka is None or kb is None:
            continue
        # a figure point stacked on the other end (a BVH's zero-length bone) has no direction
        apart = (
            np.linalg.norm(prepared.positions[:, kb] - prepared.positions[:, ka], axis=-1) > 1e-3
        )
        seen = measured[:, ka] & measured[:, kb] & apart
        if not seen.any():
            continue
        solved = points[seen, kb] - points[seen, ka]
        captured = prepared.positions[seen, kb] - prepared.positions[seen, ka]
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = (solved * captured).sum(-1) / (
                np.linalg.norm(solved, axis=-1) * np.linalg.norm(captured, axis=-1)
            )
        deg = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
        if np.isfinite(deg).any():
            names.append(seg)
            errs.append(float(_nanmean(deg)))
    return names, np.array(errs, dtype=np.float64)


def _worst(names, values) -> list[tuple[str, float]]:
    ok = [i for i in np.argsort(-np.nan_to_num(values, nan=-np.inf)) if np.isfinite(values[i])]
    return [(names[i], float(values[i])) for i in ok[:WORST]]


def _unused_warning(layout, source_names) -> list[str]:
    """A layout that reads less than UNUSED_WARN of the file's joints, and the layout that reads more."""
    from .layouts import LAYOUTS, match_names

    if not source_names:
        return []

    def used(lay) -> int:
        return sum(1 for i in match_names(lay, list(source_names)) if i >= 0 and lay.definitions[i])

    n, mine = len(source_names), used(layout)
    if mine >= UNUSED_WARN * n:
        return []
    best = max(LAYOUTS.values(), key=used)
    hint = (
        f"; the '{best.name}' layout ({best.title}) reads {used(best)}: use --layout {best.name} or auto"
        if best is not layout and used(best) > mine
        else ""
    )
    text = f"the '{layout.name}' layout uses {mine} of the file's {n} joints{hint}"
    return [text + " (a fit of fewer points is not a better fit)"]


def _segment_warnings(names, degrees) -> list[str]:
    bad = [(n, d) for n, d in zip(names, degrees, strict=True) if d > SEGMENT_WARN_DEG]
    if not bad:
        return []
    listed = ", ".join(f"{n} {d:.0f} deg" for n, d in bad)
    return [f"segment directions disagree with the capture: {listed}"]


def _folded_warning(layout, joints: np.ndarray, prepared: PreparedKeypoints) -> list[str]:
    """Frames where the solved head is below the plane through the neck normal to the torso while
    the captured one is above it (``guard.head_above_neck`` on both)."""
    from .guard import head_above_neck

    at = {d: k for k, d in enumerate(layout.definitions) if d is not None}
    need = ("neck", "head", "left_hip", "right_hip")
    if not all(n in at for n in need):
        return []
    seen = np.all([prepared.measured[:, at[n]] for n in need], axis=0)
    if not seen.any():
        return []

    def as_smpl(points):
        j = np.zeros((points.shape[0], 24, 3))
        for n in need:
            j[:, _J[n]] = points[:, at[n]]
        return j

    folded = ~head_above_neck(as_smpl(joints[seen])) & head_above_neck(
        as_smpl(prepared.positions[seen])
    )
    share = float(folded.mean())
    if share <= FOLDED_WARN:
        return []
    return [f"the head is folded below the neck in {int(folded.sum())} of {int(seen.sum())} frames"]


def _verdict(report: FitReport, layout, model) -> str:
    """'good', or 'check <region>: ...' naming what is off in the worst region (then the others)."""
    from .calibration import keypoint_parts

    parts = keypoint_parts(model, layout)
    joint_of = layout.smpl_joint_of()
    issues: dict[str, list[str]] = {}
    for k, mm in enumerate(report.fit_mm):
        if np.isfinite(mm) and mm > KEYPOINT_CHECK_MM:
            j = joint_of[k] if joint_of[k] >= 0 else parts[k]
            region = REGION_OF.get(int(j), "the body")
            issues.setdefault(region, []).append(f"{layout.keypoints[k]} {mm:.0f} mm off")
    at = {seg: (a, b) for seg, a, b in SEGMENTS}
    for name, deg in zip(report.segment_names, report.segment_direction_deg, strict=True):
        if deg > SEGMENT_CHECK_DEG:
            a = at[name][0]
            region = REGION_OF.get(_J.get(a, -1), "the body")
            if name.endswith("_hand"):
                region = "the hands"
            issues.setdefault(region, []).append(f"{name} {deg:.0f} deg off the capture")
    if not issues and not report.warnings:
        return "good"
    if not issues:
        return "check the warnings: " + "; ".join(report.warnings)
    parts_text = [f"check {region}: {', '.join(items)}" for region, items in issues.items()]
    return "; ".join(parts_text)
