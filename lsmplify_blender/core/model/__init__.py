"""The body-model layer: SMPL's maths, each concept in one module, under the pipeline.

- ``skeleton``: joint names, parents, children, depth levels, bones, mirror pairs;
- ``rotations``: axis-angle (Rodrigues), quaternions, 6D, the minimal swing, Kabsch;
- ``axes``: Y-up (SMPL) <-> Z-up (Blender, most mocap);
- ``kinematics``: level-batched forward kinematics;
- ``skinning``: linear blend skinning and the pose-corrective feature;
- ``forward``: the SMPL forward pass (blend shapes, correctives, joints, FK, LBS);
- ``backend``: numpy inputs for the torch functions (one implementation each).

``core.body_model.BodyModel`` holds a model's arrays and calls into these. Nothing here
imports smplx or bpy.
"""
