"""Keypoint sources read from the scene or a file, as the core's ``PreparedKeypoints``.

A source is the scene settings' File (a keypoint file), Empties (the selected animated
empties) or Armature (an animated armature's bone heads). Reading touches no scene data
except the current frame, which is restored.
"""

from __future__ import annotations

import re

import bpy
import numpy as np

from ..core.errors import InputError

# The panel's Smoothing 0..1 spans Gaussian sigmas up to this: at 50 ms motion below ~2.7 Hz
# passes (a Gaussian's -3 dB point is sqrt(ln 2) / (2 pi sigma) = 0.13 / sigma) and
# capture jitter above it is removed.
SMOOTHING_MAX_SIGMA_S = 0.05
KEYPOINT_PROP = "lsmplify_keypoint"  # on empties made by the importer: the keypoint they stand for
_SUFFIX = re.compile(r"\.\d{3,}$")  # Blender's unique-name suffix: "pelvis.001"


def scene_fps(scene) -> float:
    return float(scene.render.fps) / float(scene.render.fps_base or 1.0)


def frame_range(scene, settings) -> tuple[int, int]:
    if settings.use_scene_range:
        fs, fe = scene.frame_start, scene.frame_end
    else:
        fs, fe = settings.frame_start, settings.frame_end
    if fe < fs:
        raise InputError(f"The frame range {fs}..{fe} is empty: the end comes before the start.")
    return int(fs), int(fe)


def action_frame_range(objs):
    """The frames the objects' actions cover together, (first, last) in whole frames, or None
    when none of them is animated."""
    import math

    ranges = [
        tuple(o.animation_data.action.frame_range)
        for o in objs
        if o.animation_data is not None and o.animation_data.action is not None
    ]
    if not ranges:
        return None
    return math.floor(min(r[0] for r in ranges)), math.ceil(max(r[1] for r in ranges))


def source_objects(context, settings) -> list:
    """The scene objects an Armature or Empties source reads (empty for a File source)."""
    if settings.source_type == "EMPTIES":
        return selected_empties(context)
    if settings.source_type == "ARMATURE":
        arm = source_armature(context, settings)
        return [arm] if arm is not None else []
    return []


def solve_range(context, settings) -> tuple[int, int, str]:
    """The frames a solve of the current source covers: (first, last, where they come from).

    Armature and Empties sources use their actions' frame range when Source's Frames is on
    (Blender's importers leave the scene at 1..250 whatever the take's length); otherwise,
    and for a File source, the scene range or the custom range (a File source is then cut
    to the frames the file has).
    """
    if settings.source_type != "FILE" and settings.use_source_range:
        found = action_frame_range(source_objects(context, settings))
        if found is not None:
            what = (
                "the armature's action"
                if settings.source_type == "ARMATURE"
                else "the empties' actions"
            )
            return found[0], found[1], what
    fs, fe = frame_range(context.scene, settings)
    return fs, fe, "the scene range" if settings.use_scene_range else "the custom range"


def solve_range_text(context, settings) -> str:
    """What the panel shows: the frames Solve will cover and where that range comes from."""
    try:
        fs, fe, what = solve_range(context, settings)
    except InputError as exc:
        return str(exc)
    if settings.source_type == "FILE" and settings.detected_frames.isdigit():
        first, n = settings.file_frame_start, int(settings.detected_frames)
        lo, hi = max(fs, first), min(fe, first + n - 1)
        if hi < lo:
            return f"No frames: the file plays at {first}-{first + n - 1}, {what} is {fs}-{fe}"
        fs, fe, what = lo, hi, f"{what} within the file's frames"
    return f"Solves frames {fs}-{fe} ({fe - fs + 1} frames, {what})"


def strip_suffix(name: str) -> str:
    return _SUFFIX.sub("", name)


def unsuffixed_names(names: list[str]) -> list[str]:
    """Names without Blender's ``.001`` suffixes (a second import of a rig), unless that makes
    two of them the same (``Bone``, ``Bone.001``): then the names as they are."""
    stripped = [strip_suffix(n) for n in names]
    return stripped if len(set(stripped)) == len(stripped) else list(names)


JOINT_MAP_PROP = "lsmplify_joint_map"  # on a source armature: its saved joint map (JSON)


def joint_map(settings, source_obj=None) -> dict[str, str]:
    """The panel's joint map (source name -> keypoint name), else the one saved on the source
    armature (``JOINT_MAP_PROP``), else empty."""
    import json

    rows = {r.source: r.keypoint for r in settings.joint_map if r.source and r.keypoint}
    if rows or source_obj is None or JOINT_MAP_PROP not in source_obj:
        return rows
    try:
        saved = json.loads(source_obj[JOINT_MAP_PROP])
    except (TypeError, ValueError):
        raise InputError(
            f"The joint map saved on '{source_obj.name}' is not readable: save it again "
            "from the panel's Joint Map."
        ) from None
    if not isinstance(saved, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in saved.items()
    ):
        raise InputError(
            f"The joint map saved on '{source_obj.name}' is not a list of names: save it again."
        )
    return saved


