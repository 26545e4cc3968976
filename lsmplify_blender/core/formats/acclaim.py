"""Acclaim ASF (skeleton) + AMC (motion) reader, the format of the CMU mocap database.

ASF: ``:units`` (mass, length multiplier, angle deg|rad), ``:root`` (order, axis,
position, orientation), ``:bonedata`` (per bone: id, name, direction, length,
``axis ax ay az ORDER``, dof) and ``:hierarchy``.
AMC: an optional header (``:FULLY-SPECIFIED``, ``:DEGREES`` / ``:RADIANS``, comments),
then per frame a frame number line followed by ``bone v1 v2 ...`` lines with the values
of that bone's dofs (the root's in its ``order``).

Forward kinematics (all frames at once, a loop over bones only), column vectors:
- an Euler triple with order 'XYZ' means X is applied first: R = Rz · Ry · Rx; the ASF
  ``axis`` and root ``orientation`` values are always (x, y, z) angles, their letters
  give the order; AMC values follow the bone's ``dof`` (root: ``order``) listing, the
  first listed applied first;
- the root: R_root = C_root · M_root · C_root⁻¹, position = ASF position + (TX, TY, TZ);
- a bone: L = C · M_dof · C⁻¹ (C from the bone's ``axis``, M_dof from its AMC values in
  its dof order), R_global = R_global(parent) · L, and
  end = start + R_global · direction · length, start = parent bone's end (root position
  for the root's children).

Output: the position of each bone's START, named by the bone (plus ``root``), so
``lfemur`` is the hip centre, ``ltibia`` the knee, ``lfoot`` the ankle, ``lhumerus``
the shoulder, like the cmu_subset convention; leaf bones also give their END as
``<bone>_end`` (e.g. ``head_end``, ``ltoes_end``). Joints are in depth-first order of the
hierarchy, which for CMU skeletons is the order of cmu_subset's ``skeleton.json``.

Length: the ASF ``:units length s`` means 1 file unit = (1/s) inch. For s = 0.45 (CMU)
positions stay in file units with ``units='cmu'`` (0.05644 m); for any other s they are
converted to metres (``units='m'``); without a length entry the unit is left unknown.
AMC files carry no frame rate: CMU captured at 120 fps, which is assumed (see ``notes``).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..keypoints import KeypointSequence
from ..model.kinematics import tree_kinematics
from ._common import euler_matrix, finalize, parse_floats, read_text

CMU_FPS = 120.0
CMU_LENGTH = 0.45
_DOF_NAMES = ("rx", "ry", "rz", "tx", "ty", "tz", "l")


@dataclass
class AsfBone:
    name: str
    direction: np.ndarray  # (3,) unit vector in world axes at rest
    length: float
    axis: np.ndarray  # (3,) angles in the ASF angle unit
    axis_order: str  # e.g. 'XYZ'
    dof: list[str] = field(default_factory=list)  # e.g. ['rx', 'ry', 'rz']
    parent: str = "root"
    children: list[str] = field(default_factory=list)


@dataclass
class AsfSkeleton:
    bones: dict[str, AsfBone]
    root_order: list[str]  # e.g. ['TX', 'TY', 'TZ', 'RX', 'RY', 'RZ']
    root_axis: str
    root_position: np.ndarray
    root_orientation: np.ndarray
    root_children: list[str]
    length_scale: float | None  # the ':units length' value, None when absent
    angle_deg: bool
    name: str = ""


def _angle_order(order: str, where: str) -> str:
    o = order.strip().upper()
    if len(o) != 3 or sorted(o) != ["X", "Y", "Z"]:
        raise InputError(f"{where}: axis order '{order}' must be a permutation of XYZ.")
    return o


def _rot_from_xyz(angles_xyz_rad: np.ndarray, order: str) -> np.ndarray:
    """ASF ``axis ax ay az ORDER`` / root orientation: values are always (x, y, z); ORDER
    says which is applied first (``XYZ``: R = Rz · Ry · Rx)."""
    a = np.asarray(angles_xyz_rad, dtype=np.float64)
    return _rot_from_order(a[..., ["XYZ".index(c) for c in order]], order)


def _rot_from_order(angles_rad: np.ndarray, order: str) -> np.ndarray:
    """Rotation for angles[..., k] about order[k], order[0] applied first (R = R_o2 R_o1 R_o0)."""
    axes = order.lower()[::-1]
    return euler_matrix(np.asarray(angles_rad)[..., ::-1], axes)


# ---------------------------------------------------------------------------------------
# ASF


def _sections(text: str) -> dict[str, list[list[str]]]:
    """Split an ASF into ':keyword' sections of tokenised, comment-free lines."""
    out: dict[str, list[list[str]]] = {}
    cur = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith(":"):
            parts = line[1:].split()
            if not parts:
                continue
            cur = parts[0].lower()
            out.setdefault(cur, [])
            if len(parts) > 1:  # e.g. ':version 1.10'
                out[cur].append(parts[1:])
            continue
        if cur is not None:
            out[cur].append(line.split())
    return out


def parse_asf(text: str, where: str = "ASF") -> AsfSkeleton:
    """Parse an Acclaim skeleton (.asf text) into an AsfSkeleton; ``where`` prefixes errors."""
    sec = _sections(text)
    if "bonedata" not in sec or "hierarchy" not in sec:
        missing = [s for s in (":bonedata", ":hierarchy") if s[1:] not in sec]
        raise InputError(
            f"{where}: not a valid ASF skeleton (no {' and '.join(missing)} section). "
            f"Pass the subject's .asf file."
        )
    length_scale, angle_deg = _asf_units(sec.get("units", []), where)
    root_order, root_axis, root_pos, root_ori = _asf_root(sec.get("root", []), where)
    bones = _asf_bones(sec["bonedata"], where)
    root_children = _asf_hierarchy(sec["hierarchy"], bones, where)
    _check_connected(bones, root_children, where)
    name = " ".join(sec.get("name", [[""]])[0])
    return AsfSkeleton(
        bones=bones,
        root_order=root_order,
        root_axis=root_axis,
        root_position=root_pos,
        root_orientation=root_ori,
        root_children=root_children,
        length_scale=length_scale,
        angle_deg=angle_deg,
        name=name,
    )


def _asf_units(rows: list[list[str]], where: str) -> tuple[float | None, bool]:
    """The ':units' section: (length scale or None when absent, True when angles are degrees)."""
    length_scale = None
    angle_deg = True
    for toks in rows:
        key = toks[0].lower()
        if key == "length" and len(toks) > 1:
            v = parse_floats(toks[1:2], f"{where}: units length")[0]
            if not np.isfinite(v) or v <= 0:
                raise InputError(f"{where}: ':units length {toks[1]}' must be a positive number.")
            length_scale = float(v)
        elif key == "angle" and len(toks) > 1:
            a = toks[1].lower()
            if a.startswith("deg"):
                angle_deg = True
            elif a.startswith("rad"):
                angle_deg = False
            else:
                raise InputError(f"{where}: ':units angle {toks[1]}' must be 'deg' or 'rad'.")
    return length_scale, angle_deg


def _asf_root(rows: list[list[str]], where: str) -> tuple[list[str], str, np.ndarray, np.ndarray]:
    """The ':root' section: (channel order, axis order, rest position, rest orientation)."""
    root_order = ["TX", "TY", "TZ", "RX", "RY", "RZ"]
    root_axis = "XYZ"
    root_pos = np.zeros(3)
    root_ori = np.zeros(3)
    for toks in rows:
        key = toks[0].lower()
        if key == "order":
            root_order = [t.upper() for t in toks[1:]]
            bad = [t for t in root_order if t not in ("TX", "TY", "TZ", "RX", "RY", "RZ")]
            if bad or len(set(root_order)) != len(root_order):
                raise InputError(f"{where}: root order {toks[1:]} must list TX TY TZ RX RY RZ.")
        elif key == "axis" and len(toks) > 1:
            root_axis = _angle_order(toks[1], f"{where}: root axis")
        elif key == "position":
            root_pos = parse_floats(toks[1:4], f"{where}: root position")
            if root_pos.size != 3 or not np.isfinite(root_pos).all():
                raise InputError(f"{where}: root position needs 3 finite numbers.")
        elif key == "orientation":
            root_ori = parse_floats(toks[1:4], f"{where}: root orientation")
            if root_ori.size != 3 or not np.isfinite(root_ori).all():
                raise InputError(f"{where}: root orientation needs 3 finite numbers.")
    return root_order, root_axis, root_pos, root_ori


def _asf_bones(rows: list[list[str]], where: str) -> dict[str, AsfBone]:
    """The ':bonedata' section: its begin/end blocks as bones by name (no hierarchy yet)."""
    bones: dict[str, AsfBone] = {}
    block: dict | None = None
    for toks in rows:
        key = toks[0].lower()
        if key == "begin":
            block = {}
            continue
        if key == "end":
            if block is None:
                raise InputError(f"{where}: 'end' without 'begin' in :bonedata.")
            bone = _bone_of_block(block, bones, where)
            bones[bone.name] = bone
            block = None
            continue
        if block is None:
            raise InputError(f"{where}: '{' '.join(toks)}' outside a begin/end block in :bonedata.")
        _read_bone_line(block, key, toks, where)
    if block is not None:
        raise InputError(
            f"{where}: a bone block in :bonedata is not closed by 'end'; the file is truncated."
        )
    if not bones:
        raise InputError(f"{where}: :bonedata declares no bones.")
    return bones


def _bone_of_block(block: dict, bones: dict[str, AsfBone], where: str) -> AsfBone:
    """The bone a closed begin/end block describes, checked for a new name and its required fields."""
    name = block.get("name")
    if not name:
        raise InputError(f"{where}: a bone in :bonedata has no name.")
    for req in ("direction", "length"):
        if req not in block:
            raise InputError(f"{where}: bone '{name}' has no '{req}'.")
    if name in bones or name == "root":
        raise InputError(f"{where}: bone name '{name}' is used twice.")
    return AsfBone(
        name=name,
        direction=block["direction"],
        length=block["length"],
        axis=block.get("axis", np.zeros(3)),
        axis_order=block.get("axis_order", "XYZ"),
        dof=block.get("dof", []),
    )


def _read_bone_line(block: dict, key: str, toks: list[str], where: str) -> None:
    """Store one line of a bone block (name, direction, length, axis, dof) in ``block``."""
    bw = f"{where}: bone '{block.get('name', '?')}'"
    if key == "name":
        block["name"] = toks[1] if len(toks) > 1 else ""
    elif key == "direction":
        d = parse_floats(toks[1:4], f"{bw} direction")
        if d.size != 3 or not np.isfinite(d).all():
            raise InputError(f"{bw}: direction needs 3 finite numbers.")
        nrm = np.linalg.norm(d)
        block["direction"] = d / nrm if nrm > 0 else d
    elif key == "length":
        v = parse_floats(toks[1:2], f"{bw} length")
        if v.size != 1 or not np.isfinite(v).all() or v[0] < 0:
            raise InputError(f"{bw}: length needs one finite, non-negative number.")
        block["length"] = float(v[0])
    elif key == "axis":
        v = parse_floats(toks[1:4], f"{bw} axis")
        if v.size != 3 or not np.isfinite(v).all():
            raise InputError(f"{bw}: axis needs 3 finite angles and an order.")
        block["axis"] = v
        block["axis_order"] = _angle_order(toks[4], f"{bw} axis") if len(toks) > 4 else "XYZ"
    elif key == "dof":
        dof = [t.lower() for t in toks[1:]]
        bad = [t for t in dof if t not in _DOF_NAMES]
        if bad:
            raise InputError(f"{bw}: unknown dof {bad}; Acclaim dofs are rx ry rz tx ty tz l.")
        block["dof"] = dof
    # id, limits (and their continuation lines), bodymass, cofmass: not needed


def _asf_hierarchy(rows: list[list[str]], bones: dict[str, AsfBone], where: str) -> list[str]:
    """Link the bones as the ':hierarchy' section says (parents, children); the root's children."""
    root_children: list[str] = []
    for toks in rows:
        if toks[0].lower() in ("begin", "end"):
            continue
        parent, kids = toks[0], toks[1:]
        if parent != "root" and parent not in bones:
            raise InputError(f"{where}: :hierarchy names unknown bone '{parent}'.")
        for k in kids:
            if k not in bones:
                raise InputError(f"{where}: :hierarchy names unknown bone '{k}'.")
            bones[k].parent = parent
            if parent == "root":
                root_children.append(k)
            else:
                bones[parent].children.append(k)
    return root_children


