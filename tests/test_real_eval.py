"""The real-capture evaluation: its metrics on constructed cases with known answers, the capture
machinery on a real take (the rotation-transfer pose must follow the capture exactly), the whole
``eval --real`` on one small real take, and the head-above-neck check on each CMU BVH dialect."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FIXTURES, ROOT
from scipy.spatial.transform import Rotation

from lsmplify_blender.core import metrics
from lsmplify_blender.core.cli import main
from lsmplify_blender.core.errors import InputError
from lsmplify_blender.research import real_metrics as rm
from lsmplify_blender.research.real_eval import parse_solvers
from lsmplify_blender.research.real_takes import (
    canonical_cmu_names,
    data_root,
    held_out_takes,
    load_bvh_take,
)

FBX_BVH = FIXTURES / "cmu_fbx_bvh"


def _random_rotations(n, seed):
    return Rotation.random(n, random_state=seed).as_matrix()


# ---------------------------------------------------------------------------- metrics, known answers


def test_constant_rest_offset_gives_zero_orientation_error():
    captured = _random_rotations(50, 0)
    offset = _random_rotations(1, 1)[0]  # the two skeletons' rest frames of the bone differ
    solved = captured @ offset
    np.testing.assert_allclose(metrics.best_offset(captured, solved), offset, atol=1e-9)
    assert metrics.orientation_error_deg(captured, solved).max() < 1e-5


@pytest.mark.parametrize("twist_deg", [5.0, 20.0, 60.0])
def test_a_known_twist_gives_that_angle(twist_deg):
    """Frames alternately twisted by +a and -a about the bone: the best offset is the rest offset
    (by symmetry) and every frame is a degrees off."""
    captured = _random_rotations(40, 2)
    offset = _random_rotations(1, 3)[0]
    bone_axis = np.array([0.0, -1.0, 0.0])
    signs = np.where(np.arange(40) % 2, 1.0, -1.0)
    twist = Rotation.from_rotvec(np.radians(twist_deg) * signs[:, None] * bone_axis).as_matrix()
    solved = captured @ offset @ twist
    err = metrics.orientation_error_deg(captured, solved)
    np.testing.assert_allclose(err, twist_deg, atol=1e-6)


def test_a_change_of_direction_counts_but_a_constant_one_does_not():
    captured = _random_rotations(30, 4)
    bend = Rotation.from_rotvec([0.0, 0.0, np.radians(30.0)]).as_matrix()
    solved = captured.copy()
    solved[15:] = captured[15:] @ bend  # the second half bends 30 deg further
    err = metrics.orientation_error_deg(captured, solved)
    assert 14.0 < err.mean() < 16.0  # the offset splits the difference: 15 deg each side
    np.testing.assert_allclose(err, 15.0, atol=0.5)


def test_direction_error_of_a_known_bend():
    t = np.radians([0.0, 10.0, 45.0, 90.0, 135.0])
    captured = np.tile([0.0, -1.0, 0.0], (5, 1))
    solved = np.stack([np.sin(t), -np.cos(t), np.zeros(5)], -1) * 0.4  # length does not matter
    np.testing.assert_allclose(
        metrics.direction_error_deg(captured, solved), np.degrees(t), atol=1e-9
    )
    assert np.isnan(metrics.direction_error_deg(np.zeros((1, 3)), np.ones((1, 3))))[0]


def test_foot_contact_and_horizontal_speed():
    t = np.arange(60) / 30.0
    foot = np.stack(
        [0.5 * t, np.where(t < 1.0, 0.0, 0.2), np.zeros(60)], -1
    )  # slides at 0.5 m/s, then lifts
    contact = metrics.contact_frames(foot[:, 1])
    assert contact[:30].all() and not contact[30:].any()
    np.testing.assert_allclose(metrics.horizontal_speed(foot, 30.0), 0.5, atol=1e-9)


# ---------------------------------------------------------------------------- the capture side


def test_canonical_names_of_both_cmu_dialects():
    chest2 = [
        "Hips",
        "LeftHip",
        "LeftKnee",
        "LeftToe_End",
        "Chest2",
        "lowerneck",
        "Neck",
        "Head",
        "Head_End",
        "LeftCollar",
        "lhand",
        "LFingers",
    ]
    assert canonical_cmu_names(chest2) == [
        "root",
        "lfemur",
        "ltibia",
        "LeftToe_End",
        "thorax",
        "lowerneck",
        "upperneck",
        "head",
        "head_end",
        "lclavicle",
        "lhand",
        "lfingers",
    ]
    cgspeed = [
        "Hips",
        "LeftUpLeg",
        "LeftToeBase",
        "LeftToeBase_end",
        "LeftToeBase_end_End",
        "Spine1",
        "Neck",
        "Neck1",
        "Head",
        "Head_end",
        "LeftFingerBase",
        "LeftHandIndex1",
    ]
    assert canonical_cmu_names(cgspeed) == [
        "root",
        "lfemur",
        "ltoes",
        "ltoes_end",
        "LeftToeBase_end_End",
        "thorax",
        "lowerneck",
        "upperneck",
        "head",
        "head_end",
        "lhand",
        "lfingers",
    ]


@pytest.mark.parametrize("path", [FIXTURES / "131_01_short.bvh", FBX_BVH / "07_01_cmu.bvh"])
def test_rotation_transfer_pose_follows_the_capture(model, path):
    """The training data's rotation transfer copies each driving node's world rotation (times a
    constant calibration): measured against the capture it must be 0 deg off on every segment
    it drives, and its limbs must point along the captured ones. This pins the frames of the
    captured rotations, the solved world rotations and the end points to one world."""
    from lsmplify_blender.core.network.sources import retarget_source

    take = load_bvh_take(path, "cmu_bvh", frames=40)
    rest0 = model.rest_joints(torch.zeros(10))[0].double().numpy()
    local, pelvis = retarget_source(take.capture.source, rest0)
    g_rot, joints, landmarks = rm.solved_body(
        model, torch.as_tensor(local), torch.zeros(10), torch.as_tensor(pelvis)
    )
    orient = rm.orientation_errors(take.capture, g_rot, slice(0, 40))
    assert set(orient) == set(rm.ORIENT_NODES["cmu"])
    for seg, err in orient.items():
        if not seg.endswith(
            "_hand"
        ):  # the transfer drives SMPL's wrist by CMU's wrist bone, not its hand
            assert err.max() < 0.05, (seg, err.max())
    direc = rm.direction_errors(take.capture, joints, landmarks, slice(0, 40))
    assert {"neck", "head", "torso", "hip_line", "shoulder_line", "left_hand", "right_foot"} <= set(
        direc
    )
    for seg in ("left_thigh", "right_shin", "left_upper_arm", "right_forearm", "left_foot"):
        assert direc[seg].max() < 0.05, (seg, direc[seg].max())


def test_held_out_takes_come_from_the_readers(tmp_path):
    """The FBX-derived fixtures through the BVH reader: positions as convert reads them, capture
    rotations from the same FK, every frame at ~30 fps."""
    takes = held_out_takes(tmp_path, kinds=("cmu_fbx_bvh",), clips=2, frames=25)
    assert [t.name for t in takes] == ["07_01_cmu", "08_02_cmu"]
    for t in takes:
        assert t.seq.positions.shape[0] == 25 and abs(t.seq.fps - 30.0) < 0.1
        assert t.capture.rot.shape == (25, t.seq.positions.shape[1], 3, 3)
        for node in ("lfemur", "head_end", "lfingers", "ltoes", "lowerneck"):
            assert node in t.capture.names
    # a data root without cmu_raw: its takes are named as missing, the others still run
    missing = []
    takes = held_out_takes(
        tmp_path, kinds=("cmu_bvh", "cmu_fbx_bvh"), clips=1, frames=5, missing=missing
    )
    assert [t.kind for t in takes] == ["cmu_fbx_bvh"] and missing == [
        str(tmp_path / "cmu_raw" / "131_03.bvh")
    ]
    with pytest.raises(InputError, match="no held-out takes found"):
        held_out_takes(tmp_path, kinds=("cmu_amc",))


def test_bad_options_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="unknown solver 'magic'"):
        parse_solvers(["magic"])
    with pytest.raises(InputError, match="key=value"):
        parse_solvers(["network:refine"])
    with pytest.raises(InputError, match="'speed' in 'network:speed=2' is not an option"):
        parse_solvers(["network:speed=2"])
    assert parse_solvers(["network:refine=5:smooth=0.05"])[0].options == {
        "refine": 5,
        "smooth": 0.05,
    }
    monkeypatch.delenv("LSMPLIFY_DATA", raising=False)
    with pytest.raises(InputError, match="--data DIR"):
        data_root(None)
    with pytest.raises(InputError, match="unknown source kind"):
        held_out_takes(tmp_path, kinds=("fbx",))
    code = main(["eval", "--real", "--data", str(tmp_path / "missing")])
    assert code == 2


# ---------------------------------------------------------------------------- end to end


def test_eval_real_on_one_small_real_take(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "real.md"
    code = main(
        [
            "eval",
            "--real",
            "--data",
            str(tmp_path),
            "--sources",
            "cmu_fbx_bvh",
            "--clips",
            "1",
            "--frames",
            "20",
            "--optimize-frames",
            "3",
            "--solvers",
            "analytic,network",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    stdout, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["takes"] == ["cmu_fbx_bvh/07_01_cmu"] and summary["solvers"] == [
        "analytic",
        "network",
    ]
    for png in summary["plots"]:
        assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = out.read_text()
    assert "## Real captures" in text and "| cmu_fbx_bvh | network | 20 |" in text
    for solver in ("analytic", "network"):
        r = summary["results"][solver]["cmu_fbx_bvh"]
        assert r["frames"] == 20
        assert set(r["orientation"]) == set(rm.ORIENT_NODES["cmu"])
        assert {"neck", "head", "left_hand", "right_foot", "torso"} <= set(r["direction"])
        assert 0 < r["fit"] < 200 and r["mpve"] > 0 and r["skate_source_mm_s"] is not None
    # analytic IK puts SMPL's neck and head joints on the captured upperneck and head nodes
    assert summary["results"]["analytic"]["cmu_fbx_bvh"]["direction"]["neck"]["mean"] < 1.0
    plug = summary["plug_in"]["cmu_fbx_bvh"]
    assert set(plug) == {"own", "perturbed"}
    assert (
        plug["perturbed"]["fit_before"] > plug["own"]["fit_before"]
    )  # 10 deg per joint moves the keypoints


# ---------------------------------------------------------------------------- head above the neck

DIALECTS = [
    ROOT
    / "lsmplify_blender"
    / "core"
    / "data"
    / "demo"
    / "cmu_131_01.bvh",  # LeftHip/Chest2 dialect
    FIXTURES / "01_01_short.bvh",  # the same dialect, another subject
    FBX_BVH / "07_01_cmu.bvh",
]  # cgspeed dialect (LeftUpLeg/Spine1/Neck1), exported from the FBX rig


def _default_solver() -> str:
    from lsmplify_blender.core.cli import _parser

    return _parser().parse_args(["convert", "in.bvh", "--out", "out.npz"]).solver


@pytest.mark.parametrize("path", DIALECTS, ids=lambda p: p.name)
def test_default_solver_keeps_the_head_above_the_neck(model, path):
    """Every frame: the solved neck (SMPL neck -> head joint) within 45 deg of the captured neck
    (upperneck -> head node), and the head joint above the plane through the neck joint whose
    normal is the captured torso direction (mid-hip -> neck base)."""
    from lsmplify_blender.core.prepare import prepare
    from lsmplify_blender.core.solver import solve

    take = load_bvh_take(
        path, "cmu_bvh", frames=None, every_frame=True
    )  # the file as convert reads it
    prep = prepare(take.seq, model)
    sol = solve(prep, model, solver=_default_solver())
    _, joints, landmarks = rm.solved_body(model, sol.rotmats, sol.betas, sol.trans)
    n = prep.num_frames
    neck = rm.direction_errors(take.capture, joints, landmarks, slice(0, n))["neck"]
    assert neck.max() < rm.HEAD_FOLD_DEG, (
        f"neck direction up to {neck.max():.0f} deg off in {(neck > 45).sum()} frames"
    )
    up = rm.capture_point(take.capture, "neck_base", slice(0, n)) - rm.capture_point(
        take.capture, "mid_hip", slice(0, n)
    )
    above = ((joints[:, 15] - joints[:, 12]) * up).sum(-1)
    assert (above > 0).all(), f"head below the neck's plane in {(above <= 0).sum()} of {n} frames"


def test_fbx_rig_neck_follows_the_upperneck_bone(model):
    """CMU's upperneck is SMPL's neck (core/layouts.py, CMU's neck): on the FBX rig's dance 49_08,
    where the lower neck bends, SMPL's neck turns with the captured upperneck bone (it was aimed
    along the lowerneck -> head chord: eval --real 9.6 / 15.9 deg mean / p95 on this take).
    CMU take 49_08, mocap.cs.cmu.edu (fixtures/cmu_fbx_bvh/CREDIT.txt)."""
    from lsmplify_blender.core.prepare import prepare
    from lsmplify_blender.core.solver import solve

    take = load_bvh_take(FBX_BVH / "49_08_cmu.bvh", "cmu_fbx_bvh", frames=60)
    prep = prepare(take.seq, model)
    sol = solve(prep, model, solver="analytic")
    g_rot, joints, landmarks = rm.solved_body(model, sol.rotmats, sol.betas, sol.trans)
    frames = slice(0, prep.num_frames)
    neck = rm.orientation_errors(take.capture, g_rot, frames)["neck"]
    assert neck.mean() < 1.0 and np.percentile(neck, 95) < 2.0, (neck.mean(), neck.max())
    assert rm.direction_errors(take.capture, joints, landmarks, frames)["neck"].mean() < 1.0


def test_pose_error_on_a_vertex_subset_matches_the_full_mesh(model):
    """The pose MPVE skins every 8th vertex: the same mean as the whole mesh through smplx (< 1%)."""
    from conftest import random_pose

    from lsmplify_blender.core.metrics import mpve

    truth, solved = random_pose(12, 0), random_pose(12, 1)
    betas = torch.linspace(-1, 1, 10)
    full = mpve(model.vertices(solved, betas), model.vertices(truth, betas), reduce=False)
    sub = rm.PoseError(model, truth)(solved, betas)
    np.testing.assert_allclose(sub, full, rtol=0.01)
    assert rm.PoseError(model, truth)(truth, betas).max() < 1e-3


def test_gate_names_every_missed_target():
    from lsmplify_blender.research.real_gate import gate

    def row(neck, hand, mpve, folded=0):
        def seg(m, p):
            return {"mean": m, "p95": p}

        return dict(
            orientation={"neck": seg(neck, 2 * neck), "left_thigh": seg(2.0, 4.0)},
            direction={
                "neck": seg(neck, neck),
                "left_hand": seg(hand, hand),
                "left_thigh": seg(4.0, 6.0),
            },
            mpve=mpve,
            head_folded_frames=folded,
        )

    summary = {
        "analytic": {"cmu_bvh": row(1.0, 7.0, 80.0)},
        "network": {"cmu_bvh": row(96.0, 7.2, 120.0, folded=120)},
    }
    plug = {
        "cmu_bvh": {
            "own": dict(fit_before=45.0, fit_after=600.0),
            "perturbed": dict(mpve_before=200.0, mpve_after=150.0),
        }
    }
    g = gate(summary, plug, "network")["cmu_bvh"]
    assert not g["passes"]
    assert g["targets"]["orientation_positions"] == ["neck 96.0"]
    assert g["targets"]["direction"] == ["neck 96.0"]  # the hand's 7.2 is within its 8-deg target
    assert g["targets"]["folded_head_frames"] == ["120"]
    assert g["worse_than_analytic"]["orientation"] == ["neck 96.0 vs 1.0"]
    assert g["worse_than_analytic"]["mpve"] == ["120.0 vs 80.0 mm"]
    assert g["plug_in"] == ["fit from its own output 45.0 -> 600.0 mm"]
    assert gate(summary, {}, "analytic")["cmu_bvh"]["passes"]


def test_the_core_runs_without_the_research_package():
    """The add-on zip leaves lsmplify_blender/research out: importing the core (and the CLI) must not
    load it; only `eval` imports it, lazily."""
    import subprocess
    import sys

    code = (
        "import sys, pkgutil, importlib, lsmplify_blender.core as c\n"
        "for m in pkgutil.walk_packages(c.__path__, 'lsmplify_blender.core.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = [m for m in sys.modules if m.startswith('lsmplify_blender.research')]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
