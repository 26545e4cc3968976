"""Progress and cancelling for long solves: a ``Progress`` passed to ``solver.solve`` or
``solver.refine_existing`` (keyword ``progress``) hears how many frames each block of work has
done, and a cancel asked for from another thread (Blender's Esc) stops the work at the next
block with ``Cancelled``.

The solve's loops run in blocks anyway (analytic IK in ``SolveOptions.chunk`` frames, the
network and the optimiser in blocks of frames), so the check costs nothing measurable. The
solve makes its ``Progress`` the thread's current one (``tracking``) and the loops call
``step``: the strategies' signatures stay as they are, and a solve run without a
``Progress`` (the CLI, tests) steps into nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import contextmanager

from .errors import LSMPLifyError


class Cancelled(LSMPLifyError):
    """The work was cancelled (``Progress.cancel``) before it finished; nothing was returned."""


class Progress:
    """Frames done out of frames planned, over the stages of one solve, and a cancel flag.

    ``plan(frames)`` adds a stage of ``frames`` frames to the work; ``step(frames, stage)``
    counts frames done and calls ``callback(done, total, stage)``; after ``cancel()`` (safe
    from any thread) the next ``step`` or ``check`` raises ``Cancelled``.
    """

    def __init__(self, callback: Callable[[int, int, str], None] | None = None):
        self.callback = callback
        self.done = 0
        self.total = 0
        self.stage = ""
        self._cancel = threading.Event()

    def plan(self, frames: int) -> None:
        self.total += max(0, int(frames))

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def fraction(self) -> float:
        """Done / planned in [0, 1] (0 before anything is planned)."""
        return min(1.0, self.done / self.total) if self.total > 0 else 0.0

    def check(self) -> None:
        if self._cancel.is_set():
            raise Cancelled(f"Cancelled after {self.done} of {self.total} frames ({self.stage}).")

    def step(self, frames: int, stage: str = "") -> None:
        self.check()
        self.done += max(0, int(frames))
        self.stage = stage or self.stage
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


def plan(frames: int) -> None:
    """Add a stage of ``frames`` frames to the thread's current ``Progress`` (if any)."""
    p = current()
    if p is not None:
        p.plan(frames)


def step(frames: int, stage: str = "") -> None:
    """Count ``frames`` done on the thread's current ``Progress`` (if any); raises ``Cancelled``
    when it was cancelled."""
    p = current()
    if p is not None:
        p.step(frames, stage)
