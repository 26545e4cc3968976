"""The Blender side of LSMPLify: rig building and keyframe writing (imports bpy).

Kept light on purpose: importing this package imports nothing; the modules ``rig`` and
``keyframes`` import bpy and numpy when they are imported themselves. Operators and
panels live in their own modules.
"""
