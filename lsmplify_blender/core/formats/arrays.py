"""Readers for plain keypoint arrays: .npy, .npz, .json and .csv.

.npy
    A float array (T, J, 3). Also accepted: (J, 3) as a single frame, and (T, 3*J) as
    x, y, z per joint in that order (the C-order flattening of (T, J, 3)); anything else
    is refused. Loaded with ``allow_pickle=False``.

.npz
    Key ``keypoints`` (T, J, 3) (same shapes as .npy), and optionally ``joint_names`` (J,)
    strings, ``confidence`` (T, J) in [0, 1], ``fps`` (scalar), ``units``
    ('m' | 'cm' | 'mm' | 'inch' | 'cmu'), ``up`` ('y' | 'z'), ``layout`` (string) and
    ``frames`` (T,) frame numbers. Save strings as ``np.array(names, dtype=str)``,
    never as Python objects (they are loaded with ``allow_pickle=False``). Example::

        np.savez(
            "clip.npz",
            keypoints=xyz,
            joint_names=np.array(names),
            fps=30.0,
            units="m",
            up="y",
            layout="coco17",
        )

.json
    Either the array form (the same keys as .npz; ``null`` marks a missing joint or
    coordinate)::

        {
            "keypoints": [[[x, y, z], null, ...], ...],
            "joint_names": ["nose", ...],
            "confidence": [[1.0, 0.0, ...], ...],
            "fps": 30,
            "units": "m",
            "up": "y",
            "layout": "coco17",
            "frames": [0, 1, ...],
        }

    (a bare top-level list is read as ``keypoints``), or the per-frame form, where each
    frame names its joints and any joint may be absent or ``null``::

        {"fps": 30, "units": "m", "up": "y", "layout": "coco17",
         "frames": [{"frame": 0, "joints": {"left_hip": [x, y, z], "nose": null, ...},
                     "confidence": {"left_hip": 0.9, ...}},   # optional
                    ...]}

    A joint value may also be [x, y, z, c] with its confidence c. Joints are ordered by
    first appearance; ``frame`` numbers are used when every frame has one.

.csv
    One row per frame. With a header: three columns per joint named
    ``<name>_x, <name>_y, <name>_z`` (FreeMoCap style; '.', ' ' or ':' may replace '_',
    X/Y/Z may be upper case), optionally ``<name>_confidence`` / ``<name>_visibility`` /
    ``<name>_score``, a ``frame`` column and a ``time`` column (seconds; ``time_ms`` or
    ``timestamp_ms`` in milliseconds) from which fps is estimated. Other columns are
    ignored (listed in ``notes``). Empty cells (or NaN / NA / null) are missing values.
    Without a header: numbers only, 3*J columns x, y, z per joint; names unknown.
    Comma, tab or semicolon separated (detected from the first line); '#' lines skipped.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from .. import safe_npy
from ..errors import InputError
from ..keypoints import KeypointSequence
from ._common import check_file, duplicates, finalize, read_text

_NPZ_KEYS = ("keypoints", "joint_names", "confidence", "fps", "units", "up", "layout", "frames")


# ---------------------------------------------------------------------------------------
# shared


def as_tj3(arr, where: str, notes: list[str]) -> np.ndarray:
    """Accept (T, J, 3), (J, 3) (one frame) or (T, 3J) (x, y, z per joint)."""
    a = np.asarray(arr)
    if a.dtype.kind not in "fiub":
        raise InputError(f"{where}: keypoints must be numbers, got dtype {a.dtype}.")
    a = a.astype(np.float64)  # always a copy: readers hand it to finalize(owned=True)
    if a.ndim == 3 and a.shape[2] == 3:
        return a
    if a.ndim == 2 and a.shape[1] == 3:
        notes.append(f"2-D array {a.shape} read as one frame of {a.shape[0]} joints (J, 3).")
        return a[None]
    if a.ndim == 2 and a.shape[1] % 3 == 0 and a.shape[1] > 3:
        notes.append(
            f"2-D array {a.shape} read as (frames, joints*3) with x, y, z per joint: "
            f"{a.shape[0]} frames of {a.shape[1] // 3} joints."
        )
        return a.reshape(a.shape[0], -1, 3)
    raise InputError(
        f"{where}: keypoints have shape {a.shape}; expected (frames, joints, 3) "
        f"(or (joints, 3) for one frame). Reshape the array, e.g. arr.reshape(T, -1, 3)."
    )


def _scalar(value, key: str, where: str):
    a = np.asarray(value)
    if a.size != 1:
        raise InputError(f"{where}: '{key}' must be a single value, got shape {a.shape}.")
    v = a.reshape(()).item()
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    return v


def _string(value, key: str, where: str) -> str | None:
    if value is None:
        return None
    v = _scalar(value, key, where)
    if not isinstance(v, str):
        raise InputError(f"{where}: '{key}' must be a string, got {v!r}.")
    return v


def _names(value, where: str) -> list[str] | None:
    if value is None:
        return None
    a = np.asarray(value)
    if a.ndim != 1:
        raise InputError(
            f"{where}: 'joint_names' must be a 1-D list of strings, got shape {a.shape}."
        )
    out = []
    for item in a.tolist():
        v = item.decode("utf-8", "replace") if isinstance(item, bytes) else item
        if not isinstance(v, str):
            raise InputError(f"{where}: 'joint_names' must hold strings, found {v!r}.")
        out.append(v)
    return out


def _numeric(value, key: str, where: str) -> np.ndarray | None:
    if value is None:
        return None
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{where}: '{key}' must hold numbers only.") from None
    return a


# ---------------------------------------------------------------------------------------
# .npy / .npz


def _magic(p: Path) -> bytes:
    with open(p, "rb") as f:
        return f.read(6)


def read_npy(path) -> KeypointSequence:
    p = check_file(path)
    where = p.name
    magic = _magic(p)
    if magic.startswith(b"PK"):
        return read_npz(path)
    if magic != b"\x93NUMPY":
        raise InputError(f"{where}: not a NumPy .npy file. Save the array with np.save().")
    arr = safe_npy.read_npy(p, InputError)  # sizes and dtype checked before anything is allocated
    notes: list[str] = []
    pos = as_tj3(arr, where, notes)  # a fresh float64 array (astype copies): finalize may own it
    del arr
    notes.append(".npy holds positions only: names, units, up axis and fps are not known.")
    return finalize(pos, source=str(path), notes=notes, where=where, owned=True)


def read_npz(path) -> KeypointSequence:
    p = check_file(path)
    where = p.name
    if _magic(p)[:2] != b"PK":
        raise InputError(
            f"{where}: this is a single .npy array, not an .npz archive; "
            f"rename it to .npy or save it with np.savez(path, keypoints=...)."
        )
    # Only the known keys are read, each after its declared size is checked (an .npz bomb
    # declares gigabytes of zeros in a few megabytes).
    vals, keys = safe_npy.read_npz(p, InputError, keys=_NPZ_KEYS, kinds="biufUS")
    if "keypoints" not in keys:
        raise InputError(
            f"{where}: no 'keypoints' array in the .npz (it has {keys}). Save "
            f"the (T, J, 3) positions as np.savez(path, keypoints=xyz, ...)."
        )
    notes: list[str] = []
    extra = [k for k in keys if k not in _NPZ_KEYS]
    if extra:
        notes.append(f"ignored .npz keys {extra} (known keys: {', '.join(_NPZ_KEYS)}).")
    return _from_mapping(vals, where, str(path), notes)


def _from_mapping(vals: dict, where: str, source: str, notes: list[str]) -> KeypointSequence:
    """Build a sequence from the .npz / .json array-form keys."""
    pos = as_tj3(_numeric(vals["keypoints"], "keypoints", where), where, notes)
    conf = _numeric(vals.get("confidence"), "confidence", where)
    if conf is not None and conf.ndim == 1 and pos.shape[0] == 1 and conf.shape[0] == pos.shape[1]:
        conf = conf[None]
    fps = vals.get("fps")
    fps = None if fps is None else _scalar(fps, "fps", where)
    frames = _numeric(vals.get("frames"), "frames", where)
    return finalize(
        pos,
        names=_names(vals.get("joint_names"), where),
        confidence=conf,
        fps=fps,
        units=_string(vals.get("units"), "units", where),
        up=_string(vals.get("up"), "up", where),
        layout=_string(vals.get("layout"), "layout", where),
        frames=frames,
        source=source,
        notes=notes,
        where=where,
    )


# ---------------------------------------------------------------------------------------
# .json


def _nested_to_tj3(kp, where: str) -> np.ndarray:
    """JSON keypoints (lists with null for missing joints or coordinates) -> float array."""
    try:
        a = np.array(kp, dtype=np.float64)  # null coordinates become NaN
        if a.ndim in (2, 3) and a.shape[-1] == 3:
            return a
    except (TypeError, ValueError):
        pass
    if not isinstance(kp, list) or not kp:
        raise InputError(
            f"{where}: 'keypoints' must be a list of frames, each a list of [x, y, z]."
        )

    def is_number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if any(isinstance(e, list) and any(is_number(v) for v in e) for e in kp):
        kp = [kp]  # elements are [x, y, z] joints: a single frame
    out, J = [], None
    for t, frame in enumerate(kp):
        if not isinstance(frame, list):
            raise InputError(f"{where}: keypoints frame {t} is not a list of joints.")
        if J is None:
            J = len(frame)
        elif len(frame) != J:
            raise InputError(
                f"{where}: keypoints frame {t} has {len(frame)} joints but frame 0 has "
                f"{J}; every frame needs the same joints (use null for a missing one)."
            )
        row = []
        for j, v in enumerate(frame):
            if v is None:
                row.append([np.nan] * 3)
                continue
            if not isinstance(v, list) or len(v) != 3:
                raise InputError(
                    f"{where}: keypoints frame {t}, joint {j} must be [x, y, z] or null, got {v!r}."
                )
            try:
                row.append([np.nan if c is None else float(c) for c in v])
            except (TypeError, ValueError):
                raise InputError(
                    f"{where}: keypoints frame {t}, joint {j}: {v!r} is not numbers."
                ) from None
        out.append(row)
    return np.array(out, dtype=np.float64).reshape(len(out), J or 0, 3)


def _frames_form(data: dict, frames: list, where: str, source: str) -> KeypointSequence:
    """The JSON per-frame form (module docstring): each frame names its joints."""
    names, frame_nums, per_frame = _frame_joints(frames, where)
    T, J = len(per_frame), len(names)
    pos, cf, have_conf = _frame_values(per_frame, {n: j for j, n in enumerate(names)}, where)
    given = [f is not None for f in frame_nums]
    if any(given) and not all(given):
        raise InputError(
            f'{where}: some frames have a "frame" number and some do not; give it '
            f"for every frame or for none."
        )
    notes = [
        (
            f"JSON per-frame form: {T} frames, {J} joints (ordered by first appearance); "
            f"absent or null joints are missing."
        )
    ]
    return finalize(
        pos,
        names=names,
        confidence=cf if have_conf else None,
        fps=data.get("fps"),
        units=data.get("units"),
        up=data.get("up"),
        layout=data.get("layout"),
        frames=_numeric(frame_nums, "frame", where) if all(given) else None,
        source=source,
        notes=notes,
        where=where,
    )


def _frame_joints(frames: list, where: str) -> tuple[list[str], list, list[tuple[dict, dict]]]:
    """Check each frame's shape: (joint names by first appearance, each frame's "frame" number
    or None, each frame's (joints, confidence) objects)."""
    names: list[str] = []
    seen: set[str] = set()
    frame_nums = []
    per_frame = []
    for t, fr in enumerate(frames):
        if not isinstance(fr, dict):
            raise InputError(
                f'{where}: frames[{t}] must be an object {{"frame": n, "joints": {{...}}}}.'
            )
        joints = fr.get("joints", fr.get("keypoints"))
        if not isinstance(joints, dict):
            raise InputError(
                f'{where}: frames[{t}] needs a "joints" object mapping joint names to '
                f"[x, y, z] (or null)."
            )
        conf = fr.get("confidence") or {}
        if not isinstance(conf, dict):
            raise InputError(f"{where}: frames[{t}].confidence must map joint names to numbers.")
        for n in joints:
            if n not in seen:
                seen.add(n)
                names.append(n)
        frame_nums.append(fr.get("frame"))
        per_frame.append((joints, conf))
    if not names:
        raise InputError(f"{where}: the frames name no joints; there is nothing to read.")
    return names, frame_nums, per_frame


