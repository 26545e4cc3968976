"""Foot contact, ground height and foot locking after the solve (issue 10).

A solve fits every frame on its own, so a foot that the capture holds still on the floor drifts by
the fit's frame-to-frame error, and the mesh can dip below the floor where the capture's skeleton
and SMPL's define the foot differently. This module follows the footskate clean-up of Kovar,
Schreiner and Gleicher (2002, "Footskate cleanup for motion capture editing", SCA): find the
contacts in the source, plant each constrained point where the source holds it, reach it with an
analytic limb IK, and blend the adjustment in and out over a few frames so nothing pops. All of it
is batched over frames (numpy for the per-frame signals, torch for the kinematics):

1. ``detect_contacts``: per foot, a heel point (the layout's heel, else its ankle) and a toe point
   (toe tips and ball, else the heel point) from the SOURCE keypoints. A point is in contact while
   it is low and slow: height over its contact level (the ``LEVEL_PERCENTILE``-th percentile of that
   point's heights over the take, both feet pooled: the level where the floor holds it, whatever
   the skeleton's definition of the point) and speed (central differences over ~1/30 s), with
   hysteresis (stricter thresholds to enter than to leave) and a minimum duration. The foot is in
   contact while either point is (the height-and-speed test of Holden, Saito and Komura 2016 and
   most motion-synthesis work; the hysteresis as in Kovar et al.).
2. ``estimate_ground``: the floor height (metres, the solver's Y-up world) where the solved body's
   soles stand while the source says a foot is planted: per frame, the solved foot's lowest mesh
   vertex moved by the vertical fit residual of the heel point (so it is the source's foot
   height, in SMPL's definition of the foot), median over the flat-foot frames (``estimate_ground``).
   A given ``ground`` (``--ground Y``) replaces it.
3. ``foot_displacements`` + ``leg_ik``: per contact run of a point, its anchor is the solved SMPL
   point's mean position over the run (ankle for the heel, the ``foot`` joint (ball) for the toe);
   inside the run the foot moves so the planted point is at its anchor (their mean when both are)
   and its sole is not below the ground, over ``BLEND_SECONDS`` either side the displacement fades out
   (smoothstep). The foot moves as one, keeping the solved orientation (which follows the
   capture's). The leg reaches the new ankle by two-bone IK (law of cosines, the knee kept in the
   plane of hip, old knee and new ankle: Tolani, Goswami and Badler 2000, a leg never straightened
   past ``LEG_REACH``); the hip's, knee's and ankle's local rotations change, nothing else.
4. Ground penetration: no vertex more than ``PENETRATION_TOLERANCE`` below the ground. Feet are
   lifted by the leg IK (the upper body keeps its fit); any other body part (knees, hands, a back
   on the floor) by raising the root. Only a subset of vertices is skinned (``BodyHull``): per
   body part, the vertices extreme in some direction (the convex hull's, where a rigid part's
   lowest point always is); parts other than the feet only in frames where they can reach the
   floor at all (their joint's height minus a bound on its vertices' reach).

``plant_feet`` runs all of it (``SolveOptions.lock_feet``: 'auto' = on for real skeleton captures,
see ``lock_feet_enabled``).
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass, field

import numpy as np
import torch

from .errors import InputError
from .model.rotations import normalize, swing_rotation
from .model.skeleton import SMPL_PARENTS

LOCK_MODES = ("auto", "on", "off")
# SMPL joints per side: hip, knee, ankle, foot (ball of the foot)
LEG_JOINTS = ((1, 4, 7, 10), (2, 5, 8, 11))
FOOT_PARTS = ((7, 10), (8, 11))  # the joints whose vertices make each foot
# layouts of mocap skeletons (their keypoints are real captured joints): lock_feet 'auto' -> on
SKELETON_LAYOUTS = frozenset({"cmu", "deepmimic"})

# Detection (hand-set, none fitted to the evaluation takes):
LEVEL_PERCENTILE = 5.0  # a point's contact level: this percentile of its heights (both feet)
ENTER_HEIGHT = 0.025  # m above the level to enter contact ...
EXIT_HEIGHT = 0.045  # ... and to leave it (hysteresis)
ENTER_SPEED = 0.20  # m/s: a planted point moves less than this (heel strike / toe-off blur) ...
EXIT_SPEED = 0.45  # ... and leaves contact when it moves faster than this
SPEED_SECONDS = 1.0 / 30.0  # half-window of the central difference (bounds noise at 120 fps)
MIN_CONTACT_SECONDS = 0.1  # shorter runs are not contacts (a foot passing low and slow)
MAX_RUN_DRIFT = (
    0.05  # m: a run whose point strays further from its mean slides (a pivot, a shuffle)
)
# Locking and ground:
BLEND_SECONDS = 0.12  # the adjustment fades in and out over this either side of a contact
LEG_REACH = 0.97  # the IK extends a leg at most to this share of its length (or as solved):
# past it the knee swings far for millimetres of ankle (a knee 14 deg from straight sits ~10 cm off
# the hip-ankle line), so a foot the leg cannot reach stays a little short of its anchor
PENETRATION_TOLERANCE = 0.01  # m: the target (issue 10): no vertex more than this below ground
LIFT_ROUNDS = 3  # lift-and-solve rounds (skinning is not rigid: each round fixes what is left)
HULL_DIRECTIONS = 256  # directions whose extreme vertices make a body part's hull subset
REACH_MARGIN = 0.03  # m added to each part's reach bound (pose correctives, blended vertices)


@dataclass
class FootContacts:
    """Per frame and foot (left, right): the heel point, the toe point, and the foot (either)."""

    heel: np.ndarray  # (T, 2) bool
    toe: np.ndarray  # (T, 2) bool

    @property
    def foot(self) -> np.ndarray:
        return self.heel | self.toe


@dataclass
class FeetResult:
    """What ``plant_feet`` did: the adjusted motion, the contacts, the ground and its figures."""

    rotmats: torch.Tensor  # (T, 24, 3, 3)
    trans: torch.Tensor  # (T, 3)
    contacts: np.ndarray  # (T, 2) bool, left/right foot in contact (from the source)
    ground_height: float  # metres, Y up
    locked: bool  # lock_feet resolved: the motion was adjusted
    ground_given: bool
    report: dict = field(default_factory=dict)  # figures for the JSON line (``feet_report``)
    seconds: float = 0.0


# ---------------------------------------------------------------------------- detection


def foot_keypoints(layout) -> list[tuple[list[int], list[int]]]:
    """Per side (left, right): (heel keypoint indices, toe keypoint indices) of a layout, from the
    keypoint definitions: heel = the heel landmark, else the ankle joint; toe = toe-tip landmarks
    and the ``foot`` (ball) joint, else the heel's. Empty lists when the layout has no foot."""
    index = {d: k for k, d in enumerate(layout.definitions) if d}
    out = []
    for side, s in (("left", "L"), ("right", "R")):
        heel = [index[d] for d in (f"@{s}Heel",) if d in index] or [
            index[d] for d in (f"{side}_ankle",) if d in index
        ]
        toe = [index[d] for d in (f"@{s}BigToe", f"@{s}SmallToe", f"{side}_foot") if d in index]
        out.append((heel, toe or heel))
    return out


