"""The CLI on real mocap files: output keys, the JSON summary, and clear errors."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FIXTURES, ROOT, smooth_pose

from lsmplify_blender.core.body_model import rotmats_from_axis_angle
from lsmplify_blender.core.cli import main
from lsmplify_blender.core.layouts import BODY25, SMPL24


def _run(capsys, *args):
    code = main(["convert", *map(str, args), "--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", ["01_01_short.bvh", "01_01_short.amc", "131_01_short.bvh"])
def test_convert_real_cmu_files(tmp_path, capsys, name, model):
    out_path = tmp_path / "out.npz"
    # positions only: the file's bone rotations trade joint position for direction (tests/test_solver_rotations.py)
    code, out, err = _run(
        capsys, FIXTURES / name, "--out", out_path, "--solver", "analytic", "--rotations", "ignore"
    )
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["layout"] == "cmu" and summary["units"] == "cmu" and summary["up"] == "y"
    assert summary["fps"] == 120.0 and summary["frames"] >= 199
    # a real CMU skeleton is not the model's: the fit cannot be exact, but must be close
    assert summary["fit_error_mm_mean"] < 60
    z = np.load(out_path)
    t = summary["frames"]
    assert z["poses"].shape == (t, 72) and z["trans"].shape == (t, 3) and z["betas"].shape == (10,)
    assert z["fit_error_mm"].shape == (t,) and float(z["mocap_framerate"]) == 120.0
    assert np.isfinite(z["poses"]).all() and np.abs(z["betas"]).max() <= 3.6
    # the pelvis follows the capture: it travels with the take's root
    assert np.ptp(z["trans"], axis=0).max() > 0.05


def test_convert_npz_round_trip_reproduces_the_motion(tmp_path, capsys, model):
    rot = smooth_pose(50, seed=2, scale=0.5)
    rot[:, 0] = torch.eye(3)  # upright, so the up axis can be detected
    betas = torch.tensor([0.5, -1.0, 0.3, 0, 0, 0, 0, 0, 0, 0])
    trans = torch.linspace(0, 1, 50)[:, None] * torch.tensor([1.0, 0.0, 0.5])
    kp = SMPL24.generate(model, rot, betas, trans).numpy() * 1000  # millimetres, Z up
    kp = np.stack([kp[..., 0], -kp[..., 2], kp[..., 1]], -1)
    src = tmp_path / "clip.npz"
    np.savez(src, keypoints=kp, joint_names=np.array(SMPL24.keypoints), fps=50)
    out_path = tmp_path / "smpl.npz"
    code, out, err = _run(capsys, src, "--out", out_path, "--solver", "analytic")
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["units"], summary["up"], summary["fps"]) == ("mm", "z", 50.0)
    assert summary["fit_error_mm_mean"] < 0.5
    z = np.load(out_path)
    again = model.joints(
        rotmats_from_axis_angle(torch.as_tensor(z["poses"])),
        torch.as_tensor(z["betas"]),
        torch.as_tensor(z["trans"]),
    )
    truth = model.joints(rot, betas, trans)
    assert (again - truth).norm(dim=-1).max() < 2e-3


def test_convert_body25_npy_with_explicit_options(tmp_path, capsys, model):
    rot = smooth_pose(30, seed=5)
    kp = BODY25.generate(model, rot, torch.zeros(10)).numpy()
    src = tmp_path / "body25.npy"
    np.save(src, kp)
    code, out, err = _run(
        capsys,
        src,
        "--out",
        tmp_path / "o.npz",
        "--layout",
        "body25",
        "--units",
        "m",
        "--up",
        "y",
        "--fps",
        "25",
        "--solver",
        "network",
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["layout"] == "body25" and summary["fps"] == 25.0
    assert summary["solver"] == "network"  # BODY_25 gives 13 SMPL joints: enough for the network
    assert summary["fit_error_mm_mean"] < 15


def test_bad_input_exits_2_with_a_clear_message(tmp_path, capsys):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((5, 19, 3)))
    code, out, err = _run(capsys, bad, "--out", tmp_path / "o.npz")
    assert code == 2 and out == ""
    assert "layout" in err and "Traceback" not in err
    code, out, err = _run(capsys, tmp_path / "missing.bvh", "--out", tmp_path / "o.npz")
    assert code == 2 and (
        "not found" in err.lower() or "no such" in err.lower() or "does not exist" in err.lower()
    )
    assert not (tmp_path / "o.npz").exists()


def test_module_entry_point_prints_one_json_line(tmp_path):
    out_path = tmp_path / "demo.npz"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "lsmplify_blender",
            "convert",
            str(FIXTURES / "131_01_short.bvh"),
            "--out",
            str(out_path),
            "--solver",
            "analytic",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["frames"] == 200
    assert "layout: CMU" in res.stderr and "units: cmu" in res.stderr
    assert out_path.exists()


def test_network_solver_runs_on_smpl24_keypoints(tmp_path, capsys, model):
    rot = smooth_pose(60, seed=4, scale=0.5)
    rot[:, 0] = torch.eye(3)
    kp = SMPL24.generate(model, rot, torch.zeros(10)).numpy()
    src = tmp_path / "smpl24.npz"
    np.savez(src, keypoints=kp, joint_names=np.array(SMPL24.keypoints), fps=30, units="m", up="y")
    code, out, err = _run(capsys, src, "--out", tmp_path / "o.npz", "--solver", "network")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["solver"] == "network" and summary["fit_error_mm_mean"] < 1.0
    # sequential chunks of 8 frames: the same exact joints, the notes say how it ran
    code = main(
        [
            "convert",
            str(src),
            "--out",
            str(tmp_path / "s.npz"),
            "--solver",
            "network",
            "--chunk",
            "8",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0 and "sequential in chunks of 8 frames, 8 chunk anchors" in err
    assert json.loads(out.strip().splitlines()[-1])["fit_error_mm_mean"] < 1.0
    code, out, err = _run(
        capsys, src, "--out", tmp_path / "z.npz", "--solver", "network", "--chunk", "0"
    )
    assert code == 2 and "at least 1 frame" in err and not (tmp_path / "z.npz").exists()


def test_smooth_option_auto_number_and_refusals(tmp_path, capsys):
    src = FIXTURES / "131_01_short.bvh"
    code, out, _ = _run(capsys, src, "--out", tmp_path / "a.npz", "--solver", "analytic")
    res = json.loads(out)
    assert (
        code == 0 and res["smooth_seconds"] == 0.0 and res["noise_mm"] < 2.0
    )  # rigid mocap: left alone
    code, out, _ = _run(
        capsys, src, "--out", tmp_path / "b.npz", "--solver", "analytic", "--smooth", "0.05"
    )
    assert code == 0 and json.loads(out)["smooth_seconds"] == 0.05
    for bad in ("-1", "often"):
        with pytest.raises(SystemExit) as e:
            main(["convert", str(src), "--out", str(tmp_path / "c.npz"), "--smooth", bad])
        assert e.value.code == 2
        assert "smooth" in capsys.readouterr().err


def _smpl24_file(tmp_path, model, n=40):
    rot = smooth_pose(n, seed=9, scale=0.5)
    rot[:, 0] = torch.eye(3)
    trans = torch.zeros(n, 3, dtype=rot.dtype)
    trans[:, 2] = torch.linspace(0, 1, n)
    kp = SMPL24.generate(model, rot, torch.zeros(10), trans).numpy()
    src = tmp_path / "kp.npz"
    np.savez(src, keypoints=kp, joint_names=np.array(SMPL24.keypoints), fps=30, units="m", up="y")
    return src, rot, trans


def test_plug_in_mode_refines_an_existing_motion(tmp_path, capsys, model):
    from lsmplify_blender.core.formats.amass import write_smpl_npz
    from lsmplify_blender.core.rotations import axis_angle_to_matrix, matrix_to_axis_angle

    src, rot, trans = _smpl24_file(tmp_path, model)
    # an estimate that is off by ~0.15 rad on every joint and 3 cm in place
    noise = np.random.default_rng(0).normal(scale=0.15, size=(rot.shape[0], 24, 3))
    bad = rot @ axis_angle_to_matrix(torch.as_tensor(noise, dtype=rot.dtype))
    poses = matrix_to_axis_angle(bad).reshape(-1, 72).numpy()
    init = write_smpl_npz(tmp_path / "init.npz", poses, np.zeros(10), trans.numpy() + 0.03, 30.0)
    before = SMPL24.generate(model, bad, torch.zeros(10), trans + 0.03).numpy()
    kp = np.load(src)["keypoints"]
    err_before = np.linalg.norm(before - kp, axis=-1).mean() * 1000
    code = main(["convert", str(src), "--out", str(tmp_path / "r.npz"), "--init", str(init)])
    out, err = capsys.readouterr()
    res = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and res["solver"] == "refine" and "network plug-in: 2 pass(es)" in err
    assert err_before > 30 and res["fit_error_mm_mean"] < 1.0
    # the same motion given Z up (as AMASS stores it) comes out the same
    m = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])  # Y-up -> Z-up
    j0 = model.rest_joints(torch.zeros(10, dtype=torch.float64))[0, 0].numpy()
    rz = bad.clone()
    rz[:, 0] = torch.as_tensor(m, dtype=bad.dtype) @ bad[:, 0]
    tz = (trans.numpy().astype(np.float64) + 0.03 + j0) @ m.T - j0
    z_file = tmp_path / "init_z.npz"
    np.savez(
        z_file,
        poses=matrix_to_axis_angle(rz).reshape(-1, 72).numpy(),
        betas=np.zeros(10),
        trans=tz,
        mocap_framerate=30.0,
        up="z",
    )
    code, out, _ = _run(capsys, src, "--out", tmp_path / "rz.npz", "--init", z_file)
    assert code == 0 and json.loads(out)["fit_error_mm_mean"] < 1.0
    a, b = np.load(tmp_path / "r.npz"), np.load(tmp_path / "rz.npz")
    assert np.allclose(a["poses"], b["poses"], atol=1e-3) and np.allclose(
        a["trans"], b["trans"], atol=1e-4
    )
    # optimisation only, and refusals
    code, out, _ = _run(
        capsys, src, "--out", tmp_path / "o.npz", "--init", init, "--passes", "0", "--refine", "3"
    )
    assert code == 0 and json.loads(out)["fit_error_mm_mean"] < err_before
    code, _, err = _run(capsys, src, "--out", tmp_path / "x.npz", "--init", init, "--passes", "0")
    assert code == 2 and "Nothing to refine" in err
    short = write_smpl_npz(
        tmp_path / "short.npz", poses[:10], np.zeros(10), trans.numpy()[:10], 30.0
    )
    code, _, err = _run(capsys, src, "--out", tmp_path / "y.npz", "--init", short)
    assert code == 2 and "same frame range" in err and not (tmp_path / "y.npz").exists()


# ------------------------------------------------------------------ nothing of the user's destroyed


def _take(tmp_path, model, n=20):
    rot = smooth_pose(n, seed=7, scale=0.4)
    rot[:, 0] = torch.eye(3)
    kp = SMPL24.generate(model, rot, torch.zeros(10)).numpy()
    src = tmp_path / "take.npz"
    np.savez(src, keypoints=kp, joint_names=np.array(SMPL24.keypoints), fps=30, units="m", up="y")
    return src


def _leftovers(folder):
    return sorted(
        p.name for p in Path(folder).iterdir() if p.name.startswith(".") or "tmp" in p.name
    )


def _refused(capsys, *args):
    code, out, err = _run(capsys, *args, "--solver", "analytic")
    assert code == 2 and out == "" and "Traceback" not in err, (code, err)
    assert err.startswith("lsmplify: error:") and len(err.strip().splitlines()) == 1, err
    return err


def test_out_equal_to_the_input_is_refused_and_the_input_kept(tmp_path, capsys, model):
    src = _take(tmp_path, model)
    before = src.read_bytes()
    err = _refused(capsys, src, "--out", src)
    assert "same file as the input" in err and src.read_bytes() == before
    link = tmp_path / "link.npz"
    link.symlink_to(src)
    err = _refused(capsys, src, "--out", link)
    assert "same file as the input" in err and src.read_bytes() == before and link.is_symlink()
    err = _refused(capsys, src, "--out", tmp_path / "take")  # '.npz' is added: the same file again
    assert "same file as the input" in err and src.read_bytes() == before


def test_out_equal_to_the_model_is_refused_and_the_model_kept(tmp_path, capsys, model):
    from lsmplify_blender.core.body_model import OPEN_MODEL_PATH

    src = _take(tmp_path, model)
    mdl = tmp_path / "model.npz"
    mdl.write_bytes(OPEN_MODEL_PATH.read_bytes())
    err = _refused(capsys, src, "--model", mdl, "--out", mdl)
    assert "same file as --model" in err and mdl.read_bytes() == OPEN_MODEL_PATH.read_bytes()
    err = _refused(capsys, src, "--out", OPEN_MODEL_PATH)  # the embedded default is protected too
    assert "same file as --model" in err


@pytest.mark.parametrize(
    ("where", "words"),
    [
        (lambda t: t / "x.npz", "is a folder"),
        (lambda t: t / "afile" / "out.npz", "cannot create files"),
        (lambda t: Path("/proc/lsmplify_out.npz"), "cannot create files"),
        (lambda t: t / ("n" * 300 + ".npz"), "255"),
    ],
)
def test_unwritable_out_is_refused_before_the_solve(tmp_path, capsys, model, where, words):
    src = _take(tmp_path, model)
    (tmp_path / "x.npz").mkdir()
    (tmp_path / "afile").write_text("a file, not a folder")
    err = _refused(capsys, src, "--out", where(tmp_path))
    assert words in err
    assert _leftovers(tmp_path) == []


def test_a_failed_write_keeps_the_earlier_output_and_leaves_no_temporary(
    tmp_path, capsys, model, monkeypatch
):
    import errno

    from lsmplify_blender.core.formats import amass

    src = _take(tmp_path, model)
    out = tmp_path / "out.npz"
    out.write_bytes(b"the user's earlier result")

    def full_disk(f, **arrays):
        f.write(b"PK partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(amass.np, "savez", full_disk)
    err = _refused(capsys, src, "--out", out)
    assert "No space left on device" in err and "Nothing was replaced" in err
    assert out.read_bytes() == b"the user's earlier result" and _leftovers(tmp_path) == []


def test_a_successful_write_leaves_only_the_output(tmp_path, capsys, model):
    src = _take(tmp_path, model)
    code, _out, err = _run(capsys, src, "--out", tmp_path / "out.npz", "--solver", "analytic")
    assert code == 0, err
    assert _leftovers(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == [
        "out.npz",
        "take.npz",
    ]


def test_glued_takes_keep_every_frame_in_file_order(tmp_path, capsys):
    """Two takes in one AMC (frame numbers restart at 1): all frames solved, in file order."""
    text = (FIXTURES / "01_01_short.amc").read_text().splitlines()
    first = next(i for i, line in enumerate(text) if line.strip() == "1")
    glued = tmp_path / "glued.amc"
    glued.write_text("\n".join(text + text[first:]) + "\n")
    asf = FIXTURES / "01.asf"
    code, out, err = _run(
        capsys,
        FIXTURES / "01_01_short.amc",
        "--asf",
        asf,
        "--out",
        tmp_path / "one.npz",
        "--solver",
        "analytic",
    )
    assert code == 0, err
    single = json.loads(out)["frames"]
    code = main(
        [
            "convert",
            str(glued),
            "--asf",
            str(asf),
            "--out",
            str(tmp_path / "two.npz"),
            "--solver",
            "analytic",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["frames"] == 2 * single
    assert "kept in file order" in err
    poses = np.load(tmp_path / "two.npz")["poses"]
    np.testing.assert_allclose(poses[:single], poses[single:], atol=1e-5)  # the same take twice


def test_glued_takes_in_a_csv_keep_every_frame(tmp_path, capsys, model):
    kp = np.load(_take(tmp_path, model))["keypoints"]
    header = "frame," + ",".join(f"{n}_{c}" for n in SMPL24.keypoints for c in "xyz")
    rows = [f"{i % 10}," + ",".join(f"{v:.6f}" for v in r.ravel()) for i, r in enumerate(kp)]
    (tmp_path / "glued.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    code, out, err = _run(
        capsys,
        tmp_path / "glued.csv",
        "--out",
        tmp_path / "o.npz",
        "--solver",
        "analytic",
        "--units",
        "m",
        "--up",
        "y",
    )
    assert code == 0, err
    assert json.loads(out)["frames"] == len(kp) == 20


# ------------------------------------------------------------------ options and the last resort


@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        ("--fps", "0", "--fps must be at least"),
        ("--fps", "nan", "--fps nan: expected a number"),
        ("--fps", "1e9", "--fps 1e+09 is more than 1000"),
        ("--refine", "-5", "--refine must be at least 0"),
        ("--smooth", "1e6", "--smooth 1e+06 is more than 5"),
        ("--passes", "-1", "--passes must be at least 0"),
        ("--chunk", "0", "--chunk must be at least 1"),
    ],
)
def test_options_out_of_range_are_refused_up_front(tmp_path, capsys, model, flag, value, words):
    src = _take(tmp_path, model)
    err = _refused(capsys, src, "--out", tmp_path / "o.npz", flag, value)
    assert words in err and not (tmp_path / "o.npz").exists()


@pytest.mark.parametrize(
    ("fps", "words"), [(True, "yes/no value"), (1e9, "in (0, 1000]"), ("fast", "not a number")]
)
def test_declared_fps_is_validated(tmp_path, capsys, model, fps, words):
    kp = np.load(_take(tmp_path, model))["keypoints"]
    src = tmp_path / "k.json"
    src.write_text(
        json.dumps({"keypoints": kp.tolist(), "joint_names": list(SMPL24.keypoints), "fps": fps})
    )
    assert words in _refused(capsys, src, "--out", tmp_path / "o.npz")


def test_bvh_frame_time_1e_300_is_refused(tmp_path, capsys):
    text = (FIXTURES / "01_01_short.bvh").read_text()
    import re

    src = tmp_path / "fast.bvh"
    src.write_text(re.sub(r"Frame Time:\s*\S+", "Frame Time: 1e-300", text))
    assert "'Frame Time: 1e-300' means 1e+300 fps" in _refused(
        capsys, src, "--out", tmp_path / "o.npz"
    )


def test_bvh_declaring_millions_of_frames_is_refused_at_once(tmp_path, capsys):
    text = (FIXTURES / "01_01_short.bvh").read_text()
    head = text[: text.index("MOTION")]
    src = tmp_path / "liar.bvh"
    src.write_text(head + "MOTION\nFrames: 2000000\nFrame Time: 0.0083333\n0 0 0\n")
    assert "only 6 characters long" in _refused(capsys, src, "--out", tmp_path / "o.npz")
    src.write_text(
        "HIERARCHY\nROOT Hips\n{\nOFFSET 0 0 0\n}\nMOTION\nFrames: 2000000\nFrame Time: 0.01\n"
    )
    assert "no joint declares CHANNELS" in _refused(capsys, src, "--out", tmp_path / "o.npz")


def test_init_pointing_at_a_npy_is_refused(tmp_path, capsys, model):
    src = _take(tmp_path, model)
    np.save(tmp_path / "init.npy", np.zeros((20, 72)))
    err = _refused(capsys, src, "--out", tmp_path / "o.npz", "--init", tmp_path / "init.npy")
    assert "single .npy array; --init needs an AMASS-style .npz" in err


def test_init_with_infinite_framerate_is_refused(tmp_path, capsys, model):
    src = _take(tmp_path, model)
    np.savez(
        tmp_path / "init.npz",
        poses=np.zeros((20, 72)),
        trans=np.zeros((20, 3)),
        betas=np.zeros(10),
        mocap_framerate=np.inf,
    )
    assert "mocap_framerate" in _refused(
        capsys, src, "--out", tmp_path / "o.npz", "--init", tmp_path / "init.npz"
    )


def test_summary_json_is_strict_json_without_nan(tmp_path, capsys, model):
    """The refine path has no MPBE (NaN inside): the summary prints null, the file holds no NaN."""
    from lsmplify_blender.core.formats.amass import write_smpl_npz

    src = _take(tmp_path, model)
    init = write_smpl_npz(
        tmp_path / "init.npz", np.zeros((20, 72)), np.zeros(10), np.zeros((20, 3)), 30.0
    )
    code, out, err = _run(
        capsys, src, "--out", tmp_path / "o.npz", "--init", init, "--passes", "0", "--refine", "2"
    )
    assert code == 0, err

    def no_constants(name):
        raise AssertionError(f"bare {name} in the JSON")

    summary = json.loads(out, parse_constant=no_constants)
    assert summary["mpbe_mm"] is None
    with np.load(tmp_path / "o.npz") as z:
        assert all(np.isfinite(z[k]).all() for k in z.files if z[k].dtype.kind == "f")


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (RuntimeError("boom"), "this is a bug"),
        (MemoryError(), "too large for this machine's memory"),
        (RecursionError("deep"), "nested too deeply"),
    ],
)
def test_last_resort_prints_one_line_and_a_log(tmp_path, capsys, model, monkeypatch, exc, words):
    import lsmplify_blender.core.formats as formats

    src = _take(tmp_path, model)

    def broken(*a, **k):
        raise exc

    monkeypatch.setattr(formats, "read_keypoints", broken)
    err = _refused(capsys, src, "--out", tmp_path / "o.npz")
    assert words in err and type(exc).__name__ in err
    log = Path(err.split("traceback in ")[1].rstrip(")\n"))
    assert "Traceback" in log.read_text() and "broken" in log.read_text()
    log.unlink()