def _frame_values(per_frame: list[tuple[dict, dict]], index: dict[str, int], where: str):
    """(T, J, 3) positions (NaN where absent or null), (T, J) confidences (1 unless given) and
    whether any confidence was given, from each frame's (joints, confidence) objects."""
    T, J = len(per_frame), len(index)
    pos = np.full((T, J, 3), np.nan)
    cf = np.ones((T, J))
    have_conf = False
    for t, (joints, conf) in enumerate(per_frame):
        for n, v in joints.items():
            if v is None:
                continue
            vals = _joint_value(v, t, n, where)
            pos[t, index[n]] = vals[:3]
            if len(vals) == 4:
                cf[t, index[n]] = vals[3]
                have_conf = True
        for n, c in conf.items():
            if n not in index:
                continue
            try:
                cf[t, index[n]] = np.nan if c is None else float(c)
            except (TypeError, ValueError):
                raise InputError(
                    f"{where}: frame {t}, confidence of '{n}' is not a number."
                ) from None
            have_conf = True
    return pos, cf, have_conf


def _joint_value(v, t: int, n: str, where: str) -> list[float]:
    """One joint's [x, y, z] or [x, y, z, c] as floats (None -> NaN) in frame ``t``."""
    if not isinstance(v, list) or len(v) not in (3, 4):
        raise InputError(
            f"{where}: frame {t}, joint '{n}' must be [x, y, z], [x, y, z, c] or null; got {v!r}."
        )
    try:
        return [np.nan if c is None else float(c) for c in v]
    except (TypeError, ValueError):
        raise InputError(f"{where}: frame {t}, joint '{n}': {v!r} is not numbers.") from None