def mapped_names(names, mapping: dict[str, str]) -> list[str]:
    """``names`` with the joint map's renames applied (unmapped names kept)."""
    return [mapping.get(n, n) for n in names]


def option_value(value: str):
    """A panel enum item (``AUTO``, ``cm``, ``Y``...) as the core's option value."""
    return "auto" if value == "AUTO" else value.lower()


def scene_sequence(positions_blender: np.ndarray, names, scene, what: str):
    """(T, J, 3) Blender Z-up positions in scene units -> KeypointSequence (metres, Z up)."""
    from ..core.keypoints import KeypointSequence

    scale = float(scene.unit_settings.scale_length or 1.0)
    return KeypointSequence(
        positions=positions_blender * scale,
        names=list(names),
        fps=scene_fps(scene),
        up="z",
        source=what,
        notes=[f"source: {what}"],
    )


# frames between two reports of ``sample_frames`` (a frame change costs ~2 ms: the bar moves
# about every 0.1 s; 01_01_cmu.fbx's 2,752 frames take 6 s to read)
SAMPLE_REPORT_FRAMES = 50


def sample_frames(scene, fs: int, fe: int, read, progress=None, frames=None) -> np.ndarray:
    """Call ``read()`` -> (J, 3) at every frame fs..fe (one pass; or at ``frames`` only),
    restoring the current frame. ``progress(fraction)`` hears every SAMPLE_REPORT_FRAMES frames
    read and the end."""
    current, subframe = scene.frame_current, scene.frame_subframe
    at = range(fs, fe + 1) if frames is None else [int(f) for f in frames]
    out = []
    try:
        for i, f in enumerate(at):
            scene.frame_set(f)
            out.append(read())
            if progress is not None and (i + 1) % SAMPLE_REPORT_FRAMES == 0:
                progress((i + 1) / len(at))
        if progress is not None:
            progress(1.0)
    finally:
        scene.frame_set(current, subframe=subframe)
    return np.asarray(out, dtype=np.float64)


def selected_empties(context) -> list:
    """The selected empties, sorted by name (the Empties source)."""
    return sorted((o for o in context.selected_objects if o.type == "EMPTY"), key=lambda o: o.name)


def sample_empties(context, fs: int, fe: int, progress=None):
    objs = selected_empties(context)
    if not objs:
        raise InputError(
            "No empties are selected: select the animated keypoint empties "
            "(one per joint, named after the joints) to use them as the source."
        )
    names = [
        o.get(KEYPOINT_PROP) or n
        for o, n in zip(objs, unsuffixed_names([o.name for o in objs]), strict=True)
    ]
    names = mapped_names(names, joint_map(context.scene.lsmplify))

    def read():
        return [tuple(o.matrix_world.translation) for o in objs]

    pos = sample_frames(context.scene, fs, fe, read, progress)
    return scene_sequence(pos, names, context.scene, f"{len(objs)} selected empties")


def sample_armature(context, arm_obj, fs: int, fe: int, progress=None):
    if arm_obj is None or arm_obj.type != "ARMATURE":
        raise InputError("No source armature: choose one in the panel or make an armature active.")
    bones = list(arm_obj.pose.bones)
    if not bones:
        raise InputError(f"The armature '{arm_obj.name}' has no bones.")
    names = mapped_names(
        unsuffixed_names([b.name for b in bones]), joint_map(context.scene.lsmplify, arm_obj)
    )
    n = len(bones)

    def read():
        heads = np.empty(3 * n, dtype=np.float32)
        arm_obj.pose.bones.foreach_get("head", heads)
        mw = np.array(arm_obj.matrix_world, dtype=np.float64)
        return heads.reshape(n, 3).astype(np.float64) @ mw[:3, :3].T + mw[:3, 3]

    pos = heads_from_keys(context.scene, arm_obj, fs, fe, read)
    if pos is None:
        pos = sample_frames(context.scene, fs, fe, read, progress)
    elif progress is not None:
        progress(1.0)
    return scene_sequence(pos, names, context.scene, f"armature '{arm_obj.name}'")


# frames at which ``heads_from_keys`` is compared with Blender's own evaluation; the heads agree
# within this share of the armature's size (float32 poses in Blender)
HEADS_CHECK_FRAMES = 3
HEADS_TOLERANCE = 1e-5


