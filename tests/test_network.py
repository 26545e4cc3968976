"""Residual IK network: normalisation, residual composition, pairs, chunked inference, plug-in, checkpoint."""

import numpy as np
import pytest
import torch
from conftest import random_pose

from lsmplify_blender.core.body_model import BodyModel, load_model_data
from lsmplify_blender.core.network.infer import refine_network, solve_network_from
from lsmplify_blender.core.network.kinematics import fk, reaim
from lsmplify_blender.core.network.model import (
    CHECKPOINT_PATH,
    ResidualIKNet,
    build_features,
    compose,
    human_frame,
    load_network,
)
from lsmplify_blender.core.network.pairs import MotionSet, make_batch, sample_indices
from lsmplify_blender.core.network.retarget import mirror_motion
from lsmplify_blender.core.rotations import (
    axis_angle_to_matrix,
)


@pytest.fixture(scope="module")
def model():
    return BodyModel(load_model_data())


def _pair(model, n=8, seed=0):
    r0 = random_pose(n, seed).float()
    r1 = r0 @ axis_angle_to_matrix(
        torch.randn(n, 24, 3, generator=torch.Generator().manual_seed(seed + 1)) * 0.05
    )
    betas = torch.randn(n, 10, generator=torch.Generator().manual_seed(seed + 2))
    rest = model.rest_joints(betas)
    _, j0 = fk(r0, rest)
    _, j1 = fk(r1, rest)
    return r0, r1, betas, rest, j0 + 0.3, j1 + torch.tensor([0.35, 0.3, 0.3])


def test_human_frame_is_proper_rotation(model):
    *_, j0, _ = _pair(model)
    _, f = human_frame(j0)
    assert torch.allclose(f.transpose(-1, -2) @ f, torch.eye(3).expand_as(f), atol=1e-5)
    assert torch.allclose(torch.det(f), torch.ones(f.shape[0]), atol=1e-5)


def test_features_invariant_to_global_rotation_and_translation(model):
    r0, _r1, betas, rest, j0, j1 = _pair(model)
    m = torch.ones(8, 24)
    f_a = build_features(j0, j1, m, m, r0, fk(r0, rest)[1], betas, rest)
    g = axis_angle_to_matrix(torch.tensor([0.3, -1.2, 0.7]))
    tr = torch.tensor([1.0, -2.0, 0.5])

    def move(p):
        return p @ g.T + tr

    r0g = r0.clone()
    r0g[:, 0] = g @ r0[:, 0]
    f_b = build_features(move(j0), move(j1), m, m, r0g, move(fk(r0, rest)[1]), betas, rest)
    assert torch.allclose(f_a, f_b, atol=1e-4)


def test_zero_output_returns_init(model):
    r0, _r1, betas, rest, j0, j1 = _pair(model)
    net = ResidualIKNet(hidden=64, blocks=1)
    m = torch.ones(8, 24)
    d = net(build_features(j0, j1, m, m, r0, fk(r0, rest)[1], betas, rest))
    assert torch.allclose(d, torch.eye(3).expand_as(d), atol=1e-6)
    assert torch.allclose(compose(r0, d), r0, atol=1e-6)


def test_mirror_is_an_involution():
    r = random_pose(5, 3).float().numpy()
    p = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    r2, p2 = mirror_motion(*mirror_motion(r, p))
    assert np.allclose(r2, r, atol=1e-6) and np.allclose(p2, p)


def _motion_set(n_clips=3, frames=60):
    rots, pels = [], []
    for c in range(n_clips):
        base = random_pose(1, c).float()
        aa = (
            torch.linspace(0, 1, frames)[:, None, None]
            * torch.randn(1, 24, 3, generator=torch.Generator().manual_seed(c))
            * 0.3
        )
        rots.append(base @ axis_angle_to_matrix(aa))
        pels.append(
            torch.linspace(0, 1, frames)[:, None] * torch.tensor([1.0, 0.0, 0.5])
            + torch.tensor([0, 0.9, 0])
        )
    starts = np.concatenate([[0], np.cumsum([frames] * n_clips)])
    return MotionSet(torch.cat(rots), torch.cat(pels), starts, stride=4)


def test_pair_sampling_properties(model):
    ms = _motion_set()
    i0, i1, s = sample_indices(ms, 4000, np.random.default_rng(0))
    clip = ms.clip_of
    assert (clip[i0] == clip[i1]).all()
    long_ok = np.abs(i1 - i0) == 4 * s  # clamped only near clip ends
    assert long_ok.mean() > 0.9
    forward = (i1 > i0)[s > 0]
    assert 0.35 < forward.mean() < 0.65  # about half reversed in time
    assert set(np.unique(s)) <= {0, 1, 3, 5, 7, 9}
    b = make_batch(ms, model, 64, np.random.default_rng(1), torch.Generator().manual_seed(1))
    for k, v in b.items():
        assert torch.isfinite(v.float()).all(), k
    assert (b["mask_tgt"][:, [0, 1, 2, 12]] == 1).all()
    # target joints are exact FK of the target pose on the sample's rest skeleton
    _, j = fk(b["rot_tgt"], b["rest"])
    assert torch.allclose(j, b["joints_tgt"], atol=1e-5)


