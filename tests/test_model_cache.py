"""A model file loaded once per process and file state (issue 15: no fixed cost per solve)."""

import os
import shutil

import numpy as np
import pytest

from lsmplify_blender.core.body_model import OPEN_MODEL_PATH, BodyModel, load_model_data
from lsmplify_blender.core.errors import ModelFileError


def test_an_unchanged_file_is_not_read_again_and_each_caller_gets_its_own_data():
    a, b = load_model_data(None), load_model_data(None)
    assert a is not b and a.v_template is b.v_template  # one validated copy of the arrays
    a.landmarks.clear()
    a.meta["name"] = "changed"
    assert b.landmarks and b.meta.get("name") != "changed"
    a.posedirs = None  # replacing a field of one copy leaves the other alone
    assert load_model_data(None).path == str(OPEN_MODEL_PATH)
    m1, m2 = BodyModel(a), BodyModel(b)
    assert np.array_equal(m1.joint_shapedirs.numpy(), m2.joint_shapedirs.numpy())


def test_a_changed_file_is_read_and_validated_again(tmp_path):
    path = tmp_path / "model.npz"
    shutil.copy(OPEN_MODEL_PATH, path)
    first = load_model_data(path)
    assert first.path == str(path)
    with np.load(OPEN_MODEL_PATH) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["v_template"] = arrays["v_template"] * np.float32(1.01)
    np.savez(path, **arrays)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a new state even on coarse clocks
    second = load_model_data(path)
    assert np.allclose(second.v_template, first.v_template * 1.01, atol=1e-6)
    arrays["v_template"] = arrays["v_template"] * np.nan  # hostile now: the check runs again
    np.savez(path, **arrays)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2 * 10**9))
    with pytest.raises(ModelFileError):
        load_model_data(path)
