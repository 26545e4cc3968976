import numpy as np
import pytest

from lsmplify_blender.core.errors import LayoutError
from lsmplify_blender.core.layouts import (
    BODY25,
    CMU,
    COCO17,
    H36M17,
    LAYOUTS,
    MEDIAPIPE33,
    SMPL24,
    detect_layout,
    match_names,
    to_layout_order,
)

BVH_CMU = [
    "Hips",
    "LHipJoint",
    "LeftUpLeg",
    "LeftLeg",
    "LeftFoot",
    "LeftToeBase",
    "RHipJoint",
    "RightUpLeg",
    "RightLeg",
    "RightFoot",
    "RightToeBase",
    "LowerBack",
    "Spine",
    "Spine1",
    "Neck",
    "Neck1",
    "Head",
    "LeftShoulder",
    "LeftArm",
    "LeftForeArm",
    "LeftHand",
    "RightShoulder",
    "RightArm",
    "RightForeArm",
    "RightHand",
]
MIXAMO = [
    "mixamorig:" + n
    for n in [
        "Hips",
        "Spine",
        "Spine1",
        "Spine2",
        "Neck",
        "Head",
        "LeftShoulder",
        "LeftArm",
        "LeftForeArm",
        "LeftHand",
        "RightShoulder",
        "RightArm",
        "RightForeArm",
        "RightHand",
        "LeftUpLeg",
        "LeftLeg",
        "LeftFoot",
        "LeftToeBase",
        "RightUpLeg",
        "RightLeg",
        "RightFoot",
        "RightToeBase",
    ]
]


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (BVH_CMU, "cmu"),
        (MIXAMO, "cmu"),
        (
            [
                "root",
                "lfemur",
                "ltibia",
                "lfoot",
                "rfemur",
                "rtibia",
                "rfoot",
                "lhumerus",
                "lradius",
                "lwrist",
                "rhumerus",
                "rradius",
                "rwrist",
                "head",
                "thorax",
            ],
            "cmu",
        ),
        (list(SMPL24.keypoints), "smpl24"),
        (list(COCO17.keypoints), "coco17"),
        (list(MEDIAPIPE33.keypoints), "mediapipe33"),
        (list(BODY25.keypoints), "body25"),
        (list(H36M17.keypoints), "h36m17"),
        (
            [
                "left_hip",
                "right_hip",
                "left_knee",
                "right_knee",
                "left_ankle",
                "right_ankle",
                "left_shoulder",
                "right_shoulder",
                "left_elbow",
                "right_elbow",
                "left_wrist",
                "right_wrist",
                "left_heel",
                "right_heel",
            ],
            "mediapipe33",
        ),
    ],
)
def test_detect_layout_from_names(names, expected):
    lay, why = detect_layout(names, len(names))
    assert lay.name == expected, why


def test_name_dialects_map_the_same_words_to_different_joints():
    idx = match_names(CMU, MIXAMO)
    assert CMU.keypoints[idx[MIXAMO.index("mixamorig:Neck")]] == "upperneck"  # SMPL's neck
    assert idx[MIXAMO.index("mixamorig:Spine2")] == -1
    idx = match_names(CMU, BVH_CMU)
    assert CMU.keypoints[idx[BVH_CMU.index("Neck")]] == "lowerneck"
    assert CMU.keypoints[idx[BVH_CMU.index("LeftShoulder")]] == "lclavicle"
    chest2 = [
        "Hips",
        "LeftHip",
        "LeftKnee",
        "lowerback",
        "Chest",
        "Chest2",
        "lowerneck",
        "Neck",
        "Head",
        "LeftCollar",
        "LeftShoulder",
        "LeftElbow",
    ]
    idx = match_names(CMU, chest2)
    assert CMU.keypoints[idx[chest2.index("Neck")]] == "upperneck"
    assert CMU.keypoints[idx[chest2.index("LeftShoulder")]] == "lhumerus"
    assert detect_layout(chest2, len(chest2))[0] is CMU


@pytest.mark.parametrize(
    ("count", "expected"), [(24, "smpl24"), (25, "body25"), (33, "mediapipe33")]
)
def test_detect_layout_from_count(count, expected):
    assert detect_layout(None, count)[0].name == expected


def test_seventeen_unnamed_keypoints_told_apart_by_geometry():
    rng = np.random.default_rng(0)
    p = rng.normal(size=(5, 17, 3))
    p[:, 0] = (p[:, 1] + p[:, 4]) / 2  # pelvis between the hips: H36M
    assert detect_layout(None, 17, p)[0] is H36M17
    p[:, 0] += 5.0  # far away: a nose
    assert detect_layout(None, 17, p)[0] is COCO17


def test_unknown_names_error_lists_what_was_found():
    with pytest.raises(LayoutError, match=r"foo.*bar"):
        detect_layout(["foo", "bar", "baz"], 3)
    with pytest.raises(LayoutError, match="--layout"):
        detect_layout(None, 19)


def test_to_layout_order_reorders_and_masks():
    names = ["left_knee", "nose", "mystery", "right_knee"]
    pos = np.arange(2 * 4 * 3, dtype=float).reshape(2, 4, 3)
    out, conf, unused = to_layout_order(COCO17, pos, None, names)
    k = COCO17.keypoints
    np.testing.assert_array_equal(out[:, k.index("left_knee")], pos[:, 0])
    np.testing.assert_array_equal(out[:, k.index("right_knee")], pos[:, 3])
    assert unused == ["mystery"]
    assert conf[:, k.index("left_ankle")].max() == 0
    assert conf[:, k.index("nose")].min() == 1


def test_every_layout_is_generated_by_the_open_model(model):
    from conftest import random_pose

    rot = random_pose(4)
    for lay in LAYOUTS.values():
        kp = lay.generate(model, rot, np.zeros(10))
        supported = lay.supported(model)
        assert kp.shape == (4, lay.num_keypoints, 3)
        assert np.isfinite(kp[:, supported].numpy()).all(), lay.name
        assert supported.sum() >= 13, lay.name