def _check_connected(bones: dict[str, AsfBone], root_children: list[str], where: str) -> None:
    """Every bone must hang off the root: no orphans, no cycles."""
    reach, todo = set(), list(root_children)
    while todo:
        b = todo.pop()
        if b in reach:
            raise InputError(f"{where}: :hierarchy has a cycle through '{b}'.")
        reach.add(b)
        todo.extend(bones[b].children)
    orphans = [b for b in bones if b not in reach]
    if orphans:
        raise InputError(f"{where}: bones {orphans} are not connected to the root in :hierarchy.")


# ---------------------------------------------------------------------------------------
# AMC

_FRAME_LINE = re.compile(r"^[ \t]*(\d+)[ \t]*\r?$", re.MULTILINE)
_NAME_AT_LINE_START = re.compile(r"^[ \t]*([A-Za-z_][^\s]*)", re.MULTILINE)


@dataclass
class AmcMotion:
    frames: np.ndarray  # (T,) frame numbers
    values: dict[str, np.ndarray]  # bone -> (T, n_values), 'root' included
    degrees: bool | None  # None when the file does not say
    missing: list[str]  # bones with dofs that never appear
    notes: list[str] = field(default_factory=list)


def parse_amc(text: str, skel: AsfSkeleton, where: str = "AMC") -> AmcMotion:
    m = _FRAME_LINE.search(text)
    if m is None:
        raise InputError(
            f"{where}: no frames found (a frame starts with a line holding only its "
            f"number). The file is empty, truncated or not an AMC file."
        )
    header, body = text[: m.start()], text[m.start() :]
    degrees = None
    fully_specified = False
    for line in header.splitlines():
        s = line.strip().upper()
        if s.startswith(":FULLY"):
            fully_specified = True
        elif s.startswith(":DEG"):
            degrees = True
        elif s.startswith(":RAD"):
            degrees = False
        elif s and not s.startswith("#") and not s.startswith(":"):
            raise InputError(f"{where}: unexpected line before the first frame: '{line.strip()}'.")
    if "#" in body:
        body = re.sub(r"#[^\n]*", "", body)
    notes: list[str] = []
    nvals = {"root": len(skel.root_order)}
    nvals.update({b: len(bone.dof) for b, bone in skel.bones.items()})
    out = _parse_amc_fast(body, nvals)
    if out is None:
        out = _parse_amc_slow(body, nvals, fully_specified, where, notes)
    frames, values = out
    missing = [b for b, n in nvals.items() if n and b not in values]
    T = frames.shape[0]
    for b in missing:
        values[b] = np.zeros((T, nvals[b]))
    return AmcMotion(frames=frames, values=values, degrees=degrees, missing=missing, notes=notes)