def _point_tracks(positions, measured, ids_per_foot) -> tuple[np.ndarray, np.ndarray]:
    """(T, 2, 3) mean of each foot's keypoints ``ids`` (measured ones) and (T, 2) valid."""
    t = positions.shape[0]
    pts, ok = np.zeros((t, 2, 3)), np.zeros((t, 2), bool)
    for f, ids in enumerate(ids_per_foot):
        if not ids:
            continue
        m = measured[:, ids].astype(np.float64)  # (T, n)
        n = m.sum(1)
        pts[:, f] = (positions[:, ids] * m[..., None]).sum(1) / np.maximum(n, 1)[:, None]
        ok[:, f] = n > 0
    return pts, ok


def point_speed(points: np.ndarray, fps: float, half_window: int) -> np.ndarray:
    """(T, ...) speed (m/s) of point tracks (T, ..., 3): central difference over +-half_window
    frames (one-sided, shorter, at the ends)."""
    t = points.shape[0]
    if t < 2:
        return np.zeros(points.shape[:-1])
    idx = np.arange(t)
    hi, lo = np.minimum(idx + half_window, t - 1), np.maximum(idx - half_window, 0)
    span = ((hi - lo) / float(fps)).reshape((t,) + (1,) * (points.ndim - 2))
    return np.linalg.norm(points[hi] - points[lo], axis=-1) / span


def hysteresis(enter: np.ndarray, leave: np.ndarray) -> np.ndarray:
    """(T, ...) bool state along axis 0: on from a frame where ``enter`` holds until one where
    ``leave`` does (Schmitt trigger; ``enter`` wins where both hold), off before the first enter.
    Vectorised: each frame takes the last event at or before it (a running maximum of indices)."""
    t = enter.shape[0]
    event = np.where(enter, 1, np.where(leave, -1, 0))
    idx = np.arange(t).reshape((t,) + (1,) * (enter.ndim - 1))
    last = np.maximum.accumulate(np.where(event != 0, idx, -1), axis=0)
    state = np.take_along_axis(event, np.maximum(last, 0), axis=0) == 1
    return state & (last >= 0)


def drop_short_runs(state: np.ndarray, min_frames: int) -> np.ndarray:
    """``state`` (T, C) bool without its runs of True shorter than ``min_frames``."""
    out = state.copy()
    padded = np.pad(state.astype(np.int8), ((1, 1), (0, 0)))
    for c in range(state.shape[1]):  # a loop over the few columns (feet x points), not frames
        edges = np.flatnonzero(np.diff(padded[:, c]))
        for a, b in zip(edges[::2], edges[1::2], strict=True):
            if b - a < min_frames:
                out[a:b, c] = False
    return out


def drop_sliding_runs(state: np.ndarray, points: np.ndarray, max_drift: float) -> np.ndarray:
    """``state`` (T, C) without the runs whose point (T, C, 3) strays more than ``max_drift`` (m)
    across the floor from the run's mean position: that foot slides, it is not planted."""
    lab = _run_labels(state)
    flat, pts = lab.reshape(-1), points.reshape(-1, 3)[:, [0, 2]]
    counts = np.maximum(np.bincount(flat), 1)[:, None]
    mean = np.stack([np.bincount(flat, pts[:, i]) for i in (0, 1)], 1) / counts
    far = np.zeros(counts.shape[0])
    np.maximum.at(far, flat, np.linalg.norm(pts - mean[flat], axis=-1))
    return state & (far[lab] <= max_drift)


