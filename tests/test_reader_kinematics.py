"""The readers' forward kinematics (BVH, ASF/AMC, DeepMimic) on ``core.model.kinematics``.

``fixtures/reader_fk_reference.npz`` holds what the readers' own per-joint loops computed on
the real fixture files (CMU takes, a DeepMimic walk; credits in ``fixtures/CREDITS.md``),
written by ``fixtures/make_reader_fk_reference.py`` from the last commit that had them. The
readers now build local rotations and offsets and walk the tree with ``tree_kinematics``:
positions, rotations and rest poses must agree to 1e-10 in float64.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lsmplify_blender.core.formats import acclaim, bvh, deepmimic
from lsmplify_blender.core.model.skeleton import levels_of

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
TOL = 1e-10


@pytest.fixture(scope="module")
def reference():
    with np.load(FIXTURES / "reader_fk_reference.npz") as z:
        return {k: z[k] for k in z.files}


def _agree(reference, prefix, pos, rot, rest):
    every = int(reference["every"])
    for what, got in (("pos", pos[::every]), ("rot", rot[::every]), ("rest", rest)):
        want = reference[f"{prefix}_{what}"]
        assert got.dtype == np.float64 and got.shape == want.shape, (prefix, what, got.shape)
        assert np.max(np.abs(got - want)) < TOL, (prefix, what, np.max(np.abs(got - want)))


@pytest.mark.parametrize(
    "name", ["01_01_short.bvh", "131_01_short.bvh", "cmu_fbx_bvh/09_11_cmu.bvh"]
)
def test_bvh_fk_matches_the_readers_own_loop(reference, name):
    data = bvh.parse_bvh((FIXTURES / name).read_text(), name)
    pos, rot = bvh.bvh_forward_kinematics(data, rotations=True)
    _agree(reference, f"bvh_{Path(name).stem}", pos, rot, bvh.bvh_rest_positions(data))


@pytest.mark.parametrize("name", ["01_01_short.amc", "88_01_short.amc"])
def test_acclaim_fk_matches_the_readers_own_loop(reference, name):
    skel = acclaim.read_asf(FIXTURES / "01.asf")
    motion = acclaim.parse_amc((FIXTURES / name).read_text(), skel, name)
    names, pos, rot = acclaim.acclaim_forward_kinematics(skel, motion, rotations=True)
    assert names == [n for n, _ in acclaim.joint_order(skel)]
    rest = acclaim.asf_rest_positions(skel, motion)
    _agree(reference, f"amc_{Path(name).stem}", pos, rot, rest)


def test_deepmimic_fk_matches_the_readers_own_loop(reference):
    seq = deepmimic.read_deepmimic(FIXTURES / "humanoid3d_walk.txt")
    _agree(
        reference,
        "deepmimic_humanoid3d_walk",
        np.asarray(seq.positions, np.float64),
        seq.rotations,
        seq.rest_positions,
    )


def test_bvh_block_reading_keeps_the_whole_take_fk(reference):
    """read_bvh runs the FK in blocks (bounded memory): the same positions as one pass."""
    from lsmplify_blender.core.formats import bvh as bvh_module

    name = "01_01_short.bvh"
    whole = bvh.bvh_forward_kinematics(bvh.parse_bvh((FIXTURES / name).read_text(), name))
    old_block = bvh_module.FK_BLOCK
    try:
        bvh_module.FK_BLOCK = 7  # many blocks, each re-run with the take's first frame in front
        blocked = bvh.read_bvh(FIXTURES / name)
    finally:
        bvh_module.FK_BLOCK = old_block
    assert np.max(np.abs(np.asarray(blocked.positions, np.float64) - whole)) < 1e-6


def test_levels_of_a_long_chain_is_one_level_per_joint():
    chain = [-1] + list(range(2999))  # a 3,000-bone chain, as a hostile ASF may declare
    levels = levels_of(chain)
    assert len(levels) == 2999 and levels[0] == (1,) and levels[-1] == (2999,)
