"""An SMPL rig, its mesh and its action as FBX for a game engine or DCC (Blender's FBX exporter)."""

from __future__ import annotations

import contextlib
import os

import bpy

from ..core.errors import LSMPLifyError

# Settings per target. Shared: only the rig and its mesh, no leaf bones (they would become
# extra joints in engines), only deforming bones, the active action baked at every frame
# with no simplification (the solve's keys exactly), no NLA/all-actions stacks.
FBX_PRESETS = {
    # Unity works in metres with Y up and -Z forward: 'FBX All' puts Blender's metre into the
    # file's unit factor (UnitScaleFactor 100: one file unit is a metre), objects unscaled,
    # so the model arrives at scale 1 (not 100). (Apply Transform is not used: Blender
    # documents it as broken with armatures. Unity's 'Bake Axis Conversion' removes the
    # root's axis rotation.)
    "UNITY": dict(
        axis_forward="-Z", axis_up="Y", apply_unit_scale=True, apply_scale_options="FBX_SCALE_ALL"
    ),
    # Unreal works in centimetres with Z up, as Blender does: 'All Local' writes the file in
    # centimetres (UnitScaleFactor 1, the metre-to-centimetre factor on the root objects'
    # transforms) and Blender's own axes (Z up, the body facing -Y), so Unreal neither
    # rescales nor turns it.
    "UNREAL": dict(
        axis_forward="-Y", axis_up="Z", apply_unit_scale=True, apply_scale_options="FBX_SCALE_NONE"
    ),
    # Blender's defaults: re-imports into Blender unchanged.
    "BLENDER": dict(
        axis_forward="-Z", axis_up="Y", apply_unit_scale=True, apply_scale_options="FBX_SCALE_NONE"
    ),
}
FBX_COMMON = dict(
    use_selection=True,
    object_types={"ARMATURE", "MESH"},
    add_leaf_bones=False,
    use_armature_deform_only=True,
    primary_bone_axis="Y",
    secondary_bone_axis="X",
    armature_nodetype="NULL",
    bake_anim=True,
    bake_anim_use_all_bones=True,
    bake_anim_use_nla_strips=False,
    bake_anim_use_all_actions=False,
    bake_anim_force_startend_keying=True,
    bake_anim_step=1.0,
    bake_anim_simplify_factor=0.0,
    use_mesh_modifiers=False,
    mesh_smooth_type="FACE",
    bake_space_transform=False,
    global_scale=1.0,
)


@contextlib.contextmanager
def _meshes_hidden_while_baking(meshes):
    """Hide ``meshes`` in the viewport while the exporter bakes the animation, and only then.

    The exporter bakes by setting every frame in turn (``scene.frame_set``), which evaluates the
    skinned mesh each time (6,890 vertices through the Armature modifier and the shape keys:
    ~90% of the time per frame) though the file gets only the rest mesh and the bones' motion.
    Hidden meshes are not evaluated; everything the bake reads (bone and object transforms,
    shape key values) is the same, and the object properties, Visibility included, are written
    after the bake with the meshes shown again: the file is byte-identical but for the header's
    time stamp (tests/test_fbx_export_speed.py). Wraps ``io_scene_fbx.export_fbx_bin.
    fbx_animations`` for the duration of one export; an exporter without it exports unchanged.
    """
    try:
        from io_scene_fbx import export_fbx_bin
    except ImportError:
        yield
        return
    bake = getattr(export_fbx_bin, "fbx_animations", None)
    if bake is None:
        yield
        return

    def bake_hidden(scene_data):
        shown = [(m, m.hide_viewport) for m in meshes]
        try:
            for m, _ in shown:
                m.hide_viewport = True
            return bake(scene_data)
        finally:
            for m, hidden in shown:
                m.hide_viewport = hidden

    export_fbx_bin.fbx_animations = bake_hidden
    try:
        yield
    finally:
        export_fbx_bin.fbx_animations = bake


_LAST_BAKE: list = []  # how the last export baked its animation (``last_bake``)
BAKED_FROM_KEYS = "the keys (vectorised)"
BAKED_BY_EXPORTER = "Blender's exporter (frame by frame)"