def test_reaim_keeps_twist_and_hits_targets(model):
    r0, _r1, _betas, rest, j0, j1 = _pair(model)
    rot, trans = reaim(r0, rest, j1, torch.ones(8, 24))
    _, j = fk(rot, rest)
    inner = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21, 22, 23]
    assert ((j + trans[:, None] - j1)[:, inner].norm(dim=-1)).max() < 1e-4
    same, _ = reaim(r0, rest, j0, torch.ones(8, 24))  # already on target: unchanged
    assert torch.allclose(same, r0, atol=1e-4)


def _net():
    torch.manual_seed(0)
    net = ResidualIKNet(hidden=64, blocks=1)
    for p in net.out.parameters():
        torch.nn.init.normal_(p, std=0.01)
    return net.eval()


def test_chunked_batch_equals_sequential(model):
    betas = torch.zeros(1, 10)
    rest = model.rest_joints(betas)
    L = 6
    clip = random_pose(1, 5).float() @ axis_angle_to_matrix(
        torch.linspace(0, 0.5, L)[:, None, None] * torch.ones(1, 24, 3) * 0.2
    )
    rots = torch.cat([clip, clip, clip[:3]])  # chunks 0 and 1 identical, a short tail
    _, j = fk(rots, rest)
    w = torch.ones(rots.shape[0], 24)
    ra = reaim(torch.eye(3).expand(rots.shape[0], 24, 3, 3), rest, j, w)[0]
    net = _net()
    out, _trans, _ = solve_network_from(model, betas, j, w, ra, j, net=net, chunk=L)
    assert torch.allclose(out[:L], out[L : 2 * L], atol=1e-5)
    single, _, _ = solve_network_from(model, betas, j[:L], w[:L], ra[:L], j[:L], net=net, chunk=L)
    assert torch.allclose(out[:L], single, atol=1e-5)
    assert torch.allclose(out[2 * L :], single[:3], atol=1e-5)


@pytest.mark.skipif(not CHECKPOINT_PATH.is_file(), reason="no shipped checkpoint")
def test_shipped_checkpoint_loads_on_cpu():
    assert CHECKPOINT_PATH.stat().st_size < 20 * 1024 * 1024
    net = load_network(device="cpu")
    assert sum(p.numel() for p in net.parameters()) <= 3_000_000
    assert next(net.parameters()).device.type == "cpu"


@pytest.mark.skipif(not CHECKPOINT_PATH.is_file(), reason="no shipped checkpoint")
def test_plug_in_reduces_error_from_perturbed_init(model):
    r_true, _, betas, rest, _, _ = _pair(model, n=16, seed=7)
    betas = betas[:1]
    rest = model.rest_joints(betas)
    _, j = fk(r_true, rest.expand(16, -1, -1))
    noise = axis_angle_to_matrix(
        torch.randn(16, 24, 3, generator=torch.Generator().manual_seed(3)) * 0.15
    )
    r_init = r_true @ noise
    v_true = model.vertices(r_true, betas)
    err0 = (model.vertices(r_init, betas) - v_true).norm(dim=-1).mean()
    r, trans = refine_network(model, betas, r_init, j, torch.ones(16, 24), passes=2)
    err1 = (model.vertices(r, betas) + trans[:, None] + rest[0, 0] - v_true).norm(dim=-1).mean()
    assert err1 < 0.7 * err0


def test_bad_checkpoints_raise_model_file_error(tmp_path):
    import pytest
    import torch

    from lsmplify_blender.core.errors import ModelFileError
    from lsmplify_blender.core.network import load_network

    with pytest.raises(ModelFileError, match="not found"):
        load_network(tmp_path / "none.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFileError, match="not a readable"):
        load_network(junk)
    other = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(3)}, other)
    with pytest.raises(ModelFileError, match="expected 'config'"):
        load_network(other)
    shipped = torch.load(
        load_network.__globals__["CHECKPOINT_PATH"], map_location="cpu", weights_only=True
    )
    arch = tmp_path / "arch.pt"
    state = dict(shipped["state_dict"])
    first = next(k for k, v in state.items() if v.ndim == 2)
    state[first] = torch.zeros(state[first].shape[0] + 1, state[first].shape[1])  # another width
    torch.save({"config": shipped["config"], "state_dict": state}, arch)
    with pytest.raises(ModelFileError, match="another network architecture"):
        load_network(arch)


def test_network_solver_needs_enough_joints(model):
    """Fewer than NETWORK_MIN_JOINTS measured SMPL joints: analytic IK, with a note saying why."""
    from lsmplify_blender.core.layouts import SMPL24
    from lsmplify_blender.core.prepare import PreparedKeypoints
    from lsmplify_blender.core.solver import NETWORK_MIN_JOINTS, solve

    rot = random_pose(6, seed=3, scale=0.3)
    kp = SMPL24.generate(model, rot, torch.zeros(10)).numpy().astype(np.float64)
    weight = np.ones(kp.shape[:2])
    keep = [0, 1, 2, 4, 5, 12, 16, 17, 18][: NETWORK_MIN_JOINTS - 1]
    weight[:, [j for j in range(24) if j not in keep]] = 0.0
    prep = PreparedKeypoints(
        layout=SMPL24, positions=kp, weight=weight, fps=30.0, units="m", up="y"
    )
    sol = solve(prep, model, solver="network")
    assert sol.solver == "analytic" and any("needs at least" in n for n in sol.notes)
    full = PreparedKeypoints(
        layout=SMPL24, positions=kp, weight=np.ones(kp.shape[:2]), fps=30.0, units="m", up="y"
    )
    assert solve(full, model, solver="network").solver == "network"
