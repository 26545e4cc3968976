"""Reader for DeepMimic motion clips (``humanoid3d_*.txt``): joint positions and bone rotations.

A DeepMimic motion file is JSON text (extension .txt)::

    {"Loop": "wrap", "Frames": [[duration, root x, y, z, root quat (w, x, y, z),
                                 chest quat, neck quat, right hip quat, right knee angle, ...], ...]}

one row per frame: the frame's duration in seconds, the root position in metres (Y up), then each
moving joint of the character in its tree order, a quaternion (w, x, y, z) for a spherical joint
(and the root) and one angle in radians for a revolute one (knees, elbows: about the joint's local
z axis). The file has no skeleton: the offsets come from the character the clip was made for,
DeepMimic's ``humanoid3d`` (``data/characters/humanoid3d.txt``), whose joint tree is built in
here (:data:`HUMANOID3D`), or from a character file given explicitly.

The reader returns what the BVH reader returns: every joint's world position (metres, Y up, the
file's own axes), its world rotation relative to the rest pose and the rest positions (for the
solver's rotation transfer), the joint names (DeepMimic's own: ``root``, ``chest``, ``neck``,
``right_hip``, ... -> layout ``deepmimic``) and the fps from the frame durations.

Credit: the humanoid3d character (joint tree, offsets, body shapes) and the motion format are
from DeepMimic, https://github.com/xbpeng/DeepMimic, MIT licence, Copyright (c) 2018 Xue Bin Peng
(X. B. Peng, P. Abbeel, S. Levine, M. van de Panne: "DeepMimic: Example-Guided Deep
Reinforcement Learning of Physics-Based Character Skills", ACM TOG 37(4), 2018).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..keypoints import KeypointSequence
from ..model.kinematics import rest_positions, tree_kinematics
from ..model.rotations import quaternion_to_matrix
from ._common import MAX_FPS, axis_rotation, check_file, finalize, read_text


@dataclass(frozen=True)
class DeepMimicJoint:
    name: str
    parent: int  # index of the parent joint, -1 for the root
    kind: str  # 'none' (the root), 'spherical', 'revolute' or 'fixed'
    offset: tuple[float, float, float]  # attachment point in the parent's frame (metres)


# DeepMimic's humanoid3d character (AttachX/Y/Z of data/characters/humanoid3d.txt; every
# AttachTheta is zero). At rest it stands with its arms down, facing +X, its right side at +Z.
HUMANOID3D = (
    DeepMimicJoint("root", -1, "none", (0.0, 0.0, 0.0)),
    DeepMimicJoint("chest", 0, "spherical", (0.0, 0.236151, 0.0)),
    DeepMimicJoint("neck", 1, "spherical", (0.0, 0.223894, 0.0)),
    DeepMimicJoint("right_hip", 0, "spherical", (0.0, 0.0, 0.084887)),
    DeepMimicJoint("right_knee", 3, "revolute", (0.0, -0.421546, 0.0)),
    DeepMimicJoint("right_ankle", 4, "spherical", (0.0, -0.40987, 0.0)),
    DeepMimicJoint("right_shoulder", 1, "spherical", (-0.02405, 0.2435, 0.18311)),
    DeepMimicJoint("right_elbow", 6, "revolute", (0.0, -0.274788, 0.0)),
    DeepMimicJoint("right_wrist", 7, "fixed", (0.0, -0.258947, 0.0)),
    DeepMimicJoint("left_hip", 0, "spherical", (0.0, 0.0, -0.084887)),
    DeepMimicJoint("left_knee", 9, "revolute", (0.0, -0.421546, 0.0)),
    DeepMimicJoint("left_ankle", 10, "spherical", (0.0, -0.40987, 0.0)),
    DeepMimicJoint("left_shoulder", 1, "spherical", (-0.02405, 0.2435, -0.18311)),
    DeepMimicJoint("left_elbow", 12, "revolute", (0.0, -0.274788, 0.0)),
    DeepMimicJoint("left_wrist", 13, "fixed", (0.0, -0.258947, 0.0)),
)
_WIDTH = {"none": 4, "spherical": 4, "revolute": 1, "fixed": 0}  # numbers per joint in a row
MAX_FILE_BYTES = 64 << 20  # 64 MiB of JSON text: ~150,000 frames, 40 min at 60 fps
MAX_FRAMES = 200_000
MAX_JOINTS = 256


def row_width(joints=HUMANOID3D) -> int:
    """Numbers per frame row: the duration, the root position and every moving joint's values."""
    return 1 + 3 + sum(_WIDTH[j.kind] for j in joints)


