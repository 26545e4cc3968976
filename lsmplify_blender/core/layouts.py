"""Keypoint layouts, defined for any SMPL-format model, and their detection.

A layout is an ordered list of keypoints. Each keypoint is defined on the body model as a
SMPL joint (``"left_hip"``), a landmark vertex (``"@nose"``), the mean of several of those
(``"left_hip+right_hip"``), or ``None`` when the model has nothing that matches (such a
keypoint is read but never used). From a definition we get both directions we need:
keypoints generated from SMPL parameters (tests, training, evaluation) and SMPL joint
targets for the analytic solver.

Names in files are matched through aliases after ``normalize_name`` (lower case, rig
prefixes such as ``mixamorig:`` dropped, separators removed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from .body_model import SMPL_JOINT_NAMES, BodyModel
from .errors import LayoutError

_J = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}


@dataclass(frozen=True)
class Layout:
    name: str
    title: str
    keypoints: tuple[str, ...]
    definitions: tuple[str | None, ...]
    aliases: dict[str, str]  # normalised alias -> keypoint name
    trust: tuple[
        float, ...
    ] = ()  # per keypoint, how well it matches its definition on real data (1 = exactly)
    aim_only: frozenset[str] = (
        frozenset()
    )  # keypoints that give a direction, not a position (bone ends)
    # (keypoint, the keypoint it must stay rigid with to be used): ``prepare.drop_loose_points``
    rigid_with: tuple[tuple[str, str], ...] = ()

    def aim_only_mask(self) -> np.ndarray:
        """(K,) bool: keypoints used to aim a leaf only, never as a position to fit."""
        return np.array([k in self.aim_only for k in self.keypoints])

    def trust_array(self) -> np.ndarray:
        return np.asarray(self.trust or (1.0,) * len(self.keypoints), dtype=np.float64)

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)

    def smpl_joint_of(self) -> np.ndarray:
        """(K,) SMPL joint index each keypoint stands for exactly, or -1."""
        return np.array([_J.get(d, -1) if d else -1 for d in self.definitions], dtype=np.int64)

    def supported(self, model: BodyModel) -> np.ndarray:
        """(K,) bool: the model can generate this keypoint (has its landmarks)."""
        landmarks = model.data.landmarks
        return np.array(
            [
                d is not None and all(t in _J or t[1:] in landmarks for t in d.split("+"))
                for d in self.definitions
            ]
        )

    def regressor(self, model: BodyModel) -> tuple[torch.Tensor, list[str]]:
        """Matrix W (K, 24 + L) and landmark names L so that keypoints = W @ [joints; landmarks].

        Unsupported keypoints get an all-zero row.
        """
        landmarks: list[str] = []
        rows = []
        supported = self.supported(model)
        for d, ok in zip(self.definitions, supported, strict=True):
            terms = d.split("+") if (d and ok) else []
            row: dict[int | str, float] = {}
            for t in terms:
                key = _J[t] if t in _J else t[1:]
                if isinstance(key, str) and key not in landmarks:
                    landmarks.append(key)
                row[key] = row.get(key, 0.0) + 1.0 / len(terms)
            rows.append(row)
        # filled in numpy, then one tensor (entry by entry in torch was an op per entry, every call)
        w = np.zeros((len(rows), 24 + len(landmarks)))
        for k, row in enumerate(rows):
            for key, val in row.items():
                w[k, key if isinstance(key, int) else 24 + landmarks.index(key)] = val
        return torch.as_tensor(w, dtype=model.dtype, device=model.device), landmarks

    def generate(self, model: BodyModel, rotmats: torch.Tensor, betas, trans=None) -> torch.Tensor:
        """Keypoints (B, K, 3) of this layout for SMPL parameters; unsupported ones are NaN."""
        w, lm = self.regressor(model)
        # one forward kinematics for the joints and the landmarks' skinning
        b = model.betas_tensor(betas, rotmats.shape[0])
        rest = model.rest_joints(b)
        glob, joints = model.global_transforms(rotmats, rest)
        pts = joints if trans is None else joints + trans[:, None]
        if lm:
            kin = (rest, glob, joints)
            pts = torch.cat([pts, model.landmarks(rotmats, b, trans, lm, kinematics=kin)], 1)
        out = torch.einsum("kp,npc->nkc", w, pts)
        out[:, ~torch.as_tensor(self.supported(model), device=out.device)] = float("nan")
        return out


def normalize_name(name: str) -> str:
    n = str(name).strip()
    n = re.split(r"[:|]", n)[-1]  # rig namespaces: mixamorig:LeftArm, Armature|LeftArm
    return re.sub(r"[\s_\-.]", "", n).lower()


def _layout(name, title, table, extra_aliases=(), trust=None, aim_only=(), rigid_with=None):
    keypoints = tuple(k for k, _ in table)
    aliases = {normalize_name(k): k for k in keypoints}
    for alias, target in extra_aliases:
        aliases[normalize_name(alias)] = target
    t = tuple((trust or {}).get(k, 1.0) for k in keypoints)
    return Layout(
        name,
        title,
        keypoints,
        tuple(d for _, d in table),
        aliases,
        t,
        frozenset(aim_only),
        tuple((rigid_with or {}).items()),
    )


def _sided(pairs):
    """Expand ("{s}_knee", "{side}_knee") over sides; s in (left,right)."""
    out = []
    for side in ("left", "right"):
        for key, d in pairs:
            out.append(
                (
                    key.format(s=side, S=side.capitalize(), l=side[0], L=side[0].upper()),
                    d.format(side=side, l=side[0], L=side[0].upper()) if d else None,
                )
            )
    return out


SMPL24 = _layout(
    "smpl24",
    "SMPL 24 joints",
    [(n, n) for n in SMPL_JOINT_NAMES],
    [
        ("hips", "pelvis"),
        ("root", "pelvis"),
        ("lefthip", "left_hip"),
        ("chest", "spine2"),
        ("leftwrist", "left_wrist"),
        ("rightwrist", "right_wrist"),
        ("l_hip", "left_hip"),
        ("r_hip", "right_hip"),
    ],
)

BODY25 = _layout(
    "body25",
    "OpenPose BODY_25",
    [
        ("Nose", "@nose"),
        ("Neck", "neck"),
        ("RShoulder", "right_shoulder"),
        ("RElbow", "right_elbow"),
        ("RWrist", "right_wrist"),
        ("LShoulder", "left_shoulder"),
        ("LElbow", "left_elbow"),
        ("LWrist", "left_wrist"),
        ("MidHip", "left_hip+right_hip"),
        ("RHip", "right_hip"),
        ("RKnee", "right_knee"),
        ("RAnkle", "right_ankle"),
        ("LHip", "left_hip"),
        ("LKnee", "left_knee"),
        ("LAnkle", "left_ankle"),
        ("REye", "@reye"),
        ("LEye", "@leye"),
        ("REar", "@rear"),
        ("LEar", "@lear"),
        ("LBigToe", "@LBigToe"),
        ("LSmallToe", "@LSmallToe"),
        ("LHeel", "@LHeel"),
        ("RBigToe", "@RBigToe"),
        ("RSmallToe", "@RSmallToe"),
        ("RHeel", "@RHeel"),
    ],
)

H36M17 = _layout(
    "h36m17",
    "Human3.6M 17 joints",
    [
        ("Hip", "pelvis"),
        ("RHip", "right_hip"),
        ("RKnee", "right_knee"),
        ("RFoot", "right_ankle"),
        ("LHip", "left_hip"),
        ("LKnee", "left_knee"),
        ("LFoot", "left_ankle"),
        ("Spine", "spine2"),
        ("Thorax", "neck"),
        ("Neck/Nose", "@nose"),
        ("Head", "@head_top"),
        ("LShoulder", "left_shoulder"),
        ("LElbow", "left_elbow"),
        ("LWrist", "left_wrist"),
        ("RShoulder", "right_shoulder"),
        ("RElbow", "right_elbow"),
        ("RWrist", "right_wrist"),
    ],
    [("Nose", "Neck/Nose"), ("Spine1", "Spine"), ("Pelvis", "Hip"), ("HeadTop", "Head")],
)

COCO17 = _layout(
    "coco17",
    "COCO 17 keypoints",
    [
        ("nose", "@nose"),
        ("left_eye", "@leye"),
        ("right_eye", "@reye"),
        ("left_ear", "@lear"),
        ("right_ear", "@rear"),
        ("left_shoulder", "left_shoulder"),
        ("right_shoulder", "right_shoulder"),
        ("left_elbow", "left_elbow"),
        ("right_elbow", "right_elbow"),
        ("left_wrist", "left_wrist"),
        ("right_wrist", "right_wrist"),
        ("left_hip", "left_hip"),
        ("right_hip", "right_hip"),
        ("left_knee", "left_knee"),
        ("right_knee", "right_knee"),
        ("left_ankle", "left_ankle"),
        ("right_ankle", "right_ankle"),
    ],
)

# MediaPipe Pose / FreeMoCap. Eye corners and mouth corners have no SMPL landmark: kept
# so files index correctly, never used. Hand points map to fingertips (approximate).
MEDIAPIPE33 = _layout(
    "mediapipe33",
    "MediaPipe Pose 33 / FreeMoCap",
    [
        ("nose", "@nose"),
        ("left_eye_inner", None),
        ("left_eye", "@leye"),
        ("left_eye_outer", None),
        ("right_eye_inner", None),
        ("right_eye", "@reye"),
        ("right_eye_outer", None),
        ("left_ear", "@lear"),
        ("right_ear", "@rear"),
        ("mouth_left", None),
        ("mouth_right", None),
        ("left_shoulder", "left_shoulder"),
        ("right_shoulder", "right_shoulder"),
        ("left_elbow", "left_elbow"),
        ("right_elbow", "right_elbow"),
        ("left_wrist", "left_wrist"),
        ("right_wrist", "right_wrist"),
        ("left_pinky", "@lpinky"),
        ("right_pinky", "@rpinky"),
        ("left_index", "@lindex"),
        ("right_index", "@rindex"),
        ("left_thumb", "@lthumb"),
        ("right_thumb", "@rthumb"),
        ("left_hip", "left_hip"),
        ("right_hip", "right_hip"),
        ("left_knee", "left_knee"),
        ("right_knee", "right_knee"),
        ("left_ankle", "left_ankle"),
        ("right_ankle", "right_ankle"),
        ("left_heel", "@LHeel"),
        ("right_heel", "@RHeel"),
        ("left_foot_index", "@LBigToe"),
        ("right_foot_index", "@RBigToe"),
    ],
)

# The CMU skeleton by its ASF bone names; a bone's position is where it starts (lfemur =
# hip centre). Only anatomically matching points are tied to SMPL joints: CMU's clavicles
# start where its neck does (the thorax top), and its spine nodes are spaced unlike SMPL's,
# so spine3, the collars and the lower neck are left to the rigid torso completion.
# CMU's spine by the same heights: upperback 0.42-0.59, thorax 0.64-0.91, against SMPL's spine1
# 0.21, spine2 0.36, spine3 0.54: upperback is tied to spine2 and thorax to spine3 (the calibrated
# fit, eval --real with the file's rotations, worst take 22.7 -> 19.3 mm, every other take 1-6 mm
# lower, the feet's directions 0.0 again; tied to spine1 / spine2 they rode one segment too low).
# CMU's neck: SMPL's neck joint is upperneck, not lowerneck. Heights above the hips' centre as a
# share of hips -> shoulders (eval --real takes, first frame): SMPL neck 1.21, head 1.42; CMU
# upperneck 1.03-1.12, head 1.23-1.35, lowerneck 0.80-0.91 (below the shoulders: the thorax's top,
# where the clavicles start; the FBX rigs, cmu_subset and the BVH files stack it on thorax). So
# SMPL's neck bone is CMU's upperneck bone, and lowerneck, which bends under it, has no SMPL joint.
# Tied to lowerneck, SMPL's neck was aimed along the lowerneck -> head chord, which leaves the
# upperneck bone whenever the lower neck bends (eval --real, neck orientation against upperneck:
# 3.4 deg mean over the CMU takes, 9.6 / 15.9 mean / p95 on the FBX rig's dance 49_08).
# CMU's root sits ~10 cm above its hip centres, unlike a SMPL pelvis; the hips place it.
# The ends of the leaf bones (ASF '<bone>_end', BVH End Sites '<Joint>_End') are tied to the
# SMPL landmarks nearest to what they mark, so the leaves get an aim: the head top, the toe tips
# (the big toe's), the finger tips (the middle finger's: CMU's hand + fingers bones end about
# 17 cm from the wrist in 01.asf) and the thumb tip.
# CMU's hand: SMPL's wrist joint (whose rotation turns the palm) is the START of the ASF bone lhand,
# not of lwrist. In 01.asf lwrist has `dof ry` only, ry being the rotation about its own bone axis
# (axis 0 90 90 XYZ turns local y onto the bone's direction), so it can only twist and stays on
# the line of lradius (`dof rx`, the elbow's flexion): it is the distal forearm, where pronation
# and supination happen. lhand has `dof rx rz`, the two rotations across its bone: flexion and
# deviation, the wrist's own two degrees of freedom. Lengths agree: lradius 3.48 + lwrist 1.74
# units = 29.5 cm from the elbow to lhand's start (a forearm; lradius alone, 19.7 cm, is 0.70 of
# the 28 cm humerus). The BVH conversions (cgspeed's LeftHand = lwrist / LeftFingerBase = lhand,
# 131_0x's LeftWrist / lhand) and cmu_subset drop lwrist's length: there lhand's start is stacked
# on lwrist's, the same point. So lhand is SMPL's wrist in every dialect; lwrist's node is tied to
# nothing (SMPL has no joint mid-forearm). Tying lwrist to SMPL's wrist (and lhand to SMPL's hand)
# aimed the ASF palm along the forearm, so the hand's flexion was lost (eval --real, cmu_amc hand
# orientation 8.0 / 10.6 deg mean, p95 24.7 / 29.1). A skeleton with a wrist node and no hand node
# (a BVH without LeftFingerBase, Mixamo's LeftHand) gives its wrist node to lhand (``match_names``).
_CMU_TABLE = [
    ("root", None),
    ("lowerback", None),
    ("upperback", "spine2"),
    ("thorax", "spine3"),
    ("lowerneck", None),
    ("upperneck", "neck"),
    ("head", "head"),
    ("head_end", "@head_top"),
] + _sided(
    [
        ("{l}hipjoint", None),
        ("{l}femur", "{side}_hip"),
        ("{l}tibia", "{side}_knee"),
        ("{l}foot", "{side}_ankle"),
        ("{l}toes", "{side}_foot"),
        ("{l}toes_end", "@{L}BigToe"),
        ("{l}clavicle", None),
        ("{l}humerus", "{side}_shoulder"),
        ("{l}radius", "{side}_elbow"),
        ("{l}wrist", None),
        ("{l}hand", "{side}_wrist"),
        ("{l}fingers", None),
        ("{l}thumb", None),
        ("{l}fingers_end", "@{l}middle"),
        ("{l}thumb_end", "@{l}thumb"),
    ]
)
# End points are defined by where the capture's last marker sat, not by anatomy: they aim a leaf
# but must not outvote the joints (the same reasoning as the spine nodes' trust below), and they
# are directions only: CMU's head bone ends 10 cm above the head joint, SMPL's head top 20 cm, so
# as positions they would pull the body (and count 15 cm of "fit error" that no pose can remove).
_CMU_END_TRUST = {
    k: 0.5 for s in "lr" for k in (f"{s}toes_end", f"{s}fingers_end", f"{s}thumb_end")
}
_CMU_END_TRUST["head_end"] = 0.7
# The thumb's end turns the palm about its long axis only while it moves with the palm. In the
# ASF skeletons and most BVH conversions it does (its distance to the finger end is constant),
# but some files give the thumb a joint of its own that moves (131_0x's RThumb hangs off the
# wrist node, not the hand; the FBX rig of 49_08): there the distance to the finger end varies by
# 30-50 % over the take, and fitting the palm to it turned the hands 55-72 deg off on average.
_CMU_RIGID_WITH = {f"{s}thumb_end": f"{s}fingers_end" for s in "lr"}
# CMU BVH conversions come in dialects that reuse the same words for different joints:
# cgspeed's (LeftUpLeg, Spine1, Neck = lower neck, LeftShoulder = clavicle), the one with
# LeftHip/Chest2/lowerneck (Neck = upper neck, LeftShoulder = shoulder joint), and Mixamo
# (Spine2 = upper chest, Neck = neck base).
_CMU_CGSPEED = [
    ("Hips", "root"),
    ("LowerBack", "lowerback"),
    ("Spine", "upperback"),
    ("Spine1", "thorax"),
    ("Neck", "lowerneck"),
    ("Neck1", "upperneck"),
    ("Head", "head"),
]
_CMU_CHEST2 = [
    ("Hips", "root"),
    ("lowerback", "lowerback"),
    ("Chest", "upperback"),
    ("Chest2", "thorax"),
    ("lowerneck", "lowerneck"),
    ("Neck", "upperneck"),
    ("Head", "head"),
]
_CMU_MIXAMO = [
    ("Hips", "root"),
    ("Spine", "upperback"),
    ("Spine1", "thorax"),
    ("Neck", "upperneck"),
    ("Head", "head"),
]  # Spine2 (upper chest) has no CMU node; Mixamo's Neck sits where SMPL's does (CMU's upperneck)
for _side, _s in (("Left", "l"), ("Right", "r")):
    _CMU_CGSPEED += [
        (f"{_s.upper()}HipJoint", f"{_s}hipjoint"),
        (f"{_side}UpLeg", f"{_s}femur"),
        (f"{_side}Leg", f"{_s}tibia"),
        (f"{_side}Foot", f"{_s}foot"),
        (f"{_side}ToeBase", f"{_s}toes"),
        (f"{_side}Shoulder", f"{_s}clavicle"),
        (f"{_side}Arm", f"{_s}humerus"),
        (f"{_side}ForeArm", f"{_s}radius"),
        (f"{_side}Hand", f"{_s}wrist"),
        (f"{_side}FingerBase", f"{_s}hand"),
        (f"{_side}HandIndex1", f"{_s}fingers"),
        (f"{_s.upper()}Thumb", f"{_s}thumb"),
    ]
    _CMU_CHEST2 += [
        (f"{_s.upper()}HipJoint", f"{_s}hipjoint"),
        (f"{_side}Hip", f"{_s}femur"),
        (f"{_side}Knee", f"{_s}tibia"),
        (f"{_side}Ankle", f"{_s}foot"),
        (f"{_side}Toe", f"{_s}toes"),
        (f"{_side}Collar", f"{_s}clavicle"),
        (f"{_side}Shoulder", f"{_s}humerus"),
        (f"{_side}Elbow", f"{_s}radius"),
        (f"{_side}Wrist", f"{_s}wrist"),
        (f"{_s}hand", f"{_s}hand"),
        (f"{_s.upper()}Fingers", f"{_s}fingers"),
        (f"{_s.upper()}Thumb", f"{_s}thumb"),
    ]
    _CMU_MIXAMO += [
        (f"{_side}UpLeg", f"{_s}femur"),
        (f"{_side}Leg", f"{_s}tibia"),
        (f"{_side}Foot", f"{_s}foot"),
        (f"{_side}ToeBase", f"{_s}toes"),
        (f"{_side}Shoulder", f"{_s}clavicle"),
        (f"{_side}Arm", f"{_s}humerus"),
        (f"{_side}ForeArm", f"{_s}radius"),
        (f"{_side}Hand", f"{_s}hand"),  # Mixamo's hand bone is the palm: CMU's lhand
    ]
    _CMU_CGSPEED += [(f"{_s.upper()}Fingers", f"{_s}fingers")]  # 01_01.bvh's cgspeed variant


def _end_aliases(table):
    """BVH End Sites are named '<Joint>_End' by the reader: alias them to the node's '_end' point."""
    leaves = {f"{s}{b}" for s in "lr" for b in ("toes", "fingers", "thumb")} | {"head"}
    return [(f"{a}_End", f"{k}_end") for a, k in table if k in leaves]