def _parse_amc_fast(body: str, nvals: dict[str, int]):
    """Vectorised parse for the usual case: every frame lists the same bones in the same order."""
    frame_nums = _FRAME_LINE.findall(body)
    names = _NAME_AT_LINE_START.findall(body)
    T = len(frame_nums)
    if T == 0 or len(names) % T:
        return None
    nb = len(names) // T
    order = names[:nb]
    if len(set(order)) != nb or any(b not in nvals for b in order) or names != order * T:
        return None
    width = 1 + sum(nvals[b] for b in order)
    numbers = _NAME_AT_LINE_START.sub(" ", body).split()
    if len(numbers) != T * width:
        return None
    try:
        vals = np.array(numbers, dtype=np.float64).reshape(T, width)
    except ValueError:
        return None
    frames = np.array(frame_nums, dtype=np.float64)
    if not np.array_equal(vals[:, 0], frames):  # columns misaligned: some line has a wrong count
        return None
    values, c = {}, 1
    for b in order:
        values[b] = vals[:, c : c + nvals[b]]
        c += nvals[b]
    return frames.astype(np.int64), values


def _parse_amc_slow(
    body: str, nvals: dict[str, int], fully_specified: bool, where: str, notes: list[str]
):
    """Line-by-line parse with precise errors.

    In a :FULLY-SPECIFIED file every frame must list the bones of the first frame (a short
    last frame means the file is truncated); otherwise a bone absent from a frame keeps
    its previous value (zero before it first appears).
    """
    frames: list[int] = []
    per_frame: list[dict[str, list[float]]] = []
    for raw in body.splitlines():
        toks = raw.split()
        if not toks:
            continue
        if len(toks) == 1 and toks[0].isdigit():
            frames.append(int(toks[0]))
            per_frame.append({})
            continue
        b = toks[0]
        if not frames:  # pragma: no cover - the body starts at a frame line
            raise InputError(f"{where}: '{raw.strip()}' before the first frame number.")
        fw = f"{where}: frame {frames[-1]}"
        if b not in nvals:
            if b[0].isdigit() or b[0] in "+-.":
                raise InputError(
                    f"{fw}: line '{raw.strip()[:60]}' does not start with a bone name."
                )
            raise InputError(
                f"{fw}: bone '{b}' is not in the ASF skeleton. "
                f"Is this the right .asf for this .amc?"
            )
        if b in per_frame[-1]:
            raise InputError(f"{fw}: bone '{b}' is listed twice.")
        if len(toks) - 1 != nvals[b]:
            raise InputError(
                f"{fw}: bone '{b}' has {len(toks) - 1} values but the ASF gives it {nvals[b]} "
                f"dofs. The file is truncated, or the .asf does not match the .amc."
            )
        try:
            per_frame[-1][b] = [float(v) for v in toks[1:]]
        except ValueError:
            parse_floats(toks[1:], f"{fw}, bone '{b}'")  # raises, naming the bad value
            raise  # pragma: no cover
    T = len(frames)
    seen = [b for b in nvals if any(b in f for f in per_frame)]
    if fully_specified:
        ref = set(per_frame[0])
        for t, f in enumerate(per_frame):
            lack = sorted(ref - set(f))
            if not lack:
                continue
            if t == T - 1:
                raise InputError(
                    f"{where}: the last frame ({frames[t]}) lists {len(f)} of {len(ref)} bones; the "
                    f"file is truncated. Re-export it, or delete the incomplete last frame."
                )
            raise InputError(
                f"{where}: frame {frames[t]} lacks bones {lack}; a :FULLY-SPECIFIED "
                f"AMC lists every bone in every frame."
            )
    values = {}
    n_held = 0
    for b in seen:
        rows = []
        prev = [0.0] * nvals[b]
        for f in per_frame:
            v = f.get(b)
            if v is None:
                n_held += 1
            else:
                prev = v
            rows.append(prev)
        values[b] = np.array(rows, dtype=np.float64).reshape(T, nvals[b])
    if n_held:
        notes.append(f"{n_held} bone entries absent from their frame held their previous value.")
    return np.array(frames, dtype=np.int64), values