def detect_contacts(prepared) -> FootContacts:
    """Foot contacts (heel and toe point per foot) from the source keypoints (see the module doc)."""
    t = prepared.num_frames
    feet = foot_keypoints(prepared.layout)
    if t == 0 or not any(h for h, _ in feet):
        return FootContacts(np.zeros((t, 2), bool), np.zeros((t, 2), bool))
    pts, ok = zip(
        *(
            _point_tracks(prepared.positions, prepared.measured, [f[part] for f in feet])
            for part in (0, 1)
        ),
        strict=True,
    )
    pts, ok = np.stack(pts, 2), np.stack(ok, 2)  # (T, 2 feet, 2 parts, 3), (T, 2, 2)
    height = pts[..., 1]
    level = np.array(
        [
            np.percentile(height[..., p][ok[..., p]], LEVEL_PERCENTILE) if ok[..., p].any() else 0.0
            for p in (0, 1)
        ]
    )
    rel = height - level
    speed = point_speed(pts, prepared.fps, max(1, round(prepared.fps * SPEED_SECONDS)))
    enter = ok & (rel <= ENTER_HEIGHT) & (speed <= ENTER_SPEED)
    leave = ~ok | (rel > EXIT_HEIGHT) | (speed > EXIT_SPEED)
    state = hysteresis(enter, leave).reshape(t, 4)
    state = drop_short_runs(state, max(2, round(prepared.fps * MIN_CONTACT_SECONDS)))
    state = drop_sliding_runs(state, pts.reshape(t, 4, 3), MAX_RUN_DRIFT).reshape(t, 2, 2)
    return FootContacts(heel=state[..., 0], toe=state[..., 1])


def lock_feet_enabled(mode: str, prepared) -> bool:
    """'on'/'off' as given; 'auto': on for real skeleton captures (a mocap skeleton's layout, or a
    file that carried bone rotations: BVH, ASF/AMC, FBX/armature), off for SMPL-24 and
    pose-estimator or model-generated keypoints, which are left exactly as solved."""
    if mode not in LOCK_MODES:
        raise InputError(f"lock_feet must be one of {', '.join(LOCK_MODES)}, not '{mode}'.")
    if mode != "auto":
        return mode == "on"
    return prepared.layout.name in SKELETON_LAYOUTS or prepared.rotations is not None


def check_ground(ground) -> float | None:
    """A given ground height (metres) as a float, or None; a clear error when it is not usable."""
    if ground is None:
        return None
    try:
        g = float(ground)
    except (TypeError, ValueError):
        raise InputError(f"ground must be a height in metres, not {ground!r}.") from None
    if not np.isfinite(g) or abs(g) > 100.0:
        raise InputError(
            f"ground {ground}: give the floor height in metres (Y up, in the output's world), "
            "within +-100 m."
        )
    return g


# ---------------------------------------------------------------------------- the body's hull


@dataclass
class BodyHull:
    """Per SMPL joint, the vertices it dominates that are extreme in some direction (a rigid part's
    lowest vertex is one of them in any pose), and a bound on how far below the joint they reach."""

    ids: list[np.ndarray]  # per joint: vertex indices
    reach: np.ndarray  # (24,) metres

    def foot_ids(self, side: int) -> np.ndarray:
        return np.concatenate([self.ids[j] for j in FOOT_PARTS[side]])


def _fibonacci_sphere(n: int) -> np.ndarray:
    k = np.arange(n) + 0.5
    phi, z = np.pi * (3.0 - np.sqrt(5.0)) * k, 1.0 - 2.0 * k / n
    r = np.sqrt(1.0 - z * z)
    return np.stack([r * np.cos(phi), z, r * np.sin(phi)], -1)


def _tree_distances(rest_joints: np.ndarray) -> np.ndarray:
    """(24, 24) length of the bone path between two joints (the most their posed distance can be)."""
    n = len(SMPL_PARENTS)
    up = [[j] for j in range(n)]
    for j in range(n):
        while SMPL_PARENTS[up[j][-1]] >= 0:
            up[j].append(SMPL_PARENTS[up[j][-1]])
    bone = np.r_[
        0.0, np.linalg.norm(rest_joints[1:] - rest_joints[list(SMPL_PARENTS[1:])], axis=-1)
    ]
    dist = np.zeros((n, n))
    for a in range(n):
        for b in range(n):
            common = next(x for x in up[a] if x in up[b])
            dist[a, b] = sum(bone[x] for x in up[a][: up[a].index(common)]) + sum(
                bone[x] for x in up[b][: up[b].index(common)]
            )
    return dist


_HULLS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {betas: BodyHull}


def body_hull(model, betas) -> BodyHull:
    """``BodyHull`` of the model on this body (betas), computed once per model and body (cached:
    a batch solves many takes of one subject)."""
    key = model.betas_tensor(betas)[0].detach().cpu().double().numpy().tobytes()
    cache = _HULLS.setdefault(model, {})
    if key not in cache:
        if len(cache) > 8:  # a few bodies per model at a time (a batch of subjects)
            cache.clear()
        cache[key] = _build_hull(model, betas)
    return cache[key]


