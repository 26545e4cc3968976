"""Compute-device choice: CUDA, then Apple MPS, then CPU, unless the user says otherwise."""
from __future__ import annotations

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
        raise LSMPLifyError("CUDA was asked for but no CUDA GPU is available to this torch build; "
                            "use --device auto or cpu.")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise LSMPLifyError("Apple MPS was asked for but is not available here; use --device auto or cpu.")
    if name not in ("cpu", "cuda", "mps"):
        raise LSMPLifyError(f"Unknown device '{name}'; use auto, cpu, cuda or mps.")
    return torch.device(name)
