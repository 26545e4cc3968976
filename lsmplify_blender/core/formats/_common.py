"""Helpers shared by the keypoint readers: file access, metadata checks, rotations.

Everything here is numpy only. Rotation matrices act on column vectors (x' = R x),
matching ``core.rotations``; batched functions take any leading shape.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..keypoints import UNIT_SCALES, KeypointSequence

# ---------------------------------------------------------------------------------------
# files


def check_file(path) -> Path:
    """Return ``path`` as a Path after checking that it names a readable, non-empty file."""
    try:
        p = Path(os.fspath(path))
    except TypeError:
        raise InputError(f"Expected a file path, got {type(path).__name__} {path!r}.") from None
    if not p.exists():
        raise InputError(f"File not found: '{p}'. Check the path and try again.")
    if p.is_dir():
        raise InputError(f"'{p}' is a folder, not a keypoint file. Pass the file itself.")
    try:
        size = p.stat().st_size
    except OSError as e:
        raise InputError(f"Cannot read '{p}': {e}.") from None
    if size == 0:
        raise InputError(f"'{p}' is empty (0 bytes). Re-export the file; it has no data.")
    return p


def read_text(path, what: str = "text") -> str:
    """Read a whole text file as UTF-8 (a BOM is skipped); a binary file is an InputError."""
    p = check_file(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise InputError(f"Cannot read '{p}': {e}.") from None
    if b"\x00" in raw[:4096]:
        raise InputError(
            f"'{p.name}' looks like a binary file, not a {what} file. "
            f"Check that the file extension matches its contents."
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:  # old exporters write Latin-1 comments; numbers are ASCII either way
            text = raw.decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
            raise InputError(f"'{p.name}' is not a readable {what} file.") from None
    del raw  # a long take's text is hundreds of MB: never hold it three times
    if not text or text.isspace():
        raise InputError(f"'{p.name}' contains only whitespace; it has no data.")
    return text


def parse_floats(tokens, where: str) -> np.ndarray:
    """Convert a list of number strings to float64; a non-number is an InputError naming it."""
    try:
        return np.array(tokens, dtype=np.float64)
    except (ValueError, TypeError):
        for i, t in enumerate(tokens):
            try:
                float(t)
            except (ValueError, TypeError):
                raise InputError(f"{where}: '{t}' (value {i + 1}) is not a number.") from None
        raise InputError(f"{where}: could not read the numbers.") from None


# ---------------------------------------------------------------------------------------
# metadata

_UNIT_ALIASES = {
    "m": "m",
    "meter": "m",
    "meters": "m",
    "metre": "m",
    "metres": "m",
    "cm": "cm",
    "centimeter": "cm",
    "centimeters": "cm",
    "centimetre": "cm",
    "centimetres": "cm",
    "mm": "mm",
    "millimeter": "mm",
    "millimeters": "mm",
    "millimetre": "mm",
    "millimetres": "mm",
    "inch": "inch",
    "inches": "inch",
    "in": "inch",
    "cmu": "cmu",
}


def norm_units(value, where: str) -> str | None:
    if value is None:
        return None
    s = str(value).strip().lower()
    if s in ("", "none", "unknown"):
        return None
    if s not in _UNIT_ALIASES:
        raise InputError(
            f"{where}: unknown units '{value}'. Use one of {', '.join(UNIT_SCALES)} "
            f"(metres, centimetres, millimetres, inches, CMU units of 0.05644 m)."
        )
    return _UNIT_ALIASES[s]


def norm_up(value, where: str) -> str | None:
    if value is None:
        return None
    s = str(value).strip().lower().replace("_", "-")
    if s in ("", "none", "unknown"):
        return None
    s = s.removeprefix("+").removesuffix("-up").removesuffix(" up")
    if s not in ("y", "z"):
        raise InputError(f"{where}: unknown up axis '{value}'. Use 'y' (Y up) or 'z' (Z up).")
    return s


MAX_COORDINATE = (
    1e15  # far beyond any capture volume in any unit; bigger values overflow squared norms
)
MAX_FPS = (
    1000.0  # no capture runs faster; larger values are a unit mistake (and would size kernels)
)


def norm_fps(value, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or (
        isinstance(value, np.ndarray) and value.dtype.kind == "b"
    ):
        raise InputError(
            f"{where}: fps is {value!r}, a yes/no value, not a frame rate. Write a number, e.g. 30."
        )
    try:
        f = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{where}: fps '{str(value)[:40]}' is not a number.") from None
    if not math.isfinite(f) or f <= 0 or f > MAX_FPS:
        raise InputError(
            f"{where}: fps must be a frame rate in (0, {MAX_FPS:g}], got {str(value)[:40]}."
        )
    return f


def duplicates(items) -> list[str]:
    """The items that occur more than once, sorted: one pass, linear in len(items)."""
    seen: set = set()
    dup: set = set()
    for item in items:
        (dup if item in seen else seen).add(item)
    return sorted(dup)


def finalize(
    positions,
    *,
    names=None,
    confidence=None,
    fps=None,
    units=None,
    up=None,
    layout=None,
    frames=None,
    source="",
    notes=None,
    where: str = "",
    owned: bool = False,
) -> KeypointSequence:
    """Check shapes and values and build the KeypointSequence every reader returns.

    inf becomes NaN (missing); a sequence with no finite value at all is refused.
    Confidence is clipped to [0, 1] and set to 0 where the position is missing.
    ``owned``: the caller hands over a float64 array nobody else holds; it is edited in
    place instead of copied (a long take's positions are ~1 GB).
    """
    where = where or (Path(source).name if source else "keypoints")
    notes = list(notes or [])
    pos, missing = _checked_positions(positions, owned, where, notes)
    T, J = pos.shape[:2]
    names = _checked_names(names, J, where)
    if confidence is not None:
        confidence = _checked_confidence(confidence, missing, where, notes)
    if frames is not None:
        frames = _checked_frames(frames, T, where)
    layout = None if layout is None or str(layout).strip() == "" else str(layout).strip()
    return KeypointSequence(
        positions=pos,
        names=names,
        confidence=confidence,
        fps=norm_fps(fps, where),
        units=norm_units(units, where),
        up=norm_up(up, where),
        layout=layout,
        frames=frames,
        source=str(source),
        notes=notes,
    )


def _checked_positions(
    positions, owned: bool, where: str, notes: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(T, J, 3) float64 positions with NaN for every missing joint, and the (T, J) missing mask.

    Refuses a wrong shape, zero frames or joints, absurd coordinates and all-missing data;
    inf and partly missing joints become NaN (said in ``notes``). ``owned``: edit in place.
    """
    pos = (
        np.asarray(positions, dtype=np.float64) if owned else np.array(positions, dtype=np.float64)
    )
    if pos.ndim != 3 or pos.shape[2] != 3:
        raise InputError(
            f"{where}: keypoints must have shape (frames, joints, 3); got {pos.shape}."
        )
    T, J = pos.shape[:2]
    if T == 0:
        raise InputError(f"{where}: the file has zero frames. Export at least one frame.")
    if J == 0:
        raise InputError(f"{where}: the file has zero joints. Export at least one keypoint.")
    bad = ~np.isfinite(pos)
    if bad.any():
        n_inf = int(np.isinf(pos).sum())
        pos[bad] = np.nan
        if n_inf:
            notes.append(f"{n_inf} infinite value(s) treated as missing.")
    peak = float(np.nanmax(np.abs(pos))) if np.isfinite(pos).any() else 0.0
    if peak > MAX_COORDINATE:
        raise InputError(
            f"{where}: coordinates reach {peak:.3g}, which is no position in any unit (a "
            f"kilometre is 1e6 mm). The file holds something else, or is corrupt."
        )
    if not np.isfinite(pos).any():
        raise InputError(
            f"{where}: every keypoint value is missing (NaN/empty); there is nothing to fit. "
            f"Check the export: the tracker may have found no person."
        )
    # a joint is missing as a whole when any coordinate is missing
    missing = np.isnan(pos).any(axis=2)
    pos[missing] = np.nan
    n_missing = int(missing.sum())
    if n_missing:
        notes.append(f"{n_missing} of {T * J} keypoints are missing (NaN).")
    return pos, missing


def _checked_names(names, num_joints: int, where: str) -> list[str] | None:
    """The joint names as strings, one per joint and no two alike (None stays None)."""
    if names is None:
        return None
    names = [str(n) for n in names]
    if len(names) != num_joints:
        raise InputError(
            f"{where}: {len(names)} joint names for {num_joints} joints; they must match."
        )
    dup = duplicates(names)
    if dup:
        raise InputError(f"{where}: duplicate joint names {dup}; every joint needs its own name.")
    return names


def _checked_confidence(confidence, missing: np.ndarray, where: str, notes: list[str]):
    """(T, J) confidence in [0, 1] (non-finite -> 0, out of range clipped with a note), 0 where
    the position is ``missing``."""
    T, J = missing.shape
    conf = np.asarray(confidence, dtype=np.float64)
    if conf.shape != (T, J):
        raise InputError(
            f"{where}: confidence has shape {conf.shape}, expected (frames, joints) = ({T}, {J})."
        )
    conf = conf.copy()
    conf[~np.isfinite(conf)] = 0.0
    if conf.min() < 0 or conf.max() > 1:
        notes.append(
            f"confidence values outside [0, 1] (range {conf.min():.3g}..{conf.max():.3g}) "
            f"were clipped to [0, 1]."
        )
        conf = np.clip(conf, 0.0, 1.0)
    conf[missing] = 0.0
    return conf


def _checked_frames(frames, num_frames: int, where: str) -> np.ndarray:
    """(T,) finite frame numbers: int64 when they are all whole, else float64."""
    fr = np.asarray(frames)
    if fr.shape != (num_frames,):
        raise InputError(
            f"{where}: {fr.size} frame numbers for {num_frames} frames; they must match."
        )
    try:
        fr = fr.astype(np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{where}: frame numbers must be numbers.") from None
    if not np.isfinite(fr).all():
        raise InputError(f"{where}: frame numbers contain missing values.")
    return fr.astype(np.int64) if np.all(fr == np.round(fr)) else fr


# ---------------------------------------------------------------------------------------
# rotations (numpy, column vectors)


def axis_rotation(axis: str, angle: np.ndarray) -> np.ndarray:
    """Rotation about 'x', 'y' or 'z' by ``angle`` radians: (...,) -> (..., 3, 3)."""
    a = np.asarray(angle, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    o, i = np.zeros_like(a), np.ones_like(a)
    if axis == "x":
        m = [i, o, o, o, c, -s, o, s, c]
    elif axis == "y":
        m = [c, o, s, o, i, o, -s, o, c]
    elif axis == "z":
        m = [c, -s, o, s, c, o, o, o, i]
    else:  # pragma: no cover - callers validate
        raise ValueError(axis)
    return np.stack(m, -1).reshape(a.shape + (3, 3))


def euler_matrix(angles: np.ndarray, axes: str) -> np.ndarray:
    """Rotations about ``axes`` (e.g. 'zyx'), applied outermost first, as in BVH channels.

    ``angles[..., k]`` (radians) belongs to ``axes[k]``; the result is
    R = R_axes[0](a0) · R_axes[1](a1) · ... (so the last axis is applied first to a
    column vector; BVH 'Zrotation Yrotation Xrotation' gives Rz·Ry·Rx).
    """
    angles = np.asarray(angles, dtype=np.float64)
    out = None
    for k, ax in enumerate(axes):
        m = axis_rotation(ax, angles[..., k])
        out = m if out is None else out @ m
    if out is None:
        return np.broadcast_to(np.eye(3), angles.shape[:-1] + (3, 3)).copy()
    return out
