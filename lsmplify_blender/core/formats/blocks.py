"""Long takes read a block of frames at a time (``long_take`` streams the convert through them).

``open_blocks(path)`` gives a reader with ``num_frames`` and ``read(start, stop)``, which returns
the ``KeypointSequence`` the file's whole-take reader would give for those frames, or None when
the file is not one that can be read by blocks (another format, a Fortran-ordered array, a BVH
whose MOTION lines are not one frame each): the caller reads it whole, and that reader says
what is wrong with it, if anything.

- ``.npy``: the header is checked as ``safe_npy`` does (dtype, declared size against the file),
  then each block's rows are read from their offset; nothing else is ever held.
- ``.bvh``: the HIERARCHY and MOTION header are parsed from the file's head (``parse_bvh_header``,
  declared frames x channels checked against the file size), then one pass over the file finds
  where every frame's line starts (8 bytes a frame); a block is parsed from its bytes and run
  through the same forward kinematics as ``read_bvh`` (the take's first frame in front, as
  ``_fk_in_blocks`` does, so the absolute-position-channel decision is the whole take's).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path

import numpy as np

from .. import safe_npy
from ..errors import InputError
from ..keypoints import KeypointSequence
from ._common import check_file, finalize, parse_floats
from .arrays import as_tj3
from .bvh import (
    FRAME_TIME_RE,
    BvhData,
    bvh_forward_kinematics,
    bvh_sequence,
    check_declared_size,
    parse_bvh_header,
    unique_node_names,
)

_HEAD_STEP = 1 << 20  # bytes of a BVH's head read at a time while looking for its MOTION header
_HEAD_LIMIT = 1 << 26  # a HIERARCHY longer than 64 MB is no skeleton: read such a file whole
_INDEX_CHUNK = 1 << 24  # bytes scanned at a time for line starts (16 MB)
_BLANK = np.array([ord(c) for c in " \t\r\n\v\f"], np.uint8)


class NotByBlocksError(Exception):
    """The file cannot be read by blocks (the caller reads it whole)."""


def open_blocks(path):
    """A block reader for ``path`` (``NpyBlocks`` or ``BvhBlocks``), or None (see the module)."""
    ext = Path(os.fspath(path)).suffix.lower()
    kinds = {".npy": NpyBlocks, ".bvh": BvhBlocks}
    if ext not in kinds:
        return None
    try:
        return kinds[ext](path)
    except NotByBlocksError:
        return None


class NpyBlocks:
    """A (T, J, 3) or (T, 3J) C-ordered .npy array read by rows."""

    def __init__(self, path):
        self.path = check_file(path)
        self.where = self.path.name
        with open(self.path, "rb") as f:
            if f.read(6) != b"\x93NUMPY":
                raise NotByBlocksError  # an .npz renamed, or not NumPy: read_npy says which
            f.seek(0)
            size = os.fstat(f.fileno()).st_size
            # no size limit but the file's own (checked there): its rows are never all in memory
            shape, fortran, dtype, _ = safe_npy.read_npy_header(
                f, self.where, InputError, available=size, max_bytes=1 << 62
            )
            self.data_start = f.tell()
        wide = len(shape) == 2 and shape[1] % 3 == 0 and shape[1] > 3
        if fortran or not ((len(shape) == 3 and shape[2] == 3) or wide) or shape[0] == 0:
            raise NotByBlocksError
        self.shape, self.dtype = tuple(int(n) for n in shape), dtype
        self.row_bytes = int(np.prod(self.shape[1:])) * dtype.itemsize
        self.num_frames = self.shape[0]

    def read(self, start: int, stop: int) -> KeypointSequence:
        """Frames ``start``..``stop`` as ``read_npy`` gives them."""
        n = stop - start
        raw = bytearray(n * self.row_bytes)
        with open(self.path, "rb") as f:
            f.seek(self.data_start + start * self.row_bytes)
            if f.readinto(raw) != len(raw):
                raise InputError(f"{self.where}: the file changed while it was read.")
        arr = np.frombuffer(raw, self.dtype).reshape((n, *self.shape[1:]))
        notes: list[str] = []
        pos = as_tj3(arr, self.where, notes)
        notes.append(".npy holds positions only: names, units, up axis and fps are not known.")
        return finalize(pos, source=str(self.path), notes=notes, where=self.where, owned=True)


class BvhBlocks:
    """A BVH take whose MOTION section has one line per frame, read by lines."""

    def __init__(self, path):
        self.path = check_file(path)
        self.where = self.path.name
        size = self.path.stat().st_size
        text, body_byte = self._head()
        self.header = parse_bvh_header(text, self.where)
        check_declared_size(self.header, size - body_byte, self.where)
        self.num_frames = self.header.num_frames
        self.line_start = self._index_lines(body_byte)
        if self.line_start.size != self.num_frames:
            raise NotByBlocksError  # wrapped or missing lines: read_bvh counts the values and says
        self.end = size
        self.names, self.notes = unique_node_names(self.header.nodes)
        self.first = self._motion(0, 1)

    def _head(self) -> tuple[str, int]:
        """The file's text up to a line end past 'Frame Time', and the byte offset of its MOTION
        numbers (the decoding ``read_text`` uses: UTF-8 with or without BOM, else Latin-1)."""
        with open(self.path, "rb") as f:
            raw = b""
            while True:
                more = f.read(_HEAD_STEP)
                raw += more
                if b"\x00" in raw[:4096] or len(raw) > _HEAD_LIMIT:
                    raise NotByBlocksError  # a binary file, or no skeleton: read_bvh says so
                cut = raw.rfind(b"\n") + 1 if more else len(raw)
                text, bom = _decode(raw[:cut])
                head = None
                try:
                    head = parse_bvh_header(text, self.where)
                except InputError:
                    if not more or FRAME_TIME_RE.search(text):  # the header is all there: wrong
                        raise
                if head is not None and head.body_start < len(text):
                    codec = "utf-8" if bom is not None else "latin-1"
                    return text, len(text[: head.body_start].encode(codec)) + (bom or 0)
                if not more:
                    raise NotByBlocksError  # the header runs to the end: read_bvh says what is wrong

    def _index_lines(self, start: int) -> np.ndarray:
        """Byte offsets of every non-blank line from ``start`` (one pass, 32 MB at a time)."""
        parts, offset, rest = [], start, b""
        with open(self.path, "rb") as f:
            f.seek(start)
            while True:
                chunk = f.read(_INDEX_CHUNK)
                buf = rest + chunk
                cut = len(buf) if not chunk else buf.rfind(b"\n") + 1
                if cut == 0 and chunk:  # a line longer than a chunk: read on
                    rest = buf
                    continue
                part = np.frombuffer(buf, np.uint8, count=cut)
                starts = np.concatenate([[0], np.flatnonzero(part == 10) + 1])
                starts = starts[starts < cut]
                # a line is blank when none of its bytes is ink (one bool a byte, no counts)
                if starts.size:
                    inked = np.logical_or.reduceat(~np.isin(part, _BLANK), starts)
                    parts.append(offset + starts[inked])
                offset, rest = offset + cut, buf[cut:]
                if not chunk:
                    return np.concatenate([np.zeros(0, np.int64), *parts]).astype(np.int64)

    def _motion(self, start: int, stop: int) -> np.ndarray:
        """(stop - start, C) channel values of those frames' lines."""
        a = int(self.line_start[start])
        b = int(self.line_start[stop]) if stop < self.num_frames else self.end
        with open(self.path, "rb") as f:
            f.seek(a)
            text = f.read(b - a).decode("latin-1")  # numbers are ASCII; anything else fails below
        expected = (stop - start) * self.header.num_channels
        values = None
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)  # numpy stops at a non-number
            with contextlib.suppress(DeprecationWarning, ValueError):
                values = np.fromstring(text, dtype=np.float64, sep=" ")
        if values is None or values.size != expected:  # Python's float syntax names the culprit
            values = parse_floats(text.split(), f"{self.where}: MOTION data")
        if values.size != expected:
            raise InputError(
                f"{self.where}: frames {start + 1}-{stop} of the MOTION data hold {values.size} "
                f"values on {stop - start} lines; the CHANNELS declare "
                f"{self.header.num_channels} per frame. Correct the CHANNELS or re-export the file."
            )
        return values.reshape(stop - start, self.header.num_channels)

    def read(self, start: int, stop: int) -> KeypointSequence:
        """Frames ``start``..``stop`` as ``read_bvh`` gives them (rotations float32, as there)."""
        rows = self._motion(start, stop)
        notes = list(self.notes)
        if start:
            rows = np.concatenate([self.first, rows])
        data = BvhData(self.header.nodes, rows, self.header.frame_time, self.header.num_channels)
        with np.errstate(invalid="ignore", over="ignore"):  # inf/NaN input -> NaN (missing)
            pos, rot = bvh_forward_kinematics(data, notes if start == 0 else None, rotations=True)
        if start:
            pos, rot = pos[1:], rot[1:]
        rot = rot.astype(np.float32)
        return bvh_sequence(data, self.num_frames, self.names, notes, pos, rot, self.path)


def _decode(raw: bytes) -> tuple[str, int | None]:
    """``raw`` as ``read_text`` decodes it, and the BOM's length (0 or 3) for UTF-8, None for Latin-1."""
    try:
        text = raw.decode("utf-8-sig")
        return text, 3 if raw.startswith(b"\xef\xbb\xbf") else 0
    except UnicodeDecodeError:
        return raw.decode("latin-1"), None
