"""Fuzz worker for the SMPL unpickler, run in a subprocess by test_safe_pickle.py so that a
crash (SIGSEGV, abort) is an exit status, not a dead test run.

Three generators, all from the allowed classes: random opcode streams; mutated valid
pickles (protocols 0-5, chumpy, CSC); and random sparse matrices whose parts are in or out
of range, checked against scipy's own validated matrix. Every case must either load into
plain values or raise ModelFileError. Prints a JSON summary; exits 1 on the first other
outcome, with the case that caused it.
"""

import json
import pickle
import random
import struct
import sys
import types
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lsmplify_blender.core.errors import ModelFileError
from lsmplify_blender.core.safe_pickle import load_smpl_pickle

GLOBALS = [
    b"cchumpy.ch\nCh\n",
    b"cnumpy\ndtype\n",
    b"cnumpy\nndarray\n",
    b"cnumpy.core.multiarray\n_reconstruct\n",
    b"cnumpy.core.multiarray\nscalar\n",
    b"cnumpy.core.numeric\n_frombuffer\n",
    b"cscipy.sparse._csc\ncsc_matrix\n",
    b"cscipy.sparse.csr\ncsr_matrix\n",
    b"ccopy_reg\n_reconstructor\n",
    b"c__builtin__\nobject\n",
    b"c__builtin__\nset\n",
    b"cbuiltins\nfrozenset\n",
    b"c__builtin__\nbytes\n",
    b"c_codecs\nencode\n",
]
TEXTS = [
    "f8",
    "f4",
    "i4",
    "u4",
    "b1",
    "i8",
    "O8",
    "V8",
    "c16",
    "M8",
    "U2",
    "<",
    ">",
    "|",
    "=",
    "C",
    "F",
    "x",
    "data",
    "indices",
    "indptr",
    "_shape",
    "shape",
    "latin1",
    "v_template",
    "J_regressor",
    "weights",
]
SIMPLE = [
    b"(",
    b")",
    b"\x85",
    b"\x86",
    b"\x87",
    b"t",
    b"l",
    b"d",
    b"]",
    b"}",
    b"a",
    b"e",
    b"s",
    b"u",
    b"\x8f",
    b"\x90",
    b"\x91",
    b"R",
    b"\x81",
    b"\x92",
    b"b",
    b"0",
    b"1",
    b"2",
    b"N",
    b"\x88",
    b"\x89",
    b"\x94",
    b"\x98",
]


def _text(t):
    raw = t.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def random_stream(rng: random.Random) -> bytes:
    out = [b"\x80" + bytes([rng.choice([2, 4, 5])]), b"}"]
    for _ in range(rng.randint(1, 60)):
        r = rng.random()
        if r < 0.15:
            out.append(rng.choice(GLOBALS))
        elif r < 0.3:
            out.append(_text(rng.choice(TEXTS)))
        elif r < 0.4:
            out.append(
                b"K" + bytes([rng.randrange(256)])
                if rng.random() < 0.7
                else b"J" + struct.pack("<i", rng.randint(-(2**31), 2**31 - 1))
            )
        elif r < 0.5:
            n = rng.choice([0, 1, 2, 4, 8, 12, 24, 48])
            out.append(b"C" + bytes([n]) + bytes(rng.randrange(256) for _ in range(n)))
        elif r < 0.58:
            out.append(rng.choice([b"q", b"h"]) + bytes([rng.randrange(8)]))
        elif r < 0.6:
            out.append(
                rng.choice([b"r", b"j"])
                + struct.pack("<I", rng.choice([0, 1, 7, 2**28, 2**32 - 1]))
            )
        else:
            out.append(rng.choice(SIMPLE))
    out.append(b".")
    return b"".join(out)


def _fake_chumpy():
    mod = types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.x = x

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    mod.Ch = Ch
    pkg = types.ModuleType("chumpy")
    pkg.ch = mod
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = pkg, mod
    return Ch


def seeds() -> list[bytes]:
    Ch = _fake_chumpy()
    rng = np.random.default_rng(0)
    m = sp.random(6, 9, density=0.3, format="csc", random_state=0)
    obj = {
        "v_template": Ch(rng.normal(size=(4, 3))),
        "J_regressor": m,
        "R": m.tocsr(),
        "f": np.arange(6, dtype=np.uint32),
        "s": np.float32(1.5),
        "e": np.zeros((0, 3)),
        "bs_style": "lbs",
        "info": {"n": [1, 2.5, None], "k": {"a"}},
    }
    return [pickle.dumps(obj, protocol=p) for p in range(6)]


