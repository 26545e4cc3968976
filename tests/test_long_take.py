"""Long takes converted by blocks (core/long_take.py, core/formats/blocks.py): the same output as
the whole-take path on real CMU motion with a small block forced, the block readers' checks,
and the takes that go the whole-take way. The memory itself is measured by
benchmarks/bench_long_take.py, not here."""

import json

import numpy as np
import pytest
import torch
from conftest import FIXTURES

from lsmplify_blender.core import long_take
from lsmplify_blender.core.body_model import rotmats_from_axis_angle
from lsmplify_blender.core.cli import _parser, convert_take, main
from lsmplify_blender.core.errors import InputError
from lsmplify_blender.core.formats import read_keypoints
from lsmplify_blender.core.formats.blocks import BvhBlocks, NpyBlocks, open_blocks
from lsmplify_blender.core.layouts import SMPL24

BLOCK = 400  # frames: several blocks on a take of 1,500


def _tiled_bvh(path, frames, name="131_01_short.bvh"):
    """The real CMU take's header and motion lines repeated to ``frames`` frames."""
    text = (FIXTURES / name).read_text()
    head, rest = text.split("MOTION", 1)
    lines = [ln for ln in rest.splitlines()[3:] if ln.strip()]
    body = (lines * (frames // len(lines) + 1))[:frames]
    path.write_text(head + f"MOTION\nFrames: {frames}\nFrame Time: 0.0083333\n" + "\n".join(body))
    return path


def _both(tmp_path, model, src, *options):
    """(summary, npz) of the whole-take path and of the block path on ``src``."""
    args = _parser().parse_args(["convert", str(src), "--out", "x.npz", *options])
    whole = convert_take(args, model, src, tmp_path / "whole.npz")
    blocks = long_take.convert_long_take(
        args, model, src, tmp_path / "blocks.npz", block_frames=BLOCK, min_frames=0
    )
    assert blocks is not None, "the take was not converted by blocks"
    return (whole, np.load(tmp_path / "whole.npz")), (blocks, np.load(tmp_path / "blocks.npz"))


def _assert_same(whole, blocks):
    (s1, z1), (s2, z2) = whole, blocks
    assert sorted(z1.files) == sorted(z2.files)
    for k in z1.files:
        if z1[k].dtype.kind == "f":
            # the fit report's figures come from the written (float32) poses by blocks
            atol = 1e-3 if k.startswith(("fit_error_mm_per", "segment_")) else 1e-5
            if k == "ground_height":  # estimated per block (the blocks' median): within 2 mm
                atol = 2e-3
            np.testing.assert_allclose(z2[k], z1[k], rtol=1e-5, atol=atol, err_msg=k)
        elif k == "contacts":  # against each block's ground: the same on 99% of frames
            assert (z2[k] != z1[k]).mean() <= 0.01
        else:
            np.testing.assert_array_equal(z2[k], z1[k], err_msg=k)
    for k in s1:
        if k in ("output", "seconds", "solve_seconds", "solve_fps", "notes"):
            continue
        if k == "feet":  # the whole take's skating / penetration figures: not by blocks
            assert k not in s2
            continue
        if isinstance(s1[k], dict):  # per-keypoint / per-segment figures, rounded
            assert s2[k].keys() == s1[k].keys(), k
            np.testing.assert_allclose(list(s2[k].values()), list(s1[k].values()), atol=0.11)
        else:
            assert s2[k] == s1[k], k
    assert any(n.startswith("long take: converted in 4 blocks of 400 frames") for n in s2["notes"])


def test_bvh_by_blocks_equals_the_whole_take(tmp_path, model):
    """Real CMU BVH (131_01, 120 fps) with its bone rotations, analytic IK: every frame equal."""
    src = _tiled_bvh(tmp_path / "take.bvh", 1500)
    # calibration and foot locking estimate over a whole solve: per block on a long take (below)
    options = ("--solver", "analytic", "--calibrate", "off", "--lock-feet", "off")
    whole, blocks = _both(tmp_path, model, src, *options)
    _assert_same(whole, blocks)
    assert blocks[0]["rotations"] is True and blocks[0]["frames"] == 1500
    assert blocks[1]["poses"].shape == (1500, 72)


def _smpl24_keypoints(tmp_path, model, frames) -> np.ndarray:
    """(frames, 24, 3) SMPL-24 keypoints of the real take's motion (its analytic solve)."""
    src = _tiled_bvh(tmp_path / "take.bvh", frames)
    args = _parser().parse_args(["convert", str(src), "--out", "x.npz", "--solver", "analytic"])
    convert_take(args, model, src, tmp_path / "motion.npz")
    m = np.load(tmp_path / "motion.npz")
    rot = rotmats_from_axis_angle(torch.as_tensor(m["poses"], dtype=model.dtype))
    return SMPL24.generate(
        model,
        rot,
        torch.as_tensor(m["betas"], dtype=model.dtype),
        torch.as_tensor(m["trans"], dtype=model.dtype),
    ).numpy()


def test_noisy_npy_with_a_gap_by_blocks_equals_the_whole_take(tmp_path, model):
    """SMPL-24 keypoints of the real take's motion with 10 mm of noise and a 30-frame gap: the
    smoothing (pass 2, overlap), the gap filling and the shape all as in the whole take."""
    kp = _smpl24_keypoints(tmp_path, model, 1500)
    kp = kp + np.random.default_rng(0).normal(scale=0.01, size=kp.shape)
    kp[390:420, 5] = np.nan  # across the first block's end
    npy = tmp_path / "keypoints.npy"
    np.save(npy, kp.astype(np.float32))
    whole, blocks = _both(tmp_path, model, npy, "--solver", "analytic")
    _assert_same(whole, blocks)
    assert blocks[0]["smooth_seconds"] > 0 and blocks[0]["noise_mm"] > 5
    assert "filled 30 missing keypoint samples by interpolation over time" in blocks[0]["notes"]


def test_calibration_and_feet_by_blocks_are_written_for_the_whole_take(tmp_path, model):
    """Defaults on a BVH (calibration and foot locking on): each block calibrates and plants its
    own feet; the .npz still holds every frame's contacts, one set of offsets and one ground."""
    src = _tiled_bvh(tmp_path / "take.bvh", 1200)
    args = _parser().parse_args(["convert", str(src), "--out", "x.npz"])
    summary = long_take.convert_long_take(
        args, model, src, tmp_path / "blocks.npz", block_frames=BLOCK, min_frames=0
    )
    z = np.load(tmp_path / "blocks.npz")
    assert z["contacts"].shape == (1200, 2) and z["contacts"].dtype == bool
    assert np.isfinite(z["ground_height"]) and z["keypoint_offsets"].shape[1] == 3
    assert z["fit_error_mm_raw"].shape == (1200,) and summary["calibrated"] is True
    assert any(
        "calibration and the feet's ground are estimated per block" in n for n in summary["notes"]
    )


def test_a_gap_longer_than_the_overlap_goes_the_whole_take_way(tmp_path, model):
    kp = _smpl24_keypoints(tmp_path, model, 1200)
    kp[100 : 101 + long_take.OVERLAP_FRAMES, 3] = np.nan
    npy = tmp_path / "gappy.npy"
    np.save(npy, kp)
    args = _parser().parse_args(["convert", str(npy), "--out", "x.npz"])
    assert long_take.convert_long_take(args, model, npy, tmp_path / "o.npz", min_frames=0) is None
    assert not (tmp_path / "o.npz").exists()


def test_the_cli_converts_a_long_take_by_blocks(tmp_path, capsys, monkeypatch):
    """The real convert path: above LONG_TAKE_FRAMES the CLI goes by blocks and says so."""
    monkeypatch.setattr(long_take, "LONG_TAKE_FRAMES", 1000)
    monkeypatch.setattr(long_take, "BLOCK_FRAMES", BLOCK)
    src = _tiled_bvh(tmp_path / "take.bvh", 1200, "01_01_short.bvh")
    out = tmp_path / "smpl.npz"
    assert main(["convert", str(src), "--out", str(out), "--solver", "analytic"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["frames"] == 1200 and summary["layout"] == "cmu"
    assert "long take: converted in 3 blocks of 400 frames" in captured.err
    z = np.load(out)
    assert z["poses"].shape == (1200, 72) and np.isfinite(z["poses"]).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["smpl.npz", "take.bvh"]  # no leftovers


def test_bvh_blocks_hold_one_offset_per_frame_not_the_values(tmp_path):
    """Structural: the BVH block reader keeps the line offsets (8 bytes a frame) and the first
    frame, never the take's values; a block read equals the whole-take reader's frames."""
    src = _tiled_bvh(tmp_path / "take.bvh", 900)
    reader = BvhBlocks(src)
    arrays = {k: v.nbytes for k, v in vars(reader).items() if isinstance(v, np.ndarray)}
    assert arrays == {"line_start": 8 * 900, "first": 8 * reader.header.num_channels}
    whole = read_keypoints(src)
    part = reader.read(450, 700)
    np.testing.assert_array_equal(part.positions, whole.positions[450:700])
    np.testing.assert_array_equal(part.rotations, whole.rotations[450:700])
    assert part.names == whole.names and part.fps == whole.fps
    assert part.notes[0] == whole.notes[0]  # the take's own frame count


def test_bvh_blocks_check_the_declared_frames_against_the_file(tmp_path):
    text = (FIXTURES / "01_01_short.bvh").read_text()
    head = text[: text.index("MOTION")]
    liar = tmp_path / "liar.bvh"
    liar.write_text(head + "MOTION\nFrames: 2000000\nFrame Time: 0.0083333\n0 0 0\n")
    with pytest.raises(InputError, match="only 6 characters long"):
        open_blocks(liar)
    short = tmp_path / "short.bvh"  # fewer lines than declared: the whole-take reader says so
    _tiled_bvh(short, 300)
    short.write_text(short.read_text().replace("Frames: 300", "Frames: 301"))
    assert open_blocks(short) is None
    with pytest.raises(InputError, match="says 301 frames"):
        read_keypoints(short)


def test_bvh_block_with_a_non_number_is_refused(tmp_path):
    src = _tiled_bvh(tmp_path / "take.bvh", 500)
    lines = src.read_text().splitlines()
    lines[-100] = lines[-100].replace(" ", " x", 1)
    src.write_text("\n".join(lines))
    reader = BvhBlocks(src)
    reader.read(0, 100)
    with pytest.raises(InputError, match="'x"):
        reader.read(300, 500)


def test_npy_blocks_read_rows_and_refuse_what_they_cannot(tmp_path):
    kp = np.random.default_rng(1).normal(size=(300, 24, 3)).astype(np.float32)
    np.save(tmp_path / "a.npy", kp)
    reader = NpyBlocks(tmp_path / "a.npy")
    np.testing.assert_array_equal(reader.read(100, 150).positions, kp[100:150])
    np.save(tmp_path / "wide.npy", kp.reshape(300, 72))  # (T, 3J): x, y, z per joint
    np.testing.assert_array_equal(open_blocks(tmp_path / "wide.npy").read(0, 10).positions, kp[:10])
    np.save(tmp_path / "f.npy", np.asfortranarray(kp))
    assert open_blocks(tmp_path / "f.npy") is None  # Fortran order: read whole
    raw = (tmp_path / "a.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match="truncated or corrupt"):
        open_blocks(tmp_path / "cut.npy")