def _build_hull(model, betas) -> BodyHull:
    """The reach bound: a blend-skinned vertex v = sum_k w_k (G_k (v0 - J_k) + J'_k) lies within
    sum_k w_k (|v0 - J_k| + path(k, j)) of joint j (each term is a rigid move of the vertex about
    joint k, and J'_k is at most the bone path away from J'_j), plus ``REACH_MARGIN``."""
    v = model.rest_vertices(betas)[0].detach().cpu().double().numpy()
    j = model.rest_joints(betas)[0].detach().cpu().double().numpy()
    w = model.weights.detach().cpu().double().numpy()
    dom = w.argmax(1)
    dirs = _fibonacci_sphere(HULL_DIRECTIONS)
    path = _tree_distances(j)
    to_joint = np.linalg.norm(v[:, None] - j[None], axis=-1)  # (V, 24)
    ids, reach = [], np.zeros(len(SMPL_PARENTS))
    for k in range(len(SMPL_PARENTS)):  # 24 body parts, each over its own vertices
        own = np.flatnonzero(dom == k)
        if own.size == 0:
            ids.append(own)
            continue
        ids.append(np.unique(own[np.argmin(v[own] @ dirs.T, axis=0)]))
        reach[k] = float(((to_joint[own] + path[:, k][None]) * w[own]).sum(1).max()) + REACH_MARGIN
    return BodyHull(ids, reach)


class Posed:
    """One motion's forward kinematics, computed once and shared by everything that skins a few
    vertices of it or reads its joints (the SMPL forward pass of ``model.forward.posed_points``,
    with the kinematics kept)."""

    def __init__(self, model, betas, rotmats, trans, kinematics=None):
        self.model, self.rotmats, self.trans = model, rotmats, trans
        self.betas = model.betas_tensor(betas)[:1]
        self.rest = model.rest_joints(self.betas)
        # (global rotations, joints) of ``rotmats`` when the caller has them (``cut``)
        self.glob, self.joints = kinematics or model.global_transforms(
            rotmats, self.rest.expand(rotmats.shape[0], -1, -1)
        )
        # the lowest vertices found so far (``foot_lowest``, ``body_lowest``): the ground estimate,
        # the locking and the report ask for the same ones of the same motion
        self.lowest: dict = {}

    def world_joints(self) -> torch.Tensor:
        return self.joints + self.trans[:, None]

    def cut(self, frames) -> Posed:
        """The same motion in ``frames`` only (its kinematics sliced, not computed again)."""
        sel = torch.as_tensor(frames, dtype=torch.long, device=self.rotmats.device)
        kin = (self.glob[sel], self.joints[sel])
        return Posed(self.model, self.betas, self.rotmats[sel], self.trans[sel], kinematics=kin)

    def heights(self, ids, frames=None) -> torch.Tensor:
        """(T or len(frames), len(ids)) height (Y) of the posed vertices ``ids`` (pose correctives
        included): only the Y row of the skinning (``linear_blend_skinning(axis=1)``), which is
        all the floor tests read (a third of the work of whole points: at 10,000 frames the feet
        stage was mostly this)."""
        from .model.forward import pose_correctives
        from .model.skinning import linear_blend_skinning

        m = self.model
        ids = torch.as_tensor(np.asarray(ids), dtype=torch.long, device=self.rotmats.device)
        sel = slice(None) if frames is None else torch.as_tensor(frames, device=ids.device)
        rot, glob, joints = self.rotmats[sel], self.glob[sel], self.joints[sel]
        v = m.rest_vertices(self.betas, ids)
        if m.posedirs is not None:
            v = v + pose_correctives(m.posedirs[ids], rot)
        w = m.weights[ids]
        cols = torch.nonzero((w > 0).any(0))[:, 0]  # the few joints that move these vertices
        out = linear_blend_skinning(
            v.expand(rot.shape[0], -1, -1),
            w[:, cols],
            glob[:, cols],
            joints[:, cols],
            self.rest[:, cols],
            axis=1,
        )
        return out + self.trans[sel][:, 1:2]


def foot_lowest(hull: BodyHull, posed: Posed) -> np.ndarray:
    """(T, 2) height of each foot's lowest vertex (left, right), every frame (read-only: skinned
    once per motion and hull)."""
    key = ("feet", id(hull))
    if key not in posed.lowest:
        ids = [hull.foot_ids(f) for f in (0, 1)]
        y = posed.heights(np.concatenate(ids)).detach().cpu().double().numpy()
        n0 = len(ids[0])
        posed.lowest[key] = (hull, _read_only(np.stack([y[:, :n0].min(1), y[:, n0:].min(1)], 1)))
    return posed.lowest[key][1]


def _read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False  # a cached result: a caller that changes it copies it first
    return a


def body_lowest(hull: BodyHull, posed: Posed, below: float) -> np.ndarray:
    """(T,) height of the lowest vertex outside the feet, exact in every frame where it is below
    ``below``; elsewhere a bound that is above ``below``. Each body part is skinned only in the
    frames where its joint is less than its reach above ``below``. Read-only: computed once per
    motion, hull and ``below``."""
    key = ("body", id(hull), float(below))
    if key not in posed.lowest:
        posed.lowest[key] = (hull, _read_only(_body_lowest(hull, posed, below)))
    return posed.lowest[key][1]