# End-point names of every dialect (no two dialects give one of them different meanings)
_CMU_ENDS = _end_aliases(_CMU_CGSPEED + _CMU_CHEST2 + _CMU_MIXAMO) + [("HeadTop_End", "head_end")]
# Spine nodes are spaced differently from SMPL's: they may steer, not decide.
CMU = _layout(
    "cmu",
    "CMU mocap skeleton (ASF/BVH)",
    _CMU_TABLE,
    _CMU_CGSPEED + _CMU_ENDS,
    trust={"upperback": 0.3, "thorax": 0.3, "upperneck": 0.5, **_CMU_END_TRUST},
    aim_only=_CMU_END_TRUST,
    rigid_with=_CMU_RIGID_WITH,
)
# Keypoints the solver does not aim at but the fit figures measure against an SMPL joint, per layout:
# CMU's finger base (lhand's end) is where SMPL's hand joint sits, so the report's hand segment is
# the palm (wrist -> finger base), as eval --real's. Measured to the finger end instead, it counted
# the capture's finger chain: 131_01.bvh's is bent a constant 37.3 deg (std 0.001) off SMPL's
# straightened palm line, and the demo's verdict said "check the hands" of a palm 0.0 deg off.
FIGURE_POINTS: dict[str, dict[str, str]] = {
    "cmu": {"lfingers": "left_hand", "rfingers": "right_hand"}
}
_CMU_DIALECTS: dict[str | None, dict[str, str]] = {
    "mixamo": {normalize_name(a): k for a, k in _CMU_MIXAMO},
    "chest2": {normalize_name(a): k for a, k in _CMU_CHEST2},
}