def mutate(rng: random.Random, blob: bytes) -> bytes:
    b = bytearray(blob)
    for _ in range(rng.randint(1, 4)):
        op, i = rng.random(), rng.randrange(len(b))
        if op < 0.5:
            b[i] = rng.randrange(256)
        elif op < 0.7:
            del b[i : i + rng.randint(1, 8)]
        elif op < 0.9:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        else:
            del b[i:]
        if not b:
            b = bytearray(b".")
    return bytes(b)


def sparse_case(rng: np.random.Generator):
    """Random CSC/CSR parts, valid or broken; the expected dense matrix or None (refused)."""
    rows, cols = int(rng.integers(0, 6)), int(rng.integers(0, 6))
    fmt = rng.choice(["csc", "csr"])
    major, minor = (cols, rows) if fmt == "csc" else (rows, cols)
    counts = rng.integers(0, 3, major)
    indptr = np.r_[0, np.cumsum(counts)].astype(rng.choice([np.int32, np.int64, np.uint64]))
    nnz = int(indptr[-1])
    indices = rng.integers(0, max(minor, 1), nnz).astype(np.int32)
    data = rng.normal(size=nnz)
    broken = rng.random() < 0.5
    if broken and nnz:
        k = rng.integers(0, 4)
        if k == 0:
            indices[rng.integers(nnz)] = rng.choice([-1, minor, 10**6, 2**31 - 1])
        elif k == 1 and major > 1:
            indptr[1], indptr[-2] = indptr[-2] + 1, 0
        elif k == 2:
            indptr = indptr[:-1]
        else:
            data = data[:-1]
    cls = sp.csc_matrix if fmt == "csc" else sp.csr_matrix
    try:
        ref = cls((data, indices, indptr), shape=(rows, cols))
        ref.check_format(full_check=True)
        expected = ref.toarray()
    except (ValueError, IndexError):
        expected = None
    obj = cls(
        (np.zeros(0), np.zeros(0, np.int32), np.zeros(major + 1, np.int32)), shape=(rows, cols)
    )
    obj.data, obj.indices, obj.indptr = data, indices, indptr  # the attribute-dict form
    return pickle.dumps({"J_regressor": obj}, protocol=int(rng.integers(0, 6))), expected


def check_plain(value, depth=0):
    if isinstance(value, np.ndarray):
        assert value.dtype.kind in "biuf" and value.dtype.isnative, value.dtype
    elif isinstance(value, (list, tuple)):
        for v in value:
            check_plain(v, depth + 1)
    elif isinstance(value, dict):
        for v in value.values():
            check_plain(v, depth + 1)
    else:
        assert isinstance(
            value, (str, bytes, int, float, type(None), set, frozenset, np.generic, np.dtype)
        ), type(value)


def run_case(blob: bytes, counts: dict, expected="any") -> None:
    try:
        out = load_smpl_pickle(blob)
    except ModelFileError:
        counts["refused"] += 1
        if expected is not None and not isinstance(expected, str):
            raise AssertionError("a valid sparse matrix was refused") from None
        return
    check_plain(out)
    if isinstance(expected, np.ndarray) or expected is None:
        if expected is None:
            raise AssertionError("a broken sparse matrix loaded")
        np.testing.assert_array_equal(out["J_regressor"], expected)
    counts["loaded"] += 1


def main(n: int) -> int:
    rng, nrng = random.Random(12), np.random.default_rng(12)
    counts = {"loaded": 0, "refused": 0}
    base = seeds()
    cases = [("stream", lambda: (random_stream(rng), "any")) for _ in range(n)]
    cases += [("mutant", lambda: (mutate(rng, rng.choice(base)), "any")) for _ in range(n)]
    cases += [("sparse", lambda: sparse_case(nrng)) for _ in range(n // 4)]
    for kind, make in cases:
        blob, expected = make()
        try:
            run_case(blob, counts, expected)
        except Exception as exc:  # noqa: BLE001 (the worker reports every escape to the test)
            print(
                json.dumps(
                    {
                        "failed": kind,
                        "error": f"{type(exc).__name__}: {exc}",
                        "case": blob.hex()[:4000],
                    }
                )
            )
            return 1
    print(json.dumps(counts | {"cases": len(cases)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1500))
