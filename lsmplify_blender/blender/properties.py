"""Per-scene settings of LSMPLify (``scene.lsmplify``): source, solve options, last results."""

from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

# Kept in step with core.layouts.LAYOUTS (tests check it): listing them here keeps
# registration from importing torch.
LAYOUT_ITEMS = (
    ("AUTO", "Auto", "Detect from the joint names, else from the joint count"),
    ("smpl24", "SMPL (24)", "SMPL joints"),
    ("body25", "OpenPose BODY_25", "OpenPose BODY_25"),
    ("h36m17", "Human3.6M (17)", "Human3.6M 17 joints"),
    ("coco17", "COCO (17)", "COCO 17 keypoints"),
    ("mediapipe33", "MediaPipe (33)", "MediaPipe Pose / FreeMoCap"),
    ("cmu", "CMU / BVH / Mixamo", "CMU ASF bone names, CMU BVH names, Mixamo names"),
    ("deepmimic", "DeepMimic", "DeepMimic humanoid3d joint names"),
)
UNIT_ITEMS = (
    ("AUTO", "Auto", "The file's declaration, else detected from bone lengths"),
    ("m", "Metres", ""),
    ("cm", "Centimetres", ""),
    ("mm", "Millimetres", ""),
    ("inch", "Inches", ""),
    ("cmu", "CMU units", "0.05644 m (CMU ASF/AMC and CMU-derived BVH)"),
)
UP_ITEMS = (
    ("AUTO", "Auto", "The file's declaration, else the feet-to-shoulders direction"),
    ("Y", "Y", "Y up (SMPL, BVH)"),
    ("Z", "Z", "Z up (Blender)"),
)
SOURCE_ITEMS = (
    ("FILE", "File", "A keypoint file (.npz .npy .json .csv .bvh .amc)"),
    (
        "EMPTIES",
        "Empties",
        "The selected animated empties, one per keypoint, named after the joints",
    ),
    (
        "ARMATURE",
        "Armature",
        "An animated armature (e.g. an imported BVH): its bone heads are the keypoints",
    ),
)
REFINE_METHOD_ITEMS = (
    (
        "NETWORK",
        "Network",
        ("Network plug-in passes: re-aim every bone at the keypoints and predict its twist (fast)"),
    ),
    ("OPTIMIZE", "Optimize", "Iterations of batched optimisation with the pose prior (slower)"),
)
SOLVER_ITEMS = (
    (
        "NETWORK",
        "Network",
        (
            "Analytic IK + the residual network (Learnable SMPLify), which recovers each "
            "bone's twist (keypoints with fewer than 10 SMPL joints use Analytic)"
        ),
    ),
    ("ANALYTIC", "Analytic", "Shape from bone lengths + analytic IK: fast, exact on model joints"),
    ("OPTIMIZE", "Optimize", "SMPLify-3D-style optimisation frame by frame: slow baseline"),
)


class LSMPLifyJointMapItem(bpy.types.PropertyGroup):
    """One row of the joint map: a source joint's name and the keypoint it stands for."""

    source: StringProperty(
        name="Source Joint",
        default="",
        description="A bone or empty name of the source, as it is in the scene or file",
    )
    keypoint: StringProperty(
        name="Keypoint",
        default="",
        description="The name the layouts know it by (e.g. LeftUpLeg, left_hip, lfemur)",
    )


def _poll_armature(_self, obj):
    return obj.type == "ARMATURE"


def _poll_smpl_rig(_self, obj):
    from .scene_writing import is_smpl_rig

    return is_smpl_rig(obj)


