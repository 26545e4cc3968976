"""A quick Workbench preview of the SMPL meshes and the source keypoints, rendered to PNG files.

Everything the preview makes (a camera, marker spheres) is removed afterwards and every
render setting it changes is restored: the scene is left as it was.
"""
from __future__ import annotations

import os

import bpy
import numpy as np

from ..core.errors import InputError
from .scene_writing import remove_ids

MARKER_RADIUS_M = 0.025
MESH_COLOUR = (0.75, 0.75, 0.78, 1.0)
MARKER_COLOUR = (1.0, 0.25, 0.1, 1.0)


def preview_frames(fs: int, fe: int, max_frames: int) -> list[int]:
    """fs..fe, or ``max_frames`` of them spread evenly (0: every frame)."""
    frames = list(range(fs, fe + 1))
    if max_frames and len(frames) > max_frames:
        frames = sorted(set(np.linspace(fs, fe, max_frames).round().astype(int).tolist()))
    return frames


def preview_meshes(scene) -> list:
    return [o for o in scene.objects if o.type == "MESH" and o.get("lsmplify_mesh") and o.visible_get()]


def preview_folder(directory: str) -> str:
    """The preview's Folder setting as an absolute path. A '//' folder is relative to the
    .blend file, so an unsaved file has none (Blender would resolve it against the process's
    working directory): refused."""
    if not directory:
        raise InputError("Choose a Folder for the preview images.")
    if directory.startswith("//") and not bpy.data.filepath:
        raise InputError(f"The Folder '{directory}' is relative to the .blend file, which is not saved yet: save "
                         "the file first or choose an absolute Folder.")
    return os.path.abspath(bpy.path.abspath(directory))


def render_preview(context, folder: str, frames, empties, resolution: int = 320) -> list[str]:
    """Render ``frames`` of the visible LSMPLify meshes and ``empties`` (as small spheres)
    into ``folder/preview_NNNNN.png`` (an absolute path, see ``preview_folder``); returns
    the paths written."""
    scene = context.scene
    if not folder or not os.path.isabs(folder):
        raise InputError(f"The preview folder '{folder}' is not an absolute path; choose a Folder.")
    meshes = preview_meshes(scene)
    if not meshes and not empties:
        raise InputError("Nothing to preview: no visible LSMPLify mesh or keypoint empties.")
    os.makedirs(folder, exist_ok=True)
    made = []
    saved = RenderState(scene)
    written = []
    try:
        markers = make_markers(scene, empties, made)
        cam = make_camera(context, meshes, empties, frames, made)
        r = scene.render
        r.engine = "BLENDER_WORKBENCH"
        r.resolution_x, r.resolution_y, r.resolution_percentage = resolution, max(16, resolution * 3 // 4), 100
        r.image_settings.file_format = "PNG"
        r.film_transparent = False
        scene.display.shading.light = "STUDIO"
        scene.display.shading.color_type = "OBJECT"
        scene.camera = cam
        for o in meshes:
            o.color = MESH_COLOUR
        for m in markers:
            m.color = MARKER_COLOUR
        for f in frames:
            scene.frame_set(f)
            r.filepath = os.path.join(folder, f"preview_{f:05d}.png")
            bpy.ops.render.render(write_still=True, scene=scene.name)
            written.append(r.filepath)
    finally:
        saved.restore(scene)
        remove_ids(made)
    return written


def make_markers(scene, empties, made) -> list:
    """Empties do not render: a small sphere follows each one while rendering."""
    if not empties:
        return []
    import bmesh
    mesh = bpy.data.meshes.new("lsmplify_marker")
    made.append(mesh)
    bm = bmesh.new()
    bmesh.ops.create_uvsphere(bm, u_segments=8, v_segments=6, radius=MARKER_RADIUS_M)
    bm.to_mesh(mesh)
    bm.free()
    coll = bpy.data.collections.new("lsmplify_preview_markers")
    made.append(coll)
    scene.collection.children.link(coll)
    out = []
    for e in empties:
        m = bpy.data.objects.new(f"marker_{e.name}", mesh)
        made.append(m)
        coll.objects.link(m)
        m.parent = e
        m.matrix_parent_inverse.identity()
        s = e.matrix_world.to_scale()
        m.scale = tuple(1.0 / max(abs(c), 1e-6) for c in s)
        out.append(m)
    return out


def make_camera(context, meshes, empties, frames, made):
    """An orthographic front camera (-Y, looking +Y) framing everything over the frames."""
    scene = context.scene
    pts = []
    step = max(1, len(frames) // 20)
    current = scene.frame_current
    deps = context.evaluated_depsgraph_get()
    for f in frames[::step] + [frames[-1]]:
        scene.frame_set(f)
        for o in meshes:
            ev = o.evaluated_get(deps)
            mw = np.array(ev.matrix_world)
            bb = np.array([tuple(c) for c in ev.bound_box])
            pts.append(bb @ mw[:3, :3].T + mw[:3, 3])
        if empties:
            pts.append(np.array([tuple(e.matrix_world.translation) for e in empties]))
    scene.frame_set(current)
    p = np.concatenate(pts, 0)
    lo, hi = p.min(0), p.max(0)
    centre = (lo + hi) / 2
    size = max(hi[0] - lo[0], (hi[2] - lo[2]) * 4 / 3) * 1.15 + 0.1
    cam_data = bpy.data.cameras.new("lsmplify_preview_camera")
    made.append(cam_data)
    cam_data.type = "ORTHO"
    cam_data.ortho_scale = float(size)
    cam_data.clip_end = 1000.0
    cam = bpy.data.objects.new("lsmplify_preview_camera", cam_data)
    made.append(cam)
    scene.collection.objects.link(cam)
    cam.location = (float(centre[0]), float(lo[1] - 10.0), float(centre[2]))
    cam.rotation_euler = (np.pi / 2, 0.0, 0.0)  # looks along +Y, Z up
    return cam


class RenderState:
    """Render settings the preview changes, restored afterwards."""

    def __init__(self, scene):
        r = scene.render
        self.values = dict(engine=r.engine, resolution_x=r.resolution_x, resolution_y=r.resolution_y,
                           resolution_percentage=r.resolution_percentage, filepath=r.filepath,
                           film_transparent=r.film_transparent)
        self.file_format = r.image_settings.file_format
        self.light = scene.display.shading.light
        self.color_type = scene.display.shading.color_type
        self.camera = scene.camera
        self.frame = (scene.frame_current, scene.frame_subframe)
        self.colors = {o.name: tuple(o.color) for o in scene.objects}

    def restore(self, scene):
        r = scene.render
        for k, v in self.values.items():
            setattr(r, k, v)
        r.image_settings.file_format = self.file_format
        scene.display.shading.light = self.light
        scene.display.shading.color_type = self.color_type
        scene.camera = self.camera
        for name, c in self.colors.items():
            o = scene.objects.get(name)
            if o is not None:
                o.color = c
        scene.frame_set(self.frame[0], subframe=self.frame[1])
