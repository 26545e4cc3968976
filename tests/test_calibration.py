"""Per-keypoint calibration (core/calibration.py, issue 10) on real CMU takes (fixtures cut from CMU
files, see fixtures/CREDITS.md) and on keypoints made from a real motion with known offsets."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import FIXTURES, ROOT

from lsmplify_blender.core import guard, solver
from lsmplify_blender.core.calibration import (
    Geometry,
    calibrated_points,
    checked_offsets,
    keypoint_parts,
    wants_calibration,
)
from lsmplify_blender.core.errors import InputError
from lsmplify_blender.core.formats import read_keypoints
from lsmplify_blender.core.layouts import CMU, SMPL24
from lsmplify_blender.core.prepare import PreparedKeypoints, prepare
from lsmplify_blender.core.solver import refine_existing, solve

BVH = FIXTURES / "01_01_short.bvh"


@pytest.fixture(scope="module")
def bvh(model):
    return prepare(read_keypoints(BVH), model)


@pytest.fixture(scope="module")
def solved(bvh, model):
    """The take solved without and with calibration (no foot locking: the figures are calibration's;
    the locked feet lift the body off a floor the SMPL mesh would go through)."""
    return {mode: solve(bvh, model, calibrate=mode, lock_feet="off") for mode in ("off", "on")}


def _known_offsets(model, betas) -> np.ndarray:
    """Offsets of the kind calibration models: the chain roots (hips, upper back, neck base,
    shoulders) free in their parts' frames, mirrored left/right; each bone a length difference."""
    geo = Geometry.of(model, CMU, betas)
    o = np.zeros((CMU.num_keypoints, 3))
    roots = {"lfemur": (-0.015, 0.0, 0.0), "rfemur": (0.015, 0.0, 0.0)}
    roots |= {
        "lhumerus": (0.02, 0.0, 0.0),
        "rhumerus": (-0.02, 0.0, 0.0),
        "upperback": (0, 0, -0.02),
    }
    for name, v in roots.items():
        o[CMU.keypoints.index(name)] = v
    lengths = {"thorax": 0.03, "head": -0.02, "ltibia": 0.015, "rtibia": 0.015, "lradius": -0.01}
    lengths |= {"rradius": -0.01, "lhand": 0.012, "rhand": 0.012, "lfoot": -0.01, "rfoot": -0.01}
    for name, s in lengths.items():
        k = CMU.keypoints.index(name)
        assert geo.chain_from[k] >= 0, name
        o[k] = geo.levers[k] / np.linalg.norm(geo.levers[k]) * s
    return o


def test_offsets_recovered_from_known_offsets(model, solved, bvh):
    """CMU-layout keypoints made by the model from a real motion (01_01_short.bvh solved) plus known
    part-frame offsets: the calibration finds every bone's length difference within 1 mm and the
    hips' width difference within 6 mm, and its calibrated points fit the keypoints within 5 mm.
    (A chain root's offset on its own is known only up to where the torso stands and bends: the
    spine3 and collars have no keypoint, so a shift of the shoulders there fits as well.)"""
    sol = solved["off"]
    truth = _known_offsets(model, sol.betas)
    points = calibrated_points(model, CMU, sol.rotmats, sol.betas, sol.trans, truth)
    fitted = np.isfinite(points).all(-1) & ~CMU.aim_only_mask()[None]
    weight = np.where(fitted, CMU.trust_array()[None], 0.0)
    synth = PreparedKeypoints(
        layout=CMU,
        positions=np.nan_to_num(points),
        weight=weight,
        fps=bvh.fps,
        units="m",
        up="y",
    )
    out = solve(synth, model, calibrate="on", betas=sol.betas.numpy(), smooth=0)
    assert out.keypoint_offsets is not None
    err = np.linalg.norm(out.keypoint_offsets - truth, axis=-1) * 1000
    geo = Geometry.of(model, CMU, sol.betas)
    bones = list(geo.chained)
    assert len(bones) >= 12 and err[bones].max() < 1.0, err[bones]
    left, right = CMU.keypoints.index("lfemur"), CMU.keypoints.index("rfemur")
    width = out.keypoint_offsets[left] - out.keypoint_offsets[right]
    # 6 mm: the upper back rides on spine1 (core/layouts.py), so the pelvis's turn rests on the hips
    # alone, which share it with their width (3 mm when the upper back rode on the pelvis)
    assert np.linalg.norm(width - (truth[left] - truth[right])) < 0.006
    assert np.nanmean(out.fit_error_mm) < 5.0


