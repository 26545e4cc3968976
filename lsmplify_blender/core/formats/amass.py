"""SMPL parameters as an AMASS-style .npz (poses, betas, trans, mocap_framerate, gender).

Coordinates are SMPL's own: Y up, metres. Extra keys record how the fit was made.
LSMPLify writes ``up = "y"``; AMASS files have no ``up`` key and are Z up, which the
reader detects from the data (``detect_pose_up``). AMASS's SMPL-H (156 columns) and SMPL-X
(165 columns) poses are mapped onto SMPL's 24 joints (``smpl_pose_columns``).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from .. import safe_npy
from ..errors import InputError, OutputError


def write_smpl_npz(
    path: str | os.PathLike,
    poses: np.ndarray,
    betas: np.ndarray,
    trans: np.ndarray,
    fps: float,
    gender: str = "neutral",
    **extra,
) -> Path:
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
        poses=np.asarray(poses, np.float32),
        betas=np.asarray(betas, np.float32),
        trans=np.asarray(trans, np.float32),
        mocap_framerate=np.float32(fps),
        gender=np.array(str(gender)),
        up=np.array("y"),
    )
    for k in ("poses", "betas", "trans", "mocap_framerate"):
        if not np.isfinite(arrays[k]).all():
            raise OutputError(
                f"The solve produced non-finite {k}; nothing was written to {p}. The input "
                "probably holds extreme values: check its units and coordinates."
            )
    for k, value in extra.items():
        v = np.asarray(value)
        if v.dtype.kind == "f" and not np.isfinite(v).all():
            if v.ndim == 0:
                continue
            v = np.where(np.isfinite(v), v, -1).astype(v.dtype)
        if v.dtype.kind not in "biufU":
            raise OutputError(
                f"Output field '{k}' is {v.dtype}, not numbers or text."
            )  # never an object array
        arrays[k] = v
    _atomic_savez(p, arrays)
    return p


# Column blocks of the 24 SMPL joints in wider pose vectors (3 axis-angle numbers per joint).
# SMPL-H joints (smplx.joint_names.SMPLH_JOINT_NAMES): 0-21 the body as in SMPL, 22-36 the
# left hand's fingers from left_index1, 37-51 the right hand's from right_index1. SMPL-X
# (JOINT_NAMES): 22 jaw, 23-24 eyes, 25-39 left fingers, 40-54 right fingers. SMPL's
# left_hand / right_hand joints (22, 23) have no exact twin there: each hand's first
# finger joint (index1) stands in for them; the body joints are taken as they are.
HAND_SOURCE_JOINTS = {156: (22, 37, "SMPL-H"), 165: (25, 40, "SMPL-X")}


def smpl_pose_columns(poses: np.ndarray, name: str = "poses") -> tuple[np.ndarray, str | None]:
    """(T, 72) SMPL axis-angle poses from SMPL (72), SMPL-H (156) or SMPL-X (165) columns,
    and a note saying what was mapped (None for SMPL)."""
    width = poses.shape[1]
    if width == 72:
        return poses, None
    if width not in HAND_SOURCE_JOINTS:
        raise InputError(
            f"{name}: 'poses' has {width} columns; expected 72 (SMPL), 156 (SMPL-H) or "
            "165 (SMPL-X)."
        )
    left, right, kind = HAND_SOURCE_JOINTS[width]
    out = np.concatenate(
        [poses[:, :66], poses[:, 3 * left : 3 * left + 3], poses[:, 3 * right : 3 * right + 3]], 1
    )
    return out, (
        f"{kind} poses ({width} columns): the 22 body joints as they are, SMPL's hand joints from "
        "each hand's first finger joint (index1)"
    )


def detect_pose_up(poses: np.ndarray) -> tuple[str, float]:
    """'z' or 'y': where the body's up axis points in the world, median over the take.

    SMPL's rest body stands along +Y, so the root's rotation applied to +Y is the body's
    up direction in the file's world (the same feet-to-shoulders cue ``prepare.detect_up``
    uses for keypoints, read from the root joint, which carries it). AMASS stores Z up,
    LSMPLify and smplx Y up. Returns (axis, the median up vector's component on it).
    """
    import torch

    from ..rotations import axis_angle_to_matrix

    if poses.shape[0] == 0:
        return "y", 0.0
    root = axis_angle_to_matrix(torch.as_tensor(np.asarray(poses[:, :3], np.float64))).numpy()
    med = np.median(root[:, :, 1], axis=0)  # R @ (0, 1, 0): the second column
    if np.argmax(np.abs(med)) == 2 and med[2] > 0:
        return "z", float(med[2])
    return "y", float(med[1])


def turn_motion_z_up_to_y_up(root_rotmats: np.ndarray, trans: np.ndarray, pelvis_rest: np.ndarray):
    """A Z-up motion in SMPL's Y-up world (``model.axes.Z_UP_TO_Y_UP``, C): the root rotation
    becomes C R, and the translation moves so that the pelvis (at ``pelvis_rest + trans``,
    the pivot of SMPL's root rotation) turns with the world: t' = C (t + j0) - j0.
    Returns (root rotmats (T, 3, 3), trans (T, 3))."""
    from ..model.axes import Z_UP_TO_Y_UP

    c, j0 = Z_UP_TO_Y_UP, np.asarray(pelvis_rest, np.float64)
    return c @ np.asarray(root_rotmats, np.float64), (np.asarray(trans, np.float64) + j0) @ c.T - j0


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
        raise OutputError(
            f"Could not write {p}: {exc.strerror or exc}. Nothing was replaced; free some disk "
            "space or choose another --out."
        ) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def read_smpl_npz(path: str | os.PathLike) -> dict:
    """Read an AMASS/LSMPLify SMPL-parameter .npz: poses (T, 72), betas, trans, fps, gender,
    up ('y' or 'z': the file's ``up``, else detected), frame_start (or None) and notes."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"SMPL motion file not found: '{p}'. Check the path (--init).")
    with open(p, "rb") as f:
        magic = f.read(6)
    if magic == b"\x93NUMPY":
        raise InputError(
            f"{p.name} is a single .npy array; --init needs an AMASS-style .npz with poses, betas "
            "and trans (np.savez(path, poses=..., betas=..., trans=...))."
        )
    data, _ = safe_npy.read_npz(
        p,
        InputError,
        keys=(
            "poses",
            "betas",
            "trans",
            "mocap_framerate",
            "mocap_frame_rate",
            "gender",
            "up",
            "frame_start",
        ),
        kinds="biufU",
    )
    if "poses" not in data:
        raise InputError(
            f"{p.name}: no 'poses' array; expected an AMASS-style SMPL .npz "
            "(poses, betas, trans, mocap_framerate)."
        )
    poses = _finite(data, "poses", p.name)
    if poses.ndim != 2 or poses.shape[1] < 72:
        raise InputError(
            f"{p.name}: 'poses' has shape {poses.shape}; expected (frames, 72) or more."
        )
    t = poses.shape[0]
    if t == 0:
        raise InputError(f"{p.name}: 'poses' has zero frames.")
    trans = _finite(data, "trans", p.name) if "trans" in data else np.zeros((t, 3), np.float32)
    if trans.shape != (t, 3):
        raise InputError(f"{p.name}: 'trans' has shape {trans.shape}; expected ({t}, 3).")
    betas = (
        _finite(data, "betas", p.name) if "betas" in data else np.zeros(10, np.float32)
    ).reshape(-1)[:10]
    key = "mocap_framerate" if "mocap_framerate" in data else "mocap_frame_rate"
    fps = _finite(data, key, p.name).reshape(-1) if key in data else np.array([30.0])
    if fps.size != 1 or not 0 < float(fps[0]) <= 1000:
        raise InputError(
            f"{p.name}: '{key}' must be one frame rate in (0, 1000] fps; got {fps[:3].tolist()}."
        )
    poses, note = smpl_pose_columns(poses, p.name)
    notes = [note] if note else []
    if "up" in data:
        up = _text(data, "up", "y", p.name).lower()
        if up not in ("y", "z"):
            raise InputError(f"{p.name}: 'up' is '{up}'; expected 'y' or 'z'.")
    else:
        up, along = detect_pose_up(poses)
        notes.append(
            f"no 'up' key: the body's up axis points along {up.upper()} ({along:.2f}) over the take, "
            f"read as {up.upper()} up" + (" (as AMASS stores it)" if up == "z" else "")
        )
    return dict(
        poses=poses,
        betas=betas,
        trans=trans,
        fps=float(fps[0]),
        gender=_text(data, "gender", "neutral", p.name),
        up=up,
        frame_start=_frame_start(data.get("frame_start"), p.name),
        notes=notes,
    )


def _frame_start(value, name: str):
    """The file's first frame number (LSMPLify's exports record it), or None when it has none."""
    if value is None:
        return None
    v = np.asarray(value)
    if v.shape != () or v.dtype.kind not in "iu" or abs(int(v)) > 1_000_000_000:
        raise InputError(
            f"{name}: 'frame_start' must be one whole frame number, got {v.dtype} {v.shape}."
        )
    return int(v)


def _finite(data: dict, key: str, name: str) -> np.ndarray:
    arr = data[key]
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{name}: '{key}' is {arr.dtype}, not numbers.")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise InputError(
            f"{name}: '{key}' holds NaN or infinite values (or numbers beyond float32); "
            "the file is damaged. Export it again."
        )
    return arr


def _text(data: dict, key: str, default: str, name: str) -> str:
    if key not in data:
        return default
    arr = data[key]
    if arr.dtype.kind != "U" or arr.size != 1 or len(str(arr.reshape(-1)[0])) > 100:
        raise InputError(f"{name}: '{key}' must be one short text value.")
    return str(arr.reshape(-1)[0])
