"""bf16 for the network's MLP on CPUs that compute it natively, float32 everywhere else.

The residual blocks' two linear layers are 80% of the network's 2.8 MFLOP per frame. On a
CPU with AVX512-BF16 or AMX-BF16, oneDNN runs them in bf16 at several times the float32
rate (this machine, one thread, 10,000 frames: 276 -> 77 ms for the whole MLP in bf16).
Only those layers change: their inputs are rounded to bf16 and their outputs come back as
float32, so the residual stream, the layer norms, the input and output layers and the 6D
-> matrix step stay float32 (all layers in bf16 moved the predicted rotations twice as much:
mean 0.083 vs 0.042 deg on 131_01.bvh, the re-aim after it restores every bone's direction).

The choice is made once per process: the CPU's flags (Linux /proc/cpuinfo: ``avx512_bf16``
or ``amx_bf16``), then a numerical self-test on a realistic input (the rest pose asked to
reach slightly moved keypoints) that must agree with float32 within ``SELF_TEST_DEG``.
``LSMPLIFY_BF16=0`` turns it off, ``=1`` skips the flag check (the self-test still runs).
GPUs and other devices keep the float32 network unchanged.
"""

from __future__ import annotations

import copy
import functools
import os
import weakref
from typing import cast

import torch
from torch import nn

# the largest rotation difference (degrees) the self-test accepts between bf16 and float32
SELF_TEST_DEG = 1.0
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_bf16_flags() -> tuple[str, ...]:
    """The native-bf16 flags this CPU reports (Linux; empty elsewhere or when unreadable)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return tuple(fl for fl in BF16_FLAGS if fl in flags)
    except OSError:
        pass
    return ()


class Bf16Linear(nn.Module):
    """A linear layer computed in bf16 (weights stored in bf16), float32 in and out."""

    weight: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.register_buffer("weight", linear.weight.detach().to(torch.bfloat16))
        self.register_buffer(
            "bias", None if linear.bias is None else linear.bias.detach().to(torch.bfloat16)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x.to(torch.bfloat16), self.weight, self.bias).float()


def mixed_copy(net: nn.Module) -> nn.Module:
    """A copy of the network whose residual blocks' linear layers run in bf16."""
    out = copy.deepcopy(net)
    for blk in cast(nn.ModuleList, out.blocks):
        fc1, fc2 = cast(nn.Linear, blk.fc1), cast(nn.Linear, blk.fc2)
        blk.fc1, blk.fc2 = Bf16Linear(fc1), Bf16Linear(fc2)
    return out.eval()


def _self_test_input(rest: torch.Tensor) -> torch.Tensor:
    """Features of the rest pose of ``rest`` (24, 3) asked to reach its joints moved by ~2 cm
    (seeded): the kind of input the solver gives, not random numbers far outside what the
    network was trained on."""
    from ..model.kinematics import forward_kinematics
    from .model import NUM_BETAS, build_features

    gen = torch.Generator().manual_seed(0)
    n = 64
    rest = rest.detach().float().cpu().reshape(1, 24, 3).expand(n, -1, -1)
    rot = torch.eye(3).expand(n, 24, 3, 3).contiguous()
    _, fk0 = forward_kinematics(rot, rest)
    tgt = fk0 + 0.02 * torch.randn(n, 24, 3, generator=gen)
    ones = torch.ones(n, 24)
    return build_features(fk0, tgt, ones, ones, rot, fk0, torch.zeros(n, NUM_BETAS), rest)


def self_test_deg(net: nn.Module, mixed: nn.Module, rest: torch.Tensor) -> float:
    """The largest rotation difference (degrees) between ``mixed`` and ``net`` on the test input
    built on the rest joints ``rest`` (24, 3)."""
    from ..model.rotations import geodesic_angle

    x = _self_test_input(rest)
    with torch.no_grad():
        diff = geodesic_angle(net(x), mixed(x))
    return float(torch.rad2deg(diff).max()) if torch.isfinite(diff).all() else float("inf")


@functools.lru_cache(maxsize=1)
def bf16_wanted() -> bool:
    """Whether this process may use bf16 (LSMPLIFY_BF16, then the CPU's flags)."""
    env = os.environ.get("LSMPLIFY_BF16", "").strip()
    if env == "0":
        return False
    return env == "1" or bool(cpu_bf16_flags())


# per network object: its tested bf16 copy, or None where the self-test failed
_MIXED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def fast_network(net: nn.Module, rest: torch.Tensor) -> nn.Module:
    """The network to run inference with: its bf16 copy on a CPU with native bf16 that passed
    the self-test (on the rest joints ``rest`` (24, 3) or (1, 24, 3), at first use), else
    ``net`` itself (GPU, other CPUs, gradients wanted, a failed test). The copy is made and
    tested once per network object."""
    if torch.is_grad_enabled() or not hasattr(net, "blocks") or not bf16_wanted():
        return net
    if next(net.parameters()).device.type != "cpu":
        return net
    if net not in _MIXED:
        mixed = mixed_copy(net)
        _MIXED[net] = mixed if self_test_deg(net, mixed, rest) <= SELF_TEST_DEG else None
    return _MIXED[net] or net