def cmu_node_names(names) -> dict[str, str]:
    """Map the joint names of a CMU-derived skeleton (any known dialect) to CMU ASF node names."""
    table = _CMU_DIALECTS.get(_cmu_dialect(names)) or {
        normalize_name(a): k for a, k in _CMU_CGSPEED
    }
    return {n: table[normalize_name(n)] for n in names if normalize_name(n) in table}


def _cmu_dialect(names) -> str | None:
    norm = {normalize_name(n) for n in names}
    if any(str(n).lower().startswith("mixamorig") for n in names):
        return "mixamo"
    if {"chest2", "lowerneck"} & norm or {"lefthip", "leftcollar"} <= norm:
        return "chest2"
    return None


# DeepMimic's humanoid3d character (``formats/deepmimic.py``) by its joint names. Its root sits
# between its hips (the open model's pelvis is 1.6 cm above its hips), its chest joint 0.24 m above
# the root, at the lower thorax, and its neck joint at the neck's base; that one neck joint turns
# the whole head (a sphere 0.175 m above it), so the head is oriented by the file's rotations
# (``solver._with_rotations``), as the feet are (no toe point). Its spine points are spaced unlike
# SMPL's (its neck sits at shoulder height): they may steer, not decide, as the CMU spine nodes do
# (eval --real, DeepMimic takes, analytic with the file's rotations: chest -> spine3 or the neck ->
# the collars' midpoint gave a lower fit error, 22 against 33 mm, but 1.5-2.4x the pose MPVE).
DEEPMIMIC = _layout(
    "deepmimic",
    "DeepMimic humanoid3d",
    [
        ("root", "pelvis"),
        ("chest", "spine2"),
        ("neck", "neck"),
    ]
    + _sided(
        [
            ("{s}_hip", "{side}_hip"),
            ("{s}_knee", "{side}_knee"),
            ("{s}_ankle", "{side}_ankle"),
            ("{s}_shoulder", "{side}_shoulder"),
            ("{s}_elbow", "{side}_elbow"),
            ("{s}_wrist", "{side}_wrist"),
        ]
    ),
    trust={"chest": 0.3, "neck": 0.5},
)
DEEPMIMIC_NAMES = frozenset(DEEPMIMIC.keypoints)

