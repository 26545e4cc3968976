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
FLOOR_COLOUR = (0.45, 0.47, 0.5, 1.0)
BACKGROUND_COLOUR = (0.85, 0.88, 0.92)


def preview_frames(fs: int, fe: int, max_frames: int) -> list[int]:
    """fs..fe, or ``max_frames`` of them spread evenly (0: every frame)."""
    frames = list(range(fs, fe + 1))
    if max_frames and len(frames) > max_frames:
        frames = sorted(set(np.linspace(fs, fe, max_frames).round().astype(int).tolist()))
    return frames


def preview_meshes(scene) -> list:
    return [
        o for o in scene.objects if o.type == "MESH" and o.get("lsmplify_mesh") and o.visible_get()
    ]


def preview_folder(directory: str) -> str:
    """The preview's Folder setting as an absolute path. A '//' folder is relative to the
    .blend file, so an unsaved file has none (Blender would resolve it against the process's
    working directory): refused."""
    if not directory:
        raise InputError("Choose a Folder for the preview images.")
    if directory.startswith("//") and not bpy.data.filepath:
        raise InputError(
            f"The Folder '{directory}' is relative to the .blend file, which is not saved yet: save "
            "the file first or choose an absolute Folder."
        )
    return os.path.abspath(bpy.path.abspath(directory))


def render_preview(
    context,
    folder: str,
    frames,
    targets,
    resolution: int = 320,
    video: bool = False,
    marker_radius: float = MARKER_RADIUS_M,
) -> list[str]:
    """Render ``frames`` of the visible LSMPLify meshes and the source's keypoints (``targets``:
    empties, or (armature, bone) pairs; small spheres of ``marker_radius``) over a floor into
    ``folder/preview_NNNNN.png`` (an absolute path, see ``preview_folder``), and
    with ``video`` every frame from the first to the last of them into an H.264 ``.mp4``
    (Blender's FFmpeg output); returns the paths written."""
    scene = context.scene
    if not folder or not os.path.isabs(folder):
        raise InputError(f"The preview folder '{folder}' is not an absolute path; choose a Folder.")
    meshes = preview_meshes(scene)
    targets = as_targets(targets)
    if not meshes and not targets:
        raise InputError("Nothing to preview: no visible LSMPLify mesh or keypoint empties.")
    if video and not bpy.app.build_options.codec_ffmpeg:
        raise InputError(
            "This Blender has no FFmpeg video output: turn Video off to render PNG frames only."
        )
    os.makedirs(folder, exist_ok=True)
    made = []
    saved = RenderState(scene)
    written = []
    try:
        markers = make_markers(scene, targets, made, marker_radius)
        points = frame_points(context, meshes, targets, frames)
        floor = make_floor(scene, points.min(0), points.max(0), made)
        scene.camera = make_camera(scene, points, made)
        set_preview_look(scene, resolution)
        for o in meshes:
            o.color = MESH_COLOUR
        for m in markers:
            m.color = MARKER_COLOUR
        floor.color = FLOOR_COLOUR
        if scene.world is None:  # no world renders a transparent background
            scene.world = bpy.data.worlds.new("lsmplify_preview_world")
            made.append(scene.world)
        scene.world.color = BACKGROUND_COLOUR
        r = scene.render
        for f in frames:
            scene.frame_set(f)
            r.filepath = os.path.join(folder, f"preview_{f:05d}.png")
            bpy.ops.render.render(write_still=True, scene=scene.name)
            written.append(r.filepath)
        if video:
            written.append(render_video(scene, folder, frames[0], frames[-1]))
    finally:
        saved.restore(scene)
        remove_ids(made)
    return written


