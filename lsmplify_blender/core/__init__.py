"""LSMPLify core: keypoints to SMPL pose and shape, without Blender.

Needs numpy, torch and scipy alone (never bpy, never smplx: the SMPL forward pass is in
``core/model``; smplx is only the tests' reference).
"""
