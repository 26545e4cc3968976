"""Batched rotation maths (any leading batch shape), torch or numpy through the same names.

Conventions: rotation matrices act on column vectors (x' = R x); axis-angle is a 3-vector
whose norm is the angle in radians; quaternions are (w, x, y, z); the 6D representation
is the first two columns of the matrix (Zhou et al. 2019, On the Continuity of Rotation
Representations in Neural Networks), stored as (..., 6) = [c0x, c0y, c0z, c1x, c1y, c1z].

Every function is written once in torch; floating numpy inputs give numpy outputs
(``backend.numpy_or_torch``), so readers and tools use the same formulas.
"""

from __future__ import annotations

import torch

from .backend import numpy_or_torch

_EPS = 1e-8
# the entries on and above the diagonal of a 3x3 matrix (``swing_rotation``)
_UPPER = torch.ones(3, 3, dtype=torch.bool).triu()


@numpy_or_torch
def skew(v: torch.Tensor) -> torch.Tensor:
    """(..., 3) -> (..., 3, 3) cross-product matrix [v]x, with [v]x w = v x w."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], -1).reshape(v.shape[:-1] + (3, 3))


@numpy_or_torch
def axis_angle_to_matrix(aa: torch.Tensor) -> torch.Tensor:
    """Axis-angle (..., 3) -> rotation matrix (..., 3, 3) by Rodrigues' formula

        R = I + (sin t / t) K + ((1 - cos t) / t^2) K^2,   K = [aa]x,  t = |aa|,

    exact and differentiable at zero (Taylor terms 1 - t^2/6 and 1/2 - t^2/24 below
    t = 1e-4). This is the exponential map of SO(3) (the CMU clips' "exp-map" rotations).
    """
    theta2 = (aa * aa).sum(-1, keepdim=True)[..., None]
    theta = torch.sqrt(theta2.clamp_min(_EPS * _EPS))
    small = theta2 < 1e-8
    # sin(t)/t and (1-cos t)/t^2 with their series near zero, so gradients stay finite.
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2.clamp_min(1e-12))
    k = skew(aa)
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand(k.shape)
    return eye + a * k + b * (k @ k)


@numpy_or_torch
def matrix_to_quaternion(m: torch.Tensor) -> torch.Tensor:
    """Rotation matrix (..., 3, 3) -> unit quaternion (..., 4), w >= 0.

    Shepperd's method (Shepperd 1978, Quaternion from rotation matrix): of the four
    candidates 4 q_k q (k = w, x, y, z) built from the trace and the off-diagonal sums,
    take the one with the largest diagonal term, the best conditioned, and normalise.
    """
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    trace = m00 + m11 + m22
    cands = torch.stack(
        [
            torch.stack(
                [
                    1 + trace,
                    m[..., 2, 1] - m[..., 1, 2],
                    m[..., 0, 2] - m[..., 2, 0],
                    m[..., 1, 0] - m[..., 0, 1],
                ],
                -1,
            ),
            torch.stack(
                [
                    m[..., 2, 1] - m[..., 1, 2],
                    1 + m00 - m11 - m22,
                    m[..., 0, 1] + m[..., 1, 0],
                    m[..., 0, 2] + m[..., 2, 0],
                ],
                -1,
            ),
            torch.stack(
                [
                    m[..., 0, 2] - m[..., 2, 0],
                    m[..., 0, 1] + m[..., 1, 0],
                    1 - m00 + m11 - m22,
                    m[..., 1, 2] + m[..., 2, 1],
                ],
                -1,
            ),
            torch.stack(
                [
                    m[..., 1, 0] - m[..., 0, 1],
                    m[..., 0, 2] + m[..., 2, 0],
                    m[..., 1, 2] + m[..., 2, 1],
                    1 - m00 - m11 + m22,
                ],
                -1,
            ),
        ],
        -2,
    )
    diag = torch.stack([trace, m00, m11, m22], -1)
    best = diag.argmax(-1)
    q = torch.gather(cands, -2, best[..., None, None].expand(best.shape + (1, 4))).squeeze(-2)
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True).clamp_min(_EPS)
    return q * torch.where(q[..., :1] < 0, -1.0, 1.0).to(q.dtype)


@numpy_or_torch
def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Quaternion (..., 4) (normalised here) -> rotation matrix (..., 3, 3), the standard
    homogeneous form R = (w^2 - |v|^2) I + 2 v v^T + 2 w [v]x written out."""
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True).clamp_min(_EPS)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - w * z),
            2 * (x * z + w * y),
            2 * (x * y + w * z),
            1 - 2 * (x * x + z * z),
            2 * (y * z - w * x),
            2 * (x * z - w * y),
            2 * (y * z + w * x),
            1 - 2 * (x * x + y * y),
        ],
        -1,
    ).reshape(q.shape[:-1] + (3, 3))


