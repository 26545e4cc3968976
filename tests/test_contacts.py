"""Foot contact, ground and foot locking (core/contacts.py) on real CMU takes (fixtures cut from CMU
takes, see fixtures/CREDITS.md): contacts follow the stance phases of a walk, locked feet skate
less than unlocked ones, no vertex of the full mesh ends up more than 1 cm below the ground,
``lock_feet='off'`` leaves the solve exactly as it was, a given ground is honoured, a bad
``--ground`` is a clear CLI error, and the .npz keys round-trip."""

import json

import numpy as np
import pytest
import torch
from conftest import FIXTURES, smooth_pose

from lsmplify_blender.core import cli, contacts, solver
from lsmplify_blender.core.body_model import SMPL_JOINT_NAMES
from lsmplify_blender.core.errors import InputError
from lsmplify_blender.core.formats import read_keypoints
from lsmplify_blender.core.keypoints import KeypointSequence
from lsmplify_blender.core.metrics import horizontal_speed
from lsmplify_blender.core.prepare import prepare
from lsmplify_blender.core.solver import SolveOptions, solve

WALK = FIXTURES / "131_01_short.bvh"  # CMU subject 131, a walk: both feet have stance phases
JUMPS = FIXTURES / "01_01_short.bvh"  # CMU subject 01: standing, then jumps
TOLERANCE = contacts.PENETRATION_TOLERANCE


@pytest.fixture(scope="module")
def walk(model):
    return prepare(read_keypoints(WALK), model)


@pytest.fixture(scope="module")
def walk_solved(model, walk):
    """The walk solved with the feet locked and with locking off (the solve is the same)."""
    return {mode: solve(walk, model, lock_feet=mode) for mode in ("on", "off")}


def _lowest_full_mesh(model, sol) -> np.ndarray:
    return model.vertices(sol.rotmats, sol.betas, sol.trans)[..., 1].min(1).values.numpy()


def test_contacts_follow_the_stance_phases_of_a_walk(walk):
    """Contact while the captured ankle is still, never while it swings, and both feet alternate."""
    c = contacts.detect_contacts(walk)
    assert c.foot.shape == (walk.num_frames, 2)
    for f, name in enumerate(("lfoot", "rfoot")):
        ankle = walk.positions[:, walk.layout.keypoints.index(name)]
        speed = contacts.point_speed(ankle, walk.fps, 4)
        assert c.foot[:, f].sum() > 0.3 * walk.num_frames, f"{name}: too few stance frames"
        assert speed[c.foot[:, f]].mean() < 0.15, f"{name}: contact frames where the ankle moves"
        assert not c.foot[speed > 1.0, f].any(), f"{name}: a swing frame was called a contact"
        assert (~c.foot[:, f]).sum() > 0.1 * walk.num_frames, f"{name}: the swing was missed"
    # in a walk the feet take turns: some frames have only the left foot down, some only the right
    assert (c.foot[:, 0] & ~c.foot[:, 1]).any() and (c.foot[:, 1] & ~c.foot[:, 0]).any()


def test_hysteresis_and_minimum_duration():
    enter = np.array([0, 1, 0, 0, 0, 0, 1, 0, 0, 0], bool)[:, None]
    leave = np.array([1, 0, 0, 0, 1, 0, 0, 0, 0, 1], bool)[:, None]
    state = contacts.hysteresis(enter, leave)[:, 0]
    assert state.tolist() == [False, True, True, True, False, False, True, True, True, False]
    kept = contacts.drop_short_runs(np.array([[1], [1], [0], [1], [1], [1], [0]], bool), 3)
    assert kept[:, 0].tolist() == [False, False, False, True, True, True, False]