def heads_from_keys(scene, arm_obj, fs: int, fe: int, read):
    """(T, J, 3) the world bone heads at frames fs..fe from the armature's keys for all frames
    at once (``pose_eval.armature_pose``), or None when the armature is posed by more than its
    keys or the heads differ from ``read()`` (Blender's evaluation) at the first, middle and
    last frames; the current frame is restored."""
    from .pose_eval import armature_pose, object_matrices, rig_curves

    curves = rig_curves(arm_obj, object_motion=True)
    if curves is None or arm_obj.animation_data is None:
        return None
    frames = np.arange(fs, fe + 1, dtype=np.float64)
    local = armature_pose(arm_obj, curves, frames)[..., :3, 3]  # as PoseBone.head: float32
    local = local.astype(np.float32).astype(np.float64)
    mw = object_matrices(arm_obj, curves, frames)  # (T, 4, 4): an FBX take moves its object
    heads = np.einsum("tij,tkj->tki", mw[:, :3, :3], local) + mw[:, None, :3, 3]
    check = np.unique(np.linspace(0, frames.size - 1, HEADS_CHECK_FRAMES).round().astype(int))
    blender = sample_frames(scene, fs, fe, read, frames=fs + check)
    size = 1.0 + np.abs(heads[check]).max()
    return heads if np.abs(blender - heads[check]).max() <= HEADS_TOLERANCE * size else None


def source_armature(context, settings):
    """The Armature source: the panel's armature, else the active armature unless it is an SMPL rig."""
    from .scene_writing import is_smpl_rig

    arm = settings.source_armature
    active = context.active_object
    if arm is None and active is not None and active.type == "ARMATURE" and not is_smpl_rig(active):
        arm = active
    return arm


def asf_or_none(path: str):
    """The ASF Skeleton setting as the core's ``asf`` argument (None: look next to the .amc)."""
    return bpy.path.abspath(path) if path else None


def source_key(context, settings) -> str:
    """What identifies the current source between solves: the file, the armature, or the set
    of selected empties (by name)."""
    kind = settings.source_type
    if kind == "FILE":
        return "file:" + bpy.path.abspath(settings.filepath)
    if kind == "ARMATURE":
        arm = source_armature(context, settings)
        return "armature:" + (arm.name if arm is not None else "")
    return "empties:" + "|".join(o.name for o in selected_empties(context))


# The last keypoint file read (key, sequence): Import Keypoints reads the file and Solve reads
# the same File source again moments later (0.08 s of a 1,000-frame BVH each time); the second
# read is served from here while the file (and its skeleton) are unchanged on disk.
_LAST_READ: list = []


def _file_stamp(path) -> tuple:
    """What tells a changed file: its path, size and modification time (ns); None when absent."""
    import os

    try:
        st = os.stat(path)
    except OSError:
        return (str(path), None)
    return (str(path), st.st_size, st.st_mtime_ns)


def _read_key(path: str, asf) -> tuple:
    """The cache key of a read: the file's stamp and its skeleton's (the given .asf, or the one
    an .amc finds next to it)."""
    from pathlib import Path

    from ..core.formats import find_asf

    skeleton = asf
    if skeleton is None and Path(path).suffix.lower() == ".amc":
        skeleton = find_asf(Path(path))
    return _file_stamp(path), (_file_stamp(skeleton) if skeleton is not None else None)


def read_keypoint_file(path: str, asf=None):
    """``core.formats.read_keypoints(path, asf)``, read once: the last file's sequence is kept
    and served again (a copy whose name and note lists the caller may change; the arrays are
    shared and never written by ``prepare``) while its size and modification time (and its
    skeleton's) are unchanged."""
    import dataclasses

    from ..core.formats import read_keypoints

    key = _read_key(path, asf)
    if not (_LAST_READ and _LAST_READ[0][0] == key):
        seq = read_keypoints(path, asf=asf)
        _LAST_READ[:] = [(key, seq)]
    seq = _LAST_READ[0][1]
    return dataclasses.replace(
        seq,
        names=None if seq.names is None else list(seq.names),
        notes=list(seq.notes),
    )


def clear_read_cache() -> None:
    _LAST_READ.clear()
    _LAST_PREPARED.clear()


# The last file prepared (key, model, prepared): Solve prepares the File source as Import
# Keypoints did, with the same options; served again (a copy with its own note list: the arrays
# are shared and never written in place) while the file, the options and the model are the same.
_LAST_PREPARED: list = []