@numpy_or_torch
def quaternion_to_axis_angle(q: torch.Tensor) -> torch.Tensor:
    """Quaternion (..., 4) -> axis-angle (..., 3): angle 2 atan2(|v|, w) about v / |v|
    (w >= 0 first, so the angle is in [0, pi]); 2 v / w near the identity."""
    q = q * torch.where(q[..., :1] < 0, -1.0, 1.0).to(q.dtype)
    vec = q[..., 1:]
    s = torch.linalg.vector_norm(vec, dim=-1, keepdim=True)
    angle = 2 * torch.atan2(s, q[..., :1])
    scale = torch.where(s < 1e-6, 2.0 / q[..., :1].clamp_min(_EPS), angle / s.clamp_min(_EPS))
    return vec * scale


@numpy_or_torch
def matrix_to_axis_angle(m: torch.Tensor) -> torch.Tensor:
    """Rotation matrix (..., 3, 3) -> axis-angle (..., 3), the log map, through the quaternion."""
    return quaternion_to_axis_angle(matrix_to_quaternion(m))


@numpy_or_torch
def axis_angle_to_quaternion(aa: torch.Tensor) -> torch.Tensor:
    """Axis-angle (..., 3) -> quaternion (cos(t/2), sin(t/2) aa / t) (..., 4)."""
    angle = torch.linalg.vector_norm(aa, dim=-1, keepdim=True)
    half = angle / 2
    scale = torch.where(
        angle < 1e-6, 0.5 - angle * angle / 48, torch.sin(half) / angle.clamp_min(_EPS)
    )
    return torch.cat([torch.cos(half), aa * scale], -1)


@numpy_or_torch
def matrix_to_rotation_6d(m: torch.Tensor) -> torch.Tensor:
    """Rotation matrix (..., 3, 3) -> its first two columns (..., 6) (Zhou et al. 2019)."""
    return m[..., :, :2].transpose(-1, -2).reshape(m.shape[:-2] + (6,))


@numpy_or_torch
def rotation_6d_to_matrix(d6: torch.Tensor) -> torch.Tensor:
    """6D (..., 6) -> rotation matrix (..., 3, 3) (Zhou et al. 2019): Gram-Schmidt on the two
    stored columns, b1 = a1 / |a1|, b2 = unit(a2 - (b1.a2) b1), and b3 = b1 x b2."""
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = a1 / torch.linalg.vector_norm(a1, dim=-1, keepdim=True).clamp_min(_EPS)
    b2 = a2 - (b1 * a2).sum(-1, keepdim=True) * b1
    b2 = b2 / torch.linalg.vector_norm(b2, dim=-1, keepdim=True).clamp_min(_EPS)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], -1)


@numpy_or_torch
def normalize(v: torch.Tensor) -> torch.Tensor:
    """v / |v| over the last axis (zero vectors stay zero)."""
    return v / torch.linalg.vector_norm(v, dim=-1, keepdim=True).clamp_min(_EPS)


