"""bf16 for the network's MLP: chosen by the CPU's flags and a self-test, float32 otherwise."""

import numpy as np
import pytest
import torch
from conftest import smooth_pose

from lsmplify_blender.core.layouts import SMPL24
from lsmplify_blender.core.network import infer, precision
from lsmplify_blender.core.prepare import PreparedKeypoints
from lsmplify_blender.core.rotations import geodesic_angle


@pytest.fixture
def bf16_env(monkeypatch):
    """Set LSMPLIFY_BF16 for one test (the choice is cached per process: cleared around it)."""

    def set_to(value):
        monkeypatch.setenv("LSMPLIFY_BF16", value)
        precision.bf16_wanted.cache_clear()

    yield set_to
    precision.bf16_wanted.cache_clear()


def _rest(model):
    return model.rest_joints(torch.zeros(10))[0]


def test_flags_come_from_the_cpu():
    flags = precision.cpu_bf16_flags()
    assert set(flags) <= set(precision.BF16_FLAGS)
    with open("/proc/cpuinfo") as f:
        text = f.read()
    assert bool(flags) == any(f" {name}" in text for name in precision.BF16_FLAGS)


def test_mixed_copy_runs_the_blocks_in_bf16_and_passes_the_self_test(model):
    net = infer.default_network()
    mixed = precision.mixed_copy(net)
    assert all(isinstance(b.fc1, precision.Bf16Linear) for b in mixed.blocks)
    assert mixed.blocks[0].fc1.weight.dtype == torch.bfloat16
    assert isinstance(net.blocks[0].fc1, torch.nn.Linear)  # the original is untouched
    deg = precision.self_test_deg(net, mixed, _rest(model))
    assert 0 < deg <= precision.SELF_TEST_DEG


def test_the_choice_follows_the_cpu_the_switch_and_the_self_test(model, bf16_env, monkeypatch):
    net = infer.load_network()  # a fresh object: nothing cached for it
    with torch.no_grad():
        bf16_env("")
        chosen = precision.fast_network(net, _rest(model))
        assert (chosen is not net) == bool(precision.cpu_bf16_flags())
        bf16_env("0")
        assert precision.fast_network(net, _rest(model)) is net
    bf16_env("1")
    assert precision.fast_network(net, _rest(model)) is net  # gradients wanted: float32
    other = infer.load_network()
    monkeypatch.setattr(precision, "SELF_TEST_DEG", -1.0)  # a self-test that cannot pass
    with torch.no_grad():
        assert precision.fast_network(other, _rest(model)) is other


def test_bf16_solve_agrees_with_float32(model, bf16_env):
    n = 40
    rot = smooth_pose(n, seed=5, keys=4, scale=0.6)
    kp = SMPL24.generate(model, rot, torch.zeros(10), torch.zeros(n, 3)).numpy().astype(np.float64)
    prep = PreparedKeypoints(
        layout=SMPL24, positions=kp, weight=np.ones(kp.shape[:2]), fps=30.0, units="m", up="y"
    )
    bf16_env("0")
    r32, t32, _ = infer.solve_network(prep, model, torch.zeros(10), chunk=4)
    bf16_env("1")
    r16, t16, _ = infer.solve_network(prep, model, torch.zeros(10), chunk=4)
    j32 = model.joints(r32, torch.zeros(10), t32)
    j16 = model.joints(r16, torch.zeros(10), t16)
    assert (j32 - j16).norm(dim=-1).max() < 1e-4  # the re-aim puts both on the keypoints
    assert torch.rad2deg(geodesic_angle(r32, r16)).mean() < 0.5  # twist: bf16-close
