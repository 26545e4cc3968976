"""Tests for the keypoint file readers (lsmplify_blender.core.formats)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lsmplify_blender.core.errors import InputError
from lsmplify_blender.core.formats import (
    read_cmu_subset,
    read_keypoints,
)
from lsmplify_blender.core.formats.acclaim import (
    acclaim_forward_kinematics,
    parse_amc,
    read_asf,
)
from lsmplify_blender.core.keypoints import KeypointSequence

FIX = Path(__file__).resolve().parent / "fixtures"
BVH = FIX / "01_01_short.bvh"
ASF = FIX / "01.asf"
AMC = FIX / "01_01_short.amc"
BVH131 = FIX / "131_01_short.bvh"
SUBSET = FIX / "walking_1_short.txt"
SKEL = FIX / "cmu_skeleton.json"

# BVH joint (CMU BVH conversion) -> ASF bone whose START is the same point
BVH_TO_ASF = {
    "Hips": "root",
    "LHipJoint": "lhipjoint",
    "LeftUpLeg": "lfemur",
    "LeftLeg": "ltibia",
    "LeftFoot": "lfoot",
    "LeftToeBase": "ltoes",
    "LeftToeBase_End": "ltoes_end",
    "RHipJoint": "rhipjoint",
    "RightUpLeg": "rfemur",
    "RightLeg": "rtibia",
    "RightFoot": "rfoot",
    "RightToeBase": "rtoes",
    "RightToeBase_End": "rtoes_end",
    "LowerBack": "lowerback",
    "Spine": "upperback",
    "Spine1": "thorax",
    "Neck": "lowerneck",
    "Neck1": "upperneck",
    "Head": "head",
    "Head_End": "head_end",
    "LeftShoulder": "lclavicle",
    "LeftArm": "lhumerus",
    "LeftForeArm": "lradius",
    "LeftHand": "lwrist",
    "LeftFingerBase": "lhand",
    "LFingers": "lfingers",
    "LFingers_End": "lfingers_end",
    "LThumb": "lthumb",
    "LThumb_End": "lthumb_end",
    "RightShoulder": "rclavicle",
    "RightArm": "rhumerus",
    "RightForeArm": "rradius",
    "RightHand": "rwrist",
    "RightFingerBase": "rhand",
    "RFingers": "rfingers",
    "RFingers_End": "rfingers_end",
    "RThumb": "rthumb",
    "RThumb_End": "rthumb_end",
}
# joints below the thorax: the BVH conversion keeps every bone length there
LOWER = [
    "Hips",
    "LeftUpLeg",
    "LeftLeg",
    "LeftFoot",
    "LeftToeBase",
    "LeftToeBase_End",
    "RightUpLeg",
    "RightLeg",
    "RightFoot",
    "RightToeBase",
    "RightToeBase_End",
    "Spine",
    "Spine1",
]


@pytest.fixture(scope="module")
def bvh():
    return read_keypoints(BVH)


@pytest.fixture(scope="module")
def amc():
    return read_keypoints(AMC, asf=ASF)


def _skeleton_names():
    return [n["name"] for n in json.loads(SKEL.read_text())["nodes"]]


# ---------------------------------------------------------------------------------------
# BVH / ASF+AMC / cmu_subset on real CMU data


def test_bvh_structure(bvh):
    assert isinstance(bvh, KeypointSequence)
    assert bvh.positions.shape == (200, 38, 3)
    assert bvh.positions.dtype == np.float64
    assert bvh.names[0] == "Hips" and len(bvh.names) == 38
    assert sum(n.endswith("_End") for n in bvh.names) == 7
    assert {"LeftUpLeg", "LeftLeg", "LeftFoot", "Head", "Head_End", "LFingers_End"} <= set(
        bvh.names
    )
    assert bvh.fps == 120.0
    assert bvh.units is None and bvh.up == "y" and bvh.layout is None
    assert bvh.source == str(BVH)
    assert np.isfinite(bvh.positions).all()
    # root position is the first three channels of each motion line
    first = BVH.read_text().split("Frame Time:")[1].splitlines()[2].split()
    np.testing.assert_allclose(bvh.positions[1, 0], [float(v) for v in first[:3]])


def test_amc_structure(amc):
    assert amc.positions.shape == (199, 38, 3)
    assert amc.names == _skeleton_names()  # same 38 names and order as cmu_subset
    assert amc.fps == 120.0 and any("120" in n for n in amc.notes)
    assert amc.units == "cmu" and amc.up == "y"
    np.testing.assert_array_equal(amc.frames, np.arange(1, 200))
    # root = TX TY TZ of the first frame
    np.testing.assert_allclose(amc.positions[0, 0], [9.37216, 17.8693, -17.3198])
    # bone START points: lfemur (hip centre) = end of lhipjoint, 2.40479 units from the root
    hip = np.linalg.norm(
        amc.positions[:, amc.names.index("lfemur")]
        - amc.positions[:, amc.names.index("lhipjoint")],
        axis=-1,
    )
    np.testing.assert_allclose(hip, 2.40479, rtol=1e-6)
    # thigh length = lfemur bone length
    thigh = np.linalg.norm(
        amc.positions[:, amc.names.index("ltibia")] - amc.positions[:, amc.names.index("lfemur")],
        axis=-1,
    )
    np.testing.assert_allclose(thigh, 7.1578, rtol=1e-6)


def test_amc_auto_finds_asf(tmp_path):
    shutil.copy(AMC, tmp_path / "01_01.amc")
    shutil.copy(ASF, tmp_path / "01.asf")
    seq = read_keypoints(tmp_path / "01_01.amc")
    ref = read_keypoints(AMC, asf=ASF)
    np.testing.assert_array_equal(seq.positions, ref.positions)
    assert any("01.asf" in n for n in seq.notes)


def test_bvh_and_amc_agree_on_same_take(bvh, amc):
    """01_01 as BVH and as ASF/AMC: BVH motion line k (0-based) is AMC frame k."""
    B = bvh.positions[1:]
    A = amc.positions
    bi = [bvh.names.index(k) for k in LOWER]
    ai = [amc.names.index(BVH_TO_ASF[k]) for k in LOWER]
    # same scale (1 BVH unit = 1 CMU unit): least-squares scale of centred clouds
    b0 = B[:, bi] - B[:, bi].mean(1, keepdims=True)
    a0 = A[:, ai] - A[:, ai].mean(1, keepdims=True)
    assert (a0 * b0).sum() / (a0 * a0).sum() == pytest.approx(1.0, abs=1e-4)
    # legs and lower spine: identical up to the 4 decimals the BVH was written with
    assert np.abs(B[:, bi] - A[:, ai]).max() < 1e-3
    # the upper body differs by the thorax bone the BVH conversion drops (Neck OFFSET 0)
    neck = np.linalg.norm(
        B[:, bvh.names.index("Neck1")] - A[:, amc.names.index("upperneck")], axis=-1
    )
    np.testing.assert_allclose(neck, 2.06488, rtol=1e-3)


def test_bvh_and_amc_agree_everywhere_with_dropped_bones_zeroed(bvh):
    """The BVH has zero-length thorax and wrist bones; with those zeroed in the ASF,
    all 38 points agree, which checks every rotation convention of both readers."""
    from lsmplify_blender.core.formats._common import read_text

    skel = read_asf(ASF)
    for b in ("thorax", "lwrist", "rwrist"):
        skel.bones[b].length = 0.0
    names, P = acclaim_forward_kinematics(skel, parse_amc(read_text(AMC), skel))
    B = bvh.positions[1:, [bvh.names.index(k) for k in BVH_TO_ASF]]
    A = P[:, [names.index(v) for v in BVH_TO_ASF.values()]]
    err = np.linalg.norm(A - B, axis=-1)
    assert err.max() < 1e-3 and err.mean() < 1e-4


@pytest.mark.parametrize("which", ["bvh", "amc", "bvh131"])
def test_fk_upright_first_frame(which, bvh, amc):
    if which == "bvh":
        seq, frame = bvh, 1  # frame 0 of this BVH is the converter's rest pose
    elif which == "amc":
        seq, frame = amc, 0
    else:
        seq, frame = read_keypoints(BVH131), 0
    y = seq.positions[frame, :, 1]
    low, high = seq.names[int(np.argmin(y))].lower(), seq.names[int(np.argmax(y))].lower()
    assert "toe" in low or "foot" in low or "ankle" in low, low
    assert low.startswith(("l", "r"))
    assert high.startswith("head"), high
    # a standing adult: head top 9-12 CMU units (0.5-0.7 m) above the ankles
    ankles = [
        i
        for i, n in enumerate(seq.names)
        if n.lower() in ("lfoot", "rfoot", "leftfoot", "rightfoot", "leftankle", "rightankle")
    ]
    assert len(ankles) == 2
    assert 20 < y.max() - y[ankles].min() < 35


def test_bvh131(tmp_path):
    seq = read_keypoints(BVH131)
    assert seq.positions.shape == (200, 38, 3)
    assert seq.fps == 120.0
    assert seq.names[:6] == ["Hips", "LHipJoint", "LeftHip", "LeftKnee", "LeftAnkle", "LeftToe"]
    # thigh length is preserved by FK in every frame
    thigh = np.linalg.norm(seq.positions[:, 3] - seq.positions[:, 2], axis=-1)
    np.testing.assert_allclose(thigh, np.linalg.norm([2.49329, -6.85026, 0.0]), rtol=1e-9)


def test_bvh_rest_pose_is_the_offsets(bvh):
    # motion line 0 of 01_01 is the rest pose apart from the legs' +-17 deg / arms' +-5 deg
    p = bvh.positions[0]
    n = bvh.names
    np.testing.assert_allclose(
        p[n.index("Spine")] - p[n.index("LowerBack")], [0.02827, 2.03559, -0.19338], atol=1e-9
    )


def test_cmu_subset_walk():
    seq = read_cmu_subset(SUBSET, SKEL)
    P = seq.positions
    assert P.shape == (200, 38, 3)
    assert seq.names == _skeleton_names()
    assert seq.fps == 120.0 and seq.units == "cmu" and seq.up == "y"
    # root position in file order (x, y, z), not the data README's (z, y, x): see the reader
    row = [float(v) for v in SUBSET.read_text().splitlines()[0].split(",")[:3]]
    np.testing.assert_allclose(P[0, 0], row)
    # root about 17 units high, ankles reach the floor y ~ 0, the walk goes along z
    assert 16.0 < P[:, 0, 1].mean() < 18.5
    feet = [seq.names.index("lfoot"), seq.names.index("rfoot")]
    assert -0.5 < P[:, feet, 1].min() < 1.0
    assert P[:, seq.names.index("head"), 1].min() > P[:, 0, 1].max()
    dx, dz = np.abs(P[-1, 0, [0, 2]] - P[0, 0, [0, 2]])
    assert dz > 10 and dz > 5 * dx
    # a walk's stance foot stands still: each ankle's slowest tenth of frames is below
    # 0.2 m/s while the body walks at over 1 m/s (read as (z, y, x), no foot ever stopped)
    speed = np.linalg.norm(np.diff(P[:, :, [0, 2]], axis=0), axis=-1) * seq.fps * 0.05644
    assert np.percentile(speed[:, feet], 10, axis=0).max() < 0.2 < 1.0 < np.median(speed[:, 0])
    # end sites are rigid: lfemur->ltibia distance is the offset length every frame
    thigh = np.linalg.norm(
        P[:, seq.names.index("ltibia")] - P[:, seq.names.index("lfemur")], axis=-1
    )
    np.testing.assert_allclose(thigh, np.linalg.norm([2.5972, -7.13576, 0.0]), rtol=1e-9)


def test_amc_bone_order_shuffled_and_comments(tmp_path):
    """A frame listing bones in another order goes through the line parser; same result."""
    lines = AMC.read_text().splitlines()
    starts = [i for i, ln in enumerate(lines) if ln.strip().isdigit()]
    f2 = lines[starts[1] + 1 : starts[2]]
    lines[starts[1] + 1 : starts[2]] = f2[::-1]
    lines.insert(starts[3], "# a comment")
    p = tmp_path / "01_01.amc"
    p.write_text("\n".join(lines) + "\n")
    seq = read_keypoints(p, asf=ASF)
    ref = read_keypoints(AMC, asf=ASF)
    np.testing.assert_allclose(seq.positions, ref.positions, atol=1e-12)


def test_asf_in_other_length_unit_gives_metres(tmp_path):
    text = ASF.read_text().replace("length 0.45", "length 1.0", 1)
    (tmp_path / "01.asf").write_text(text)
    seq = read_keypoints(AMC, asf=tmp_path / "01.asf")
    ref = read_keypoints(AMC, asf=ASF)
    assert seq.units == "m"
    np.testing.assert_allclose(seq.positions, ref.positions * 0.0254, rtol=1e-12)


# ---------------------------------------------------------------------------------------
# array formats: round trips

T, J = 5, 4
NAMES = ["left_hip", "right_hip", "left_knee", "nose"]


def _xyz(seed=0):
    return np.random.default_rng(seed).normal(size=(T, J, 3))


def test_npy_roundtrip_and_shapes(tmp_path):
    xyz = _xyz()
    np.save(tmp_path / "a.npy", xyz)
    seq = read_keypoints(tmp_path / "a.npy")
    np.testing.assert_array_equal(seq.positions, xyz)
    assert seq.names is None and seq.fps is None and seq.units is None
    np.save(tmp_path / "one.npy", xyz[0])
    np.testing.assert_array_equal(read_keypoints(tmp_path / "one.npy").positions, xyz[:1])
    np.save(tmp_path / "flat.npy", xyz.reshape(T, -1).astype(np.float32))
    seq = read_keypoints(tmp_path / "flat.npy")
    np.testing.assert_allclose(seq.positions, xyz, rtol=1e-6)
    assert any("x, y, z per joint" in n for n in seq.notes)


def test_npz_roundtrip_with_metadata(tmp_path):
    xyz = _xyz()
    xyz[2, 1] = np.nan
    conf = np.random.default_rng(1).uniform(size=(T, J))
    np.savez(
        tmp_path / "a.npz",
        keypoints=xyz,
        joint_names=np.array(NAMES),
        confidence=conf,
        fps=30.0,
        units="mm",
        up="z",
        layout="coco17",
        frames=np.arange(10, 10 + T),
    )
    seq = read_keypoints(tmp_path / "a.npz")
    np.testing.assert_array_equal(seq.positions, xyz)
    assert seq.names == NAMES
    expect = conf.copy()
    expect[2, 1] = 0.0  # missing keypoint -> confidence 0
    np.testing.assert_allclose(seq.confidence, expect)
    assert (seq.fps, seq.units, seq.up, seq.layout) == (30.0, "mm", "z", "coco17")
    np.testing.assert_array_equal(seq.frames, np.arange(10, 10 + T))
    # minimal npz
    np.savez(tmp_path / "b.npz", keypoints=xyz)
    seq = read_keypoints(tmp_path / "b.npz")
    assert seq.names is None and seq.units is None and seq.confidence is None


def test_json_array_form_roundtrip(tmp_path):
    xyz = _xyz()
    kp = xyz.tolist()
    kp[1][2] = None  # whole joint missing
    kp[3][0][1] = None  # one coordinate missing
    doc = {
        "keypoints": kp,
        "joint_names": NAMES,
        "fps": 25,
        "units": "cm",
        "up": "y",
        "layout": "custom",
        "frames": list(range(T)),
        "confidence": np.ones((T, J)).tolist(),
    }
    (tmp_path / "a.json").write_text(json.dumps(doc))
    seq = read_keypoints(tmp_path / "a.json")
    expect = xyz.copy()
    expect[1, 2] = np.nan
    expect[3, 0] = np.nan
    np.testing.assert_array_equal(seq.positions, expect)
    assert seq.names == NAMES
    assert (seq.fps, seq.units, seq.up, seq.layout) == (25.0, "cm", "y", "custom")
    assert seq.confidence[1, 2] == 0.0 and seq.confidence[0, 0] == 1.0
    np.testing.assert_array_equal(seq.frames, np.arange(T))


def test_json_frames_form(tmp_path):
    xyz = _xyz()
    frames = []
    for t in range(T):
        joints = {n: xyz[t, j].tolist() for j, n in enumerate(NAMES)}
        if t == 2:
            joints["nose"] = None
        if t == 3:
            del joints["left_knee"]
        frames.append({"frame": 100 + t, "joints": joints, "confidence": {"left_hip": 0.5}})
    (tmp_path / "f.json").write_text(json.dumps({"frames": frames, "fps": 60, "units": "m"}))
    seq = read_keypoints(tmp_path / "f.json")
    expect = xyz.copy()
    expect[2, 3] = np.nan
    expect[3, 2] = np.nan
    assert seq.names == NAMES
    np.testing.assert_array_equal(seq.positions, expect)
    np.testing.assert_array_equal(seq.frames, 100 + np.arange(T))
    assert seq.fps == 60.0 and seq.units == "m" and seq.up is None
    assert (
        seq.confidence[0, 0] == 0.5 and seq.confidence[0, 1] == 1.0 and seq.confidence[2, 3] == 0.0
    )


def test_csv_header_roundtrip(tmp_path):
    xyz = _xyz()
    xyz[1, 3, 0] = np.nan
    header = (
        ["frame", "time"] + [f"{n}_{a}" for n in NAMES for a in "xyz"] + ["nose_visibility", "note"]
    )
    rows = [",".join(header)]
    for t in range(T):
        vals = [str(t), repr(t / 30.0)] + [
            "" if np.isnan(v) else repr(float(v)) for v in xyz[t].ravel()
        ]
        rows.append(",".join(vals + ["0.75", "text ignored"]))
    (tmp_path / "fm.csv").write_text("\n".join(rows) + "\n")
    seq = read_keypoints(tmp_path / "fm.csv")
    expect = xyz.copy()
    expect[1, 3] = np.nan
    np.testing.assert_array_equal(seq.positions, expect)
    assert seq.names == NAMES
    assert seq.fps == pytest.approx(30.0)
    np.testing.assert_array_equal(seq.frames, np.arange(T))
    assert (
        seq.confidence[0, 3] == 0.75 and seq.confidence[0, 0] == 1.0 and seq.confidence[1, 3] == 0.0
    )
    assert any("note" in n for n in seq.notes)


def test_csv_headerless(tmp_path):
    xyz = _xyz()
    np.savetxt(tmp_path / "plain.csv", xyz.reshape(T, -1), delimiter=",")
    seq = read_keypoints(tmp_path / "plain.csv")
    np.testing.assert_allclose(seq.positions, xyz, rtol=1e-15)
    assert seq.names is None


def test_missing_values_kept_as_nan(tmp_path):
    xyz = _xyz()
    xyz[0, 0, 2] = np.inf
    xyz[4, :, :] = np.nan
    np.save(tmp_path / "m.npy", xyz)
    seq = read_keypoints(tmp_path / "m.npy")
    assert np.isnan(seq.positions[0, 0]).all()  # inf -> missing; whole joint missing
    assert np.isnan(seq.positions[4]).all()
    assert np.isfinite(seq.positions[1:4]).all()


# ---------------------------------------------------------------------------------------
# malformed input -> InputError


def _err(path, match=None, **kw):
    with pytest.raises(InputError, match=match):
        read_keypoints(path, **kw)


@pytest.mark.parametrize("ext", [".npy", ".npz", ".json", ".csv", ".bvh", ".amc"])
def test_empty_files(tmp_path, ext):
    p = tmp_path / f"empty{ext}"
    p.write_bytes(b"")
    _err(p, "empty")


def test_truncated_bvh(tmp_path):
    text = BVH.read_text()
    (tmp_path / "cut_motion.bvh").write_text(text[: len(text) - 5000])
    _err(tmp_path / "cut_motion.bvh", "truncated")
    (tmp_path / "cut_hier.bvh").write_text(text[: text.index("JOINT LeftArm")])
    _err(tmp_path / "cut_hier.bvh", "MOTION")
    (tmp_path / "no_frames.bvh").write_text(
        text[: text.index("Frames:")] + "Frames: 0\nFrame Time: 0.01\n"
    )
    _err(tmp_path / "no_frames.bvh", "zero frames")
    (tmp_path / "text.bvh").write_text(text.replace("17.8693", "abc", 1))
    _err(tmp_path / "text.bvh", "'abc'")
    (tmp_path / "chan.bvh").write_text(text.replace("Zrotation", "Qrotation", 1))
    _err(tmp_path / "chan.bvh", "Qrotation")


def test_truncated_amc(tmp_path):
    text = AMC.read_text()
    (tmp_path / "01_01.amc").write_text(text[: text.rindex("rfemur")])
    _err(tmp_path / "01_01.amc", "truncated", asf=ASF)
    (tmp_path / "01_01.amc").write_text(text[: text.rindex("rfemur") + 12])
    _err(tmp_path / "01_01.amc", "values", asf=ASF)


def test_amc_wrong_asf(tmp_path):
    text = (
        ASF.read_text()
        .replace("name lthumb", "name lthumbx")
        .replace("rwrist lhand lthumb", "rwrist lhand")
    )
    text = text.replace("lwrist lhand lthumb", "lwrist lhand lthumbx")
    (tmp_path / "x.asf").write_text(text)
    _err(AMC, "lthumb", asf=tmp_path / "x.asf")


def test_amc_without_asf(tmp_path):
    shutil.copy(AMC, tmp_path / "05_06.amc")
    _err(tmp_path / "05_06.amc", "--asf")


def test_asf_alone_and_unknown_extension(tmp_path):
    _err(ASF, "no motion")
    (tmp_path / "a.xyz").write_text("1 2 3\n")
    with pytest.raises(InputError, match=r"\.npy.*\.bvh.*\.amc"):
        read_keypoints(tmp_path / "a.xyz")
    _err(tmp_path / "missing.npy", "not found")


def test_csv_errors(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("a_x,a_y,a_z\n1,2,3\n4,oops,6\n")
    _err(p, r"line 3, column 'a_y': 'oops'")
    p.write_text("a_x,a_y,b_x,b_y\n1,2,3,4\n")
    _err(p, "a_z")
    p.write_text("foo,bar\n1,2\n")
    _err(p, "no keypoint columns")
    p.write_text("a_x,a_y,a_z\n1,2,3\n4,5\n")
    _err(p, "line 3 has 2 fields")
    p.write_text("a_x,a_y,a_z\n")
    _err(p, "zero frames")
    p.write_text("1,2,3,4\n5,6,7,8\n")
    _err(p, "3 columns")
    p.write_text("a_x,a_y,a_z\n,,\nnan,,\n")
    _err(p, "every keypoint value is missing")
    p.write_bytes(b"a_x,a_y,a_z\n\xff\xfe\x00\x01\x02")
    _err(p, "binary")


def test_npy_npz_errors(tmp_path):
    np.save(tmp_path / "w.npy", np.zeros((5, 4, 2)))
    _err(tmp_path / "w.npy", r"\(frames, joints, 3\)")
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object))
    _err(tmp_path / "o.npy", "Python objects")
    (tmp_path / "t.npy").write_text("not numpy")
    _err(tmp_path / "t.npy", "not a NumPy")
    np.savez(tmp_path / "n.npz", positions=np.zeros((2, 3, 3)))
    _err(tmp_path / "n.npz", "no 'keypoints'")
    np.savez(
        tmp_path / "on.npz",
        keypoints=np.zeros((2, 3, 3)),
        joint_names=np.array(["a", 1, None], dtype=object),
    )
    _err(tmp_path / "on.npz", "dtype=str")
    np.savez(tmp_path / "nn.npz", keypoints=np.zeros((2, 3, 3)), joint_names=np.array(["a", "b"]))
    _err(tmp_path / "nn.npz", "2 joint names for 3 joints")
    np.savez(tmp_path / "u.npz", keypoints=np.zeros((2, 3, 3)), units="furlong")
    _err(tmp_path / "u.npz", "furlong")
    np.savez(tmp_path / "f.npz", keypoints=np.zeros((2, 3, 3)), fps=0.0)
    _err(tmp_path / "f.npz", "fps")
    np.save(tmp_path / "z.npy", np.zeros((0, 3, 3)))
    _err(tmp_path / "z.npy", "zero frames")
    np.save(tmp_path / "nan.npy", np.full((3, 3, 3), np.nan))
    _err(tmp_path / "nan.npy", "missing")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04garbage")
    _err(tmp_path / "bad.npz", "npz")


def test_json_errors(tmp_path):
    p = tmp_path / "a.json"
    p.write_text('{"keypoints": [[[1, 2, 3]], [[1, 2, 3], [4, 5, 6]]]}')
    _err(p, "frame 1 has 2 joints")
    p.write_text('{"keypoints": [[[1, 2, 3]]')
    _err(p, "not valid JSON")
    p.write_text('{"keypoints": [[[1, "x", 3]]]}')
    _err(p, "not numbers")
    p.write_text('{"something": 1}')
    _err(p, "keypoints")
    p.write_text('{"frames": []}')
    _err(p, "zero frames")
    p.write_text('{"keypoints": [[[1, 2]]]}')
    _err(p, r"\[x, y, z\]")
    p.write_text('{"frames": [{"frame": 0, "joints": {"a": [1, 2]}}]}')
    _err(p, r"\[x, y, z\]")
    p.write_text('{"keypoints": [[null, null]]}')
    _err(p, "missing")


def test_cmu_subset_errors(tmp_path):
    lines = SUBSET.read_text().splitlines()
    p = tmp_path / "c.txt"
    p.write_text("\n".join(lines[:3] + [lines[3][:200]]) + "\n")
    with pytest.raises(InputError, match="line 4"):
        read_cmu_subset(p, SKEL)
    p.write_text(lines[0].replace("16.7048", "abc", 1) + "\n")
    with pytest.raises(InputError, match="'abc'"):
        read_cmu_subset(p, SKEL)
    with pytest.raises(InputError, match="read_cmu_subset"):
        read_keypoints(SUBSET)


# ---------------------------------------------------------------------------------------
# speed: vectorised parsing and FK


def test_10k_frames_read_as_the_tiled_take(tmp_path):
    """A 10,000-frame BVH and AMC made by repeating a real take read as that take repeated.

    (Reading speed is measured by benchmarks/bench_long_take.py, never asserted in a test.)"""
    text = BVH.read_text()
    head, rest = text.split("Frames:", 1)
    lines = rest.splitlines()[2:]
    motion = (lines * 51)[:10000]
    p = tmp_path / "long.bvh"
    p.write_text(head + "Frames: 10000\nFrame Time: .0083333\n" + "\n".join(motion) + "\n")
    seq = read_keypoints(p)
    short = read_keypoints(BVH)
    assert seq.positions.shape == (10000, 38, 3)
    tiled = short.positions[np.arange(10000) % short.positions.shape[0]]
    assert np.abs(seq.positions - tiled).max() < 1e-9

    amc = AMC.read_text()
    first = amc.index("\n1\n") + 1
    header, body = amc[:first], amc[first:]
    blocks = body.split("\n")
    starts = [i for i, ln in enumerate(blocks) if ln.strip().isdigit()]
    frame_lines = [blocks[starts[k] + 1 : starts[k + 1]] for k in range(len(starts) - 1)]
    out = [header.rstrip("\n")]
    for k in range(10000):
        out.append(str(k + 1))
        out.extend(frame_lines[k % len(frame_lines)])
    q = tmp_path / "long.amc"
    q.write_text("\n".join(out) + "\n")
    seq = read_keypoints(q, asf=ASF)
    short = read_keypoints(AMC, asf=ASF)
    assert seq.positions.shape == (10000, 38, 3)
    tiled = short.positions[np.arange(10000) % len(frame_lines)]
    assert np.abs(seq.positions - tiled).max() < 1e-9


# ---------------------------------------------------------------------------------------
# conventions against an independent implementation (scipy)


def _bvh_chain(orders, angles, with_pos_channels=False):
    """A 3-joint chain + End Site BVH; orders like 'ZXY' per joint, angles (T, 3, 3) deg."""
    offs = [(0.0, 0.0, 0.0), (1.0, 2.0, 0.5), (0.0, -3.0, 1.0), (0.5, 0.0, 2.0)]
    lines = ["HIERARCHY"]
    names = ["Root", "A", "B"]
    for j in range(3):
        kw = "ROOT" if j == 0 else "JOINT"
        chans = [f"{a}rotation" for a in orders[j]]
        if j == 0 or with_pos_channels:
            chans = ["Xposition", "Yposition", "Zposition"] + chans
        lines += [
            f"{kw} {names[j]}",
            "{",
            "OFFSET {:g} {:g} {:g}".format(*offs[j]),
            f"CHANNELS {len(chans)} " + " ".join(chans),
        ]
    lines += ["End Site", "{", "OFFSET {:g} {:g} {:g}".format(*offs[3]), "}", "}", "}", "}"]
    rows = []
    for t in range(angles.shape[0]):
        vals = [0.1 * t, 5.0, -0.2 * t]
        for j in range(3):
            if j > 0 and with_pos_channels:
                vals += list(offs[j])
            vals += list(angles[t, j])
        rows.append(" ".join(f"{v:.10f}" for v in vals))
    lines += ["MOTION", f"Frames: {angles.shape[0]}", "Frame Time: 0.04"] + rows
    return "\n".join(lines) + "\n", offs


@pytest.mark.parametrize("with_pos", [False, True])
def test_bvh_any_channel_order_matches_scipy(tmp_path, with_pos):
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(3)
    orders = ["ZXY", "XYZ", "YZX"]
    ang = rng.uniform(-90, 90, size=(7, 3, 3))
    text, offs = _bvh_chain(orders, ang, with_pos)
    p = tmp_path / "chain.bvh"
    p.write_text(text.replace("\n", "\r\n"))  # Windows line ends too
    seq = read_keypoints(p)
    assert seq.names == ["Root", "A", "B", "B_End"]
    assert seq.fps == 25.0
    for t in range(7):
        R = np.eye(3)
        pos = np.array([0.1 * t, 5.0, -0.2 * t])
        expect = [pos]
        for j in range(3):
            if j > 0:
                pos = pos + R @ np.array(offs[j])
                expect.append(pos)
            R = R @ Rotation.from_euler(orders[j], ang[t, j], degrees=True).as_matrix()
        expect.append(pos + R @ np.array(offs[3]))
        np.testing.assert_allclose(seq.positions[t], np.array(expect), atol=1e-9)


def test_asf_axis_and_dof_orders_match_scipy(tmp_path):
    from scipy.spatial.transform import Rotation

    asf = """:version 1.10
