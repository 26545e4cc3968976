"""``batch`` on real CMU takes: resume, failure isolation, crashed workers, ASF matching,
the summary files and the Ray engine on a local cluster.

Worker processes are real (spawned, each loading the model); the takes are the real
fixtures (tests/fixtures/CREDITS.md). Kept to a few takes per test: CI has 2 cores.
"""

import csv
import importlib.util
import json
import os
import shutil
import signal
import time
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES

from lsmplify_blender.core import batch
from lsmplify_blender.core.cli import main
from lsmplify_blender.core.formats import find_asf
from lsmplify_blender.core.formats.amass import partial_path

OPTIONS = Namespace(
    layout="auto",
    units="auto",
    up="auto",
    fps=None,
    model=None,
    solver="analytic",
    refine=0,
    chunk=None,
    smooth="auto",
    rotations="auto",
    device="cpu",
    asf=None,
    init=None,
)


def library(root: Path) -> Path:
    """A small take library: two BVH takes, an AMC take beside its ASF, in sub-folders."""
    (root / "bvh" / "jumps").mkdir(parents=True)
    (root / "amc").mkdir()
    shutil.copy(FIXTURES / "131_01_short.bvh", root / "bvh" / "131_01.bvh")
    shutil.copy(FIXTURES / "01_01_short.bvh", root / "bvh" / "jumps" / "01_01.bvh")
    shutil.copy(FIXTURES / "01_01_short.amc", root / "amc" / "01_01.amc")
    shutil.copy(FIXTURES / "01.asf", root / "amc" / "01.asf")
    return root


def corrupt(path: Path) -> Path:
    """A real BVH cut off inside its hierarchy (a damaged download)."""
    path.write_bytes((FIXTURES / "131_01_short.bvh").read_bytes()[:3000])
    return path


def run_cli(capsys, *args):
    code = main(["batch", *map(str, args)])
    out, err = capsys.readouterr()
    return code, json.loads(out.strip().splitlines()[-1]), err


def rows_by_name(out_dir: Path) -> dict:
    with open(out_dir / "summary.csv", newline="") as f:
        return {Path(r["input"]).name: r for r in csv.DictReader(f)}


# ----------------------------------------------------------------------------- names and finding
def test_asf_found_by_longest_name_prefix(tmp_path):
    asf = (FIXTURES / "01.asf").read_bytes()
    for name in ("01.asf", "SUBJ.asf", "SUBJ_action.asf", "1.asf", "SUBJECT.asf"):
        (tmp_path / name).write_bytes(asf)
    for amc, expected in [
        ("01_01.amc", "01.asf"),
        ("SUBJ_action_012.amc", "SUBJ_action.asf"),
        ("SUBJ_other_3.amc", "SUBJ.asf"),
        ("subj-walk.amc", "SUBJ.asf"),
        ("SUBJECT_1.amc", "SUBJECT.asf"),
        ("131_01.amc", None),
        ("02_01.amc", None),
    ]:
        found = find_asf(tmp_path / amc)
        assert (found.name if found else None) == expected, amc


def test_find_takes_mirrors_the_tree_and_matches_skeletons(tmp_path):
    lib = library(tmp_path / "lib")
    orphans = tmp_path / "lib" / "amc" / "no_asf"
    orphans.mkdir()
    shutil.copy(FIXTURES / "01_01_short.amc", orphans / "05_07.amc")
    (lib / "bvh" / "walk.fbx").write_bytes(b"Kaydara FBX Binary  \x00")
    (lib / "README.md").write_text("not a take")
    out = tmp_path / "out"
    takes = {t.input.name: t for t in batch.find_takes([lib], out, asf=lib / "amc" / "01.asf")}
    assert sorted(takes) == ["01_01.amc", "01_01.bvh", "05_07.amc", "131_01.bvh", "walk.fbx"]
    assert takes["01_01.bvh"].output == out.resolve() / "bvh" / "jumps" / "01_01.bvh.npz"
    assert takes["01_01.amc"].output == out.resolve() / "amc" / "01_01.amc.npz"
    assert takes["01_01.amc"].asf == (lib / "amc" / "01.asf").resolve()
    assert (
        takes["05_07.amc"].asf == (lib / "amc" / "01.asf").resolve()
    )  # --asf: for takes without their own
    assert (
        takes["walk.fbx"].status == "skipped"
        and "FBX is not a keypoint format" in takes["walk.fbx"].row["reason"]
    )
    only_bvh = batch.find_takes([lib], out, pattern="*.bvh")
    assert sorted(t.input.name for t in only_bvh) == ["01_01.bvh", "131_01.bvh"]
    # an output folder inside the input is never read back as input
    (lib / "results").mkdir()
    np.save(lib / "results" / "x.npy", np.zeros((3, 24, 3)))
    assert "x.npy" not in {t.input.name for t in batch.find_takes([lib], lib / "results")}


