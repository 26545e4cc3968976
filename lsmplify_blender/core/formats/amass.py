"""SMPL parameters as an AMASS-style .npz (poses, betas, trans, mocap_framerate, gender).

Coordinates are SMPL's own: Y up, metres. Extra keys record how the fit was made.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from .. import safe_npy
from ..errors import InputError, OutputError


def write_smpl_npz(path: str | os.PathLike, poses: np.ndarray, betas: np.ndarray, trans: np.ndarray,
                   fps: float, gender: str = "neutral", **extra) -> Path:
    """Write the motion atomically: a temporary file beside the target, renamed over it only
    when complete, and removed on any failure (a full disk, a kill by Ctrl-C), so the
    user's earlier file is either kept or replaced whole and nothing is left behind.

    No NaN is ever written: the motion must be finite, and per-frame float extras
    (``fit_error_mm``) hold -1 for frames that had no keypoints; a NaN scalar extra is left out.
    """
    p = Path(path)
    if p.suffix.lower() != ".npz":
        p = p.with_suffix(".npz")
    arrays: dict[str, np.ndarray | np.generic] = dict(
        poses=np.asarray(poses, np.float32), betas=np.asarray(betas, np.float32),
        trans=np.asarray(trans, np.float32), mocap_framerate=np.float32(fps),
        gender=np.array(str(gender)), up=np.array("y"))
    for k in ("poses", "betas", "trans", "mocap_framerate"):
        if not np.isfinite(arrays[k]).all():
            raise OutputError(f"The solve produced non-finite {k}; nothing was written to {p}. The input "
                              "probably holds extreme values: check its units and coordinates.")
    for k, value in extra.items():
        v = np.asarray(value)
        if v.dtype.kind == "f" and not np.isfinite(v).all():
            if v.ndim == 0:
                continue
            v = np.where(np.isfinite(v), v, -1).astype(v.dtype)
        if v.dtype.kind not in "biufU":
            raise OutputError(f"Output field '{k}' is {v.dtype}, not numbers or text.")  # never an object array
        arrays[k] = v
    _atomic_savez(p, arrays)
    return p


def partial_path(path: str | os.PathLike) -> Path:
    """Where ``write_smpl_npz`` writes before the rename: a hidden name beside the target, removed on
    any failure (``batch`` also removes it after a killed worker)."""
    p = Path(path)
    return p.with_name(f".{p.name[:100]}.part")


def _atomic_savez(p: Path, arrays: dict) -> None:
    tmp = None
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = partial_path(p)
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
        tmp = None
    except OSError as exc:
        raise OutputError(f"Could not write {p}: {exc.strerror or exc}. Nothing was replaced; free some disk "
                          "space or choose another --out.") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def read_smpl_npz(path: str | os.PathLike) -> dict:
    """Read an AMASS/LSMPLify SMPL-parameter .npz: poses (T, 72+), betas, trans, fps, gender."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"SMPL motion file not found: '{p}'. Check the path (--init).")
    with open(p, "rb") as f:
        magic = f.read(6)
    if magic == b"\x93NUMPY":
        raise InputError(f"{p.name} is a single .npy array; --init needs an AMASS-style .npz with poses, betas "
                         "and trans (np.savez(path, poses=..., betas=..., trans=...)).")
    data, _ = safe_npy.read_npz(p, InputError, keys=("poses", "betas", "trans", "mocap_framerate",
                                                     "mocap_frame_rate", "gender", "up"), kinds="biufU")
    if "poses" not in data:
        raise InputError(f"{p.name}: no 'poses' array; expected an AMASS-style SMPL .npz "
                         "(poses, betas, trans, mocap_framerate).")
    poses = _finite(data, "poses", p.name)
    if poses.ndim != 2 or poses.shape[1] < 72:
        raise InputError(f"{p.name}: 'poses' has shape {poses.shape}; expected (frames, 72) or more.")
    t = poses.shape[0]
    if t == 0:
        raise InputError(f"{p.name}: 'poses' has zero frames.")
    trans = _finite(data, "trans", p.name) if "trans" in data else np.zeros((t, 3), np.float32)
    if trans.shape != (t, 3):
        raise InputError(f"{p.name}: 'trans' has shape {trans.shape}; expected ({t}, 3).")
    betas = (_finite(data, "betas", p.name) if "betas" in data else np.zeros(10, np.float32)).reshape(-1)[:10]
    key = "mocap_framerate" if "mocap_framerate" in data else "mocap_frame_rate"
    fps = _finite(data, key, p.name).reshape(-1) if key in data else np.array([30.0])
    if fps.size != 1 or not 0 < float(fps[0]) <= 1000:
        raise InputError(f"{p.name}: '{key}' must be one frame rate in (0, 1000] fps; got {fps[:3].tolist()}.")
    return dict(poses=poses[:, :72], betas=betas, trans=trans, fps=float(fps[0]),
                gender=_text(data, "gender", "neutral", p.name), up=_text(data, "up", "y", p.name))


def _finite(data: dict, key: str, name: str) -> np.ndarray:
    arr = data[key]
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{name}: '{key}' is {arr.dtype}, not numbers.")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise InputError(f"{name}: '{key}' holds NaN or infinite values (or numbers beyond float32); "
                         "the file is damaged. Export it again.")
    return arr


def _text(data: dict, key: str, default: str, name: str) -> str:
    if key not in data:
        return default
    arr = data[key]
    if arr.dtype.kind != "U" or arr.size != 1 or len(str(arr.reshape(-1)[0])) > 100:
        raise InputError(f"{name}: '{key}' must be one short text value.")
    return str(arr.reshape(-1)[0])