@numpy_or_torch
def swing_rotation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The minimal ("swing") rotation (..., 3, 3) taking direction ``a`` onto ``b`` (..., 3).

    With unit a, b, v = a x b and c = a . b, Rodrigues' formula about v / |v| with
    sin = |v| and cos = c simplifies to R = c I + [v]x + v v^T / (1 + c) (no trigonometry).
    Antiparallel inputs get a half turn about an axis perpendicular to ``a``; zero-length
    inputs give the identity (an unobserved bone leaves its joint at rest).
    """
    # normalize's arithmetic, the norms kept for the degenerate test below
    len_a = torch.linalg.vector_norm(a, dim=-1, keepdim=True)
    len_b = torch.linalg.vector_norm(b, dim=-1, keepdim=True)
    a_n, b_n = a / len_a.clamp_min(_EPS), b / len_b.clamp_min(_EPS)
    v = torch.cross(a_n, b_n, dim=-1)
    c = (a_n * b_n).sum(-1)
    # R = c I + [v]x + v v^T / (1 + c): Rodrigues with sin = |v|, cos = c, no trig or quaternion.
    # Written with whole matrices (a few ops instead of three per entry): k v_i v_j for i <= j,
    # mirrored below the diagonal, so each entry is the same product (k v_i) v_j as entry by entry
    kv = (1.0 / (1.0 + c).clamp_min(1e-6))[..., None] * v
    outer = kv[..., :, None] * v[..., None, :]
    outer = torch.where(_UPPER.to(a.device), outer, outer.transpose(-1, -2))
    vx, vy, vz = v.unbind(-1)
    r = outer + torch.stack([c, -vz, vy, vz, c, -vx, -vy, vx, c], -1).reshape(a.shape[:-1] + (3, 3))
    anti = (1 + c) < 1e-6
    degenerate = (len_a[..., 0] < 1e-9) | (len_b[..., 0] < 1e-9)
    if bool(anti.any() | degenerate.any()):
        # near-antiparallel: a half turn about any axis perpendicular to a, 2 p p^T - I
        ref = torch.where(
            a_n[..., :1].abs() < 0.9,
            torch.tensor([1.0, 0, 0], dtype=a.dtype, device=a.device),
            torch.tensor([0, 1.0, 0], dtype=a.dtype, device=a.device),
        )
        perp = normalize(torch.cross(a_n, ref.expand_as(a_n), dim=-1))
        eye = torch.eye(3, dtype=a.dtype, device=a.device)
        half = 2 * perp[..., :, None] * perp[..., None, :] - eye
        r = torch.where(anti[..., None, None], half, r)
        r = torch.where(degenerate[..., None, None], eye.expand_as(r), r)
    return r


def _minors4(m: list) -> tuple:
    """The complementary 2x2 minors s0..s5 (rows 0-1) and c0..c5 (rows 2-3) of a 4x4 matrix
    given as its 16 entries (row-major, each over the batch)."""
    m00, m01, m02, m03, m10, m11, m12, m13, m20, m21, m22, m23, m30, m31, m32, m33 = m
    return (
        m00 * m11 - m10 * m01,
        m00 * m12 - m10 * m02,
        m00 * m13 - m10 * m03,
        m01 * m12 - m11 * m02,
        m01 * m13 - m11 * m03,
        m02 * m13 - m12 * m03,
        m20 * m31 - m30 * m21,
        m20 * m32 - m30 * m22,
        m20 * m33 - m30 * m23,
        m21 * m32 - m31 * m22,
        m21 * m33 - m31 * m23,
        m22 * m33 - m32 * m23,
    )


def _det4(m: list) -> torch.Tensor:
    """Determinant of a 4x4 matrix given as its 16 entries: s0 c5 - s1 c4 + s2 c3 + s3 c2 -
    s4 c1 + s5 c0 in the minors of ``_minors4``."""
    s0, s1, s2, s3, s4, s5, c0, c1, c2, c3, c4, c5 = _minors4(m)
    return s0 * c5 - s1 * c4 + s2 * c3 + s3 * c2 - s4 * c1 + s5 * c0


def _adjugate4(m: list) -> list:
    """Adjugate (det(m) inv(m), no division) of a 4x4 matrix given as its 16 entries, row-major,
    each a tensor over the batch, by Laplace expansion in the complementary 2x2 minors of rows
    0-1 (s) and rows 2-3 (c). Entries as separate contiguous tensors: no strided 3x3 views."""
    m00, m01, m02, m03, m10, m11, m12, m13, m20, m21, m22, m23, m30, m31, m32, m33 = m
    s0, s1, s2, s3, s4, s5, c0, c1, c2, c3, c4, c5 = _minors4(m)
    return [
        m11 * c5 - m12 * c4 + m13 * c3,
        -m01 * c5 + m02 * c4 - m03 * c3,
        m31 * s5 - m32 * s4 + m33 * s3,
        -m21 * s5 + m22 * s4 - m23 * s3,
        -m10 * c5 + m12 * c2 - m13 * c1,
        m00 * c5 - m02 * c2 + m03 * c1,
        -m30 * s5 + m32 * s2 - m33 * s1,
        m20 * s5 - m22 * s2 + m23 * s1,
        m10 * c4 - m11 * c2 + m13 * c0,
        -m00 * c4 + m01 * c2 - m03 * c0,
        m30 * s4 - m31 * s2 + m33 * s0,
        -m20 * s4 + m21 * s2 - m23 * s0,
        -m10 * c3 + m11 * c1 - m12 * c0,
        m00 * c3 - m01 * c1 + m02 * c0,
        -m30 * s3 + m31 * s1 - m32 * s0,
        m20 * s3 - m21 * s1 + m22 * s0,
    ]


def _horn_matrix(h: list) -> list:
    """Horn's symmetric 4x4 N (16 entries, row-major) of the correlation H = sum w src dst^T
    (its 9 entries S_ab = H[a, b], row-major) (Horn 1987, eq. 32): the quaternion maximising
    sum w dst . R src is N's eigenvector of the largest eigenvalue."""
    sxx, sxy, sxz, syx, syy, syz, szx, szy, szz = h
    return [
        sxx + syy + szz, syz - szy, szx - sxz, sxy - syx,
        syz - szy, sxx - syy - szz, sxy + syx, szx + sxz,
        szx - sxz, sxy + syx, -sxx + syy - szz, syz + szy,
        sxy - syx, szx + sxz, syz + szy, -sxx - syy + szz,
    ]  # fmt: skip


