"""The two up-axis conventions LSMPLify meets, and the one rotation between them.

SMPL (and the core) is Y up, facing +Z, +X the subject's left. Blender, most mocap
exports (Z-up BVH/C3D, AMASS) and Anny are Z up. The change of axes is the proper rotation
of +90 degrees about X,

    Y-up -> Z-up:  (x, y, z) -> (x, -z, y),   Z-up -> Y-up:  (x, y, z) -> (x, z, -y),

so X (the subject's left) is kept and handedness is preserved: rotations change by
conjugation, R_z = C R_y C^T, and a root rotation composed after the world turn is C R.
"""

from __future__ import annotations

import numpy as np

# column-vector matrices: p_zup = Y_UP_TO_Z_UP @ p_yup
Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
Z_UP_TO_Y_UP = Y_UP_TO_Z_UP.T.copy()


def _as_float(points) -> np.ndarray:
    p = np.asarray(points)
    return p if p.dtype.kind == "f" else p.astype(np.float64)


def y_up_to_z_up(points) -> np.ndarray:
    """(..., 3) Y-up points (SMPL) -> Z-up (Blender): (x, y, z) -> (x, -z, y), dtype kept."""
    p = _as_float(points)
    return np.stack([p[..., 0], -p[..., 2], p[..., 1]], -1)


def z_up_to_y_up(points) -> np.ndarray:
    """(..., 3) Z-up points (Blender, Z-up mocap) -> Y-up (SMPL): (x, y, z) -> (x, z, -y), dtype kept."""
    p = _as_float(points)
    return np.stack([p[..., 0], p[..., 2], -p[..., 1]], -1)
