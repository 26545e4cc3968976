"""Evaluation metrics, with the SMPL-IKS definitions, batched over frames.

Every function takes numpy arrays or torch tensors (any device; they are copied to
float64 numpy) and returns plain floats, or per-frame numpy arrays with ``reduce=False``.
Inputs in metres give results in millimetres (mm, mm/frame^2, mm/s^k).

- ``mpjpe``: joints centred on their own root (joint 0, the pelvis) before comparing;
  no alignment. ``pa_mpjpe`` instead aligns each predicted frame to the ground truth by
  the best similarity transform (rotation, uniform scale, translation; Umeyama).
- ``mpve``: raw vertices, no centring, no alignment; ``pa_mpve`` with the alignment.
- ``mpbe``: mean absolute error of bone lengths (parent -> child), over the 23 SMPL bones
  or a given subset.
- ``accel_error``: mean norm of the difference of the second finite differences of
  prediction and ground truth (as in HMMR/VIBE): mm/frame^2, or mm/s^2 when ``fps`` is
  given.
- ``jitter``: mean norm of the ``order``-th finite difference of one sequence, scaled by
  fps^order: mm/s^3 for the default third difference (jerk), the usual "jitter".
- ``per_frame_error``: mean keypoint distance per frame over keypoints with positive
  weight and finite coordinates.
"""

from __future__ import annotations

import numpy as np

from .body_model import SMPL_PARENTS

MM = 1000.0


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _frames(x: np.ndarray) -> np.ndarray:
    """(N, 3) -> (1, N, 3); (..., N, 3) -> (F, N, 3) with the leading dims flattened."""
    if x.ndim == 2:
        return x[None]
    return x.reshape((-1,) + x.shape[-2:])


def _check(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    p, g = _np(pred), _np(gt)
    if p.shape != g.shape:
        raise ValueError(f"prediction {p.shape} and ground truth {g.shape} differ in shape")
    if p.shape[-1] != 3:
        raise ValueError(f"expected points (..., N, 3), got {p.shape}")
    return _frames(p), _frames(g)


def _out(per_frame: np.ndarray, reduce: bool):
    return float(np.mean(per_frame)) if reduce else per_frame


def procrustes_align(pred, gt) -> np.ndarray:
    """Each frame of ``pred`` (F, N, 3) moved by its best similarity transform onto ``gt``.

    Umeyama's closed form, batched: centre both, SVD of the cross-covariance, reflection
    fixed so the rotation is proper, scale = trace(S D) / |pred centred|^2.
    """
    p, g = _check(pred, gt)
    mp, mg = p.mean(1, keepdims=True), g.mean(1, keepdims=True)
    pc, gc = p - mp, g - mg
    h = np.einsum("fni,fnj->fij", pc, gc)  # sum p g^T
    u, s, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(np.einsum("fij,fjk->fik", u, vt)))
    d[d == 0] = 1.0
    fix = np.ones_like(s)
    fix[:, -1] = d
    # R maps centred pred onto centred gt: R = V diag(fix) U^T, rows as points: pc @ R^T
    r = np.einsum("fji,fj,fkj->fik", vt, fix, u)
    var = (pc**2).sum((1, 2))
    scale = (s * fix).sum(-1) / np.maximum(var, 1e-300)
    return scale[:, None, None] * np.einsum("fij,fnj->fni", r, pc) + mg


def mpjpe(pred, gt, root: int = 0, reduce: bool = True):
    """Mean per-joint position error (mm) of joints (..., J, 3) after centring each on its root."""
    p, g = _check(pred, gt)
    p = p - p[:, root : root + 1]
    g = g - g[:, root : root + 1]
    return _out(np.linalg.norm(p - g, axis=-1).mean(-1) * MM, reduce)


def pa_mpjpe(pred, gt, reduce: bool = True):
    """MPJPE (mm) after per-frame similarity Procrustes alignment of pred onto gt."""
    p, g = _check(pred, gt)
    return _out(np.linalg.norm(procrustes_align(p, g) - g, axis=-1).mean(-1) * MM, reduce)


