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

import warnings
from dataclasses import dataclass, field

import numpy as np

from .body_model import SMPL_JOINT_NAMES, BodyModel

# Denoising lives in denoise.py; these names stay importable from here for older callers.
from .denoise import (  # noqa: F401
    auto_smooth_seconds,
    denoise,
    estimate_noise_mm,
    gaussian_over_time,
    motion_cuts,
    smooth_over_time,
)
from .errors import InputError
from .keypoints import UNIT_SCALES, KeypointSequence
from .layouts import Layout, detect_layout, get_layout, to_layout_order
from .model.axes import z_up_to_y_up
from .shape_inverse import BONES

GAP_WEIGHT = 0.3
# A keypoint that must stay rigid with another (``Layout.rigid_with``) is not used in frames where
# their distance is more than LOOSE_TOLERANCE of its median over the take away from it, nor at
# all when more than LOOSE_SHARE of the frames are (the point has a joint of its own that moves,
# so even the frames near the median say nothing). On the CMU files here a rigid thumb is loose in
# 0-3 % of the frames (glitches), a moving one in 18-86 %.
LOOSE_TOLERANCE = 0.1
LOOSE_SHARE = 0.1
# Which measured keypoints each use takes, by the layout's trust (``Layout.trust``; 1 = the
# keypoint is its joint). Bone lengths: only exact keypoints (CMU's and DeepMimic's spine and
# neck nodes are spaced unlike SMPL's). Aim origins (``analytic_ik._Aim``, commit a5c9494): the
# neck nodes (trust 0.5) too, the best origin for the head's aim when the rebuilt torso drifts
# from them; the spine nodes (0.3) only steer. These reproduce the weight tests they replace
# (``>= 0.9`` and ``>= 0.45`` on confidence x trust) on full-confidence keypoints.
LENGTH_TRUST = 1.0
AIM_ORIGIN_TRUST = 0.5
_J = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}


