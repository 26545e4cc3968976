"""Writers for SMPL-style pickles in the tests: realistic v1.0 (chumpy) and v1.1 files made
from the open model's arrays, Python 2 byte strings, and crafted (hostile) variants."""

import contextlib
import io
import pickle
import struct
import sys
import types

import numpy as np
import scipy.sparse as sp


def fake_chumpy():
    """Stand-in 'chumpy' modules so we can WRITE a pickle like SMPL v1.0's (chumpy's Ch
    pickles its __dict__ minus caches: the array under 'x' plus bookkeeping)."""
    ch_mod = types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x, crafted_state=None):
            self.x, self.crafted_state = x, crafted_state

        def __getstate__(self):
            if self.crafted_state is not None:
                return self.crafted_state
            return {"x": self.x, "_dirty_vars": set(), "_itr": None, "_depends_on_deps": {}}

    Ch.__module__ = "chumpy.ch"
    Ch.__qualname__ = "Ch"
    ch_mod.Ch = Ch
    pkg = types.ModuleType("chumpy")
    pkg.ch = ch_mod
    return pkg, ch_mod, Ch


class _Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 ``str`` (SHORT_BINSTRING/BINSTRING), as SMPL's own files
    were written by Python 2's cPickle at protocol 2."""

    dispatch = dict(pickle._Pickler.dispatch)  # noqa: RUF012 (pickle's own class-level table)

    def save_py2_str(self, obj, original=None):
        n = len(obj)
        self.write((b"U" + bytes([n]) if n < 256 else b"T" + struct.pack("<i", n)) + obj)
        self.memoize(obj if original is None else original)

    def save_text(self, obj):  # ASCII text was a py2 str too (dict keys, 'lbs')
        if obj.isascii():
            self.save_py2_str(obj.encode(), obj)
        else:
            pickle._Pickler.save_str(self, obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_text


def _dumps(obj, protocol, py2):
    if not py2:
        return pickle.dumps(obj, protocol=protocol)
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    # SMPL's files name the scipy modules of their time
    return buf.getvalue().replace(b"scipy.sparse._csc", b"scipy.sparse.csc")


def smpl_dict(data, chumpy_cls=None, posedirs=None, with_posedirs=True):
    wrap = chumpy_cls or (lambda a: a)
    kintree = np.stack([np.r_[4294967295, data.parents[1:]], np.arange(24)]).astype(np.uint32)
    return {
        "v_template": wrap(data.v_template.astype(np.float64)),
        "shapedirs": wrap(data.shapedirs.astype(np.float64)),
        "posedirs": wrap(np.zeros((data.num_vertices, 3, 207)) if posedirs is None else posedirs),
        "J_regressor": sp.csc_matrix(data.J_regressor.astype(np.float64)),
        "J_regressor_prior": sp.csc_matrix(data.J_regressor.astype(np.float64)),
        "weights": wrap(data.weights.astype(np.float64)),
        "kintree_table": kintree,
        "J": (data.J_regressor.astype(np.float64) @ data.v_template),
        "f": data.faces.astype(np.uint32),
        "bs_type": "lrotmin",
        "bs_style": "lbs",
        "pose_training_info": {"num_poses": 1786, "subjects": ["a", "b"]},
    } | ({} if with_posedirs else {"posedirs": None})


def without_none(d):
    return {k: v for k, v in d.items() if v is not None}


def smpl_v10_bytes(data, protocol=2, py2=True, **kw):
    """A pickle shaped like SMPL v1.0: chumpy arrays, CSC regressors."""
    pkg, ch_mod, Ch = fake_chumpy()
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = pkg, ch_mod
    try:
        return _dumps(without_none(smpl_dict(data, Ch, **kw)), protocol, py2)
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]


def smpl_v11_bytes(data, protocol=2, py2=True, **kw):
    """A pickle shaped like SMPL v1.1: numpy arrays and CSC regressors, no chumpy."""
    return _dumps(without_none(smpl_dict(data, **kw)), protocol, py2)


class Reduced:
    """Pickles as ``func(*args)`` (with an optional BUILD state): how crafted files are made."""

    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


@contextlib.contextmanager
def chumpy_modules():
    """Register the stand-in chumpy while a crafted pickle is written; yields its Ch."""
    pkg, ch_mod, Ch = fake_chumpy()
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = pkg, ch_mod
    try:
        yield Ch
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]


def chumpy_with_state(Ch, state):
    """A chumpy Ch pickled as NEWOBJ + BUILD(state), whatever the state holds."""
    return Ch(None, state)


def unicode_op(text):
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def top_dict(key, value_ops):
    """A protocol-2 pickle of {key: <value built by value_ops>}."""
    return b"\x80\x02}" + unicode_op(key) + value_ops + b"s."
