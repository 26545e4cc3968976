"""The rotation maths lives in ``core.model.rotations``; this name keeps older imports working."""

from .model.rotations import (  # noqa: F401
    axis_angle_to_matrix,
    axis_angle_to_quaternion,
    geodesic_angle,
    kabsch,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    matrix_to_rotation_6d,
    normalize,
    quaternion_to_axis_angle,
    quaternion_to_matrix,
    rotation_6d_to_matrix,
    skew,
    swing_rotation,
)
