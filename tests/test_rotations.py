import math

import torch

from lsmplify_blender.core import rotations as rt


def _rand_rot(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return rt.axis_angle_to_matrix(torch.randn(n, 3, generator=g, dtype=torch.float64) * 1.5)


def test_axis_angle_matrix_round_trip_including_small_and_large_angles():
    g = torch.Generator().manual_seed(1)
    aa = torch.randn(500, 3, generator=g, dtype=torch.float64)
    aa = (
        aa
        / aa.norm(dim=-1, keepdim=True)
        * torch.linspace(0, math.pi - 1e-3, 500, dtype=torch.float64)[:, None]
    )
    back = rt.matrix_to_axis_angle(rt.axis_angle_to_matrix(aa))
    assert torch.allclose(back, aa, atol=1e-6)


def test_matrices_are_proper_rotations():
    r = _rand_rot(100)
    eye = torch.eye(3, dtype=r.dtype).expand_as(r)
    assert torch.allclose(r @ r.transpose(-1, -2), eye, atol=1e-10)
    assert torch.allclose(torch.det(r), torch.ones(100, dtype=r.dtype), atol=1e-10)


def test_quaternion_and_6d_round_trips():
    r = _rand_rot(200, seed=2)
    assert torch.allclose(rt.quaternion_to_matrix(rt.matrix_to_quaternion(r)), r, atol=1e-10)
    assert torch.allclose(rt.rotation_6d_to_matrix(rt.matrix_to_rotation_6d(r)), r, atol=1e-10)
    aa = rt.matrix_to_axis_angle(r)
    assert torch.allclose(rt.quaternion_to_matrix(rt.axis_angle_to_quaternion(aa)), r, atol=1e-8)


def test_axis_angle_gradient_is_finite_at_zero():
    aa = torch.zeros(4, 3, dtype=torch.float64, requires_grad=True)
    rt.axis_angle_to_matrix(aa).sum().backward()
    assert torch.isfinite(aa.grad).all()


def test_swing_rotation_aims_and_is_minimal():
    g = torch.Generator().manual_seed(3)
    a = torch.randn(300, 3, generator=g, dtype=torch.float64)
    b = torch.randn(300, 3, generator=g, dtype=torch.float64)
    b[0] = -a[0]  # antiparallel case
    r = rt.swing_rotation(a, b)
    out = (r @ rt.normalize(a)[..., None])[..., 0]
    assert torch.allclose(out, rt.normalize(b), atol=1e-8)
    # minimal: the rotation angle equals the angle between the vectors
    ang = rt.geodesic_angle(torch.eye(3, dtype=r.dtype).expand_as(r), r)
    between = torch.acos((rt.normalize(a) * rt.normalize(b)).sum(-1).clamp(-1, 1))
    assert torch.allclose(ang[1:], between[1:], atol=1e-5)


def test_kabsch_recovers_rotation_and_is_proper():
    r = _rand_rot(50, seed=4)
    g = torch.Generator().manual_seed(5)
    src = torch.randn(50, 6, 3, generator=g, dtype=torch.float64)
    dst = (r[:, None] @ src[..., None])[..., 0]
    est = rt.kabsch(src, dst)
    assert torch.allclose(est, r, atol=1e-8)
    # a mirrored target still gives det +1
    est_m = rt.kabsch(src, dst * torch.tensor([-1.0, 1, 1], dtype=torch.float64))
    assert torch.allclose(torch.det(est_m), torch.ones(50, dtype=torch.float64), atol=1e-8)
