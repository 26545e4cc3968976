"""Compute-device choice: CUDA, then Apple MPS, then CPU, unless the user says otherwise."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
from pathlib import Path

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


@contextlib.contextmanager
def cpu_threads(device: torch.device):
    """One intra-op thread for solving on CPU (LSMPLIFY_THREADS overrides), for torch and for
    numpy's BLAS (``numpy_blas_threads``; numpy works on the CPU whatever the device).

    The solvers work on many small per-joint tensors; on a busy 2-core machine torch's
    thread pool spends far longer synchronising than computing (measured: a 256-frame
    refinement took 0.11 s on one thread and 8.3 s on two while other work ran).
    """
    n = int(os.environ.get("LSMPLIFY_THREADS", "1"))
    with torch_threads(n if device.type == "cpu" else None), numpy_blas_threads(n):
        yield


# numpy's bundled OpenBLAS: its thread-count functions by the names its builds give them (64-bit
# integer builds suffix them; numpy 2 links scipy-openblas, which also prefixes them)
_OPENBLAS_PREFIXES = ("scipy_openblas", "openblas")
_OPENBLAS_SUFFIXES = ("64_", "")


@functools.lru_cache(maxsize=1)
def _numpy_openblas():
    """(get, set) the thread count of the OpenBLAS numpy loaded (its wheels bundle one next to the
    package), or None (another BLAS, a system numpy, a platform where it is not found)."""
    import numpy

    root = Path(numpy.__file__).parent
    for lib in sorted(
        [*root.parent.glob("numpy.libs/*openblas*"), *root.glob(".dylibs/*openblas*")]
    ):
        try:
            handle = ctypes.CDLL(str(lib))  # already loaded by numpy: the same library
        except OSError:
            continue
        for pre in _OPENBLAS_PREFIXES:
            for suf in _OPENBLAS_SUFFIXES:
                get = getattr(handle, f"{pre}_get_num_threads{suf}", None)
                put = getattr(handle, f"{pre}_set_num_threads{suf}", None)
                if get is not None and put is not None:
                    return get, put
    return None


@contextlib.contextmanager
def numpy_blas_threads(n: int | None):
    """Run a block with numpy's OpenBLAS on ``n`` threads (None, or no OpenBLAS found: as set),
    restoring after. A solve's numpy work is per-frame arrays of a few columns; on two threads
    OpenBLAS's second thread spins between calls, which a solve's CPU time counted (131_01.bvh
    played to 100 frames, network, 3 alternating pairs on a shared 2-core machine: 0.27-0.30 ->
    0.15-0.23 s CPU; at 10,000 frames within the noise), the results the same bit for bit."""
    blas = _numpy_openblas() if n else None
    if blas is None:
        yield
        return
    get, put = blas
    previous = int(get())
    put(max(1, int(n or 1)))
    try:
        yield
    finally:
        put(previous)