def test_locked_feet_skate_less_and_stay_above_the_ground(model, walk, walk_solved):
    on, off = walk_solved["on"], walk_solved["off"]
    assert on.feet["lock_feet"] == "on" and off.feet["lock_feet"] == "off"
    assert on.feet["skate_mm_s"] < 0.5 * off.feet["skate_mm_s"]
    # measured here: the planted point (ankle while only the heel is down, ball of the foot while
    # only the toe is, both while both are) of each foot, over that foot's contact frames
    measured = {
        mode: _planted_speed_mm_s(model, walk, sol) for mode, sol in (("on", on), ("off", off))
    }
    assert measured["on"] < 0.5 * measured["off"]
    assert measured["on"] == pytest.approx(on.feet["skate_mm_s"], abs=0.1)
    # the whole mesh (every vertex, not the hull subset the step checks) above ground - 1 cm
    low = _lowest_full_mesh(model, on)
    assert low.min() >= on.ground_height - TOLERANCE
    assert on.feet["penetration_frames"] == 0
    # planted: a contact foot below the ground is lifted onto it, one above it is left there
    hull = contacts.body_hull(model, on.betas)
    sole_on = contacts.foot_lowest(hull, contacts.Posed(model, on.betas, on.rotmats, on.trans))
    sole_off = contacts.foot_lowest(hull, contacts.Posed(model, off.betas, off.rotmats, off.trans))
    expected = np.maximum(sole_off, on.ground_height)[on.contacts]
    assert np.median(np.abs(sole_on[on.contacts] - expected)) < 0.003
    # (whether any foot needed lifting depends on the solve; test_a_given_ground_is_honoured forces it)


