"""BVH (Biovision Hierarchy) reader with batched forward kinematics.

Reads the HIERARCHY (ROOT / JOINT / End Site, OFFSET, CHANNELS with any channel order,
any number of roots) and the MOTION block (``Frames:``, ``Frame Time:``, one line of
channel values per frame), then runs forward kinematics over all frames at once
(a loop over joints only) to give the world position of every joint.

Conventions (the usual BVH ones):
- rotation channels are Euler angles in degrees, applied in the order listed: for
  ``Zrotation Yrotation Xrotation`` the joint's local rotation is Rz·Ry·Rx (column
  vectors), i.e. intrinsic rotations about Z, then Y, then X;
- a joint's local translation is its OFFSET plus its position channels (the root's
  position channels carry the root motion). Some exporters write 6 channels on every
  joint with the position channels equal to the OFFSET; for such a non-root joint the
  channels are taken as the whole translation so the bone length is not doubled;
- world position of joint j = world position of its parent + R_parent_world · t_j;
  an End Site is placed at its joint's position + R_joint_world · OFFSET and named
  ``<JointName>_End``.

The result keeps the file's own units (unknown: ``units=None``; CMU-derived BVH files
are usually in CMU units of 0.05644 m, others in cm or inches) and its up axis
(Y up by BVH convention). ``fps = 1 / Frame Time``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..keypoints import KeypointSequence
from ._common import euler_matrix, finalize, parse_floats, read_text

_CHANNELS = {
    "xposition": ("pos", 0), "yposition": ("pos", 1), "zposition": ("pos", 2),
    "xrotation": ("rot", "x"), "yrotation": ("rot", "y"), "zrotation": ("rot", "z"),
}


@dataclass
class BvhNode:
    name: str
    parent: int  # index into the node list, -1 for a root
    offset: np.ndarray  # (3,)
    channels: list[str] = field(default_factory=list)  # as written, e.g. 'Zrotation'
    channel_start: int = 0  # index of the first channel in a MOTION line
    is_end: bool = False


@dataclass
class BvhData:
    nodes: list[BvhNode]
    motion: np.ndarray  # (T, C) channel values as in the file
    frame_time: float
    num_channels: int


# ---------------------------------------------------------------------------------------
# parsing


def _parse_hierarchy(header: str, where: str) -> tuple[list[BvhNode], int]:
    tokens = header.split()
    if not tokens or tokens[0].upper() != "HIERARCHY":
        raise InputError(f"{where}: a BVH file must start with 'HIERARCHY'; this one starts with "
                         f"'{tokens[0] if tokens else ''}'. Is it really a BVH file?")
    nodes: list[BvhNode] = []
    stack: list[int] = []  # open nodes
    pending: BvhNode | None = None  # declared, waiting for its '{'
    n_channels = 0
    i, n = 1, len(tokens)

    def need(k: int, what: str) -> list[str]:
        if i + k > n:
            raise InputError(f"{where}: the HIERARCHY ends in the middle of {what}; "
                             f"the file is truncated or malformed.")
        return tokens[i:i + k]

    while i < n:
        tok = tokens[i]
        up = tok.upper()
        if up in ("ROOT", "JOINT") or (up == "END" and i + 1 < n and tokens[i + 1].upper() == "SITE"):
            if pending is not None:
                raise InputError(f"{where}: expected '{{' after '{pending.name}', found '{tok}'.")
            is_end = up == "END"
            i += 2 if is_end else 1
            name_toks = []
            while i < n and tokens[i] != "{":
                name_toks.append(tokens[i])
                i += 1
            if is_end:
                if not stack:
                    raise InputError(f"{where}: 'End Site' outside any joint.")
                name = nodes[stack[-1]].name + "_End"
            else:
                if not name_toks:
                    raise InputError(f"{where}: a {up} has no name.")
                name = " ".join(name_toks)
            if up == "JOINT" and not stack:
                raise InputError(f"{where}: JOINT '{name}' is outside any ROOT block.")
            if up == "ROOT" and stack:
                raise InputError(f"{where}: ROOT '{name}' inside another joint; braces do not match.")
            pending = BvhNode(name, stack[-1] if stack else -1, np.zeros(3), is_end=is_end)
            continue
        if tok == "{":
            if pending is None:
                raise InputError(f"{where}: unexpected '{{' in the HIERARCHY.")
            nodes.append(pending)
            stack.append(len(nodes) - 1)
            pending = None
            i += 1
            continue
        if tok == "}":
            if not stack:
                raise InputError(f"{where}: unbalanced '}}' in the HIERARCHY.")
            stack.pop()
            i += 1
            continue
        if not stack or pending is not None:
            raise InputError(f"{where}: unexpected '{tok}' in the HIERARCHY.")
        node = nodes[stack[-1]]
        if up == "OFFSET":
            i += 1
            node.offset = parse_floats(need(3, f"the OFFSET of '{node.name}'"),
                                       f"{where}: OFFSET of '{node.name}'")
            i += 3
        elif up == "CHANNELS":
            i += 1
            cnt = need(1, f"the CHANNELS of '{node.name}'")[0]
            if not cnt.isdigit():
                raise InputError(f"{where}: CHANNELS of '{node.name}' must start with a count, got '{cnt}'.")
            k = int(cnt)
            i += 1
            chans = need(k, f"the CHANNELS of '{node.name}'")
            for c in chans:
                if c.lower() not in _CHANNELS:
                    raise InputError(
                        f"{where}: unknown channel '{c}' on '{node.name}'. BVH channels are "
                        f"Xposition Yposition Zposition Xrotation Yrotation Zrotation.")
            if node.is_end:
                raise InputError(f"{where}: an End Site cannot have CHANNELS.")
            node.channels = list(chans)
            node.channel_start = n_channels
            n_channels += k
            i += k
        else:
            raise InputError(f"{where}: unexpected '{tok}' in the HIERARCHY of '{node.name}'.")
    if stack or pending is not None:
        raise InputError(f"{where}: the HIERARCHY is not closed (missing '}}'); "
                         f"the file is truncated or malformed.")
    if not nodes:
        raise InputError(f"{where}: the HIERARCHY declares no joints.")
    return nodes, n_channels


_MOTION_RE = re.compile(r"^[ \t]*MOTION[ \t]*\r?$", re.MULTILINE | re.IGNORECASE)
_FRAMES_RE = re.compile(r"^[ \t]*Frames[ \t]*:?[ \t]*(\S+)[ \t]*\r?\n", re.MULTILINE | re.IGNORECASE)
_FTIME_RE = re.compile(r"^[ \t]*Frame[ \t]+Time[ \t]*:?[ \t]*(\S+)[ \t]*(\r?\n|$)",
                       re.MULTILINE | re.IGNORECASE)


def parse_bvh(text: str, where: str = "BVH") -> BvhData:
    m = _MOTION_RE.search(text)
    if m is None:
        if text.lstrip()[:9].upper() == "HIERARCHY":
            raise InputError(f"{where}: no MOTION section; the file is truncated or has no animation.")
        raise InputError(f"{where}: not a BVH file (no HIERARCHY / MOTION sections).")
    nodes, n_channels = _parse_hierarchy(text[:m.start()], where)
    rest = text[m.end():]
    fm = _FRAMES_RE.search(rest)
    tm = _FTIME_RE.search(rest)
    if fm is None or tm is None or fm.start() > tm.start():
        raise InputError(f"{where}: the MOTION section must begin with 'Frames: N' and "
                         f"'Frame Time: seconds' lines; the file is truncated or malformed.")
    if rest[:fm.start()].strip():
        raise InputError(f"{where}: unexpected text between MOTION and 'Frames:'.")
    try:
        n_frames = int(fm.group(1))
    except ValueError:
        raise InputError(f"{where}: 'Frames: {fm.group(1)}' is not a whole number.") from None
    try:
        frame_time = float(tm.group(1))
    except ValueError:
        raise InputError(f"{where}: 'Frame Time: {tm.group(1)}' is not a number.") from None
    if n_frames <= 0:
        raise InputError(f"{where}: the file has zero frames ('Frames: {n_frames}'). "
                         f"Export the animation, not only the skeleton.")
    body = rest[tm.end():]
    values = parse_floats(body.split(), f"{where}: MOTION data")
    expected = n_frames * n_channels
    if values.size != expected:
        lines = [ln for ln in body.splitlines() if ln.strip()]
        full = values.size // n_channels if n_channels else 0
        if values.size < expected:
            raise InputError(
                f"{where}: the header says {n_frames} frames of {n_channels} channels "
                f"({expected} values) but the MOTION data holds only {values.size} values on "
                f"{len(lines)} lines ({full} complete frames). The file is truncated; re-export it "
                f"or correct the 'Frames:' line.")
        raise InputError(
            f"{where}: the header says {n_frames} frames of {n_channels} channels ({expected} "
            f"values) but the MOTION data holds {values.size} values on {len(lines)} lines. "
            f"Correct the 'Frames:' line or the joint CHANNELS.")
    motion = values.reshape(n_frames, n_channels)
    return BvhData(nodes=nodes, motion=motion, frame_time=frame_time, num_channels=n_channels)


# ---------------------------------------------------------------------------------------
# forward kinematics


def bvh_forward_kinematics(data: BvhData, notes: list[str] | None = None, rotations: bool = False):
    """World positions (T, N, 3) of every node (End Sites included), all frames at once.

    With ``rotations=True`` also the world rotation of every node (T, N, 3, 3), relative to
    the rest pose the OFFSETs describe (identity at rest), as a second value."""
    motion = data.motion
    T = motion.shape[0]
    N = len(data.nodes)
    pos = np.empty((T, N, 3))
    rot = np.empty((T, N, 3, 3))
    eye = np.broadcast_to(np.eye(3), (T, 3, 3))
    replaced = []
    for j, node in enumerate(data.nodes):
        # local translation
        trans = np.broadcast_to(node.offset, (T, 3)).copy()
        pos_cols = [(node.channel_start + k, _CHANNELS[c.lower()][1])
                    for k, c in enumerate(node.channels) if _CHANNELS[c.lower()][0] == "pos"]
        if pos_cols:
            chan = np.zeros((T, 3))
            for col, ax in pos_cols:
                chan[:, ax] = motion[:, col]
            absolute = (node.parent >= 0 and np.linalg.norm(node.offset) > 1e-9
                        and np.allclose(chan[0], node.offset, rtol=1e-3, atol=1e-4))
            if absolute:
                trans = chan
                replaced.append(node.name)
            else:
                trans = trans + chan
        # local rotation
        rot_cols = [(node.channel_start + k, _CHANNELS[c.lower()][1])
                    for k, c in enumerate(node.channels) if _CHANNELS[c.lower()][0] == "rot"]
        if rot_cols:
            idx = [c for c, _ in rot_cols]
            axes = "".join(str(a) for _, a in rot_cols)
            local = euler_matrix(np.deg2rad(motion[:, idx]), axes)
        else:
            local = eye
        p = node.parent
        if p < 0:
            pos[:, j] = trans
            rot[:, j] = local
        else:
            pos[:, j] = pos[:, p] + np.einsum("tij,tj->ti", rot[:, p], trans)
            rot[:, j] = rot[:, p] @ local
    if replaced and notes is not None:
        notes.append(f"position channels of {len(replaced)} non-root joint(s) equal their OFFSET; "
                     f"taken as the whole local translation.")
    return (pos, rot) if rotations else pos


def bvh_rest_positions(data: BvhData) -> np.ndarray:
    """(N, 3) node positions in the rest pose the OFFSETs describe (root at the origin)."""
    rest = np.zeros((len(data.nodes), 3))
    for i, node in enumerate(data.nodes):
        if node.parent >= 0:
            rest[i] = rest[node.parent] + node.offset
    return rest


def read_bvh(path) -> KeypointSequence:
    """Read a .bvh file into world joint positions (file units, Y up, End Sites included)."""
    where = Path(path).name
    text = read_text(path, "BVH")
    data = parse_bvh(text, where)
    notes: list[str] = []
    names = [n.name for n in data.nodes]
    seen: dict[str, int] = {}
    for k, nm in enumerate(names):  # some exporters repeat names (e.g. two End Sites)
        if nm in seen:
            seen[nm] += 1
            names[k] = f"{nm}{seen[nm]}"
            notes.append(f"duplicate joint name '{nm}' renamed to '{names[k]}'.")
        else:
            seen[nm] = 1
    with np.errstate(invalid="ignore", over="ignore"):  # inf/NaN input -> NaN (missing)
        positions, rotations = bvh_forward_kinematics(data, notes, rotations=True)
    n_end = sum(n.is_end for n in data.nodes)
    notes.insert(0, f"BVH: {len(data.nodes) - n_end} joints + {n_end} End Sites (named "
                    f"'<Parent>_End'), {data.motion.shape[0]} frames, {data.num_channels} channels.")
    fps = None
    if data.frame_time > 0 and np.isfinite(data.frame_time):
        fps = 1.0 / data.frame_time
        if abs(fps - round(fps)) < 1e-4 * fps:  # 'Frame Time: .0083333' means 120 fps
            fps = float(round(fps))
        notes.append(f"fps = 1 / Frame Time ({data.frame_time:g} s) = {fps:.6g}.")
    else:
        notes.append(f"'Frame Time: {data.frame_time}' is not positive; fps unknown, give it explicitly.")
    notes.append("BVH carries no length unit; units left unknown (CMU-derived BVH files are in "
                 "CMU units of 0.05644 m, others often cm or inches). Up axis: Y (BVH convention).")
    seq = finalize(positions, names=names, fps=fps, units=None, up="y", layout=None,
                   source=str(path), notes=notes, where=where)
    seq.rotations, seq.rest_positions = rotations.astype(np.float32), bvh_rest_positions(data)  # see KeypointSequence
    return seq
