"""Build an SMPL armature with a skinned, shape-keyed mesh preview.

The bone-frame trick: every bone has its head at its rest joint and its tail straight up
(+Z in Blender, i.e. SMPL's +Y), roll 0. Blender then gives each bone the rest matrix
``C`` that maps bone-local (x, y, z) to armature (x, -z, y), which is exactly SMPL's
Y-up -> Blender's Z-up change of axes. So a bone's local frame IS SMPL's frame: an SMPL
local rotation goes unchanged into ``rotation_quaternion`` and SMPL's root translation
unchanged into the pelvis bone's ``location``.

Two options of a new rig (``rig_style.RigStyle``) keep the motion and change only how it is
keyed: a ``root`` bone on the ground for engines' root motion, and bones that point at their
children (then a bone's frame is not SMPL's and ``rig_style`` conjugates its rotations).

The change of axes is baked into the coordinates (joints and vertices are stored Z-up),
so the armature object keeps an identity transform: users can move it, apply transforms
or export it like any other rig. Shape is ``Shape000..`` shape keys valued at the betas
(Blender's shape-key sliders are limited to [-10, 10]); the bone heads are placed at the
rest joints of those betas. A model with pose correctives (``posedirs``) also gets
``Pose000..Pose206`` shape keys, keyed per frame at SMPL's pose feature by
``keyframes.write_corrective_action``.
"""

from __future__ import annotations

import bpy
import numpy as np

from ..core.body_model import ModelData
from ..core.errors import LSMPLifyError
from ..core.model import axes
from ..core.model.forward import blend_shapes
from ..core.model.skeleton import SMPL_JOINT_NAMES, SMPL_PARENTS
from ..core.model.skinning import NUM_POSE_FEATURES

BONE_TAIL_OFFSET = (0.0, 0.0, 0.1)  # Blender coordinates: SMPL's +Y, 10 cm
SHAPE_KEY_FORMAT = "Shape{:03d}"
POSE_KEY_FORMAT = "Pose{:03d}"  # pose-corrective keys, valued per frame at SMPL's pose feature
NUM_POSE_KEYS = NUM_POSE_FEATURES  # one key per entry of SMPL's pose feature (R_j - I)
SHAPE_KEY_LIMIT = 10.0  # Blender's hard limit on shape-key slider ranges
RIG_TAG = "lsmplify_rig"
MESH_TAG = "lsmplify_mesh"

# SMPL (Y up) -> Blender (Z up) is the core's Y-up -> Z-up change of axes (``core.model.axes``).
SMPL_TO_BLENDER = axes.Y_UP_TO_Z_UP


def smpl_to_blender(points) -> np.ndarray:
    """(..., 3) SMPL Y-up coordinates -> Blender Z-up coordinates (float64)."""
    return axes.y_up_to_z_up(np.asarray(points, dtype=np.float64))


def blender_to_smpl(points) -> np.ndarray:
    """(..., 3) Blender Z-up coordinates -> SMPL Y-up coordinates (float64)."""
    return axes.z_up_to_y_up(np.asarray(points, dtype=np.float64))


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def shape_vectors(model_data: ModelData, betas):
    """Betas padded/truncated to the shape keys the rig carries: at least 10, at most the model's."""
    b = _as_numpy(betas).reshape(-1)
    n = min(model_data.num_betas, max(10, b.size))
    if b.size > model_data.num_betas and np.any(b[model_data.num_betas :] != 0):
        raise LSMPLifyError(
            f"{b.size} betas given but the body model '{model_data.name}' has only "
            f"{model_data.num_betas} shape components."
        )
    out = np.zeros(n)
    out[: min(n, b.size)] = b[:n]
    if not np.isfinite(out).all():
        raise LSMPLifyError("The betas contain NaN or infinite values.")
    if np.abs(out).max(initial=0.0) > SHAPE_KEY_LIMIT:
        raise LSMPLifyError(
            f"A beta of {np.abs(out).max():.1f} is outside Blender's shape-key range "
            f"[-{SHAPE_KEY_LIMIT:g}, {SHAPE_KEY_LIMIT:g}]; such a body shape is far outside the model."
        )
    return out


