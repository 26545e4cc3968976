"""Compute-device choice: CUDA, then Apple MPS, then CPU, unless the user says otherwise."""

from __future__ import annotations

import contextlib
import os

import torch

from .errors import LSMPLifyError


def resolve_device(name: str = "auto") -> torch.device:
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise LSMPLifyError(
            "CUDA was asked for but no CUDA GPU is available to this torch build; "
            "use --device auto or cpu."
        )
    if name == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise LSMPLifyError(
            "Apple MPS was asked for but is not available here; use --device auto or cpu."
        )
    if name not in ("cpu", "cuda", "mps"):
        raise LSMPLifyError(f"Unknown device '{name}'; use auto, cpu, cuda or mps.")
    return torch.device(name)


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run a block with ``n`` torch intra-op threads (None: leave as set), restoring after."""
    if not n:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def cpu_threads(device: torch.device):
    """One intra-op thread for solving on CPU (LSMPLIFY_THREADS overrides).

    The solvers work on many small per-joint tensors; on a busy 2-core machine torch's
    thread pool spends far longer synchronising than computing (measured: a 256-frame
    refinement took 0.11 s on one thread and 8.3 s on two while other work ran).
    """
    return torch_threads(
        int(os.environ.get("LSMPLIFY_THREADS", "1")) if device.type == "cpu" else None
    )
