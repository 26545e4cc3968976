"""SMPL .pkl files load without chumpy; anything outside the allow-list is refused unexecuted."""
import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse as sp

from lsmplify_blender.core.body_model import load_model_data
from lsmplify_blender.core.errors import ModelFileError, UnsafePickleError
from lsmplify_blender.core.safe_pickle import load_smpl_pickle


def _fake_chumpy():
    """Register stand-in 'chumpy' modules so we can WRITE a pickle like SMPL v1.0's."""
    ch_mod = types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.x = x

        def __getstate__(self):
            return {"x": self.x, "_dirty_vars": set()}

    Ch.__module__ = "chumpy.ch"
    Ch.__qualname__ = "Ch"
    ch_mod.Ch = Ch
    pkg = types.ModuleType("chumpy")
    pkg.ch = ch_mod
    return pkg, ch_mod, Ch


def write_smpl_v10_pickle(path, data):
    """A pickle shaped like SMPL v1.0: chumpy arrays, a sparse CSC regressor, protocol 2."""
    pkg, ch_mod, Ch = _fake_chumpy()
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = pkg, ch_mod
    try:
        obj = {
            "v_template": Ch(data.v_template.astype(np.float64)),
            "shapedirs": Ch(data.shapedirs.astype(np.float64)),
            "posedirs": np.zeros((data.num_vertices, 3, 207), np.float32),
            "J_regressor": sp.csc_matrix(data.J_regressor.astype(np.float64)),
            "weights": Ch(data.weights.astype(np.float64)),
            "kintree_table": np.stack([np.r_[4294967295, data.parents[1:]], np.arange(24)]).astype(np.int64),
            "f": data.faces.astype(np.uint32),
            "bs_type": "lrotmin", "bs_style": "lbs",
        }
        path.write_bytes(pickle.dumps(obj, protocol=2))
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]


def test_smpl_v10_style_pickle_loads_without_chumpy(tmp_path, model_data):
    assert "chumpy" not in sys.modules
    p = tmp_path / "SMPL_TEST_NEUTRAL.pkl"
    write_smpl_v10_pickle(p, model_data)
    loaded = load_model_data(p)
    assert "chumpy" not in sys.modules
    np.testing.assert_allclose(loaded.v_template, model_data.v_template, atol=1e-6)
    np.testing.assert_allclose(loaded.shapedirs, model_data.shapedirs, atol=1e-6)
    np.testing.assert_allclose(loaded.J_regressor, model_data.J_regressor, atol=1e-6)
    assert tuple(loaded.parents) == tuple(model_data.parents)
    assert loaded.posedirs is None  # all-zero correctives are dropped


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ("touch /tmp/lsmplify_pwned",))


def test_malicious_pickle_is_refused_and_not_executed(tmp_path):
    import os
    marker = "/tmp/lsmplify_pwned"
    if os.path.exists(marker):
        os.remove(marker)
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps({"v_template": _Evil()}, protocol=2))
    with pytest.raises(UnsafePickleError, match="posix.system|os.system|Refused"):
        load_model_data(p)
    assert not os.path.exists(marker)


def test_builtins_eval_via_reduce_is_refused():
    payload = pickle.dumps({"x": eval}, protocol=2)
    with pytest.raises(UnsafePickleError):
        load_smpl_pickle(payload)


def test_truncated_pickle_gives_model_file_error(tmp_path, model_data):
    p = tmp_path / "SMPL_TRUNC.pkl"
    write_smpl_v10_pickle(p, model_data)
    p.write_bytes(p.read_bytes()[:5000])
    with pytest.raises(ModelFileError):
        load_model_data(p)


def test_non_dict_pickle_refused():
    with pytest.raises(ModelFileError, match="not the dict"):
        load_smpl_pickle(pickle.dumps([1, 2, 3]))