def test_locking_keeps_the_fit_and_moves_only_the_legs(walk_solved):
    on, off = walk_solved["on"], walk_solved["off"]
    assert np.nanmean(on.fit_error_mm) < np.nanmean(off.fit_error_mm) + 3.0
    legs = {j for leg in contacts.LEG_JOINTS for j in leg[:3]}
    others = [j for j in range(24) if j not in legs]
    assert torch.equal(on.rotmats[:, others], off.rotmats[:, others])

    # no pop: the planted legs turn no faster from frame to frame than the solve's own legs do
    def max_step(rot):
        d = rot[1:, sorted(legs)].transpose(-1, -2) @ rot[:-1, sorted(legs)]
        return torch.arccos(((d.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)).max()

    assert max_step(on.rotmats) < max_step(off.rotmats) + np.radians(5.0)


def test_lock_feet_off_returns_the_solve_untouched(model, walk, monkeypatch):
    """The motion that reaches the foot step is the motion that comes out (a spy on the real step)."""
    seen = {}
    real = solver.plant_feet

    def spy(prepared, model_, betas, rotmats, trans, mode, ground, **kwargs):
        seen["in"] = (rotmats.clone(), trans.clone())
        return real(prepared, model_, betas, rotmats, trans, mode, ground, **kwargs)

    monkeypatch.setattr(solver, "plant_feet", spy)
    sol = solve(walk, model, lock_feet="off")
    assert torch.equal(sol.rotmats, seen["in"][0]) and torch.equal(sol.trans, seen["in"][1])
    assert sol.contacts.shape == (walk.num_frames, 2) and np.isfinite(sol.ground_height)
    assert not any(n.startswith("feet:") for n in sol.notes)


def test_auto_locks_skeleton_captures_only(model, walk):
    assert contacts.lock_feet_enabled("auto", walk)  # a CMU BVH skeleton
    pose = smooth_pose(30, seed=3, scale=0.3)
    joints = model.joints(pose, torch.zeros(model.num_betas)).numpy()
    seq = KeypointSequence(positions=joints, names=list(SMPL_JOINT_NAMES), fps=30.0)
    generated = prepare(seq, model)
    assert generated.layout.name == "smpl24"
    assert not contacts.lock_feet_enabled("auto", generated)
    assert contacts.lock_feet_enabled("on", generated)


def test_a_given_ground_is_honoured(model):
    prep = prepare(read_keypoints(JUMPS), model)
    base = solve(prep, model, lock_feet="off")
    ground = base.ground_height + 0.03  # 3 cm above where the feet stand: they must come up
    sol = solve(prep, model, lock_feet="on", ground=ground)
    assert sol.ground_height == ground
    assert _lowest_full_mesh(model, sol).min() >= ground - TOLERANCE
    assert _lowest_full_mesh(model, base).min() < ground - TOLERANCE  # it had to be fixed
    assert sol.feet["penetration_frames"] == 0


def test_bad_ground_is_a_clear_error(model, tmp_path, capsys):
    for bad in ("abc", "nan", "1e9"):
        with pytest.raises(SystemExit) as exc:
            cli.main(["convert", str(WALK), "--out", str(tmp_path / "x.npz"), "--ground", bad])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert "--ground" in err and "Traceback" not in err
    with pytest.raises(InputError, match="ground"):
        SolveOptions(ground=float("inf")).check()
    with pytest.raises(InputError, match="lock_feet"):
        SolveOptions(lock_feet="sometimes").check()
    assert not (tmp_path / "x.npz").exists()


def test_npz_keys_round_trip(model, tmp_path, capsys):
    from lsmplify_blender.core.formats.amass import read_smpl_npz

    out = tmp_path / "walk.npz"
    assert cli.main(["convert", str(WALK), "--out", str(out), "--ground", "0.01", "--quiet"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    with np.load(out) as f:
        assert f["contacts"].dtype == bool and f["contacts"].shape == (line["frames"], 2)
        assert float(f["ground_height"]) == pytest.approx(0.01)
        poses = f["poses"]
    assert line["feet"]["lock_feet"] == "on" and line["feet"]["ground_height"] == 0.01
    assert line["feet"]["contact_frames"] == f_counts(out)
    assert line["feet"]["penetration_frames"] == 0
    assert np.array_equal(read_smpl_npz(out)["poses"], poses)  # the reader still takes the file


def f_counts(path) -> list[int]:
    with np.load(path) as f:
        return [int(v) for v in f["contacts"].sum(0)]


def test_hull_subset_finds_the_lowest_vertex(model, walk_solved):
    """The hull subset + reach screening against the full mesh, in every frame near the ground."""
    sol = walk_solved["off"]
    below = sol.ground_height + 0.05
    low = contacts.lowest_vertex(model, sol.rotmats, sol.betas, sol.trans, below)
    full = _lowest_full_mesh(model, sol)
    near = full < below - 0.003
    assert near.sum() > 10
    assert np.abs(low[near] - full[near]).max() < 0.002  # the skinning is not rigid: mm apart
    assert (low[~near] >= full[~near] - 0.002).all()  # elsewhere never below the truth


def test_heights_are_the_full_skinning_height(model, walk_solved):
    """``Posed.heights`` skins only the Y row: the same heights as the body model's whole
    forward pass (pose correctives and translation included), in every frame."""
    sol = walk_solved["off"]
    ids = np.array([0, 3216, 3365, 6617, 6766])  # a few vertices over the body (feet included)
    posed = contacts.Posed(model, sol.betas, sol.rotmats, sol.trans)
    got = posed.heights(ids).double().numpy()
    full = model.vertices(sol.rotmats, sol.betas, sol.trans)[:, ids, 1].double().numpy()
    assert np.abs(got - full).max() < 1e-5
    frames = np.arange(0, sol.rotmats.shape[0], 7)
    assert np.abs(posed.heights(ids, frames).double().numpy() - full[frames]).max() < 1e-5


def test_two_bone_ik_reaches_and_keeps_the_bones(model, walk_solved):
    sol = walk_solved["off"]
    j = model.joints(sol.rotmats, sol.betas, sol.trans)
    hip, knee, ankle, ball = (j[:, idx] for idx in (1, 4, 7, 10))
    target = ankle + torch.tensor([0.02, 0.03, -0.02], dtype=j.dtype)
    knee_new, ankle_new = contacts.two_bone_ik(hip, knee, ankle, target, ball - ankle)
    assert torch.allclose(ankle_new, target, atol=1e-5)
    for a, b, c, d in ((hip, knee_new, hip, knee), (knee_new, ankle_new, knee, ankle)):
        assert torch.allclose((b - a).norm(dim=-1), (d - c).norm(dim=-1), atol=1e-5)
    # the leg solved by leg_ik puts the ankle there too
    disp = np.zeros((j.shape[0], 2, 2, 3))
    disp[:, 0, :] = [0.02, 0.03, -0.02]
    rot = contacts.leg_ik(contacts.Posed(model, sol.betas, sol.rotmats, sol.trans), disp)
    moved = model.joints(rot, sol.betas, sol.trans)
    assert torch.allclose(moved[:, 7], target, atol=1e-4)
    assert torch.allclose(moved[:, 10], ball + target - ankle, atol=1e-4)
    assert torch.equal(moved[:, 8], j[:, 8])  # the other leg untouched


def test_eval_real_feet_columns(walk_solved):
    """``eval --real``'s foot columns come from the solution's own figures, pooled by frames."""
    from lsmplify_blender.research import real_eval
    from lsmplify_blender.research import real_metrics as rm

    rows = []
    for sol in walk_solved.values():
        r = rm.TakeResult(frames=int(sol.rotmats.shape[0]), seconds=sol.seconds)
        r.extra.update(rm.feet_figures(sol))
        rows.append(r)
    assert rows[0].extra["skate_mm_s"] == walk_solved["on"].feet["skate_mm_s"]
    pooled = rm.feet_summary(rows, real_eval._weighted_mean)
    on, off = walk_solved["on"].feet, walk_solved["off"].feet
    assert pooled["planted_skate_mm_s"] == pytest.approx((on["skate_mm_s"] + off["skate_mm_s"]) / 2)
    assert pooled["below_ground_pct"] == pytest.approx(
        (on["penetration_pct"] + off["penetration_pct"]) / 2
    )


@pytest.fixture(scope="module")
def walk_refined(model, walk, walk_solved):
    """The plug-in mode (``refine_existing``) from the unlocked solve turned 5 deg per joint (a
    motion some other tool made), feet locked by default ('auto': a CMU skeleton) and off."""
    from lsmplify_blender.research.real_eval import _perturb

    base = walk_solved["off"]
    given = _perturb(base.rotmats, 5.0, seed=1)
    return {
        mode: solver.refine_existing(
            walk,
            model,
            given,
            base.betas,
            base.trans,
            keypoint_offsets=base.keypoint_offsets,
            lock_feet=mode,
        )
        for mode in ("auto", "off")
    }


def _planted_speed_mm_s(model, prepared, sol) -> float:
    """Horizontal speed of each foot's planted point (ankle while only the heel is down, ball while
    only the toe is, their mean while both are) over its contact frames, mm/s, measured here."""
    det = contacts.detect_contacts(prepared)
    joints = model.joints(sol.rotmats, sol.betas, sol.trans).numpy()
    speeds = []
    for f in (0, 1):
        heel, toe = det.heel[:, f], det.toe[:, f]
        v_ankle = horizontal_speed(joints[:, 7 + f], prepared.fps)
        v_ball = horizontal_speed(joints[:, 10 + f], prepared.fps)
        v = np.where(heel & toe, (v_ankle + v_ball) / 2, np.where(heel, v_ankle, v_ball))
        speeds.append(v[heel | toe].mean())
    return float(np.mean(speeds)) * 1000


def test_refine_locks_feet_like_a_solve(model, walk, walk_refined):
    """Plug-in mode plants the feet as a solve does: the planted foot moves slower than the
    capture's own heel and toe points in the same frames, and no vertex of the full mesh is more
    than 1 cm below the ground; with lock_feet 'off' the feet are left as refined."""
    on, off = walk_refined["auto"], walk_refined["off"]
    assert on.feet["lock_feet"] == "on" and off.feet["lock_feet"] == "off"
    assert any(n.startswith("feet:") for n in on.notes)
    assert not any(n.startswith("feet:") for n in off.notes)
    speed_on, speed_off = (_planted_speed_mm_s(model, walk, s) for s in (on, off))
    assert speed_on == pytest.approx(on.feet["skate_mm_s"], abs=0.1)
    assert speed_on < on.feet["skate_source_mm_s"]  # below the capture's own
    assert speed_on < 0.5 * speed_off
    assert _lowest_full_mesh(model, on).min() >= on.ground_height - TOLERANCE
    assert on.feet["penetration_frames"] == 0
    assert on.contacts.shape == (walk.num_frames, 2) and on.contacts.any()
    # only the legs move: every other joint as refined
    legs = {j for leg in contacts.LEG_JOINTS for j in leg[:3]}
    others = [j for j in range(24) if j not in legs]
    assert torch.equal(on.rotmats[:, others], off.rotmats[:, others])


def test_init_honours_lock_feet(model, tmp_path, capsys):
    """``convert --init`` (the plug-in mode on the CLI) locks the feet by default on a CMU take,
    leaves them with --lock-feet off, and writes the contacts and ground either way."""
    first = tmp_path / "walk.npz"
    assert (
        cli.main(["convert", str(WALK), "--out", str(first), "--lock-feet", "off", "--quiet"]) == 0
    )
    capsys.readouterr()
    lines = {}
    for mode in ("auto", "off"):
        out = tmp_path / f"refined_{mode}.npz"
        args = ["convert", str(WALK), "--init", str(first), "--out", str(out), "--quiet"]
        assert cli.main(args + ["--lock-feet", mode]) == 0
        lines[mode] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        with np.load(out) as f:
            assert f["contacts"].shape == (lines[mode]["frames"], 2)
            assert np.isfinite(float(f["ground_height"]))
    assert lines["auto"]["feet"]["lock_feet"] == "on"
    assert lines["off"]["feet"]["lock_feet"] == "off"
    assert lines["auto"]["feet"]["skate_mm_s"] < lines["off"]["feet"]["skate_mm_s"]
    assert lines["auto"]["feet"]["penetration_frames"] == 0