def set_preview_look(scene, resolution: int) -> None:
    """Workbench, studio light, object colours, PNG at ``resolution`` x 3/4 of it."""
    r = scene.render
    r.engine = "BLENDER_WORKBENCH"
    r.resolution_x, r.resolution_y, r.resolution_percentage = (
        resolution,
        max(16, resolution * 3 // 4),
        100,
    )
    set_output_format(r.image_settings, "PNG")
    r.film_transparent = False
    scene.display.shading.light = "STUDIO"
    scene.display.shading.color_type = "OBJECT"
    scene.view_settings.view_transform = (
        "Standard"  # the colours as set (AgX would grey the markers)
    )


def set_output_format(image_settings, file_format: str) -> None:
    """A file format; Blender 5 files video under a media type of its own (4.x: only the format)."""
    if "media_type" in image_settings.bl_rna.properties:
        image_settings.media_type = "VIDEO" if file_format == "FFMPEG" else "IMAGE"
    image_settings.file_format = file_format


def render_video(scene, folder: str, first: int, last: int) -> str:
    """Every frame first..last as an H.264 MPEG-4 video in ``folder``; returns its path."""
    import glob

    r = scene.render
    scene.frame_start, scene.frame_end, scene.frame_step = first, last, 1
    set_output_format(r.image_settings, "FFMPEG")
    r.ffmpeg.format, r.ffmpeg.codec = "MPEG4", "H264"
    r.use_file_extension = True
    r.filepath = os.path.join(folder, "preview_")
    bpy.ops.render.render(animation=True, scene=scene.name)
    found = sorted(
        glob.glob(os.path.join(glob.escape(folder), f"preview_{first:04d}-{last:04d}*.mp4"))
    )
    if not found:
        raise InputError(f"Blender's FFmpeg output wrote no video into '{folder}'.")
    return found[-1]


def as_targets(targets) -> list[tuple]:
    """Marker targets as (object, bone name) pairs: an object alone stands for ``(object, "")``."""
    return [t if isinstance(t, tuple) else (t, "") for t in targets]


def target_points(targets) -> np.ndarray:
    """(N, 3) world positions of the targets: an object's origin, or a bone's head."""
    out = []
    for obj, bone in targets:
        mw = obj.matrix_world
        out.append(tuple(mw @ obj.pose.bones[bone].head) if bone else tuple(mw.translation))
    return np.array(out, dtype=np.float64).reshape(-1, 3)


def make_markers(scene, targets, made, radius: float = MARKER_RADIUS_M) -> list:
    """Empties and bones do not render: a small sphere follows each target (a Copy Location
    constraint on the object's origin, or on the bone's head) while rendering."""
    if not targets:
        return []
    import bmesh

    mesh = bpy.data.meshes.new("lsmplify_marker")
    made.append(mesh)
    bm = bmesh.new()
    bmesh.ops.create_uvsphere(bm, u_segments=8, v_segments=6, radius=radius)
    bm.to_mesh(mesh)
    bm.free()
    coll = bpy.data.collections.new("lsmplify_preview_markers")
    made.append(coll)
    scene.collection.children.link(coll)
    out = []
    for obj, bone in targets:
        m = bpy.data.objects.new(
            f"marker_{obj.name}_{bone}" if bone else f"marker_{obj.name}", mesh
        )
        made.append(m)
        coll.objects.link(m)
        m.show_in_front = True  # drawn over the mesh: a matched rig hides its source's joints
        follow = m.constraints.new("COPY_LOCATION")
        follow.target = obj
        if bone:
            follow.subtarget, follow.head_tail = bone, 0.0
        out.append(m)
    return out


def frame_points(context, meshes, targets, frames) -> np.ndarray:
    """(N, 3) world points of everything to show over the frames: the meshes' bounding-box
    corners and the marker targets, at 20 of the frames at most."""
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
        if targets:
            pts.append(target_points(targets))
    scene.frame_set(current)
    return np.concatenate(pts, 0)


CAMERA_PITCH_DEG = 12.0  # below the horizon: the floor shows as a band under the feet


def make_camera(scene, points: np.ndarray, made):
    """An orthographic camera from the front (-Y), looking down by CAMERA_PITCH_DEG, framing
    ``points`` (measured along the camera's own right and up axes, so the tilt crops nothing)."""
    pitch = np.radians(CAMERA_PITCH_DEG)
    view = np.array([0.0, np.cos(pitch), -np.sin(pitch)])  # the looking direction
    up = np.array([0.0, np.sin(pitch), np.cos(pitch)])
    right = np.array([1.0, 0.0, 0.0])
    u, v, d = points @ right, points @ up, points @ view
    width, height = float(u.max() - u.min()), float(v.max() - v.min())
    size = max(width, height * 4 / 3) * 1.15 + 0.1  # the frame is 4:3; the scale is its width
    centre = right * (u.max() + u.min()) / 2 + up * (v.max() + v.min()) / 2
    cam_data = bpy.data.cameras.new("lsmplify_preview_camera")
    made.append(cam_data)
    cam_data.type = "ORTHO"
    cam_data.ortho_scale = size
    distance = 10.0 * max(1.0, size)
    cam_data.clip_end = float(d.max() - d.min()) + 2 * distance
    cam = bpy.data.objects.new("lsmplify_preview_camera", cam_data)
    made.append(cam)
    scene.collection.objects.link(cam)
    cam.location = tuple(float(c) for c in centre + view * (d.min() - distance))
    cam.rotation_euler = (
        np.pi / 2 - pitch,
        0.0,
        0.0,
    )  # +90 deg about X looks along +Y; then tilt down
    return cam


def make_floor(scene, lo, hi, made):
    """A floor plane at the lowest point shown, wider and deeper than what stands on it."""
    size = float(max(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]))
    x0, x1 = lo[0] - size, hi[0] + size
    y0, y1 = lo[1] - size, hi[1] + size
    z = float(lo[2])
    mesh = bpy.data.meshes.new("lsmplify_preview_floor")
    made.append(mesh)
    mesh.from_pydata([(x0, y0, z), (x1, y0, z), (x1, y1, z), (x0, y1, z)], [], [(0, 1, 2, 3)])
    floor = bpy.data.objects.new("lsmplify_preview_floor", mesh)
    made.append(floor)
    scene.collection.objects.link(floor)
    return floor