class LSMPLifySceneSettings(bpy.types.PropertyGroup):
    # ------------------------------------------------------------------ source
    source_type: EnumProperty(
        name="Source",
        items=SOURCE_ITEMS,
        default="FILE",
        description="Where the keypoint motion comes from",
    )
    filepath: StringProperty(
        name="File",
        subtype="FILE_PATH",
        default="",
        description="Keypoint file (.npz .npy .json .csv .bvh .amc)",
    )
    source_armature: PointerProperty(
        name="Armature",
        type=bpy.types.Object,
        poll=_poll_armature,
        description="Animated armature whose bone heads are the keypoints "
        "(empty: the active object)",
    )
    layout: EnumProperty(
        name="Layout", items=LAYOUT_ITEMS, default="AUTO", description="Keypoint layout"
    )
    units: EnumProperty(
        name="Units",
        items=UNIT_ITEMS,
        default="AUTO",
        description="Length unit of the source: a file's, or of a scene source's world positions "
        "(times the scene's unit scale); Auto: declared, else detected from bone "
        "lengths",
    )
    up_axis: EnumProperty(
        name="Up",
        items=UP_ITEMS,
        default="AUTO",
        description="Up axis of a file source (scene sources are Z up)",
    )
    fps: FloatProperty(
        name="FPS",
        default=0.0,
        min=0.0,
        soft_max=240.0,
        description="Frame rate of a file source (0: the file's, else 30)",
    )
    asf_path: StringProperty(
        name="ASF Skeleton",
        subtype="FILE_PATH",
        default="",
        description="Skeleton (.asf) of an .amc motion file; empty: the subject's .asf "
        "next to the motion (01_01.amc -> 01.asf)",
    )
    match_source: BoolProperty(
        name="Match Source",
        default=True,
        description="Place and scale the new rig so that it overlays its source in the "
        "scene (the source's units and the scene's unit scale); exports "
        "stay at real size",
    )
    file_frame_start: IntProperty(
        name="File Start Frame",
        default=1,
        description="Scene frame at which the file's first frame plays",
    )
    empties_collection: PointerProperty(
        name="Keypoint Empties",
        type=bpy.types.Collection,
        description="Empties made by the last keypoint import",
    )
    joint_map: CollectionProperty(
        type=LSMPLifyJointMapItem,
        name="Joint Map",
        description="Source joint names -> keypoint names, for rigs whose names "
        "are not CMU, Mixamo or SMPL",
    )
    joint_map_index: IntProperty(name="Joint Map Row", default=0, min=0)
    detected_layout: StringProperty(name="Layout", default="")
    detected_units: StringProperty(name="Units", default="")
    detected_up: StringProperty(name="Up", default="")
    detected_fps: StringProperty(name="FPS", default="")
    detected_frames: StringProperty(name="Frames", default="")

    # ------------------------------------------------------------------ solve
    # core.solver.DEFAULT_SOLVER, spelled here so that registration imports no torch (a test checks it)
    solver: EnumProperty(name="Solver", items=SOLVER_ITEMS, default="ANALYTIC")
    refine_iters: IntProperty(
        name="Optimise After Solve",
        default=0,
        min=0,
        soft_max=50,
        max=1000,
        description="Iterations of batched optimisation that every Solve ends with, and "
        "Refine Action's iterations with the Optimize method (10 when 0); "
        "slow: a few seconds per iteration on long takes",
    )
    refine_method: EnumProperty(
        name="Refine Method",
        items=REFINE_METHOD_ITEMS,
        default="NETWORK",
        description="How Refine Action improves the rig's current action",
    )
    refine_passes: IntProperty(
        name="Passes", default=2, min=1, max=10, description="Network passes of Refine Action"
    )
    smoothing: FloatProperty(
        name="Smoothing",
        default=0.0,
        min=0.0,
        max=1.0,
        subtype="FACTOR",
        description="Zero-phase temporal smoothing of the keypoints before solving "
        "(Gaussian, sigma up to 0.05 s); 0 leaves it to Auto Denoise",
    )
    auto_denoise: BoolProperty(
        name="Auto Denoise",
        default=True,
        description="Estimate the keypoint noise from how much the limbs change "
        "length and smooth noisy keypoints over time by the matching "
        "amount (exact or clean mocap is left as it is)",
    )
    target_rig: PointerProperty(
        name="Target Rig",
        type=bpy.types.Object,
        poll=_poll_smpl_rig,
        description="SMPL rig to receive a new action (empty: the last rig solved from this "
        "source, else a new rig)",
    )
    new_rig: BoolProperty(
        name="New Rig",
        default=False,
        description="Make a new rig even when this source has one already (off: solving the "
        "same source again writes a new action on its last rig)",
    )
    use_source_range: BoolProperty(
        name="Source's Frames",
        default=True,
        description="Armature and Empties sources: solve the frames their actions "
        "cover. Off (and for a File source): the scene range or the "
        "custom range",
    )
    use_scene_range: BoolProperty(
        name="Scene Range",
        default=True,
        description="Solve the scene's frame range (off: the Start and End below)",
    )
    frame_start: IntProperty(name="Start", default=1, description="First frame to solve")
    frame_end: IntProperty(name="End", default=250, description="Last frame to solve")

    # ------------------------------------------------------------------ results
    has_result: BoolProperty(default=False)
    result_mpbe_mm: FloatProperty(
        name="Bone Length Error (mm)",
        default=0.0,
        description="Mean per-bone length error of the fitted shape",
    )
    result_fit_error_mm: FloatProperty(
        name="Fit Error (mm)", default=0.0, description="Mean distance to the input keypoints"
    )
    result_betas: StringProperty(name="Betas", default="")
    result_summary: StringProperty(name="Summary", default="")


CLASSES = (LSMPLifyJointMapItem, LSMPLifySceneSettings)


def register_properties():
    bpy.types.Scene.lsmplify = PointerProperty(type=LSMPLifySceneSettings)


def unregister_properties():
    if hasattr(bpy.types.Scene, "lsmplify"):
        del bpy.types.Scene.lsmplify