LAYOUTS = {lay.name: lay for lay in (SMPL24, BODY25, H36M17, COCO17, MEDIAPIPE33, CMU, DEEPMIMIC)}
_BY_COUNT = {24: "smpl24", 25: "body25", 33: "mediapipe33"}


def get_layout(name: str) -> Layout:
    try:
        return LAYOUTS[name.lower()]
    except KeyError:
        raise LayoutError(
            f"Unknown layout '{name}'. Choose one of: {', '.join(LAYOUTS)}."
        ) from None


def match_names(layout: Layout, names: list[str]) -> list[int]:
    """For each input name, the index of the layout keypoint it is (or -1)."""
    dialect = _CMU_DIALECTS.get(_cmu_dialect(names)) if layout is CMU else None
    keypoint_index = {k: i for i, k in enumerate(layout.keypoints)}
    out, taken = [], set()
    for raw in names:
        n = normalize_name(raw)
        target = dialect.get(n) if dialect else None
        target = target or layout.aliases.get(n)
        idx = keypoint_index.get(target, -1) if target else -1
        if idx in taken:  # the same keypoint twice: keep the first, ignore the duplicate
            idx = -1
        if idx >= 0:
            taken.add(idx)
        out.append(idx)
    if layout is CMU:
        out = _wrist_as_hand(out, keypoint_index)
    return out