# ---------------------------------------------------------------------------------------
# forward kinematics


def joint_order(skel: AsfSkeleton) -> list[tuple[str, str | None]]:
    """Depth-first (name, bone) list: ('root', None), (bone, bone), ('<leaf>_end', leaf)."""
    out: list[tuple[str, str | None]] = [("root", None)]
    todo = list(
        reversed(skel.root_children)
    )  # an explicit stack: a 3,000-bone chain needs no recursion
    while todo:
        b = todo.pop()
        out.append((b, b))
        kids = skel.bones[b].children
        if not kids:
            out.append((b + "_end", b))
        todo.extend(reversed(kids))
    return out


def acclaim_forward_kinematics(
    skel: AsfSkeleton, motion: AmcMotion, notes: list[str] | None = None, rotations: bool = False
):
    """Joint names and world positions (T, J, 3) in ASF length units.

    With ``rotations=True`` also the world rotation (T, J, 3, 3) of the bone starting at each
    joint, relative to the ASF rest pose (identity at rest; '<leaf>_end' carries its leaf's),
    as a third value. In ``joint_order`` every joint is a tree node: a bone's start hangs off
    its parent bone's start by the parent's rest vector (direction x length), a leaf's end off
    the leaf's start by its own; a bone's local rotation is C M C^T (its dofs M in its ASF axis
    frame C; ASF/AMC spec). ``model.kinematics.tree_kinematics`` walks the tree by levels."""
    order = joint_order(skel)
    names = [name for name, _ in order]
    local, offsets, parents = _acclaim_tree(skel, motion, order, notes)
    rot, pos = tree_kinematics(local, offsets, parents)
    return (names, pos, rot) if rotations else (names, pos)


