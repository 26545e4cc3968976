"""SMPL parameters as an AMASS-style .npz (poses, betas, trans, mocap_framerate, gender).

Coordinates are SMPL's own: Y up, metres. Extra keys record how the fit was made.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from ..errors import InputError


def write_smpl_npz(path: str | os.PathLike, poses: np.ndarray, betas: np.ndarray, trans: np.ndarray,
                   fps: float, gender: str = "neutral", **extra) -> Path:
    p = Path(path)
    if p.suffix.lower() != ".npz":
        p = p.with_suffix(".npz")
    p.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray | np.generic] = dict(poses=np.asarray(poses, np.float32), betas=np.asarray(betas, np.float32),
                  trans=np.asarray(trans, np.float32), mocap_framerate=np.float32(fps),
                  gender=np.array(gender), up=np.array("y"))
    for k, v in extra.items():
        arrays[k] = np.asarray(v)
    tmp = p.with_name(p.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, p)  # never leave a half-written file where the user's was
    return p


def read_smpl_npz(path: str | os.PathLike) -> dict:
    """Read an AMASS/LSMPLify SMPL-parameter .npz: poses (T, 72+), betas, trans, fps, gender."""
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"{p.name}: not a readable .npz ({exc}).") from None
    if "poses" not in data:
        raise InputError(f"{p.name}: no 'poses' array; expected an AMASS-style SMPL .npz "
                         "(poses, betas, trans, mocap_framerate).")
    poses = np.asarray(data["poses"], np.float32)
    if poses.ndim != 2 or poses.shape[1] < 72:
        raise InputError(f"{p.name}: 'poses' has shape {poses.shape}; expected (frames, 72) or more.")
    t = poses.shape[0]
    trans = np.asarray(data.get("trans", np.zeros((t, 3))), np.float32)
    if trans.shape != (t, 3):
        raise InputError(f"{p.name}: 'trans' has shape {trans.shape}; expected ({t}, 3).")
    betas = np.asarray(data.get("betas", np.zeros(10)), np.float32).reshape(-1)[:10]
    fps = float(data.get("mocap_framerate", data.get("mocap_frame_rate", 30.0)))
    return dict(poses=poses[:, :72], betas=betas, trans=trans, fps=fps,
                gender=str(data.get("gender", "neutral")), up=str(data.get("up", "y")))