def prepared_file(path: str, model, layout, units, up, fps, asf_path: str, mapping, progress=None):
    """A keypoint file read (``read_keypoint_file``) and prepared (``prepare_sequence``), once for
    the same file on disk, options, joint map and model. ``progress(what)`` hears the prepare
    step begin (the read done)."""
    import dataclasses

    asf = asf_or_none(asf_path)
    options = (layout, units, up, float(fps or 0.0), tuple(sorted(mapping.items())))
    key = (_read_key(path, asf), options)
    hit = _LAST_PREPARED and _LAST_PREPARED[0][0] == key and _LAST_PREPARED[0][1] is model
    seq = None if hit else read_keypoint_file(path, asf=asf)
    if progress is not None:
        progress("preparing")
    if seq is not None:
        prepared = prepare_sequence(seq, model, layout, units, up, fps, mapping)
        _LAST_PREPARED[:] = [(key, model, prepared)]
    prepared = _LAST_PREPARED[0][2]
    return dataclasses.replace(prepared, notes=list(prepared.notes))


def prepare_sequence(seq, model, layout, units, up, fps, mapping):
    """A read keypoint sequence renamed by the joint map (``mapping``: source name -> keypoint)
    and prepared with the panel's options (enum identifiers: ``AUTO``, ``cm``, ``Y``...)."""
    from ..core.prepare import prepare

    if mapping and seq.names is not None:
        seq.names = mapped_names(seq.names, mapping)
    return prepare(
        seq,
        model,
        layout=option_value(layout),
        units=option_value(units),
        up=option_value(up),
        fps=fps or None,
    )


def read_file_source(settings, model):
    """The file source read and prepared (every frame of the file)."""
    if not settings.filepath:
        raise InputError(
            "No keypoint file is set: choose a file in the LSMPLify panel or use Import Keypoints."
        )
    return prepared_file(
        bpy.path.abspath(settings.filepath),
        model,
        settings.layout,
        settings.units,
        settings.up_axis,
        settings.fps,
        settings.asf_path,
        joint_map(settings),
    )


def gather_source(context, settings, model, progress=None):
    """The scene's current source over the frame range: (PreparedKeypoints, first scene frame).
    ``progress(fraction)`` hears the frames of an Armature or Empties source read."""
    from ..core.prepare import prepare

    scene = context.scene
    fs, fe, _ = solve_range(context, settings)
    kind = settings.source_type
    if kind == "FILE":
        prepared = read_file_source(settings, model)
        set_detected(settings, prepared)
        return slice_prepared(prepared, settings.file_frame_start, fs, fe)
    if kind == "EMPTIES":
        seq = sample_empties(context, fs, fe, progress)
    elif kind == "ARMATURE":
        seq = sample_armature(context, source_armature(context, settings), fs, fe, progress)
    else:
        raise InputError(f"Unknown source type '{kind}'.")
    # Scene sources are Z up. Units: scene units are metres in a normal scene, but a mocap
    # armature imported at its file's raw scale (e.g. CMU BVH units) is not: auto-detect
    # from bone lengths unless the user picked units.
    prepared = prepare(
        seq,
        model,
        layout=option_value(settings.layout),
        units=option_value(settings.units),
        up="z",
        fps=scene_fps(scene),
    )
    set_detected(settings, prepared)
    return prepared, fs


def slice_prepared(prepared, first_frame: int, fs: int, fe: int):
    """Keep the frames of ``prepared`` (frame 0 plays at ``first_frame``) that lie in fs..fe."""
    t = prepared.num_frames
    lo = max(fs, first_frame)
    hi = min(fe, first_frame + t - 1)
    if hi < lo:
        raise InputError(
            f"The source covers frames {first_frame}..{first_frame + t - 1} but the frame range is "
            f"{fs}..{fe}: they do not overlap. Change the frame range or the file's start frame."
        )
    a, b = lo - first_frame, hi - first_frame + 1
    if (a, b) == (0, t):
        return prepared, lo
    sub = prepared.cut(slice(a, b))  # every per-frame array (masks, bone rotations) cut alike
    if not (sub.weight > 0).any():
        raise InputError(f"No keypoint is seen in frames {lo}..{hi}: nothing to solve.")
    return sub, lo


def smooth_prepared(prepared, amount: float):
    """The panel's smoothing amount (0..1) as a zero-phase Gaussian of up to 0.05 s."""
    from ..core.prepare import smooth_over_time

    if amount <= 0:
        return prepared
    return smooth_over_time(prepared, float(amount) * SMOOTHING_MAX_SIGMA_S)


def set_detected(settings, prepared) -> None:
    settings.detected_layout = prepared.layout.title
    settings.detected_units = prepared.units
    settings.detected_up = prepared.up.upper()
    settings.detected_fps = f"{prepared.fps:g}"
    settings.detected_frames = str(prepared.num_frames)
