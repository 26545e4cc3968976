"""Every bad input gets the project's own error type, a message that says what to do, and
leaves nothing behind: the output file is never created (issue 5's list, core side)."""

import json
import pickle
import re

import numpy as np
import pytest
import torch
from conftest import FIXTURES, smooth_pose

from lsmplify_blender.core.cli import main
from lsmplify_blender.core.errors import InputError, LayoutError, ModelFileError, UnsafePickleError
from lsmplify_blender.core.layouts import SMPL24


def _walk_kp(model, n=40):
    rot = smooth_pose(n, seed=21, scale=0.4)
    rot[:, 0] = torch.eye(3)
    return SMPL24.generate(model, rot, torch.zeros(10)).numpy().astype(np.float64)


def _convert(tmp_path, capsys, src, *extra):
    out = tmp_path / "out.npz"
    code = main(
        [
            "convert",
            str(src),
            "--out",
            str(out),
            "--solver",
            "analytic",
            "--quiet",
            *map(str, extra),
        ]
    )
    stdout, stderr = capsys.readouterr()
    return code, stdout, stderr, out


def _pipeline(path, model, **kw):
    from lsmplify_blender.core.formats import read_keypoints
    from lsmplify_blender.core.prepare import prepare
    from lsmplify_blender.core.solver import solve

    return solve(prepare(read_keypoints(path), model, **kw), model)


def _bad_files(tmp_path, model):
    kp = _walk_kp(model)
    names = np.array(SMPL24.keypoints)
    cases = {}
    (tmp_path / "empty.csv").write_text("")
    cases["empty csv"] = (tmp_path / "empty.csv", InputError, "empty")
    (tmp_path / "empty.npy").write_bytes(b"")
    cases["empty npy"] = (tmp_path / "empty.npy", InputError, None)
    bvh = (FIXTURES / "01_01_short.bvh").read_text()
    (tmp_path / "cut.bvh").write_text(bvh[: bvh.index("MOTION") - 200])
    cases["truncated bvh"] = (tmp_path / "cut.bvh", InputError, None)
    np.save(tmp_path / "flat.npy", kp[..., :2])
    cases["wrong shape"] = (tmp_path / "flat.npy", InputError, None)
    np.save(tmp_path / "nineteen.npy", kp[:, :19])
    cases["unknown joint count"] = (tmp_path / "nineteen.npy", LayoutError, "--layout")
    header = ",".join(f"{n}_{c}" for n in names for c in "xyz")
    rows = [",".join(map(str, r.ravel())) for r in kp[:3]]
    rows[1] = rows[1].replace(rows[1].split(",")[4], "abc", 1)
    (tmp_path / "text.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    cases["text in numeric column"] = (tmp_path / "text.csv", InputError, None)
    np.savez(tmp_path / "nan.npz", keypoints=np.full_like(kp, np.nan), joint_names=names)
    cases["everything missing"] = (tmp_path / "nan.npz", InputError, "missing")
    weird = kp.copy()
    for j in ("left_knee", "left_ankle", "left_foot"):
        k = SMPL24.keypoints.index(j)
        weird[:, k] = kp[:, 1] + (kp[:, k] - kp[:, 1]) * 3
    np.savez(tmp_path / "alien.npz", keypoints=weird, joint_names=names, units="m", up="y")
    cases["not human-like"] = (tmp_path / "alien.npz", InputError, "human skeleton")
    np.savez(
        tmp_path / "names.npz",
        keypoints=kp[:, :10],
        joint_names=np.array([f"marker{i}" for i in range(10)]),
    )
    cases["undetectable names"] = (tmp_path / "names.npz", LayoutError, "marker0")
    return cases


def test_each_bad_keypoint_file_gets_its_error_and_writes_nothing(tmp_path, capsys, model):
    for label, (path, err_type, words) in _bad_files(tmp_path, model).items():
        with pytest.raises(err_type, match=words) as info:
            _pipeline(path, model)
        assert len(str(info.value)) > 20, label
        code, out, err, out_path = _convert(tmp_path, capsys, path)
        assert code == 2 and out == "" and "Traceback" not in err, label
        assert err.startswith("lsmplify: error:"), label
        assert not out_path.exists(), label


def test_per_joint_nan_and_inf_are_missing_not_fatal(tmp_path, capsys, model):
    kp = _walk_kp(model)
    kp[5, 3] = np.nan
    kp[7, 10] = np.inf
    kp[:, 22] = np.nan  # a joint never seen
    np.savez(
        tmp_path / "holes.npz",
        keypoints=kp,
        joint_names=np.array(SMPL24.keypoints),
        units="m",
        up="y",
    )
    code, out, err, out_path = _convert(tmp_path, capsys, tmp_path / "holes.npz")
    assert code == 0, err
    assert json.loads(out)["fit_error_mm_mean"] < 2.0 and out_path.exists()


@pytest.mark.parametrize(("factor", "unit"), [(10, "cmu"), (100, "cm"), (1000, "mm")])
def test_units_off_by_powers_of_ten_are_detected_and_reported(
    tmp_path, capsys, model, factor, unit
):
    kp = _walk_kp(model) * (factor if unit != "cmu" else 1 / 0.05644)
    np.save(tmp_path / "scaled.npy", kp)
    code, out, err, _ = _convert(tmp_path, capsys, tmp_path / "scaled.npy")
    assert code == 0, err
    assert json.loads(out)["units"] == unit


def test_y_up_and_z_up_inputs_give_the_same_fit(tmp_path, capsys, model):
    kp = _walk_kp(model)
    np.save(tmp_path / "y.npy", kp)
    np.save(tmp_path / "z.npy", np.stack([kp[..., 0], -kp[..., 2], kp[..., 1]], -1))
    _, out_y, _, p = _convert(tmp_path, capsys, tmp_path / "y.npy")
    poses_y = np.load(p)["poses"]
    _, out_z, _, p = _convert(tmp_path, capsys, tmp_path / "z.npy")
    assert json.loads(out_y)["up"] == "y" and json.loads(out_z)["up"] == "z"
    np.testing.assert_allclose(np.load(p)["poses"], poses_y, atol=1e-4)


def test_existing_output_is_replaced_atomically_not_half_written(tmp_path, capsys, model):
    np.save(tmp_path / "in.npy", _walk_kp(model))
    out = tmp_path / "out.npz"
    out.write_bytes(b"user's earlier result")
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 19, 3)))
    code, *_ = _convert(tmp_path, capsys, bad)
    assert code == 2 and out.read_bytes() == b"user's earlier result"  # a failed run keeps it