def read_json(path) -> KeypointSequence:
    where = Path(path).name
    text = read_text(path, "JSON")

    def json_int(digits: str):  # Python refuses > 4300 digits deep in json.loads; say why here
        if len(digits) > 30:
            raise InputError(
                f"{where}: a JSON integer with {len(digits)} digits is no coordinate, frame or "
                f"rate. The file holds something else, or is corrupt."
            )
        return int(digits)

    try:
        data = json.loads(text, parse_int=json_int)
    except json.JSONDecodeError as e:
        raise InputError(
            f"{where}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}). "
            f"The file may be truncated."
        ) from None
    except RecursionError:
        raise InputError(f"{where}: JSON nested too deeply.") from None
    except ValueError as e:
        raise InputError(f"{where}: not valid JSON ({str(e)[:100]}).") from None
    if isinstance(data, list):
        data = (
            {"frames": data}
            if data and all(isinstance(f, dict) for f in data)
            else {"keypoints": data}
        )
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a JSON object with 'keypoints' (or 'frames').")
    for k in ("fps", "units", "up", "layout"):
        if isinstance(data.get(k), (list, dict)):
            raise InputError(f"{where}: '{k}' must be a single value.")
    if "keypoints" in data:
        notes = []
        extra = [k for k in data if k not in _NPZ_KEYS and k != "names"]
        if extra:
            notes.append(f"ignored JSON keys {extra}.")
        vals = {k: data[k] for k in _NPZ_KEYS if k in data and data[k] is not None}
        if "joint_names" not in vals and data.get("names") is not None:
            vals["joint_names"] = data["names"]
        if not isinstance(vals.get("keypoints"), list):
            raise InputError(f"{where}: 'keypoints' must be a list of frames of [x, y, z].")
        vals["keypoints"] = _nested_to_tj3(vals["keypoints"], where)
        if "confidence" in vals:
            try:
                vals["confidence"] = np.array(vals["confidence"], dtype=np.float64)
            except (TypeError, ValueError):
                raise InputError(
                    f"{where}: 'confidence' must be a (frames, joints) list of numbers."
                ) from None
        if "joint_names" in vals and not isinstance(vals["joint_names"], list):
            raise InputError(f"{where}: 'joint_names' must be a list of strings.")
        if "joint_names" in vals:
            vals["joint_names"] = np.array(vals["joint_names"], dtype=object)
        if "frames" in vals and not isinstance(vals["frames"], list):
            raise InputError(f"{where}: 'frames' must be a list of frame numbers.")
        return _from_mapping(vals, where, str(path), notes)
    frames = data.get("frames")
    if isinstance(frames, list) and frames and all(isinstance(f, dict) for f in frames):
        return _frames_form(data, frames, where, str(path))
    if isinstance(frames, list) and not frames:
        raise InputError(f"{where}: 'frames' is empty; the file has zero frames.")
    raise InputError(
        f"{where}: no 'keypoints' array and no 'frames' list of "
        f'{{"frame", "joints"}} objects; see the documented JSON forms.'
    )