# Horn's method is ~200 elementwise ops whatever the batch, the SVD one op at ~2.5 us a row: below
# this many rows the SVD is faster (one thread, this machine: 200 rows 1.17 vs 0.55 ms, 500 rows
# 1.31 vs 1.25 ms, 5,000 rows 5.2 vs 12.1 ms). Both give the same rotation.
HORN_MIN_ROWS = 512
# Newton steps on the characteristic polynomial (at most; it stops when every row has converged)
_HORN_NEWTON_STEPS = 40


def _horn_quaternion(h: torch.Tensor, bound: torch.Tensor):
    """The unit quaternions (B, 4) of Horn's method for correlations ``h`` (9, B) (entries of
    H row-major, over the batch), and a (B,) bool: the rows where the answer is well defined
    (a simple largest eigenvalue; the caller falls back to the SVD elsewhere).

    N's characteristic polynomial is P(l) = l^4 + c2 l^2 + c1 l + c0 with c2 = -2 |H|_F^2,
    c1 = -8 det H, c0 = det N (Horn 1987; the QCP method of Theobald 2005, Acta Cryst. A61,
    478). Newton's method from ``bound`` >= the largest root (P is increasing and convex right
    of it) converges to it monotonically; the eigenvector is then any non-zero column of
    adj(N - l I), which is rank one: the column of the largest diagonal entry, normalised.
    """
    hs = list(h.unbind(0))
    n = _horn_matrix(hs)
    c2 = -2.0 * (h * h).sum(0)
    c1 = -8.0 * _det3(hs)
    c0 = _det4(n)
    lam = bound
    tol = 1e-12 * bound.clamp_min(1e-30)
    for _ in range(_HORN_NEWTON_STEPS):
        lam2 = lam * lam
        p = (lam2 + c2) * lam2 + c1 * lam + c0
        dp = (4.0 * lam2 + 2.0 * c2) * lam + c1
        step = torch.where(dp > 0, p / dp.clamp_min(1e-30), torch.zeros_like(p))
        lam = lam - step
        if not bool((step.abs() > tol).any()):
            break
    shifted = list(n)
    for k in (0, 5, 10, 15):
        shifted[k] = n[k] - lam
    entries = _adjugate4(shifted)
    adj = torch.stack(entries, 0).reshape(4, 4, -1)
    diag = torch.stack([entries[0], entries[5], entries[10], entries[15]], 0)
    best = diag.abs().argmax(0)  # (B,) the best-conditioned column
    col = torch.gather(adj, 1, best[None, None].expand(4, 1, -1))[:, 0].T  # (B, 4)
    norm = torch.linalg.vector_norm(col, dim=-1)
    ok = norm > 1e-9 * bound.clamp_min(1e-30) ** 3
    return col / norm.clamp_min(1e-300)[:, None], ok