def test_cli_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["batch", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["batch", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "No takes found" in capsys.readouterr().err
    (tmp_path / "file.npz").write_bytes(b"x")
    assert (
        main(["batch", str(FIXTURES / "01_01_short.bvh"), "--out", str(tmp_path / "file.npz")]) == 2
    )
    assert "is a file" in capsys.readouterr().err
    assert main(["batch", str(tmp_path / "empty"), "--out", str(tmp_path)]) == 2
    assert "inside --out" in capsys.readouterr().err
    take = FIXTURES / "01_01_short.bvh"
    assert (
        main(
            [
                "batch",
                str(take),
                "--out",
                str(tmp_path / "o"),
                "--model",
                str(tmp_path / "file.npz"),
            ]
        )
        == 2
    )
    assert (
        "file.npz" in capsys.readouterr().err
    )  # every worker would fail to load it: one error, no rows
    with pytest.raises(SystemExit):
        main(["batch", str(take), "--out", str(tmp_path / "o"), "--workers", "0"])
    if (
        importlib.util.find_spec("ray") is not None
    ):  # a cluster address that does not answer: at once, no retries
        assert (
            main(
                [
                    "batch",
                    str(take),
                    "--out",
                    str(tmp_path / "o"),
                    "--engine",
                    "ray",
                    "--ray-address",
                    "127.0.0.1:1",
                ]
            )
            == 2
        )
        assert "nothing answers there" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the command end to end
def test_batch_isolates_failures_writes_summary_and_resumes(tmp_path, capsys):
    lib = library(tmp_path / "lib")
    corrupt(lib / "bvh" / "damaged.bvh")
    out = tmp_path / "out"
    code, totals, err = run_cli(capsys, lib, "--out", out, "--workers", "2", "--solver", "analytic")
    assert code == 1, err  # some take failed
    assert (totals["takes"], totals["ok"], totals["failed"], totals["skipped"]) == (4, 3, 1, 0)
    assert "lsmplify batch" not in err  # no progress bar off a terminal
    rows = rows_by_name(out)
    assert (
        rows["damaged.bvh"]["status"] == "failed" and "damaged.bvh" in rows["damaged.bvh"]["error"]
    )
    assert rows["damaged.bvh"]["output"] == ""
    for name, frames in (("131_01.bvh", 200), ("01_01.bvh", 200), ("01_01.amc", 199)):
        r = rows[name]
        assert (
            r["status"] == "ok" and int(r["frames"]) == frames and r["error"] == r["reason"] == ""
        )
        assert (r["layout"], r["units"], r["solver"]) == ("cmu", "cmu", "analytic")
        assert 0 < float(r["fit_error_mm_mean"]) <= float(r["fit_error_mm_max"]) < 80
        assert float(r["seconds"]) > 0 and float(r["peak_rss_mb"]) > 50
        z = np.load(r["output"])
        assert z["poses"].shape == (frames, 72) and np.isfinite(z["poses"]).all()
        assert abs(float(np.mean(z["fit_error_mm"])) - float(r["fit_error_mm_mean"])) < 1e-3
    assert Path(rows["01_01.bvh"]["output"]) == out / "bvh" / "jumps" / "01_01.bvh.npz"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["totals"]["ok"] == 3 and summary["totals"]["frames"] == 599 == totals["frames"]
    assert {Path(r["input"]).name for r in summary["takes"]} == set(rows)
    assert not list(out.rglob("*.tmp*"))

    # second run: the converted takes are skipped with their figures read back; the failed one is retried
    stamps = {n: os.stat(rows[n]["output"]).st_mtime_ns for n in ("131_01.bvh", "01_01.amc")}
    code, totals, _ = run_cli(capsys, lib, "--out", out, "--workers", "1", "--solver", "analytic")
    again = rows_by_name(out)
    assert (totals["ok"], totals["failed"], totals["skipped"]) == (0, 1, 3)
    assert (
        again["131_01.bvh"]["status"] == "skipped" and "up to date" in again["131_01.bvh"]["reason"]
    )
    assert again["131_01.bvh"]["fit_error_mm_mean"] == rows["131_01.bvh"]["fit_error_mm_mean"]
    assert {n: os.stat(rows[n]["output"]).st_mtime_ns for n in stamps} == stamps

    # an edited input is redone; --overwrite redoes everything
    future = time.time() + 5
    os.utime(lib / "bvh" / "131_01.bvh", (future, future))
    (lib / "bvh" / "damaged.bvh").unlink()
    code, totals, _ = run_cli(capsys, lib, "--out", out, "--workers", "1", "--solver", "analytic")
    assert code == 0 and (totals["ok"], totals["skipped"]) == (1, 2)
    assert rows_by_name(out)["131_01.bvh"]["status"] == "ok"
    code, totals, _ = run_cli(
        capsys, lib, "--out", out, "--workers", "2", "--solver", "analytic", "--overwrite"
    )
    assert code == 0 and totals["ok"] == 3


# ----------------------------------------------------------------------------- crashed workers
def crash_or_convert(options, model, take):
    """A take function for the workers: the 'crash' takes kill their worker mid-write."""
    if take.input.name.startswith("crash"):
        partial_path(take.output).parent.mkdir(parents=True, exist_ok=True)
        partial_path(take.output).write_bytes(b"half a file")
        if "sigkill" in take.input.name:
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(3)
    return batch.run_take(options, model, take)


def test_a_crashing_worker_is_replaced_and_its_take_failed(tmp_path):
    lib = library(tmp_path / "lib")
    for name in ("crash_exit.bvh", "crash_sigkill.bvh"):
        shutil.copy(FIXTURES / "131_01_short.bvh", lib / "bvh" / name)
    corrupt(lib / "bvh" / "damaged.bvh")
    out = tmp_path / "out"
    takes = batch.find_takes([lib], out)
    batch.run_batch(takes, OPTIONS, engine="local", workers=2, take_fn=crash_or_convert)
    status = {t.input.name: t.status for t in takes}
    assert status == {
        "131_01.bvh": "ok",
        "01_01.bvh": "ok",
        "01_01.amc": "ok",
        "damaged.bvh": "failed",
        "crash_exit.bvh": "failed",
        "crash_sigkill.bvh": "failed",
    }
    by_name = {t.input.name: t.row for t in takes}
    assert "exit code 3" in by_name["crash_exit.bvh"]["error"]
    assert "SIGKILL" in by_name["crash_sigkill.bvh"]["error"]
    assert "replaced" in by_name["crash_exit.bvh"]["error"]
    assert not list(out.rglob("*.tmp*")), "a killed worker left a half-written file"
    assert sorted(p.name for p in out.rglob("*.npz")) == [
        "01_01.amc.npz",
        "01_01.bvh.npz",
        "131_01.bvh.npz",
    ]


def test_cancel_stops_handing_out_takes(tmp_path):
    lib = library(tmp_path / "lib")
    takes = batch.find_takes([lib], tmp_path / "out")
    flag = type("Flag", (), {"done": False, "is_set": lambda self: self.done})()

    def on_row(take, done, total):
        flag.done = True  # cancel after the first take

    batch.run_batch(takes, OPTIONS, engine="inline", on_row=on_row, cancel=flag)
    assert [t.status for t in takes].count("ok") == 1 and [t.status for t in takes].count(
        "pending"
    ) == 2


# ----------------------------------------------------------------------------- Ray
def test_ray_engine_on_a_local_cluster_matches_the_local_engine(tmp_path):
    ray = pytest.importorskip("ray")
    lib = library(tmp_path / "lib")
    corrupt(lib / "bvh" / "damaged.bvh")
    inline = batch.run_batch(batch.find_takes([lib], tmp_path / "inline"), OPTIONS, engine="inline")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = batch.run_batch(
            batch.find_takes([lib], tmp_path / "ray"), OPTIONS, engine="ray", workers=2
        )
        assert len({t.row["worker"] for t in on_ray if t.status == "ok"}) == 2  # both actors worked
    finally:
        ray.shutdown()
    assert [(t.input.name, t.status) for t in on_ray] == [(t.input.name, t.status) for t in inline]
    assert {t.input.name: t.status for t in on_ray}["damaged.bvh"] == "failed"
    for a, b in zip(inline, on_ray, strict=True):
        if a.status == "ok":
            np.testing.assert_allclose(
                np.load(a.row["output"])["poses"], np.load(b.row["output"])["poses"], atol=1e-5
            )


def test_ctrl_c_leaves_no_partial_output_and_the_rerun_finishes(tmp_path):
    import subprocess
    import sys

    lib = library(tmp_path / "lib")
    # enough takes that the Ctrl-C, sent once the first output exists, lands before the
    # last one is done even on an idle machine (a take takes tens of milliseconds)
    for i in range(60):
        shutil.copy(FIXTURES / "131_01_short.bvh", lib / "bvh" / f"more_{i}.bvh")
    total = 3 + 60
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "lsmplify_blender",
        "batch",
        str(lib),
        "--out",
        str(out),
        "--workers",
        "1",
        "--solver",
        "analytic",
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    # a shell that starts a job in the background sets SIGINT to "ignore" for it and its
    # children (CI may run us that way), and exec keeps an ignored signal ignored: give the
    # child the default, as a terminal's Ctrl-C finds it (a handler is reset by exec)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    finally:
        signal.signal(signal.SIGINT, before)
    deadline = time.time() + 120
    while not list(out.rglob("*.bvh.npz")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # Ctrl-C after the first take
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    totals = json.loads(stdout.strip().splitlines()[-1])
    assert totals["interrupted"] and 1 <= totals["ok"] < total
    rows = rows_by_name(out)
    stopped = [r for r in rows.values() if "interrupted" in r["reason"]]
    assert len(stopped) == total - totals["ok"] and all(r["output"] == "" for r in stopped)
    assert not list(out.rglob("*.tmp*")) and not list(out.rglob(".*.part"))  # no partial file
    assert len(list(out.rglob("*.npz"))) == totals["ok"]
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    again = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert (
        rerun.returncode == 0
        and again["ok"] == total - totals["ok"]
        and again["skipped"] == totals["ok"]
    )


def test_the_add_on_side_needs_neither_ray_nor_tqdm(tmp_path):
    """Blender's Batch Convert runs the inline engine: it must work where neither is installed
    (the extension zip bundles neither)."""
    import subprocess
    import sys

    build_addon = pytest.importorskip("build_addon")
    bundled = {r.split("==")[0].lower() for r in build_addon.requirements("3.11")}
    assert not bundled & {"ray", "tqdm"}
    script = f"""
import sys
sys.modules["ray"] = None
sys.modules["tqdm"] = None  # import of either now fails
from argparse import Namespace
from lsmplify_blender.core import batch
o = Namespace(layout="auto", units="auto", up="auto", fps=None, model=None, solver="analytic", refine=0,
              chunk=None, smooth="auto", rotations="auto", device="cpu", asf=None, init=None)
takes = batch.run_batch(batch.find_takes([{str(FIXTURES / "131_01_short.bvh")!r}], {str(tmp_path)!r}), o,
                        engine="inline")
print(takes[0].status)
"""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