@dataclass
class SourceRotations:
    """Bone orientations a file carried (BVH, ASF/AMC), in the solver's world (Y up)."""

    glob: (
        np.ndarray
    )  # (T, N, 3, 3) world rotation of each source joint relative to the file's rest pose
    rest: np.ndarray  # (N, 3) rest positions of the source joints (file units)
    names: list[str]  # the N joint names as in the file


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
    rotations: SourceRotations | None = None  # the file's bone orientations, when it has them
    interpolated: np.ndarray = None  # type: ignore[assignment]  # (T, K) bool: filled in over a gap (weight GAP_WEIGHT)

    def __post_init__(self):
        # explicit masks beside the weights: a keypoint's weight says how much to trust it, the
        # masks say what it is (keypoints built by hand without masks: every weighted one measured)
        if self.interpolated is None:
            self.interpolated = np.zeros(self.weight.shape, dtype=bool)
        if self.measured is None:
            self.measured = (self.weight > 0) & ~self.interpolated

    @property
    def num_frames(self) -> int:
        return int(self.positions.shape[0])

    def cut(self, frames: slice) -> PreparedKeypoints:
        """The same keypoints for a slice of the frames (every per-frame array cut alike)."""
        import dataclasses

        rot = (
            None
            if self.rotations is None
            else dataclasses.replace(self.rotations, glob=self.rotations.glob[frames])
        )
        return dataclasses.replace(
            self,
            positions=self.positions[frames],
            weight=self.weight[frames],
            measured=self.measured[frames],
            interpolated=self.interpolated[frames],
            frames=None if self.frames is None else self.frames[frames],
            rotations=rot,
            notes=list(self.notes),
        )

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

    def position_weight(self) -> np.ndarray:
        """(T, K) weights of the keypoints as positions to fit: ``weight`` without the aim-only ones."""
        return np.where(self.layout.aim_only_mask()[None], 0.0, self.weight)

    def smpl_measured(self, min_trust: float = 0.0) -> np.ndarray:
        """(T, 24) bool: the SMPL joint has a real sample in that frame (not interpolated, not
        missing), from a keypoint whose layout trust is at least ``min_trust``. Trust is the
        layout's word on how well a keypoint matches its joint (``Layout.trust``: a property of
        the layout, never of a sample), so this is a mask, not a weight test."""
        out = np.zeros((self.num_frames, 24), dtype=bool)
        trusted = self.layout.trust_array() >= min_trust
        for k, j in enumerate(self.layout.smpl_joint_of()):
            if j >= 0 and trusted[k]:
                out[:, j] = self.measured[:, k]
        return out

    def length_samples(self) -> tuple[np.ndarray, np.ndarray]:
        """(T, 24, 3) SMPL joint targets and (T, 24) bool: which may vote on bone lengths
        (``shape_inverse.observed_lengths``): measured, from keypoints that are their joint
        exactly (``LENGTH_TRUST``)."""
        return self.smpl_targets()[0], self.smpl_measured(LENGTH_TRUST)

    def aim_origins(self) -> np.ndarray:
        """(T, 24) bool: measured joints whose own target may serve as the origin of their
        bones' aim (``analytic_ik.solve_analytic``'s ``measured``; ``AIM_ORIGIN_TRUST``)."""
        return self.smpl_measured(AIM_ORIGIN_TRUST)

    def landmark_targets(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Keypoints that are single landmark vertices: names, (T, L, 3), (T, L)."""
        names, cols = [], []
        for k, d in enumerate(self.layout.definitions):
            if d and d.startswith("@") and "+" not in d:
                names.append(d[1:])
                cols.append(k)
        return names, self.positions[:, cols], self.weight[:, cols]

    def bone_end_landmarks(self, names: list[str]) -> list[bool]:
        """Per landmark name: it is the layout's aim-only end point of a captured bone (BVH End
        Site, ASF bone end), straight with its bone in the source's rest pose (``solve_analytic``'s
        ``bone_ends``)."""
        aim_only = self.layout.aim_only_mask()
        ends = {d[1:] for d, a in zip(self.layout.definitions, aim_only, strict=True) if a and d}
        return [n in ends for n in names]


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
        warnings.simplefilter(
            "ignore", RuntimeWarning
        )  # all-NaN columns are expected: unmeasured bones
        lengths = np.nanmedian(np.linalg.norm(tracks[:, ch] - tracks[:, par], axis=-1), axis=0)
    ref = model.bone_lengths(np.zeros(model.num_betas))[0].cpu().numpy()
    ok = np.isfinite(lengths) & (lengths > 0) & (ref > 0.05)  # short bones say little about scale
    if ok.sum() >= 3:
        size, ref_size = lengths[ok].sum(), ref[ok].sum()
    else:  # no bones: fall back on the body's extent against the model's height
        p = np.where(weight[..., None] > 0, positions, np.nan)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter(
                "ignore", RuntimeWarning
            )  # all-NaN columns are expected: unmeasured bones
            size = np.nanmedian(np.nanmax(p, 1) - np.nanmin(p, 1), axis=0).max()
        v = model.v_template.cpu().numpy()
        ref_size = float(v[:, 1].max() - v[:, 1].min()) * 0.8
    if not np.isfinite(size) or size <= 0:
        raise InputError(
            "All keypoints sit at one point (zero size): cannot tell the units. "
            "Check the file, or give the units explicitly (--units)."
        )
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


def drop_loose_points(positions_m, weight, measured, layout) -> list[str]:
    """Unweight (in place) the samples of each ``Layout.rigid_with`` keypoint that is not held at
    its usual distance from its anchor (``LOOSE_TOLERANCE``); a note for each one dropped."""
    notes = []
    index = {k: i for i, k in enumerate(layout.keypoints)}
    for key, anchor in layout.rigid_with:
        k, a = index[key], index[anchor]
        both = measured[:, k] & measured[:, a]
        if not both.any():
            continue
        dist = np.linalg.norm(positions_m[:, k] - positions_m[:, a], axis=-1)
        usual = float(np.median(dist[both]))
        loose = both & (np.abs(dist - usual) > LOOSE_TOLERANCE * max(usual, 1e-9))
        if loose.sum() > LOOSE_SHARE * both.sum():
            notes.append(
                f"{key} is not used: its distance to {anchor} changes over the take in "
                f"{int(loose.sum())} of {int(both.sum())} frames (it has a joint of its own that "
                "moves), so it cannot say how its body part turns"
            )
            loose = measured[:, k].copy()
        weight[loose, k] = 0.0  # a glitch frame or two of a rigid point: dropped without a word
        measured[loose, k] = False
    return notes


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
    bad = [
        f"{names[i]} is {ratio[i]:.1f}x its expected share"
        for i in np.nonzero(ok)[0]
        if not (1 / max_ratio < ratio[i] < max_ratio)
    ]
    for i, (p, c) in enumerate(BONES):
        name = SMPL_JOINT_NAMES[c]
        if name.startswith("left_"):
            j = BONES.index(
                (
                    _J[SMPL_JOINT_NAMES[p].replace("left_", "right_")],
                    _J[name.replace("left_", "right_")],
                )
            )
            if ok[i] and ok[j] and max(obs[i], obs[j]) > 1.4 * min(obs[i], obs[j]):
                bad.append(
                    f"{names[i]} ({obs[i]:.3g}) and its right twin ({obs[j]:.3g}) differ by "
                    f"{max(obs[i], obs[j]) / min(obs[i], obs[j]):.1f}x"
                )
    if len(bad) >= 2:
        raise InputError(
            "These keypoints do not form a human skeleton in the '"
            + layout.name
            + "' layout: "
            + "; ".join(bad[:5])
            + ". Check the layout (joint order or names) and that the data is a person."
        )


def detect_up(positions_m, weight, layout) -> tuple[str, float]:
    """'y' or 'z' from the median feet-to-shoulders direction; returns (axis, its alignment)."""
    tracks = _joint_tracks(positions_m, weight, layout)
    low = [
        _J[n]
        for n in ("left_ankle", "right_ankle", "left_knee", "right_knee", "left_hip", "right_hip")
    ]
    high = [_J[n] for n in ("left_shoulder", "right_shoulder", "neck", "head", "spine3")]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", RuntimeWarning
        )  # all-NaN columns are expected: unmeasured bones
        v = np.nanmean(tracks[:, high], 1) - np.nanmean(tracks[:, low], 1)
        v = v / np.linalg.norm(v, axis=-1, keepdims=True)
        med = np.nanmedian(v, axis=0)
    if not np.isfinite(med).all():
        return "y", 0.0
    axis = int(np.argmax(np.abs(med)))
    if axis == 2 and med[2] > 0:
        return "z", float(med[2])
    return "y", float(med[1])


def fill_gaps(positions: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation over time of each keypoint's missing frames (held at the ends); the
    filled samples get GAP_WEIGHT."""
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