# ---------------------------------------------------------------------------------------
# .csv

_MISSING = {"", "nan", "na", "n/a", "null", "none", "-nan"}
_COORD_RE = re.compile(r"^(.+?)[_.\s:]([xyzXYZ])$")
_CONF_RE = re.compile(r"^(.+?)[_.\s:](confidence|visibility|score|conf|likelihood)$", re.IGNORECASE)
_FRAME_COLS = {
    "frame",
    "frames",
    "frame_number",
    "frame_index",
    "frame_idx",
    "frame_id",
    "frame_no",
}
_TIME_COLS = {"time", "timestamp", "time_s", "seconds", "t", "time_ms", "timestamp_ms"}


def _is_number(tok: str) -> bool:
    if tok.strip().lower() in _MISSING:
        return True
    try:
        float(tok)
        return True
    except ValueError:
        return False


def _csv_numbers(
    rows: list[list[str]],
    cols: list[int],
    header: list[str] | None,
    line_nos: list[int],
    where: str,
) -> np.ndarray:
    """Cells rows[r][c] for c in cols -> (R, len(cols)) floats; empty/NaN/NA cells -> NaN."""
    flat = [rows[r][c] for r in range(len(rows)) for c in cols]
    flat = ["nan" if t.strip().lower() in _MISSING else t for t in flat]
    try:
        return np.array(flat, dtype=np.float64).reshape(len(rows), len(cols))
    except ValueError:
        for i, t in enumerate(flat):
            try:
                float(t)
            except ValueError:
                r, c = divmod(i, len(cols))
                col = f"column '{header[cols[c]]}'" if header else f"column {cols[c] + 1}"
                raise InputError(
                    f"{where}: line {line_nos[r]}, {col}: '{t}' is not a number. "
                    f"Numeric columns may hold only numbers or empty cells."
                ) from None
        raise  # pragma: no cover