def _acclaim_tree(skel: AsfSkeleton, motion: AmcMotion, order, notes: list[str] | None):
    """Local rotations (T, J, 3, 3), offsets (T, J, 3) (the root's: its position) and parents
    (J,) of ``joint_order``'s tree (``acclaim_forward_kinematics``)."""
    t = motion.frames.shape[0]
    to_rad = (
        np.pi / 180.0 if (motion.degrees if motion.degrees is not None else skel.angle_deg) else 1.0
    )
    asf_rad = np.pi / 180.0 if skel.angle_deg else 1.0
    index = {name: k for k, (name, _) in enumerate(order)}
    local = np.empty((t, len(order), 3, 3))
    local[:] = np.eye(3)
    offsets = np.zeros((t, len(order), 3))
    parents = [-1] * len(order)
    offsets[:, 0], local[:, 0] = _root_motion(skel, motion, to_rad, asf_rad)
    ignored = set()
    for k, (name, bone_name) in enumerate(order[1:], 1):
        bone = skel.bones[str(bone_name)]
        if (
            name != bone_name
        ):  # '<leaf>_end': the leaf's start + its rest vector, the leaf's rotation
            parents[k], offsets[:, k] = index[bone.name], bone.direction * bone.length
            continue
        parents[k] = index[bone.parent]
        if bone.parent != "root":
            up = skel.bones[bone.parent]
            offsets[:, k] = up.direction * up.length
        rcols = [(c, d[1].upper()) for c, d in enumerate(bone.dof) if d[0] == "r"]
        if len(rcols) < len(bone.dof):
            ignored.add(bone.name)
        if rcols:
            v = motion.values[bone.name]
            m = _partial_rot(
                np.stack([v[:, c] for c, _ in rcols], -1) * to_rad, [a for _, a in rcols]
            )
            c_b = _rot_from_xyz(bone.axis * asf_rad, bone.axis_order)
            local[:, k] = c_b @ m @ c_b.T
    if ignored and notes is not None:
        notes.append(
            f"translation/length dofs of {sorted(ignored)} ignored (only rotations are used)."
        )
    return local, offsets, parents