@pytest.mark.parametrize(
    ("make", "err_type"),
    [
        (
            lambda p, d: np.savez(p, keypoints=np.zeros((2, 24, 3))),
            ModelFileError,
        ),  # not a SMPL file
        (lambda p, d: p.write_bytes(b"PK\x03\x04broken"), ModelFileError),  # truncated npz
    ],
)
def test_bad_model_files(tmp_path, capsys, model, model_data, make, err_type):
    bad = tmp_path / "model.npz"
    make(bad, model_data)
    np.save(tmp_path / "in.npy", _walk_kp(model))
    from lsmplify_blender.core.body_model import load_model_data

    with pytest.raises(err_type):
        load_model_data(bad)
    code, _out, err, out_path = _convert(tmp_path, capsys, tmp_path / "in.npy", "--model", bad)
    assert code == 2 and not out_path.exists() and "Traceback" not in err


def test_malicious_model_pickle_is_refused_through_the_cli(tmp_path, capsys, model):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    bad = tmp_path / "SMPL_NEUTRAL.pkl"
    bad.write_bytes(pickle.dumps({"v_template": Evil()}, protocol=2))
    np.save(tmp_path / "in.npy", _walk_kp(model))
    from lsmplify_blender.core.body_model import load_model_data

    with pytest.raises(UnsafePickleError):
        load_model_data(bad)
    code, _out, err, out_path = _convert(tmp_path, capsys, tmp_path / "in.npy", "--model", bad)
    assert code == 2 and "Refused" in err and not marker.exists() and not out_path.exists()


# ------------------------------------------------------------------ broken and hostile model files


def _open_arrays():
    from lsmplify_blender.core.body_model import OPEN_MODEL_PATH

    with np.load(OPEN_MODEL_PATH) as z:
        return {k: z[k] for k in z.files}


def _model_npz(path, **change):
    arrays = _open_arrays()
    arrays.update(change)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def _meta(**fields):
    return np.array(json.dumps({"name": "test model"} | fields))