def rest_joints_smpl(model_data: ModelData, betas) -> np.ndarray:
    """(24, 3) rest joints in SMPL coordinates for the betas, in float64 (J_regressor @ shaped mesh)."""
    b = shape_vectors(model_data, betas)
    verts = blend_shapes(
        model_data.v_template.astype(np.float64),
        model_data.shapedirs[:, :, : b.size].astype(np.float64),
        b[None],
    )[0]
    return model_data.J_regressor.astype(np.float64) @ verts


def _resolve_scene(context_or_scene):
    if isinstance(context_or_scene, bpy.types.Scene):
        scene = context_or_scene
        ctx = bpy.context
        same = getattr(ctx, "scene", None) == scene and getattr(ctx, "view_layer", None) is not None
        view_layer = ctx.view_layer if same else scene.view_layers[0]
        return scene, view_layer, scene.collection
    ctx = context_or_scene
    return ctx.scene, ctx.view_layer, (getattr(ctx, "collection", None) or ctx.scene.collection)


# a bone pointing at its child gets its Z axis (roll) towards the body's front (Blender -Y,
# SMPL +Z), as SMPL's own axes have it; one pointing along the front (a foot) towards up
FRONT_BLENDER, UP_BLENDER = (0.0, -1.0, 0.0), (0.0, 0.0, 1.0)


def _add_edit_bones(arm, heads_blender: np.ndarray, style) -> None:
    """The 24 SMPL bones (and the root bone of ``style``) as edit bones, parented."""
    from .rig_style import ROOT_BONE_NAME, bone_tails

    up = np.asarray(BONE_TAIL_OFFSET)
    tails = bone_tails(heads_blender, style.bone_axes, up)
    bones = []
    for j, name in enumerate(SMPL_JOINT_NAMES):
        eb = arm.edit_bones.new(name)
        eb.head = tuple(heads_blender[j])
        eb.tail = tuple(tails[j])
        eb.roll = 0.0
        if style.bone_axes != "SMPL":
            d = (tails[j] - heads_blender[j]) / np.linalg.norm(tails[j] - heads_blender[j])
            eb.align_roll(UP_BLENDER if abs(d @ FRONT_BLENDER) > 0.7 else FRONT_BLENDER)
        eb.use_connect = False
        eb.use_deform = True
        bones.append(eb)
    for j, p in enumerate(SMPL_PARENTS):
        if p >= 0:
            bones[j].parent = bones[p]
    if style.root_bone:  # on the ground at the origin, SMPL's axes (rig_style.split_root)
        root = arm.edit_bones.new(ROOT_BONE_NAME)
        root.head, root.tail, root.roll = (0.0, 0.0, 0.0), tuple(up), 0.0
        root.use_deform = False  # moves the body through the pelvis; skins nothing itself
        bones[0].parent = root


def _create_bones(scene, view_layer, arm_obj, heads_blender: np.ndarray, style) -> None:
    """Add the bones in edit mode, touching no other object's mode or data.

    Edit mode needs the armature active in a view layer; other selected armatures would
    join a multi-object edit, so every other object is deselected meanwhile and its
    selection restored afterwards.
    """
    arm = arm_obj.data
    prev_active = view_layer.objects.active
    override = dict(scene=scene, view_layer=view_layer)
    if prev_active is not None and prev_active.mode != "OBJECT":
        with bpy.context.temp_override(active_object=prev_active, object=prev_active, **override):
            bpy.ops.object.mode_set(mode="OBJECT")
    selected = [o for o in view_layer.objects if o.select_get(view_layer=view_layer)]
    for o in selected:
        o.select_set(False, view_layer=view_layer)
    scene.collection.objects.link(arm_obj)  # always in the view layer, never excluded
    try:
        view_layer.objects.active = arm_obj
        arm_obj.select_set(True, view_layer=view_layer)
        with bpy.context.temp_override(
            active_object=arm_obj,
            object=arm_obj,
            edit_object=arm_obj,
            selected_objects=[arm_obj],
            selected_editable_objects=[arm_obj],
            **override,
        ):
            bpy.ops.object.mode_set(mode="EDIT")
            try:
                _add_edit_bones(arm, heads_blender, style)
            finally:
                bpy.ops.object.mode_set(mode="OBJECT")
    finally:
        for o in selected:
            o.select_set(True, view_layer=view_layer)