def _body_lowest(hull: BodyHull, posed: Posed, below: float) -> np.ndarray:
    feet = {j for part in FOOT_PARTS for j in part}
    jy = posed.world_joints()[..., 1].detach().cpu().double().numpy()  # (T, 24)
    low = np.full(jy.shape[0], np.inf)
    for k, ids in enumerate(hull.ids):  # 20 body parts: the frames each could reach the floor in
        if k in feet or ids.size == 0:
            continue
        bound = jy[:, k] - hull.reach[k]
        low = np.minimum(low, np.maximum(bound, below + 1e-6))
        frames = np.flatnonzero(bound < below)
        if frames.size:
            y = posed.heights(ids, frames).min(1).values
            low[frames] = np.minimum(low[frames], y.detach().cpu().double().numpy())
    return low


def lowest_vertex(model, rotmats, betas, trans, below: float, hull: BodyHull | None = None):
    """(T,) the mesh's lowest vertex height per frame (exact where it is below ``below``)."""
    hull = hull or body_hull(model, betas)
    posed = Posed(model, betas, rotmats, trans)
    return np.minimum(foot_lowest(hull, posed).min(1), body_lowest(hull, posed, below))


# ---------------------------------------------------------------------------- ground


def estimate_ground(prepared, posed: Posed, feet_low: np.ndarray, contacts: FootContacts) -> float:
    """The floor height (m, Y up) where the source's feet stand, in the solved body's terms: per
    frame and foot, the solved foot's lowest vertex moved by the vertical fit residual of the
    heel point (the source's ankle or heel minus the solved one: where the sole would be if the
    solved foot stood where the source's does), median over the frames where the foot is flat
    (heel and toe in contact), else over every contact frame, else (no contact at all) the 5th
    percentile over the take. Only the heel point's residual: toe points differ by definition
    (CMU's ball sits ~1 cm higher above the ankle than SMPL's), which is no fit error."""
    lay, joints = prepared.layout, posed.world_joints().detach().cpu().double().numpy()
    smpl_of = lay.smpl_joint_of()
    usable = prepared.measured & ~lay.aim_only_mask()[None]
    sole = feet_low.copy()
    for f, (heel, _) in enumerate(foot_keypoints(lay)):
        ids = [k for k in heel if smpl_of[k] >= 0]  # joints: their solved position is at hand
        if ids:
            m = usable[:, ids]
            res = np.where(m, prepared.positions[:, ids, 1] - joints[:, smpl_of[ids], 1], 0.0)
            sole[:, f] += res.sum(1) / np.maximum(m.sum(1), 1)
    for sel in (contacts.heel & contacts.toe, contacts.foot):
        if sel.sum() >= 3:
            return float(np.median(sole[sel]))
    return float(np.percentile(sole.min(1), 5.0))


# ---------------------------------------------------------------------------- locking


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _run_labels(state: np.ndarray) -> np.ndarray:
    """(T, C) run number (1, 2, ...) of each True frame along axis 0 (unique per column), 0 off."""
    start = state & ~np.pad(state, ((1, 0), (0, 0)))[:-1]
    lab = np.cumsum(start.reshape(-1, order="F")).reshape(state.shape, order="F")
    return np.where(state, lab, 0)


def lock_displacements(
    state: np.ndarray, points: np.ndarray, blend_frames: int, target=None
) -> tuple[np.ndarray, np.ndarray]:
    """Planting displacements of point tracks ``points`` (T, C, 3) during runs of ``state`` (T, C):
    inside a run, its anchor (the run's mean position, or ``target`` (T, C, 3) when given) minus
    the point; over ``blend_frames`` either side, the nearest run edge's displacement faded by a
    smoothstep. Returns the displacements (T, C, 3) and their weights (T, C) in [0, 1] (1 inside
    runs)."""
    t, c = state.shape
    lab = _run_labels(state)
    n = int(lab.max())
    flat = lab.reshape(-1)
    sums = np.zeros((n + 1, 3))
    np.add.at(sums, flat, points.reshape(-1, 3))
    counts = np.bincount(flat, minlength=n + 1)[:, None]
    anchor = sums / np.maximum(counts, 1)
    goal = anchor[lab] if target is None else target
    inside = np.where(state[..., None], goal - points, 0.0)
    idx = np.arange(t)[:, None].repeat(c, 1)
    prev = np.maximum.accumulate(np.where(state, idx, -1), axis=0)
    nxt = np.minimum.accumulate(np.where(state, idx, t)[::-1], axis=0)[::-1]
    cols = np.arange(c)[None].repeat(t, 0)
    span = float(blend_frames + 1)
    w_prev = np.where(prev >= 0, _smoothstep(1.0 - (idx - prev) / span), 0.0)
    w_next = np.where(nxt < t, _smoothstep(1.0 - (nxt - idx) / span), 0.0)
    d_prev = inside[np.maximum(prev, 0), cols]
    d_next = inside[np.minimum(nxt, t - 1), cols]
    total = w_prev + w_next
    disp = (w_prev[..., None] * d_prev + w_next[..., None] * d_next) / np.maximum(total, 1.0)[
        ..., None
    ]
    return disp, np.minimum(total, 1.0)