def _wrist_as_hand(matched: list[int], keypoint_index: dict[str, int]) -> list[int]:
    """A CMU-derived skeleton with a wrist node and no hand node (a BVH without LeftFingerBase): its
    wrist node is where the palm turns, SMPL's wrist, which the CMU layout ties to lhand."""
    out = list(matched)
    for s in "lr":
        wrist, hand = keypoint_index[f"{s}wrist"], keypoint_index[f"{s}hand"]
        if hand not in out and wrist in out:
            out[out.index(wrist)] = hand
    return out


def detect_layout(
    names: list[str] | None, num_joints: int, positions: np.ndarray | None = None
) -> tuple[Layout, str]:
    """Pick the layout from joint names, else from the joint count. Returns (layout, reason)."""
    if names:
        scores = []
        for lay in LAYOUTS.values():
            matched = [i for i in match_names(lay, names) if i >= 0]
            used = sum(1 for i in matched if lay.definitions[i] is not None)
            # Prefer the layout that recognises most input names (even ones it does not use:
            # they show which skeleton this is), then the one it covers best.
            scores.append((len(matched), len(matched) / lay.num_keypoints, used, lay.name))
        scores.sort(reverse=True)
        _, _coverage, best_used, best = scores[0]
        if best_used >= 8:
            return LAYOUTS[best], f"matched {best_used} joint names to {LAYOUTS[best].title}"
        shown = ", ".join(map(str, names[:12])) + (" ..." if len(names) > 12 else "")
        raise LayoutError(
            f"Could not recognise the keypoint layout from the joint names ({shown}). Expected names of "
            f"one of: SMPL (pelvis, left_hip, ...), OpenPose BODY_25 (Nose, Neck, RShoulder, ...), "
            f"Human3.6M (Hip, RHip, RKnee, ...), COCO (left_shoulder, ...), MediaPipe (left_heel, ...), "
            f"CMU/BVH/Mixamo (lfemur, LeftUpLeg, mixamorig:LeftUpLeg, ...). Rename the joints or pass the "
            f"layout explicitly (--layout)."
        )
    if num_joints in _BY_COUNT:
        lay = LAYOUTS[_BY_COUNT[num_joints]]
        return lay, f"{num_joints} unnamed keypoints: assumed {lay.title} order"
    if num_joints == 17 and positions is not None:
        # H36M starts with the pelvis, midway between its hips (1 and 4); COCO starts with the nose.
        p = np.asarray(positions, dtype=np.float64)
        with np.errstate(all="ignore"):
            size = np.nanmedian(
                np.nanmax(np.linalg.norm(p - np.nanmean(p, 1, keepdims=True), axis=-1), 1)
            )
            off = np.nanmedian(np.linalg.norm(p[:, 0] - (p[:, 1] + p[:, 4]) / 2, axis=-1))
        if np.isfinite(off) and size > 0:
            lay = H36M17 if off < 0.15 * size else COCO17
            return (
                lay,
                f"17 unnamed keypoints: keypoint 0 {'is' if lay is H36M17 else 'is not'} between the hips, assumed {lay.title}",
            )
    raise LayoutError(
        f"Cannot tell the layout of {num_joints} unnamed keypoints. Supported counts without names: "
        f"24 (SMPL), 25 (BODY_25), 17 (H36M/COCO), 33 (MediaPipe); otherwise give joint names in the file "
        f"or pass the layout (--layout {'|'.join(LAYOUTS)})."
    )


