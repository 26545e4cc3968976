"""SMPL .pkl files load without chumpy or scipy; nothing in a pickle is called, and crafted
files that use only allowed classes end in ModelFileError without touching memory they
do not own (issue 12: out-of-bounds CSC indices, attribute-dict CSC, __array_interface__,
object-field dtypes, LONG_BINPUT 2**28, recursion bombs)."""

import json
import os
import pickle
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import ROOT
from pickle_craft import (
    Reduced,
    chumpy_modules,
    chumpy_with_state,
    smpl_dict,
    smpl_v10_bytes,
    smpl_v11_bytes,
    top_dict,
    unicode_op,
    without_none,
)

from lsmplify_blender.core.body_model import load_model_data
from lsmplify_blender.core.errors import ModelFileError, UnsafePickleError
from lsmplify_blender.core.safe_pickle import load_smpl_pickle

try:
    from numpy.core.multiarray import _reconstruct, scalar
except ImportError:  # pragma: no cover - numpy 2
    from numpy._core.multiarray import _reconstruct, scalar


def write_smpl_v10_pickle(path, data):
    """Kept for other tests: a SMPL v1.0-style file (chumpy, CSC, Python 2 protocol 2)."""
    path.write_bytes(smpl_v10_bytes(data))


def _assert_same_model(loaded, data):
    np.testing.assert_allclose(loaded.v_template, data.v_template, atol=1e-6)
    np.testing.assert_allclose(loaded.shapedirs, data.shapedirs, atol=1e-6)
    np.testing.assert_allclose(loaded.J_regressor, data.J_regressor, atol=1e-6)
    np.testing.assert_allclose(loaded.weights, data.weights, atol=1e-6)
    np.testing.assert_array_equal(loaded.faces, data.faces)
    assert tuple(loaded.parents) == tuple(data.parents)


# ------------------------------------------------------------------ well-formed files load


def test_smpl_v10_style_pickle_loads_without_chumpy(tmp_path, model_data):
    assert "chumpy" not in sys.modules
    p = tmp_path / "SMPL_TEST_NEUTRAL.pkl"
    write_smpl_v10_pickle(p, model_data)
    assert b"U\x01x" in p.read_bytes() and b"chumpy.ch" in p.read_bytes()  # Python 2 str, chumpy
    loaded = load_model_data(p)
    assert "chumpy" not in sys.modules
    _assert_same_model(loaded, model_data)
    assert loaded.posedirs is None  # all-zero correctives are dropped


def test_smpl_v11_style_pickle_loads(tmp_path, model_data):
    posedirs = (
        np.random.default_rng(0)
        .normal(0, 1e-3, (model_data.num_vertices, 3, 207))
        .astype(np.float32)
    )
    p = tmp_path / "SMPL_NEUTRAL.pkl"
    p.write_bytes(smpl_v11_bytes(model_data, posedirs=posedirs))
    assert b"scipy.sparse.csc" in p.read_bytes()
    loaded = load_model_data(p)
    _assert_same_model(loaded, model_data)
    np.testing.assert_allclose(loaded.posedirs, posedirs, atol=1e-6)


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_every_protocol_loads(tmp_path, model_data, protocol):
    p = tmp_path / f"SMPL_p{protocol}.pkl"
    p.write_bytes(smpl_v11_bytes(model_data, protocol=protocol, py2=False, with_posedirs=False))
    _assert_same_model(load_model_data(p), model_data)


def test_protocol5_v10_and_empty_arrays_at_protocol2():
    with chumpy_modules() as Ch:
        blob = pickle.dumps({"a": Ch(np.arange(6.0).reshape(2, 3))}, protocol=5)
    assert load_smpl_pickle(blob)["a"].tolist() == [[0, 1, 2], [3, 4, 5]]
    empty = load_smpl_pickle(
        pickle.dumps({"e": np.zeros((0, 3), np.float32), "s": np.float64(2.5)}, protocol=2)
    )
    assert empty["e"].shape == (0, 3) and empty["e"].dtype == np.float32 and empty["s"] == 2.5