def foot_displacements(
    contacts: FootContacts, joints_world: np.ndarray, sole: np.ndarray, ground: float, fps: float
) -> np.ndarray:
    """(T, 2, 2, 3) displacement of each foot's (ankle, ball) SMPL joints that plants it. The whole
    foot moves as one (its orientation stays the solved one, which follows the capture's: issue 9's
    foot orientation target): across the floor, by the displacement that holds the ankle at its
    run's mean while the heel is in contact, the ball while the toe is, their mean while both are
    (D = (E_a + E_b) / (w_a + w_b) max(w_a, w_b), E the blended displacements, w their weights);
    upwards, while the foot is in contact, by what puts its lowest vertex (``sole``, (T, 2)) back
    on the ``ground``. Never down: a foot above the ground is left there, since pulling it down
    would straighten a leg the fit has often extended already (CMU takes driven by another
    subject's ASF: every stance leg straight), and a straight leg can only swing its ankle across
    the floor (05_13.amc: 84 -> 97 mm/s of skating when pulled down, 15 mm/s when not)."""
    pts = np.stack([joints_world[:, [LEG_JOINTS[f][2], LEG_JOINTS[f][3]]] for f in (0, 1)], 1)
    state = np.stack([contacts.heel, contacts.toe], -1)  # (T, 2, 2)
    t = state.shape[0]
    blend = max(1, round(fps * BLEND_SECONDS))
    e, w = lock_displacements(state.reshape(t, 4), pts.reshape(t, 4, 3), blend)
    e, w = e.reshape(t, 2, 2, 3), w.reshape(t, 2, 2)
    total = w.sum(-1, keepdims=True)
    foot = np.where(total > 0, e.sum(2) / np.maximum(total, 1e-12) * w.max(-1, keepdims=True), 0.0)
    low = np.zeros((t, 2, 3))
    low[..., 1] = sole
    up, _ = lock_displacements(contacts.foot, low, blend, np.full_like(low, ground))
    foot[..., 1] = np.maximum(up[..., 1], 0.0)  # up only: see the docstring
    return np.repeat(foot[:, :, None], 2, axis=2)


def two_bone_ik(hip, knee, ankle, target, forward):
    """New knee and ankle (..., 3) so the ankle reaches ``target`` (as far as the leg may: at most
    LEG_REACH of its length, or its solved extension if more) with the
    thigh and shin lengths kept, the knee in the plane of hip, old knee and target (its pole); a
    straight leg (no plane) bends towards ``forward`` (the foot's direction). Law of cosines at the
    hip: cos a = (l1^2 + d^2 - l2^2) / (2 l1 d) (Tolani, Goswami, Badler 2000)."""
    l1 = torch.linalg.vector_norm(knee - hip, dim=-1, keepdim=True)
    l2 = torch.linalg.vector_norm(ankle - knee, dim=-1, keepdim=True)
    to = target - hip
    reach = torch.maximum(
        torch.linalg.vector_norm(ankle - hip, dim=-1, keepdim=True), LEG_REACH * (l1 + l2)
    )
    d = torch.linalg.vector_norm(to, dim=-1, keepdim=True).clamp(
        min=(l1 - l2).abs() + 1e-6, max=(l1 + l2) * (1 - 1e-6)
    )
    d = torch.minimum(d, reach)
    u = normalize(to)
    pole = knee - hip
    v = pole - (pole * u).sum(-1, keepdim=True) * u
    fwd = forward - (forward * u).sum(-1, keepdim=True) * u
    v = normalize(
        torch.where(torch.linalg.vector_norm(v, dim=-1, keepdim=True) < 1e-4 * l1, fwd, v)
    )
    cos_a = ((l1 * l1 + d * d - l2 * l2) / (2 * l1 * d)).clamp(-1.0, 1.0)
    sin_a = (1 - cos_a * cos_a).clamp_min(0).sqrt()
    return hip + l1 * (cos_a * u + sin_a * v), hip + d * u


def leg_ik(posed: Posed, disp: np.ndarray) -> torch.Tensor:
    """Local rotations (T, 24, 3, 3) with each leg moved so its ankle and ball land at their solved
    positions plus ``disp`` (T, 2, 2, 3): two-bone IK for hip and knee, the minimal turn of each
    bone onto its new direction (twist kept), then the ankle aimed at the new ball. Frames without
    a displacement keep their rotations exactly."""
    return _moved_legs(posed, disp).rotmats