def test_calibration_lowers_the_fit_on_a_real_bvh_and_keeps_the_head_up(model, solved):
    """01_01_short.bvh: the fit to the calibrated keypoints is far below the uncalibrated fit (58 mm,
    mostly CMU's spine and neck nodes sitting 10-19 cm from SMPL's joints), and the head stays above
    the neck in every frame."""
    off, on = solved["off"], solved["on"]
    assert off.keypoint_offsets is None
    assert np.allclose(off.fit_error_mm, off.fit_error_mm_raw)
    assert on.keypoint_offsets.shape == (CMU.num_keypoints, 3)
    assert np.nanmean(on.fit_error_mm) < 15.0 < 0.5 * np.nanmean(off.fit_error_mm)
    assert np.isfinite(on.fit_error_mm_raw).all()
    joints = model.joints(on.rotmats, on.betas, on.trans).numpy()
    assert guard.head_above_neck(joints).all()
    # aim-only end points are never calibrated (they aim the leaves)
    assert np.all(on.keypoint_offsets[CMU.aim_only_mask()] == 0)
    assert any(n.startswith("calibration:") for n in on.notes)


def test_calibrate_off_is_the_strategy_alone(model, bvh, solved):
    """--calibrate off runs the strategy exactly as before calibration existed (the same call with
    no hunk around it; the foot step after it, contacts.py, is off here)."""
    opts = solver.SolveOptions(calibrate="off", lock_feet="off")
    denoised, _, _ = solver._denoise(bvh, opts.smooth, [])
    betas, _ = solver._shape(denoised, model, None)
    ctx = solver.SolveContext(denoised, model, opts, betas, [])
    rotmats, trans, _, _ = solver._run_strategy(ctx)
    alone = solve(bvh, model, calibrate="off", lock_feet="off")
    assert torch.equal(rotmats, alone.rotmats)
    assert torch.equal(trans, alone.trans)


def test_auto_rule(model):
    """auto: on for the CMU skeleton layout, off for SMPL-24 and pose-estimator layouts; model-made
    SMPL-24 keypoints calibrated anyway get offsets of ~0 (calibration changes nothing there)."""
    from conftest import smooth_pose

    assert wants_calibration("auto", CMU) and not wants_calibration("auto", SMPL24)
    assert wants_calibration("on", SMPL24) and not wants_calibration("off", CMU)
    with pytest.raises(InputError, match="calibrate must be one of"):
        wants_calibration("sometimes", CMU)
    rot = smooth_pose(60, seed=3)
    pts = SMPL24.generate(model, rot, torch.zeros(10), torch.zeros(60, 3)).numpy()
    prep = PreparedKeypoints(SMPL24, pts, np.ones(pts.shape[:2]), 30.0, "m", "y")
    assert solve(prep, model, smooth=0).keypoint_offsets is None  # auto
    on = solve(prep, model, smooth=0, calibrate="on")
    assert np.abs(on.keypoint_offsets).max() < 0.002
    assert np.nanmean(on.fit_error_mm) < 1.0


def test_parts(model):
    """A joint keypoint rides on its parent's segment; end points are not calibrated."""
    parts = keypoint_parts(model, CMU)
    k = {n: i for i, n in enumerate(CMU.keypoints)}
    assert parts[k["ltibia"]] == 1 and parts[k["lfemur"]] == 0 and parts[k["head"]] == 12
    assert parts[k["head_end"]] == -1 and parts[k["root"]] == -1


def test_refine_reuses_offsets(model, bvh, solved):
    """refine_existing(keypoint_offsets=...) aims at the calibrated points: from the calibrated
    solve's own output its calibrated fit stays (within 2%), reported against the same offsets."""
    on = solved["on"]
    ref = refine_existing(
        bvh,
        model,
        on.rotmats,
        on.betas,
        on.trans,
        passes=0,
        refine=3,
        keypoint_offsets=on.keypoint_offsets,
        lock_feet="off",  # as the solve it refines (the ``solved`` fixture): calibration's figures
    )
    assert np.array_equal(ref.keypoint_offsets, on.keypoint_offsets)
    assert np.nanmean(ref.fit_error_mm) <= 1.02 * np.nanmean(on.fit_error_mm)
    assert np.nanmean(ref.fit_error_mm_raw) > 3 * np.nanmean(ref.fit_error_mm)


@pytest.mark.parametrize(
    ("offsets", "names", "match"),
    [
        (np.zeros((5, 3)), None, r"expected \(38, 3\)"),
        (np.full((38, 3), np.nan), None, "NaN or infinite"),
        (np.full((38, 3), 2.0), None, "m long"),
        (np.array([["a"] * 3] * 38), None, "expected"),
        (np.zeros((38, 3)), np.array(["nose"] * 38), "not the 'cmu' layout"),
    ],
)
def test_hostile_offsets_are_refused(offsets, names, match):
    with pytest.raises(InputError, match=match):
        checked_offsets(offsets, CMU, names)


