"""The ground and the feet on it: the solve's ground (found or given) shown as a plane under the
rig's motion, and the source's foot contacts as animated custom properties of the rig.

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
CONTACT_PROPS = ("lsmplify_contact_left", "lsmplify_contact_right")  # on the rig, keyed 0/1


def contact_properties(contacts) -> list:
    """The source's foot contacts (T, 2) bool (left, right) as the rig's stepped 0/1 properties
    (``keyframes.AnimatedProperty``); none when the solve found none."""
    from .keyframes import AnimatedProperty

    if contacts is None:
        return []
    c = np.asarray(contacts, dtype=np.float64)
    return [
        AnimatedProperty(
            name,
            c[:, i],
            f"1 while the {side} foot of the source is on the ground (the feet are planted "
            "there when Lock Feet is on), else 0",
            stepped=True,
            minimum=0.0,
        )
        for i, (name, side) in enumerate(zip(CONTACT_PROPS, ("left", "right"), strict=True))
    ]


def action_contacts(rig_obj, frame_start: int, frames: int):
    """(T, 2) bool contacts keyed on the rig's current action over ``frames`` frames from
    ``frame_start`` (what a Refine carries into its new action), or None when it has none."""
    from .keyframes import action_fcurves, sample_fcurve

    anim = rig_obj.animation_data
    if anim is None or anim.action is None:
        return None
    curves = {
        fc.data_path: fc for fc in action_fcurves(anim.action, getattr(anim, "action_slot", None))
    }
    paths = [f'["{p}"]' for p in CONTACT_PROPS]
    if not all(p in curves for p in paths):
        return None
    at = np.arange(frame_start, frame_start + frames, dtype=np.float64)
    return np.stack([sample_fcurve(curves[p], at) for p in paths], -1) > 0.5


def feet_summary(solution) -> str:
    """The Results panel's line on the feet: contact frames per foot, the ground, and whether
    the feet were planted (the core's note says so)."""
    if solution.contacts is None or not np.isfinite(solution.ground_height):
        return ""
    left, right = (int(n) for n in np.asarray(solution.contacts).sum(0))
    planted = any(n.startswith("feet:") for n in solution.notes)
    return (
        f"Feet on the ground: left {left}, right {right} of {len(solution.contacts)} frames"
        f"{' (planted)' if planted else ''}; ground at {solution.ground_height:.2f} m"
    )


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
