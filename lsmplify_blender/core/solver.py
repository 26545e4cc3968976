"""The solve pipeline: prepared keypoints -> betas -> pose for every frame -> optional refinement.

The solvers are a table of strategies (``STRATEGIES``) sharing one options type
(``SolveOptions``), one context (keypoints, SMPL targets, masks, shape, the analytic solution
computed once) and one result type (``Solution``); the optimisation step after any of them is
``_optimise_step``. ``DEFAULT_SOLVER`` is the one default (the CLI and the panel read it).
Strategies:
- ``analytic``: shape inverse + analytic IK (SMPL-IKS style, no learning, exact on model joints);
- ``optimize``: the SMPLify-3D-style baseline (L-BFGS frame by frame, keypoints2body settings);
- ``network``: shape inverse + analytic IK anchors, then the residual network (Learnable
  SMPLify) frame to frame, which recovers the twist joints cannot show; layouts that give
  fewer than NETWORK_MIN_JOINTS SMPL joints fall back to ``analytic`` with a notice. Frames where
  the network is anatomically worse than analytic IK keep analytic IK (``guard.py``).
``refine`` > 0 adds that many iterations of batched optimisation after any solver.
``smooth`` ('auto' by default) first estimates the keypoint noise from how much the limb bones
change length and, when it is above 2 mm, smooths the keypoints over time by the amount that
minimises the joint error for that noise; the fit error is still measured against the input.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from .analytic_ik import IKResult, attach_landmarks, solve_analytic
from .body_model import BodyModel
from .calibration import aim_far_bones, calibrated_context, calibrated_solve, checked_offsets
from .contacts import LOCK_MODES, check_ground, plant_feet
from .denoise import denoise
from .device import cpu_threads
from .errors import InputError, LSMPLifyError
from .guard import GUARD_DEG, prefer_reference, worse_frames
from .model.kinematics import local_rotations
from .prepare import PreparedKeypoints
from .progress import Progress, tracking
from .progress import begin as begin_progress
from .progress import step as step_progress
from .rotations import matrix_to_axis_angle
from .shape_inverse import fit_betas_auto, observed_lengths

# The default strategy, named once: the CLI and the Blender panel read it from here. Real captures
# decide it (issue 9: the network stays the default only if it is at or below analytic IK on every
# segment and on pose MPVE). `eval --real` on the 19 held-out takes, positions only: the network is
# worse on the legs (foot orientation 5.0 / 6.0 deg vs 3.8 / 4.7), on MPVE for 4 of 5 sources
# (DeepMimic 84.8 vs 83.3 mm) and slower; better only on the arms and hands by < 1.5 deg. With the
# file's bone rotations both give the same result. So: analytic.
DEFAULT_SOLVER = "analytic"
# fewer measured SMPL joints than this and the network is not used (analytic IK instead). Every
# layout we know gives at least 12 and the network lowers MPVE on all of them (NETWORK.md).
NETWORK_MIN_JOINTS = 10
# frames per sequential chunk; 1 = every frame analytic + one plug-in pass (see NETWORK.md:
# as accurate as chunks of 4 on the dev-test clips, and the fastest)
NETWORK_CHUNK = 1


@dataclass
class Solution:
    rotmats: torch.Tensor  # (T, 24, 3, 3)
    trans: torch.Tensor  # (T, 3)
    betas: torch.Tensor  # (num_betas,)
    fit_error_mm: np.ndarray  # (T,) mean distance to the measured keypoints
    mpbe_mm: float
    solver: str
    device: str
    seconds: float
    notes: list[str] = field(default_factory=list)
    noise_mm: float = float("nan")  # estimated keypoint noise (per-axis std)
    smooth_s: float = 0.0  # Gaussian sigma (s) the keypoints were smoothed with before solving
    rotations: bool = (
        False  # the file's own bone rotations gave the twists (SolveOptions.rotations)
    )
    # (K, 3) float32 metres: each keypoint's offset in its SMPL part's frame (``calibration.py``);
    # None when not calibrated. ``fit_error_mm`` is then to the calibrated keypoints.
    keypoint_offsets: np.ndarray | None = None
    fit_error_mm_raw: np.ndarray | None = None  # (T,) to the keypoints as captured (uncalibrated)
    contacts: np.ndarray | None = None  # (T, 2) bool: left/right foot on the ground (the source's)
    ground_height: float = float("nan")  # metres, Y up (given, or estimated: contacts.py)
    feet: dict = field(default_factory=dict)  # contacts.feet_report: skating, penetration figures
    # seconds per step of the solve (denoise, shape, strategy + calibration, feet, fit error ...),
    # wall clock and CPU time of the process
    stage_seconds: dict = field(default_factory=dict)
    stage_cpu_seconds: dict = field(default_factory=dict)

    @property
    def poses(self) -> np.ndarray:
        """(T, 72) axis-angle, SMPL/AMASS order."""
        return matrix_to_axis_angle(self.rotmats).reshape(-1, 72).cpu().numpy()


def fit_error_mm(
    model: BodyModel, prepared: PreparedKeypoints, rotmats, betas, trans, offsets=None
) -> np.ndarray:
    """Per-frame mean distance (mm) between the layout keypoints of a solution and the measured input
    (the keypoints that are positions: not the layout's aim-only end points); with ``offsets``
    (K, 3), to the calibrated keypoints (``calibration.calibrated_points``)."""
    return _fit_errors(model, prepared, rotmats, betas, trans, offsets)[0]


def _fit_errors(model, prepared, rotmats, betas, trans, offsets=None):
    """(``fit_error_mm`` with ``offsets``, the same to the keypoints as captured) from one forward
    kinematics pass: the calibrated points are the model points moved in their parts' frames."""
    from .calibration import Geometry, posed_keypoints

    geo = None if offsets is None else Geometry.of(model, prepared.layout, betas)
    block = 8192  # the FK of a long take at once would hold (T, 24, 4, 4) float64 transforms
    raw, cal = [], []
    for s in range(0, max(rotmats.shape[0], 1), block):
        kp, g = posed_keypoints(
            model, prepared.layout, rotmats[s : s + block], betas, trans[s : s + block]
        )
        raw.append(kp)
        if geo is not None:
            cal.append(geo.points(kp, g, np.asarray(offsets, np.float64)))
    raw_mm = _mean_distance_mm(prepared, np.concatenate(raw))
    return (raw_mm if geo is None else _mean_distance_mm(prepared, np.concatenate(cal))), raw_mm


def _mean_distance_mm(prepared: PreparedKeypoints, points: np.ndarray) -> np.ndarray:
    """(T,) mean distance (mm) of the model ``points`` (T, K, 3; NaN where not a position) to the
    measured keypoints that are positions."""
    w = prepared.measured & np.isfinite(points).all(-1) & ~prepared.layout.aim_only_mask()[None]
    d = np.linalg.norm(np.nan_to_num(points) - prepared.positions, axis=-1)
    counts = w.sum(-1)
    return np.where(counts > 0, (d * w).sum(-1) / np.maximum(counts, 1), np.nan) * 1000.0


def _denoise(prepared, smooth, notes: list[str]):
    """``denoise`` with a note when it smoothed; returns (keypoints, noise mm, sigma s)."""
    out, noise_mm, smooth_s = denoise(prepared, smooth)
    if smooth_s > 0:
        notes.append(
            f"keypoint noise estimated at {noise_mm:.1f} mm (limb length changes): smoothed over "
            f"time with a Gaussian of {smooth_s:.3f} s" + (" (auto)" if smooth == "auto" else "")
        )
    return out, noise_mm, smooth_s


def _network_blocker(measured_joints: np.ndarray) -> str | None:
    """Why the network cannot run on these keypoints (``measured_joints`` (T, 24) bool), or None."""
    from .network import CHECKPOINT_PATH

    if not CHECKPOINT_PATH.is_file():
        return "no network checkpoint is installed"
    measured = int(measured_joints.any(0).sum())
    if measured < NETWORK_MIN_JOINTS:
        return f"the network needs at least {NETWORK_MIN_JOINTS} of the 24 SMPL joints and this layout gives {measured}"
    return None


ROTATION_MODES = ("auto", "use", "ignore")


@dataclass
class SolveOptions:
    """Everything a solve can be told (one options type for every strategy)."""

    solver: str = DEFAULT_SOLVER
    refine: int = 0  # iterations of batched optimisation after the strategy (0 = none)
    betas: object = None  # a given shape (num_betas,), or None to fit it to the bone lengths
    chunk: int = 4096  # frames per analytic block (bounds memory on very long takes)
    smooth: object = "auto"  # 'auto' or a Gaussian sigma in seconds (0 = off)
    network_chunk: int | None = None  # frames per sequential network chunk (None: NETWORK_CHUNK)
    rotations: str = (
        "auto"  # the file's bone rotations: 'auto' (use when present), 'use' (required), 'ignore'
    )
    lock_feet: str = "auto"  # plant feet in contact + keep the mesh above ground (contacts.py)
    ground: float | None = None  # the floor's height (m, Y up); None = from the source
    # per-keypoint offsets (calibration.py): 'auto' (on for real skeleton layouts), 'on', 'off'
    calibrate: str = "auto"

    def check(self) -> None:
        from .calibration import CALIBRATE_MODES

        if self.calibrate not in CALIBRATE_MODES:
            raise InputError(
                f"calibrate must be one of {', '.join(CALIBRATE_MODES)}, not '{self.calibrate}'."
            )
        if self.lock_feet not in LOCK_MODES:
            raise InputError(
                f"lock_feet must be one of {', '.join(LOCK_MODES)}, not '{self.lock_feet}'."
            )
        check_ground(self.ground)
        if self.rotations not in ROTATION_MODES:
            raise InputError(
                f"rotations must be one of {', '.join(ROTATION_MODES)}, not '{self.rotations}'."
            )
        if self.solver not in STRATEGIES:
            raise LSMPLifyError(f"Unknown solver '{self.solver}'; use one of {', '.join(SOLVERS)}.")
        if self.refine < 0:
            raise InputError(f"refine must be 0 or more iterations, not {self.refine}.")
        if self.network_chunk is not None and int(self.network_chunk) < 1:
            raise LSMPLifyError(
                f"The network chunk must be at least 1 frame, not {self.network_chunk}."
            )


@dataclass
class SolveContext:
    """One solve's shared inputs: the (denoised) keypoints, their SMPL joint targets, the shape."""

    prepared: PreparedKeypoints
    model: BodyModel
    options: SolveOptions
    betas: torch.Tensor
    notes: list[str]
    # set from ``prepared`` by __post_init__
    targets: np.ndarray = field(init=False)  # (T, 24, 3)
    weight: np.ndarray = field(init=False)  # (T, 24) confidence x trust
    measured: np.ndarray = field(init=False)  # (T, 24) bool: a real sample of that joint
    _analytic: IKResult | None = None
    landmarks: tuple | None = (
        None  # (names, (T, L, 3) targets moved with their joints, (T, L) weights)
    )
    # what depends on the file's bone rotations and the shape only (the transferred source pose,
    # the rest context), shared by the contexts derived from this one (``with_prepared``, ``cut``):
    # a calibrated solve runs the strategy three times on the same rotations
    memo: dict = field(default_factory=dict)

    def __post_init__(self):
        self.targets, self.weight = self.prepared.smpl_targets()
        self.measured = self.prepared.smpl_measured()
        self.aim_origins = self.prepared.aim_origins()

    def with_prepared(
        self, prepared: PreparedKeypoints, notes: list[str] | None = None
    ) -> SolveContext:
        """The same solve on other keypoints (a frame subsample, calibrated targets); its own notes
        unless ``notes`` is given."""
        return SolveContext(
            prepared,
            self.model,
            self.options,
            self.betas,
            [] if notes is None else notes,
            memo=self.memo,
        )

    def cut(self, frames) -> SolveContext:
        """The same solve on a subset of the frames (its own notes); the file's transferred pose,
        once computed for every frame, is sliced rather than transferred again."""
        sub = self.with_prepared(self.prepared.cut(frames))
        if self.options.solver != "optimize":  # the strategies that use it: every frame's at once
            self.source_pose()
        known = self.memo.get(("source_pose", id(self.prepared.rotations)))
        if known is not None and known[1] is not None:
            sub.memo[("source_pose", id(sub.prepared.rotations))] = (
                sub.prepared.rotations,
                known[1][frames],
                None,
            )
        return sub

    def analytic(self) -> IKResult:
        """Analytic IK of every frame (computed once, in blocks of ``options.chunk``). With landmark
        keypoints (head top, toe and finger tips) it runs twice: the joints alone, then with each
        landmark moved onto the solved joint it rides on (``rebase_landmarks``)."""
        if self._analytic is None:
            lm_names, lm_t, lm_w = self.landmark_targets()
            if lm_names and bool((lm_w > 0).any()):  # no landmark seen: nothing to rebase
                joints_only = self._analytic_blocks([], lm_t[:, :0], lm_w[:, :0])
                lm_t = rebase_landmarks(
                    self.model,
                    lm_names,
                    lm_t,
                    lm_w,
                    self.targets,
                    self.measured,
                    joints_only.joints,
                )
            self.landmarks = (lm_names, lm_t, lm_w)
            self._analytic = self._analytic_blocks(lm_names, lm_t, lm_w)
        return self._analytic

    def rest_context(self) -> SolveContext:
        """The same solve for one frame: the file's own rest pose (the pose its bone rotations are
        relative to), as keypoints of the layout with identity rotations. The constant calibrations
        of the rotation transfer are measured on it, so they are the file's, not the frame range's."""
        import dataclasses

        from .keypoints import UNIT_SCALES
        from .layouts import to_layout_order
        from .prepare import SourceRotations, drop_stacked_joints

        p, rot = self.prepared, self.prepared.rotations
        # only _with_rotations calls this, with a source pose, which needs the file's rotations
        assert rot is not None
        key = ("rest_context", id(rot.rest), p.layout.name, p.units)
        if key in self.memo:
            return self.memo[key][1]
        pos = rot.rest[None] * UNIT_SCALES.get(p.units, 1.0)
        kp, conf, _ = to_layout_order(p.layout, pos, None, rot.names)
        drop_stacked_joints(kp, conf, p.layout)
        eye = np.broadcast_to(np.eye(3), (1, len(rot.names), 3, 3)).copy()
        rest = PreparedKeypoints(
            layout=p.layout,
            positions=np.nan_to_num(kp),
            weight=conf,
            fps=p.fps,
            units=p.units,
            up=p.up,
            rotations=SourceRotations(eye, rot.rest, rot.names),
        )
        at_rest = SolveContext(
            rest, self.model, dataclasses.replace(self.options, rotations="use"), self.betas, []
        )
        self.memo[key] = (rot.rest, at_rest)  # the array kept: its id stays this file's
        return at_rest

    def landmark_targets(self):
        """The layout's landmark keypoints that this model has (a user's SMPL file may lack some)."""
        names, lm_t, lm_w = self.prepared.landmark_targets()
        keep = [i for i, n in enumerate(names) if n in self.model.data.landmarks]
        return [names[i] for i in keep], lm_t[:, keep], lm_w[:, keep]

    def source_pose(self) -> torch.Tensor | None:
        """SMPL local rotations (T, 24, 3, 3) transferred from the file's own bone rotations, or None
        (none in the file, ``rotations='ignore'``, or a skeleton the transfer cannot map: a note says)."""
        mode, rot = self.options.rotations, self.prepared.rotations
        if mode == "ignore":
            return None
        key = ("source_pose", id(rot))
        if key not in self.memo:
            # the rotations kept with it: their id stays theirs while the entry lives
            self.memo[key] = (rot, *self._transferred_pose())
        _, pose, note = self.memo[key]
        if note and note not in self.notes:  # every context that asks says why, not only the first
            self.notes.append(note)
        return pose

    def _transferred_pose(self) -> tuple[torch.Tensor | None, str | None]:
        """(the transferred pose or None, the note saying why not)."""
        mode, rot = self.options.rotations, self.prepared.rotations
        if rot is None:
            if mode == "use":
                raise InputError(
                    "--rotations use: this input carries no bone rotations (only BVH and ASF/AMC "
                    "files do). Use --rotations auto or ignore."
                )
            return None, None
        if rot.glob.shape[0] != self.prepared.num_frames:
            raise LSMPLifyError(
                f"The keypoints have {self.prepared.num_frames} frames but their bone rotations "
                f"{rot.glob.shape[0]}: cut PreparedKeypoints with .cut(), which slices both."
            )
        from .network.sources import smpl_pose_from_rotations

        try:
            local = smpl_pose_from_rotations(
                rot.glob,
                rot.rest,
                rot.names,
                self.model.rest_joints(self.betas)[0].cpu().double().numpy(),
            )
        except InputError as exc:
            if mode == "use":
                raise InputError(f"--rotations use: {exc}.") from None
            return None, f"bone rotations not used: {exc}"
        return torch.as_tensor(local, dtype=self.model.dtype, device=self.model.device), None

    def _analytic_blocks(self, lm_names, lm_t, lm_w) -> IKResult:
        model, chunk = self.model, self.options.chunk
        parts = []
        begin_progress("analytic IK", self.prepared.num_frames)
        for s in range(0, self.prepared.num_frames, chunk):
            parts.append(
                solve_analytic(
                    model,
                    self.betas,
                    self.targets[s : s + chunk],
                    self.weight[s : s + chunk],
                    lm_names,
                    lm_t[s : s + chunk],
                    lm_w[s : s + chunk],
                    measured=self.aim_origins[s : s + chunk],
                    bone_ends=self.prepared.bone_end_landmarks(lm_names),
                )
            )
            step_progress(parts[-1].rotmats.shape[0])
        return IKResult(
            *(
                torch.cat([getattr(r, f) for r in parts])
                for f in ("rotmats", "trans", "joints", "glob")
            )
        )


def rebase_landmarks(
    model: BodyModel,
    names: list[str],
    lm_t: np.ndarray,
    lm_w: np.ndarray,
    targets: np.ndarray,
    measured: np.ndarray,
    solved_joints,
) -> np.ndarray:
    """Landmark targets (T, L, 3) moved with the joint each rides on (``attach_landmarks``): from the
    measured joint to the solved one, where that joint is measured.

    A landmark aims its joint from the joint's solved position. On a rig whose proportions are not
    the model's the solved head sits up to 12 cm from the captured one (131_01.bvh), and aiming
    from there at the captured head top tilted the head 52 deg; moved with the joint, the target
    keeps the captured head-to-head-top direction. Exact input: the same points."""
    avail = measured.any(0).tolist()
    attach = attach_landmarks(model, names, avail)
    j = solved_joints.detach().cpu().double().numpy()
    seen = measured[:, attach] & (lm_w > 0)
    moved = lm_t + j[:, attach] - np.nan_to_num(targets[:, attach])
    return np.where(seen[..., None], moved, lm_t)


def _analytic(ctx: SolveContext):
    ana = ctx.analytic()
    return ana.rotmats, ana.trans, "analytic"


def _optimize(ctx: SolveContext):
    from .optimize import optimize_fit
    from .pose_prior import load_default_prior

    p = ctx.prepared
    fit = optimize_fit(
        ctx.model,
        p.layout,
        p.positions,
        p.position_weight(),
        ctx.betas,
        mode="sequential",
        prior=load_default_prior(ctx.model.device),
    )
    return fit.rotmats, fit.trans, "optimize"


def _network(ctx: SolveContext):
    """Analytic IK + the residual network (see ``network.infer``), then the anatomical guard:
    frames where the network is worse than analytic IK (``guard.worse_frames``) keep analytic IK."""
    from .network.infer import BLOCK_FRAMES, solve_network_from

    blocker = _network_blocker(ctx.measured)
    if blocker:
        ctx.notes.append(f"{blocker}: used the analytic solver")
        return _analytic(ctx)
    model, ana = ctx.model, ctx.analytic()
    n_chunk = NETWORK_CHUNK if ctx.options.network_chunk is None else int(ctx.options.network_chunk)
    block = max(
        n_chunk, BLOCK_FRAMES // n_chunk * n_chunk
    )  # whole chunks; bounded memory on long takes
    tgt = torch.as_tensor(np.nan_to_num(ctx.targets), dtype=torch.float32)
    wgt = torch.as_tensor(ctx.weight, dtype=torch.float32)
    rot_blocks, trans_blocks, reanchored, anchors = [], [], 0, 0
    begin_progress("network", ctx.prepared.num_frames)
    for s in range(0, ctx.prepared.num_frames, block):
        e = s + block
        r, t, info = solve_network_from(
            model,
            ctx.betas,
            tgt[s:e],
            wgt[s:e],
            ana.rotmats[s:e],
            ana.joints[s:e],
            chunk=n_chunk,
            device=model.device,
            threads=None,
        )
        rot_blocks.append(r.to(model.dtype))
        trans_blocks.append(t.to(model.dtype))
        reanchored += info.reanchored
        anchors += info.anchors
        step_progress(r.shape[0])
    rot, trans = torch.cat(rot_blocks), torch.cat(trans_blocks)
    if n_chunk == 1:
        ctx.notes.append("network: every frame from analytic IK + one plug-in pass")
    else:
        ctx.notes.append(
            f"network: sequential in chunks of {n_chunk} frames, {anchors} chunk anchors, "
            f"{reanchored} frame(s) re-anchored by the drift guard"
        )
    rot = _leaves_from(ctx, rot, ana.rotmats)
    worse = worse_frames(model.joints(rot, ctx.betas, trans), ana.joints, ctx.targets, ctx.measured)
    if worse.any():
        rot, trans = prefer_reference(worse, (rot, trans), (ana.rotmats, ana.trans))
        ctx.notes.append(
            f"anatomical guard: {int(worse.sum())} of {worse.size} frame(s) kept analytic IK "
            f"(the network bent a segment more than {GUARD_DEG:g} deg off the keypoints, dropped "
            f"the head below the neck or moved the pelvis)"
        )
    return rot, trans, "network"


def _leaves_from(ctx: SolveContext, rot, reference):
    """``rot`` with the world rotation of every leaf that landmark keypoints aim (head top, toe and
    finger tips on a joint with no measured child) taken from ``reference`` (analytic IK, which
    fits them); the joints below keep their world rotation. The network never sees landmarks, so
    its own guess for such a leaf is worse than the fit (131_01.bvh head: 12.4 vs 5.1 deg)."""
    from .body_model import SMPL_PARENTS
    from .network.kinematics import KIDS, fk

    names, _, lm_w = ctx.landmark_targets()
    if not names:
        return rot
    seen = ctx.measured.any(0)
    carried = {
        j
        for j, li in zip(
            attach_landmarks(ctx.model, names, seen.tolist()), range(len(names)), strict=True
        )
        if (lm_w[:, li] > 0).any() and not any(seen[c] for c in KIDS[j])
    }
    if not carried:
        return rot
    eye_rest = torch.zeros(1, 24, 3, dtype=rot.dtype, device=rot.device)
    g_net, _ = fk(rot, eye_rest)
    g_ref, _ = fk(reference.to(rot.dtype), eye_rest)
    g = g_net.clone()
    idx = sorted(carried)
    g[:, idx] = g_ref[:, idx]
    local = rot.clone()
    for j in range(1, 24):  # local = parent's world^T world, for the leaves and their children
        if j in carried or SMPL_PARENTS[j] in carried:
            local[:, j] = g[:, SMPL_PARENTS[j]].transpose(-1, -2) @ g[:, j]
    if 0 in carried:
        local[:, 0] = g[:, 0]
    return local


def _landmark_leaves(ctx: SolveContext) -> set[int]:
    """Joints that landmark keypoints aim and that have no measured child (head, feet, hands)."""
    from .network.kinematics import KIDS

    names, _, lm_w = ctx.landmarks or ctx.landmark_targets()
    if not names:
        return set()
    seen = ctx.measured.any(0)
    attach = attach_landmarks(ctx.model, names, seen.tolist())
    return {
        j
        for li, j in enumerate(attach)
        if (lm_w[:, li] > 0).any() and not any(seen[c] for c in KIDS[j])
    }


def _unaimed_bones(ctx: SolveContext) -> set[int]:
    """Single-child joints below which no keypoint is measured and no landmark aims (DeepMimic's
    ankles and neck: it has no toe or head point): the keypoints cannot turn them, the file's
    rotations can (eval --real, DeepMimic takes, first 120 frames: feet 13.4/16.5 -> 0.0 deg)."""
    from .network.kinematics import KIDS

    seen = ctx.measured.any(0)
    names = (ctx.landmarks or ctx.landmark_targets())[0]
    aimed = set(attach_landmarks(ctx.model, names, seen.tolist())) if names else set()

    def subtree(j: int) -> list[int]:
        return [j] + [d for c in KIDS[j] for d in subtree(c)]

    return {
        j
        for j in range(24)
        if len(KIDS[j]) == 1
        and j not in aimed
        and not any(seen[d] or d in aimed for d in subtree(KIDS[j][0]))
    }


def _leaf_calibration(ctx: SolveContext, rot) -> dict[int, torch.Tensor]:
    """Per leaf that landmark keypoints aim (head top, toe tips, finger tips on a joint with no
    measured child), the constant rotation C (3, 3), in the leaf's own frame, that turns its
    landmarks' rest offsets onto where they are seen from the leaf posed by ``rot`` (local_leaf ->
    local_leaf @ C; ``_aim_leaf``). The rest calibration matches bone directions only where a bone
    has a child; a leaf's rest frame differs from the source's by a constant (31-34 deg at CMU's
    toes). Measured on the rest pose (``rest_context``), where the source's rotations are the
    identity."""
    from .network.kinematics import KIDS

    names, lm_t, lm_w = ctx.landmarks or ([], None, None)
    if not names:
        return {}
    model, seen = ctx.model, ctx.measured.any(0)
    attach = attach_landmarks(model, names, seen.tolist())
    g, _ = model.global_transforms(rot, model.rest_joints(ctx.betas).expand(rot.shape[0], -1, -1))
    joints = ctx.analytic().joints  # the landmark targets were moved with these (rebase_landmarks)
    lm_rest = model.rest_vertices(ctx.betas, [model.data.landmarks[n] for n in names])[0]
    rest = model.rest_joints(ctx.betas)[0]
    t = torch.as_tensor(lm_t, dtype=rot.dtype, device=rot.device)
    w = torch.as_tensor(lm_w, dtype=rot.dtype, device=rot.device)
    out = {}
    for j in sorted(set(attach)):
        ls = [i for i, a in enumerate(attach) if a == j]
        wj = w[:, ls, None]
        if any(seen[c] for c in KIDS[j]) or not bool((wj > 0).any()):
            continue
        out[j] = _aim_leaf(
            lm_rest[ls] - rest[j],
            g[:, j].transpose(-1, -2)[:, None] @ (t[:, ls] - joints[:, j, None])[..., None],
            wj[..., 0],
            rest[KIDS[j][0]] - rest[j] if KIDS[j] else None,
        )
    return out


def _aim_leaf(rest_offsets, seen, w, axis=None) -> torch.Tensor:
    """The swing C (3, 3) that turns a leaf's farthest landmark rest offset (of L, 3: its long axis,
    the middle finger tip rather than the thumb's) onto where that landmark is seen from the leaf
    (T, L, 3, 1; weights (T, L)). A leaf with a bone of its own (the wrist: wrist -> finger base)
    aims that bone's rest ``axis`` instead: a source's finger chain is straight in its rest pose,
    while the open model's finger tips droop 9.5 deg below its palm. The twist stays the source's:
    the thumb tips of CMU and SMPL differ by ~30 deg about the palm. Aiming the landmarks' mean
    tilted CMU hands by a constant 15-24 deg (CMU's thumb tip sits much nearer the wrist than SMPL's;
    eval --real, analytic, hand direction: cmu_subset 15.0 -> 0.0, cmu_bvh 23.8 -> 0.0 deg)."""
    from .rotations import normalize, swing_rotation

    seen_any = (w > 0).any(0)
    mean = ((w[..., None] > 0) * normalize(seen[..., 0])).sum(0)  # (L, 3) over the frames seen
    far = torch.where(seen_any, rest_offsets.norm(dim=-1), -1.0).argmax()
    return swing_rotation(rest_offsets[far] if axis is None else axis, normalize(mean[far]))


# the source's bone direction must beat analytic IK's by this much (in the rest pose) to replace it:
# it starts from SMPL's joint, not the captured one, so it trades joint position for direction
# (taking it on every bone that was better at all raised the fit error on 01_01_short.bvh 66 -> 77 mm)
SOURCE_AIM_MARGIN_DEG = 2.0


def _source_aims_better(ctx: SolveContext, g_src, rest) -> set[int]:
    """Single-child joints whose bone, turned by the source's rotation, points closer to the measured
    bone (mean angle; called on the rest pose, ``rest_context``) than analytic IK's: analytic IK aims
    from the rebuilt joint, and
    on a short bone (the foot) the rebuilt ankle's drift tilts it; a bone the rest calibration could
    not match (a zero-length CMU wrist, the clavicles, which start elsewhere than SMPL's collars)
    stays with analytic IK."""
    from .guard import direction_errors_deg
    from .network.kinematics import KIDS

    ana = ctx.analytic()
    pairs = [(j, KIDS[j][0]) for j in range(24) if len(KIDS[j]) == 1]
    e_ana = direction_errors_deg(ana.joints, ctx.targets, ctx.measured, pairs)
    e_src = np.full_like(e_ana, np.nan)
    for k, (j, c) in enumerate(
        pairs
    ):  # each bone on its own: the source's direction from the same start
        tip = ana.joints[:, j] + (g_src[:, j] @ (rest[c] - rest[j])[:, None])[..., 0]
        pts = ana.joints.clone()
        pts[:, c] = tip
        e_src[:, k] = direction_errors_deg(pts, ctx.targets, ctx.measured, [(j, c)])[:, 0]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # bones never measured: all-NaN columns
        better = np.nanmean(e_src, 0) < np.nanmean(e_ana, 0) - SOURCE_AIM_MARGIN_DEG
    return {j for (j, _), b in zip(pairs, better, strict=True) if b}


def _with_rotations(ctx: SolveContext, source: torch.Tensor, base=None):
    """Analytic IK with each bone's twist taken from the file's transferred bone rotations
    (``source``): every bone points where the keypoints say, and turns about itself as the capture
    says. Per single-child joint j with world bone axis a (analytic IK), the world twist is the part
    about a of G_src G_ana^T (swing-twist split of its quaternion (w, v): phi = 2 atan2(v.a, w)),
    so G_j = Rot(a, phi) G_ana. Leaves (and joints landmarks aim, with no measured child: CMU's wrist
    where its hand node sits on it) take the source's whole orientation, re-aimed at their
    landmarks (``_leaf_calibration``); the pelvis and spine3 (several children) take the source's
    rotation times the constant offset that maps it onto analytic IK's in the file's own rest pose
    (``rest_context``): the capture's motion on the keypoints' orientation (eval --real, first 120
    frames: chest 8.6 -> 0.0 deg on 131_03.bvh, 9.2 -> 0.0 on the FBX-rig BVH takes). Re-aiming the source pose instead carried the 42 deg calibration gap at CMU's
    clavicles into the upper arms' twist (131_03.bvh upper arms 1.4 -> 4.7 deg)."""
    from .network.kinematics import KIDS
    from .rotations import axis_angle_to_matrix, matrix_to_quaternion, normalize

    model = ctx.model
    base_rot, base_trans = (ctx.analytic().rotmats, ctx.analytic().trans) if base is None else base
    rest = model.rest_joints(ctx.betas)
    g_a, _ = model.global_transforms(base_rot, rest)
    g_s, _ = model.global_transforms(source, rest)
    # the constants below are the file's own (not the frame range's)
    g_a0, g_s0, aims_better, leaf_calibration = _rest_constants(ctx.rest_context())
    leaves = _landmark_leaves(ctx) | {j for j in range(24) if not KIDS[j]} | _unaimed_bones(ctx)
    whole = leaves | aims_better
    g = g_a.clone()
    # each kind of joint in one batch (S joints x T frames), the same arithmetic joint by joint
    src = sorted(whole)  # the source's whole orientation (leaves re-aimed below)
    multi = [j for j in range(24) if j not in whole and len(KIDS[j]) > 1]
    single = [j for j in range(24) if j not in whole and len(KIDS[j]) == 1]
    g[:, src] = g_s[:, src]
    if multi:  # pelvis, spine3: the source's motion on analytic IK's rest orientation
        g[:, multi] = g_s[:, multi] @ g_s0[0, multi].transpose(-1, -2) @ g_a0[0, multi]
    if single:
        bone = rest[0, [KIDS[j][0] for j in single]] - rest[0, single]
        axis = normalize((g_a[:, single] @ bone[..., None])[..., 0])
        q = matrix_to_quaternion(g_s[:, single] @ g_a[:, single].transpose(-1, -2))
        phi = 2 * torch.atan2((q[..., 1:] * axis).sum(-1), q[..., 0])
        g[:, single] = axis_angle_to_matrix(axis * phi[..., None]) @ g_a[:, single]
    rot = local_rotations(g)
    for j, c in leaf_calibration.items():
        rot[:, j] = rot[:, j] @ c
        for k in KIDS[j]:  # a calibrated joint's children keep their world orientation
            rot[:, k] = c.transpose(-1, -2) @ rot[:, k]
    ctx.notes.append(
        "bone rotations: the twist of every bone and the orientation of the head, hands and feet "
        "from the file's own rotations (transferred onto SMPL, rest calibration by bone directions)"
    )
    if ctx.prepared.layout.name in CHEST_FROM_KEYPOINTS:
        rot = _chest_onto_keypoints(ctx, rot, base_trans)
    return rot, _refit_translation(ctx, rot, base_trans)


def _rest_constants(at_rest: SolveContext):
    """The rotation transfer's constants, measured on the file's rest pose (``rest_context``), once
    per solve (a calibrated solve transfers three times: twice on its subsample, once on every
    frame): analytic IK's and the source's world rotations there (1, 24, 3, 3), the bones the
    source aims better (``_source_aims_better``) and the leaves' calibrations
    (``_leaf_calibration``, from the rest pose's rotations built as ``_with_rotations`` builds a
    pose's)."""
    key = ("rest_constants", id(at_rest.betas))
    if key not in at_rest.memo:
        model, rest = at_rest.model, at_rest.model.rest_joints(at_rest.betas)
        rest_src = at_rest.source_pose()
        assert rest_src is not None  # rotations="use": source_pose raises rather than return None
        g_a0, _ = model.global_transforms(at_rest.analytic().rotmats, rest)
        g_s0, _ = model.global_transforms(rest_src, rest)
        at_rest.memo[key] = (
            at_rest.betas,  # kept: its id stays this shape's while the entry lives
            g_a0,
            g_s0,
            _source_aims_better(at_rest, g_s0, rest[0]),
            _leaf_calibration(at_rest, local_rotations(g_s0)),
        )
    return at_rest.memo[key][1:]


SPINE2, SPINE3 = 6, 9
# layouts whose shoulders and neck ride on joints SMPL lacks (CMU's clavicles, its lower neck), so
# the file's chest orientation leaves them off as a whole (``_chest_onto_keypoints``); DeepMimic's
# hang on its chest itself, and moving it there only left its spine rotations (eval --real,
# deepmimic_walk: MPVE against the rotation transfer 20.4 -> 29.8 mm, torso 1.4 -> 2.6 deg)
CHEST_FROM_KEYPOINTS = frozenset({"cmu"})


def _chest_onto_keypoints(ctx: SolveContext, rot, trans):
    """``rot`` with spine2 swung so that the chest (spine3 and all it carries, its world rotation
    the file's) moves by the weighted mean of what the keypoints it carries miss. The file's thorax
    sets the chest's orientation, but CMU's shoulders and neck ride on its clavicles and lower neck
    (SMPL has neither joint), so the chest placed by the spine's aim at its own keypoints leaves the
    upper body off as a whole (eval --real, torso direction 6-8 deg on the FBX rig's dances). The
    spine's middle joints have no captured orientation to keep; the chest's and everything else's
    world rotations are unchanged. Swinging spine2 (the bone up to the chest) rather than spine1:
    49_08 fit 15.9 against 17.2 mm, torso 5.2 against 6.3 deg; the cost is the rotation-transfer
    MPVE (the spine leaves the file's: cmu_bvh 131_03 53.5 -> 64.1 mm, 57.2 swinging spine1).
    Without it: torso 7.6 deg, fit 19.3 mm on 49_08."""
    from .body_model import SMPL_PARENTS
    from .calibration import keypoint_parts
    from .rotations import swing_rotation

    model, p = ctx.model, ctx.prepared
    moved = {SPINE2}  # the parts whose points the swing moves: spine2 and all below it
    for j in range(SPINE2 + 1, 24):
        if SMPL_PARENTS[j] in moved:
            moved.add(j)
    carried = np.isin(keypoint_parts(model, p.layout), sorted(moved))
    if not carried.any():
        return rot
    pts = p.layout.generate(model, rot, ctx.betas, trans).detach().cpu().double().numpy()
    resid = p.positions - pts
    w = p.position_weight() * p.measured * np.isfinite(resid).all(-1) * carried[None]
    total = w.sum(1, keepdims=True)
    delta = (w[..., None] * np.nan_to_num(resid)).sum(1) / np.maximum(total, 1e-12)
    delta = torch.as_tensor(np.where(total > 0, delta, 0.0), dtype=rot.dtype, device=rot.device)
    g, joints = model.global_transforms(rot, model.rest_joints(ctx.betas))
    bone = joints[:, SPINE3] - joints[:, SPINE2]
    g2 = swing_rotation(bone, bone + delta) @ g[:, SPINE2]
    out = rot.clone()
    out[:, SPINE2] = g[:, SMPL_PARENTS[SPINE2]].transpose(-1, -2) @ g2
    out[:, SPINE3] = g2.transpose(-1, -2) @ g[:, SPINE3]
    return out


def _refit_translation(ctx: SolveContext, rot, trans):
    """``trans`` moved by the weighted mean of what the position keypoints miss: the least-squares
    translation of the pose ``rot``. The base solve placed the body for its own pelvis and chest;
    the file's rotations turn them (CMU's root and thorax against what the hips and shoulders
    imply, 5-7 deg on cmu_subset's basketball_1), and the hips and shoulders swing about joints
    that were placed for the other orientation. Directions and orientations are unchanged."""
    p = ctx.prepared
    pts = p.layout.generate(ctx.model, rot, ctx.betas, trans).detach().cpu().double().numpy()
    resid = p.positions - pts
    w = p.position_weight() * p.measured * np.isfinite(resid).all(-1)
    total = w.sum(1, keepdims=True)
    shift = (w[..., None] * np.nan_to_num(resid)).sum(1) / np.maximum(total, 1e-12)
    shift = np.where(total > 0, shift, 0.0)
    return trans + torch.as_tensor(shift, dtype=trans.dtype, device=trans.device)


# The solver strategies by name; each takes the context and returns (rotmats, trans, solver used).
STRATEGIES = {"network": _network, "analytic": _analytic, "optimize": _optimize}
SOLVERS = tuple(STRATEGIES)


def _optimise_step(ctx: SolveContext, rotmats, trans, iters: int):
    """``iters`` iterations of batched optimisation from a solution (the refine step, written once)."""
    from .optimize import optimize_fit
    from .pose_prior import load_default_prior

    p = ctx.prepared
    fit = optimize_fit(
        ctx.model,
        p.layout,
        p.positions,
        p.position_weight(),
        ctx.betas,
        init_rotmats=rotmats,
        init_trans=trans,
        mode="batch",
        iters=iters,
        prior=load_default_prior(ctx.model.device),
    )
    return fit.rotmats, fit.trans


def _shape(prepared: PreparedKeypoints, model: BodyModel, betas):
    """(betas on the model's device, MPBE mm): fitted to the bone lengths, or the given ones scored."""
    lengths, stderr = observed_lengths(*prepared.length_samples())
    if betas is None:
        shape = fit_betas_auto(model, lengths, stderr)
        return shape.betas.to(model.device), shape.mpbe_mm
    betas = torch.as_tensor(
        np.asarray(betas, dtype=np.float64)[: model.num_betas], dtype=model.dtype
    )
    fitted = model.bone_lengths(betas)[0].cpu().numpy()
    bones = lengths[: fitted.shape[0]]
    ok = np.isfinite(bones)
    mpbe = float(np.mean(np.abs(fitted[ok] - bones[ok])) * 1000) if ok.any() else float("nan")
    return betas.to(model.device), mpbe


class _Clock:
    """Seconds per named step of a solve (``Solution.stage_seconds``: the benchmarks print where a
    solve's time goes); each step is the time since the previous one, by the wall clock and by the
    process's CPU time (``stage_cpu_seconds``: all threads; on a shared machine the wall clock also
    counts the time other processes hold the cores)."""

    def __init__(self):
        self.stages: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.start = self._last = time.perf_counter()
        self._last_cpu = time.process_time()

    def done(self, stage: str) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        self.stages[stage] = self.stages.get(stage, 0.0) + now - self._last
        self.cpu[stage] = self.cpu.get(stage, 0.0) + cpu - self._last_cpu
        self._last, self._last_cpu = now, cpu

    def total(self) -> float:
        return self._last - self.start


def solve(
    prepared: PreparedKeypoints,
    model: BodyModel,
    solver: str = DEFAULT_SOLVER,
    refine: int = 0,
    betas=None,
    chunk: int = 4096,
    smooth="auto",
    network_chunk: int | None = None,
    rotations: str = "auto",
    options: SolveOptions | None = None,
    calibrate: str = "auto",
    lock_feet: str = "auto",
    ground: float | None = None,
    progress: Progress | None = None,
) -> Solution:
    """Solve every frame with one strategy (``SolveOptions``; the keyword arguments build one when
    ``options`` is not given), then ``refine`` iterations of batched optimisation, then the feet
    (``contacts.plant_feet``). ``progress`` hears the frames done block by block and stops the
    solve (``progress.CancelledError``) when it is cancelled."""
    opts = options or SolveOptions(
        solver=solver,
        refine=refine,
        betas=betas,
        chunk=chunk,
        smooth=smooth,
        network_chunk=network_chunk,
        rotations=rotations,
        calibrate=calibrate,
        lock_feet=lock_feet,
        ground=ground,
    )
    opts.check()
    if opts.solver == "optimize" and opts.rotations == "use":
        raise InputError(
            "--rotations use works with the analytic and network solvers, not optimize."
        )
    notes: list[str] = []
    with cpu_threads(model.device), tracking(progress):
        clock = _Clock()
        denoised, noise_mm, smooth_s = _denoise(prepared, opts.smooth, notes)
        clock.done("denoise")
        b, mpbe = _shape(denoised, model, opts.betas)
        clock.done("shape")
        # the strategy, aimed at the calibrated keypoints where calibration is on (calibration.py)
        cal = calibrated_solve(
            SolveContext(denoised, model, opts, b, notes), _run_strategy, opts.calibrate
        )
        rotmats, trans = cal.rotmats, cal.trans
        clock.done("strategy + calibration")
        if opts.refine > 0:
            rotmats, trans = _optimise_step(cal.ctx, rotmats, trans, opts.refine)
            clock.done("refine")
        feet = _feet(cal.ctx, denoised, rotmats, trans, opts.lock_feet, opts.ground)
        clock.done("feet")
        seconds = clock.total()
        # on the solve's one thread too (two threads on a busy 2-core machine: 5x slower)
        err, raw = _fit_errors(model, prepared, feet.rotmats, b, feet.trans, cal.offsets)
        clock.done("fit error")
    return Solution(
        rotmats=feet.rotmats,
        trans=feet.trans,
        betas=b,
        fit_error_mm=err,
        mpbe_mm=mpbe,
        solver=cal.used,
        device=str(model.device),
        seconds=seconds,
        notes=notes,
        noise_mm=noise_mm,
        smooth_s=smooth_s,
        rotations=cal.rotations,
        keypoint_offsets=cal.offsets,
        fit_error_mm_raw=raw,
        contacts=feet.contacts,
        ground_height=feet.ground_height,
        feet=feet.report,
        stage_seconds=clock.stages,
        stage_cpu_seconds=clock.cpu,
    )


def _feet(ctx: SolveContext, denoised: PreparedKeypoints, rotmats, trans, mode: str, ground):
    """``contacts.plant_feet`` after a solve or a refine (``FeetResult``), noted when it locked.
    The ground comes from the keypoints the solve aimed at (``ctx``'s: the calibrated ones where
    calibration is on): it is read from the heel's fit residual, which against the raw keypoints
    holds the calibration offset (CMU's ankle sits lower than SMPL's), and lifting the feet by it
    bent the calibrated legs."""
    feet = plant_feet(
        denoised, ctx.model, ctx.betas, rotmats, trans, mode, ground, ground_keypoints=ctx.prepared
    )
    if feet.locked:
        ctx.notes.append(_feet_note(feet))
    if ctx.model.device.type == "cuda":
        torch.cuda.synchronize()
    return feet


def _feet_note(feet) -> str:
    r = feet.report
    return (
        f"feet: {r['contact_frames'][0]} / {r['contact_frames'][1]} frame(s) of left / right foot "
        f"contact planted; ground at Y = {feet.ground_height:.3f} m "
        f"({'given' if feet.ground_given else 'from the source'}); the mesh kept above it"
    )


def _run_strategy(ctx: SolveContext):
    """(rotmats, trans, solver used, whether the file's rotations gave the twists) of one solve."""
    source = ctx.source_pose() if ctx.options.solver != "optimize" else None
    if source is not None:  # the twist is known: no strategy needs to guess it
        # no gradient flows through it: inference mode, as analytic IK's (``solve_analytic``)
        with torch.inference_mode():
            rotmats, trans = _with_rotations(ctx, source)
        return rotmats.clone(), trans.clone(), ctx.options.solver, True
    rotmats, trans, used = STRATEGIES[ctx.options.solver](ctx)
    return rotmats, trans, used, False


def refine_existing(
    prepared: PreparedKeypoints,
    model: BodyModel,
    rotmats,
    betas,
    trans=None,
    passes: int = 2,
    refine: int = 0,
    smooth="auto",
    keypoint_offsets=None,
    progress: Progress | None = None,
    lock_feet: str = "auto",
    ground: float | None = None,
) -> Solution:
    """Plug-in mode: improve SMPL parameters that already exist for these frames (an image-based
    estimator's output, an animation on a rig) against the keypoints. ``passes`` network passes
    (init = the given pose, target = the keypoints completed by analytic IK, so layouts without a
    pelvis keypoint get their root from the hips and torso; each pass re-aims the bones at the
    keypoints and predicts their twist), then ``refine`` iterations of batched optimisation. The
    shape stays the given one. Layouts the network cannot use (fewer than NETWORK_MIN_JOINTS SMPL
    joints) get the optimisation only (10 iterations when ``refine`` is 0), with a note.

    Per frame the given pose is kept where the refined one is worse: anatomically worse than
    analytic IK while the given one is not (``guard.worse_frames``), or a fit error more than
    REFINE_TOLERANCE above the given pose's while the given one is anatomically sound. Then the
    feet, as a solve ends them (``lock_feet``, ``ground``: ``SolveOptions``'s; ``plant_feet``).
    ``progress``: as for ``solve``.

    ``keypoint_offsets`` (K, 3) (an earlier solve's ``Solution.keypoint_offsets``): aim at the
    points they calibrate (``calibration.calibrated_context``) and measure the fit to them."""
    rot, b, tr = _existing_motion(prepared, model, rotmats, betas, trans, passes, refine)
    opts = SolveOptions(refine=refine, smooth=smooth, lock_feet=lock_feet, ground=ground)
    opts.check()
    offsets = (
        None if keypoint_offsets is None else checked_offsets(keypoint_offsets, prepared.layout)
    )
    notes: list[str] = []
    with cpu_threads(model.device), tracking(progress):
        clock = _Clock()
        denoised, noise_mm, smooth_s = _denoise(prepared, smooth, notes)
        ctx = SolveContext(denoised, model, opts, b, notes)
        if offsets is not None:
            ctx = calibrated_context(ctx, _run_strategy, offsets)
            notes.append(
                "calibration: aimed at the calibrated keypoints of the given keypoint_offsets"
            )
        clock.done("calibration")
        new_rot, new_tr = _refined(ctx, rot, tr, passes, refine)
        if offsets is not None:  # as a calibrated solve ends (calibration.py)
            new_rot = aim_far_bones(ctx, new_rot, offsets)
        new_rot, new_tr = _keep_better(ctx, prepared, (rot, tr), (new_rot, new_tr), offsets)
        clock.done("refine")
        feet = _feet(ctx, denoised, new_rot, new_tr, lock_feet, ground)
        clock.done("feet")
        seconds = clock.total()
        err, raw = _fit_errors(model, prepared, feet.rotmats, b, feet.trans, offsets)
        clock.done("fit error")
    return Solution(
        rotmats=feet.rotmats,
        trans=feet.trans,
        betas=b,
        fit_error_mm=err,
        mpbe_mm=float("nan"),
        solver="refine",
        device=str(model.device),
        seconds=seconds,
        notes=notes,
        noise_mm=noise_mm,
        smooth_s=smooth_s,
        keypoint_offsets=None if offsets is None else offsets.astype(np.float32),
        fit_error_mm_raw=raw,
        contacts=feet.contacts,
        ground_height=feet.ground_height,
        feet=feet.report,
        stage_seconds=clock.stages,
        stage_cpu_seconds=clock.cpu,
    )


def _existing_motion(
    prepared: PreparedKeypoints, model: BodyModel, rotmats, betas, trans, passes, refine
):
    """The motion to refine as the model's tensors (rotmats (T, 24, 3, 3), betas, trans (T, 3),
    zeros when not given), or a clear InputError when its frames do not match the keypoints' or
    there is nothing to refine with (``passes``, ``refine``)."""
    if passes < 0 or refine < 0:
        raise InputError("passes and refine must be 0 or more.")
    if passes == 0 and refine == 0:
        raise InputError(
            "Nothing to refine with: give network passes or optimisation iterations (or both)."
        )
    t = prepared.num_frames
    rot = torch.as_tensor(np.asarray(rotmats), dtype=model.dtype, device=model.device)
    if rot.shape != (t, 24, 3, 3):
        raise InputError(
            f"The existing motion has {rot.shape[0] if rot.ndim else 0} frames of "
            f"{tuple(rot.shape[1:])} rotations; the keypoints have {t} frames and SMPL needs "
            f"(24, 3, 3). Give the same frame range for both."
        )
    b = torch.as_tensor(
        np.asarray(betas, dtype=np.float64)[: model.num_betas],
        dtype=model.dtype,
        device=model.device,
    )
    if trans is None:
        return rot, b, torch.zeros(t, 3, dtype=model.dtype, device=model.device)
    tr = torch.as_tensor(np.asarray(trans), dtype=model.dtype, device=model.device)
    return rot, b, tr.reshape(t, 3)


def _refined(ctx: SolveContext, rot, tr, passes: int, refine: int):
    """(rotmats, trans) after the network plug-in passes (with the file's twist and leaves where it
    has bone rotations) and ``refine`` iterations of optimisation, each noted."""
    new_rot, new_tr = rot, tr
    if passes > 0:
        blocker = _network_blocker(ctx.measured)
        if blocker:
            refine = refine or 10
            ctx.notes.append(f"{blocker}: refined by {refine} iterations of optimisation instead")
        else:
            new_rot, new_tr = _plugin_passes(ctx, rot, passes)
            ctx.notes.append(f"network plug-in: {passes} pass(es) from the existing motion")
            source = ctx.source_pose()
            if source is not None:  # the passes see keypoints only: twist and leaves from the
                # file, as the solver's own output has them (eval --real, refining that output:
                # cmu_bvh MPVE 60.7 -> 73.3 mm without, the fit error lower either way)
                new_rot, new_tr = _with_rotations(ctx, source, base=(new_rot, new_tr))
    if refine > 0:
        new_rot, new_tr = _optimise_step(ctx, new_rot, new_tr, refine)
        ctx.notes.append(f"optimisation: {refine} iteration(s)")
    return new_rot, new_tr


# a refined frame may fit the keypoints this much worse than the given one (relative) before the
# given one is kept: the plug-in pass must never make a good motion worse (issue 9: <= 2%)
REFINE_TOLERANCE = 0.02


def _plugin_passes(ctx: SolveContext, rot, passes: int):
    """Network plug-in passes from ``rot`` at the keypoints, completed by the analytic joints."""
    from .network import refine_network

    ana = ctx.analytic()
    tgt = torch.as_tensor(np.nan_to_num(ctx.targets), dtype=torch.float32)
    wgt = torch.as_tensor(ctx.weight, dtype=torch.float32)
    rots, trans = [], []
    begin_progress("network plug-in", rot.shape[0])
    for s in range(0, rot.shape[0], PLUGIN_BLOCK):  # frame by frame: blocks give the same poses
        e = s + PLUGIN_BLOCK
        r32, t32 = refine_network(
            ctx.model, ctx.betas, rot[s:e], tgt[s:e], wgt[s:e], passes, joints_ref=ana.joints[s:e]
        )
        rots.append(r32.to(ctx.model.dtype))
        trans.append(t32.to(ctx.model.dtype))
        step_progress(r32.shape[0])
    return torch.cat(rots), torch.cat(trans)


# frames per network plug-in block: progress and cancelling between blocks (each pass works on
# every frame on its own, so the block size changes nothing in the result)
PLUGIN_BLOCK = 2048


def _keep_better(ctx: SolveContext, given: PreparedKeypoints, old, new, offsets=None):
    """Per frame the refined (rotmats, trans) ``new`` unless the given ``old`` is better (see
    ``refine_existing``); notes how many frames kept the given pose."""
    model, ana = ctx.model, ctx.analytic()
    j_old, j_new = model.joints(old[0], ctx.betas, old[1]), model.joints(new[0], ctx.betas, new[1])
    old_bad = worse_frames(j_old, ana.joints, ctx.targets, ctx.measured)
    new_bad = worse_frames(j_new, ana.joints, ctx.targets, ctx.measured)
    e_old = fit_error_mm(model, given, old[0], ctx.betas, old[1], offsets)
    e_new = fit_error_mm(model, given, new[0], ctx.betas, new[1], offsets)
    with np.errstate(invalid="ignore"):
        keep = ~old_bad & (new_bad | (e_new > e_old * (1 + REFINE_TOLERANCE)))
    if keep.any():
        ctx.notes.append(
            f"plug-in guard: {int(keep.sum())} of {keep.size} frame(s) kept the given pose (the "
            f"refined one fitted worse or was anatomically worse)"
        )
    return prefer_reference(keep, new, old)