def last_bake() -> str:
    """How the last ``export_rig_fbx`` baked the animation: BAKED_FROM_KEYS or BAKED_BY_EXPORTER."""
    return _LAST_BAKE[-1] if _LAST_BAKE else ""


@contextlib.contextmanager
def _baked_from_keys():
    """For one export, the exporter's per-frame bake of the scene's animation stack
    (``export_fbx_bin.fbx_animations_do``) is replaced by ``fbx_bake.baked_stack``, which
    computes the same curves from the rig's keys for all frames at once (a 10,000-frame export
    6.5-7.6 s -> 1.3-2.0 s on the shared 2-core CPU, ``bench_blender_pipeline.py --frames 10000
    --fbx``); any other stack, or a scene it does not cover (constraints, drivers, NLA, other
    objects), is baked by the exporter as before."""
    try:
        from io_scene_fbx import export_fbx_bin
    except ImportError:
        yield
        return
    bake = getattr(export_fbx_bin, "fbx_animations_do", None)
    if bake is None:
        yield
        return
    from .fbx_bake import baked_stack

    def from_keys(scene_data, ref_id, f_start, f_end, start_zero, objects=None, force_keep=False):
        if ref_id is None and objects is None and not start_zero and not force_keep:
            try:
                stack = baked_stack(export_fbx_bin, scene_data, f_start, f_end)
            except (AttributeError, TypeError, KeyError, ValueError):
                stack = None  # an exporter this does not know: it bakes itself
            if stack is not None:
                _LAST_BAKE.append(BAKED_FROM_KEYS)
                return stack
        _LAST_BAKE.append(BAKED_BY_EXPORTER)
        return bake(scene_data, ref_id, f_start, f_end, start_zero, objects, force_keep)

    export_fbx_bin.fbx_animations_do = from_keys
    try:
        yield
    finally:
        export_fbx_bin.fbx_animations_do = bake


def fbx_exporter_available() -> bool:
    return hasattr(bpy.ops.export_scene, "fbx") and "EXPORT_SCENE_OT_fbx" in dir(bpy.types)


def export_rig_fbx(context, rig_obj, path: str, preset: str = "UNITY") -> str:
    """Write ``rig_obj``, its child meshes and its action to ``path`` with the preset's settings.

    The selection and the active object are changed only while exporting and restored after,
    and so is a Match Source scale: the file gets the body at its real size.
    """
    from .scene_writing import real_size_scale

    if preset not in FBX_PRESETS:
        raise LSMPLifyError(
            f"Unknown FBX target '{preset}'; choose one of {', '.join(FBX_PRESETS)}."
        )
    if not fbx_exporter_available():
        raise LSMPLifyError(
            "Blender's FBX exporter is not enabled: enable the 'FBX format' add-on."
        )
    objs = [rig_obj] + [c for c in rig_obj.children if c.type == "MESH"]
    view_layer = context.view_layer
    prev_sel = [o for o in view_layer.objects if o.select_get()]
    prev_active = view_layer.objects.active
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    prev_scale = tuple(rig_obj.scale)
    try:
        rig_obj.scale = tuple(c * real_size_scale(rig_obj) for c in prev_scale)
        view_layer.update()
        for o in prev_sel:
            o.select_set(False)
        for o in objs:
            o.select_set(True)
        view_layer.objects.active = rig_obj
        with (
            context.temp_override(active_object=rig_obj, selected_objects=objs),
            _meshes_hidden_while_baking(objs[1:]),
            _baked_from_keys(),
        ):
            _LAST_BAKE.clear()
            result = bpy.ops.export_scene.fbx(filepath=path, **FBX_COMMON, **FBX_PRESETS[preset])
    finally:
        rig_obj.scale = prev_scale
        view_layer.update()
        for o in objs:
            o.select_set(False)
        for o in prev_sel:
            o.select_set(True)
        view_layer.objects.active = prev_active
    if "FINISHED" not in result or not os.path.isfile(path):
        raise LSMPLifyError(f"The FBX exporter did not write '{path}'.")
    return path