def test_layouts_byte_orders_and_sparse_forms_match_numpy():
    rng = np.random.default_rng(1)
    m = sp.random(24, 50, density=0.2, format="csc", random_state=1)
    obj = {
        "f": np.asfortranarray(rng.normal(size=(4, 6))),
        "be": np.arange(5, dtype=">i4"),
        "csr": m.tocsr(),
        "csc": m,
        "b": np.array([True, False]),
        "h": np.float16([1.5]),
        "ctor": Reduced(sp.csc_matrix, ((m.data, m.indices, m.indptr), m.shape)),
    }
    out = load_smpl_pickle(pickle.dumps(obj, protocol=2))
    np.testing.assert_array_equal(out["f"], obj["f"])
    assert out["be"].tolist() == [0, 1, 2, 3, 4] and out["be"].dtype.isnative
    for key in ("csr", "csc", "ctor"):
        np.testing.assert_array_equal(out[key], m.toarray())
    assert out["b"].dtype == bool and out["h"].dtype == np.float16


def test_only_requested_keys_are_built(model_data):
    out = load_smpl_pickle(smpl_v11_bytes(model_data, with_posedirs=False), keys=["f"])
    assert list(out) == ["f"]


# ------------------------------------------------------------------ refused, nothing executed


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/lsmplify_pwned",))


def test_malicious_pickle_is_refused_and_not_executed(tmp_path):
    marker = "/tmp/lsmplify_pwned"
    if os.path.exists(marker):
        os.remove(marker)
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps({"v_template": _Evil()}, protocol=2))
    with pytest.raises(UnsafePickleError, match=r"posix\.system|os\.system"):
        load_model_data(p)
    assert not os.path.exists(marker)


def test_builtins_eval_via_reduce_is_refused():
    with pytest.raises(UnsafePickleError, match=r"builtin\w*\.eval"):
        load_smpl_pickle(pickle.dumps({"x": eval}, protocol=2))


def test_truncated_pickle_gives_model_file_error(tmp_path, model_data):
    p = tmp_path / "SMPL_TRUNC.pkl"
    write_smpl_v10_pickle(p, model_data)
    p.write_bytes(p.read_bytes()[:5000])
    with pytest.raises(ModelFileError, match="truncated"):
        load_model_data(p)


def test_non_dict_pickle_refused():
    with pytest.raises(ModelFileError, match="not the dict"):
        load_smpl_pickle(pickle.dumps([1, 2, 3]))


# ------------------------------------------------------------------ crafted files, in a subprocess

N_DEEP = 100_000


def _v11(data, **replace):
    d = without_none(smpl_dict(data, with_posedirs=False))
    d.update(replace)
    return d


def _one(**value):
    """A pickle of just the hostile entry: it is refused before any other key is looked at."""
    return pickle.dumps(value, protocol=2)