class RenderState:
    """Render settings the preview changes, restored afterwards."""

    def __init__(self, scene):
        r = scene.render
        self.values = dict(
            engine=r.engine,
            resolution_x=r.resolution_x,
            resolution_y=r.resolution_y,
            resolution_percentage=r.resolution_percentage,
            filepath=r.filepath,
            film_transparent=r.film_transparent,
            use_file_extension=r.use_file_extension,
        )
        self.range = (scene.frame_start, scene.frame_end, scene.frame_step)
        self.ffmpeg = (r.ffmpeg.format, r.ffmpeg.codec)
        self.file_format = r.image_settings.file_format
        self.light = scene.display.shading.light
        self.view_transform = scene.view_settings.view_transform
        self.color_type = scene.display.shading.color_type
        self.camera = scene.camera
        self.world = scene.world
        self.world_colour = tuple(scene.world.color) if scene.world is not None else None
        self.frame = (scene.frame_current, scene.frame_subframe)
        self.colors = {o.name: tuple(o.color) for o in scene.objects}

    def restore(self, scene):
        r = scene.render
        for k, v in self.values.items():
            setattr(r, k, v)
        scene.frame_start, scene.frame_end, scene.frame_step = self.range
        set_output_format(r.image_settings, self.file_format)
        r.ffmpeg.format, r.ffmpeg.codec = self.ffmpeg
        scene.display.shading.light = self.light
        scene.view_settings.view_transform = self.view_transform
        scene.display.shading.color_type = self.color_type
        scene.camera = self.camera
        scene.world = self.world
        if self.world is not None:
            self.world.color = self.world_colour
        for name, c in self.colors.items():
            o = scene.objects.get(name)
            if o is not None:
                o.color = c
        scene.frame_set(self.frame[0], subframe=self.frame[1])