def _convert(*args):
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    run = subprocess.run(
        [sys.executable, "-m", "lsmplify_blender", "convert", *map(str, args), "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    return run.returncode, run.stdout, run.stderr


def test_cli_npz_round_trip_and_init(tmp_path):
    """convert writes keypoint_offsets (K, 3) float32 with the keypoint names, the per-keypoint and
    per-segment figures; --init reads the offsets back and aims at them; --calibrate off writes
    none; a damaged keypoint_offsets in --init is refused with a one-line error."""
    out = tmp_path / "a.npz"
    rc, stdout, err = _convert(BVH, "--out", out)
    assert rc == 0, err
    summary = json.loads(stdout)
    d = np.load(out)
    assert d["keypoint_offsets"].shape == (38, 3) and d["keypoint_offsets"].dtype == np.float32
    assert list(d["keypoint_names"]) == list(CMU.keypoints)
    assert d["fit_error_mm_per_keypoint"].shape == (38,)
    assert d["segment_direction_deg"].shape == d["segment_names"].shape
    assert summary["calibrated"] is True
    assert summary["fit_error_mm_mean"] < 15.0 < summary["fit_error_mm_mean_raw"]
    k = list(CMU.keypoints).index("ltibia")
    assert summary["fit_error_mm_per_keypoint"]["ltibia"] == pytest.approx(
        float(d["fit_error_mm_per_keypoint"][k]), abs=0.06
    )
    # --init reuses the offsets
    rc, stdout, err = _convert(
        BVH, "--out", tmp_path / "b.npz", "--init", out, "--passes", "0", "--refine", "2"
    )
    assert rc == 0, err
    again = json.loads(stdout)
    assert again["calibrated"] is True
    assert again["fit_error_mm_mean"] <= 1.02 * summary["fit_error_mm_mean"]
    assert np.allclose(np.load(tmp_path / "b.npz")["keypoint_offsets"], d["keypoint_offsets"])
    # --calibrate off: nothing calibrated, nothing written
    rc, stdout, err = _convert(BVH, "--out", tmp_path / "c.npz", "--calibrate", "off")
    assert rc == 0, err
    assert json.loads(stdout)["calibrated"] is False
    assert "keypoint_offsets" not in np.load(tmp_path / "c.npz").files
    # a hostile --init: offsets of the wrong size
    bad = tmp_path / "bad.npz"
    np.savez(
        bad,
        **{k: d[k] for k in d.files if k != "keypoint_offsets"},
        keypoint_offsets=np.ones((4, 3)),
    )
    rc, stdout, err = _convert(BVH, "--out", tmp_path / "d.npz", "--init", bad)
    assert rc == 2 and "keypoint_offsets" in err and "Traceback" not in err, err


def test_calibrated_rotations_path_matches_the_capture_directions(model, solved, bvh):
    """With the file's rotations (the default for a BVH), the calibrated solve's limb bones follow
    the captured bones (calibration keeps each bone parallel to the capture): thigh, shin, upper arm
    and forearm within 1 deg on average. Foot locking (contacts.py, after the solve) is off here: it
    moves the legs to plant the feet, which is its job, not calibration's."""
    on = solve(bvh, model, calibrate="on", lock_feet="off")
    joints = model.joints(on.rotmats, on.betas, on.trans).numpy()
    targets, _ = bvh.smpl_targets()
    pairs = [(1, 4), (4, 7), (16, 18), (18, 20), (2, 5), (5, 8), (17, 19), (19, 21)]
    err = guard.direction_errors_deg(joints, targets, bvh.smpl_measured(), pairs)
    assert np.nanmean(err, 0).max() < 1.0


def test_prepared_is_not_changed(model, bvh):
    """Calibration aims at shifted copies: the caller's keypoints stay as they were."""
    before = bvh.positions.copy()
    solve(dataclasses.replace(bvh), model, calibrate="on")
    assert np.array_equal(bvh.positions, before)


@pytest.mark.parametrize("fixture", ["131_01_short.bvh", "01_01_short.bvh"])
def test_calibrated_head_follows_the_captured_head_from_positions_alone(model, fixture):
    """From positions alone (rotations withheld), a calibrated solve aims SMPL's head along the
    captured head bone (head -> its End Site). The end point used to stay where it was while
    calibration raised the head target ~9 cm to SMPL's proportions, so it fell below the head and
    the head turned upside down (131_01: 130 deg off, head top under the chin)."""
    from lsmplify_blender.research.real_metrics import solved_body

    prepared = prepare(read_keypoints(FIXTURES / fixture), model)
    keys = list(prepared.layout.keypoints)
    head, head_end = keys.index("head"), keys.index("head_end")
    captured = prepared.positions[:, head_end] - prepared.positions[:, head]
    for mode in ("on", "off"):
        sol = solve(prepared, model, rotations="ignore", calibrate=mode, lock_feet="off")
        _, joints, landmarks = solved_body(model, sol.rotmats, sol.betas, sol.trans)
        solved_dir = landmarks["head_top"] - joints[:, 15]
        cos = (solved_dir * captured).sum(-1) / (
            np.linalg.norm(solved_dir, axis=-1) * np.linalg.norm(captured, axis=-1)
        )
        angle = np.degrees(np.arccos(np.clip(cos, -1, 1)))
        assert angle.mean() < 5.0 and np.percentile(angle, 95) < 12.0, (mode, angle.mean())
        # the head top above the neck in every frame (these takes stand upright)
        assert (landmarks["head_top"][:, 1] > joints[:, 12, 1]).all(), mode
