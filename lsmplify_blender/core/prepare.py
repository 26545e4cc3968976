"""From what a file said to what the solver needs: layout order, metres, Y up, no gaps.

Every choice is either given (an option), declared (by the file) or detected (from the data),
and each is reported in ``notes`` so the user can see and override it:
- layout: option > file > joint names > joint count;
- units: option > file > bone lengths compared with the body model's rest skeleton;
- up axis: option > file > the feet-to-shoulders direction;
- fps: option > file > 30.
Gaps in a keypoint's track are filled by linear interpolation (weight 0.3, so bone lengths
and fits lean on measured frames); a keypoint never seen stays missing.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field

import numpy as np

from .body_model import SMPL_JOINT_NAMES, BodyModel
from .errors import InputError
from .keypoints import UNIT_SCALES, KeypointSequence
from .layouts import Layout, detect_layout, get_layout, to_layout_order
from .model.axes import z_up_to_y_up
from .shape_inverse import BONES

GAP_WEIGHT = 0.3
_J = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}


@dataclass
class PreparedKeypoints:
    layout: Layout
    positions: np.ndarray  # (T, K, 3) metres, Y up
    weight: np.ndarray  # (T, K) confidence x layout trust; GAP_WEIGHT if interpolated; 0 missing
    fps: float
    units: str
    up: str
    source: str = ""
    frames: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    # (T, K) bool: a real sample (not interpolated, not missing); None only as the default:
    # __post_init__ fills it, so readers never see None.
    measured: np.ndarray = None  # type: ignore[assignment]

    def __post_init__(self):
        if self.measured is None:
            self.measured = self.weight > GAP_WEIGHT

    @property
    def num_frames(self) -> int:
        return int(self.positions.shape[0])

    def smpl_targets(self) -> tuple[np.ndarray, np.ndarray]:
        """(T, 24, 3) SMPL joint targets and (T, 24) weights from the keypoints that are joints."""
        t = self.num_frames
        targets = np.full((t, 24, 3), np.nan)
        weight = np.zeros((t, 24))
        for k, j in enumerate(self.layout.smpl_joint_of()):
            if j >= 0:
                targets[:, j] = self.positions[:, k]
                weight[:, j] = self.weight[:, k]
        return targets, weight

    def landmark_targets(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Keypoints that are single landmark vertices: names, (T, L, 3), (T, L)."""
        names, cols = [], []
        for k, d in enumerate(self.layout.definitions):
            if d and d.startswith("@") and "+" not in d:
                names.append(d[1:])
                cols.append(k)
        return names, self.positions[:, cols], self.weight[:, cols]


def _joint_tracks(positions, weight, layout):
    """SMPL-joint tracks (T, 24, 3) with NaN where absent, for detection heuristics."""
    out = np.full((positions.shape[0], 24, 3), np.nan)
    for k, j in enumerate(layout.smpl_joint_of()):
        if j >= 0:
            out[:, j] = np.where(weight[:, k, None] > 0, positions[:, k], np.nan)
    return out


def detect_scale(positions, weight, layout, model: BodyModel) -> tuple[str, float, float]:
    """Unit whose metres make the skeleton's bone lengths closest to the model's mean body.

    Returns (unit, ratio of the skeleton to the model in that unit, number of bones used).
    """
    tracks = _joint_tracks(positions, weight, layout)
    par = [p for p, _ in BONES]
    ch = [c for _, c in BONES]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns are expected: unmeasured bones
        lengths = np.nanmedian(np.linalg.norm(tracks[:, ch] - tracks[:, par], axis=-1), axis=0)
    ref = model.bone_lengths(np.zeros(model.num_betas))[0].cpu().numpy()
    ok = np.isfinite(lengths) & (lengths > 0) & (ref > 0.05)  # short bones say little about scale
    if ok.sum() >= 3:
        size, ref_size = lengths[ok].sum(), ref[ok].sum()
    else:  # no bones: fall back on the body's extent against the model's height
        p = np.where(weight[..., None] > 0, positions, np.nan)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns are expected: unmeasured bones
            size = np.nanmedian(np.nanmax(p, 1) - np.nanmin(p, 1), axis=0).max()
        v = model.v_template.cpu().numpy()
        ref_size = float(v[:, 1].max() - v[:, 1].min()) * 0.8
    if not np.isfinite(size) or size <= 0:
        raise InputError("All keypoints sit at one point (zero size): cannot tell the units. "
                         "Check the file, or give the units explicitly (--units).")
    best = min(UNIT_SCALES, key=lambda u: abs(np.log(size * UNIT_SCALES[u] / ref_size)))
    return best, float(size * UNIT_SCALES[best] / ref_size), int(ok.sum())


