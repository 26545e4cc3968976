"""Progress and cancelling of the core's solves (``core.progress``) on a real CMU take
(fixtures/131_01_short.bvh, see fixtures/CREDITS.md): the frames reported are each step's frames
done, block by block, up to all of them, and a cancel stops the work at the next block with
``CancelledError``."""

import threading

import pytest
import torch
from conftest import FIXTURES

from lsmplify_blender.core import progress as progress_mod
from lsmplify_blender.core.errors import LSMPLifyError
from lsmplify_blender.core.formats import read_keypoints
from lsmplify_blender.core.prepare import prepare
from lsmplify_blender.core.progress import CancelledError, Progress
from lsmplify_blender.core.solver import refine_existing, solve

TAKE = FIXTURES / "131_01_short.bvh"


@pytest.fixture(scope="module")
def prepared(model):
    return prepare(read_keypoints(TAKE), model)


def test_analytic_solve_reports_every_block_of_frames(model, prepared):
    seen = []
    p = Progress(lambda done, total, stage: seen.append((p.steps, done, total, stage)))
    chunked = solve(prepared, model, solver="analytic", chunk=64, progress=p)
    t = prepared.num_frames
    assert t > 128  # several blocks of 64
    # every analytic pass (joints, then with the landmarks; the file's rest pose: one frame)
    # counts its blocks of 64 up to all of its frames
    runs = {}
    for k, done, total, stage in seen:
        assert stage == "analytic IK"
        runs.setdefault(k, []).append((done, total))
    assert sorted(runs) == list(range(1, p.steps + 1))
    for run in runs.values():
        n = run[-1][1]
        assert [d for d, _ in run] == [min(64 * (i + 1), n) for i in range(len(run))]
        assert run[-1] == (n, n)
    assert sum(run[-1][1] == t for run in runs.values()) >= 2  # the whole take, twice
    assert p.fraction == 1.0
    # the blocks change nothing: the same motion as one block, with no progress given
    whole = solve(prepared, model, solver="analytic")
    assert torch.allclose(chunked.rotmats, whole.rotmats, atol=1e-6)
    assert torch.allclose(chunked.trans, whole.trans, atol=1e-6)


def test_cancel_from_another_thread_stops_the_solve_at_the_next_block(model, prepared):
    started = threading.Event()
    release = threading.Event()

    def on_step(done, total, stage):
        started.set()
        release.wait(5)  # the worker waits in its first block's report while the UI cancels

    p = Progress(on_step)
    out = {}

    def work():
        try:
            out["solution"] = solve(prepared, model, solver="analytic", chunk=32, progress=p)
        except CancelledError as exc:
            out["error"] = exc

    worker = threading.Thread(target=work)
    worker.start()
    assert started.wait(30)
    p.cancel()  # Esc in Blender: from the UI thread
    release.set()
    worker.join(30)
    assert not worker.is_alive()
    assert "solution" not in out and isinstance(out["error"], LSMPLifyError)
    assert p.done == 32 < p.total and p.steps == 1  # it stopped after its first block
    assert f"Cancelled after 32 of {p.total} frames (analytic IK)" in str(out["error"])


def test_refine_existing_reports_and_cancels(model, prepared):
    first = solve(prepared, model, solver="analytic")
    seen = []
    p = Progress(lambda done, total, stage: seen.append(stage))
    refine_existing(
        prepared,
        model,
        first.rotmats,
        first.betas,
        first.trans,
        passes=1,
        refine=1,
        progress=p,
    )
    assert p.done == p.total == prepared.num_frames and seen[-1] == "optimisation"
    assert "network plug-in" in seen or "analytic IK" in seen
    cancelled = Progress()
    cancelled.cancel()
    with pytest.raises(CancelledError):
        refine_existing(
            prepared, model, first.rotmats, first.betas, first.trans, passes=1, progress=cancelled
        )
    assert cancelled.done == 0


def test_no_progress_steps_into_nothing_and_tracking_nests():
    progress_mod.begin("nothing", 10)  # no current Progress: nothing happens
    progress_mod.step(10)
    outer, inner = Progress(), Progress()
    with progress_mod.tracking(outer):
        progress_mod.begin("outer", 5)
        with progress_mod.tracking(inner):
            progress_mod.begin("inner", 4)
            progress_mod.step(2)
        progress_mod.step(3)
    assert (outer.stage, outer.done, outer.total) == ("outer", 3, 5)
    assert (inner.stage, inner.done, inner.fraction) == ("inner", 2, 0.5)
    assert progress_mod.current() is None


def test_network_plug_in_blocks_change_nothing(model, prepared, monkeypatch):
    from lsmplify_blender.core import solver

    first = solve(prepared, model, solver="analytic")
    args = (prepared, model, first.rotmats, first.betas, first.trans)
    whole = refine_existing(*args, passes=1)
    seen = []
    monkeypatch.setattr(solver, "PLUGIN_BLOCK", 64)
    blocked = refine_existing(*args, passes=1, progress=Progress(lambda d, t, s: seen.append(s)))
    assert seen.count("network plug-in") == -(-prepared.num_frames // 64)  # one report per block
    assert torch.allclose(blocked.rotmats, whole.rotmats, atol=1e-5)
    assert torch.allclose(blocked.trans, whole.trans, atol=1e-5)