def read_csv(path) -> KeypointSequence:
    """Read a keypoint CSV (module docstring: with a <name>_x/_y/_z header, or numbers only)."""
    where = Path(path).name
    lines, rows = _csv_rows(read_text(path, "CSV"), where)
    has_header = not all(_is_number(t) for t in rows[0])
    if has_header:
        header, data, line_nos = rows[0], rows[1:], [n for n, _ in lines[1:]]
    else:
        header, data, line_nos = None, rows, [n for n, _ in lines]
    if not data:
        raise InputError(f"{where}: the CSV has a header but no data rows (zero frames).")
    width = len(rows[0])
    _check_row_widths(line_nos, data, width, has_header, where)
    numbers = partial(_csv_numbers, data, header=header, line_nos=line_nos, where=where)
    if header is None:
        return _csv_without_header(numbers, len(data), width, str(path), where)
    return _csv_with_header(numbers, header, len(data), str(path), where)


def _csv_rows(text: str, where: str) -> tuple[list[tuple[int, str]], list[list[str]]]:
    """The non-empty, non-comment lines as (line number, text) and their cells (stripped).

    The delimiter (comma, tab, semicolon, else whitespace) is the first one the first line has.
    """
    lines = [
        (k + 1, ln)
        for k, ln in enumerate(text.splitlines())
        if ln.strip() and not ln.lstrip().startswith("#")
    ]
    if not lines:
        raise InputError(f"{where}: the CSV has no rows.")
    first = lines[0][1]
    delim = "," if "," in first else "\t" if "\t" in first else ";" if ";" in first else None
    if delim is None:
        rows = [ln.split() for _, ln in lines]
    else:
        rows = [
            [c.strip() for c in r] for r in csv.reader([ln for _, ln in lines], delimiter=delim)
        ]
    if len(rows) != len(lines):
        raise InputError(f"{where}: a quoted field spans several lines; the CSV is malformed.")
    return lines, rows


