"""Keypoint sequences as read from a file, before and after normalisation.

Readers (``formats``) return a ``KeypointSequence`` holding what the file said:
positions in the file's own units and axes, joint names if it had any, and any metadata
it declared. ``prepare`` (in ``prepare.py``) then resolves the layout, units and up axis
and gives the solver metres, Y up, in the layout's keypoint order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Metres per unit for the length units we accept.
UNIT_SCALES = {"m": 1.0, "cm": 0.01, "mm": 0.001, "inch": 0.0254, "cmu": 0.05644}


@dataclass
class KeypointSequence:
    positions: np.ndarray  # (T, J, 3) float; NaN marks a missing keypoint
    names: list[str] | None = None  # J joint names, when the file has them
    confidence: np.ndarray | None = None  # (T, J) in [0, 1]; 0 = missing
    fps: float | None = None
    units: str | None = None  # key of UNIT_SCALES when the file declares it
    up: str | None = None  # 'y' or 'z' when the file declares it
    layout: str | None = None  # layout name when the file declares it
    frames: np.ndarray | None = None  # (T,) frame numbers when the file has them
    source: str = ""
    notes: list[str] = field(default_factory=list)  # what was detected, for the report
    # formats that carry bone orientations (BVH, ASF/AMC): each joint's world rotation (T, J, 3, 3)
    # relative to the file's own rest pose (identity at rest; an end point carries its bone's), and
    # the rest positions (J, 3) in the file's units and axes, for the rest calibration onto SMPL
    rotations: np.ndarray | None = None
    rest_positions: np.ndarray | None = None

    @property
    def num_frames(self) -> int:
        return int(self.positions.shape[0])

    @property
    def num_joints(self) -> int:
        return int(self.positions.shape[1])
