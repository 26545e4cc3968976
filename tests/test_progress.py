"""Progress and cancelling of the core's solves (``core.progress``) on a real CMU take
(fixtures/131_01_short.bvh, see fixtures/CREDITS.md): the frames reported are the frames done,
block by block, and a cancel stops the work at the next block with ``Cancelled``."""

import threading

import numpy as np
import pytest
import torch
from conftest import FIXTURES

from lsmplify_blender.core import progress as progress_mod
from lsmplify_blender.core.errors import LSMPLifyError
from lsmplify_blender.core.formats import read_keypoints
from lsmplify_blender.core.prepare import prepare
from lsmplify_blender.core.progress import Cancelled, Progress
from lsmplify_blender.core.solver import refine_existing, solve

TAKE = FIXTURES / "131_01_short.bvh"


@pytest.fixture(scope="module")
def prepared(model):
    return prepare(read_keypoints(TAKE), model)


def test_analytic_solve_reports_every_block_of_frames(model, prepared):
    seen = []
    p = Progress(lambda done, total, stage: seen.append((done, total, stage)))
    chunked = solve(prepared, model, solver="analytic", chunk=64, progress=p)
    t = prepared.num_frames
    assert t > 128  # several blocks of 64
    done = [d for d, _, _ in seen]
    assert done == sorted(done) and done[-1] == p.total == p.done  # every planned frame done
    assert p.total % t == 0 and p.fraction == 1.0
    # analytic IK steps one block of 64 frames at a time
    steps = np.diff([0] + done)
    assert set(steps[: t // 64].tolist()) == {64}
    assert {s for _, _, s in seen} == {"analytic IK"}
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
        except Cancelled as exc:
            out["error"] = exc

    worker = threading.Thread(target=work)
    worker.start()
    assert started.wait(30)
    p.cancel()  # Esc in Blender: from the UI thread
    release.set()
    worker.join(30)
    assert not worker.is_alive()
    assert "solution" not in out and isinstance(out["error"], LSMPLifyError)
    assert p.done == 32 < p.total  # it stopped after the block it was in
    assert "Cancelled after 32 of" in str(out["error"])


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
    assert p.done >= p.total > 0 and "optimisation" in seen
    cancelled = Progress()
    cancelled.cancel()
    with pytest.raises(Cancelled):
        refine_existing(
            prepared, model, first.rotmats, first.betas, first.trans, passes=1, progress=cancelled
        )
    assert cancelled.done == 0


def test_no_progress_steps_into_nothing_and_tracking_nests():
    progress_mod.step(10)  # no current Progress: nothing happens
    outer, inner = Progress(), Progress()
    with progress_mod.tracking(outer):
        progress_mod.plan(5)
        with progress_mod.tracking(inner):
            progress_mod.step(2)
        progress_mod.step(3)
    assert (outer.done, outer.total, inner.done) == (3, 5, 2)
    assert progress_mod.current() is None