def drop_stacked_joints(positions_m, weight, layout) -> list[str]:
    """Rigs often stack a joint on its parent (a 'hand' at the wrist): such a keypoint says
    nothing about the bone, so it is dropped (weight 0) rather than read as a zero-length bone."""
    tracks = _joint_tracks(positions_m, weight, layout)
    smpl_of = layout.smpl_joint_of()
    dropped = []
    for p, c in BONES:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            d = np.nanmedian(np.linalg.norm(tracks[:, c] - tracks[:, p], axis=-1))
        if np.isfinite(d) and d < 0.01:
            k = int(np.nonzero(smpl_of == c)[0][0])
            weight[:, k] = 0.0
            dropped.append(f"{layout.keypoints[k]} (on {SMPL_JOINT_NAMES[p]})")
    return dropped


def check_human_like(positions_m, weight, layout, model: BodyModel, max_ratio: float = 2.2) -> None:
    """Refuse skeletons whose bone proportions are far from any human's, saying which bones.

    Each measured bone is compared with the model's after scaling the whole skeleton to
    the model's size; a limb twice (or half) its expected share, or left and right limbs
    that differ by more than 40%, is not a human skeleton in this layout.
    """
    tracks = _joint_tracks(positions_m, weight, layout)
    par = [p for p, _ in BONES]
    ch = [c for _, c in BONES]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        obs = np.nanmedian(np.linalg.norm(tracks[:, ch] - tracks[:, par], axis=-1), axis=0)
    ref = model.bone_lengths(np.zeros(model.num_betas))[0].cpu().numpy()
    ok = np.isfinite(obs) & (ref > 0.08)  # long bones only: short ones vary most between rigs
    if ok.sum() < 4:
        return
    scale = obs[ok].sum() / ref[ok].sum()
    ratio = obs / (scale * ref)
    names = [f"{SMPL_JOINT_NAMES[p]}->{SMPL_JOINT_NAMES[c]}" for p, c in BONES]
    bad = [f"{names[i]} is {ratio[i]:.1f}x its expected share" for i in np.nonzero(ok)[0]
           if not (1 / max_ratio < ratio[i] < max_ratio)]
    for i, (p, c) in enumerate(BONES):
        name = SMPL_JOINT_NAMES[c]
        if name.startswith("left_"):
            j = BONES.index((_J[SMPL_JOINT_NAMES[p].replace("left_", "right_")], _J[name.replace("left_", "right_")]))
            if ok[i] and ok[j] and max(obs[i], obs[j]) > 1.4 * min(obs[i], obs[j]):
                bad.append(f"{names[i]} ({obs[i]:.3g}) and its right twin ({obs[j]:.3g}) differ by "
                           f"{max(obs[i], obs[j]) / min(obs[i], obs[j]):.1f}x")
    if len(bad) >= 2:
        raise InputError(
            "These keypoints do not form a human skeleton in the '" + layout.name + "' layout: "
            + "; ".join(bad[:5]) + ". Check the layout (joint order or names) and that the data is a person.")


def detect_up(positions_m, weight, layout) -> tuple[str, float]:
    """'y' or 'z' from the median feet-to-shoulders direction; returns (axis, its alignment)."""
    tracks = _joint_tracks(positions_m, weight, layout)
    low = [_J[n] for n in ("left_ankle", "right_ankle", "left_knee", "right_knee", "left_hip", "right_hip")]
    high = [_J[n] for n in ("left_shoulder", "right_shoulder", "neck", "head", "spine3")]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns are expected: unmeasured bones
        v = np.nanmean(tracks[:, high], 1) - np.nanmean(tracks[:, low], 1)
        v = v / np.linalg.norm(v, axis=-1, keepdims=True)
        med = np.nanmedian(v, axis=0)
    if not np.isfinite(med).all():
        return "y", 0.0
    axis = int(np.argmax(np.abs(med)))
    if axis == 2 and med[2] > 0:
        return "z", float(med[2])
    return "y", float(med[1])


def smooth_over_time(prepared: "PreparedKeypoints", sigma_seconds: float) -> "PreparedKeypoints":
    """Zero-phase Gaussian smoothing of the keypoint tracks over time (no lag: the kernel is
    symmetric). Removes capture jitter before solving; sigma in seconds, so the effect does
    not depend on the frame rate."""
    sigma = float(sigma_seconds) * prepared.fps
    if sigma < 0.3 or prepared.num_frames < 3:
        return prepared
    cuts = motion_cuts(prepared)
    pos = prepared.positions.copy()
    for a, b in zip([0, *cuts], [*cuts, prepared.num_frames]):  # never smooth across a cut
        pos[a:b] = gaussian_over_time(prepared.positions[a:b], sigma)
    notes = list(prepared.notes) + [f"smoothed over time: Gaussian sigma {sigma_seconds:g} s ({sigma:.1f} frames)"
                                    + (f", in {len(cuts) + 1} pieces split at jumps of the whole body" if cuts else "")]
    return dataclasses.replace(prepared, positions=pos, notes=notes)