def mpve(pred, gt, reduce: bool = True):
    """Mean per-vertex error (mm) of raw vertices (..., V, 3): no centring, no alignment."""
    p, g = _check(pred, gt)
    return _out(np.linalg.norm(p - g, axis=-1).mean(-1) * MM, reduce)


def pa_mpve(pred, gt, reduce: bool = True):
    """Vertex error (mm) after per-frame similarity Procrustes alignment."""
    p, g = _check(pred, gt)
    return _out(np.linalg.norm(procrustes_align(p, g) - g, axis=-1).mean(-1) * MM, reduce)


def bone_lengths(joints, parents=SMPL_PARENTS, bones=None) -> np.ndarray:
    """(F, nb) lengths of the bones parent(j) -> j for j in ``bones`` (default: all non-roots)."""
    j = _frames(_np(joints))
    children = [c for c in range(len(parents)) if parents[c] >= 0] if bones is None else list(bones)
    par = [parents[c] for c in children]
    if any(p < 0 for p in par):
        raise ValueError("a bone needs a child joint with a parent (the root has none)")
    return np.linalg.norm(j[:, children] - j[:, par], axis=-1)


def mpbe(pred, gt, parents=SMPL_PARENTS, bones=None, reduce: bool = True):
    """Mean absolute bone-length error (mm) between two skeletons (..., J, 3).

    ``bones`` lists the child joints of the bones to use (default: every joint with a
    parent, i.e. SMPL's 23 bones).
    """
    p, g = _check(pred, gt)
    err = np.abs(bone_lengths(p, parents, bones) - bone_lengths(g, parents, bones))
    return _out(err.mean(-1) * MM, reduce)


def _finite_diff(x: np.ndarray, order: int) -> np.ndarray:
    for _ in range(order):
        x = x[1:] - x[:-1]
    return x


def _sequence(x) -> np.ndarray:
    a = _np(x)
    if a.ndim == 2:  # (T, 3): one point
        a = a[:, None]
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"expected a sequence (T, N, 3), got {a.shape}")
    return a


def accel_error(pred, gt, fps: float | None = None, reduce: bool = True):
    """Mean norm (mm/frame^2, or mm/s^2 with ``fps``) of accel(pred) - accel(gt).

    accel(x)_t = x_{t+1} - 2 x_t + x_{t-1}; per-frame output has T - 2 entries.
    """
    p, g = _sequence(pred), _sequence(gt)
    if p.shape != g.shape:
        raise ValueError(f"prediction {p.shape} and ground truth {g.shape} differ in shape")
    if p.shape[0] < 3:
        return float("nan") if reduce else np.zeros(0)
    err = np.linalg.norm(_finite_diff(p, 2) - _finite_diff(g, 2), axis=-1).mean(-1) * MM
    if fps is not None:
        err = err * float(fps) ** 2
    return _out(err, reduce)


def jitter(x, fps: float, order: int = 3, reduce: bool = True):
    """Mean norm of the ``order``-th finite difference of positions (T, N, 3), per s^order.

    The default third difference is the jerk, in mm/s^3 for metre inputs (divide by 1e4
    for the 10 m/s^3 unit some papers use); order=2 gives acceleration in mm/s^2.
    """
    a = _sequence(x)
    if a.shape[0] <= order:
        return float("nan") if reduce else np.zeros(0)
    d = np.linalg.norm(_finite_diff(a, order), axis=-1).mean(-1) * MM * float(fps) ** order
    return _out(d, reduce)


def per_frame_error(pred, target, weight=None) -> np.ndarray:
    """(T,) mean distance (mm) per frame between keypoints (T, K, 3), over those with weight > 0
    and finite coordinates in both; NaN for a frame with none."""
    p, t = _check(pred, target)
    w = np.ones(p.shape[:2]) if weight is None else _np(weight).reshape(p.shape[:2])
    valid = (w > 0) & np.isfinite(p).all(-1) & np.isfinite(t).all(-1)
    d = np.linalg.norm(np.where(valid[..., None], p - t, 0.0), axis=-1)
    n = valid.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, d.sum(-1) / np.maximum(n, 1), np.nan) * MM


