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
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    return q * torch.where(q[..., :1] < 0, -1.0, 1.0).to(q.dtype)


@numpy_or_torch
def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Quaternion (..., 4) (normalised here) -> rotation matrix (..., 3, 3), the standard
    homogeneous form R = (w^2 - |v|^2) I + 2 v v^T + 2 w [v]x written out."""
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(_EPS)
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
    s = vec.norm(dim=-1, keepdim=True)
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
    angle = aa.norm(dim=-1, keepdim=True)
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
    b1 = a1 / a1.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    b2 = a2 - (b1 * a2).sum(-1, keepdim=True) * b1
    b2 = b2 / b2.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], -1)


@numpy_or_torch
def normalize(v: torch.Tensor) -> torch.Tensor:
    """v / |v| over the last axis (zero vectors stay zero)."""
    return v / v.norm(dim=-1, keepdim=True).clamp_min(_EPS)


@numpy_or_torch
def swing_rotation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The minimal ("swing") rotation (..., 3, 3) taking direction ``a`` onto ``b`` (..., 3).

    With unit a, b, v = a x b and c = a . b, Rodrigues' formula about v / |v| with
    sin = |v| and cos = c simplifies to R = c I + [v]x + v v^T / (1 + c) (no trigonometry).
    Antiparallel inputs get a half turn about an axis perpendicular to ``a``; zero-length
    inputs give the identity (an unobserved bone leaves its joint at rest).
    """
    a_n, b_n = normalize(a), normalize(b)
    v = torch.cross(a_n, b_n, dim=-1)
    c = (a_n * b_n).sum(-1)
    # R = c I + [v]x + v v^T / (1 + c): Rodrigues with sin = |v|, cos = c, no trig or quaternion
    k = 1.0 / (1.0 + c).clamp_min(1e-6)
    vx, vy, vz = v.unbind(-1)
    r = torch.stack(
        [
            c + k * vx * vx,
            k * vx * vy - vz,
            k * vx * vz + vy,
            k * vx * vy + vz,
            c + k * vy * vy,
            k * vy * vz - vx,
            k * vx * vz - vy,
            k * vy * vz + vx,
            c + k * vz * vz,
        ],
        -1,
    ).reshape(a.shape[:-1] + (3, 3))
    anti = (1 + c) < 1e-6
    degenerate = (a.norm(dim=-1) < 1e-9) | (b.norm(dim=-1) < 1e-9)
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


@numpy_or_torch
def kabsch(
    src: torch.Tensor, dst: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Rotation R (..., 3, 3) minimising sum_i w_i |R src_i - dst_i|^2 for vectors (..., N, 3).

    Closed form (Kabsch 1976; Horn 1987 for the weighted version; Umeyama 1991 for the
    reflection fix): H = sum_i w_i src_i dst_i^T = U S V^T, R = V diag(1, 1, d) U^T with
    d = sign det(V U^T), so R is proper (det +1). The inputs are direction sets (already
    relative to a common origin); ``weights`` (..., N) default to 1.
    """
    if weights is None:
        weights = torch.ones(src.shape[:-1], dtype=src.dtype, device=src.device)
    h = (src * weights[..., None]).transpose(-1, -2) @ dst  # (..., 3, 3) = sum w src dst^T
    u, _, vt = torch.linalg.svd(h)
    d = torch.det(vt.transpose(-1, -2) @ u.transpose(-1, -2))
    fix = torch.ones(d.shape + (3,), dtype=src.dtype, device=src.device)
    fix[..., 2] = torch.sign(d) + (d == 0).to(d.dtype)
    return vt.transpose(-1, -2) @ torch.diag_embed(fix) @ u.transpose(-1, -2)


@numpy_or_torch
def geodesic_angle(r1: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
    """Angle (radians) of r1^T r2: arccos((tr(r1^T r2) - 1) / 2), clamped inside (-1, 1)."""
    rel = r1.transpose(-1, -2) @ r2
    cos = ((rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1 + 1e-7, 1 - 1e-7)
    return torch.acos(cos)