def looks_like_deepmimic(path) -> bool:
    """Sniff a .txt file: JSON text whose first 4 kB name a 'Frames' key (DeepMimic's motion)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return text.startswith(b"{") and b'"Frames"' in text


def _load_json(path, what: str):
    p = check_file(path)
    size = p.stat().st_size
    if size > MAX_FILE_BYTES:
        raise InputError(
            f"{p.name}: {size / 2**20:.0f} MiB is more than a DeepMimic {what} holds (at most "
            f"{MAX_FILE_BYTES >> 20} MiB read). Split the clip into shorter files."
        )
    try:
        return json.loads(read_text(p, f"DeepMimic {what}"))
    except json.JSONDecodeError as e:
        raise InputError(
            f"{p.name}: not valid JSON at line {e.lineno}, column {e.colno} ({e.msg}); a DeepMimic "
            f"{what} is a JSON object. Re-export the file."
        ) from None
    except RecursionError:
        raise InputError(f"{p.name}: the JSON nests too deeply to be a DeepMimic {what}.") from None


def read_character(path) -> tuple[DeepMimicJoint, ...]:
    """The joint tree of a DeepMimic character file (``Skeleton.Joints``), checked."""
    where = Path(path).name
    data = _load_json(path, "character")
    try:
        raw = data["Skeleton"]["Joints"]
    except (KeyError, TypeError):
        raise InputError(
            f"{where}: no 'Skeleton' -> 'Joints' list; it is not a DeepMimic character file."
        ) from None
    if not isinstance(raw, list) or not 0 < len(raw) <= MAX_JOINTS:
        raise InputError(f"{where}: 'Joints' must list 1 to {MAX_JOINTS} joints.")
    joints = []
    for i, j in enumerate(raw):
        try:
            name, parent, kind = str(j["Name"]), int(j["Parent"]), str(j["Type"]).lower()
            offset = tuple(float(j[f"Attach{a}"]) for a in "XYZ")
            theta = [float(j.get(f"AttachTheta{a}", 0.0)) for a in "XYZ"]
        except (KeyError, TypeError, ValueError):
            raise InputError(
                f"{where}: joint {i} needs Name, Parent, Type and AttachX/Y/Z numbers."
            ) from None
        if kind not in _WIDTH or (parent < 0) != (i == 0) or parent >= i:
            raise InputError(
                f"{where}: joint {i} '{name}' has type '{kind}' and parent {parent}; joint 0 must be "
                f"the root (parent -1), every other joint's parent must come before it, and types "
                f"are {', '.join(_WIDTH)}."
            )
        if any(t != 0.0 for t in theta) or not all(map(math.isfinite, offset)):
            raise InputError(
                f"{where}: joint '{name}' has a turned (AttachTheta) or non-finite attachment; only "
                f"characters with unrotated joint frames (as humanoid3d) are read."
            )
        joints.append(DeepMimicJoint(name, parent, kind, offset))  # type: ignore[arg-type]
    if len({j.name for j in joints}) != len(joints):
        raise InputError(f"{where}: two joints share a name; every joint needs its own.")
    return tuple(joints)


def _frame_rows(data, where: str, joints, character: str) -> np.ndarray:
    """The (T, width) float64 frame rows of a parsed motion file, checked."""
    frames = data.get("Frames") if isinstance(data, dict) else None
    if not isinstance(frames, list):
        raise InputError(
            f"{where}: no 'Frames' list; a DeepMimic motion is a JSON object with 'Frames' rows."
        )
    if not frames:
        raise InputError(f"{where}: 'Frames' is empty; the clip has zero frames.")
    if len(frames) > MAX_FRAMES:
        raise InputError(
            f"{where}: {len(frames)} frames, more than the {MAX_FRAMES} read from one clip. Split it."
        )
    width = row_width(joints)
    for k, row in enumerate(frames):
        if not isinstance(row, list) or len(row) != width:
            n = len(row) if isinstance(row, list) else type(row).__name__
            raise InputError(
                f"{where}: frame {k} has {n} values; the character ({character}, {len(joints)} "
                f"joints) needs {width}: the duration, the root position, then each joint's "
                f"quaternion or angle. A clip of another DeepMimic character needs that character."
            )
    try:
        rows = np.array(frames, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{where}: 'Frames' rows must hold numbers only.") from None
    if not np.isfinite(rows).all():
        k = int(np.nonzero(~np.isfinite(rows).all(1))[0][0])
        raise InputError(f"{where}: frame {k} holds a non-finite value; the file is corrupt.")
    return rows


def _quat_matrices(q: np.ndarray, where: str, joint: str) -> np.ndarray:
    """(T, 4) quaternions (w, x, y, z), normalised, -> (T, 3, 3) rotation matrices."""
    norm = np.linalg.norm(q, axis=-1)
    if (norm < 1e-6).any():
        k = int(np.argmax(norm < 1e-6))
        raise InputError(
            f"{where}: frame {k}: the '{joint}' quaternion is zero, which is no rotation; the file "
            f"is corrupt."
        )
    return quaternion_to_matrix(q)  # normalised there


def deepmimic_forward_kinematics(rows: np.ndarray, joints=HUMANOID3D, where: str = "DeepMimic"):
    """World positions (T, N, 3), world rotations (T, N, 3, 3) relative to the rest pose and rest
    positions (N, 3) of the character's joints for frame rows (T, width).

    G_i = G_parent(i) L_i, p_i = p_parent(i) + G_parent(i) offset_i (DeepMimic's kinematic tree;
    at rest every L_i is the identity, so G_i is the rotation relative to the rest pose), walked
    by ``model.kinematics.tree_kinematics``; the root's offset is its position in the row."""
    t, n = rows.shape[0], len(joints)
    local = np.empty((t, n, 3, 3))
    offsets = np.empty((t, n, 3))
    col = 4  # duration, root position
    for i, j in enumerate(joints):
        if j.kind in ("none", "spherical"):
            local[:, i] = _quat_matrices(rows[:, col : col + 4], where, j.name)
        elif j.kind == "revolute":
            local[:, i] = axis_rotation("z", rows[:, col])
        else:  # fixed
            local[:, i] = np.eye(3)
        col += _WIDTH[j.kind]
        offsets[:, i] = rows[:, 1:4] if j.parent < 0 else j.offset
    parents = [j.parent for j in joints]
    glob, pos = tree_kinematics(local, offsets, parents)
    rest = rest_positions(np.array([(0.0, 0.0, 0.0)] + [j.offset for j in joints[1:]]), parents)
    return pos, glob, rest


