"""Long takes go through the network in blocks: same result as one pass, bounded memory."""

import numpy as np
import pytest
import torch
from conftest import smooth_pose

from lsmplify_blender.core.layouts import SMPL24
from lsmplify_blender.core.network import infer, precision
from lsmplify_blender.core.prepare import PreparedKeypoints


@pytest.fixture
def float32_network(monkeypatch):
    """The network in float32 for this test (bf16 GEMMs round differently for another batch
    size, so blocks would agree only to bf16's precision; test_precision.py covers bf16)."""
    monkeypatch.setenv("LSMPLIFY_BF16", "0")
    precision.bf16_wanted.cache_clear()
    yield
    precision.bf16_wanted.cache_clear()


def test_blocks_give_the_same_solution(model, monkeypatch, float32_network):
    n = 50
    rot = smooth_pose(n, seed=2, keys=4, scale=0.6)
    kp = SMPL24.generate(model, rot, torch.zeros(10), torch.zeros(n, 3)).numpy().astype(np.float64)
    prep = PreparedKeypoints(
        layout=SMPL24, positions=kp, weight=np.ones(kp.shape[:2]), fps=30.0, units="m", up="y"
    )
    whole = infer.solve_network(prep, model, torch.zeros(10), chunk=4)
    monkeypatch.setattr(infer, "BLOCK_FRAMES", 16)  # 4 blocks of 16, 16, 16, 2 frames
    blocks = infer.solve_network(prep, model, torch.zeros(10), chunk=4)
    assert torch.allclose(whole[0], blocks[0], atol=1e-5) and torch.allclose(
        whole[1], blocks[1], atol=1e-6
    )
    assert blocks[2].anchors == whole[2].anchors == 13