_A = _open_arrays()
BROKEN_MODELS = {
    "zero J_regressor": (
        dict(J_regressor=np.zeros_like(_A["J_regressor"])),
        r"J_regressor row 0 sums to 0",
    ),
    "NaN J_regressor": (
        dict(J_regressor=np.full_like(_A["J_regressor"], np.nan)),
        r"'J_regressor' contains NaN",
    ),
    "zero v_template": (dict(v_template=np.zeros_like(_A["v_template"])), r"0 m tall"),
    "NaN v_template": (dict(v_template=_A["v_template"] * np.nan), r"'v_template' contains NaN"),
    "zero weights": (dict(weights=np.zeros_like(_A["weights"])), r"sum to 1 per vertex"),
    "NaN weights": (dict(weights=_A["weights"] * np.nan), r"'weights' contains NaN"),
    "NaN posedirs": (
        dict(posedirs=np.full((_A["v_template"].shape[0], 3, 207), np.nan, np.float32)),
        r"'posedirs' contains NaN",
    ),
    "shapedirs x 1e30": (
        dict(shapedirs=_A["shapedirs"].astype(np.float64) * 1e30),
        r"'shapedirs' has values up to",
    ),
    "model in millimetres": (
        dict(v_template=_A["v_template"] * 1000),
        r"'v_template' has values up to",
    ),
    "complex v_template": (
        dict(v_template=_A["v_template"].astype(np.complex64)),
        r"'v_template' has dtype complex64",
    ),
    "datetime faces": (dict(f=_A["f"].astype("datetime64[s]")), r"'f' has dtype datetime64"),
    "text weights": (
        dict(weights=_A["weights"].astype(str)),
        r"'weights' is dtype <U\d+, not a numeric array",
    ),
    "float faces": (dict(f=_A["f"].astype(np.float32)), r"faces \('f'\) must be vertex numbers"),
    "negative landmark id": (
        dict(landmark_ids=_A["landmark_ids"] - 10**6),
        r"landmark ids must be vertex numbers",
    ),
    "landmark id past the end": (
        dict(landmark_ids=_A["landmark_ids"] + 10**6),
        r"landmark ids must be vertex",
    ),
    "meta name is an object": (
        dict(meta_json=_meta(name={"a": 1})),
        r"meta_json 'name' must be text, not dict",
    ),
    "meta gender is a list": (
        dict(meta_json=_meta(gender=["male"])),
        r"meta_json 'gender' must be text",
    ),
    "meta 100k deep": (
        dict(meta_json=np.array('{"a":' * 100_000 + "1" + "}" * 100_000)),
        r"meta_json is not valid JSON \(RecursionError",
    ),
    "meta 5000-digit integer": (
        dict(meta_json=np.array('{"n": ' + "9" * 5000 + "}")),
        r"meta_json is not valid JSON",
    ),
    "meta not JSON": (dict(meta_json=np.array("{name: x")), r"meta_json is not valid JSON"),
    "meta a list": (dict(meta_json=np.array("[1, 2]")), r"meta_json must be a JSON object"),
}


@pytest.mark.parametrize("case", list(BROKEN_MODELS))
def test_broken_model_is_refused_at_load(tmp_path, case):
    from lsmplify_blender.core.body_model import load_model_data

    change, pattern = BROKEN_MODELS[case]
    with pytest.raises(ModelFileError, match=pattern):
        load_model_data(_model_npz(tmp_path / "model.npz", **change))


def test_broken_model_through_the_cli_exits_2_and_writes_nothing(tmp_path, capsys, model):
    bad = _model_npz(tmp_path / "model.npz", weights=np.zeros_like(_A["weights"]))
    np.save(tmp_path / "in.npy", _walk_kp(model))
    code, out, err, out_path = _convert(tmp_path, capsys, tmp_path / "in.npy", "--model", bad)
    assert code == 2 and out == "" and "sum to 1 per vertex" in err and not out_path.exists()


def _declare_size(path, member, size):
    """Patch an .npz's zip directory so ``member`` declares ``size`` uncompressed bytes (a bomb's
    header: the data itself would be zeros compressing ~1000:1)."""
    import zipfile

    blob = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    name = member.encode()
    at = blob.find(b"PK\x01\x02", 0)
    while at >= 0:
        n = int.from_bytes(blob[at + 28 : at + 30], "little")
        if blob[at + 46 : at + 46 + n] == name:
            blob[at + 24 : at + 28] = size.to_bytes(4, "little")
            break
        at = blob.find(b"PK\x01\x02", at + 4)
    assert at >= 0 and info.file_size != size
    path.write_bytes(bytes(blob))


def test_npz_member_declaring_gigabytes_is_refused_before_reading(tmp_path):
    from lsmplify_blender.core.body_model import load_model_data

    p = _model_npz(tmp_path / "model.npz", junk=np.zeros(1000, np.float32))
    _declare_size(p, "junk.npy", 0xF000_0000)  # 3.75 GiB in an unused key
    with pytest.raises(ModelFileError, match=r"zip bomb"):
        load_model_data(p)


