"""The geometry kernels of issue 15: Horn's closed-form rotation fit, slice/index level plans."""

import numpy as np
import torch
from conftest import random_pose

from lsmplify_blender.core.model import rotations
from lsmplify_blender.core.model.kinematics import forward_kinematics, level_plan, tree_kinematics
from lsmplify_blender.core.model.rotations import (
    _adjugate4,
    _kabsch_svd,
    axis_angle_to_matrix,
    kabsch,
)
from lsmplify_blender.core.model.skeleton import SMPL_PARENTS


def _fit_cost(r, src, dst, w):
    moved = (r @ src.transpose(-1, -2)).transpose(-1, -2)
    return (w * (moved - dst).pow(2).sum(-1)).sum(-1)


def test_adjugate4_is_det_times_inverse():
    m = torch.randn(500, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    entries = list(m.reshape(-1, 16).T)
    adj = torch.stack(_adjugate4(entries), -1).reshape(-1, 4, 4)
    want = torch.linalg.inv(m) * torch.linalg.det(m)[:, None, None]
    assert torch.allclose(adj, want, atol=1e-9)
    assert torch.allclose(rotations._det4(entries), torch.linalg.det(m), atol=1e-9)


def test_horn_kabsch_matches_the_svd_solution():
    """Same rotation as Kabsch's SVD (float64 reference) on noisy, planar (2 vectors) and
    reflected sets, never a worse fit, always proper."""
    g = torch.Generator().manual_seed(1)
    for k, noise in ((3, 0.05), (5, 0.3), (2, 0.02), (4, 2.0)):
        n = 4000
        src = torch.randn(n, k, 3, generator=g, dtype=torch.float64)
        rot = axis_angle_to_matrix(torch.randn(n, 3, generator=g, dtype=torch.float64) * 2)
        dst = (rot @ src.transpose(-1, -2)).transpose(-1, -2)
        dst = dst + noise * torch.randn(n, k, 3, generator=g, dtype=torch.float64)
        w = torch.rand(n, k, generator=g, dtype=torch.float64) + 0.05
        got = kabsch(src, dst, w)
        ref = _kabsch_svd((src * w[..., None]).transpose(-1, -2) @ dst)
        assert torch.allclose(torch.det(got), torch.ones(n, dtype=torch.float64), atol=1e-9)
        assert (_fit_cost(got, src, dst, w) <= _fit_cost(ref, src, dst, w) + 1e-9).all()
        assert (got - ref).abs().max() < 1e-7  # (geodesic_angle clamps below 0.026 deg)


def test_kabsch_float32_is_at_least_as_close_as_the_float32_svd():
    g = torch.Generator().manual_seed(2)
    n = 4000
    src = torch.randn(n, 3, 3, generator=g)
    rot = axis_angle_to_matrix(torch.randn(n, 3, generator=g) * 2)
    dst = (rot @ src.transpose(-1, -2)).transpose(-1, -2) + 0.05 * torch.randn(n, 3, 3, generator=g)
    w = torch.rand(n, 3, generator=g) + 0.05
    h64 = (src.double() * w.double()[..., None]).transpose(-1, -2) @ dst.double()
    ref = _kabsch_svd(h64)
    svd32 = _kabsch_svd((src * w[..., None]).transpose(-1, -2) @ dst)
    got = kabsch(src, dst, w)
    assert got.dtype == torch.float32
    err = (got.double() - ref).abs().amax((-1, -2))
    assert err.max() <= (svd32.double() - ref).abs().amax((-1, -2)).max()


def test_kabsch_without_a_unique_answer_falls_back_to_the_svd():
    """One vector (any turn about it fits) and no weight at all, in a batch large enough for
    Horn's method: the SVD's answer, proper."""
    reps = rotations.HORN_MIN_ROWS
    src = torch.tensor([[[1.0, 0, 0]], [[0, 1.0, 0]]]).repeat(reps, 1, 1)
    dst = torch.tensor([[[0, 1.0, 0]], [[0, 1.0, 0]]]).repeat(reps, 1, 1)
    got = kabsch(src, dst, torch.tensor([[1.0], [0.0]]).repeat(reps, 1))
    assert torch.allclose(got[::2] @ src[0, 0], dst[0, 0].expand(reps, 3), atol=1e-6)
    assert torch.allclose(torch.det(got), torch.ones(2 * reps), atol=1e-6)


def test_small_batches_take_the_svd_and_agree_with_horn():
    g = torch.Generator().manual_seed(3)
    n = rotations.HORN_MIN_ROWS
    src = torch.randn(n, 3, 3, generator=g, dtype=torch.float64)
    dst = src + 0.1 * torch.randn(n, 3, 3, generator=g, dtype=torch.float64)
    w = torch.rand(n, 3, generator=g, dtype=torch.float64)
    assert torch.allclose(kabsch(src, dst, w)[:7], kabsch(src[:7], dst[:7], w[:7]), atol=1e-9)


def _fk_reference(rotmats, rest, parents):
    """Forward kinematics joint by joint (the textbook loop) for comparison."""
    glob, pos = [None] * len(parents), [None] * len(parents)
    for j, p in enumerate(parents):
        off = rest[:, j] - (rest[:, p] if p >= 0 else 0)
        if p < 0:
            glob[j], pos[j] = rotmats[:, j], rest[:, j].expand(rotmats.shape[0], 3)
        else:
            glob[j] = glob[p] @ rotmats[:, j]
            pos[j] = pos[p] + (glob[p] @ off[..., None])[..., 0]
    return torch.stack(glob, 1), torch.stack(pos, 1)


def test_forward_kinematics_equals_the_joint_by_joint_loop():
    rot = random_pose(64, seed=4).double()
    rest = torch.randn(1, 24, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    g, p = forward_kinematics(rot, rest)
    g_ref, p_ref = _fk_reference(rot, rest.expand(64, -1, -1), SMPL_PARENTS)
    assert torch.allclose(g, g_ref, atol=1e-12) and torch.allclose(p, p_ref, atol=1e-12)


def test_smpl_levels_are_slices_and_other_trees_use_index_tensors():
    _, steps = level_plan(SMPL_PARENTS)
    assert all(isinstance(s.joints, slice) for s in steps)
    # a tree whose levels interleave (joints of depth 1 and 2 alternate): index tensors
    parents = (-1, 0, 1, 0, 3, 0, 5)
    _, steps = level_plan(parents)
    assert isinstance(steps[1].joints, torch.Tensor)
    n = 16
    rot = axis_angle_to_matrix(torch.randn(n, 7, 3, dtype=torch.float64))
    off = torch.randn(7, 3, dtype=torch.float64)
    g, p = tree_kinematics(rot, off, parents)
    rest = torch.zeros(7, 3, dtype=torch.float64)
    for j, q in enumerate(parents):
        rest[j] = off[j] + (rest[q] if q >= 0 else 0)
    g_ref, p_ref = _fk_reference(rot, rest[None].expand(n, -1, -1), parents)
    assert torch.allclose(g, g_ref, atol=1e-12) and torch.allclose(p, p_ref, atol=1e-12)
    # numpy in, numpy out still
    g_np, _ = tree_kinematics(rot.numpy(), off.numpy(), parents)
    assert isinstance(g_np, np.ndarray) and np.allclose(g_np, g_ref.numpy())


def test_gradients_flow_through_the_sliced_kinematics():
    """The optimiser and the training loss differentiate FK and the re-aim: the level slices
    must not be views that later writes invalidate; the gradient is the loop's."""
    from lsmplify_blender.core.network.kinematics import reaim

    rot = random_pose(8, seed=6).double().requires_grad_(True)
    rest = torch.randn(1, 24, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    g, p = forward_kinematics(rot, rest)
    (g.sum() + p.sum()).backward()
    grad = rot.grad.clone()
    rot.grad = None
    g_ref, p_ref = _fk_reference(rot, rest.expand(8, -1, -1), SMPL_PARENTS)
    (g_ref.sum() + p_ref.sum()).backward()
    assert torch.allclose(grad, rot.grad, atol=1e-10)
    rot.grad = None
    loc, trans = reaim(rot, rest, p.detach() + 0.01, torch.ones(8, 24), swings_only=True)
    (loc.sum() + trans.sum()).backward()
    assert torch.isfinite(rot.grad).all() and rot.grad.abs().sum() > 0