def gaussian_over_time(x: np.ndarray, sigma: float, truncate: float = 3.0) -> np.ndarray:
    """Gaussian filter along axis 0 with the ends held (scipy's gaussian_filter1d with
    mode='nearest', which costs a 0.3 s import of scipy.ndimage on the first solve)."""
    radius = int(truncate * sigma + 0.5)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    padded = np.concatenate([np.repeat(x[:1], radius, 0), x, np.repeat(x[-1:], radius, 0)])
    out = np.zeros_like(x, dtype=np.float64)
    for k, wk in enumerate(taps):  # a loop over the few taps, each a whole-array multiply-add
        out += wk * padded[k:k + x.shape[0]]
    return out


MAX_BODY_SPEED = 10.0  # m/s: faster than a sprinter; a body that moves faster has jumped (a cut)


def motion_cuts(prepared: "PreparedKeypoints") -> list[int]:
    """Frames where the body's centre jumps faster than MAX_BODY_SPEED (and 10x its median
    step) from the frame before (concatenated takes, an edit, a tracker that switched people):
    smoothing stops there."""
    w = prepared.measured[..., None]
    centre = (np.where(w, prepared.positions, 0.0).sum(1) / np.maximum(w.sum(1), 1))
    step = np.linalg.norm(np.diff(centre, axis=0), axis=-1)
    if step.size == 0:
        return []
    # a cut is an isolated jump: when every frame jumps (pure noise), none of them is a cut
    limit = max(MAX_BODY_SPEED / max(prepared.fps, 1e-6), 10.0 * float(np.median(step)))
    return (np.nonzero(step > limit)[0] + 1).tolist()


# limb bones: the most rigid keypoint pairs in every layout (hip-knee, knee-ankle,
# shoulder-elbow, elbow-wrist on both sides)
_LIMBS = [(SMPL_JOINT_NAMES.index(f"{s}_{a}"), SMPL_JOINT_NAMES.index(f"{s}_{b}")) for s in ("left", "right")
          for a, b in (("hip", "knee"), ("knee", "ankle"), ("shoulder", "elbow"), ("elbow", "wrist"))]
NOISE_FLOOR_MM = 2.0


def estimate_noise_mm(prepared: "PreparedKeypoints") -> float:
    """Keypoint noise (per-axis std, mm) from how much the limb bones change length over time.

    A bone between two keypoints with independent noise sigma per axis changes length with a
    std of sigma * sqrt(2), whatever the motion, so the median over the limbs divided by
    sqrt(2) estimates sigma (20.1 mm for 20 mm of Gaussian noise, benchmarks/bench_denoise.py; 0 on
    exact keypoints). NaN with fewer than 5 measured frames."""
    targets, weight = prepared.smpl_targets()
    stds = []
    for a, b in _LIMBS:
        ok = (weight[:, a] >= 0.9) & (weight[:, b] >= 0.9)
        if ok.sum() >= 5:
            stds.append(np.std(np.linalg.norm(targets[ok, a] - targets[ok, b], axis=-1)))
    return float(np.median(stds) / np.sqrt(2) * 1000) if stds else float("nan")


def auto_smooth_seconds(noise_mm: float, fps: float) -> float:
    """Gaussian sigma (s) that minimises the joint error for this noise level (measured on the
    dev-test clips at 30 fps: 0.03 s at 5 mm, 0.05 s at 10 mm, 0.06 s at 20 mm, 0.07 s at
    30 mm); slightly narrower at higher frame rates, where more samples share a window."""
    if not np.isfinite(noise_mm) or noise_mm < NOISE_FLOOR_MM:
        return 0.0
    return float(min(0.025 + 0.0016 * noise_mm, 0.08) * (30.0 / max(fps, 1.0)) ** 0.2)


def denoise(prepared: "PreparedKeypoints", smooth="auto") -> tuple["PreparedKeypoints", float, float]:
    """Apply ``smooth`` ('auto', or sigma in seconds; 0 = off). Returns the keypoints, the
    estimated noise (mm) and the sigma used (s)."""
    noise = estimate_noise_mm(prepared)
    if isinstance(smooth, str):
        if smooth != "auto":
            raise InputError(f"smooth must be 'auto' or a number of seconds, not '{smooth}'.")
        sigma = auto_smooth_seconds(noise, prepared.fps)
    else:
        sigma = float(smooth)
        if not np.isfinite(sigma) or sigma < 0:
            raise InputError(f"smooth must be 'auto' or a number of seconds >= 0, not {smooth}.")
    if sigma <= 0:
        return prepared, noise, 0.0
    return smooth_over_time(prepared, sigma), noise, sigma


