"""Keypoint motion shown in the scene: one animated empty per keypoint, in a new collection."""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from ..core.errors import InputError
from .scene_writing import remove_ids
from .sources import KEYPOINT_PROP

EMPTY_SIZE_M = 0.025  # display radius of a keypoint empty, metres


def create_keypoint_empties(
    context, prepared, start_frame: int, name: str, made=None, progress=None
):
    """One empty per seen keypoint in a new collection ``"{name} keypoints"`` linked to the
    scene, each keyed in bulk at the frames it is seen (Blender Z up, scene units); all or
    nothing. Returns the collection; what it made is also appended to ``made`` when given
    (a caller's ``SceneChange.made``). ``progress(fraction)`` hears each keypoint done."""
    from .keyframes import write_location_action
    from .rig import smpl_to_blender

    scene = context.scene
    scale = float(scene.unit_settings.scale_length or 1.0)
    pos = smpl_to_blender(prepared.positions) / scale  # (T, K, 3)
    seen = prepared.weight > 0
    frames_all = start_frame + np.arange(prepared.num_frames)
    made = [] if made is None else made
    try:
        coll = bpy.data.collections.new(f"{name} keypoints")
        made.append(coll)
        for k, kp in enumerate(prepared.layout.keypoints):
            ok = seen[:, k]
            if not ok.any():
                continue
            obj = bpy.data.objects.new(kp, None)
            made.append(obj)
            obj.empty_display_type = "SPHERE"
            obj.empty_display_size = EMPTY_SIZE_M / scale
            obj[KEYPOINT_PROP] = kp
            coll.objects.link(obj)
            obj.location = tuple(pos[int(np.argmax(ok)), k])
            made.append(write_location_action(obj, frames_all[ok], pos[ok, k], f"{kp}_keypoint"))
            if progress is not None:
                progress((k + 1) / prepared.layout.num_keypoints)
        scene.collection.children.link(coll)
    except BaseException:
        remove_ids(made)
        raise
    return coll


def keypoint_empties(context, settings) -> list:
    """The empties that stand for the scene's source keypoints: the selection for an Empties
    source, else the visible empties of the last import's collection (when it is in the scene)."""
    from .sources import selected_empties

    if settings.source_type == "EMPTIES":
        return selected_empties(context)
    coll = settings.empties_collection
    if coll is not None and coll.name in {
        c.name for c in context.scene.collection.children_recursive
    }:
        return [o for o in coll.all_objects if o.type == "EMPTY" and o.visible_get()]
    return []


def keypoint_targets(context, settings) -> list:
    """What Render Preview marks as the source: ``keypoint_empties``, or for an Armature
    source its bones, as (armature, bone name) pairs (a marker follows each bone's head)."""
    from .sources import source_armature

    if settings.source_type == "ARMATURE":
        arm = source_armature(context, settings)
        if arm is not None and arm.visible_get():
            return [(arm, b.name) for b in arm.pose.bones]
        return []
    return keypoint_empties(context, settings)


def import_keypoint_file(
    context,
    filepath: str,
    model,
    layout="AUTO",
    units="AUTO",
    up="AUTO",
    fps=0.0,
    create_empties: bool = True,
    update_scene: bool = True,
    asf_path: str = "",
    progress=None,
):
    """Read and prepare a keypoint file, make it the scene's File source (playing from the
    scene's first frame) and optionally show it as animated empties; returns the prepared
    keypoints. All or nothing: when any step fails the scene is left exactly as it was.
    ``progress(fraction, what)``, when given, hears each step: the file read, prepared, and
    each keypoint's empty keyed (``IMPORT_STEPS`` share the bar)."""
    from .scene_writing import SceneChange, check_frame_rate, safe_stem, set_scene_timing
    from .sources import joint_map, prepared_file, set_detected

    def report(fraction: float, what: str) -> None:
        if progress is not None:
            progress(fraction, what)

    path = bpy.path.abspath(filepath)
    report(0.0, "reading")
    # read and prepared once: a Solve of this File source is served the same (sources.prepared_file)
    prepared = prepared_file(
        path,
        model,
        layout,
        units,
        up,
        fps,
        asf_path,
        joint_map(context.scene.lsmplify),
        progress=lambda what: report(IMPORT_STEPS["read"], what),
    )
    check_frame_rate(
        prepared.fps,
        f"{Path(path).name}",
        "Set FPS in the Import Keypoints options to the capture's real frame rate.",
    )
    scene = context.scene
    start = scene.frame_start
    done = IMPORT_STEPS["read"] + IMPORT_STEPS["prepare"]
    report(done, "keying the keypoint empties")
    with SceneChange(scene) as change:
        coll = (
            create_keypoint_empties(
                context,
                prepared,
                start,
                safe_stem(path),
                made=change.made,
                progress=lambda f: report(done + (1 - done) * f, "keying the keypoint empties"),
            )
            if create_empties
            else None
        )
        s = scene.lsmplify
        s.source_type = "FILE"
        s.filepath = filepath
        s.layout, s.units, s.up_axis, s.fps, s.asf_path = layout, units, up, fps, asf_path
        s.file_frame_start = start
        if coll is not None:
            s.empties_collection = coll
        set_detected(s, prepared)
        if update_scene:
            set_scene_timing(scene, start, prepared.num_frames, prepared.fps)
    report(1.0, "done")
    return prepared


