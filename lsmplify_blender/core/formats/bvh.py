"""BVH (Biovision Hierarchy) reader with batched forward kinematics.

Reads the HIERARCHY (ROOT / JOINT / End Site, OFFSET, CHANNELS with any channel order,
any number of roots) and the MOTION block (``Frames:``, ``Frame Time:``, one line of
channel values per frame), then runs forward kinematics over all frames at once
(``model.kinematics.tree_kinematics``: one batched step per tree level) to give the world
position of every joint.

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

import dataclasses
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..keypoints import KeypointSequence
from ..model.kinematics import rest_positions, tree_kinematics
from ._common import MAX_FPS, euler_matrix, finalize, parse_floats, read_text

_CHANNELS = {
    "xposition": ("pos", 0),
    "yposition": ("pos", 1),
    "zposition": ("pos", 2),
    "xrotation": ("rot", "x"),
    "yrotation": ("rot", "y"),
    "zrotation": ("rot", "z"),
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
    """The HIERARCHY section: the nodes in file order and the number of MOTION channels."""
    tokens = header.split()
    if not tokens or tokens[0].upper() != "HIERARCHY":
        raise InputError(
            f"{where}: a BVH file must start with 'HIERARCHY'; this one starts with "
            f"'{tokens[0] if tokens else ''}'. Is it really a BVH file?"
        )
    return _HierarchyParser(tokens, where).parse()


class _HierarchyParser:
    """Walks the HIERARCHY tokens once (after the keyword), building the node list."""

    def __init__(self, tokens: list[str], where: str):
        self.tokens, self.where = tokens, where
        self.nodes: list[BvhNode] = []
        self.stack: list[int] = []  # open nodes
        self.pending: BvhNode | None = None  # declared, waiting for its '{'
        self.n_channels = 0
        self.i, self.n = 1, len(tokens)

    def parse(self) -> tuple[list[BvhNode], int]:
        """Every token in turn; refuses unbalanced braces and a truncated or empty hierarchy."""
        where, tokens = self.where, self.tokens
        while self.i < self.n:
            tok = tokens[self.i]
            up = tok.upper()
            if up in ("ROOT", "JOINT") or (
                up == "END" and self.i + 1 < self.n and tokens[self.i + 1].upper() == "SITE"
            ):
                self._declare(tok, up)
            elif tok == "{":
                self._open()
            elif tok == "}":
                if not self.stack:
                    raise InputError(f"{where}: unbalanced '}}' in the HIERARCHY.")
                self.stack.pop()
                self.i += 1
            else:
                self._node_statement(tok, up)
        if self.stack or self.pending is not None:
            raise InputError(
                f"{where}: the HIERARCHY is not closed (missing '}}'); "
                f"the file is truncated or malformed."
            )
        if not self.nodes:
            raise InputError(f"{where}: the HIERARCHY declares no joints.")
        return self.nodes, self.n_channels

    def _need(self, k: int, what: str) -> list[str]:
        """The next ``k`` tokens, or an error saying the hierarchy ends inside ``what``."""
        if self.i + k > self.n:
            raise InputError(
                f"{self.where}: the HIERARCHY ends in the middle of {what}; "
                f"the file is truncated or malformed."
            )
        return self.tokens[self.i : self.i + k]

    def _declare(self, tok: str, up: str) -> None:
        """'ROOT name', 'JOINT name' or 'End Site': the node waits for its '{'."""
        where, tokens = self.where, self.tokens
        if self.pending is not None:
            raise InputError(f"{where}: expected '{{' after '{self.pending.name}', found '{tok}'.")
        is_end = up == "END"
        self.i += 2 if is_end else 1
        name_toks = []
        while self.i < self.n and tokens[self.i] != "{":
            name_toks.append(tokens[self.i])
            self.i += 1
        if is_end:
            if not self.stack:
                raise InputError(f"{where}: 'End Site' outside any joint.")
            name = self.nodes[self.stack[-1]].name + "_End"
        else:
            if not name_toks:
                raise InputError(f"{where}: a {up} has no name.")
            name = " ".join(name_toks)
        if up == "JOINT" and not self.stack:
            raise InputError(f"{where}: JOINT '{name}' is outside any ROOT block.")
        if up == "ROOT" and self.stack:
            raise InputError(f"{where}: ROOT '{name}' inside another joint; braces do not match.")
        parent = self.stack[-1] if self.stack else -1
        self.pending = BvhNode(name, parent, np.zeros(3), is_end=is_end)

    def _open(self) -> None:
        """'{': the declared node becomes the open one."""
        if self.pending is None:
            raise InputError(f"{self.where}: unexpected '{{' in the HIERARCHY.")
        self.nodes.append(self.pending)
        self.stack.append(len(self.nodes) - 1)
        self.pending = None
        self.i += 1

    def _node_statement(self, tok: str, up: str) -> None:
        """OFFSET or CHANNELS of the open node."""
        where = self.where
        if not self.stack or self.pending is not None:
            raise InputError(f"{where}: unexpected '{tok}' in the HIERARCHY.")
        node = self.nodes[self.stack[-1]]
        if up == "OFFSET":
            self.i += 1
            node.offset = parse_floats(
                self._need(3, f"the OFFSET of '{node.name}'"), f"{where}: OFFSET of '{node.name}'"
            )
            self.i += 3
        elif up == "CHANNELS":
            self._channels(node)
        else:
            raise InputError(f"{where}: unexpected '{tok}' in the HIERARCHY of '{node.name}'.")

    def _channels(self, node: BvhNode) -> None:
        """'CHANNELS k c1 .. ck' of ``node``: known channel names; they take the next k columns."""
        where = self.where
        self.i += 1
        cnt = self._need(1, f"the CHANNELS of '{node.name}'")[0]
        if not cnt.isdigit():
            raise InputError(
                f"{where}: CHANNELS of '{node.name}' must start with a count, got '{cnt}'."
            )
        k = int(cnt)
        self.i += 1
        chans = self._need(k, f"the CHANNELS of '{node.name}'")
        for c in chans:
            if c.lower() not in _CHANNELS:
                raise InputError(
                    f"{where}: unknown channel '{c}' on '{node.name}'. BVH channels are "
                    f"Xposition Yposition Zposition Xrotation Yrotation Zrotation."
                )
        if node.is_end:
            raise InputError(f"{where}: an End Site cannot have CHANNELS.")
        node.channels = list(chans)
        node.channel_start = self.n_channels
        self.n_channels += k
        self.i += k


_MOTION_RE = re.compile(r"^[ \t]*MOTION[ \t]*\r?$", re.MULTILINE | re.IGNORECASE)
_FRAMES_RE = re.compile(
    r"^[ \t]*Frames[ \t]*:?[ \t]*(\S+)[ \t]*\r?\n", re.MULTILINE | re.IGNORECASE
)
FRAME_TIME_RE = re.compile(
    r"^[ \t]*Frame[ \t]+Time[ \t]*:?[ \t]*(\S+)[ \t]*(\r?\n|$)", re.MULTILINE | re.IGNORECASE
)


_PARSE_CHUNK = 1 << 25  # characters of MOTION text parsed at a time (32 MB): bounds the copies


def _motion_values(text: str, start: int, expected: int) -> np.ndarray | None:
    """The ``expected`` MOTION numbers of ``text[start:]``, parsed in C chunk by chunk into
    one array (a long take is 1e8 values: as Python strings they would need ~6 GB).
    None when the text holds anything else (then the caller reports exactly what)."""
    out = np.empty(expected)
    got, pos, end = 0, start, len(text)
    with warnings.catch_warnings():
        warnings.simplefilter(
            "error", DeprecationWarning
        )  # numpy warns when it stops at a non-number
        while pos < end:
            stop = text.find("\n", min(pos + _PARSE_CHUNK, end))
            stop = end if stop < 0 else stop + 1
            chunk = text[pos:stop]
            pos = stop
            if not chunk.strip():
                continue  # numpy returns [-1.] for a string of only whitespace
            try:
                part = np.fromstring(chunk, dtype=np.float64, sep=" ")
            except (DeprecationWarning, ValueError):
                return None
            if got + part.size > expected:
                return None
            out[got : got + part.size] = part
            got += part.size
    return out if got == expected else None


@dataclass
class BvhHeader:
    """What a BVH file says before its MOTION numbers (checked against the data's size)."""

    nodes: list[BvhNode]
    num_channels: int
    num_frames: int
    frame_time: float
    body_start: int  # offset of the first MOTION number's line in the text


def parse_bvh_header(text: str, where: str = "BVH") -> BvhHeader:
    """The HIERARCHY and the MOTION header lines of ``text`` (the whole file, or its head up to
    past the 'Frame Time' line); ``check_declared_size`` then checks them against the data."""
    m = _MOTION_RE.search(text)
    if m is None:
        if text.lstrip()[:9].upper() == "HIERARCHY":
            raise InputError(
                f"{where}: no MOTION section; the file is truncated or has no animation."
            )
        raise InputError(f"{where}: not a BVH file (no HIERARCHY / MOTION sections).")
    nodes, n_channels = _parse_hierarchy(text[: m.start()], where)
    fm = _FRAMES_RE.search(text, m.end())  # offsets into text: a long take is never copied whole
    tm = FRAME_TIME_RE.search(text, m.end())
    if fm is None or tm is None or fm.start() > tm.start():
        raise InputError(
            f"{where}: the MOTION section must begin with 'Frames: N' and "
            f"'Frame Time: seconds' lines; the file is truncated or malformed."
        )
    if text[m.end() : fm.start()].strip():
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
        raise InputError(
            f"{where}: the file has zero frames ('Frames: {n_frames}'). "
            f"Export the animation, not only the skeleton."
        )
    if n_channels == 0:
        raise InputError(
            f"{where}: no joint declares CHANNELS, so the {n_frames} frames hold no motion. "
            "Re-export the BVH with its rotation channels."
        )
    return BvhHeader(nodes, n_channels, n_frames, frame_time, tm.end())


def check_declared_size(head: BvhHeader, body_len: int, where: str) -> None:
    """Refuse a header that declares more frames x channels than ``body_len`` characters of
    MOTION data can hold, before anything is allocated for them."""
    n_frames, n_channels = head.num_frames, head.num_channels
    if n_frames * n_channels > (body_len + 1) // 2:  # every value takes a digit and a separator
        raise InputError(
            f"{where}: the header says {n_frames} frames of {n_channels} channels but the MOTION data is "
            f"only {body_len} characters long. The file is truncated, or its 'Frames:' line is wrong."
        )


def parse_bvh(text: str, where: str = "BVH") -> BvhData:
    head = parse_bvh_header(text, where)
    check_declared_size(head, len(text) - head.body_start, where)
    n_frames, n_channels = head.num_frames, head.num_channels
    values = _motion_values(text, head.body_start, n_frames * n_channels)
    if (
        values is None
    ):  # not plain C numbers, or not as many: the slow, exact path says what is wrong
        values = _slow_motion(text[head.body_start :], n_frames, n_channels, where)
    motion = values.reshape(n_frames, n_channels)
    return BvhData(
        nodes=head.nodes, motion=motion, frame_time=head.frame_time, num_channels=n_channels
    )


def _slow_motion(body: str, n_frames: int, n_channels: int, where: str) -> np.ndarray:
    """MOTION numbers read token by token (Python's float syntax); the InputError that names
    the problem when they are not n_frames x n_channels numbers."""
    values = parse_floats(body.split(), f"{where}: MOTION data")  # names the first non-number
    expected = n_frames * n_channels
    if values.size == expected:
        return values
    lines = [ln for ln in body.splitlines() if ln.strip()]
    full = values.size // n_channels
    if values.size < expected:
        raise InputError(
            f"{where}: the header says {n_frames} frames of {n_channels} channels "
            f"({expected} values) but the MOTION data holds only {values.size} values on "
            f"{len(lines)} lines ({full} complete frames). The file is truncated; re-export it "
            f"or correct the 'Frames:' line."
        )
    raise InputError(
        f"{where}: the header says {n_frames} frames of {n_channels} channels ({expected} "
        f"values) but the MOTION data holds {values.size} values on {len(lines)} lines. "
        f"Correct the 'Frames:' line or the joint CHANNELS."
    )


# ---------------------------------------------------------------------------------------
# forward kinematics


def bvh_forward_kinematics(data: BvhData, notes: list[str] | None = None, rotations: bool = False):
    """World positions (T, N, 3) of every node (End Sites included), all frames at once.

    With ``rotations=True`` also the world rotation of every node (T, N, 3, 3), relative to
    the rest pose the OFFSETs describe (identity at rest), as a second value. The channels
    give each node's local rotation and translation (``_local_motion``); the tree is walked by
    ``model.kinematics.tree_kinematics``, one batched step per tree level."""
    local, trans, replaced = _local_motion(data)
    rot, pos = tree_kinematics(local, trans, [node.parent for node in data.nodes])
    if replaced and notes is not None:
        notes.append(
            f"position channels of {len(replaced)} non-root joint(s) equal their OFFSET; "
            f"taken as the whole local translation."
        )
    return (pos, rot) if rotations else pos


def _local_motion(data: BvhData) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every node's local rotation (T, N, 3, 3) and local translation (T, N, 3) from the
    channels (module docstring), and the names of the non-root nodes whose position channels
    were taken as their whole translation (the first frame's equal their OFFSET)."""
    motion = data.motion
    t, n = motion.shape[0], len(data.nodes)
    local = np.empty((t, n, 3, 3))
    local[:] = np.eye(3)
    trans = np.empty((t, n, 3))
    replaced = []
    for j, node in enumerate(data.nodes):  # a loop over nodes: every frame at once
        kinds = [_CHANNELS[c.lower()] for c in node.channels]
        pos_cols = [
            (node.channel_start + k, ax) for k, (kind, ax) in enumerate(kinds) if kind == "pos"
        ]
        rot_cols = [
            (node.channel_start + k, ax) for k, (kind, ax) in enumerate(kinds) if kind == "rot"
        ]
        trans[:, j] = node.offset
        if pos_cols:
            chan = np.zeros((t, 3))
            for col, ax in pos_cols:
                chan[:, ax] = motion[:, col]
            absolute = (
                node.parent >= 0
                and np.linalg.norm(node.offset) > 1e-9
                and np.allclose(chan[0], node.offset, rtol=1e-3, atol=1e-4)
            )
            if absolute:
                trans[:, j] = chan
                replaced.append(node.name)
            else:
                trans[:, j] += chan
        if rot_cols:
            axes = "".join(str(a) for _, a in rot_cols)
            local[:, j] = euler_matrix(np.deg2rad(motion[:, [c for c, _ in rot_cols]]), axes)
    return local, trans, replaced


def bvh_rest_positions(data: BvhData) -> np.ndarray:
    """(N, 3) node positions in the rest pose the OFFSETs describe (root at the origin)."""
    offsets = np.array([node.offset if node.parent >= 0 else np.zeros(3) for node in data.nodes])
    return rest_positions(offsets.reshape(-1, 3).astype(np.float64), [n.parent for n in data.nodes])


FK_BLOCK = (
    1 << 14
)  # frames per forward-kinematics pass: its float64 (T, N, 3, 3) rotations stay ~50 MB


def _fk_in_blocks(data: BvhData, notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``bvh_forward_kinematics`` positions (float64) and rotations (float32), computed
    FK_BLOCK frames at a time into one array each.

    Each block after the first is run with the take's first frame in front (then dropped),
    so the FK's first-frame decisions (absolute position channels) are the whole take's.
    """
    t = data.motion.shape[0]
    pos = np.empty((t, len(data.nodes), 3))
    rot = np.empty((t, len(data.nodes), 3, 3), np.float32)
    for s in range(0, t, FK_BLOCK):
        rows = data.motion[s : s + FK_BLOCK]
        if s:
            rows = np.concatenate([data.motion[:1], rows])
        p, r = bvh_forward_kinematics(
            dataclasses.replace(data, motion=rows), notes if s == 0 else None, rotations=True
        )
        pos[s : s + FK_BLOCK], rot[s : s + FK_BLOCK] = (p[1:], r[1:]) if s else (p, r)
    return pos, rot


def read_bvh(path) -> KeypointSequence:
    """Read a .bvh file into world joint positions (file units, Y up, End Sites included)."""
    where = Path(path).name
    data = parse_bvh(read_text(path, "BVH"), where)  # the text is freed once parsed
    names, notes = unique_node_names(data.nodes)
    with np.errstate(invalid="ignore", over="ignore"):  # inf/NaN input -> NaN (missing)
        positions, rotations = _fk_in_blocks(data, notes)
    return bvh_sequence(data, data.motion.shape[0], names, notes, positions, rotations, path)


def unique_node_names(nodes: list[BvhNode]) -> tuple[list[str], list[str]]:
    """The node names with repeats renamed (some exporters repeat names, e.g. two End Sites),
    and the notes saying so."""
    names = [n.name for n in nodes]
    notes: list[str] = []
    seen: dict[str, int] = {}
    for k, nm in enumerate(names):
        if nm in seen:
            seen[nm] += 1
            names[k] = f"{nm}{seen[nm]}"
            notes.append(f"duplicate joint name '{nm}' renamed to '{names[k]}'.")
        else:
            seen[nm] = 1
    return names, notes


def bvh_sequence(
    data, num_frames: int, names, notes, positions, rotations, path
) -> KeypointSequence:
    """The KeypointSequence of FK ``positions`` (T, N, 3) and ``rotations`` (T, N, 3, 3) of a
    BVH take of ``num_frames`` frames (``data``: its nodes, channels and frame time; the
    positions may be a block of its frames, ``BvhBlocks``)."""
    where = Path(path).name
    notes = list(notes)
    n_end = sum(n.is_end for n in data.nodes)
    notes.insert(
        0,
        f"BVH: {len(data.nodes) - n_end} joints + {n_end} End Sites (named "
        f"'<Parent>_End'), {num_frames} frames, {data.num_channels} channels.",
    )
    fps = None
    if data.frame_time > 0 and np.isfinite(data.frame_time):
        fps = 1.0 / data.frame_time
        if fps > MAX_FPS:
            raise InputError(
                f"{where}: 'Frame Time: {data.frame_time:g}' means {fps:.3g} fps, more than any "
                f"capture ({MAX_FPS:g}). Correct the Frame Time line (seconds per frame, e.g. "
                "0.0083333 for 120 fps)."
            )
        if abs(fps - round(fps)) < 1e-4 * fps:  # 'Frame Time: .0083333' means 120 fps
            fps = float(round(fps))
        notes.append(f"fps = 1 / Frame Time ({data.frame_time:g} s) = {fps:.6g}.")
    else:
        notes.append(
            f"'Frame Time: {data.frame_time}' is not positive; fps unknown, give it explicitly."
        )
    notes.append(
        "BVH carries no length unit; units left unknown (CMU-derived BVH files are in "
        "CMU units of 0.05644 m, others often cm or inches). Up axis: Y (BVH convention)."
    )
    seq = finalize(
        positions,
        names=names,
        fps=fps,
        units=None,
        up="y",
        layout=None,
        source=str(path),
        notes=notes,
        where=where,
        owned=True,
    )
    seq.rotations, seq.rest_positions = rotations, bvh_rest_positions(data)  # see KeypointSequence
    return seq