def _check_row_widths(
    line_nos: list[int], data: list[list[str]], width: int, has_header: bool, where: str
) -> None:
    """Every data row must have as many fields as the header (or the first line)."""
    for ln, r in zip(line_nos, data, strict=False):
        if len(r) != width:
            raise InputError(
                f"{where}: line {ln} has {len(r)} fields but the "
                f"{'header' if has_header else 'first line'} has {width}. "
                f"The file is truncated or malformed; every row needs the same columns."
            )


def _csv_without_header(numbers, num_rows: int, width: int, source: str, where: str):
    """A header-less CSV: every column a number, x, y, z per joint; ``numbers(cols)`` reads cells."""
    if width % 3:
        raise InputError(
            f"{where}: a CSV without a header must have 3 columns (x, y, z) per "
            f"joint; it has {width}. Add a header row with <name>_x, <name>_y, "
            f"<name>_z columns."
        )
    vals = numbers(list(range(width)))
    notes = [
        f"CSV without header: {width // 3} joints as x, y, z column triples; joint names unknown."
    ]
    return finalize(vals.reshape(num_rows, width // 3, 3), source=source, notes=notes, where=where)


@dataclass
class _CsvColumns:
    """What each header column is: joint coordinates, confidences, frame, time, or ignored."""

    coords: dict[str, dict[str, int]]  # joint name -> {'x': column, 'y': ..., 'z': ...}
    conf: dict[str, int]  # joint name -> its confidence column
    frame: int | None
    time: int | None
    ignored: list[str]


def _csv_columns(header: list[str], where: str) -> _CsvColumns:
    """Classify the header's columns; refuses duplicates and joints lacking an x, y or z column."""
    dup = [h for h in duplicates(header) if h]
    if dup:
        raise InputError(f"{where}: duplicate column names {dup} in the header.")
    cols = _CsvColumns(coords={}, conf={}, frame=None, time=None, ignored=[])
    for c, h in enumerate(header):
        hl = h.strip().lower()
        m = _COORD_RE.match(h.strip())
        mc = _CONF_RE.match(h.strip())
        if hl in _FRAME_COLS and cols.frame is None:
            cols.frame = c
        elif hl in _TIME_COLS and cols.time is None:
            cols.time = c
        elif m:
            cols.coords.setdefault(m.group(1), {})[m.group(2).lower()] = c
        elif mc:
            cols.conf[mc.group(1)] = c
        else:
            cols.ignored.append(h)
    if not cols.coords:
        raise InputError(
            f"{where}: no keypoint columns in the header {header[:8]}{'...' if len(header) > 8 else ''}. "
            f"Name them <joint>_x, <joint>_y, <joint>_z (e.g. left_hip_x, left_hip_y, left_hip_z), "
            f"or drop the header for a plain numeric x, y, z per joint file."
        )
    for name, d in cols.coords.items():
        lack = [a for a in "xyz" if a not in d]
        if lack:
            raise InputError(
                f"{where}: joint '{name}' has no {', '.join(name + '_' + a for a in lack)} "
                f"column; every joint needs _x, _y and _z columns."
            )
    return cols


def _csv_with_header(numbers, header: list[str], num_rows: int, source: str, where: str):
    """A CSV with a header: joints from <name>_x/_y/_z columns, confidences, frames and fps."""
    cols = _csv_columns(header, where)
    names = list(cols.coords)
    xyz_cols = [cols.coords[n][a] for n in names for a in "xyz"]
    pos = numbers(xyz_cols).reshape(num_rows, len(names), 3)
    notes: list[str] = []
    conf = None
    used_conf = [n for n in names if n in cols.conf]
    stray = [h for n, c in cols.conf.items() if n not in cols.coords for h in [header[c]]]
    if used_conf:
        cv = numbers([cols.conf[n] for n in used_conf])
        conf = np.ones((num_rows, len(names)))
        for k, n in enumerate(used_conf):
            conf[:, names.index(n)] = cv[:, k]
        notes.append(
            f"confidence read for {len(used_conf)} of {len(names)} joints (others set to 1)."
        )
    ignored = cols.ignored + stray
    if ignored:
        notes.append(f"ignored CSV columns: {ignored[:10]}{' ...' if len(ignored) > 10 else ''}.")
    frames = None
    if cols.frame is not None:
        frames = numbers([cols.frame])[:, 0]
        if np.isnan(frames).any():
            raise InputError(f"{where}: the '{header[cols.frame]}' column has empty cells.")
    fps = None
    if cols.time is not None:
        fps = _csv_fps(numbers([cols.time])[:, 0], header[cols.time], notes)
    notes.insert(
        0,
        f"CSV: {num_rows} frames, {len(names)} joints from <name>_x/_y/_z columns; "
        f"empty cells are missing; units and up axis not stated.",
    )
    return finalize(
        pos,
        names=names,
        confidence=conf,
        fps=fps,
        frames=frames,
        source=source,
        notes=notes,
        where=where,
    )


def _csv_fps(t: np.ndarray, column: str, notes: list[str]) -> float | None:
    """fps from a time column (seconds, or milliseconds when its name ends in 'ms'), or None
    when it gives no plausible rate (1-1000 fps); says which in ``notes``."""
    name = column.strip().lower()
    if name.endswith("ms"):
        t = t / 1000.0
    dt = np.diff(t[np.isfinite(t)])
    if not (dt.size and np.median(dt) > 0):
        return None
    est = 1.0 / float(np.median(dt))
    if 1.0 <= est <= 1000.0:
        notes.append(
            f"fps {est:.4g} estimated from the '{column}' column "
            f"({'milliseconds' if name.endswith('ms') else 'seconds'})."
        )
        return est
    notes.append(
        f"'{column}' column gives an implausible {est:.4g} fps "
        f"(is it in other units?); fps not set."
    )
    return None
