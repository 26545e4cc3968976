"""numpy in, numpy out for the layer's torch functions: one implementation of each formula.

The body-model maths is written once, in torch (it runs batched on any device and is
differentiated by the fitters). Readers, the Blender side and build tools hold numpy
arrays; ``numpy_or_torch`` lets them call the same function: floating numpy arrays go in
as tensors sharing their memory (so float64 stays float64) and every tensor that comes
out goes back as a numpy array. Torch callers are untouched.
"""

from __future__ import annotations

import functools

import numpy as np
import torch


def _to_torch(x):
    if isinstance(x, np.ndarray) and x.dtype.kind == "f":
        x = np.ascontiguousarray(x)
        return torch.from_numpy(x if x.flags.writeable else x.copy())  # torch wants writable memory
    return x


def _to_numpy(x):
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, tuple):
        return tuple(_to_numpy(v) for v in x)
    return x


def numpy_or_torch(fn):
    """Decorate a torch function so that floating numpy arguments give numpy results."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if not any(isinstance(a, np.ndarray) for a in (*args, *kwargs.values())):
            return fn(*args, **kwargs)
        out = fn(*(_to_torch(a) for a in args), **{k: _to_torch(v) for k, v in kwargs.items()})
        return _to_numpy(out)

    return wrapper