# shares of Import Keypoints' progress bar, as the steps took on 01_01.bvh (2,752 frames, 31
# joints): reading 0.13 s, preparing 0.04 s, keying the empties 0.06 s
IMPORT_STEPS = {"read": 0.55, "prepare": 0.2}


# share of an FBX import's bar taken by Blender's importer (01_01_cmu.fbx: 2.3 s of 8.5 s)
FBX_IMPORTER_SHARE = 0.25

# data-block collections an importer may add to; what it added is removed again on failure
IMPORTED_KINDS = (
    "objects",
    "armatures",
    "meshes",
    "actions",
    "collections",
    "materials",
    "images",
    "cameras",
    "lights",
)


def import_fbx_armature(
    context,
    filepath: str,
    model,
    layout="AUTO",
    units="AUTO",
    update_scene: bool = True,
    progress=None,
):
    """An FBX take through Blender's FBX importer, made the scene's Armature source (its
    action's frames, scene range and fps set to them when ``update_scene``); returns
    (armature, prepared keypoints). All or nothing: a file that is not a readable human
    armature leaves the scene exactly as it was. ``progress(fraction, what)`` hears the
    importer's end and each block of frames of the armature read (the slow part: 6 s for
    2,752 frames)."""
    from .scene_writing import SceneChange, set_scene_timing
    from .sources import action_frame_range, gather_source

    if "IMPORT_SCENE_OT_fbx" not in dir(bpy.types):
        raise InputError("Blender's FBX importer is not enabled: enable the 'FBX format' add-on.")
    path = bpy.path.abspath(filepath)
    scene = context.scene
    before = {k: set(getattr(bpy.data, k)) for k in IMPORTED_KINDS}
    with SceneChange(scene) as change:
        try:
            result = bpy.ops.import_scene.fbx(filepath=path)
        finally:  # whatever the importer made, even when it failed half-way
            change.made += [
                i for k in IMPORTED_KINDS for i in getattr(bpy.data, k) if i not in before[k]
            ]
        arms = [o for o in change.made if isinstance(o, bpy.types.Object) and o.type == "ARMATURE"]
        if "FINISHED" not in result or not arms:
            raise InputError(
                f"'{Path(path).name}' holds no armature that Blender's FBX importer could read."
            )
        arm = max(arms, key=lambda o: len(o.data.bones))
        found = action_frame_range([arm])
        if found is None:
            raise InputError(f"The armature '{arm.name}' in '{Path(path).name}' has no animation.")
        s = scene.lsmplify
        s.source_type, s.source_armature, s.use_source_range = "ARMATURE", arm, True
        s.layout, s.units = layout, units
        if update_scene:
            fps = scene.render.fps / scene.render.fps_base  # the importer sets the file's rate
            set_scene_timing(scene, found[0], found[1] - found[0] + 1, fps)
        if progress is not None:
            progress(FBX_IMPORTER_SHARE, "reading the armature's frames")
        prepared, _ = gather_source(  # a non-human armature is refused here
            context,
            s,
            model,
            None
            if progress is None
            else lambda f: progress(
                FBX_IMPORTER_SHARE + (1 - FBX_IMPORTER_SHARE) * f, "reading the armature's frames"
            ),
        )
    return arm, prepared
