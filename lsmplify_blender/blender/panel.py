"""3D View > Sidebar > LSMPLify: source, solve, results, refine / export / preview."""

from __future__ import annotations

import bpy

from .operators import (
    LSMPLIFY_OT_export_fbx,
    LSMPLIFY_OT_export_npz,
    LSMPLIFY_OT_import_keypoints,
    LSMPLIFY_OT_import_smpl_npz,
    LSMPLIFY_OT_refine,
    LSMPLIFY_OT_render_preview,
    LSMPLIFY_OT_solve,
)


class LSMPLIFY_PT_main(bpy.types.Panel):
    bl_idname = "LSMPLIFY_PT_main"
    bl_label = "LSMPLify"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "LSMPLify"

    def draw(self, context):
        s = context.scene.lsmplify
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        draw_source(layout.box(), context, s)
        draw_solve(layout.box(), context, s)
        if s.has_result:
            draw_results(layout.box(), s)
        draw_refine(layout.box(), s)
        draw_rig(layout.box(), s)


def draw_source(box, context, s) -> None:
    box.label(text="Source", icon="IMPORT")
    box.prop(s, "source_type", expand=True)
    if s.source_type == "FILE":
        box.prop(s, "filepath")
        if s.filepath.lower().endswith(".amc"):
            box.prop(s, "asf_path")
        box.operator(LSMPLIFY_OT_import_keypoints.bl_idname, icon="FILEBROWSER")
        box.prop(s, "up_axis")
        box.prop(s, "fps")
        box.prop(s, "file_frame_start")
    elif s.source_type == "EMPTIES":
        n = sum(1 for o in context.selected_objects if o.type == "EMPTY")
        box.label(text=f"{n} empties selected", icon="EMPTY_DATA")
    else:
        box.prop(s, "source_armature")
    box.prop(s, "layout")
    box.prop(s, "units")  # used by every source (scene sources too): shown for every source
    from .joint_map import draw_joint_map

    draw_joint_map(box.box(), s)
    if s.detected_layout:
        col = box.column(align=True)
        col.label(text=f"Detected: {s.detected_layout}")
        col.label(
            text=f"Units {s.detected_units}, up {s.detected_up}, {s.detected_fps} fps, "
            f"{s.detected_frames} frames"
        )


def draw_solve(box, context, s) -> None:
    from .sources import solve_range_text

    box.label(text="Solve", icon="ARMATURE_DATA")
    box.prop(s, "solver")
    row = box.row(align=True)
    row.prop(s, "smoothing", slider=True)
    row.prop(s, "auto_denoise", text="Auto")
    if s.smoothing > 0:  # the factor in the units it stands for
        from .sources import SMOOTHING_MAX_SIGMA_S

        box.label(
            text=f"Gaussian over time, sigma {s.smoothing * SMOOTHING_MAX_SIGMA_S * 1000:.0f} ms"
        )
    box.prop(s, "lock_feet")
    box.prop(s, "ground_from_source")
    if not s.ground_from_source:
        box.prop(s, "ground_height")
    box.prop(s, "calibrate")
    box.prop(s, "target_rig")
    if s.target_rig is None:
        box.prop(s, "new_rig")
    box.prop(s, "match_source")
    if s.source_type != "FILE":
        box.prop(s, "use_source_range")
    if s.source_type == "FILE" or not s.use_source_range:
        box.prop(s, "use_scene_range")
        if not s.use_scene_range:
            row = box.row(align=True)
            row.prop(s, "frame_start")
            row.prop(s, "frame_end")
    box.label(text=solve_range_text(context, s), icon="TIME")
    box.operator(LSMPLIFY_OT_solve.bl_idname, icon="PLAY")


def draw_results(box, s) -> None:
    box.label(text="Results", icon="INFO")
    col = box.column(align=True)
    if s.result_fit_raw_mm > 0:  # calibrated: the fit to the calibrated points, and as captured
        col.label(text=f"Fit error: {s.result_fit_error_mm:.1f} mm (calibrated)")
        col.label(text=f"As captured: {s.result_fit_raw_mm:.1f} mm")
    else:
        col.label(text=f"Fit error: {s.result_fit_error_mm:.1f} mm")
    col.label(text=f"Bone length error: {s.result_mpbe_mm:.1f} mm")
    if s.result_betas:  # five per line: ten do not fit the sidebar
        betas = s.result_betas.split()
        for i in range(0, len(betas), 5):
            col.label(text=("Betas: " if i == 0 else "") + " ".join(betas[i : i + 5]))
    if s.result_feet:
        col.label(text=s.result_feet)
    from .results import draw_report

    draw_report(col, s)
    if s.result_summary:
        col.label(text=s.result_summary)


def draw_refine(box, s) -> None:
    """One Refine: the optimisation iterations every Solve ends with, and Refine Action's own method."""
    box.label(text="Refine", icon="MODIFIER")
    box.prop(s, "refine_iters")
    row = box.row(align=True)
    row.prop(s, "refine_method", text="")
    if s.refine_method == "NETWORK":
        row.prop(s, "refine_passes")
    box.operator(LSMPLIFY_OT_refine.bl_idname, icon="MODIFIER")


def draw_rig(box, s) -> None:
    box.label(text="Rig", icon="OUTLINER_OB_ARMATURE")
    col = box.column(heading="New Rigs", align=True)
    col.prop(s, "root_bone")
    col.prop(s, "bones_to_children")
    col = box.column(align=True)
    col.operator(LSMPLIFY_OT_import_smpl_npz.bl_idname, icon="IMPORT")
    col.operator(LSMPLIFY_OT_export_npz.bl_idname, icon="EXPORT")
    col.operator(LSMPLIFY_OT_export_fbx.bl_idname, icon="EXPORT")
    col.operator(LSMPLIFY_OT_render_preview.bl_idname, icon="RENDER_ANIMATION")


CLASSES = (LSMPLIFY_PT_main,)