def _root_motion(skel: AsfSkeleton, motion: AmcMotion, to_rad: float, asf_rad: float):
    """The root's world position (T, 3) and rotation (T, 3, 3): its translation dofs added to
    its ASF position, its rotation dofs M in its ASF orientation frame C (C M C^T)."""
    t = motion.frames.shape[0]
    rv = motion.values.get("root", np.zeros((t, len(skel.root_order))))
    trans = np.zeros((t, 3))
    rot_vals, rot_axes = [], ""
    for k, ch in enumerate(skel.root_order):
        if ch[0] == "T":
            trans[:, "XYZ".index(ch[1])] = rv[:, k]
        else:
            rot_vals.append(rv[:, k] * to_rad)
            rot_axes += ch[1]
    c = _rot_from_xyz(skel.root_orientation * asf_rad, skel.root_axis)
    m = _rot_from_order(np.stack(rot_vals, -1), rot_axes) if rot_vals else np.eye(3)
    return skel.root_position + trans, c @ m @ c.T


def _partial_rot(ang: np.ndarray, axes: list[str]) -> np.ndarray:
    """Rotation for a bone with 1 or 2 (or repeated) rotation dofs, first listed applied first."""
    R = None
    for k, a in enumerate(axes):
        m = euler_matrix(ang[:, k : k + 1], a.lower())
        R = m if R is None else m @ R
    assert R is not None, "a bone without rotation dofs has no partial rotation"
    return R


