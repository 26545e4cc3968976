"""LSMPLify core: keypoints to SMPL pose and shape, without Blender.

Importable and testable with numpy, torch, scipy and smplx alone; never imports bpy.
"""
