"""The joint map: source joint names -> the keypoint names the layouts know, for rigs whose
names are not CMU, Mixamo or SMPL. Rows live in the scene settings (``joint_map``); Save to
Source keeps them on the source armature (a JSON custom property), and a source armature
with a saved map uses it whenever the panel's map is empty (see ``sources.joint_map``)."""

from __future__ import annotations

import json

import bpy
from bpy.props import IntProperty, StringProperty

from ..core.errors import InputError
from .operators import GuardedOperator


def source_for_map(context):
    from .sources import source_armature

    s = context.scene.lsmplify
    arm = source_armature(context, s) if s.source_type == "ARMATURE" else None
    if arm is None:
        raise InputError(
            "A joint map is saved on an Armature source: choose the armature in the LSMPLify panel."
        )
    return arm


class LSMPLIFY_OT_joint_map_add(GuardedOperator, bpy.types.Operator):
    """Add a row to the joint map (a source joint's name and the keypoint it stands for)"""

    bl_idname = "lsmplify.joint_map_add"
    bl_label = "Add Joint"
    bl_options = {"REGISTER", "UNDO"}
    source: StringProperty(name="Source Joint", default="")
    keypoint: StringProperty(name="Keypoint", default="")

    def run(self, context):
        s = context.scene.lsmplify
        row = s.joint_map.add()
        row.source, row.keypoint = self.source, self.keypoint
        s.joint_map_index = len(s.joint_map) - 1
        return {"FINISHED"}


class LSMPLIFY_OT_joint_map_remove(GuardedOperator, bpy.types.Operator):
    """Remove the selected row of the joint map"""

    bl_idname = "lsmplify.joint_map_remove"
    bl_label = "Remove Joint"
    bl_options = {"REGISTER", "UNDO"}
    index: IntProperty(name="Row", default=-1, description="-1: the selected row")

    def run(self, context):
        s = context.scene.lsmplify
        i = s.joint_map_index if self.index < 0 else self.index
        if not 0 <= i < len(s.joint_map):
            raise InputError("The joint map has no such row.")
        s.joint_map.remove(i)
        s.joint_map_index = max(0, min(i, len(s.joint_map) - 1))
        return {"FINISHED"}


class LSMPLIFY_OT_joint_map_save(GuardedOperator, bpy.types.Operator):
    """Keep the joint map on the source armature: it is used for this armature whenever the panel's map is empty"""

    bl_idname = "lsmplify.joint_map_save"
    bl_label = "Save to Source"
    bl_options = {"REGISTER", "UNDO"}

    def run(self, context):
        from .sources import JOINT_MAP_PROP

        arm = source_for_map(context)
        rows = {
            r.source: r.keypoint
            for r in context.scene.lsmplify.joint_map
            if r.source and r.keypoint
        }
        arm[JOINT_MAP_PROP] = json.dumps(rows, sort_keys=True)
        self.say({"INFO"}, f"LSMPLify: {len(rows)} joint names saved on '{arm.name}'")
        return {"FINISHED"}


class LSMPLIFY_OT_joint_map_load(GuardedOperator, bpy.types.Operator):
    """Put the joint map saved on the source armature into the panel for editing"""

    bl_idname = "lsmplify.joint_map_load"
    bl_label = "Load from Source"
    bl_options = {"REGISTER", "UNDO"}

    def run(self, context):
        from .sources import JOINT_MAP_PROP, joint_map

        arm = source_for_map(context)
        if JOINT_MAP_PROP not in arm:
            raise InputError(
                f"'{arm.name}' has no saved joint map: fill the map and use Save to Source."
            )
        s = context.scene.lsmplify
        s.joint_map.clear()
        for source, keypoint in sorted(joint_map(s, arm).items()):
            row = s.joint_map.add()
            row.source, row.keypoint = source, keypoint
        return {"FINISHED"}


class LSMPLIFY_UL_joint_map(bpy.types.UIList):
    def draw_item(self, _context, layout, _data, item, _icon, _active_data, _active_prop, _index=0):
        row = layout.row(align=True)
        row.prop(item, "source", text="", emboss=False)
        row.label(text="", icon="FORWARD")
        row.prop(item, "keypoint", text="", emboss=False)


def draw_joint_map(box, s) -> None:
    box.label(text="Joint Map (source joint -> keypoint)", icon="GROUP_BONE")
    row = box.row()
    row.template_list("LSMPLIFY_UL_joint_map", "", s, "joint_map", s, "joint_map_index", rows=3)
    col = row.column(align=True)
    col.operator(LSMPLIFY_OT_joint_map_add.bl_idname, text="", icon="ADD")
    col.operator(LSMPLIFY_OT_joint_map_remove.bl_idname, text="", icon="REMOVE")
    if s.source_type == "ARMATURE":
        row = box.row(align=True)
        row.operator(LSMPLIFY_OT_joint_map_save.bl_idname)
        row.operator(LSMPLIFY_OT_joint_map_load.bl_idname)


CLASSES = (
    LSMPLIFY_OT_joint_map_add,
    LSMPLIFY_OT_joint_map_remove,
    LSMPLIFY_OT_joint_map_save,
    LSMPLIFY_OT_joint_map_load,
    LSMPLIFY_UL_joint_map,
)