def fill_gaps(positions: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation over time of each keypoint's missing frames (held at the ends)."""
    pos = positions.copy()
    w = weight.copy()
    t = np.arange(pos.shape[0])
    missing = w <= 0
    for k in np.nonzero(missing.any(0) & (~missing).any(0))[0]:  # loop over keypoints, not frames
        good = ~missing[:, k]
        for c in range(3):
            pos[missing[:, k], k, c] = np.interp(t[missing[:, k]], t[good], pos[good, k, c])
        w[missing[:, k], k] = GAP_WEIGHT
    return pos, w


def prepare(seq: KeypointSequence, model: BodyModel, layout: str = "auto", units: str = "auto",
            up: str = "auto", fps: float | None = None) -> PreparedKeypoints:
    notes = list(seq.notes)
    pos = np.asarray(seq.positions, dtype=np.float64)
    if pos.ndim != 3 or pos.shape[-1] != 3 or pos.shape[0] == 0:
        raise InputError(f"Keypoints must have shape (frames, joints, 3); got {pos.shape}.")
    pos = np.where(np.isfinite(pos), pos, np.nan)
    confidence, frames = seq.confidence, seq.frames
    if frames is not None and len(frames) == pos.shape[0]:
        frames = np.asarray(frames)
        order = np.argsort(frames, kind="stable")
        keep = order[np.concatenate([[True], np.diff(frames[order]) != 0])]
        if len(keep) != len(frames) or np.any(np.diff(keep) < 0):
            notes.append(f"frames: sorted by frame number and dropped {len(frames) - len(keep)} duplicate(s)")
            pos, frames = pos[keep], frames[keep]
            confidence = None if confidence is None else np.asarray(confidence)[keep]

    if layout and layout != "auto":
        lay = get_layout(layout)
        notes.append(f"layout: {lay.title} (given)")
    elif seq.layout:
        lay = get_layout(seq.layout)
        notes.append(f"layout: {lay.title} (declared by the file)")
    else:
        lay, why = detect_layout(seq.names, pos.shape[1], pos)
        notes.append(f"layout: {lay.title} (detected: {why})")
    pos, conf, unused = to_layout_order(lay, pos, confidence, seq.names)
    if unused:
        notes.append(f"ignored joints not in the layout: {', '.join(unused[:10])}{' ...' if len(unused) > 10 else ''}")
    if not (conf > 0).any():
        raise InputError("Every keypoint is missing (NaN or zero confidence) in every frame: nothing to solve.")

    if units and units != "auto":
        if units not in UNIT_SCALES:
            raise InputError(f"Unknown units '{units}'; use one of {', '.join(UNIT_SCALES)}.")
        unit, how = units, "given"
    elif seq.units:
        unit, how = seq.units, "declared by the file"
    else:
        unit, ratio, nb = detect_scale(pos, conf, lay, model)
        how = f"detected from {nb} bone lengths: the skeleton is {ratio:.2f}x the model's mean body"
    notes.append(f"units: {unit} (1 unit = {UNIT_SCALES[unit]} m, {how})")
    pos = pos * UNIT_SCALES[unit]

    if up and up != "auto":
        axis, how = up.lower(), "given"
        if axis not in ("y", "z"):
            raise InputError(f"Up axis must be y or z; got '{up}'.")
    elif seq.up:
        axis, how = seq.up, "declared by the file"
    else:
        axis, align = detect_up(pos, conf, lay)
        how = f"detected: feet-to-shoulders direction {align:+.2f} along {axis.upper()}"
    notes.append(f"up axis: {axis.upper()} ({how})")
    if axis == "z":
        pos = z_up_to_y_up(pos)
    stacked = drop_stacked_joints(pos, conf, lay)
    if stacked:
        notes.append(f"ignored keypoints stacked on their parent joint: {', '.join(stacked)}")
    check_human_like(pos, conf, lay, model)

    rate = float(fps or seq.fps or 30.0)
    if not np.isfinite(rate) or rate <= 0:
        raise InputError(f"Frame rate must be a positive number; got {rate}.")
    notes.append(f"fps: {rate:g} ({'given' if fps else 'declared by the file' if seq.fps else 'assumed'})")

    gaps = int(((conf <= 0) & (conf > 0).any(0)).sum())
    measured = conf > 0
    pos, conf = fill_gaps(np.nan_to_num(pos), conf)
    if gaps:
        notes.append(f"filled {gaps} missing keypoint samples by interpolation over time")
    return PreparedKeypoints(layout=lay, positions=pos, weight=conf, fps=rate, units=unit, up=axis,
                             source=seq.source, frames=frames, notes=notes, measured=measured)