def _build_mesh(name: str, verts_blender: np.ndarray, faces: np.ndarray):
    mesh = bpy.data.meshes.new(name)
    nv, nf = verts_blender.shape[0], faces.shape[0]
    mesh.vertices.add(nv)
    mesh.vertices.foreach_set("co", verts_blender.astype(np.float32).ravel())
    mesh.loops.add(3 * nf)
    mesh.loops.foreach_set("vertex_index", faces.astype(np.int32).ravel())
    mesh.polygons.add(nf)
    mesh.polygons.foreach_set("loop_start", np.arange(0, 3 * nf, 3, dtype=np.int32))
    if not bpy.types.MeshPolygon.bl_rna.properties["loop_total"].is_readonly:  # Blender < 4.0
        mesh.polygons.foreach_set("loop_total", np.full(nf, 3, dtype=np.int32))
    mesh.update(calc_edges=True)
    mesh.validate(clean_customdata=False)
    if hasattr(mesh, "shade_smooth"):
        mesh.shade_smooth()
    else:
        mesh.polygons.foreach_set("use_smooth", np.ones(nf, dtype=bool))
    return mesh


def _add_vertex_groups(mesh_obj, weights: np.ndarray) -> None:
    """One vertex group per joint; one ``add`` call per distinct weight value of the joint."""
    for j, name in enumerate(SMPL_JOINT_NAMES):
        group = mesh_obj.vertex_groups.new(name=name)
        w = weights[:, j]
        ids = np.flatnonzero(w)
        if ids.size == 0:
            continue
        vals = w[ids]
        order = np.argsort(vals, kind="stable")
        ids, vals = ids[order], vals[order]
        uniq, starts = np.unique(vals, return_index=True)
        ends = np.append(starts[1:], vals.size)
        for value, s, e in zip(uniq.tolist(), starts.tolist(), ends.tolist(), strict=False):
            group.add(ids[s:e].tolist(), value, "REPLACE")


def _add_shape_keys(
    mesh_obj, basis_blender: np.ndarray, shapedirs: np.ndarray, betas: np.ndarray
) -> None:
    """``Basis`` + one key per beta whose offset from the basis is that shape direction."""
    basis = mesh_obj.shape_key_add(name="Basis", from_mix=False)
    basis.data.foreach_set("co", basis_blender.astype(np.float32).ravel())
    for i, beta in enumerate(betas):
        key = mesh_obj.shape_key_add(name=SHAPE_KEY_FORMAT.format(i), from_mix=False)
        co = basis_blender + smpl_to_blender(shapedirs[:, :, i])
        key.data.foreach_set("co", co.astype(np.float32).ravel())
        key.slider_min = -SHAPE_KEY_LIMIT
        key.slider_max = SHAPE_KEY_LIMIT
        key.value = float(beta)
    mesh_obj.data.shape_keys.use_relative = True


def _add_pose_keys(mesh_obj, basis_blender: np.ndarray, posedirs: np.ndarray) -> None:
    """``Pose000..Pose206``: offsets ``posedirs[:, :, k]`` from the basis, valued 0 (the rest pose).

    SMPL adds ``posedirs @ pose_feature(R)`` to the rest mesh before skinning; relative shape
    keys are likewise added before the armature modifier, so keying their values at the pose
    feature (``keyframes.write_corrective_action``) reproduces SMPL's correctives exactly.
    """
    for k in range(NUM_POSE_KEYS):
        key = mesh_obj.shape_key_add(name=POSE_KEY_FORMAT.format(k), from_mix=False)
        co = basis_blender + smpl_to_blender(posedirs[:, :, k])
        key.data.foreach_set("co", co.astype(np.float32).ravel())
        key.slider_min = -SHAPE_KEY_LIMIT
        key.slider_max = SHAPE_KEY_LIMIT
        key.value = 0.0