def test_npy_header_declaring_more_than_the_member_holds_is_refused(tmp_path):
    from lsmplify_blender.core.body_model import load_model_data

    p = _model_npz(tmp_path / "model.npz")
    blob = p.read_bytes()
    old = b"'shape': (%d, 3)" % _A["v_template"].shape[0]
    assert old in blob  # np.savez stores members uncompressed: the header is in plain sight
    new = b"'shape': (%d, 9)" % (
        10 ** len(str(_A["v_template"].shape[0])) - 1
    )  # same length: offsets hold
    p.write_bytes(blob.replace(old, new, 1))
    with pytest.raises(
        ModelFileError,
        match=r"'v_template': its header declares \d+ bytes of data but the file holds",
    ):
        load_model_data(p)


def test_unused_npz_members_are_never_decompressed(tmp_path):
    import tracemalloc

    from lsmplify_blender.core.body_model import load_model_data

    arrays = _open_arrays() | {"junk": np.zeros(2**24, np.float32)}  # 64 MiB, ~64 KiB compressed
    p = tmp_path / "model.npz"
    np.savez_compressed(p, **arrays)
    assert p.stat().st_size < 8 * 2**20
    tracemalloc.start()
    try:
        data = load_model_data(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert data.num_vertices == _A["v_template"].shape[0]
    assert peak < 40 * 2**20, f"peak {peak / 2**20:.0f} MiB: the unused 64 MiB member was read"


# ------------------------------------------------------------------ implausible takes are refused with the reason


@pytest.mark.parametrize(
    ("change", "extra", "words"),
    [
        (
            lambda kp: kp * 1e6,
            (),
            r"span 1\.\d+e\+03 m per frame when read as mm",
        ),  # micrometres read as mm
        (lambda kp: kp + 1e12, ("--units", "m"), r"1\.73e\+09 km from the origin"),
        (
            lambda kp: kp * np.array([-1.0, 1.0, 1.0]),
            ("--units", "m"),
            r"Left and right look swapped",
        ),
    ],
)
def test_implausible_takes_are_refused(tmp_path, capsys, model, change, extra, words):
    kp = change(_walk_kp(model))
    np.savez(tmp_path / "odd.npz", keypoints=kp, joint_names=np.array(SMPL24.keypoints), up="y")
    code, out, err, out_path = _convert(tmp_path, capsys, tmp_path / "odd.npz", *extra)
    assert code == 2 and out == "" and re.search(words, err), err
    assert not out_path.exists()


def test_a_plausible_take_passes_the_checks(tmp_path, capsys, model):
    np.savez(
        tmp_path / "ok.npz",
        keypoints=_walk_kp(model),
        joint_names=np.array(SMPL24.keypoints),
        up="y",
    )
    code, _out, err, out_path = _convert(tmp_path, capsys, tmp_path / "ok.npz")
    assert code == 0 and out_path.exists(), err


def test_values_of_1e300_are_refused_not_a_linalg_traceback(tmp_path, capsys, model):
    kp = _walk_kp(model) * 1e300
    np.save(tmp_path / "huge.npy", kp)
    code, _out, err, out_path = _convert(tmp_path, capsys, tmp_path / "huge.npy")
    assert (
        code == 2
        and "Traceback" not in err
        and "LinAlgError" not in err
        and err.startswith("lsmplify: error:")
    )
    assert len(err.strip().splitlines()) == 1 and not out_path.exists()


def test_keypoint_npz_bomb_is_refused_before_reading(tmp_path, model):
    from lsmplify_blender.core.formats import read_keypoints

    p = tmp_path / "bomb.npz"
    np.savez(p, keypoints=_walk_kp(model), junk=np.zeros(1000, np.float32))
    _declare_size(p, "junk.npy", 0xF000_0000)
    with pytest.raises(InputError, match=r"zip bomb"):
        read_keypoints(p)
    np.save(tmp_path / "liar.npy", _walk_kp(model))
    blob = (tmp_path / "liar.npy").read_bytes()
    (tmp_path / "liar.npy").write_bytes(
        blob.replace(b"'shape': (40,", b"'shape': (99,", 1)
    )  # same length
    with pytest.raises(InputError, match=r"header declares \d+ bytes of data but the file holds"):
        read_keypoints(tmp_path / "liar.npy")