def _det3(m: list) -> torch.Tensor:
    """Determinant of a 3x3 matrix given as its 9 entries (row-major, each over the batch)."""
    a00, a01, a02, a10, a11, a12, a20, a21, a22 = m
    return (
        a00 * (a11 * a22 - a12 * a21)
        - a01 * (a10 * a22 - a12 * a20)
        + a02 * (a10 * a21 - a11 * a20)
    )


def _kabsch_svd(h: torch.Tensor) -> torch.Tensor:
    """R = V diag(1, 1, d) U^T from H = U S V^T, d = sign det(V U^T) (Kabsch 1976, Umeyama 1991)."""
    u, _, vt = torch.linalg.svd(h)
    # the 3x3 determinant in closed form: torch.det's batched LU cost ~5 ms a call on this CPU
    # for a hundred rows (half of a short analytic IK solve)
    d = _det3(list((vt.transpose(-1, -2) @ u.transpose(-1, -2)).flatten(-2).unbind(-1)))
    fix = torch.ones(d.shape + (3,), dtype=h.dtype, device=h.device)
    fix[..., 2] = torch.sign(d) + (d == 0).to(d.dtype)
    return vt.transpose(-1, -2) @ torch.diag_embed(fix) @ u.transpose(-1, -2)


@numpy_or_torch
def kabsch(
    src: torch.Tensor, dst: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Rotation R (..., 3, 3) minimising sum_i w_i |R src_i - dst_i|^2 for vectors (..., N, 3).

    The inputs are direction sets (already relative to a common origin); ``weights`` (..., N)
    default to 1. Closed form, no SVD: Horn's quaternion method (Horn 1987, Closed-form solution
    of absolute orientation using unit quaternions, JOSA A 4(4)), the largest eigenvector of a
    symmetric 4x4 found by Newton's method on its characteristic polynomial (``_horn_quaternion``,
    computed in float64 where the device has it). R is always proper (det +1), as Kabsch's
    solution with Umeyama's reflection fix (Kabsch 1976; Umeyama 1991), which the few rows
    without a unique answer (a largest eigenvalue that is repeated: collinear or no vectors)
    still get from the SVD (``_kabsch_svd``), so the result is that of the SVD everywhere.
    Batches under ``HORN_MIN_ROWS`` rows take the SVD directly (fewer ops).
    """
    if weights is None:
        weights = torch.ones(src.shape[:-1], dtype=src.dtype, device=src.device)
    h = (src * weights[..., None]).transpose(-1, -2) @ dst  # (..., 3, 3) = sum w src dst^T
    if h[..., 0, 0].numel() < HORN_MIN_ROWS:
        return _kabsch_svd(h)
    wide = torch.float64 if h.device.type in ("cpu", "cuda") else h.dtype
    batch = h.shape[:-2]
    # components first (9, B), each contiguous: the maths below is elementwise over the batch
    h9 = h.reshape(-1, 9).T.to(wide).contiguous()
    # an upper bound of the largest eigenvalue: sum w |src| |dst| <= (sum w |src|^2 + |dst|^2) / 2
    ends = (weights[..., None] * (src * src + dst * dst)).sum((-1, -2)).reshape(-1)
    q, ok = _horn_quaternion(h9, 0.5 * ends.to(wide))
    r = quaternion_to_matrix(q).to(h.dtype).reshape(batch + (3, 3))
    ok = ok.reshape(batch)
    if not bool(ok.all()):
        bad = ~ok
        r = r.clone()
        r[bad] = _kabsch_svd(h[bad])
    return r


@numpy_or_torch
def geodesic_angle(r1: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
    """Angle (radians) of r1^T r2: arccos((tr(r1^T r2) - 1) / 2), clamped inside (-1, 1)."""
    rel = r1.transpose(-1, -2) @ r2
    cos = ((rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1 + 1e-7, 1 - 1e-7)
    return torch.acos(cos)
