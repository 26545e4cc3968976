"""Read official SMPL .pkl files without chumpy and without running arbitrary code.

SMPL v1.0/v1.1 pickles hold numpy arrays, a scipy.sparse CSC joint regressor and (v1.0)
chumpy ``Ch`` objects whose state carries the array under ``'x'``. A pickle can name any
importable callable, so we never use ``pickle.load`` on a user's file: this unpickler
resolves only an explicit allow-list and maps every chumpy class to an inert stand-in.
Anything else is refused before it is called.
"""
from __future__ import annotations

import codecs
import copyreg
import io
import pickle
from typing import Any

import numpy as np

from .errors import ModelFileError, UnsafePickleError


class ChumpyStandIn:
    """Inert replacement for chumpy objects: keeps their pickled state, nothing else."""

    def __init__(self, *args, **kwargs):
        self.state = None

    def __setstate__(self, state):
        self.state = state

    def to_array(self) -> np.ndarray:
        state = self.state
        if isinstance(state, dict):
            for key in ("x", "_x", "a"):
                if key in state:
                    value = state[key]
                    return value.to_array() if isinstance(value, ChumpyStandIn) else np.asarray(value)
        raise ModelFileError(
            "This SMPL pickle holds a chumpy expression that is not a plain array; "
            "re-save the model as .npz (numpy arrays) and point LSMPLify at that file.")


def _numpy_reconstruct():
    try:  # numpy >= 2 moved the private module; files may name either.
        from numpy._core.multiarray import _reconstruct, scalar  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - depends on numpy version
        from numpy.core.multiarray import _reconstruct, scalar
    return _reconstruct, scalar


def _allowed() -> dict[tuple[str, str], Any]:
    import scipy.sparse as sp

    reconstruct, scalar = _numpy_reconstruct()
    allowed: dict[tuple[str, str], Any] = {
        ("copy_reg", "_reconstructor"): copyreg._reconstructor,
        ("copyreg", "_reconstructor"): copyreg._reconstructor,
        ("__builtin__", "object"): object,
        ("builtins", "object"): object,
        ("__builtin__", "set"): set, ("builtins", "set"): set,  # chumpy state holds sets of names
        ("__builtin__", "frozenset"): frozenset, ("builtins", "frozenset"): frozenset,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        # Python 3 protocol-2 pickles spell array bytes as _codecs.encode(text, 'latin1').
        ("_codecs", "encode"): codecs.encode,
    }
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = reconstruct
        allowed[(mod, "scalar")] = scalar
    for mod in ("scipy.sparse.csc", "scipy.sparse._csc"):
        allowed[(mod, "csc_matrix")] = sp.csc_matrix
    for mod in ("scipy.sparse.csr", "scipy.sparse._csr"):
        allowed[(mod, "csr_matrix")] = sp.csr_matrix
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, **kwargs):
        super().__init__(file, **kwargs)
        self._allowed = _allowed()

    def find_class(self, module: str, name: str):
        if module == "chumpy" or module.startswith("chumpy."):
            return ChumpyStandIn
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"Refused to load {module}.{name} from the pickle: SMPL model files only need "
                "numpy, scipy.sparse and chumpy arrays, so this file is not a SMPL model (or has "
                "been tampered with). Nothing from it was executed. Use the official SMPL .pkl "
                "or an .npz export.") from None


def _plain(value: Any) -> Any:
    """Chumpy stand-ins to arrays, sparse matrices to dense arrays; others unchanged."""
    if isinstance(value, ChumpyStandIn):
        return value.to_array()
    if hasattr(value, "toarray") and hasattr(value, "tocsr"):
        return np.asarray(value.toarray())
    return value


def load_smpl_pickle(data: bytes) -> dict[str, Any]:
    """Unpickle SMPL model bytes into a dict of plain numpy arrays (and strings)."""
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # truncated or corrupt stream
        raise ModelFileError(
            f"Could not read the pickle ({type(exc).__name__}: {exc}); the file is damaged or "
            "not a SMPL model. Download the model again or use an .npz export.") from None
    if not isinstance(obj, dict):
        raise ModelFileError(
            f"The pickle holds a {type(obj).__name__}, not the dict of arrays a SMPL model file holds.")
    return {str(k): _plain(v) for k, v in obj.items()}