def _moved_legs(posed: Posed, disp: np.ndarray) -> Posed:
    """``leg_ik``'s motion with its kinematics: the legs' new world rotations and joints are the
    IK's own (a leg's joints below the hip, the foot joint carried by the ankle), the rest of the
    body's are ``posed``'s, so no forward kinematics runs again."""
    rotmats, g, j = posed.rotmats, posed.glob, posed.world_joints()
    d = torch.as_tensor(disp, dtype=rotmats.dtype, device=rotmats.device)
    legs = torch.tensor(LEG_JOINTS, device=rotmats.device)  # (2, 4)
    hip, knee, ankle, ball = (j[:, legs[:, i]] for i in range(4))  # (T, 2, 3)
    g_hip, g_knee, g_ankle = (g[:, legs[:, i]] for i in range(3))
    knee_new, ankle_new = two_bone_ik(hip, knee, ankle, ankle + d[:, :, 0], ball - ankle)
    # the foot's new direction from where the ankle really got to (a leg that cannot reach its
    # anchor carries the foot short of it, instead of pitching the foot to reach the ball's)
    ball_new = ankle_new + (ball + d[:, :, 1]) - (ankle + d[:, :, 0])
    g_hip_new = swing_rotation(knee - hip, knee_new - hip) @ g_hip
    g_knee_new = swing_rotation(ankle - knee, ankle_new - knee_new) @ g_knee
    g_ankle_new = swing_rotation(ball - ankle, ball_new - ankle_new) @ g_ankle
    out = rotmats.clone()
    pelvis = g[:, 0, None]  # both hips hang from the pelvis (SMPL_PARENTS)
    new = (
        pelvis.transpose(-1, -2) @ g_hip_new,
        g_hip_new.transpose(-1, -2) @ g_knee_new,
        g_knee_new.transpose(-1, -2) @ g_ankle_new,
    )
    moved = (d.abs().sum((-1, -2)) > 0)[..., None, None]  # (T, 2, 1, 1)
    for i, rot in enumerate(new):
        out[:, legs[:, i]] = torch.where(moved, rot, rotmats[:, legs[:, i]])
    # the kinematics of the new legs: the foot joint (a leaf) keeps its local rotation and bone
    g_foot_new = g_ankle_new @ rotmats[:, legs[:, 3]]
    foot_bone = (posed.rest[0, legs[:, 3]] - posed.rest[0, legs[:, 2]])[..., None]  # (2, 3, 1)
    foot_new = ankle_new + (g_ankle_new @ foot_bone)[..., 0]
    glob, joints, t = g.clone(), posed.joints.clone(), posed.trans[:, None]
    for i, (rot, pos) in enumerate(
        (
            (g_hip_new, None),
            (g_knee_new, knee_new),
            (g_ankle_new, ankle_new),
            (g_foot_new, foot_new),
        )
    ):
        glob[:, legs[:, i]] = torch.where(moved, rot, g[:, legs[:, i]])
        if pos is not None:
            joints[:, legs[:, i]] = torch.where(moved[..., 0], pos - t, posed.joints[:, legs[:, i]])
    return Posed(posed.model, posed.betas, out, posed.trans, kinematics=(glob, joints))


def _raise_root(trans, lift: np.ndarray, fps: float) -> torch.Tensor:
    """``trans`` raised by at least ``lift`` (T,) m, the raise widened and smoothed over time
    (a running maximum over +-BLEND_SECONDS, then a Gaussian) so the body does not jump."""
    from .denoise import gaussian_over_time

    if not (lift > 0).any():
        return trans
    half = max(1, round(fps * BLEND_SECONDS))
    padded = np.pad(lift, half, mode="edge")
    wide = np.max(np.stack([padded[k : k + lift.size] for k in range(2 * half + 1)]), 0)
    smooth = np.maximum(gaussian_over_time(wide, half / 2.0), lift)
    out = trans.clone()
    out[:, 1] += torch.as_tensor(smooth, dtype=trans.dtype, device=trans.device)
    return out


# ---------------------------------------------------------------------------- the whole step


def _lock_and_lift(prepared, hull, posed: Posed, contacts, ground: float) -> Posed:
    """Plant the feet (``foot_displacements`` + ``leg_ik``), then a few rounds (skinning is not
    rigid) that lift any foot still below the ground by the same IK; last, raise the root where
    another body part is below the ground. Returns the new motion. Each round solves only the
    frames whose displacement it changes: ``leg_ik`` leaves the others' rotations exactly as they
    were, and so their feet."""
    joints = posed.world_joints().detach().cpu().double().numpy()
    disp = foot_displacements(contacts, joints, foot_lowest(hull, posed), ground, prepared.fps)
    new, low = posed, foot_lowest(hull, posed)
    moved = np.flatnonzero(np.abs(disp).sum((1, 2, 3)) > 0)
    for round_ in range(LIFT_ROUNDS + 1):
        if moved.size:
            new, low = _replanted(hull, posed, disp, moved, new, low)
        fix = np.maximum(ground - low, 0.0)  # (T, 2): > 0 below the ground
        if round_ == LIFT_ROUNDS or fix.max(initial=0.0) < 1e-3:
            break
        disp[..., 1] += fix[:, :, None]  # ankle and ball of that foot: the whole foot moves
        moved = np.flatnonzero(fix.max(1) > 0)
    if new is not posed:
        new.lowest[("feet", id(hull))] = (hull, _read_only(low))
    raise_by = np.maximum(ground - body_lowest(hull, new, ground), 0.0)
    if not (raise_by > 0).any():
        return new
    raised = _raise_root(new.trans, raise_by, prepared.fps)  # the kinematics need no trans
    return Posed(new.model, new.betas, new.rotmats, raised, kinematics=(new.glob, new.joints))


