"""``python -m lsmplify_blender`` ends convert/eval with os._exit after flushing (issue 15): the
same output, the same exit status, every file complete; library calls exit normally."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import FIXTURES

from lsmplify_blender.core.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _module(*args):
    return subprocess.run(
        [sys.executable, "-m", "lsmplify_blender", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


def _untimed(summary):
    """The JSON summary without what differs from run to run: timings and the output path."""
    if isinstance(summary, dict):
        return {
            k: _untimed(v)
            for k, v in summary.items()
            if "seconds" not in k and k not in ("solve_fps", "output")
        }
    return summary


def test_convert_output_is_that_of_the_library_call(tmp_path, capsys):
    bvh = FIXTURES / "131_01_short.bvh"
    res = _module("convert", bvh, "--out", tmp_path / "cli.npz", "--quiet")
    assert res.returncode == 0, res.stderr
    assert main(["convert", str(bvh), "--out", str(tmp_path / "lib.npz"), "--quiet"]) == 0
    cli, lib = json.loads(res.stdout), json.loads(capsys.readouterr().out)
    assert _untimed(cli) == _untimed(lib)
    with np.load(tmp_path / "cli.npz") as a, np.load(tmp_path / "lib.npz") as b:
        assert a.files == b.files
        for k in a.files:
            assert np.array_equal(a[k], b[k]), k


def test_errors_keep_their_status_and_message(tmp_path):
    res = _module("convert", tmp_path / "missing.bvh", "--out", tmp_path / "o.npz")
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.startswith("lsmplify: error:") and "Traceback" not in res.stderr


def _with_atexit_probe(*args):
    """The entry point run with an atexit handler registered first: it prints when the
    interpreter's normal shutdown runs."""
    code = (
        "import atexit, runpy, sys; atexit.register(lambda: print('normal shutdown'));"
        f"sys.argv = ['lsmplify_blender'] + {list(map(str, args))!r};"
        "runpy.run_module('lsmplify_blender', run_name='__main__')"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)


def test_convert_skips_the_shutdown_and_batch_keeps_it(tmp_path):
    res = _with_atexit_probe("convert", tmp_path / "missing.bvh", "--out", tmp_path / "o.npz")
    assert res.returncode == 2 and "normal shutdown" not in res.stdout
    res = _with_atexit_probe("batch", tmp_path / "missing.bvh", "--out", tmp_path / "out")
    assert res.returncode != 0 and "normal shutdown" in res.stdout