def to_layout_order(
    layout: Layout, positions: np.ndarray, confidence: np.ndarray | None, names: list[str] | None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Reorder (T, J, 3) input into the layout's keypoint order; absent keypoints get confidence 0.

    Returns positions (T, K, 3), confidence (T, K) and the input names that were not used.
    """
    t, j = positions.shape[:2]
    conf = np.ones((t, j)) if confidence is None else np.asarray(confidence, dtype=np.float64)
    if names is None:
        if j != layout.num_keypoints:
            raise LayoutError(
                f"The file has {j} unnamed keypoints but layout '{layout.name}' has {layout.num_keypoints}; "
                "add joint names or choose the matching layout."
            )
        index = list(range(j))
    else:
        index = match_names(layout, names)
        if sum(i >= 0 for i in index) == 0:
            raise LayoutError(
                f"None of the joint names match layout '{layout.name}' "
                f"(expected names such as {', '.join(layout.keypoints[:6])})."
            )
    out = np.full((t, layout.num_keypoints, 3), np.nan)
    out_conf = np.zeros((t, layout.num_keypoints))
    unused = []
    for src, dst in enumerate(index):
        if dst < 0:
            if names is not None:
                unused.append(str(names[src]))
            continue
        out[:, dst] = positions[:, src]
        out_conf[:, dst] = conf[:, src]
    defined = np.array([d is not None for d in layout.definitions])
    out_conf[:, ~defined] = 0.0
    out_conf = out_conf * layout.trust_array()
    bad = ~np.isfinite(out).all(-1)
    out_conf[bad] = 0.0
    return out, out_conf, unused