def _crafted(data) -> dict[str, tuple[bytes, str]]:
    """name -> (pickle bytes, regex the ModelFileError must match). The sparse and
    __array_interface__ cases are whole realistic models with one entry changed."""
    jreg = sp.csc_matrix(data.J_regressor.astype(np.float64))
    nv = data.num_vertices
    oob = jreg.copy()
    oob.indices[5] = 10**6  # a row far outside the 24 joints: toarray() would write there
    bad_ptr = jreg.copy()
    bad_ptr.indptr[10] = bad_ptr.indptr[11] + 5
    ctor_oob = Reduced(
        sp.csc_matrix, ((jreg.data, np.full_like(jreg.indices, 4000), jreg.indptr), (24, nv))
    )
    plain = pickle.dumps(_v11(data), protocol=2)
    cases = {
        "csc attribute dict, out-of-bounds row": (
            pickle.dumps(_v11(data, J_regressor=oob), protocol=2),
            r"J_regressor.*indices outside 0\.\.23",
        ),
        "csc constructor, out-of-bounds row": (
            pickle.dumps(_v11(data, J_regressor=ctor_oob), protocol=2),
            r"J_regressor.*indices outside 0\.\.23",
        ),
        "csc falling indptr": (
            pickle.dumps(_v11(data, J_regressor=bad_ptr), protocol=2),
            r"indptr is not",
        ),
        "long binput 2**28": (
            plain.replace(b"}q\x00", b"}r" + struct.pack("<I", 2**28), 1),
            r"memo index 268435456",
        ),
        "object array": (
            _one(weights=np.array([1, "a"], dtype=object)),
            r"weights.*(object arrays are refused|not a plain number)",
        ),
        "complex array": (
            _one(v_template=data.v_template.astype(np.complex128)),
            r"v_template.*'c16' is not a plain number",
        ),
        "datetime array": (_one(f=np.zeros(3, "datetime64[s]")), r"'f'.*'M8'"),
        "string array": (_one(f=np.array(["ab", "c"])), r"'f'.*'U2'"),
        "structured array": (
            _one(f=np.zeros(3, [("a", "<i4"), ("b", "<f8")])),
            r"'f'.*not a plain number",
        ),
        "object-field dtype scalar": (
            _one(v_template=Reduced(scalar, (np.dtype([("a", "O")]), b"\0" * 8))),
            r"v_template.*not a plain number",
        ),
        "shape larger than data": (
            _one(
                v_template=Reduced(
                    _reconstruct,
                    (np.ndarray, (0,), b"b"),
                    (1, (10**9, 3), np.dtype("f8"), False, b"\0" * 24),
                )
            ),
            r"needs 24000000000 bytes but the file gives 24",
        ),
        "ndarray subclass": (
            _one(v_template=np.matrix(data.v_template)),
            r"Refused to load numpy\.matrix",
        ),
        "nested lists 100k deep": (
            top_dict("v_template", b"]" * N_DEEP + b"a" * (N_DEEP - 1)),
            r"nested more than 64 deep",
        ),
        "5000-digit integer": (b"(dp0\nVv_template\np1\nI" + b"9" * 5000 + b"\ns.", r"more digits"),
        "bytes bomb via memo": (_bytes_bomb(), r"decompression bomb"),
    }
    with chumpy_modules() as Ch:
        aiface = {
            "__array_interface__": {
                "data": (4096, False),
                "shape": (nv, 3),
                "typestr": "<f8",
                "version": 3,
            }
        }
        cases["__array_interface__ at an address"] = (
            pickle.dumps(_v11(data, v_template=chumpy_with_state(Ch, aiface)), protocol=2),
            r"v_template.*expression, not a plain array",
        )
        cases["chumpy 'x' with __array_interface__"] = (
            _one(weights=chumpy_with_state(Ch, {"x": chumpy_with_state(Ch, aiface)})),
            r"weights.*expression, not a plain array",
        )
        ch_global = pickle.dumps(Ch, protocol=2)[2:-1]  # GLOBAL 'chumpy.ch Ch'
    new_ch = ch_global + b")\x81"
    cases["self-referencing chumpy"] = (
        top_dict(
            "v_template", new_ch + b"r\x00\x00\x00\x00}" + unicode_op("x") + b"j\x00\x00\x00\x00sb"
        ),
        r"contains itself",
    )
    cases["chumpy 100k deep"] = (
        top_dict("v_template", (new_ch + b"}" + unicode_op("x")) * N_DEEP + b"N" + b"sb" * N_DEEP),
        r"nested more than 64 deep",
    )
    return cases


def _bytes_bomb() -> bytes:
    """1 MB of text memoised once, then encoded to bytes 200 times from the memo."""
    text = "a" * 2**20
    encode = pickle.dumps(__import__("codecs").encode, protocol=2)[2:-1]
    ops = encode + b"r\x01\x00\x00\x00" + unicode_op(text) + b"r\x02\x00\x00\x00"
    once = b"j\x01\x00\x00\x00j\x02\x00\x00\x00" + unicode_op("latin1") + b"\x86R0"
    return top_dict("v_template", ops + b"0" + once * 200 + b"N")