# ---------------------------------------------------------------------------- segments
# Real-capture metrics (``research/real_eval.py``): how a solved body's segments follow the
# captured skeleton's bones, whatever the two skeletons' rest definitions are.


def _rotations(x) -> np.ndarray:
    r = _np(x)
    if r.shape[-2:] != (3, 3):
        raise ValueError(f"expected rotation matrices (..., 3, 3), got {r.shape}")
    return r


def rotation_angle_deg(r) -> np.ndarray:
    """Angle (degrees) of each rotation matrix (..., 3, 3): arccos((trace - 1) / 2)."""
    r = _rotations(r)
    cos = (np.trace(r, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def best_offset(captured, solved) -> np.ndarray:
    """The constant rotation O (3, 3) that best maps captured world rotations onto solved ones,
    ``solved_t ~ captured_t @ O`` for every frame t (T, 3, 3): the chordal L2 mean of
    ``captured_t^T solved_t`` projected onto SO(3) (Kabsch: SVD, reflection fixed). Frames with
    non-finite rotations are left out. It absorbs the two skeletons' different rest frames of
    a bone (a constant, body-fixed rotation), nothing that changes over time."""
    c, s = _rotations(captured), _rotations(solved)
    ok = np.isfinite(c).all((-2, -1)) & np.isfinite(s).all((-2, -1))
    if not ok.any():
        return np.full((3, 3), np.nan)
    m = np.einsum("tji,tjk->ik", c[ok], s[ok])  # sum_t C_t^T S_t
    u, _, vt = np.linalg.svd(m)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    return u @ np.diag([1.0, 1.0, d]) @ vt


def orientation_error_deg(captured, solved, offset=None) -> np.ndarray:
    """(T,) angle (degrees) between the solved segment's world rotation and the captured bone's
    world rotation after the best constant offset (``best_offset``, or the one given): every
    change of direction and twist over the take counts, the rest definitions do not."""
    c, s = _rotations(captured), _rotations(solved)
    o = best_offset(c, s) if offset is None else _rotations(offset)
    return rotation_angle_deg(np.einsum("ji,tkj,tkl->til", o, c, s))  # O^T C_t^T S_t


def direction_error_deg(captured, solved) -> np.ndarray:
    """(T,) angle (degrees) between two direction vectors per frame (T, 3), no offset; NaN where
    either is zero or not finite."""
    a, b = _np(captured), _np(solved)
    if a.shape != b.shape or a.shape[-1] != 3:
        raise ValueError(f"expected two (T, 3) direction tracks, got {a.shape} and {b.shape}")
    na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = (a * b).sum(-1) / (na * nb)
    cos = np.where((na > 1e-12) & (nb > 1e-12), cos, np.nan)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def contact_frames(height, margin: float = 0.02, floor_percentile: float = 10.0) -> np.ndarray:
    """(T,) bool: frames where a foot point (heights (T,), metres) is within ``margin`` of its floor
    height, the ``floor_percentile``-th percentile of its heights over the take (robust to a few
    outlier frames below the floor; a foot on the ground part of the take reaches it)."""
    h = _np(height)
    if not np.isfinite(h).any():
        return np.zeros(h.shape, bool)
    floor = np.nanpercentile(h, floor_percentile)
    return np.isfinite(h) & (h <= floor + margin)


def horizontal_speed(points, fps: float, up: int = 1) -> np.ndarray:
    """(T,) horizontal speed (m/s) of a point track (T, 3): central differences over time of the
    two axes other than ``up`` (one-sided at the ends)."""
    p = _np(points)
    flat = np.delete(p, up, axis=-1)
    if p.shape[0] < 2:
        return np.zeros(p.shape[0])
    v = np.gradient(flat, axis=0) * float(fps)
    return np.linalg.norm(v, axis=-1)
