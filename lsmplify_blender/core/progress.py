"""Progress and cancelling for long solves: a ``Progress`` passed to ``solver.solve`` or
``solver.refine_existing`` (keyword ``progress``) hears, step by step of the solve (analytic IK,
the network, the optimiser), how many of that step's frames are done, and a cancel asked for
from another thread (Blender's Esc) stops the work at the next block with ``CancelledError``.

The solve's loops run in blocks anyway (analytic IK in ``SolveOptions.chunk`` frames, the
network and the optimiser in blocks of frames), so the check costs nothing measurable. Each loop
says what it is and how many frames it covers (``begin``) and counts its blocks (``step``); no
plan of the whole solve is made up front, so a step that runs more than once (analytic IK with
landmarks, a calibration's rounds) simply starts again. The solve makes its ``Progress`` the
thread's current one (``tracking``): the strategies' signatures stay as they are, and a solve
run without a ``Progress`` (the CLI, tests) steps into nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import contextmanager

from .errors import LSMPLifyError


class CancelledError(LSMPLifyError):
    """The work was cancelled (``Progress.cancel``) before it finished; nothing was returned."""


class Progress:
    """The current step of a solve, its frames done out of its frames, and a cancel flag.

    ``begin(stage, frames)`` starts a step; ``step(frames)`` counts frames done and calls
    ``callback(done, total, stage)``; after ``cancel()`` (safe from any thread) the next
    ``begin``, ``step`` or ``check`` raises ``CancelledError``. ``steps`` counts the steps begun.
    """

    def __init__(self, callback: Callable[[int, int, str], None] | None = None):
        self.callback = callback
        self.done = 0
        self.total = 0
        self.stage = ""
        self.steps = 0
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def fraction(self) -> float:
        """Frames done / frames of the current step, in [0, 1] (0 before any step)."""
        return min(1.0, self.done / self.total) if self.total > 0 else 0.0

    def check(self) -> None:
        if self._cancel.is_set():
            raise CancelledError(
                f"Cancelled after {self.done} of {self.total} frames ({self.stage or 'starting'})."
            )

    def begin(self, stage: str, frames: int) -> None:
        self.check()
        self.stage, self.total, self.done = stage, max(0, int(frames)), 0
        self.steps += 1

    def step(self, frames: int) -> None:
        self.check()
        self.done += max(0, int(frames))
        if self.callback is not None:
            self.callback(self.done, self.total, self.stage)
        self.check()


_current = threading.local()


@contextmanager
def tracking(progress: Progress | None):
    """Make ``progress`` this thread's current one for the block (None: no tracking); nested
    uses restore the outer one."""
    outer = getattr(_current, "progress", None)
    _current.progress = progress
    try:
        if progress is not None:
            progress.check()
        yield progress
    finally:
        _current.progress = outer


def current() -> Progress | None:
    return getattr(_current, "progress", None)


def begin(stage: str, frames: int) -> None:
    """Start a step of ``frames`` frames on the thread's current ``Progress`` (if any)."""
    p = current()
    if p is not None:
        p.begin(stage, frames)


def step(frames: int) -> None:
    """Count ``frames`` done on the thread's current ``Progress`` (if any); raises ``CancelledError``
    when it was cancelled."""
    p = current()
    if p is not None:
        p.step(frames)