def pose_key_names() -> list[str]:
    return [POSE_KEY_FORMAT.format(k) for k in range(NUM_POSE_KEYS)]


def has_pose_keys(mesh_obj) -> bool:
    """Whether ``mesh_obj`` is a mesh carrying all of the ``Pose000..Pose206`` corrective keys."""
    if mesh_obj is None or mesh_obj.type != "MESH" or mesh_obj.data.shape_keys is None:
        return False
    blocks = mesh_obj.data.shape_keys.key_blocks
    return all(n in blocks for n in pose_key_names())


def corrective_meshes(rig_obj) -> list:
    """The rig's child meshes that carry pose-corrective shape keys."""
    if rig_obj is None:
        return []
    return [c for c in rig_obj.children if has_pose_keys(c)]


def build_smpl_rig(
    context_or_scene,
    model_data: ModelData,
    betas,
    name: str = "SMPL",
    collection=None,
    style=None,
):
    """Create a NEW SMPL armature and its skinned mesh child; returns ``(armature_obj, mesh_obj)``.

    ``style`` (``rig_style.RigStyle``; default: SMPL's axes, no root bone) adds a root bone
    for engines' root motion and/or points the bones at their children; the motion keyed on
    the rig is the same either way (``rig_style``).

    ``context_or_scene``: a ``bpy.types.Context`` (objects go to its active collection) or a
    ``bpy.types.Scene`` (objects go to the scene's master collection); ``collection``
    overrides either. Existing objects are never renamed or touched: Blender gives the new
    data unique names (``SMPL.001``...) when the names are taken.
    """
    from .rig_style import BONE_AXES, BONE_AXES_PROP, RigStyle

    style = style or RigStyle()
    if style.bone_axes not in BONE_AXES:
        raise LSMPLifyError(f"Unknown bone axes '{style.bone_axes}'; use one of {BONE_AXES}.")
    scene, view_layer, default_collection = _resolve_scene(context_or_scene)
    target = collection if collection is not None else default_collection
    b = shape_vectors(model_data, betas)
    nb = b.size
    heads = smpl_to_blender(rest_joints_smpl(model_data, b))

    arm = bpy.data.armatures.new(name)
    arm_obj = bpy.data.objects.new(name, arm)
    arm_obj.show_in_front = True
    _create_bones(scene, view_layer, arm_obj, heads, style)
    if target != scene.collection:
        target.objects.link(arm_obj)
        scene.collection.objects.unlink(arm_obj)
    for pb in arm_obj.pose.bones:
        pb.rotation_mode = "QUATERNION"
    arm_obj[RIG_TAG] = 1
    arm_obj[BONE_AXES_PROP] = style.bone_axes
    arm_obj["lsmplify_betas"] = [float(x) for x in b]
    arm_obj["lsmplify_model"] = model_data.name

    basis = smpl_to_blender(model_data.v_template)
    mesh = _build_mesh(f"{name}_mesh", basis, model_data.faces)
    mesh_obj = bpy.data.objects.new(f"{name}_mesh", mesh)
    target.objects.link(mesh_obj)
    mesh_obj.parent = arm_obj
    mesh_obj.matrix_parent_inverse.identity()
    _add_vertex_groups(mesh_obj, model_data.weights)
    _add_shape_keys(mesh_obj, basis, model_data.shapedirs[:, :, :nb].astype(np.float64), b)
    if model_data.posedirs is not None:
        _add_pose_keys(mesh_obj, basis, model_data.posedirs.astype(np.float64))
    mod = mesh_obj.modifiers.new(name="Armature", type="ARMATURE")
    mod.object = arm_obj
    mod.use_vertex_groups = True
    mod.use_bone_envelopes = False
    mesh_obj[MESH_TAG] = 1
    return arm_obj, mesh_obj