def _fps(durations: np.ndarray, notes: list[str], where: str) -> float | None:
    """Frames per second from the frame durations (the last row's is often 0: not counted)."""
    d = durations[:-1] if durations.size > 1 else durations
    step = float(np.median(d))
    if not step > 0:
        notes.append("the frame durations are not positive; fps unknown, give it explicitly.")
        return None
    fps = 1.0 / step
    if fps > MAX_FPS:
        raise InputError(
            f"{where}: frames last {step:g} s, i.e. {fps:.3g} fps, more than any capture "
            f"({MAX_FPS:g}). The first number of each row is the frame's duration in seconds."
        )
    if abs(fps - round(fps)) < 1e-4 * fps:  # 0.033332 s is 30 fps
        fps = float(round(fps))
    if np.ptp(d) > 0.01 * step:
        notes.append(f"frame durations vary ({d.min():g}..{d.max():g} s): fps from their median.")
    notes.append(f"fps = 1 / frame duration ({step:g} s) = {fps:.6g}.")
    return fps


def read_deepmimic(path, character=None) -> KeypointSequence:
    """Read a DeepMimic motion clip (metres, Y up) on ``character`` (a character file; default the
    built-in humanoid3d) into joint positions, bone rotations and rest positions."""
    where = Path(path).name
    joints = HUMANOID3D if character is None else read_character(character)
    who = "humanoid3d, built in" if character is None else f"'{Path(character).name}'"
    data = _load_json(path, "motion")
    rows = _frame_rows(data, where, joints, who)
    pos, glob, rest = deepmimic_forward_kinematics(rows, joints, where)
    loop = data.get("Loop", "none")
    what = f"{rows.shape[0]} frames on the {len(joints)}-joint character ({who}), loop '{loop}'"
    notes = [f"DeepMimic motion: {what}; metres, Y up."]
    fps = _fps(rows[:, 0], notes, where)
    seq = finalize(
        pos,
        names=[j.name for j in joints],
        fps=fps,
        units="m",
        up="y",
        layout="deepmimic" if joints == HUMANOID3D else None,
        source=str(path),
        notes=notes,
        where=where,
        owned=True,
    )
    seq.rotations, seq.rest_positions = glob, rest  # see KeypointSequence
    return seq