_RUNNER = r"""
import json, sys
from pathlib import Path
from lsmplify_blender.core.errors import LSMPLifyError
from lsmplify_blender.core.model_file import check_shapes, check_values, read_raw
out = {}
for path in sys.argv[1:]:
    try:  # load_model_data's reading and checks, without importing torch in the child
        raw = read_raw(Path(path))
        check_shapes(raw, Path(path).name)
        check_values(raw, Path(path).name)
        out[path] = ["loaded", ""]
    except LSMPLifyError as exc:
        out[path] = [type(exc).__name__, str(exc)]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def crafted_results(tmp_path_factory, model_data):
    """Every crafted file loaded by the real loader in ONE subprocess: a crash (SIGSEGV)
    shows up as its exit status instead of killing the test run."""
    folder = tmp_path_factory.mktemp("crafted")
    cases, paths = _crafted(model_data), {}
    cases["control: the unmodified model"] = (pickle.dumps(_v11(model_data), protocol=2), "")
    for i, (name, (blob, _)) in enumerate(cases.items()):
        paths[name] = folder / f"SMPL_crafted_{i}.pkl"
        paths[name].write_bytes(blob)
    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER, *map(str, paths.values())],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout)
    return {name: (results[str(p)], cases[name][1]) for name, p in paths.items()}


CRAFTED_NAMES = [
    "csc attribute dict, out-of-bounds row",
    "csc constructor, out-of-bounds row",
    "csc falling indptr",
    "long binput 2**28",
    "object array",
    "complex array",
    "datetime array",
    "string array",
    "structured array",
    "object-field dtype scalar",
    "shape larger than data",
    "ndarray subclass",
    "nested lists 100k deep",
    "5000-digit integer",
    "bytes bomb via memo",
    "__array_interface__ at an address",
    "chumpy 'x' with __array_interface__",
    "self-referencing chumpy",
    "chumpy 100k deep",
]


@pytest.mark.parametrize("name", CRAFTED_NAMES)
def test_crafted_pickle_gives_model_file_error(crafted_results, name):
    (kind, message), pattern = crafted_results[name]
    assert kind in ("ModelFileError", "UnsafePickleError"), (kind, message)
    assert re.search(pattern, message), message
    assert "Nothing from it was executed" in message


def test_every_crafted_case_is_listed_and_the_control_loads(model_data, crafted_results):
    assert sorted([*CRAFTED_NAMES, "control: the unmodified model"]) == sorted(crafted_results)
    assert crafted_results["control: the unmodified model"][0] == ["loaded", ""]


def test_fuzz_random_opcode_streams_in_a_subprocess():
    """Random opcode streams, mutated valid pickles and random (broken) sparse parts: each
    loads into plain values or raises ModelFileError; the process never crashes."""
    worker = Path(__file__).resolve().parent / "fuzz_pickle_worker.py"
    proc = subprocess.run(
        [sys.executable, str(worker), os.environ.get("LSMPLIFY_PICKLE_FUZZ", "1200")],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])
    summary = json.loads(proc.stdout)
    assert summary["loaded"] > 50 and summary["refused"] > 500, summary


def test_odd_values_in_a_model_end_in_model_file_error(tmp_path, model_data):
    """None, text, dicts, lists, scalars, empty and wrong-shaped arrays where arrays belong:
    ModelFileError, never a TypeError/AttributeError/IndexError (issue 12)."""
    base = _v11(model_data)
    odd = [
        None,
        "text",
        {"a": 1},
        [[1, 2, 3]],
        3.5,
        np.float64(1.0),
        np.zeros((0,)),
        np.zeros((24, 3, 3)),
    ]
    p = tmp_path / "SMPL_ODD.pkl"
    for key in ("v_template", "J_regressor", "kintree_table"):
        for value in odd:
            p.write_bytes(pickle.dumps(base | {key: value}, protocol=2))
            with pytest.raises(ModelFileError, match=key):
                load_model_data(p)
