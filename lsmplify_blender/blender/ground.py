"""The ground the solve found (or was given), shown as a plane under the rig's motion.

The plane follows the rig through a Child Of constraint, in the rig's own coordinates (SMPL's
metres, Z up), so a Match Source scale or a moved rig carries it along; it is not one of the
rig's children, so exports of the rig and its meshes leave it out. It is drawn as a wire
outline, never rendered, and there is one per rig (a new solve on the rig moves it to the new
ground).
"""

from __future__ import annotations

import bpy
import numpy as np

GROUND_TAG = "lsmplify_ground"  # on the plane object: the ground height (SMPL Y, metres)
GROUND_HEIGHT_PROP = "lsmplify_ground_height"  # on the rig: the ground of its last solve
MARGIN_M = 1.0  # the plane reaches this far past the pelvis's path on every side


def ground_plane(rig_obj):
    """The rig's ground plane object, or None."""
    return next(
        (
            o
            for o in bpy.data.objects
            if GROUND_TAG in o
            and any(c.target == rig_obj for c in o.constraints if c.type == "CHILD_OF")
        ),
        None,
    )


def plane_corners(trans: np.ndarray, pelvis_rest: np.ndarray, height: float) -> np.ndarray:
    """(4, 3) Blender corners of the plane under the pelvis's path (SMPL trans (T, 3)): at SMPL
    height ``height`` (Blender z), the path's ground extent plus MARGIN_M on each side."""
    from .rig import smpl_to_blender

    path = smpl_to_blender(pelvis_rest + trans)  # (T, 3) Blender coordinates
    lo, hi = path[:, :2].min(0) - MARGIN_M, path[:, :2].max(0) + MARGIN_M
    return np.array(
        [
            [lo[0], lo[1], height],
            [hi[0], lo[1], height],
            [hi[0], hi[1], height],
            [lo[0], hi[1], height],
        ]
    )


def show_ground(rig_obj, height: float, trans, made: list) -> object:
    """Put the rig's ground plane at SMPL height ``height`` under the motion ``trans`` (T, 3):
    a new plane (appended with its mesh to ``made``) or the rig's plane moved there."""
    from .rig_style import pelvis_rest_smpl

    corners = plane_corners(np.asarray(trans, np.float64), pelvis_rest_smpl(rig_obj), float(height))
    plane = ground_plane(rig_obj)
    if plane is None:
        mesh = bpy.data.meshes.new(f"{rig_obj.name}_ground")
        made.append(mesh)
        mesh.from_pydata([tuple(c) for c in corners], [], [(0, 1, 2, 3)])
        plane = bpy.data.objects.new(f"{rig_obj.name}_ground", mesh)
        made.append(plane)
        for coll in rig_obj.users_collection:
            coll.objects.link(plane)
        follow = plane.constraints.new("CHILD_OF")
        follow.target = rig_obj
        follow.inverse_matrix.identity()  # the plane's coordinates are the rig's
        plane.display_type = "WIRE"
        plane.hide_render = True
        plane.hide_select = True
    else:
        plane.data.vertices.foreach_set("co", corners.astype(np.float32).ravel())
        plane.data.update()
    plane[GROUND_TAG] = float(height)
    rig_obj[GROUND_HEIGHT_PROP] = float(height)
    return plane