:name test
:units
  mass 1.0
  length 0.45
  angle deg
:root
   order TX TY TZ RZ RX RY
   axis XYZ
   position 0 0 0
   orientation 0 0 0
:bonedata
  begin
     id 1
     name a
     direction 0 1 0
     length 2
     axis 10 20 30 ZYX
    dof rz rx ry
    limits (-180 180)
           (-180 180)
           (-180 180)
  end
  begin
     id 2
     name b
     direction 1 0 0
     length 3
     axis -40 15 60 XYZ
    dof ry rx
  end
:hierarchy
  begin
    root a
    a b
  end
"""
    (tmp_path / "s.asf").write_text(asf)
    rng = np.random.default_rng(5)
    vals = rng.uniform(-60, 60, size=(4, 3 + 3 + 3 + 2))
    lines = [":FULLY-SPECIFIED", ":DEGREES"]
    for t in range(4):
        v = vals[t]
        lines += [
            str(t + 1),
            "root " + " ".join(map(repr, v[:6])),
            "a " + " ".join(map(repr, v[6:9])),
            "b " + " ".join(map(repr, v[9:11])),
        ]
    (tmp_path / "s_01.amc").write_text("\n".join(lines) + "\n")
    seq = read_keypoints(tmp_path / "s_01.amc")  # finds s.asf by subject prefix
    assert seq.names == ["root", "a", "b", "b_end"]

    def rot(order, angles):  # order[0] applied first
        return Rotation.from_euler(order.lower(), angles, degrees=True).as_matrix()

    for t in range(4):
        v = vals[t]
        root = v[:3]
        R0 = rot("ZXY", v[3:6])
        Ca = rot("ZYX", [30, 20, 10])  # 'axis 10 20 30 ZYX': x=10, y=20, z=30, Z applied first
        Ra = R0 @ Ca @ rot("ZXY", v[6:9]) @ Ca.T
        a_end = root + Ra @ np.array([0, 2.0, 0])
        Cb = rot("XYZ", [-40, 15, 60])
        Rb = Ra @ Cb @ rot("YX", v[9:11]) @ Cb.T
        b_end = a_end + Rb @ np.array([3.0, 0, 0])
        np.testing.assert_allclose(seq.positions[t], [root, root, a_end, b_end], atol=1e-9)


def test_asf_chain_of_3000_bones_reads_without_recursion(tmp_path):
    """A 3,000-bone chain (issue 12: a RecursionError before) is read iteratively."""
    n = 3000
    bones = "\n".join(
        f"  begin\n    id {i + 1}\n    name b{i}\n    direction 0 1 0\n    length 0.1\n"
        f"    axis 0 0 0 XYZ\n    dof rx\n  end"
        for i in range(n)
    )
    chain = "\n".join(["    root b0"] + [f"    b{i} b{i + 1}" for i in range(n - 1)])
    asf = (
        ":version 1.10\n:name chain\n:units\n  mass 1.0\n  length 1\n  angle deg\n:root\n"
        "   order TX TY TZ RX RY RZ\n   axis XYZ\n   position 0 0 0\n   orientation 0 0 0\n"
        f":bonedata\n{bones}\n:hierarchy\n  begin\n{chain}\n  end\n"
    )
    (tmp_path / "chain.asf").write_text(asf)
    frame = "root 0 0 0 0 0 0\n" + "\n".join(f"b{i} 1" for i in range(n))
    (tmp_path / "chain.amc").write_text(
        ":FULLY-SPECIFIED\n:DEGREES\n1\n" + frame + "\n2\n" + frame + "\n"
    )
    seq = read_keypoints(tmp_path / "chain.amc", asf=tmp_path / "chain.asf")
    assert seq.positions.shape == (2, n + 2, 3)
    # a straight chain along +Y bent 1 degree per bone: the end is below n * 0.1 and finite
    assert (
        np.isfinite(seq.positions).all() and 0 < np.nanmax(seq.positions[:, :, 1]) < n * 0.1 + 1e-6
    )


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"keypoints": [[[' + "9" * 5000 + ", 0, 0]]]}", "JSON integer with 5000 digits"),
        (
            '{"keypoints": [[[0, 0, 0]]], "fps": ' + "9" * 5000 + "}",
            "JSON integer with 5000 digits",
        ),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
)
def test_hostile_json_numbers_and_nesting(tmp_path, text, words):
    (tmp_path / "k.json").write_text(text)
    with pytest.raises(InputError, match=words):
        read_keypoints(tmp_path / "k.json")


def test_50k_joint_names_with_one_repeat_are_checked_in_one_pass(tmp_path):
    names = [f"n{i}" for i in range(50_000)] + ["n7"]
    kp = np.zeros((1, len(names), 3))
    np.savez(tmp_path / "k.npz", keypoints=kp, joint_names=np.array(names))
    with pytest.raises(InputError, match=r"duplicate joint names \['n7'\]"):
        read_keypoints(tmp_path / "k.npz")


def test_csv_with_1e5_columns_and_a_repeated_header(tmp_path):
    cols = [f"m{i}_{c}" for i in range(33_333) for c in "xyz"] + ["m5_x"]
    (tmp_path / "k.csv").write_text(",".join(cols) + "\n" + ",".join(["0.1"] * len(cols)) + "\n")
    with pytest.raises(InputError, match=r"duplicate column names \['m5_x'\]"):
        read_keypoints(tmp_path / "k.csv")


def test_bvh_in_blocks_equals_all_at_once(monkeypatch):
    """Long takes run forward kinematics in blocks; the result is the same to the last bit."""
    from lsmplify_blender.core.formats import bvh

    whole = read_keypoints(BVH)
    monkeypatch.setattr(bvh, "FK_BLOCK", 7)
    monkeypatch.setattr(bvh, "_PARSE_CHUNK", 1000)  # the MOTION text in many chunks too
    blocks = read_keypoints(BVH)
    np.testing.assert_array_equal(blocks.positions, whole.positions)
    np.testing.assert_array_equal(blocks.rotations, whole.rotations)