def prepare(
    seq: KeypointSequence,
    model: BodyModel,
    layout: str = "auto",
    units: str = "auto",
    up: str = "auto",
    fps: float | None = None,
) -> PreparedKeypoints:
    """The solver's keypoints from a file's: each step below given, declared or detected, and
    said in ``notes`` (module docstring)."""
    notes = list(seq.notes)
    pos = _checked_positions(seq)
    rot_glob = _file_rotations(seq, pos, notes)
    pos, frames, confidence, rot_glob = _frames_in_order(seq, pos, rot_glob, notes)
    lay = _choose_layout(seq, layout, pos, notes)
    pos, conf, unused = to_layout_order(lay, pos, confidence, seq.names)
    if unused:
        notes.append(
            f"ignored joints not in the layout: {', '.join(unused[:10])}{' ...' if len(unused) > 10 else ''}"
        )
    if not (conf > 0).any():
        raise InputError(
            "Every keypoint is missing (NaN or zero confidence) in every frame: nothing to solve."
        )
    unit = _choose_units(seq, units, pos, conf, lay, model, notes)
    pos = pos * UNIT_SCALES[unit]
    axis = _choose_up(seq, up, pos, conf, lay, notes)
    rotations = None
    if rot_glob is not None:
        # rot_glob is only set when the file has all three (checked where it is read)
        assert seq.rest_positions is not None and seq.names is not None
        rotations = SourceRotations(
            rot_glob, np.asarray(seq.rest_positions, np.float64), list(map(str, seq.names))
        )
    if axis == "z":
        pos, rotations = _z_up_to_y_up(pos, rotations)
    stacked = drop_stacked_joints(pos, conf, lay)
    if stacked:
        notes.append(f"ignored keypoints stacked on their parent joint: {', '.join(stacked)}")
    check_human_like(pos, conf, lay, model)
    rate = _frame_rate(seq, fps, notes)

    gaps = int(((conf <= 0) & (conf > 0).any(0)).sum())
    measured = conf > 0
    pos, conf = fill_gaps(np.nan_to_num(pos), conf)
    if gaps:
        notes.append(f"filled {gaps} missing keypoint samples by interpolation over time")
    notes += drop_loose_points(pos, conf, measured, lay)
    return PreparedKeypoints(
        layout=lay,
        positions=pos,
        weight=conf,
        fps=rate,
        units=unit,
        up=axis,
        source=seq.source,
        frames=frames,
        notes=notes,
        measured=measured,
        rotations=rotations,
        interpolated=~measured & (conf > 0),
    )