def _replanted(hull, posed: Posed, disp: np.ndarray, frames: np.ndarray, new: Posed, low):
    """(``new`` with the legs of ``frames`` moved by ``leg_ik`` from ``posed`` by ``disp``, ``low``
    (T, 2) with those frames' lowest foot vertices), new objects."""
    moved = _moved_legs(posed.cut(frames), disp[frames])
    sel = torch.as_tensor(frames, dtype=torch.long, device=posed.rotmats.device)
    rotmats, glob, joints = new.rotmats.clone(), new.glob.clone(), new.joints.clone()
    rotmats[sel], glob[sel], joints[sel] = moved.rotmats, moved.glob, moved.joints
    low = low.copy()
    low[frames] = foot_lowest(hull, moved)
    return Posed(posed.model, posed.betas, rotmats, posed.trans, kinematics=(glob, joints)), low


def planted_speed(contacts: FootContacts, heel: np.ndarray, toe: np.ndarray, fps: float):
    """(T, 2) horizontal speed (m/s) of the planted point of each foot: the heel point's while only
    the heel is in contact, the toe point's while only the toe is, their mean while both are (NaN
    out of contact). ``heel`` and ``toe`` are (T, 2, 3) tracks (the source's or the solved ones)."""
    from .metrics import horizontal_speed

    v = np.stack(
        [np.stack([horizontal_speed(pts[:, f], fps) for f in (0, 1)], 1) for pts in (heel, toe)],
        -1,
    )  # (T, 2, 2 parts)
    w = np.stack([contacts.heel, contacts.toe], -1).astype(np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(w.sum(-1) > 0, (v * w).sum(-1) / w.sum(-1), np.nan)


def feet_report(prepared, hull, posed: Posed, contacts: FootContacts, ground) -> dict:
    """The JSON line's figures: contact frames per foot, skating (``planted_speed``, mm/s, averaged
    over each foot's contact frames: of the solved ankle / ball of the foot, and of the source's
    heel / toe points in the same frames) and penetration (frames with a vertex more than
    PENETRATION_TOLERANCE below the ground, their share, and the deepest, mm)."""
    joints = posed.world_joints().detach().cpu().double().numpy()
    tracks = [
        _point_tracks(
            prepared.positions, prepared.measured, [f[p] for f in foot_keypoints(prepared.layout)]
        )
        for p in (0, 1)
    ]
    seen = tracks[0][1] & tracks[1][1]
    solved = planted_speed(
        contacts,
        joints[:, [leg[2] for leg in LEG_JOINTS]],
        joints[:, [leg[3] for leg in LEG_JOINTS]],
        prepared.fps,
    )
    source = planted_speed(contacts, tracks[0][0], tracks[1][0], prepared.fps)
    use = contacts.foot & seen
    per_foot = [f for f in (0, 1) if use[:, f].sum() >= 2]
    skate = [float(solved[use[:, f], f].mean()) for f in per_foot]
    skate_src = [float(source[use[:, f], f].mean()) for f in per_foot]
    foot = contacts.foot
    low = np.minimum(foot_lowest(hull, posed).min(1), body_lowest(hull, posed, ground))
    depth = np.maximum(ground - low, 0.0)
    below = depth > PENETRATION_TOLERANCE
    return dict(
        contact_frames=[int(foot[:, 0].sum()), int(foot[:, 1].sum())],
        ground_height=round(float(ground), 4),
        skate_mm_s=round(float(np.mean(skate)) * 1000, 1) if skate else None,
        skate_source_mm_s=round(float(np.mean(skate_src)) * 1000, 1) if skate_src else None,
        penetration_frames=int(below.sum()),
        penetration_pct=round(100.0 * float(below.mean()), 2) if below.size else 0.0,
        penetration_max_mm=round(float(depth.max(initial=0.0)) * 1000, 1),
    )


def plant_feet(
    prepared,
    model,
    betas,
    rotmats,
    trans,
    mode: str = "auto",
    ground=None,
    ground_keypoints=None,
) -> FeetResult:
    """The post-solve step (``solver.solve`` calls it after the refine step): contacts from the
    source, the ground (given or estimated), and, when ``lock_feet_enabled(mode)``, the feet planted
    and the body kept above the ground. With locking off the motion is returned untouched (the same
    tensors) and only the contacts, ground and figures are computed. ``ground_keypoints``: the
    keypoints the solve aimed at when they are not ``prepared`` (calibrated ones,
    ``calibration.py``): the ground is estimated from their fit residual."""
    start = time.perf_counter()
    given = check_ground(ground)
    locked = lock_feet_enabled(mode, prepared)
    contacts = detect_contacts(prepared)
    if prepared.num_frames == 0:
        return FeetResult(
            rotmats,
            trans,
            contacts.foot,
            float("nan") if given is None else given,
            False,
            given is not None,
        )
    hull = body_hull(model, betas)
    posed = Posed(model, betas, rotmats, trans)
    ground_h = (
        estimate_ground(ground_keypoints or prepared, posed, foot_lowest(hull, posed), contacts)
        if given is None
        else given
    )
    if locked:
        posed = _lock_and_lift(prepared, hull, posed, contacts, ground_h)
    report = feet_report(prepared, hull, posed, contacts, ground_h)
    report["lock_feet"] = "on" if locked else "off"
    report["seconds"] = round(time.perf_counter() - start, 3)
    return FeetResult(
        posed.rotmats,
        posed.trans,
        contacts.foot,
        ground_h,
        locked,
        given is not None,
        report,
        time.perf_counter() - start,
    )