# ---------------------------------------------------------------------------------------
# entry points


def asf_rest_positions(skel: AsfSkeleton, motion: AmcMotion) -> np.ndarray:
    """(J, 3) joint positions of the ASF rest pose (every dof zero, root at its ASF position), in
    ``joint_order``: the frame the rotations of ``acclaim_forward_kinematics`` are relative to."""
    zero = dataclasses.replace(
        motion,
        frames=motion.frames[:1],
        values={k: np.zeros_like(v[:1]) for k, v in motion.values.items()},
    )
    return acclaim_forward_kinematics(skel, zero)[1][0]


def read_asf(path) -> AsfSkeleton:
    return parse_asf(read_text(path, "ASF"), Path(path).name)


def read_amc(path, asf) -> KeypointSequence:
    """Read an .amc motion driven by the .asf skeleton ``asf`` into joint positions."""
    where = Path(path).name
    skel = read_asf(asf)
    text = read_text(path, "AMC")
    motion = parse_amc(text, skel, where)
    notes = [
        (
            f"AMC '{where}' on ASF skeleton '{Path(asf).name}': {len(skel.bones)} bones, "
            f"{motion.frames.shape[0]} frames; joints are bone START points (lfemur = hip centre, "
            f"ltibia = knee, lfoot = ankle), leaf bones add '<bone>_end'."
        )
    ]
    notes += motion.notes
    if motion.degrees is None:
        notes.append(
            f"AMC does not say :DEGREES or :RADIANS; used the ASF angle unit "
            f"({'degrees' if skel.angle_deg else 'radians'})."
        )
    if motion.missing:
        notes.append(f"bones {motion.missing} never appear in the AMC; held at their rest pose.")
    with np.errstate(invalid="ignore", over="ignore"):  # inf/NaN input -> NaN (missing)
        names, pos, rotations = acclaim_forward_kinematics(skel, motion, notes, rotations=True)
    s = skel.length_scale
    mpu = 1.0  # metres per file unit once the positions are converted (1: left as they are)
    if s is None:
        units = None
        notes.append("ASF has no ':units length'; length unit unknown.")
    elif abs(s - CMU_LENGTH) < 1e-9:
        units = "cmu"
        notes.append("ASF ':units length 0.45': CMU units, 1 unit = (1/0.45) inch = 0.05644 m.")
    else:
        units = "m"
        mpu = 0.0254 / s
        pos = pos * mpu
        notes.append(
            f"ASF ':units length {s:g}': 1 unit = (1/{s:g}) inch = {mpu:.6g} m; "
            f"positions converted to metres."
        )
    notes.append(
        f"AMC files carry no frame rate; assumed {CMU_FPS:g} fps (the CMU capture rate). "
        f"Give the real rate if this is not CMU data."
    )
    notes.append("Up axis: Y (Acclaim/CMU convention).")
    seq = finalize(
        pos,
        names=names,
        fps=CMU_FPS,
        units=units,
        up="y",
        layout=None,
        frames=motion.frames,
        source=str(path),
        notes=notes,
        where=where,
    )
    rest = asf_rest_positions(skel, motion) * mpu  # in the positions' unit
    seq.rotations, seq.rest_positions = rotations.astype(np.float32), rest  # see KeypointSequence
    return seq