def _checked_positions(seq: KeypointSequence) -> np.ndarray:
    """(T, K, 3) float64 positions, NaN where not finite; a clear error for any other shape."""
    pos = np.asarray(seq.positions, dtype=np.float64)
    if pos.ndim != 3 or pos.shape[-1] != 3 or pos.shape[0] == 0:
        raise InputError(f"Keypoints must have shape (frames, joints, 3); got {pos.shape}.")
    return np.where(np.isfinite(pos), pos, np.nan)


def _file_rotations(seq: KeypointSequence, pos: np.ndarray, notes: list[str]):
    """The file's bone rotations (T, K, 3, 3) float64 when it has them for these keypoints."""
    if seq.rotations is None or seq.rest_positions is None or seq.names is None:
        return None
    if np.shape(seq.rotations) == pos.shape[:2] + (3, 3):
        return np.asarray(seq.rotations, dtype=np.float64)
    # a caller cut the positions only
    notes.append(
        f"bone rotations ignored: {np.shape(seq.rotations)[:2]} rotations for {pos.shape[:2]} keypoints"
    )
    return None


def _frames_in_order(seq: KeypointSequence, pos, rot_glob, notes: list[str]):
    """(positions, frame numbers, confidence, rotations) with rows sorted by frame number.

    Rows out of order are sorted (nothing lost); repeated numbers are two takes glued together:
    every frame is kept in file order, since sorting would interleave them."""
    confidence, frames = seq.confidence, seq.frames
    if frames is None or len(frames) != pos.shape[0]:
        return pos, frames, confidence, rot_glob
    frames = np.asarray(frames)
    order = np.argsort(frames, kind="stable")
    repeats = int(np.sum(np.diff(frames[order]) == 0))
    if repeats:
        notes.append(
            f"frames: {repeats} frame number(s) repeat (two takes in one file?); all "
            f"{len(frames)} frames were kept in file order"
        )
    elif np.any(np.diff(order) < 0):
        notes.append("frames: rows sorted by frame number")
        pos, frames = pos[order], frames[order]
        rot_glob = None if rot_glob is None else rot_glob[order]
        confidence = None if confidence is None else np.asarray(confidence)[order]
    return pos, frames, confidence, rot_glob


def _choose_layout(seq: KeypointSequence, layout: str, pos, notes: list[str]) -> Layout:
    """Layout: option > file > joint names > joint count."""
    if layout and layout != "auto":
        lay = get_layout(layout)
        notes.append(f"layout: {lay.title} (given)")
    elif seq.layout:
        lay = get_layout(seq.layout)
        notes.append(f"layout: {lay.title} (declared by the file)")
    else:
        lay, why = detect_layout(seq.names, pos.shape[1], pos)
        notes.append(f"layout: {lay.title} (detected: {why})")
    return lay


def _choose_units(seq, units: str, pos, conf, lay, model: BodyModel, notes: list[str]) -> str:
    """Units: option > file > bone lengths compared with the body model's rest skeleton."""
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
    return unit


def _choose_up(seq, up: str, pos_m, conf, lay, notes: list[str]) -> str:
    """Up axis: option > file > the feet-to-shoulders direction."""
    if up and up != "auto":
        axis, how = up.lower(), "given"
        if axis not in ("y", "z"):
            raise InputError(f"Up axis must be y or z; got '{up}'.")
    elif seq.up:
        axis, how = seq.up, "declared by the file"
    else:
        axis, align = detect_up(pos_m, conf, lay)
        how = f"detected: feet-to-shoulders direction {align:+.2f} along {axis.upper()}"
    notes.append(f"up axis: {axis.upper()} ({how})")
    return axis


def _z_up_to_y_up(pos, rotations: SourceRotations | None):
    """Positions and the file's rotations turned from Z up to Y up."""
    pos = z_up_to_y_up(pos)
    if rotations is not None:  # the same turn of the world: R' = M R M^T, rest' = M rest
        m = z_up_to_y_up(np.eye(3)).T
        rotations = SourceRotations(m @ rotations.glob @ m.T, rotations.rest @ m.T, rotations.names)
    return pos, rotations


def _frame_rate(seq: KeypointSequence, fps: float | None, notes: list[str]) -> float:
    """fps: option > file > 30."""
    rate = float(fps or seq.fps or 30.0)
    if not np.isfinite(rate) or rate <= 0:
        raise InputError(f"Frame rate must be a positive number; got {rate}.")
    notes.append(
        f"fps: {rate:g} ({'given' if fps else 'declared by the file' if seq.fps else 'assumed'})"
    )
    return rate
